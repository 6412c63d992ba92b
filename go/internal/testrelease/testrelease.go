// Package testrelease builds and serves synthetic Flynn releases for this module's tests: two
// releases packaged by the real helper (script/make-synthetic-build + `flynnrel package`),
// a tampered copy under another repository, all served by `flynnrel serve` on 127.0.0.1.
// It is test support only; nothing outside _test.go files imports it.
package testrelease

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The releases every fixture serves. V2 > V1 by version order but not by string order.
const (
	V1 = "v2024.01.27.9"
	V2 = "v2024.01.27.10"
	// Repo serves V1 and V2.
	Repo = "flynn/flynn"
	// TamperedRepo serves V1 unchanged and V2 with flynn-host-linux-amd64.gz replaced after
	// packaging (a valid gzip of other bytes), so checksums.sha512 no longer matches it.
	TamperedRepo = "acme/tampered"
	// TamperedAsset is the asset replaced in TamperedRepo's V2.
	TamperedAsset = "flynn-host-linux-amd64.gz"
)

// Fixture is a running release server over the synthetic releases.
type Fixture struct {
	// RepoRoot is the checkout (the directory holding Cargo.toml).
	RepoRoot string
	// Helper is the flynnrel binary.
	Helper string
	// Dir is the fixture's temp directory; ServeDir the served tree inside it.
	Dir      string
	ServeDir string
	// APIURL and WebURL point at the server.
	APIURL string
	WebURL string

	server *exec.Cmd
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

// Start builds the releases into a new temp directory and starts the server. Call Close.
func Start() (f *Fixture, err error) {
	root, err := FindRepoRoot()
	if err != nil {
		return nil, err
	}
	helper, err := HelperPath(root)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "flynnrel-go-test-")
	if err != nil {
		return nil, err
	}
	f = &Fixture{RepoRoot: root, Helper: helper, Dir: dir, ServeDir: filepath.Join(dir, "releases")}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if err := f.publish(Repo, V1, "2024-01-27T09:00:00Z"); err != nil {
		return nil, err
	}
	if err := f.publish(Repo, V2, "2024-01-27T10:00:00Z"); err != nil {
		return nil, err
	}
	for _, v := range []string{V1, V2} {
		if err := copyDir(f.ReleaseDir(Repo, v), f.ReleaseDir(TamperedRepo, v)); err != nil {
			return nil, err
		}
	}
	if err := Tamper(filepath.Join(f.ReleaseDir(TamperedRepo, V2), TamperedAsset)); err != nil {
		return nil, err
	}
	return f, f.serve()
}

// ReleaseDir is the served folder of repo's release tag.
func (f *Fixture) ReleaseDir(repo, tag string) string {
	return filepath.Join(f.ServeDir, filepath.FromSlash(repo), tag)
}

// publish: a synthetic build tree, packaged by the helper into the served tree.
func (f *Fixture) publish(repo, version, createdAt string) error {
	build := filepath.Join(f.Dir, "build", version)
	out := f.ReleaseDir(repo, version)
	if err := run(filepath.Join(f.RepoRoot, "script", "make-synthetic-build"), version, build, "--layers", "1"); err != nil {
		return err
	}
	if err := run(f.Helper, "-q", "package", "--version", version, "--repo", repo, "--build-dir", build,
		"--out", out, "--helper", f.Helper); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, ".release.json"), fmt.Appendf(nil, "{\"created_at\": %q}\n", createdAt), 0o644)
}

// serve starts `flynnrel serve` and waits for its ready file.
func (f *Fixture) serve() error {
	ready := filepath.Join(f.Dir, "server.json")
	logf, err := os.Create(filepath.Join(f.Dir, "server.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(f.Helper, "serve", f.ServeDir, "--ready-file", ready, "-q")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testrelease: start %s serve: %w", f.Helper, err)
	}
	f.server = cmd
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(ready)
		if err != nil || len(b) == 0 {
			continue
		}
		var r struct {
			APIURL string `json:"api_url"`
			WebURL string `json:"web_url"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			continue // still being written
		}
		f.APIURL, f.WebURL = r.APIURL, r.WebURL
		return nil
	}
	log, _ := os.ReadFile(filepath.Join(f.Dir, "server.log"))
	return fmt.Errorf("testrelease: the release server did not become ready: %s", log)
}

// Close stops the server and removes the temp directory.
func (f *Fixture) Close() {
	if f.server != nil && f.server.Process != nil {
		_ = f.server.Process.Kill()
		_ = f.server.Wait()
		f.server = nil
	}
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

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testrelease: %s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Tamper replaces a .gz asset with a valid gzip stream of other bytes (so only the checksum can
// tell), keeping its name.
func Tamper(path string) error {
	out, err := exec.Command("sh", "-c", `{ gzip -dc "$1"; printf '\n# tampered\n'; } | gzip -9n`, "sh", path).Output()
	if err != nil {
		return fmt.Errorf("testrelease: tamper %s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// Snapshot describes everything under root: each path with its type, mode and content hash or
// link target. A missing root is an empty snapshot. Two equal snapshots mean nothing changed.
func Snapshot(root string) (map[string]string, error) {
	s := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipAll
			}
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s[rel] = "link -> " + t
		case d.IsDir():
			s[rel] = fmt.Sprintf("dir %v", info.Mode().Perm())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			s[rel] = fmt.Sprintf("file %v %s", info.Mode().Perm(), hex.EncodeToString(h[:]))
		}
		return nil
	})
	return s, err
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
