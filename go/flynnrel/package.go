package flynnrel

// #include <stdlib.h>
// #include "flynnrel.h"
import "C"

import "unsafe"

// PackageOptions describe packaging a Flynn build tree as the assets of one GitHub release
// (docs/release-assets.md#packaging).
type PackageOptions struct {
	// Version is the release's tag (required).
	Version string `json:"version"`
	// Repository is OWNER/NAME ("" = flynn/flynn), baked into install-flynn.
	Repository string `json:"repository,omitempty"`
	// BuildDir is Flynn's build tree ("" = build).
	BuildDir string `json:"build_dir,omitempty"`
	// LayerCache is the builder's layer cache, where <id>.squashfs of every layer images.json
	// references is read from ("" = /var/lib/flynn/layer-cache).
	LayerCache string `json:"layer_cache,omitempty"`
	// OutDir receives the assets ("" = release-artifacts).
	OutDir string `json:"out_dir,omitempty"`
	// Helper is the flynnrel binary to publish as flynnrel-<os>-<arch>.gz (required
	// from Go: this process is not flynnrel).
	Helper string `json:"helper,omitempty"`
	// SignKey is a minisign secret key file; SignPassword its password.
	SignKey      string `json:"sign_key,omitempty"`
	SignPassword string `json:"sign_password,omitempty"`
	// PublicKey is baked into install-flynn as its default key.
	PublicKey string `json:"public_key,omitempty"`
	// Threads for compression (0 = all CPUs); Level is the gzip level (0 = default, 6).
	Threads int `json:"threads,omitempty"`
	Level   int `json:"level,omitempty"`
	// Layers, "oci://REGISTRY/NAMESPACE/NAME", pushes the layers to that OCI registry instead of
	// layers.tar.gz (credentials from FLYNN_REGISTRY_USER / FLYNN_REGISTRY_TOKEN); see docs/layers.md.
	Layers string `json:"layers,omitempty"`
	// LayersURLTemplate ("https://…/{id}.squashfs") publishes images.json pointing at external
	// storage instead of layers.tar.gz; the operator uploads the layers there.
	LayersURLTemplate string `json:"layers_url_template,omitempty"`
	// Progress, when set, receives progress and may cancel.
	Progress ProgressFunc `json:"-"`
}

// PackagedAsset is one asset of a packaged release.
type PackagedAsset struct {
	Name   string `json:"name"`
	Size   uint64 `json:"size"`
	SHA512 string `json:"sha512"`
}

// PackageReport is what Package did.
type PackageReport struct {
	Version string          `json:"version"`
	OutDir  string          `json:"out_dir"`
	Assets  []PackagedAsset `json:"assets"`
	// Skipped lists binaries missing from the build (left out, not an error).
	Skipped []string `json:"skipped"`
	Layers  []string `json:"layers"`
	Signed  bool     `json:"signed"`
	// Unchanged: OutDir already held exactly these assets.
	Unchanged bool   `json:"unchanged"`
	BytesIn   uint64 `json:"bytes_in"`
	// LayerURLTemplate is the template written into images.json when the layers are not in
	// layers.tar.gz (a registry reference pinning the manifest digest, or LayersURLTemplate).
	LayerURLTemplate string `json:"layer_url_template,omitempty"`
	// PushedLayers are the layers this run uploaded to the registry.
	PushedLayers []string `json:"pushed_layers,omitempty"`
}

// Package packages a build tree into OutDir, reproducibly. Nothing changes in OutDir on error
// or cancel.
func Package(opts PackageOptions) (*PackageReport, error) {
	doc, err := cjson(opts)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(doc))
	cb, user, finish := progressArgs(opts.Progress)
	defer finish()
	var out *C.char
	if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
		return C.flynnrel_package(doc, cb, user, &out, e)
	}); err != nil {
		return nil, err
	}
	var r PackageReport
	if err := decode(out, "package report", &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// VerifyOptions say what a release folder must satisfy beyond its checksums.
type VerifyOptions struct {
	// PublicKey: checksums.sha512.minisig must exist and verify with it.
	PublicKey string `json:"public_key,omitempty"`
	// Repository and Version the signature's trusted comment must name ("" = flynn/flynn, any).
	Repository string `json:"repository,omitempty"`
	Version    string `json:"version,omitempty"`
}

// VerifyReport is what Verify checked.
type VerifyReport struct {
	Dir              string   `json:"dir"`
	Assets           []string `json:"assets"`
	SignatureChecked bool     `json:"signature_checked"`
}

// Verify checks a release folder: every asset against checksums.sha512 (ErrChecksumMismatch,
// ErrNotFound for a missing file or entry) and the signature when a key is given.
func Verify(dir string, opts VerifyOptions) (*VerifyReport, error) {
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	doc, err := cjson(opts)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(doc))
	var out *C.char
	if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
		return C.flynnrel_verify(cdir, doc, &out, e)
	}); err != nil {
		return nil, err
	}
	var r VerifyReport
	if err := decode(out, "verify report", &r); err != nil {
		return nil, err
	}
	return &r, nil
}
