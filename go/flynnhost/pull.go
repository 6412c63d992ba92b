package flynnhost

// The GitHub side of Flynn's cluster update (docs/integrating-flynn.md#the-cluster-update): what
// a daemon's pull handlers (/host/pull/images, /host/pull/binaries) do on a host whose receipt
// says github. Flynn's side (flynn/host/downloader/github.go in libflynnrel) adds the image
// manifests' types, the volume manager and pkg/verify; every download and check is libflynnrel's.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
)

// DefaultLayerDir is the layer cache of docs/host-layout.md#directories, where a daemon's
// GitHub pulls keep the verified layers they import.
const DefaultLayerDir = "/var/lib/flynn/layer-cache"

// PullSource reads the install receipt of configDir (<configDir>/install-source.json) for a
// daemon's pull handler. It returns the receipt when the host was installed from GitHub
// Releases, and nil when it is a TUF install (a tuf receipt, or none: a legacy install): the
// handler then runs Flynn's TUF downloader as it always has. A receipt that exists but cannot be
// read or is invalid is an error naming the file; it never falls back to TUF.
func PullSource(configDir string) (*flynnrel.Receipt, error) {
	if configDir == "" {
		return nil, errors.New("flynn-host pull: no config-dir in the request: the install receipt <config-dir>/install-source.json decides where to pull from")
	}
	r, _, err := flynnrel.LoadReceipt(configDir)
	if err != nil {
		return nil, fmt.Errorf("flynn-host pull: %w", err)
	}
	if r.Source != "github" {
		return nil, nil
	}
	return r, nil
}

// Puller downloads one release for a daemon's pull handlers, from the repository, API base and
// public-key pin of a github receipt. Each method is one verified libflynnrel operation.
type Puller struct {
	// Client talks to the receipt's repository (closed by Close).
	Client *flynnrel.Client
	// Receipt is the host's receipt (source github), read when the Puller was made.
	Receipt *flynnrel.Receipt
	// ConfigDir holds the receipt; LayerDir is the layer cache ("" = DefaultLayerDir).
	ConfigDir, LayerDir string
	// Version is the release to pull (the version the updating flynn-host runs).
	Version string
}

// NewPuller returns a Puller of version for the host whose github receipt r is in configDir.
// The API and web base are FLYNN_GITHUB_API_URL and FLYNN_GITHUB_URL when set (a mirror, the
// tests' local server), else the receipt's api_url.
func NewPuller(r *flynnrel.Receipt, configDir, layerDir, version string) (*Puller, error) {
	if r == nil || r.Source != "github" {
		return nil, errors.New("flynn-host pull: a GitHub pull needs a github install receipt")
	}
	if version == "" {
		return nil, fmt.Errorf("flynn-host pull: no version in the request (the updating flynn-host sends the version it runs) for %s", filepath.Join(configDir, "install-source.json"))
	}
	opts := flynnrel.ClientOptions{APIURL: os.Getenv("FLYNN_GITHUB_API_URL"), WebURL: os.Getenv("FLYNN_GITHUB_URL")}
	if opts.APIURL == "" {
		opts.APIURL = r.APIURL
	}
	c, err := flynnrel.NewClient(r.Repository, opts)
	if err != nil {
		return nil, fmt.Errorf("flynn-host pull: the receipt %s: %w", filepath.Join(configDir, "install-source.json"), err)
	}
	if layerDir == "" {
		layerDir = DefaultLayerDir
	}
	return &Puller{Client: c, Receipt: r, ConfigDir: configDir, LayerDir: layerDir, Version: version}, nil
}

// Close frees the client.
func (p *Puller) Close() error { return p.Client.Close() }

func (p *Puller) install(parts []string, l flynnrel.Layout) (*flynnrel.InstallReport, error) {
	if l.LayerDir == "" {
		l.LayerDir = p.LayerDir
	}
	return p.Client.Install(flynnrel.InstallOptions{
		Layout: l, Version: p.Version, PublicKey: p.Receipt.PublicKey, NoReceipt: true, Parts: parts,
	})
}

// PullImages installs the release's images.json (as images.<version>.json in configDir, every
// layer_url_template pointing at the layer cache) and its layers into the layer cache, all
// verified, and returns the manifest's path.
func (p *Puller) PullImages(configDir string) (string, error) {
	r, err := p.install([]string{"config", "layers"}, flynnrel.Layout{ConfigDir: configDir})
	if err != nil {
		return "", err
	}
	want := "images." + r.Version + ".json"
	for _, f := range r.Files {
		if f.Kind == flynnrel.FileManifest && filepath.Base(f.Path) == want {
			return f.Path, nil
		}
	}
	return "", fmt.Errorf("flynn-host pull: the install of %s %s wrote no %s", p.Receipt.Repository, r.Version, want)
}

// PullBinaries switches binDir to the release's binaries and returns name → versioned path, as
// Flynn's DownloadBinaries does ("flynn-host", "flynn-init", "flynn-linux-amd64").
//
// It is libflynnrel's update to exactly Version: every component verified (and the signature
// against the receipt's pin), anti-rollback applied, the switch journaled, and the receipt
// rewritten atomically, so the receipt names the version the daemon is handed over to. A host
// already at Version (its receipt says so) gets the binaries laid out again, verified, without
// a receipt change.
func (p *Puller) PullBinaries(binDir string) (map[string]string, error) {
	l := flynnrel.Layout{BinDir: binDir, ConfigDir: p.ConfigDir, LayerDir: p.LayerDir}
	u, err := p.Client.Update(flynnrel.UpdateOptions{Layout: l, Version: p.Version, PublicKey: p.Receipt.PublicKey})
	if err != nil {
		return nil, err
	}
	var files []flynnrel.File
	switch u.Status {
	case flynnrel.UpdateUpdated:
		files = u.Files
	case flynnrel.UpdateUpToDate:
		r, err := p.install([]string{"binaries"}, flynnrel.Layout{BinDir: binDir})
		if err != nil {
			return nil, err
		}
		files = r.Files
	default:
		return nil, fmt.Errorf("flynn-host pull: updating %s to %s: %s %s", p.Receipt.Repository, p.Version, u.Status, u.Message)
	}
	return BinaryPaths(files, p.Version), nil
}

// PullConfig installs the release's bootstrap manifest into configDir and returns its path by
// name, as Flynn's DownloadConfig does ("bootstrap-manifest.json").
func (p *Puller) PullConfig(configDir string) (map[string]string, error) {
	r, err := p.install([]string{"config"}, flynnrel.Layout{ConfigDir: configDir})
	if err != nil {
		return nil, err
	}
	for _, f := range r.Files {
		if f.Kind == flynnrel.FileManifest && filepath.Base(f.Path) == "bootstrap-manifest.json" {
			return map[string]string{"bootstrap-manifest.json": f.Path}, nil
		}
	}
	return nil, fmt.Errorf("flynn-host pull: the install of %s %s wrote no bootstrap-manifest.json", p.Receipt.Repository, r.Version)
}

// BinaryPaths maps the versioned binaries among files to name → path.
func BinaryPaths(files []flynnrel.File, version string) map[string]string {
	paths := map[string]string{}
	for _, f := range files {
		if f.Kind == flynnrel.FileBinary {
			paths[strings.TrimSuffix(filepath.Base(f.Path), "."+version)] = f.Path
		}
	}
	return paths
}
