package main_test

// The flynn-host binary, built with `go build`, against `flynnrel serve`: exit codes, the
// TUF stub, and agreement with `flynnrel update --check` on the same host.

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/flynn/flynn/libflynnrel/go/internal/testrelease"
)

const (
	v1 = testrelease.V1
	v2 = testrelease.V2
	// tufStubMarker is what main's stub TUF updater prints first.
	tufStubMarker = "tuf-updater-stub:"
)

var (
	setupOnce sync.Once
	fixture   *testrelease.Fixture
	flynnHost string // the built binary
	setupErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture != nil {
		fixture.Close()
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// setup builds flynn-host and starts the release server, once.
func setup(t *testing.T) *testrelease.Fixture {
	t.Helper()
	setupOnce.Do(func() {
		buildDir, setupErr = os.MkdirTemp("", "flynn-host-bin-")
		if setupErr != nil {
			return
		}
		flynnHost = filepath.Join(buildDir, "flynn-host")
		if out, err := exec.Command(goTool(), "build", "-o", flynnHost, ".").CombinedOutput(); err != nil {
			setupErr = errors.New("go build: " + err.Error() + "\n" + string(out))
			return
		}
		fixture, setupErr = testrelease.Start()
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return fixture
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs a binary with env and returns its exit code and output.
func run(t *testing.T, env []string, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return result{code, out.String(), errb.String()}
}

func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	s, err := testrelease.Snapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkBoth runs `update --check` with flynn-host and with flynnrel (plain and --json) on
// the same root, asserts they agree, and returns the exit code and flynn-host's line.
func checkBoth(t *testing.T, f *testrelease.Fixture, root string) (int, string, map[string]interface{}) {
	t.Helper()
	env := f.Env(false)
	goRes := run(t, env, flynnHost, "update", "--check", "--root="+root)
	rsRes := run(t, env, f.Helper, "--root", root, "update", "--check")
	if goRes.code != rsRes.code || goRes.stdout != rsRes.stdout {
		t.Fatalf("flynn-host and flynnrel disagree:\nflynn-host    exit %d %q %s\nflynnrel exit %d %q %s",
			goRes.code, goRes.stdout, goRes.stderr, rsRes.code, rsRes.stdout, rsRes.stderr)
	}
	js := run(t, env, f.Helper, "--root", root, "--json", "update", "--check")
	var doc map[string]interface{}
	if err := json.Unmarshal([]byte(js.stdout), &doc); err != nil || js.code != goRes.code {
		t.Fatalf("flynnrel --json: exit %d, %v\n%s", js.code, err, js.stdout)
	}
	return goRes.code, goRes.stdout, doc
}

func TestCheckAgreesWithFlynnReleaseAndUpdateApplies(t *testing.T) {
	t.Parallel()
	f := setup(t)
	root := t.TempDir()
	dl := run(t, f.Env(true), flynnHost, "download", "--github-repo="+testrelease.Repo, "--version="+v1, "--root="+root)
	if dl.code != 0 || !strings.Contains(dl.stdout, "status=installed") {
		t.Fatalf("download: %+v", dl)
	}

	before := snapshot(t, root)
	code, line, doc := checkBoth(t, f, root)
	if code != 100 || line != "status=update_available repository=flynn/flynn current="+v1+" target="+v2+"\n" ||
		doc["status"] != "available" || doc["current"] != v1 || doc["target"] != v2 {
		t.Fatalf("update available: exit %d %q %v", code, line, doc)
	}
	if d := testrelease.Diff(before, snapshot(t, root)); len(d) > 0 {
		t.Fatalf("--check changed %v", d)
	}

	up := run(t, f.Env(false), flynnHost, "update", "--root="+root)
	if up.code != 0 || !strings.HasSuffix(up.stdout, "status=updated repository=flynn/flynn from="+v1+" to="+v2+"\n") {
		t.Fatalf("update: %+v", up)
	}
	out, err := exec.Command(filepath.Join(root, "usr/local/bin/flynn-host"), "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != v2 {
		t.Fatalf("after update, flynn-host version = %q, %v", out, err)
	}

	code, line, doc = checkBoth(t, f, root)
	if code != 0 || line != "status=up_to_date repository=flynn/flynn current="+v2+" target="+v2+"\n" ||
		doc["status"] != "up_to_date" || doc["target"] != v2 {
		t.Fatalf("up to date: exit %d %q %v", code, line, doc)
	}
}

func TestTUFInstallRunsTheStubUpdater(t *testing.T) {
	t.Parallel()
	f := setup(t)
	root := t.TempDir()
	conf := filepath.Join(root, "etc/flynn")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	receipt := `{"source": "tuf", "repository": "https://dl.flynn.io/tuf", "version": "` + v1 + `", "installed_at": "2024-01-27T10:00:00Z"}` + "\n"
	if err := os.WriteFile(filepath.Join(conf, "install-source.json"), []byte(receipt), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	res := run(t, f.Env(false), flynnHost, "update", "--root="+root)
	if res.code != 0 || !strings.HasPrefix(res.stdout, tufStubMarker+" repository=https://dl.flynn.io/tuf ") ||
		!strings.Contains(res.stdout, "config-dir="+conf) {
		t.Fatalf("update of a TUF install: %+v", res)
	}
	// flynnrel routes the same host to the TUF updater too (exit 3).
	if rs := run(t, f.Env(false), f.Helper, "--root", root, "update"); rs.code != 3 {
		t.Fatalf("flynnrel update on a TUF install: %+v", rs)
	}
	if d := testrelease.Diff(before, snapshot(t, root)); len(d) > 0 {
		t.Fatalf("routing changed %v", d)
	}
	// github-update checks GitHub for the same install instead; the stub does not run.
	gh := run(t, f.Env(true), flynnHost, "github-update", "--repo="+testrelease.Repo, "--check", "--root="+root)
	if gh.code != 100 || strings.Contains(gh.stdout, tufStubMarker) ||
		gh.stdout != "status=update_available repository=flynn/flynn current="+v1+" target="+v2+"\n" {
		t.Fatalf("github-update --check: %+v", gh)
	}
}

func TestExitCodes(t *testing.T) {
	f := setup(t)
	for _, c := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"update", "--source=ftp"}, 2},
		{[]string{"download", "--github-repo=flynn/flynn"}, 2},
		{[]string{"download", "--github-repo=flynn/flynn", "--version=v2099.01.01.0", "--root=" + t.TempDir()}, 1},
	} {
		res := run(t, f.Env(true), flynnHost, c.args...)
		if res.code != c.code || (c.code == 1 && !strings.Contains(res.stderr, "flynn-host: error:")) {
			t.Errorf("flynn-host %v: %+v, want exit %d", c.args, res, c.code)
		}
	}
	v := run(t, nil, flynnHost, "version")
	if v.code != 0 || !strings.Contains(v.stdout, "libflynnrel 0.1.0") {
		t.Errorf("flynn-host version: %+v", v)
	}
}
