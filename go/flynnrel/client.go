package flynnrel

// #include <stdlib.h>
// #include "flynnrel.h"
import "C"

import (
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// ClientOptions configure a Client. Zero values mean the library's defaults.
type ClientOptions struct {
	// APIURL is the GitHub API base ("" = https://api.github.com; GitHub Enterprise:
	// https://HOST/api/v3). Only https is accepted, except to loopback addresses.
	APIURL string
	// WebURL is the web base ("" = derived from APIURL, else https://github.com).
	WebURL string
	// Token is the GitHub token ("" = FLYNN_GITHUB_TOKEN, GH_TOKEN, GITHUB_TOKEN, unless
	// IgnoreTokenEnv). It is sent only to the API host and never logged.
	Token string
	// IgnoreTokenEnv stops the library from reading a token from the environment.
	IgnoreTokenEnv bool
	// Timeout is the read timeout of a request (0 = 60 s).
	Timeout time.Duration
	// ConnectTimeout is the connect timeout (0 = 15 s).
	ConnectTimeout time.Duration
	// Retries is how often a transient failure is retried (0 = 4; negative = never).
	Retries int
	// RetryDelay is the first backoff delay (0 = 500 ms).
	RetryDelay time.Duration
}

type clientJSON struct {
	Repository         string  `json:"repository"`
	APIURL             string  `json:"api_url,omitempty"`
	WebURL             string  `json:"web_url,omitempty"`
	Token              string  `json:"token,omitempty"`
	TokenFromEnv       bool    `json:"token_from_env"`
	TimeoutSecs        *uint64 `json:"timeout_secs,omitempty"`
	ConnectTimeoutSecs *uint64 `json:"connect_timeout_secs,omitempty"`
	Retries            *uint32 `json:"retries,omitempty"`
	RetryDelayMS       *uint64 `json:"retry_delay_ms,omitempty"`
}

// seconds rounds a positive duration up to whole seconds (nil for 0 = default).
func seconds(d time.Duration) *uint64 {
	if d <= 0 {
		return nil
	}
	s := uint64((d + time.Second - 1) / time.Second)
	return &s
}

// Client talks to one GitHub repository's releases. It is safe for concurrent use.
type Client struct {
	mu      sync.RWMutex // held for reading by calls, for writing by Close
	ptr     *C.flynnrel_client
	cleanup clientCleanup
	repo    string
}

// NewClient creates a client for repo (OWNER/NAME). A bad repository or option is
// ErrInvalidArgument. Call Close when done.
func NewClient(repo string, opts ClientOptions) (*Client, error) {
	j := clientJSON{
		Repository:         repo,
		APIURL:             opts.APIURL,
		WebURL:             opts.WebURL,
		Token:              opts.Token,
		TokenFromEnv:       !opts.IgnoreTokenEnv,
		TimeoutSecs:        seconds(opts.Timeout),
		ConnectTimeoutSecs: seconds(opts.ConnectTimeout),
	}
	if opts.Retries != 0 {
		r := uint32(0)
		if opts.Retries > 0 {
			r = uint32(opts.Retries)
		}
		j.Retries = &r
	}
	if opts.RetryDelay > 0 {
		ms := uint64(opts.RetryDelay / time.Millisecond)
		j.RetryDelayMS = &ms
	}
	doc, err := cjson(j)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(doc))
	var ptr *C.flynnrel_client
	if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
		return C.flynnrel_client_new(doc, &ptr, e)
	}); err != nil {
		return nil, err
	}
	c := &Client{ptr: ptr, repo: repo}
	c.cleanup = addClientCleanup(c, ptr)
	return c, nil
}

// Repository returns the OWNER/NAME the client was created for.
func (c *Client) Repository() string { return c.repo }

// Close frees the client, after calls in flight returned. Later calls fail with
// ErrInvalidArgument. Closing twice is harmless.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return nil
	}
	c.cleanup.stop(c)
	C.flynnrel_client_free(c.ptr)
	c.ptr = nil
	runtime.KeepAlive(c)
	return nil
}

// use runs f with the live C handle under the read lock.
func (c *Client) use(f func(*C.flynnrel_client) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return &Error{Code: StatusInvalidArgument, Message: "flynnrel: the client is closed"}
	}
	err := f(c.ptr)
	runtime.KeepAlive(c)
	return err
}

// Release is a GitHub release, as GitHub's REST API returns it.
type Release struct {
	URL         string    `json:"url"`
	HTMLURL     string    `json:"html_url"`
	ID          int64     `json:"id"`
	TagName     string    `json:"tag_name"`
	Name        string    `json:"name"`
	Body        string    `json:"body"`
	Draft       bool      `json:"draft"`
	Prerelease  bool      `json:"prerelease"`
	CreatedAt   time.Time `json:"created_at"`
	PublishedAt time.Time `json:"published_at"`
	Assets      []Asset   `json:"assets"`
}

// Asset is a file of a release.
type Asset struct {
	URL                string `json:"url"`
	BrowserDownloadURL string `json:"browser_download_url"`
	ID                 int64  `json:"id"`
	Name               string `json:"name"`
	Label              string `json:"label"`
	State              string `json:"state"`
	ContentType        string `json:"content_type"`
	Size               int64  `json:"size"`
	// Digest is GitHub's "sha256:<hex>" ("" when GitHub gives none).
	Digest        string    `json:"digest"`
	DownloadCount int64     `json:"download_count"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Asset returns the release's asset called name, or nil.
func (r *Release) Asset(name string) *Asset {
	for i := range r.Assets {
		if r.Assets[i].Name == name {
			return &r.Assets[i]
		}
	}
	return nil
}

// LatestRelease returns the release GitHub marks latest (which need not be the highest version:
// updates choose by version order). No release is ErrNotFound.
func (c *Client) LatestRelease() (*Release, error) {
	var r Release
	err := c.use(func(p *C.flynnrel_client) error {
		var out *C.char
		if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
			return C.flynnrel_client_latest_release(p, &out, e)
		}); err != nil {
			return err
		}
		return decode(out, "release", &r)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ReleaseByTag returns the release tagged tag; none is ErrNotFound.
func (c *Client) ReleaseByTag(tag string) (*Release, error) {
	ctag := C.CString(tag)
	defer C.free(unsafe.Pointer(ctag))
	var r Release
	err := c.use(func(p *C.flynnrel_client) error {
		var out *C.char
		if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
			return C.flynnrel_client_release_by_tag(p, ctag, &out, e)
		}); err != nil {
			return err
		}
		return decode(out, "release", &r)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Releases returns every non-draft release (all pages), in GitHub's order.
func (c *Client) Releases() ([]Release, error) {
	var rs []Release
	err := c.use(func(p *C.flynnrel_client) error {
		var out *C.char
		if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
			return C.flynnrel_client_releases(p, &out, e)
		}); err != nil {
			return err
		}
		return decode(out, "releases", &rs)
	})
	if err != nil {
		return nil, err
	}
	return rs, nil
}

// Layout names a host's directories. Empty fields take the defaults of docs/host-layout.md#directories (under Root when
// given): /usr/local/bin, /etc/flynn, /var/lib/flynn/layer-cache.
type Layout struct {
	Root      string `json:"root,omitempty"`
	BinDir    string `json:"bin_dir,omitempty"`
	ConfigDir string `json:"config_dir,omitempty"`
	LayerDir  string `json:"layer_dir,omitempty"`
}

// UpdateOptions say how to check for or apply an update. They are marshalled as they are into
// the library's update request (docs/c-abi.md#requests-and-outcomes): zero values mean the
// library's defaults.
type UpdateOptions struct {
	Layout
	// Check only reports whether an update is available.
	Check bool `json:"check,omitempty"`
	// Force reinstalls even when up to date (and allows updating a development build).
	Force bool `json:"force,omitempty"`
	// Version installs exactly this version instead of the channel's newest.
	Version string `json:"version,omitempty"`
	// Source overrides the receipt's source: "github" checks GitHub for a TUF install.
	Source string `json:"source,omitempty"`
	// AllowDowngrade allows an explicit Version lower than the installed one.
	AllowDowngrade bool `json:"allow_downgrade,omitempty"`
	// PublicKey is a minisign key releases must be signed with (the receipt's pin applies too).
	PublicKey string `json:"public_key,omitempty"`
	// Repository and APIURL override the receipt's.
	Repository string `json:"repository,omitempty"`
	APIURL     string `json:"api_url,omitempty"`
	// TUFRepository is reported for a legacy install without a receipt ("" = Flynn's default).
	TUFRepository string `json:"tuf_repository,omitempty"`
	// SmokeTimeoutSecs bounds `flynn-host.<ver> version` after the switch (0 = 30 s).
	SmokeTimeoutSecs uint64 `json:"smoke_timeout_secs,omitempty"`
	// ReportSHA512 set to false skips hashing the files written for the result (nil = true).
	ReportSHA512 *bool `json:"report_sha512,omitempty"`
	// RegistryMirror pulls a registry release's manifest and layers by digest through this
	// pull-through cache ("" = FLYNN_REGISTRY_MIRROR, else the registry images.json names).
	RegistryMirror string `json:"registry_mirror,omitempty"`
	// Progress, when set, receives progress and may cancel (Update only).
	Progress ProgressFunc `json:"-"`
}

// UpdateStatus is the outcome of a check or an update.
type UpdateStatus string

// The outcomes of CheckForUpdate and Update.
const (
	// UpdateUpToDate: nothing newer (by version order) than what runs.
	UpdateUpToDate UpdateStatus = "up_to_date"
	// UpdateAvailable: (check) Target would be installed.
	UpdateAvailable UpdateStatus = "available"
	// UpdateUpdated: the host was switched From → To.
	UpdateUpdated UpdateStatus = "updated"
	// UpdateTUF: the install's source is TUF; the caller runs its TUF updater.
	UpdateTUF UpdateStatus = "tuf"
)

// FileKind says what a written file is.
type FileKind string

// The kinds of File.
const (
	// FileBinary is a versioned binary, <bin>/<name>.<version>.
	FileBinary FileKind = "binary"
	// FileLink is an unversioned symlink, <bin>/<name> -> <name>.<version> (empty SHA512).
	FileLink FileKind = "link"
	// FileManifest is images.<version>.json or bootstrap-manifest.json in the config dir.
	FileManifest FileKind = "manifest"
	// FileLayer is an image layer, <layer-dir>/<id>.squashfs.
	FileLayer FileKind = "layer"
)

// File is a file the library wrote, with the lowercase hex sha512 of its content (empty for a
// symlink) and its kind.
type File struct {
	Path   string   `json:"path"`
	SHA512 string   `json:"sha512"`
	Kind   FileKind `json:"kind"`
}

// UpdateResult is what CheckForUpdate or Update found or did; which fields are set depends on
// Status.
type UpdateResult struct {
	Status UpdateStatus `json:"status"`
	// Repository is OWNER/NAME (the TUF URL for UpdateTUF).
	Repository string `json:"repository"`
	// Current and Target: UpdateUpToDate and UpdateAvailable.
	Current string `json:"current"`
	Target  string `json:"target"`
	// PointerExpiresAt (RFC 3339): UpdateUpToDate and UpdateAvailable, when the channel was read
	// from its signed pointer (a public key is configured): the publisher must re-sign it by then,
	// or checks fail with ErrChannelPointerExpired (docs/channels.md).
	PointerExpiresAt string `json:"pointer_expires_at,omitempty"`
	// From, To, Files, SkippedLayers, Removed, SignatureVerified, Recovered: UpdateUpdated.
	From              string   `json:"from"`
	To                string   `json:"to"`
	Files             []File   `json:"files"`
	SkippedLayers     []string `json:"skipped_layers"`
	Removed           []string `json:"removed"`
	SignatureVerified bool     `json:"signature_verified"`
	// Recovered describes an interrupted earlier update finished or undone first ("Clean", or an
	// object {"Completed": ver} / {"RolledBack": ver}).
	Recovered interface{} `json:"recovered"`
	// Message tells the operator what to do (UpdateTUF).
	Message string `json:"message"`
}

// CheckForUpdate reports whether an update is available, changing nothing but the API's ETag
// cache (docs/host-layout.md#the-etag-cache). The
// repository and API base come from the receipt; the client supplies the token and timeouts. A
// TUF install gives UpdateTUF.
func (c *Client) CheckForUpdate(opts UpdateOptions) (*UpdateResult, error) {
	opts.Check, opts.Progress = true, nil
	return c.Update(opts)
}

// Update checks for (opts.Check) or applies an update, all or nothing: on any error, including
// ErrCancelled, ErrChecksumMismatch or ErrSmokeTestFailed, the host is as it was. A second
// update of the same host at once fails with ErrLocked.
func (c *Client) Update(opts UpdateOptions) (*UpdateResult, error) {
	var r UpdateResult
	if err := c.request(opts, opts.Progress, requestUpdate, "update outcome", &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// A request-taking C call: flynnrel_client_update or flynnrel_client_install.
type requestCall func(p *C.flynnrel_client, doc *C.char, cb C.flynnrel_progress_cb, user unsafe.Pointer, out **C.char, e **C.flynnrel_error) C.flynnrel_status

func requestUpdate(p *C.flynnrel_client, doc *C.char, cb C.flynnrel_progress_cb, user unsafe.Pointer, out **C.char, e **C.flynnrel_error) C.flynnrel_status {
	return C.flynnrel_client_update(p, doc, cb, user, out, e)
}

func requestInstall(p *C.flynnrel_client, doc *C.char, cb C.flynnrel_progress_cb, user unsafe.Pointer, out **C.char, e **C.flynnrel_error) C.flynnrel_status {
	return C.flynnrel_client_install(p, doc, cb, user, out, e)
}

// request marshals opts as the library's request document, runs f with the progress callback
// and decodes the outcome into result, refusing unknown fields.
func (c *Client) request(opts interface{}, progress ProgressFunc, f requestCall, what string, result interface{}) error {
	doc, err := cjson(opts)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(doc))
	return c.use(func(p *C.flynnrel_client) error {
		cb, user, finish := progressArgs(progress)
		defer finish()
		var out *C.char
		if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
			return f(p, doc, cb, user, &out, e)
		}); err != nil {
			return err
		}
		return decodeStrict(out, what, result)
	})
}

// InstallOptions say what to install where. They are marshalled as they are into the
// library's install request (docs/c-abi.md#requests-and-outcomes): zero values mean the
// library's defaults.
type InstallOptions struct {
	Layout
	// Version installs this tag; else Channel's newest release by version order.
	Version string `json:"version,omitempty"`
	// Channel is "stable" (default) or "nightly".
	Channel string `json:"channel,omitempty"`
	// PublicKey is a minisign key the release must be signed with.
	PublicKey string `json:"public_key,omitempty"`
	// NoReceipt lays the release out without writing the receipt (Flynn's downloader).
	NoReceipt bool `json:"no_receipt,omitempty"`
	// ReportSHA512 set to false skips hashing the files written for the report (nil = true).
	ReportSHA512 *bool `json:"report_sha512,omitempty"`
	// MaxBinaryBytes refuses a binary that decompresses to more (0 = 1 GiB).
	MaxBinaryBytes uint64 `json:"max_binary_bytes,omitempty"`
	// Parts, when set, limits the run to these parts of the release: "binaries" (binaries and
	// their symlinks), "config" (bootstrap-manifest.json and images.<ver>.json), "layers" (the
	// layers images.json references). Only with NoReceipt (Flynn's downloader methods); another
	// name is refused (ErrInvalidArgument). nil or empty = everything (omitempty leaves an empty
	// list out of the request).
	Parts []string `json:"parts,omitempty"`
	// RegistryMirror pulls a registry release's manifest and layers by digest through this
	// pull-through cache ("" = FLYNN_REGISTRY_MIRROR, else the registry images.json names).
	RegistryMirror string `json:"registry_mirror,omitempty"`
	// Progress, when set, receives progress and may cancel.
	Progress ProgressFunc `json:"-"`
}

// InstallReport is what Install did.
type InstallReport struct {
	Repository string `json:"repository"`
	Version    string `json:"version"`
	// AlreadyInstalled: the host already ran this version from this source; nothing was done.
	AlreadyInstalled bool `json:"already_installed"`
	// Files written, with their sha512 (symlinks with an empty hash).
	Files []File `json:"files"`
	// SkippedLayers were already present and valid.
	SkippedLayers     []string `json:"skipped_layers"`
	SignatureVerified bool     `json:"signature_verified"`
	// Receipt is the receipt's path ("" with NoReceipt).
	Receipt string `json:"receipt"`
}

// Install downloads, verifies and lays out a release and writes the receipt (unless NoReceipt).
// Nothing changes on error or cancel.
func (c *Client) Install(opts InstallOptions) (*InstallReport, error) {
	var r InstallReport
	if err := c.request(opts, opts.Progress, requestInstall, "install report", &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DownloadAsset downloads the asset of release tag into destDir/<asset>, verified against the
// release's checksums.sha512 (and GitHub's digest), and returns its path and sha512. A file
// that does not match is ErrChecksumMismatch and is not left in destDir.
func (c *Client) DownloadAsset(tag, asset, destDir string, progress ProgressFunc) (path, sha512 string, err error) {
	ctag, casset, cdest := C.CString(tag), C.CString(asset), C.CString(destDir)
	defer C.free(unsafe.Pointer(ctag))
	defer C.free(unsafe.Pointer(casset))
	defer C.free(unsafe.Pointer(cdest))
	var r struct {
		Path   string `json:"path"`
		SHA512 string `json:"sha512"`
		Size   uint64 `json:"size"`
	}
	err = c.use(func(p *C.flynnrel_client) error {
		cb, user, finish := progressArgs(progress)
		defer finish()
		var out *C.char
		if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
			return C.flynnrel_client_download_asset(p, ctag, casset, cdest, cb, user, &out, e)
		}); err != nil {
			return err
		}
		return decode(out, "download result", &r)
	})
	if err != nil {
		return "", "", err
	}
	return r.Path, r.SHA512, nil
}
