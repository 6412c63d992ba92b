package flynnhost_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flynn/flynn/libflynnrel/go/flynnhost"
	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
)

// PullSource: the receipt decides; only a missing receipt or a tuf one means TUF, and an invalid
// receipt is an error naming the file.
func TestPullSource(t *testing.T) {
	dir := t.TempDir()
	if r, err := flynnhost.PullSource(dir); r != nil || err != nil {
		t.Fatalf("no receipt: %v %v, want TUF (nil, nil)", r, err)
	}
	if _, err := flynnhost.PullSource(""); err == nil || !strings.Contains(err.Error(), "config-dir") {
		t.Fatalf("no config-dir: %v", err)
	}
	p := filepath.Join(dir, "install-source.json")
	write := func(s string) {
		if err := os.WriteFile(p, []byte(s), 0644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"source": "tuf", "repository": "https://tuf.example/repo", "version": "v20240101.0", "installed_at": "2024-01-01T10:00:00Z"}` + "\n")
	if r, err := flynnhost.PullSource(dir); r != nil || err != nil {
		t.Fatalf("tuf receipt: %v %v, want TUF (nil, nil)", r, err)
	}
	write(`{"source": "github", "repository": "acme/flynn", "version": "v20240101.0", "installed_at": "2024-01-01T10:00:00Z", "public_key": "RWQ"}` + "\n")
	r, err := flynnhost.PullSource(dir)
	if err != nil || r == nil || r.Repository != "acme/flynn" || r.Source != "github" {
		t.Fatalf("github receipt: %+v %v", r, err)
	}
	for _, bad := range []string{"{not json", `{"source": "s3", "repository": "x", "version": "", "installed_at": "2024-01-01T10:00:00Z"}`, ""} {
		write(bad)
		if r, err := flynnhost.PullSource(dir); r != nil || err == nil || !strings.Contains(err.Error(), p) {
			t.Fatalf("receipt %q: %v %v, want an error naming %s", bad, r, err, p)
		}
	}
}

func TestNewPullerRefuses(t *testing.T) {
	gh := &flynnrel.Receipt{Source: "github", Repository: "acme/flynn", Version: "v20240101.0"}
	if _, err := flynnhost.NewPuller(gh, "/etc/flynn", "", ""); err == nil || !strings.Contains(err.Error(), "no version") {
		t.Fatalf("no version: %v", err)
	}
	if _, err := flynnhost.NewPuller(&flynnrel.Receipt{Source: "tuf", Repository: "https://x"}, "/etc/flynn", "", "v2"); err == nil {
		t.Fatal("a tuf receipt made a GitHub puller")
	}
	bad := *gh
	bad.Repository = "not a repository"
	if _, err := flynnhost.NewPuller(&bad, "/etc/flynn", "", "v20240102.0"); err == nil || !strings.Contains(err.Error(), "/etc/flynn/install-source.json") {
		t.Fatalf("a bad repository: %v, want an error naming the receipt", err)
	}
	p, err := flynnhost.NewPuller(gh, "/etc/flynn", "", "v20240102.0")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.LayerDir != flynnhost.DefaultLayerDir {
		t.Fatalf("layer dir %q", p.LayerDir)
	}
}
