package flynnhost

// Flynn's cluster update for a host installed from GitHub Releases
// (docs/integrating-flynn.md#the-cluster-update): the first half of Flynn's runUpdate (fetch the
// newest flynn-host, re-execute it with --is-latest --is-tempfile) with libflynnrel instead of
// TUF; the second half is Flynn's own code (FlynnTUF.Cluster).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	docopt "github.com/flynn/go-docopt"
)

// execFunc replaces the process with the downloaded flynn-host.
var execFunc = syscall.Exec

// execLatestGitHub downloads the target's flynn-host (check.Target: the --version given, else
// the newest release of the receipt's channel, as libflynnrel resolved it), verified against the
// release's checksums and the receipt's key pin, into a temp file, and executes it as Flynn's
// updater executes the newest binary: this command line plus --source=github --is-latest
// --is-tempfile. It is run even when this host already has the target, as Flynn's updater does,
// since other hosts of the cluster may not.
func (h *Host) execLatestGitHub(check *flynnrel.UpdateResult, r *flynnrel.Receipt, configDir string) error {
	if check.Target == "" || check.Repository != r.Repository {
		return fmt.Errorf("flynn-host update: %s changed while updating (repository %s, target %q); run `flynn-host update` again", filepath.Join(configDir, "install-source.json"), r.Repository, check.Target)
	}
	copts := h.Client
	if copts.APIURL == "" {
		copts.APIURL = r.APIURL
	}
	c, err := flynnrel.NewClient(check.Repository, copts)
	if err != nil {
		return fmt.Errorf("flynn-host update: the receipt %s: %w", filepath.Join(configDir, "install-source.json"), err)
	}
	defer c.Close()

	fmt.Fprintf(h.errw(), "downloading %s flynn-host binary from GitHub Releases of %s\n", check.Target, check.Repository)
	tmp, err := fetchFlynnHost(c, check.Target, r.PublicKey)
	if err != nil {
		return err
	}
	argv := append([]string{tmp}, reexecArgs(os.Args[1:])...)
	fmt.Fprintln(h.errw(), "executing latest flynn-host binary")
	err = execFunc(tmp, argv, os.Environ())
	os.Remove(tmp)
	return fmt.Errorf("flynn-host update: executing %s: %w", tmp, err)
}

// fetchFlynnHost installs only the binaries of version into a temp root (verified, nothing of
// the host touched) and moves flynn-host.<version> to a temp file "flynn-host*" in TMPDIR,
// mode 0755, which it returns.
func fetchFlynnHost(c *flynnrel.Client, version, publicKey string) (path string, err error) {
	root, err := os.MkdirTemp("", "flynn-host-github-")
	if err != nil {
		return "", fmt.Errorf("flynn-host update: creating a temp dir: %w", err)
	}
	defer os.RemoveAll(root)
	r, err := c.Install(flynnrel.InstallOptions{
		Layout: flynnrel.Layout{Root: root}, Version: version, PublicKey: publicKey,
		NoReceipt: true, Parts: []string{"binaries"},
	})
	if err != nil {
		return "", err
	}
	src := BinaryPaths(r.Files, r.Version)["flynn-host"]
	if src == "" || r.Version != version {
		return "", fmt.Errorf("flynn-host update: the release %s of %s gave no flynn-host (got version %s)", version, c.Repository(), r.Version)
	}
	if !strings.HasPrefix(src, root+string(filepath.Separator)) {
		src = filepath.Join(root, src)
	}
	f, err := os.CreateTemp("", "flynn-host")
	if err != nil {
		return "", fmt.Errorf("flynn-host update: creating the temp file: %w", err)
	}
	f.Close()
	if err := os.Rename(src, f.Name()); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("flynn-host update: moving the verified flynn-host to %s: %w", f.Name(), err)
	}
	if err := os.Chmod(f.Name(), 0755); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("flynn-host update: %w", err)
	}
	return f.Name(), nil
}

// configDir is the layout's config directory (no --root here).
func configDir(l flynnrel.Layout) string {
	if l.ConfigDir == "" {
		return "/etc/flynn"
	}
	return l.ConfigDir
}

// reexecArgs is the command line of the re-executed flynn-host: this one without --source and
// --version (the new binary updates the cluster to the version it is), plus --source=github
// --is-latest --is-tempfile.
func reexecArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--source" || a == "--version":
			i++
		case strings.HasPrefix(a, "--source=") || strings.HasPrefix(a, "--version="):
		default:
			out = append(out, a)
		}
	}
	return append(out, "--source=github", "--is-latest", "--is-tempfile")
}

// flynnGitHubCluster is the re-executed run (--is-latest --source=github): it removes its temp
// file (--is-tempfile) and runs Flynn's cluster flow with Flynn's options (defaults filled in).
// Every host's daemon then pulls this flynn-host's version from the source its own receipt
// names (flynn/host/pull_source.go).
func (h *Host) flynnGitHubCluster(args *docopt.Args, tuf FlynnTUF) error {
	if args.Bool["--is-tempfile"] {
		os.Remove(os.Args[0])
	}
	if tuf.Cluster == nil {
		return errors.New("flynn-host update: --is-latest --source=github needs Flynn's cluster update, which this program does not have")
	}
	if args.String["--root"] != "" {
		return &UsageError{Err: errors.New("flynn-host update: --root applies to a host-local update, not to the cluster update (--is-latest)")}
	}
	a, _ := flynnTUFArgs(args, "")
	return tuf.Cluster(a)
}
