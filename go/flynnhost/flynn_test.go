package flynnhost_test

// FlynnUpdate and FlynnDownload with Flynn's own usages (host/cli/update.go and download.go as
// flynn/patches leaves them); script/test-flynn runs them inside the real flynn-host.

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flynn/flynn/libflynnrel/go/flynnhost"
	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	docopt "github.com/flynn/go-docopt"
)

// flynnUpdateUsage is Flynn's `flynn-host update` usage with the lines the patch adds.
const flynnUpdateUsage = `usage: flynn-host update [options]

Options:
  -r --repository=<uri>    image repository URI [default: https://dl.flynn.io/tuf]
  -t --tuf-db=<path>       local TUF file [default: /etc/flynn/tuf.db]
  -b --bin-dir=<dir>       directory to download binaries to [default: /usr/local/bin]
  -c --config-dir=<dir>    directory to download config files to [default: /etc/flynn]
  --is-latest              internal flag (skip updating local tuf DB and re-execing latest binary)
  --is-tempfile            internal flag (binary is a temp file which requires removal)
` + flynnhost.FlynnUpdateOptions + `

Update Flynn components`

const flynnDownloadUsage = `usage: flynn-host download [--repository=<uri>] [--tuf-db=<path>] [--config-dir=<dir>] [--bin-dir=<dir>] [--volpath=<path>]
` + flynnhost.FlynnDownloadUsage + `

Options:
  -r --repository=<uri>    TUF repository URI [default: https://dl.flynn.io/tuf]
  -t --tuf-db=<path>       local TUF file [default: /etc/flynn/tuf.db]
  -c --config-dir=<dir>    config directory [default: /etc/flynn]
  -b --bin-dir=<dir>       binary directory [default: /usr/local/bin]
  -v --volpath=<path>      directory to create volumes in [default: /var/lib/flynn/volumes]
` + flynnhost.FlynnDownloadOptions

func parse(t *testing.T, usage string, argv ...string) *docopt.Args {
	t.Helper()
	a, err := docopt.Parse(usage, argv, true, "", false, false)
	if err != nil || a == nil {
		t.Fatalf("%v does not parse: %v", argv, err)
	}
	return a
}

type tufCall struct {
	args *docopt.Args
	argv []string
}

func TestFlynnUpdateGivesTheTUFUpdaterOnlyFlynnsOptions(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	var calls []tufCall
	tuf := flynnhost.FlynnTUF{Update: func(a *docopt.Args, argv []string) error {
		calls = append(calls, tufCall{a, argv})
		return nil
	}}
	root := legacyTUFRoot(t) // a flynn-host and no receipt: a legacy TUF install
	if err := h.FlynnUpdate(parse(t, flynnUpdateUsage, "update", "-r", "https://mirror.example.com/tuf", "--root="+root), tuf); err != nil {
		t.Fatal(err)
	}
	want := []string{"update", "--repository=https://mirror.example.com/tuf", "--tuf-db=" + filepath.Join(root, "etc/flynn/tuf.db"),
		"--bin-dir=" + filepath.Join(root, "usr/local/bin"), "--config-dir=" + filepath.Join(root, "etc/flynn")}
	if len(calls) != 1 || !reflect.DeepEqual(calls[0].argv, want) {
		t.Fatalf("TUF updater argv %v, want %v", calls, want)
	}
	for k := range calls[0].args.All {
		switch k {
		case "--repository", "--tuf-db", "--bin-dir", "--config-dir", "--is-latest", "--is-tempfile":
		default:
			t.Fatalf("the TUF updater got %s, which Flynn's update does not accept", k)
		}
	}
	// Flynn's re-executed run goes straight to the updater, its command line left as it is.
	if err := h.FlynnUpdate(parse(t, flynnUpdateUsage, "update", "-t", "/x/tuf.db", "--is-latest", "--is-tempfile"), tuf); err != nil {
		t.Fatal(err)
	}
	if a := calls[1].args; calls[1].argv != nil || !a.Bool["--is-latest"] || !a.Bool["--is-tempfile"] || a.String["--tuf-db"] != "/x/tuf.db" {
		t.Fatalf("re-executed run: %+v", calls[1])
	}
	// GitHub-only options on a TUF install are a usage error, and nothing runs.
	err := h.FlynnUpdate(parse(t, flynnUpdateUsage, "update", "--version=v2024.01.27.9", "--root="+root), tuf)
	var usage *flynnhost.UsageError
	if !errors.As(err, &usage) || flynnhost.ExitCode(err) != 2 || len(calls) != 2 {
		t.Fatalf("--version on a TUF install: %v (%d calls)", err, len(calls))
	}
	// --check never runs the updater: without a TUF check it is a clear error.
	if err := h.FlynnUpdate(parse(t, flynnUpdateUsage, "update", "--check", "--root="+root), tuf); !errors.Is(err, flynnhost.ErrTUFCheckUnsupported) || len(calls) != 2 {
		t.Fatalf("TUF --check without a checker: %v (%d calls)", err, len(calls))
	}
	if ents, _ := os.ReadDir(root); len(ents) != 1 {
		t.Fatalf("routing wrote %v", ents)
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); !os.IsNotExist(err) {
		t.Fatalf("routing created etc/: %v", err)
	}
}

// legacyTUFRoot is a root as Flynn's own installer leaves it: a flynn-host, no receipt.
func legacyTUFRoot(t *testing.T) string {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/local/bin/flynn-host"), []byte("#!/bin/sh\necho v20210218.0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestFlynnUpdateTUFCheck(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	for _, c := range []struct {
		current, latest string
		code            int
		line            string
	}{
		{"v20210218.0", "v20210218.0", 0, "status=up_to_date source=tuf"},
		{"v20210218.0", "v20210219.0", 100, "status=update_available source=tuf"},
		{"dev", "v20210219.0", 100, "status=update_available source=tuf"},
	} {
		tuf := flynnhost.FlynnTUF{
			Update: func(*docopt.Args, []string) error { t.Fatal("--check ran the TUF updater"); return nil },
			Check:  func(*docopt.Args) (string, string, error) { return c.current, c.latest, nil },
		}
		h.out.Reset()
		err := h.FlynnUpdate(parse(t, flynnUpdateUsage, "update", "--check", "--root="+legacyTUFRoot(t)), tuf)
		if flynnhost.ExitCode(err) != c.code || !strings.HasPrefix(h.out.String(), c.line) {
			t.Fatalf("%s -> %s: exit %d, %q", c.current, c.latest, flynnhost.ExitCode(err), h.out.String())
		}
	}
}

// Not parallel: it sets FLYNN_VERSION.
func TestFlynnDownloadAndUpdateFromGitHub(t *testing.T) {
	h := newHost(t)
	root := t.TempDir()
	t.Setenv("FLYNN_VERSION", v1)
	if err := h.FlynnDownload(parse(t, flynnDownloadUsage, "download", "--github-repo=flynn/flynn", "--root="+root)); err != nil {
		t.Fatal(err)
	}
	r, legacy, err := flynnrel.LoadReceipt(filepath.Join(root, "etc/flynn"))
	if err != nil || legacy || r.Source != "github" || r.Version != v1 {
		t.Fatalf("receipt %+v, %v", r, err)
	}
	runsVersion(t, root, v1)
	noTUF := flynnhost.FlynnTUF{Update: func(*docopt.Args, []string) error { t.Fatal("a GitHub install ran the TUF updater"); return nil }}
	before := snapshot(t, root)
	err = h.FlynnUpdate(parse(t, flynnUpdateUsage, "update", "--check", "--root="+root), noTUF)
	if flynnhost.ExitCode(err) != 100 {
		t.Fatalf("check: %v", err)
	}
	assertUnchanged(t, root, before)
	if err := h.FlynnUpdate(parse(t, flynnUpdateUsage, "update", "--root="+root), noTUF); err != nil {
		t.Fatal(err)
	}
	runsVersion(t, root, v2)
}
