package flynnhost

import (
	"errors"

	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	docopt "github.com/flynn/go-docopt"
)

// Advice words the hint of a library error (a *flynnrel.Error anywhere in err's chain) in
// flynn-host's commands and flag names; "" when err carries no hint, or one this package does
// not word. The library's messages never name a front-end's flags: this is where flynn-host's
// own spelling (`--version=<ver>`, `--root=<dir>`) is decided.
func Advice(err error) string {
	var e *flynnrel.Error
	if !errors.As(err, &e) || e.Hint == nil {
		return ""
	}
	h := e.Hint
	switch h.Kind {
	case flynnrel.HintAllowDowngrade:
		return "to install " + h.Version + " on purpose, run `flynn-host update --version=" + h.Version + " --allow-downgrade`"
	case flynnrel.HintNameVersion:
		return "run `flynn-host update --version=" + h.Version + "` (or pass --force)"
	case flynnrel.HintChooseVersion:
		return "name the version to install: --version=<ver> (FLYNN_VERSION for `flynn-host download`)"
	case flynnrel.HintRotatePinnedKey:
		key := h.Key
		if key == "" {
			key = "NEWKEY"
		}
		return "flynn-host does not change the pinned key: rotate it with the flynnrel helper, `flynnrel source set --pin-public-key " + key + "`"
	case flynnrel.HintRepairReceipt:
		return "fix it by hand, or replace it with the flynnrel helper's `flynnrel source set --source github|tuf --repository REPOSITORY`, which keeps the unreadable file beside the new receipt"
	case flynnrel.HintFixReceiptField:
		return "fix the receipt's `" + h.Field + "` by hand"
	case flynnrel.HintTUFRepositoryURL:
		return "a tuf source needs the TUF repository URL (as --repository=<uri> takes it)"
	case flynnrel.HintChooseRoot:
		return "run as root, or give --root=<dir> a writable directory (it is created if missing)"
	case flynnrel.HintInstallFirst:
		return "install Flynn first (`flynn-host download --github-repo=<owner/repo>`), or point --root, --bin-dir and --config-dir at the host"
	case flynnrel.HintCheckRepository:
		return "check the repository: --github-repo (download), --repo (github-update), FLYNN_GITHUB_REPO or the receipt's `repository`"
	case flynnrel.HintCheckAPIURL:
		return "check FLYNN_GITHUB_API_URL: it must be a GitHub API, https://api.github.com or https://HOST/api/v3"
	}
	return ""
}

// advisedError is a library error with flynn-host's words for its hint appended; errors.Is and
// errors.As see the library error through Unwrap.
type advisedError struct {
	err    error
	advice string
}

func (e *advisedError) Error() string { return e.err.Error() + "; " + e.advice }
func (e *advisedError) Unwrap() error { return e.err }

// withAdvice returns err with its Advice appended (err itself when there is none).
func withAdvice(err error) error {
	if a := Advice(err); a != "" {
		return &advisedError{err: err, advice: a}
	}
	return err
}

// advised wraps a command so that every error it returns carries flynn-host's advice.
func advised(run func(*docopt.Args) error) func(*docopt.Args) error {
	return func(args *docopt.Args) error { return withAdvice(run(args)) }
}
