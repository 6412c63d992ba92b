package flynnhost

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	docopt "github.com/flynn/go-docopt"
)

const updateUsage = `
usage: flynn-host update [--repository=<uri>] [--tuf-db=<path>] [--config-dir=<dir>] [--bin-dir=<dir>] [--root=<dir>] [--version=<ver>] [--check] [--source=<src>] [--force] [--allow-downgrade]

Update Flynn from the source this host was installed from, as its install receipt
(<config-dir>/install-source.json) says: an install from GitHub Releases is updated from its
repository through libflynnrel; a TUF install (or one without a receipt) is updated by the TUF
updater. Nothing is updated on its own: only this command changes the installed version.

Options:
  --repository=<uri>   TUF repository URI (default https://dl.flynn.io/tuf)
  --tuf-db=<path>      local TUF file (TUF updater; default <config-dir>/tuf.db)
  --config-dir=<dir>   config directory (default /etc/flynn)
  --bin-dir=<dir>      directory containing binaries (default /usr/local/bin)
  --root=<dir>         take every directory inside this folder (tests, image builds)
  --version=<ver>      install exactly this version (GitHub)
  --check              only report: exit 0 when up to date, 100 when an update is available
  --source=<src>       github or tuf: use this source instead of the receipt's
  --force              reinstall even when up to date (GitHub)
  --allow-downgrade    allow --version to name a version below the highest installed (GitHub)
`

const githubUpdateUsage = `
usage: flynn-host github-update [--repo=<owner/name>] [--check] [--version=<ver>] [--root=<dir>] [--config-dir=<dir>] [--bin-dir=<dir>]

Check GitHub Releases for an update of a TUF install (the hybrid mode: ` + "`update --source=github`" + `
with the repository chosen here), and apply it unless --check.

Options:
  --repo=<owner/name>  GitHub repository (default FLYNN_GITHUB_REPO, else flynn/flynn)
  --check              only report: exit 0 when up to date, 100 when an update is available
  --version=<ver>      install exactly this version
  --root=<dir>         take every directory inside this folder
  --config-dir=<dir>   config directory (default /etc/flynn)
  --bin-dir=<dir>      directory containing binaries (default /usr/local/bin)
`

// Update is `flynn-host update`: the receipt's source decides. With source tuf the TUFUpdater
// runs (this package never updates a TUF install); with github the update is checked for or
// applied through flynnrel. `--check` returns *UpdateAvailableError when an update is available.
func (h *Host) Update(args *docopt.Args) error {
	src, err := sourceFlag(args)
	if err != nil {
		return &UsageError{Usage: updateUsage, Err: err}
	}
	opts := flynnrel.UpdateOptions{
		Layout:         layout(args),
		Check:          args.Bool["--check"],
		Force:          args.Bool["--force"],
		AllowDowngrade: args.Bool["--allow-downgrade"],
		Version:        args.String["--version"],
		Source:         src,
		TUFRepository:  args.String["--repository"],
	}
	return h.update(h.defaultRepo(), opts, args)
}

// GitHubUpdate is `flynn-host github-update`: `update --source=github` with the repository
// from --repo.
func (h *Host) GitHubUpdate(args *docopt.Args) error {
	repo := args.String["--repo"]
	if repo == "" {
		repo = h.defaultRepo()
	}
	opts := flynnrel.UpdateOptions{
		Layout:     layout(args),
		Check:      args.Bool["--check"],
		Version:    args.String["--version"],
		Source:     "github",
		Repository: repo,
	}
	return h.update(repo, opts, args)
}

// sourceFlag is --source: "", "github" or "tuf".
func sourceFlag(args *docopt.Args) (string, error) {
	src := args.String["--source"]
	if src != "" && src != "github" && src != "tuf" {
		return "", fmt.Errorf("--source must be github or tuf, not %q", src)
	}
	return src, nil
}

// checkRoute opens a client for repo and checks for an update. The check changes nothing but the
// API's ETag cache (no lock file either), so it routes any install without touching it: the library decides the
// route from the receipt (UpdateTUF for a TUF install). The caller closes the client.
func (h *Host) checkRoute(repo string, opts flynnrel.UpdateOptions) (*flynnrel.Client, *flynnrel.UpdateResult, error) {
	c, err := h.client(repo)
	if err != nil {
		return nil, nil, err
	}
	check, err := c.CheckForUpdate(opts)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, check, nil
}

func (h *Host) update(repo string, opts flynnrel.UpdateOptions, args *docopt.Args) error {
	c, check, err := h.checkRoute(repo, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	if check.Status == flynnrel.UpdateTUF {
		return h.runTUF(check, args)
	}
	return h.applyCheck(c, check, opts, args)
}

// applyCheck reports a GitHub check's result and, unless opts.Check, applies the update. args
// (nil from FlynnUpdate) are what runTUF hands on should the update find a TUF install after
// all (the receipt changed in between).
func (h *Host) applyCheck(c *flynnrel.Client, check *flynnrel.UpdateResult, opts flynnrel.UpdateOptions, args *docopt.Args) error {
	switch check.Status {
	case flynnrel.UpdateUpToDate:
		h.line("status", "up_to_date", "repository", check.Repository, "current", check.Current, "target", check.Target)
		return nil
	case flynnrel.UpdateAvailable:
		if opts.Check {
			h.line("status", "update_available", "repository", check.Repository, "current", check.Current, "target", check.Target)
			return &UpdateAvailableError{Repository: check.Repository, Current: check.Current, Target: check.Target}
		}
	default:
		return fmt.Errorf("flynn-host: unexpected update check status %q", check.Status)
	}
	r, err := c.Update(opts)
	if err != nil {
		return err
	}
	switch r.Status {
	case flynnrel.UpdateUpdated:
		for _, l := range r.SkippedLayers {
			h.line("skipped_layer", l)
		}
		h.line("status", "updated", "repository", r.Repository, "from", r.From, "to", r.To)
	case flynnrel.UpdateUpToDate:
		h.line("status", "up_to_date", "repository", r.Repository, "current", r.Current, "target", r.Target)
	case flynnrel.UpdateTUF:
		if args == nil {
			return errors.New("flynn-host: " + r.Message + "; run `flynn-host update` again")
		}
		return h.runTUF(r, args)
	default:
		return fmt.Errorf("flynn-host: unexpected update status %q", r.Status)
	}
	return nil
}

// runTUF hands a TUF install to the embedding program's updater, with the TUF flags' defaults
// filled in (inside --root when given).
func (h *Host) runTUF(r *flynnrel.UpdateResult, args *docopt.Args) error {
	if h.TUFUpdater == nil {
		return errors.New("flynn-host: " + r.Message + " (no TUF updater is built into this program); to check GitHub Releases instead, pass --source=github")
	}
	// With --root every directory, given or default, is inside it (as for the GitHub route).
	root := args.String["--root"]
	dir := func(name, def string) {
		v := args.String[name]
		if v == "" {
			v = def
		}
		if root != "" {
			v = filepath.Join(root, v)
		}
		args.String[name], args.All[name] = v, v
	}
	if args.String["--repository"] == "" {
		args.String["--repository"], args.All["--repository"] = r.Repository, r.Repository
	}
	dir("--config-dir", "/etc/flynn")
	dir("--bin-dir", "/usr/local/bin")
	if args.String["--tuf-db"] == "" {
		db := filepath.Join(args.String["--config-dir"], "tuf.db")
		args.String["--tuf-db"], args.All["--tuf-db"] = db, db
	} else {
		dir("--tuf-db", "")
	}
	return h.TUFUpdater(args)
}
