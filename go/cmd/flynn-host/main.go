// Command flynn-host is a small stand-in for Flynn's flynn-host that registers the GitHub
// Releases commands of package flynnhost, proving the path Go → cgo → libflynnrel. Its TUF
// updater is a stub that prints a marker line and succeeds.
//
//	flynn-host update [--check] [--root=<dir>] ...
//	flynn-host download --github-repo=<owner/name> --version=<ver> [--root=<dir>] ...
//	flynn-host github-update [--repo=<owner/name>] [--check] ...
//
// Exit codes: 0 ok, 1 error, 2 usage, 100 `--check` found an update.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/flynn/flynn/libflynnrel/go/flynnhost"
	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	docopt "github.com/flynn/go-docopt"
)

// TUFStubMarker starts the line the stub TUF updater prints.
const TUFStubMarker = "tuf-updater-stub:"

func stubTUFUpdater(args *docopt.Args) error {
	fmt.Printf("%s repository=%s tuf-db=%s config-dir=%s bin-dir=%s\n", TUFStubMarker,
		args.String["--repository"], args.String["--tuf-db"], args.String["--config-dir"], args.String["--bin-dir"])
	return nil
}

func main() {
	h := flynnhost.NewHost(stubTUFUpdater)
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage(h)
		os.Exit(2)
	}
	if os.Args[1] == "version" {
		fmt.Printf("flynn-host (libflynnrel %s)\n", flynnrel.Version())
		return
	}
	err := h.Run(os.Args[1], os.Args[2:])
	code := flynnhost.ExitCode(err)
	if err != nil && code != flynnhost.ExitUpdateAvailable {
		fmt.Fprintf(os.Stderr, "flynn-host: error: %v\n", err)
	}
	os.Exit(code)
}

func usage(h *flynnhost.Host) {
	fmt.Fprintln(os.Stderr, "usage: flynn-host <command> [<args>...]\n\ncommands:")
	for _, c := range h.Commands() {
		first := strings.TrimSpace(c.Usage)
		if i := strings.IndexByte(first, '\n'); i >= 0 {
			first = first[:i]
		}
		fmt.Fprintln(os.Stderr, "  "+strings.TrimPrefix(first, "usage: "))
	}
	fmt.Fprintln(os.Stderr, "  flynn-host version")
}
