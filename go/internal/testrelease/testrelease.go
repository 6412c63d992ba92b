// Package testrelease gives this module's tests the release fixture every test layer shares:
// script/lib/fixture (the standard synthetic releases, packaged, signed and tampered by the real
// `flynnrel package`, served by `flynnrel serve` on 127.0.0.1), read from its fixture.json, and
// the one tree-snapshot format of script/lib/snapshot. A fixture that FLYNNREL_FIXTURE names
// (a directory `script/lib/fixture start` filled) is used as it is; otherwise Start builds one.
// It is test support only; nothing outside _test.go files imports it.
package testrelease

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The fixture's facts the tests use as constants (script/lib/fixture defines them; Start fails
// when its fixture.json says otherwise). V2 > V1 by version order but not by string order.
const (
	V1 = "v2024.01.27.9"
	V2 = "v2024.01.27.10"
	// Latest is GitHub's "latest" release of Repo: V1, a backport published after V2.
	Latest = V1
	// Repo serves V1, V2 and tampered copies of V1 under lower, prerelease tags.
	Repo = "flynn/flynn"
	// TamperedRepo serves V1 unchanged and V2 with TamperedAsset replaced after packaging (a
	// valid gzip of other bytes), so checksums.sha512 no longer matches it.
	TamperedRepo = "acme/tampered"
	// TamperedAsset is the asset replaced in TamperedRepo's V2.
	TamperedAsset = "flynn-host-linux-amd64.gz"
)

// Fixture is a running release server over the fixture's releases.
type Fixture struct {
	// RepoRoot is the checkout (the directory holding Cargo.toml).
	RepoRoot string
	// Helper is the flynnrel binary.
	Helper string
	// Dir is the fixture's directory; ServeDir the served tree inside it.
	Dir      string
	ServeDir string
	// APIURL and WebURL point at the server.
	APIURL string
	WebURL string
	// Repos lists every served repository's tags.
	Repos map[string][]string

	owned bool // Start made it: Close stops the server and removes Dir
}

// facts is fixture.json (the keys the tests need; see script/lib/fixture for all of them).
type facts struct {
	Dir           string              `json:"dir"`
	ServeDir      string              `json:"serve_dir"`
	APIURL        string              `json:"api_url"`
	WebURL        string              `json:"web_url"`
	Helper        string              `json:"helper"`
	V1            string              `json:"v1"`
	V2            string              `json:"v2"`
	Latest        string              `json:"latest"`
	Repo          string              `json:"repo"`
	TamperedRepo  string              `json:"tampered_repo"`
	TamperedAsset string              `json:"tampered_asset"`
	Repos         map[string][]string `json:"repos"`
}

// FindRepoRoot walks up from the working directory to the directory holding Cargo.toml.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "Cargo.toml")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testrelease: no Cargo.toml above the working directory")
		}
		dir = parent
	}
}

// HelperPath returns $FLYNN_RELEASE_BIN or <repo>/target/debug/flynnrel, which must exist
// (script/test-go builds it).
func HelperPath(repoRoot string) (string, error) {
	p := os.Getenv("FLYNN_RELEASE_BIN")
	if p == "" {
		p = filepath.Join(repoRoot, "target", "debug", "flynnrel")
	}
	if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("testrelease: %s is not an executable: run `cargo build --bin flynnrel` (or script/test-go) first", p)
	}
	return p, nil
}

// Start returns the fixture FLYNNREL_FIXTURE names, or builds and starts one in a new temp
// directory (script/lib/fixture start). Call Close.
func Start() (*Fixture, error) {
	root, err := FindRepoRoot()
	if err != nil {
		return nil, err
	}
	if dir := os.Getenv("FLYNNREL_FIXTURE"); dir != "" {
		return load(root, dir, false)
	}
	helper, err := HelperPath(root)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "flynnrel-go-test-")
	if err != nil {
		return nil, err
	}
	// --owner: the server stops with this test binary even if Close is never called.
	cmd := exec.Command(filepath.Join(root, "script", "lib", "fixture"), "start", dir,
		"--helper", helper, "--owner", strconv.Itoa(os.Getpid()))
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("testrelease: script/lib/fixture start: %w\n%s", err, out)
	}
	f, err := load(root, dir, true)
	if err != nil {
		if f != nil {
			f.Close()
		} else {
			_ = exec.Command(filepath.Join(root, "script", "lib", "fixture"), "stop", dir).Run()
			_ = os.RemoveAll(dir)
		}
	}
	return f, err
}

// load reads dir/fixture.json and checks it against this package's constants.
func load(root, dir string, owned bool) (*Fixture, error) {
	b, err := os.ReadFile(filepath.Join(dir, "fixture.json"))
	if err != nil {
		return nil, fmt.Errorf("testrelease: %w (FLYNNREL_FIXTURE must be a directory script/lib/fixture start filled)", err)
	}
	var fx facts
	if err := json.Unmarshal(b, &fx); err != nil {
		return nil, fmt.Errorf("testrelease: %s: %w", filepath.Join(dir, "fixture.json"), err)
	}
	f := &Fixture{RepoRoot: root, Helper: fx.Helper, Dir: fx.Dir, ServeDir: fx.ServeDir,
		APIURL: fx.APIURL, WebURL: fx.WebURL, Repos: fx.Repos, owned: owned}
	for _, c := range [][3]string{{"v1", fx.V1, V1}, {"v2", fx.V2, V2}, {"latest", fx.Latest, Latest},
		{"repo", fx.Repo, Repo}, {"tampered_repo", fx.TamperedRepo, TamperedRepo},
		{"tampered_asset", fx.TamperedAsset, TamperedAsset}} {
		if c[1] != c[2] {
			return f, fmt.Errorf("testrelease: the fixture's %s is %q, this package's constant %q", c[0], c[1], c[2])
		}
	}
	return f, nil
}

// ReleaseDir is the served folder of repo's release tag.
func (f *Fixture) ReleaseDir(repo, tag string) string {
	return filepath.Join(f.ServeDir, filepath.FromSlash(repo), tag)
}

// Close stops the server and removes the directory of a fixture Start built; a fixture
// FLYNNREL_FIXTURE named is left to its owner.
func (f *Fixture) Close() {
	if !f.owned {
		return
	}
	f.owned = false
	_ = exec.Command(filepath.Join(f.RepoRoot, "script", "lib", "fixture"), "stop", f.Dir).Run()
	_ = os.RemoveAll(f.Dir)
}

// Env returns the environment a child process needs to reach the server (the web URL; the API
// URL comes from the receipt after an install, or from FLYNN_GITHUB_API_URL), without the
// variables that would override a receipt or leak a token.
func (f *Fixture) Env(withAPI bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "FLYNN_GITHUB_REPO", "FLYNN_GITHUB_API_URL", "FLYNN_GITHUB_URL", "FLYNN_GITHUB_TOKEN",
			"GH_TOKEN", "GITHUB_TOKEN", "FLYNN_RELEASE_PUBLIC_KEY":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "FLYNN_GITHUB_URL="+f.WebURL)
	if withAPI {
		env = append(env, "FLYNN_GITHUB_API_URL="+f.APIURL)
	}
	return env
}

// script runs script/lib/NAME ARGS and returns its stdout.
func script(name string, args ...string) ([]byte, error) {
	root, err := FindRepoRoot()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd := exec.Command(filepath.Join(root, "script", "lib", name), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("testrelease: script/lib/%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// Tamper replaces a .gz asset with a valid gzip stream of other bytes (so only the checksum can
// tell), keeping its name: script/lib/fixture tamper-gz, the tampering of every layer.
func Tamper(path string) error {
	_, err := script("fixture", "tamper-gz", path)
	return err
}

// Snapshot describes everything under root in the one tree-snapshot format (script/lib/snapshot):
// each entry's line, keyed by its path ("." for root). A missing root is an empty snapshot. Two
// equal snapshots mean nothing changed.
func Snapshot(root string) (map[string]string, error) {
	out, err := script("snapshot", root)
	if err != nil {
		return nil, err
	}
	s := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		fields := strings.Split(line, " ")
		if len(fields) != 6 {
			return nil, fmt.Errorf("testrelease: snapshot line %q has %d fields, want 6", line, len(fields))
		}
		s[fields[5]] = line
	}
	return s, nil
}

// Diff lists the paths whose entries differ between two snapshots, sorted.
func Diff(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k)
		}
	}
	sort.Strings(d)
	return d
}

var (
	sharedOnce sync.Once
	shared     *Fixture
	sharedErr  error
)

// Shared starts one fixture per test binary on first use and returns it; a failure to start
// fails the calling test. Close it with RunMain.
func Shared(t testing.TB) *Fixture {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = Start() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// RunMain runs the tests of a package (call it from TestMain) and closes the shared fixture.
func RunMain(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	return code
}
