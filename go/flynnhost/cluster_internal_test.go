package flynnhost

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	docopt "github.com/flynn/go-docopt"
)

func TestReexecArgs(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"update"}, []string{"update", "--source=github", "--is-latest", "--is-tempfile"}},
		{[]string{"update", "-c", "/x/etc", "--version=v2", "--source", "github", "--bin-dir=/x/bin"},
			[]string{"update", "-c", "/x/etc", "--bin-dir=/x/bin", "--source=github", "--is-latest", "--is-tempfile"}},
		{[]string{"update", "--version", "v2", "--source=github", "--force"},
			[]string{"update", "--force", "--source=github", "--is-latest", "--is-tempfile"}},
	} {
		if got := reexecArgs(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("reexecArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// The re-executed run removes its temp file and hands Flynn's options, defaults filled in, to
// the cluster flow; with --root it refuses and runs nothing.
func TestFlynnGitHubCluster(t *testing.T) {
	tmp := filepath.Join(t.TempDir(), "flynn-host123")
	if err := os.WriteFile(tmp, []byte("binary"), 0755); err != nil {
		t.Fatal(err)
	}
	saved := os.Args
	defer func() { os.Args = saved }()
	os.Args = []string{tmp, "update"}

	args := &docopt.Args{All: map[string]interface{}{}, Bool: map[string]bool{"--is-latest": true, "--is-tempfile": true},
		String: map[string]string{"--source": "github", "--repository": DefaultTUFRepository, "--tuf-db": "/etc/flynn/tuf.db",
			"--bin-dir": "/usr/local/bin", "--config-dir": "/c"}}
	var got *docopt.Args
	h := &Host{}
	err := h.FlynnUpdate(args, FlynnTUF{
		Update:  func(*docopt.Args, []string) error { t.Fatal("the TUF update ran"); return nil },
		Cluster: func(a *docopt.Args) error { got = a; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("--is-tempfile did not remove %s (%v)", tmp, err)
	}
	if got == nil || got.String["--config-dir"] != "/c" || got.String["--bin-dir"] != "/usr/local/bin" ||
		got.String["--repository"] != DefaultTUFRepository || !got.Bool["--is-latest"] {
		t.Fatalf("the cluster flow got %+v", got)
	}

	args.Bool["--is-tempfile"] = false
	args.String["--root"] = "/r"
	err = h.FlynnUpdate(args, FlynnTUF{Cluster: func(*docopt.Args) error { t.Fatal("the cluster flow ran with --root"); return nil }})
	if ExitCode(err) != 2 {
		t.Fatalf("--is-latest --source=github --root: %v (exit %d), want a usage error", err, ExitCode(err))
	}
	delete(args.String, "--root")
	if err := h.FlynnUpdate(args, FlynnTUF{}); err == nil {
		t.Fatal("--is-latest --source=github without a cluster flow succeeded")
	}
}
