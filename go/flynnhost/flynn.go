package flynnhost

// Flynn's own `flynn-host update` and `flynn-host download`, extended with the GitHub channel
// (docs/integrating-flynn.md#integrating-into-flynn). Flynn's host/cli keeps registering its commands with its own usage; the files of
// the project's flynn/ overlay append FlynnUpdateOptions / FlynnDownloadUsage and
// FlynnDownloadOptions to those usages and register FlynnUpdate / FlynnDownload instead of
// runUpdate / runDownload, handing back to Flynn's functions whatever is Flynn's.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	docopt "github.com/flynn/go-docopt"
)

// FlynnUpdateOptions are the option lines appended to the Options section of Flynn's
// `flynn-host update` usage (after --is-tempfile). Flynn's own options and their docopt
// defaults stay as they are.
const FlynnUpdateOptions = `  --check                  only report, change nothing: exit 0 when up to date, 100 when an update is available
  --source=<src>           github or tuf: update from this source instead of the one in <config-dir>/install-source.json
  --version=<ver>          install exactly this version (GitHub installs)
  --force                  reinstall even when up to date (GitHub installs)
  --allow-downgrade        allow --version to name a version below the highest installed (GitHub installs)
  --root=<dir>             take every directory inside this folder (tests, image builds)`

// FlynnDownloadUsage is the usage line added below Flynn's `flynn-host download` usage line.
const FlynnDownloadUsage = `       flynn-host download --github-repo=<owner/repo> [--config-dir=<dir>] [--bin-dir=<dir>] [--layer-dir=<dir>] [--root=<dir>] [--public-key=<key>]`

// FlynnDownloadOptions are the option lines appended to the Options section of Flynn's
// `flynn-host download` usage.
const FlynnDownloadOptions = `  --github-repo=<owner/repo>  download from this repository's GitHub Releases instead (libflynnrel): verify,
                              lay out and write <config-dir>/install-source.json (FLYNN_VERSION, else the
                              channel in <config-dir>/channel.txt, else stable)
  --layer-dir=<dir>           GitHub: image layer cache [default: /var/lib/flynn/layer-cache]
  --root=<dir>                GitHub: take every directory inside this folder (tests, image builds)
  --public-key=<key>          GitHub: minisign public key the release must be signed with`

// flynnUpdateFlags are the options of Flynn's own `flynn-host update` that take a value: all
// its TUF updater gets (with --is-latest and --is-tempfile).
var flynnUpdateFlags = []string{"--repository", "--tuf-db", "--bin-dir", "--config-dir"}

// FlynnTUF is what Flynn's host/cli supplies for installs that TUF updates.
type FlynnTUF struct {
	// Update is Flynn's TUF update (runUpdate). args holds exactly the options of Flynn's own
	// usage (--repository, --tuf-db, --bin-dir, --config-dir, --is-latest, --is-tempfile) and
	// argv is the matching command line (without the program name): Flynn's update re-executes
	// its newest binary with os.Args[1:] plus --is-latest --is-tempfile, and a newest binary
	// older than this integration accepts only these options, so Update should make os.Args
	// that command line before calling runUpdate.
	Update func(args *docopt.Args, argv []string) error
	// Check is a read-only TUF check: the running release and the newest release of the
	// host's channel, with nothing written to disk and no component downloaded. nil makes
	// `update --check` of a TUF install an error saying it is not supported.
	Check func(args *docopt.Args) (current, latest string, err error)
	// Cluster is the cluster part of Flynn's update (what runUpdate does after reading the TUF
	// database: version check, pulls on every host, daemon handoff, updater image) with no TUF
	// database: every host's daemon pulls from the source its own receipt names. With Cluster
	// set, `update` of a GitHub install without --root runs Flynn's cluster flow (see
	// FlynnUpdate); nil keeps the host-local update.
	Cluster func(args *docopt.Args) error
}

// ErrTUFCheckUnsupported is `update --check` of a TUF install when no FlynnTUF.Check is set.
var ErrTUFCheckUnsupported = errors.New("flynn-host update --check is not supported for TUF installs by this flynn-host; run `flynn-host update` to update through TUF, or pass --source=github to check GitHub Releases")

// FlynnUpdate is Flynn's `flynn-host update`, usage extended with FlynnUpdateOptions. The
// receipt (<config-dir>/install-source.json) decides, read-only: a `tuf` receipt or none goes to
// tuf.Update with Flynn's options only (or, with --check, to tuf.Check); a `github` receipt is
// checked through libflynnrel and then updated: with --root (tests, image builds), or when
// tuf.Cluster is nil, by switching this host's files; otherwise by Flynn's cluster flow
// (execLatestGitHub: the target's verified flynn-host re-executed with --is-latest
// --is-tempfile --source=github, which runs tuf.Cluster). --source overrides the receipt. The
// re-executed run of Flynn's updater (--is-latest) goes straight to tuf.Update, or with
// --source=github to tuf.Cluster.
//
// `--check` returns *UpdateAvailableError when an update is available, on either source; it
// changes nothing but the API's ETag cache. ExitCode maps results to exit codes (100 for an available update).
func (h *Host) FlynnUpdate(args *docopt.Args, tuf FlynnTUF) (err error) {
	defer func() { err = withAdvice(err) }()
	if args.Bool["--is-latest"] {
		if args.String["--source"] == "github" {
			return h.flynnGitHubCluster(args, tuf)
		}
		return h.flynnTUFUpdate(args, "", tuf)
	}
	src, err := sourceFlag(args)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("flynn-host update: %v", err)}
	}
	opts := flynnrel.UpdateOptions{
		Layout:         layout(args),
		Check:          true,
		Force:          args.Bool["--force"],
		Version:        args.String["--version"],
		AllowDowngrade: args.Bool["--allow-downgrade"],
		Source:         src,
		TUFRepository:  args.String["--repository"],
	}
	c, check, err := h.checkRoute(h.defaultRepo(), opts)
	if err != nil {
		return err
	}
	defer c.Close()
	if check.Status == flynnrel.UpdateTUF {
		if args.Bool["--check"] {
			return h.flynnTUFCheck(args, check.Repository, tuf)
		}
		for _, f := range []string{"--version", "--force", "--allow-downgrade"} {
			if v, ok := args.All[f]; ok && v != nil && v != false {
				return &UsageError{Err: fmt.Errorf("flynn-host update: %s applies to GitHub installs; this install is updated through TUF (%s), which installs its channel's newest release", f, check.Repository)}
			}
		}
		return h.flynnTUFUpdate(args, check.Repository, tuf)
	}
	opts.Check = args.Bool["--check"]
	if !opts.Check && args.String["--root"] == "" && tuf.Cluster != nil {
		// Only a GitHub install runs the cluster flow: with --source=github on a TUF install (the
		// hybrid mode) the daemons would still pull through TUF, so that stays host-local.
		r, legacy, err := flynnrel.LoadReceipt(configDir(opts.Layout))
		if err != nil {
			return err
		}
		if !legacy && r.Source == "github" {
			return h.execLatestGitHub(check, r, configDir(opts.Layout))
		}
	}
	return h.applyCheck(c, check, opts, nil)
}

// flynnTUFArgs returns Flynn's own update options: the values given (or docopt's defaults),
// inside --root when given, with the receipt's TUF repository replacing Flynn's default.
func flynnTUFArgs(args *docopt.Args, receiptRepo string) (*docopt.Args, []string) {
	out := &docopt.Args{All: map[string]interface{}{}, String: map[string]string{}, Bool: map[string]bool{}}
	root := args.String["--root"]
	argv := []string{"update"}
	for _, name := range flynnUpdateFlags {
		v := args.String[name]
		switch {
		case name == "--repository" && receiptRepo != "" && (v == "" || v == DefaultTUFRepository):
			v = receiptRepo
		case name == "--repository":
		case root != "" && v != "":
			v = filepath.Join(root, v)
		}
		out.String[name], out.All[name] = v, v
		argv = append(argv, name+"="+v)
	}
	for _, name := range []string{"--is-latest", "--is-tempfile"} {
		b := args.Bool[name]
		out.Bool[name], out.All[name] = b, b
		if b {
			argv = append(argv, name)
		}
	}
	return out, argv
}

func (h *Host) flynnTUFUpdate(args *docopt.Args, receiptRepo string, tuf FlynnTUF) error {
	if tuf.Update == nil {
		return errors.New("flynn-host update: this install is updated through TUF, and no TUF updater is built into this program")
	}
	a, argv := flynnTUFArgs(args, receiptRepo)
	if args.Bool["--is-latest"] {
		// Flynn's re-executed run: its command line is already Flynn's own.
		argv = nil
	}
	return tuf.Update(a, argv)
}

func (h *Host) flynnTUFCheck(args *docopt.Args, receiptRepo string, tuf FlynnTUF) error {
	if tuf.Check == nil {
		return ErrTUFCheckUnsupported
	}
	a, _ := flynnTUFArgs(args, receiptRepo)
	current, latest, err := tuf.Check(a)
	if err != nil {
		return err
	}
	repo := a.String["--repository"]
	// A development build (or any version the library cannot order) is never up to date.
	if cmp, err := flynnrel.CompareVersions(current, latest); err == nil && cmp >= 0 {
		h.line("status", "up_to_date", "source", "tuf", "repository", repo, "current", current, "target", latest)
		return nil
	}
	h.line("status", "update_available", "source", "tuf", "repository", repo, "current", current, "target", latest)
	return &UpdateAvailableError{Repository: repo, Current: current, Target: latest}
}

// FlynnDownload is `flynn-host download --github-repo=<owner/repo>`, the second usage line of
// Flynn's `flynn-host download` (FlynnDownloadUsage): a verified, all-or-nothing install of one
// release that writes the receipt, so later `flynn-host update`s come from the same repository.
// The version is FLYNN_VERSION (as for Flynn's TUF download), else the newest release of the
// channel in <config-dir>/channel.txt, else of stable. Layers are fetched into the layer cache
// and verified; importing them into volumes stays with Flynn's daemon.
func (h *Host) FlynnDownload(args *docopt.Args) (err error) {
	defer func() { err = withAdvice(err) }()
	repo := args.String["--github-repo"]
	if repo == "" {
		return &UsageError{Err: errors.New("flynn-host download: --github-repo=<owner/repo> is required for a GitHub download")}
	}
	opts := flynnrel.InstallOptions{Layout: layout(args), Version: os.Getenv("FLYNN_VERSION"), PublicKey: args.String["--public-key"]}
	if opts.Version == "" {
		ch, err := readChannel(opts.Layout)
		if err != nil {
			return err
		}
		opts.Channel = ch
	}
	c, err := h.client(repo)
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.Install(opts)
	if err != nil {
		return err
	}
	h.printInstall(r)
	return nil
}

// readChannel is the channel in <config-dir>/channel.txt ("" when there is none: stable).
func readChannel(l flynnrel.Layout) (string, error) {
	dir := l.ConfigDir
	if dir == "" {
		dir = "/etc/flynn"
	}
	if l.Root != "" {
		dir = filepath.Join(l.Root, dir)
	}
	p := filepath.Join(dir, "channel.txt")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("flynn-host download: reading the release channel: %w (fix or remove %s, or set FLYNN_VERSION)", err, p)
	}
	return strings.TrimSpace(string(b)), nil
}
