package flynnhost_test

// The commands and the downloader, run in-process against `flynnrel serve` over synthetic
// releases (internal/testrelease).

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/flynn/flynn/libflynnrel/go/flynnhost"
	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	"github.com/flynn/flynn/libflynnrel/go/internal/testrelease"
	docopt "github.com/flynn/go-docopt"
)

const (
	v1 = testrelease.V1
	v2 = testrelease.V2
)

func TestMain(m *testing.M) { os.Exit(testrelease.RunMain(m)) }

// server returns the release server shared by this package's tests.
func server(t *testing.T) *testrelease.Fixture { return testrelease.Shared(t) }

// host is a Host wired to the test server that records its TUF updater's calls.
type host struct {
	*flynnhost.Host
	out     bytes.Buffer
	tufArgs []*docopt.Args
}

func newHost(t *testing.T) *host {
	f := server(t)
	h := &host{}
	h.Host = &flynnhost.Host{
		TUFUpdater: func(a *docopt.Args) error { h.tufArgs = append(h.tufArgs, a); return nil },
		Client:     flynnrel.ClientOptions{APIURL: f.APIURL, WebURL: f.WebURL, IgnoreTokenEnv: true},
		Stdout:     &h.out,
	}
	return h
}

// run runs a command and returns the lines it printed and its error.
func (h *host) run(name string, args ...string) (string, error) {
	h.out.Reset()
	err := h.Run(name, args)
	return h.out.String(), err
}

func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	s, err := testrelease.Snapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func assertUnchanged(t *testing.T, root string, before map[string]string) {
	t.Helper()
	if d := testrelease.Diff(before, snapshot(t, root)); len(d) > 0 {
		t.Fatalf("%s changed: %v", root, d)
	}
}

// runsVersion asserts that the host's flynn-host symlink points at ver and prints it.
func runsVersion(t *testing.T, root, ver string) {
	t.Helper()
	bin := filepath.Join(root, "usr/local/bin")
	for _, n := range []string{"flynn-host", "flynn-init", "flynn-linux-amd64"} {
		if link, err := os.Readlink(filepath.Join(bin, n)); err != nil || link != n+"."+ver {
			t.Fatalf("%s -> %q, %v; want %s.%s", n, link, err, n, ver)
		}
	}
	out, err := exec.Command(filepath.Join(bin, "flynn-host"), "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != ver {
		t.Fatalf("flynn-host version = %q, %v; want %s", out, err, ver)
	}
}

func receipt(t *testing.T, root string) *flynnrel.Receipt {
	t.Helper()
	r, legacy, err := flynnrel.LoadReceipt(filepath.Join(root, "etc/flynn"))
	if err != nil || legacy {
		t.Fatalf("receipt: %+v, legacy %v, %v", r, legacy, err)
	}
	return r
}

func TestDownloadInstallsFromGitHubAndWritesTheReceipt(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	root := t.TempDir()
	out, err := h.run("download", "--github-repo="+testrelease.Repo, "--version="+v1, "--root="+root)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out, "status=installed repository=flynn/flynn version="+v1+"\n") {
		t.Fatalf("output:\n%s", out)
	}
	runsVersion(t, root, v1)
	if r := receipt(t, root); r.Source != "github" || r.Repository != testrelease.Repo || r.Version != v1 {
		t.Fatalf("receipt %+v", r)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/flynn/images."+v1+".json")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	out, err = h.run("download", "--github-repo="+testrelease.Repo, "--version="+v1, "--root="+root)
	if err != nil || !strings.Contains(out, "status=already_installed") {
		t.Fatalf("second download: %v\n%s", err, out)
	}
	assertUnchanged(t, root, before)
}

func TestUpdateCheckThenUpdate(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	root := t.TempDir()
	if _, err := h.run("download", "--github-repo="+testrelease.Repo, "--version="+v1, "--root="+root); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)

	out, err := h.run("update", "--check", "--root="+root)
	var avail *flynnhost.UpdateAvailableError
	if !errors.As(err, &avail) || flynnhost.ExitCode(err) != 100 || avail.Current != v1 || avail.Target != v2 {
		t.Fatalf("update --check: %v (exit %d)", err, flynnhost.ExitCode(err))
	}
	if out != "status=update_available repository=flynn/flynn current="+v1+" target="+v2+"\n" {
		t.Fatalf("update --check printed %q", out)
	}
	assertUnchanged(t, root, before)

	out, err = h.run("update", "--root="+root)
	if err != nil || !strings.HasSuffix(out, "status=updated repository=flynn/flynn from="+v1+" to="+v2+"\n") {
		t.Fatalf("update: %v\n%s", err, out)
	}
	runsVersion(t, root, v2)
	if r := receipt(t, root); r.Version != v2 || r.HighestSeenVersion != v2 || r.Source != "github" {
		t.Fatalf("receipt after update %+v", r)
	}

	out, err = h.run("update", "--check", "--root="+root)
	if err != nil || flynnhost.ExitCode(err) != 0 || out != "status=up_to_date repository=flynn/flynn current="+v2+" target="+v2+"\n" {
		t.Fatalf("update --check after the update: %v %q", err, out)
	}
	if len(h.tufArgs) != 0 {
		t.Fatal("the TUF updater ran for a GitHub install")
	}

	// --source=tuf overrides the receipt: the TUF updater runs and the host stays as it is.
	before = snapshot(t, root)
	if _, err := h.run("update", "--source=tuf", "--root="+root); err != nil || len(h.tufArgs) != 1 {
		t.Fatalf("update --source=tuf: %v, TUF updater calls %d", err, len(h.tufArgs))
	}
	assertUnchanged(t, root, before)
}

func TestUpdateRoutesTUFInstallsToTheTUFUpdater(t *testing.T) {
	t.Parallel()
	h := newHost(t)

	// A receipt saying tuf.
	root := t.TempDir()
	r := &flynnrel.Receipt{Source: "tuf", Repository: "https://tuf.example.com/flynn", Version: v1, InstalledAt: "2024-01-27T10:00:00Z"}
	if err := os.MkdirAll(filepath.Join(root, "etc/flynn"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.Save(filepath.Join(root, "etc/flynn")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	if out, err := h.run("update", "--root="+root); err != nil || out != "" {
		t.Fatalf("update on a tuf install: %v %q", err, out)
	}
	if len(h.tufArgs) != 1 {
		t.Fatalf("TUF updater ran %d times", len(h.tufArgs))
	}
	a := h.tufArgs[0].String
	if a["--repository"] != "https://tuf.example.com/flynn" || a["--config-dir"] != filepath.Join(root, "etc/flynn") ||
		a["--bin-dir"] != filepath.Join(root, "usr/local/bin") || a["--tuf-db"] != filepath.Join(root, "etc/flynn/tuf.db") {
		t.Fatalf("TUF updater args %v", a)
	}
	assertUnchanged(t, root, before)

	// No receipt at all: a legacy TUF install (Flynn's installer left a flynn-host), with the
	// --repository given.
	legacy := t.TempDir()
	if err := os.MkdirAll(filepath.Join(legacy, "usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(legacy, "usr/local/bin/flynn-host"), []byte("#!/bin/sh\necho v20210218.0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := h.run("update", "--root="+legacy, "--repository=https://mirror.example.com/tuf", "--tuf-db=/var/tuf.db"); err != nil {
		t.Fatal(err)
	}
	a = h.tufArgs[1].String
	if a["--repository"] != "https://mirror.example.com/tuf" || a["--tuf-db"] != filepath.Join(legacy, "var/tuf.db") {
		t.Fatalf("legacy TUF args %v", a)
	}
	if ents, _ := os.ReadDir(legacy); len(ents) != 1 {
		t.Fatalf("routing a legacy install wrote %v", ents)
	}
	if _, err := os.Stat(filepath.Join(legacy, "etc")); !os.IsNotExist(err) {
		t.Fatalf("routing a legacy install created etc/: %v", err)
	}

	// Without a TUF updater built in, a TUF install cannot be updated here.
	h.TUFUpdater = nil
	_, err := h.run("update", "--root="+root)
	if err == nil || !strings.Contains(err.Error(), "TUF") {
		t.Fatalf("no TUF updater: %v", err)
	}
}

func TestGitHubUpdateOfATUFInstall(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	root := t.TempDir()
	// A TUF install of V1: the files as Flynn's downloader lays them out, and a tuf receipt.
	c, err := flynnrel.NewClient(testrelease.Repo, h.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Install(flynnrel.InstallOptions{Layout: flynnrel.Layout{Root: root}, Version: v1, NoReceipt: true}); err != nil {
		t.Fatal(err)
	}
	tuf := &flynnrel.Receipt{Source: "tuf", Repository: flynnhost.DefaultTUFRepository, Version: v1, InstalledAt: "2024-01-27T10:00:00Z"}
	if err := tuf.Save(filepath.Join(root, "etc/flynn")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)

	out, err := h.run("github-update", "--repo="+testrelease.Repo, "--check", "--root="+root)
	if flynnhost.ExitCode(err) != 100 || out != "status=update_available repository=flynn/flynn current="+v1+" target="+v2+"\n" {
		t.Fatalf("github-update --check: %v %q", err, out)
	}
	assertUnchanged(t, root, before)

	out, err = h.run("github-update", "--repo="+testrelease.Repo, "--root="+root)
	if err != nil || !strings.HasSuffix(out, "from="+v1+" to="+v2+"\n") {
		t.Fatalf("github-update: %v\n%s", err, out)
	}
	runsVersion(t, root, v2)
	if len(h.tufArgs) != 0 {
		t.Fatal("github-update ran the TUF updater")
	}
	if r := receipt(t, root); r.Source != "github" || r.Repository != testrelease.Repo || r.Version != v2 {
		t.Fatalf("receipt after github-update: %+v", r)
	}
}

func TestTamperedReleaseFailsAndChangesNothing(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	root := t.TempDir()
	if _, err := h.run("download", "--github-repo="+testrelease.TamperedRepo, "--version="+v1, "--root="+root); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	_, err := h.run("update", "--root="+root)
	if !errors.Is(err, flynnrel.ErrChecksumMismatch) || flynnhost.ExitCode(err) != 1 {
		t.Fatalf("update to a tampered release: %v, want ErrChecksumMismatch", err)
	}
	if !strings.Contains(err.Error(), testrelease.TamperedAsset) {
		t.Errorf("the error does not name the asset: %v", err)
	}
	assertUnchanged(t, root, before)
	runsVersion(t, root, v1)

	fresh := filepath.Join(t.TempDir(), "root")
	_, err = h.run("download", "--github-repo="+testrelease.TamperedRepo, "--version="+v2, "--root="+fresh)
	if !errors.Is(err, flynnrel.ErrChecksumMismatch) {
		t.Fatalf("download of a tampered release: %v", err)
	}
	if _, err := os.Lstat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed download left %s: %v", fresh, snapshot(t, fresh))
	}
}

func TestUsageErrors(t *testing.T) {
	h := newHost(t)
	// docopt prints the usage line to os.Stdout itself: capture it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = stdout }()
	for _, c := range [][]string{
		{"update", "--source=ftp"},
		{"update", "--bogus"},
		{"download", "--version=" + v1},
		{"no-such-command"},
	} {
		_, err := h.run(c[0], c[1:]...)
		var u *flynnhost.UsageError
		if !errors.As(err, &u) || flynnhost.ExitCode(err) != 2 || err.Error() == "" {
			t.Errorf("%v: %v (exit %d), want a usage error", c, err, flynnhost.ExitCode(err))
		}
	}
	w.Close()
	os.Stdout = stdout
	printed, _ := io.ReadAll(r)
	for _, want := range []string{"usage: flynn-host update [", "usage: flynn-host download --github-repo"} {
		if !strings.Contains(string(printed), want) {
			t.Errorf("docopt did not print %q:\n%s", want, printed)
		}
	}
}

func TestDownloaderMethods(t *testing.T) {
	t.Parallel()
	f := server(t)
	c, err := flynnrel.NewClient(testrelease.Repo, flynnrel.ClientOptions{APIURL: f.APIURL, WebURL: f.WebURL, IgnoreTokenEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	root := t.TempDir()
	bin, conf, layers := filepath.Join(root, "bin"), filepath.Join(root, "conf"), filepath.Join(root, "layers")
	d := flynnhost.NewDownloader(c, v1, flynnrel.Layout{BinDir: bin, ConfigDir: conf, LayerDir: layers})

	bins, err := d.DownloadBinaries(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(bins) != 3 {
		t.Fatalf("binaries %v", bins)
	}
	for _, n := range []string{"flynn-host", "flynn-init", "flynn-linux-amd64"} {
		st, err := os.Stat(bins[n])
		if bins[n] != filepath.Join(bin, n+"."+v1) || err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %q %v", n, bins[n], err)
		}
	}
	if out, err := exec.Command(bins["flynn-host"], "version").Output(); err != nil || strings.TrimSpace(string(out)) != v1 {
		t.Fatalf("flynn-host version: %q %v", out, err)
	}

	confs, err := d.DownloadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	if confs["bootstrap-manifest.json"] != filepath.Join(conf, "bootstrap-manifest.json") ||
		confs["images.json"] != filepath.Join(conf, "images."+v1+".json") || len(confs) != 2 {
		t.Fatalf("config %v", confs)
	}

	paths, err := d.DownloadLayers(layers)
	if err != nil {
		t.Fatal(err)
	}
	// Every layer images.json names, at its length and sha512_256.
	want := layerSpecs(t, confs["images.json"])
	var wantPaths []string
	for id := range want {
		wantPaths = append(wantPaths, filepath.Join(layers, id+".squashfs"))
	}
	sort.Strings(wantPaths)
	if strings.Join(paths, "\n") != strings.Join(wantPaths, "\n") {
		t.Fatalf("layers %v, want %v", paths, wantPaths)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimSuffix(filepath.Base(p), ".squashfs")
		sum := sha512.Sum512_256(b)
		if int64(len(b)) != want[id].Length || hex.EncodeToString(sum[:]) != want[id].Hashes.SHA512_256 {
			t.Fatalf("%s: %d bytes, sha512_256 %x; images.json says %+v", p, len(b), sum, want[id])
		}
	}
	if _, err := os.Stat(filepath.Join(conf, "install-source.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the downloader wrote a receipt: %v", err)
	}
}

type layerSpec struct {
	ID     string `json:"id"`
	Length int64  `json:"length"`
	Hashes struct {
		SHA512_256 string `json:"sha512_256"`
	} `json:"hashes"`
}

func layerSpecs(t *testing.T, imagesJSON string) map[string]layerSpec {
	t.Helper()
	b, err := os.ReadFile(imagesJSON)
	if err != nil {
		t.Fatal(err)
	}
	type rootfs []struct {
		Layers []layerSpec `json:"layers"`
	}
	// Flynn's images.json: a map of ct.Artifact, whose manifest lists the layers.
	var images map[string]struct {
		Manifest struct {
			Rootfs rootfs `json:"rootfs"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal(b, &images); err != nil {
		t.Fatal(err)
	}
	m := map[string]layerSpec{}
	for _, img := range images {
		for _, r := range img.Manifest.Rootfs {
			for _, l := range r.Layers {
				m[l.ID] = l
			}
		}
	}
	if len(m) == 0 {
		t.Fatalf("%s names no layers", imagesJSON)
	}
	return m
}

func TestExportForGitHubRelease(t *testing.T) {
	t.Parallel()
	f := server(t)
	work := t.TempDir()
	build, out := filepath.Join(work, "build"), filepath.Join(work, "out")
	const ver = "v2024.03.01.0"
	if b, err := exec.Command(filepath.Join(f.RepoRoot, "script/make-synthetic-build"), ver, build).CombinedOutput(); err != nil {
		t.Fatalf("make-synthetic-build: %v\n%s", err, b)
	}
	var mu sync.Mutex
	calls := 0
	r, err := flynnhost.ExportForGitHubRelease(flynnrel.PackageOptions{
		Version: ver, Repository: "acme/flynn", BuildDir: build, LayerCache: filepath.Join(build, "layer-cache"), OutDir: out, Helper: f.Helper,
		Progress: func(string, uint64, uint64) bool { mu.Lock(); calls++; mu.Unlock(); return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != ver || r.OutDir != out || r.Signed || calls == 0 {
		t.Fatalf("report %+v, %d progress calls", r, calls)
	}
	names := map[string]bool{}
	for _, a := range r.Assets {
		names[a.Name] = true
		if a.Name != "checksums.sha512" {
			b, err := os.ReadFile(filepath.Join(out, a.Name))
			sum := sha512.Sum512(b)
			if err != nil || hex.EncodeToString(sum[:]) != a.SHA512 || int64(len(b)) != int64(a.Size) {
				t.Errorf("%s does not match the report: %v", a.Name, err)
			}
		}
	}
	for _, n := range []string{"flynn-host-linux-amd64.gz", "layers.tar.gz", "images.json.gz", "checksums.sha512", "install-flynn", "flynnrel-linux-amd64.gz"} {
		if !names[n] {
			t.Errorf("asset %s missing from %v", n, names)
		}
	}
	if err := testrelease.Tamper(filepath.Join(out, "images.json.gz")); err != nil {
		t.Fatal(err)
	}
	if _, err := flynnhost.VerifyGitHubRelease(out, flynnrel.VerifyOptions{}); !errors.Is(err, flynnrel.ErrChecksumMismatch) {
		t.Fatalf("verify after tampering: %v, want ErrChecksumMismatch", err)
	}
}

// A refused downgrade carries flynn-host's words for the library's hint, and the command they
// name works as printed.
func TestDowngradeAdviceRunsAsPrinted(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	root := t.TempDir()
	if _, err := h.run("download", "--github-repo="+testrelease.Repo, "--version="+v1, "--root="+root); err != nil {
		t.Fatal(err)
	}
	if _, err := h.run("update", "--root="+root); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	_, err := h.run("update", "--version="+v1, "--root="+root)
	var e *flynnrel.Error
	if !errors.Is(err, flynnrel.ErrDowngradeRefused) || !errors.As(err, &e) || e.Hint == nil ||
		e.Hint.Kind != flynnrel.HintAllowDowngrade || e.Hint.Version != v1 {
		t.Fatalf("update --version=%s: %v (hint %+v), want a refused downgrade hinting allow_downgrade", v1, err, e)
	}
	if strings.Contains(e.Message, "--") {
		t.Fatalf("the library's message names a flag: %q", e.Message)
	}
	assertUnchanged(t, root, before)
	msg := err.Error()
	start := strings.Index(msg, "`flynn-host ")
	if start < 0 || !strings.HasPrefix(msg[len(e.Message):], "; ") {
		t.Fatalf("no flynn-host command after the message: %q", msg)
	}
	cmd := msg[start+1:]
	cmd = cmd[:strings.Index(cmd, "`")]
	words := strings.Fields(cmd)
	if len(words) < 2 || words[0] != "flynn-host" {
		t.Fatalf("advice %q", cmd)
	}
	out, err := h.run(words[1], append(words[2:], "--root="+root)...)
	if err != nil || !strings.HasSuffix(out, "to="+v1+"\n") {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	runsVersion(t, root, v1)
}

// Every hint kind of the library has flynn-host words, and none uses the CLI's spelling of a
// flag that flynn-host spells otherwise.
func TestEveryHintKindIsWorded(t *testing.T) {
	for _, h := range []flynnrel.Hint{
		{Kind: flynnrel.HintAllowDowngrade, Version: "v1"},
		{Kind: flynnrel.HintNameVersion, Version: "v1"},
		{Kind: flynnrel.HintChooseVersion},
		{Kind: flynnrel.HintRotatePinnedKey, Key: "KEY"},
		{Kind: flynnrel.HintRepairReceipt},
		{Kind: flynnrel.HintFixReceiptField, Field: "repository"},
		{Kind: flynnrel.HintTUFRepositoryURL},
		{Kind: flynnrel.HintChooseRoot},
		{Kind: flynnrel.HintInstallFirst},
		{Kind: flynnrel.HintCheckRepository},
		{Kind: flynnrel.HintCheckAPIURL},
	} {
		h := h
		a := flynnhost.Advice(&flynnrel.Error{Code: flynnrel.StatusInvalidArgument, Message: "m", Hint: &h})
		if a == "" {
			t.Errorf("%s: no advice", h.Kind)
		}
		for _, cliOnly := range []string{"flynnrel update", "--version ", "--root "} {
			if strings.Contains(a, cliOnly) {
				t.Errorf("%s: %q uses the flynnrel CLI's %q", h.Kind, a, cliOnly)
			}
		}
	}
	if a := flynnhost.Advice(errors.New("plain")); a != "" {
		t.Errorf("advice for a plain error: %q", a)
	}
}
