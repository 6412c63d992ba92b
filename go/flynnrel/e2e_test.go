package flynnrel_test

// End-to-end tests against `flynnrel serve` over synthetic releases (internal/testrelease).

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	"github.com/flynn/flynn/libflynnrel/go/internal/testrelease"
)

func TestMain(m *testing.M) { os.Exit(testrelease.RunMain(m)) }

// server returns the release server shared by this package's tests.
func server(t *testing.T) *testrelease.Fixture { return testrelease.Shared(t) }

func client(t *testing.T, repo string) *flynnrel.Client {
	t.Helper()
	f := server(t)
	c, err := flynnrel.NewClient(repo, flynnrel.ClientOptions{APIURL: f.APIURL, WebURL: f.WebURL, IgnoreTokenEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
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

func sha512File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.Sum512(b)
	return hex.EncodeToString(h[:])
}

// recorder is a ProgressFunc that records its calls; it may run on several threads.
type recorder struct {
	mu     sync.Mutex
	calls  int
	phases map[string]int
	bad    []string
	stopAt int // return false on this call (0: never)
}

func (r *recorder) fn(phase string, done, total uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.phases == nil {
		r.phases = map[string]int{}
	}
	r.phases[phase]++
	if phase == "" || (total > 0 && done > total) {
		r.bad = append(r.bad, fmt.Sprintf("%q %d/%d", phase, done, total))
	}
	return r.stopAt == 0 || r.calls < r.stopAt
}

func TestReleases(t *testing.T) {
	c := client(t, testrelease.Repo)
	rs, err := c.Releases()
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]bool{}
	for _, r := range rs {
		tags[r.TagName] = true
	}
	// Exactly the served releases (V1, V2 and the fixture's tampered copies), each once.
	served := server(t).Repos[testrelease.Repo]
	for _, tag := range served {
		if !tags[tag] {
			t.Fatalf("Releases() tags = %v, missing %s", tags, tag)
		}
	}
	if len(rs) != len(served) || len(tags) != len(served) || !tags[testrelease.V1] || !tags[testrelease.V2] {
		t.Fatalf("Releases() tags = %v, want %v", tags, served)
	}
	// GitHub's latest is the fixture's backport (V1, published after V2).
	latest, err := c.LatestRelease()
	if err != nil || latest.TagName != testrelease.Latest || latest.CreatedAt.IsZero() {
		t.Fatalf("LatestRelease() = %+v, %v", latest, err)
	}
	r, err := c.ReleaseByTag(testrelease.V1)
	if err != nil {
		t.Fatal(err)
	}
	sums := r.Asset("checksums.sha512")
	st, _ := os.Stat(filepath.Join(server(t).ReleaseDir(testrelease.Repo, testrelease.V1), "checksums.sha512"))
	if sums == nil || sums.Size != st.Size() || sums.BrowserDownloadURL == "" || r.Asset("nope") != nil {
		t.Fatalf("asset checksums.sha512 = %+v (file %d bytes)", sums, st.Size())
	}
	if _, err := c.ReleaseByTag("v2099.01.01.0"); !errors.Is(err, flynnrel.ErrNotFound) {
		t.Fatalf("ReleaseByTag(missing) = %v, want ErrNotFound", err)
	}
}

func TestInstallReportsProgressAndWritesTheReceipt(t *testing.T) {
	t.Parallel()
	c := client(t, testrelease.Repo)
	root := t.TempDir()
	var rec recorder
	r, err := c.Install(flynnrel.InstallOptions{Layout: flynnrel.Layout{Root: root}, Version: testrelease.V1, Progress: rec.fn})
	if err != nil {
		t.Fatal(err)
	}
	if rec.calls == 0 || len(rec.bad) > 0 {
		t.Fatalf("progress: %d calls, bad %v", rec.calls, rec.bad)
	}
	t.Logf("progress: %d calls over phases %v", rec.calls, rec.phases)
	if r.Version != testrelease.V1 || r.Repository != testrelease.Repo || r.AlreadyInstalled || len(r.Files) == 0 {
		t.Fatalf("report %+v", r)
	}
	for _, f := range r.Files {
		if f.SHA512 != "" && sha512File(t, f.Path) != f.SHA512 {
			t.Errorf("%s: sha512 differs from the report", f.Path)
		}
	}
	link, err := os.Readlink(filepath.Join(root, "usr/local/bin/flynn-host"))
	if err != nil || link != "flynn-host."+testrelease.V1 {
		t.Fatalf("flynn-host -> %q, %v", link, err)
	}
	rc, legacy, err := flynnrel.LoadReceipt(filepath.Join(root, "etc/flynn"))
	if err != nil || legacy || rc.Source != "github" || rc.Repository != testrelease.Repo || rc.Version != testrelease.V1 ||
		rc.APIURL != server(t).APIURL {
		t.Fatalf("receipt %+v, legacy %v, %v", rc, legacy, err)
	}
	again, err := c.Install(flynnrel.InstallOptions{Layout: flynnrel.Layout{Root: root}, Version: testrelease.V1})
	if err != nil || !again.AlreadyInstalled {
		t.Fatalf("second install: %+v, %v", again, err)
	}
}

// Parts limits a download to some parts of the release: only their files are written, and a
// subset with the receipt is refused without changing anything.
func TestInstallParts(t *testing.T) {
	t.Parallel()
	c := client(t, testrelease.Repo)
	root := t.TempDir()
	r, err := c.Install(flynnrel.InstallOptions{Layout: flynnrel.Layout{Root: root}, Version: testrelease.V1,
		NoReceipt: true, Parts: []string{"config"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range r.Files {
		rel, _ := filepath.Rel(root, f.Path)
		got[rel] = true
	}
	want := map[string]bool{"etc/flynn/bootstrap-manifest.json": true, "etc/flynn/images." + testrelease.V1 + ".json": true}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("config only wrote %v, want %v", got, want)
	}
	for _, absent := range []string{"usr", "var", "etc/flynn/install-source.json"} {
		if _, err := os.Lstat(filepath.Join(root, absent)); !os.IsNotExist(err) {
			t.Errorf("%s exists after a config-only download (%v)", absent, err)
		}
	}
	before := snapshot(t, root)
	for _, o := range []flynnrel.InstallOptions{
		{Layout: flynnrel.Layout{Root: root}, Version: testrelease.V1, Parts: []string{"layers"}},
		{Layout: flynnrel.Layout{Root: root}, Version: testrelease.V1, NoReceipt: true, Parts: []string{"binaries", "manifests"}},
	} {
		if _, err := c.Install(o); !errors.Is(err, flynnrel.ErrInvalidArgument) || !strings.Contains(err.Error(), "parts") {
			t.Fatalf("parts %v (no_receipt %v): %v, want ErrInvalidArgument naming parts", o.Parts, o.NoReceipt, err)
		}
		assertUnchanged(t, root, before)
	}
}

func TestCancelledInstallChangesNothing(t *testing.T) {
	t.Parallel()
	c := client(t, testrelease.Repo)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "marker"), "keep")
	before := snapshot(t, root)
	for _, stopAt := range []int{1, 3} {
		rec := recorder{stopAt: stopAt}
		_, err := c.Install(flynnrel.InstallOptions{Layout: flynnrel.Layout{Root: root}, Version: testrelease.V1, Progress: rec.fn})
		if !errors.Is(err, flynnrel.ErrCancelled) {
			t.Fatalf("cancel at call %d: %v, want ErrCancelled", stopAt, err)
		}
		if rec.calls != stopAt {
			t.Errorf("callback called %d times after cancelling at call %d", rec.calls, stopAt)
		}
		assertUnchanged(t, root, before)
	}
}

func TestProgressPanicIsReraisedAndChangesNothing(t *testing.T) {
	t.Parallel()
	c := client(t, testrelease.Repo)
	root := t.TempDir()
	before := snapshot(t, root)
	got := func() (v interface{}) {
		defer func() { v = recover() }()
		_, _ = c.Install(flynnrel.InstallOptions{Layout: flynnrel.Layout{Root: root}, Version: testrelease.V1,
			Progress: func(string, uint64, uint64) bool { panic("boom from progress") }})
		return nil
	}()
	if got != "boom from progress" {
		t.Fatalf("recovered %v, want the callback's panic", got)
	}
	assertUnchanged(t, root, before)
	// The client is still usable (the read lock was released).
	if _, err := c.ReleaseByTag(testrelease.V1); err != nil {
		t.Fatal(err)
	}
}

func TestCheckForUpdateThenUpdate(t *testing.T) {
	t.Parallel()
	c := client(t, testrelease.Repo)
	root := t.TempDir()
	layout := flynnrel.Layout{Root: root}
	if _, err := c.Install(flynnrel.InstallOptions{Layout: layout, Version: testrelease.V1}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	chk, err := c.CheckForUpdate(flynnrel.UpdateOptions{Layout: layout})
	if err != nil || chk.Status != flynnrel.UpdateAvailable || chk.Current != testrelease.V1 || chk.Target != testrelease.V2 {
		t.Fatalf("check: %+v, %v", chk, err)
	}
	assertUnchanged(t, root, before)

	// Cancelled mid-way: the host still runs V1, byte for byte.
	rec := recorder{stopAt: 2}
	if _, err := c.Update(flynnrel.UpdateOptions{Layout: layout, Progress: rec.fn}); !errors.Is(err, flynnrel.ErrCancelled) {
		t.Fatalf("cancelled update: %v, want ErrCancelled", err)
	}
	assertUnchanged(t, root, before)

	var prog recorder
	up, err := c.Update(flynnrel.UpdateOptions{Layout: layout, Progress: prog.fn})
	if err != nil || up.Status != flynnrel.UpdateUpdated || up.From != testrelease.V1 || up.To != testrelease.V2 {
		t.Fatalf("update: %+v, %v", up, err)
	}
	if len(up.SkippedLayers) != 1 || prog.calls == 0 {
		t.Fatalf("update skipped layers %v (want the shared one), progress calls %d", up.SkippedLayers, prog.calls)
	}
	if link, _ := os.Readlink(filepath.Join(root, "usr/local/bin/flynn-host")); link != "flynn-host."+testrelease.V2 {
		t.Fatalf("flynn-host -> %q", link)
	}
	chk, err = c.CheckForUpdate(flynnrel.UpdateOptions{Layout: layout})
	if err != nil || chk.Status != flynnrel.UpdateUpToDate || chk.Current != testrelease.V2 || chk.Target != testrelease.V2 {
		t.Fatalf("check after update: %+v, %v", chk, err)
	}
}

func TestDownloadAssetVerifies(t *testing.T) {
	t.Parallel()
	f := server(t)
	dir := t.TempDir()
	var rec recorder
	path, sum, err := client(t, testrelease.Repo).DownloadAsset(testrelease.V1, "images.json.gz", dir, rec.fn)
	if err != nil {
		t.Fatal(err)
	}
	served := filepath.Join(f.ReleaseDir(testrelease.Repo, testrelease.V1), "images.json.gz")
	if path != filepath.Join(dir, "images.json.gz") || sum != sha512File(t, path) || sum != sha512File(t, served) {
		t.Fatalf("DownloadAsset = %s %s", path, sum)
	}
	if rec.calls == 0 {
		t.Error("no progress reported")
	}

	bad := t.TempDir()
	_, _, err = client(t, testrelease.TamperedRepo).DownloadAsset(testrelease.V2, testrelease.TamperedAsset, bad, nil)
	if !errors.Is(err, flynnrel.ErrChecksumMismatch) {
		t.Fatalf("tampered asset: %v, want ErrChecksumMismatch", err)
	}
	if ents, _ := os.ReadDir(bad); len(ents) != 0 {
		t.Fatalf("tampered download left %v", ents)
	}
}

func TestVerifyServedReleases(t *testing.T) {
	f := server(t)
	r, err := flynnrel.Verify(f.ReleaseDir(testrelease.Repo, testrelease.V1), flynnrel.VerifyOptions{})
	if err != nil || r.SignatureChecked || len(r.Assets) < 8 {
		t.Fatalf("Verify(good) = %+v, %v", r, err)
	}
	_, err = flynnrel.Verify(f.ReleaseDir(testrelease.TamperedRepo, testrelease.V2), flynnrel.VerifyOptions{})
	if !errors.Is(err, flynnrel.ErrChecksumMismatch) {
		t.Fatalf("Verify(tampered) = %v, want ErrChecksumMismatch", err)
	}
}

func TestConcurrentCallsShareOneClient(t *testing.T) {
	t.Parallel()
	c := client(t, testrelease.Repo)
	var wg sync.WaitGroup
	tags := make([]string, 8)
	errs := make([]error, 8)
	for i := range tags {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := c.ReleaseByTag([]string{testrelease.V1, testrelease.V2}[i%2])
			if err == nil {
				tags[i] = r.TagName
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	for i := range tags {
		want := []string{testrelease.V1, testrelease.V2}[i%2]
		if errs[i] != nil || tags[i] != want {
			t.Errorf("goroutine %d: %q, %v; want %s", i, tags[i], errs[i], want)
		}
	}
	if !reflect.DeepEqual(tags[:2], []string{testrelease.V1, testrelease.V2}) {
		t.Fatalf("tags %v", tags)
	}
}
