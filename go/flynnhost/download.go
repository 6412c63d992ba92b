package flynnhost

import (
	"path/filepath"
	"sort"
	"strings"

	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	docopt "github.com/flynn/go-docopt"
)

const downloadUsage = `
usage: flynn-host download --github-repo=<owner/name> --version=<ver> [--root=<dir>] [--bin-dir=<dir>] [--config-dir=<dir>] [--layer-dir=<dir>]

Download, verify and install a Flynn release from GitHub Releases: the versioned binaries and
their symlinks, the manifests and the image layers. Nothing is switched unless every component
verified. The install receipt (<config-dir>/install-source.json) records the repository, so a
later ` + "`flynn-host update`" + ` comes from the same place.

Options:
  --github-repo=<owner/name>  GitHub repository, e.g. flynn/flynn
  --version=<ver>             the release to install, e.g. v20240127.0
  --root=<dir>                take every directory inside this folder (tests, image builds)
  --bin-dir=<dir>             directory for binaries (default /usr/local/bin)
  --config-dir=<dir>          config directory (default /etc/flynn)
  --layer-dir=<dir>           layer cache (default /var/lib/flynn/layer-cache)
`

// Download is `flynn-host download --github-repo`: Flynn's `flynn-host download` for GitHub.
// Unlike the downloader methods it writes the install receipt: a host installed this way must
// be updated from GitHub, and without a receipt `update` would take it for a TUF install.
func (h *Host) Download(args *docopt.Args) error {
	c, err := h.client(args.String["--github-repo"])
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.Install(flynnrel.InstallOptions{Layout: layout(args), Version: args.String["--version"]})
	if err != nil {
		return err
	}
	h.printInstall(r)
	return nil
}

// printInstall prints an install's files, skipped layers and status as `key=value` lines.
func (h *Host) printInstall(r *flynnrel.InstallReport) {
	for _, f := range r.Files {
		h.line("file", f.Path, "sha512", f.SHA512)
	}
	for _, l := range r.SkippedLayers {
		h.line("skipped_layer", l)
	}
	status := "installed"
	if r.AlreadyInstalled {
		status = "already_installed"
	}
	h.line("status", status, "repository", r.Repository, "version", r.Version)
}

// Downloader fetches one release's components into the directories Flynn's host/downloader
// methods name, through verified, all-or-nothing installs without a receipt. Every method runs
// one install of the whole release (binaries, manifests, layers) with its own directory
// overriding the Layout's; layers already present and valid are not downloaded again.
type Downloader struct {
	// Client is the repository to download from (not closed by the Downloader).
	Client *flynnrel.Client
	// Version is the release; "" means the stable channel's newest.
	Version string
	// Layout places the components a method is not about (Root applies to every directory).
	Layout flynnrel.Layout
	// PublicKey, when set, is the minisign key the release must be signed with.
	PublicKey string
	// Progress, when set, receives progress and may cancel.
	Progress flynnrel.ProgressFunc
}

// NewDownloader returns a Downloader of version from client's repository.
func NewDownloader(client *flynnrel.Client, version string, layout flynnrel.Layout) *Downloader {
	return &Downloader{Client: client, Version: version, Layout: layout}
}

func (d *Downloader) install(l flynnrel.Layout) (*flynnrel.InstallReport, error) {
	return d.Client.Install(flynnrel.InstallOptions{
		Layout: l, Version: d.Version, PublicKey: d.PublicKey, NoReceipt: true, Progress: d.Progress,
	})
}

// DownloadBinaries installs the release's binaries into dir as <name>.<version> (and moves the
// unversioned symlinks), and returns name → versioned path, e.g.
// "flynn-host" → "/usr/local/bin/flynn-host.v20240127.0".
func (d *Downloader) DownloadBinaries(dir string) (map[string]string, error) {
	l := d.Layout
	l.BinDir = dir
	r, err := d.install(l)
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, f := range r.Files {
		if f.Kind == flynnrel.FileBinary {
			paths[strings.TrimSuffix(filepath.Base(f.Path), "."+r.Version)] = f.Path
		}
	}
	return paths, nil
}

// DownloadConfig installs the release's manifests into dir and returns their paths by name:
// "bootstrap-manifest.json" and "images.json" (stored as images.<version>.json).
func (d *Downloader) DownloadConfig(dir string) (map[string]string, error) {
	l := d.Layout
	l.ConfigDir = dir
	r, err := d.install(l)
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, f := range r.Files {
		if f.Kind != flynnrel.FileManifest {
			continue
		}
		switch filepath.Base(f.Path) {
		case "bootstrap-manifest.json":
			paths["bootstrap-manifest.json"] = f.Path
		case "images." + r.Version + ".json":
			paths["images.json"] = f.Path
		}
	}
	return paths, nil
}

// DownloadLayers installs the release's image layers into dir, each checked against the length
// and sha512_256 images.json gives, and returns the paths of every layer the release uses
// (downloaded now or already present), sorted.
func (d *Downloader) DownloadLayers(dir string) ([]string, error) {
	l := d.Layout
	l.LayerDir = dir
	r, err := d.install(l)
	if err != nil {
		return nil, err
	}
	var paths []string
	seen := map[string]bool{}
	for _, f := range r.Files {
		if f.Kind == flynnrel.FileLayer && !seen[f.Path] {
			seen[f.Path] = true
			paths = append(paths, f.Path)
		}
	}
	// Layers the install skipped are in the same directory: inside Root when one is set.
	layerDir := dir
	if l.Root != "" {
		layerDir = filepath.Join(l.Root, dir)
	}
	for _, id := range r.SkippedLayers {
		p := filepath.Join(layerDir, id+".squashfs")
		if !seen[p] {
			seen[p] = true
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	return paths, nil
}

// ExportForGitHubRelease packages Flynn's build tree as the assets of one GitHub release (the
// builder's step before `gh release create`) and verifies the folder it wrote, with the
// signature when opts.PublicKey is set. opts.Helper must name the flynnrel binary to
// publish.
func ExportForGitHubRelease(opts flynnrel.PackageOptions) (*flynnrel.PackageReport, error) {
	r, err := flynnrel.Package(opts)
	if err != nil {
		return nil, err
	}
	if _, err := VerifyGitHubRelease(r.OutDir, flynnrel.VerifyOptions{
		PublicKey: opts.PublicKey, Repository: opts.Repository, Version: r.Version,
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// VerifyGitHubRelease checks a release folder as a host will: every asset against
// checksums.sha512, and the signature (naming the repository and version) when a key is given.
func VerifyGitHubRelease(dir string, opts flynnrel.VerifyOptions) (*flynnrel.VerifyReport, error) {
	return flynnrel.Verify(dir, opts)
}
