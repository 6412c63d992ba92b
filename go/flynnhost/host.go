// Package flynnhost provides the GitHub Releases commands of `flynn-host` (docs/go-api.md#package-flynnhost) for Flynn's
// host/cli to register: `update` (routed by the install receipt), `download --github-repo` and
// `github-update`, plus a Downloader with the method shapes of Flynn's host/downloader and the
// packaging helpers of Flynn's builder. Every decision is made by libflynnrel through package
// flynnrel; this package parses arguments, prints and maps results to exit codes.
//
// Inside Flynn's tree, script/flynn-integrate's host/cli/github.go registers FlynnUpdate and
// FlynnDownload, which keep Flynn's own usages (see flynn.go). A program without an update or
// download command of its own can register this package's usages instead:
//
//	h := flynnhost.NewHost(runTUFUpdate) // Flynn's own TUF `flynn-host update`
//	for _, c := range h.Commands() {
//		cli.Register(c.Name, c.Run, c.Usage)
//	}
//
// and map a command's error to the process's exit code with ExitCode (100: `update --check`
// found an update, as `flynnrel update --check` does).
package flynnhost

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	docopt "github.com/flynn/go-docopt"
)

// DefaultTUFRepository is Flynn's TUF repository, reported for installs without a receipt.
const DefaultTUFRepository = "https://dl.flynn.io/tuf"

// DefaultRepository is the GitHub repository when neither a flag, FLYNN_GITHUB_REPO nor a
// receipt names one.
const DefaultRepository = "flynn/flynn"

// ExitUpdateAvailable is the exit code of `update --check` when an update is available.
const ExitUpdateAvailable = 100

// TUFUpdater is the embedding program's TUF updater (Flynn's original `flynn-host update`). It
// receives the parsed `update` arguments as given (--check, --version, --force included), with
// --repository, --tuf-db, --config-dir and --bin-dir filled with their defaults when not given
// and, with --root, taken inside the root.
type TUFUpdater func(args *docopt.Args) error

// Host holds what the commands need from the embedding program.
type Host struct {
	// TUFUpdater handles installs whose source is TUF; nil makes such an update an error.
	TUFUpdater TUFUpdater
	// Client is the base of every GitHub client (token, timeouts, API and web base). For
	// `update`, the receipt's repository and API base win.
	Client flynnrel.ClientOptions
	// Repository is the default GitHub repository of `github-update` ("" = DefaultRepository).
	Repository string
	// Stdout receives the `key=value` result lines; Stderr progress and notes.
	Stdout, Stderr io.Writer
}

// NewHost returns a Host whose client options and default repository come from the environment
// (FLYNN_GITHUB_API_URL, FLYNN_GITHUB_URL, FLYNN_GITHUB_REPO; the token variables are read by
// the library) and which prints to os.Stdout and os.Stderr.
func NewHost(tuf TUFUpdater) *Host {
	return &Host{
		TUFUpdater: tuf,
		Client: flynnrel.ClientOptions{
			APIURL: os.Getenv("FLYNN_GITHUB_API_URL"),
			WebURL: os.Getenv("FLYNN_GITHUB_URL"),
		},
		Repository: os.Getenv("FLYNN_GITHUB_REPO"),
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
	}
}

// Command is one `flynn-host` command: its name, its docopt usage and the function to run with
// the parsed arguments (the shape Flynn's host/cli.Register takes).
type Command struct {
	Name  string
	Usage string
	Run   func(args *docopt.Args) error
}

// Commands returns the commands of this package, ready to register.
func (h *Host) Commands() []Command {
	return []Command{
		{Name: "update", Usage: updateUsage, Run: advised(h.Update)},
		{Name: "download", Usage: downloadUsage, Run: advised(h.Download)},
		{Name: "github-update", Usage: githubUpdateUsage, Run: advised(h.GitHubUpdate)},
	}
}

// Run parses args (without the command name) with the command's usage and runs it. An unknown
// command or bad arguments are a *UsageError; `-h` prints the usage and returns nil.
func (h *Host) Run(name string, args []string) error {
	for _, c := range h.Commands() {
		if c.Name != name {
			continue
		}
		argv := append([]string{name}, args...)
		parsed, err := docopt.Parse(c.Usage, argv, true, "", false, false)
		if err != nil {
			return &UsageError{Usage: c.Usage, Err: err}
		}
		if parsed == nil { // -h / --help: docopt printed the usage
			return nil
		}
		return c.Run(parsed)
	}
	return &UsageError{Err: fmt.Errorf("unknown command %q", name)}
}

// UsageError is a command line that does not match the usage (exit code 2). Usage is the
// command's full usage text ("" for an unknown command).
type UsageError struct {
	Usage string
	Err   error
}

func (e *UsageError) Error() string {
	// docopt has already printed the usage line; its own error message is often empty.
	if msg := e.Err.Error(); msg != "" {
		return msg
	}
	return "invalid arguments: see the usage above, or run the command with --help"
}

func (e *UsageError) Unwrap() error { return e.Err }

// UpdateAvailableError is the result of `update --check` (and `github-update --check`) when an
// update is available: not a failure, but exit code 100 so scripts can tell.
type UpdateAvailableError struct {
	Repository, Current, Target string
}

func (e *UpdateAvailableError) Error() string {
	return fmt.Sprintf("an update is available from %s: %s -> %s", e.Repository, e.Current, e.Target)
}

// ExitCode maps a command's result to `flynnrel`'s exit codes: 0 for nil, 100 for
// *UpdateAvailableError, 2 for *UsageError, 1 for anything else.
func ExitCode(err error) int {
	var avail *UpdateAvailableError
	var usage *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &avail):
		return ExitUpdateAvailable
	case errors.As(err, &usage):
		return 2
	default:
		return 1
	}
}

// line prints one `key=value …` result line, quoting values as flynnrel does.
func (h *Host) line(pairs ...string) {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pairs[i])
		b.WriteByte('=')
		b.WriteString(kvValue(pairs[i+1]))
	}
	fmt.Fprintln(h.out(), b.String())
}

func kvValue(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\n\r\"=") {
		return fmt.Sprintf("%q", v)
	}
	return v
}

func (h *Host) out() io.Writer {
	if h.Stdout == nil {
		return io.Discard
	}
	return h.Stdout
}

func (h *Host) errw() io.Writer {
	if h.Stderr == nil {
		return io.Discard
	}
	return h.Stderr
}

// client creates a client for repo from the Host's base options.
func (h *Host) client(repo string) (*flynnrel.Client, error) {
	return flynnrel.NewClient(repo, h.Client)
}

func (h *Host) defaultRepo() string {
	if h.Repository != "" {
		return h.Repository
	}
	return DefaultRepository
}

// layout reads --root, --bin-dir, --config-dir and --layer-dir.
func layout(args *docopt.Args) flynnrel.Layout {
	return flynnrel.Layout{
		Root:      args.String["--root"],
		BinDir:    args.String["--bin-dir"],
		ConfigDir: args.String["--config-dir"],
		LayerDir:  args.String["--layer-dir"],
	}
}

// ExitCode is the process exit code for this error (the same as the function ExitCode), for
// embedding programs that exit on an error's own code.
func (e *UpdateAvailableError) ExitCode() int { return ExitUpdateAvailable }
