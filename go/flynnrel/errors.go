package flynnrel

// #include "flynnrel.h"
import "C"

import "strconv"

// Status is a stable status code of the C ABI (FLYNNREL_STATUS_*): 0 is success, every other
// value names one error kind and never changes meaning.
type Status uint32

// The Status* constants and Err* sentinels are generated from the library's table of error kinds
// (src/error_kinds.rs) into status_gen.go by the library's build.rs.

// String returns the status's name as the library gives it (flynnrel_status_name:
// "checksum_mismatch"), or "status_N" for a code the linked library does not know.
func (s Status) String() string {
	if n := C.flynnrel_status_name(C.flynnrel_status(s)); n != nil {
		return C.GoString(n)
	}
	return "status_" + strconv.FormatUint(uint64(s), 10)
}

// Error is a failure reported by the library: its stable status code, its message, which names
// the file or URL involved and what went wrong, and what the operator can do about it as data
// (Hint, nil when the library gave none; a program words it with its own flags or fields, as
// package flynnhost does with flynn-host's).
type Error struct {
	Code    Status
	Message string
	Hint    *Hint
}

// The kinds of Hint the library gives (src/error.rs, enum Hint); a newer library may add kinds,
// which a program that does not know them leaves unworded.
const (
	// HintAllowDowngrade: installing Version needs it named explicitly and downgrades allowed.
	HintAllowDowngrade = "allow_downgrade"
	// HintNameVersion: a development build is replaced only by a named version (Version), or
	// a forced update.
	HintNameVersion = "name_version"
	// HintChooseVersion: the releases cannot be ordered; name the version to install.
	HintChooseVersion = "choose_version"
	// HintRotatePinnedKey: the host pins another key; change the pin first (to Key when set).
	HintRotatePinnedKey = "rotate_pinned_key"
	// HintRepairReceipt: the receipt is unreadable; fix it or replace it.
	HintRepairReceipt = "repair_receipt"
	// HintFixReceiptField: the receipt's Field is bad; fix or set it.
	HintFixReceiptField = "fix_receipt_field"
	// HintTUFRepositoryURL: a TUF source needs the TUF repository URL as its repository.
	HintTUFRepositoryURL = "tuf_repository_url"
	// HintChooseRoot: the host directories are unusable; run as root or choose another root.
	HintChooseRoot = "choose_root"
	// HintInstallFirst: nothing is installed in the directories given.
	HintInstallFirst = "install_first"
	// HintCheckRepository: check the repository name.
	HintCheckRepository = "check_repository"
	// HintCheckAPIURL: check the GitHub API URL.
	HintCheckAPIURL = "check_api_url"
	// HintSetOptions: give the Options named ("repository", "version", "web_url", "build_dir",
	// "helper", "out_dir", "layer_cache").
	HintSetOptions = "set_options"
)

// Hint is what the operator can do about an error, as the library's data
// (flynnrel_error_hint_json): Kind is one of the Hint* constants, the other fields are set as
// the kind says.
type Hint struct {
	Kind    string   `json:"hint"`
	Version string   `json:"version,omitempty"`
	Key     string   `json:"key,omitempty"`
	Field   string   `json:"field,omitempty"`
	Options []string `json:"options,omitempty"`
}

// Error returns the library's message.
func (e *Error) Error() string {
	if e.Message == "" {
		return "flynnrel: " + e.Code.String()
	}
	return e.Message
}

// Is reports whether target is an *Error of the same status code, so that
// errors.Is(err, flynnrel.ErrNotFound) tests the kind whatever the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && e != nil && t.Code == e.Code
}
