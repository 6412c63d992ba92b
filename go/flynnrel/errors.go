package flynnrel

// #include "flynnrel.h"
import "C"

import "strconv"

// Status is a stable status code of the C ABI (FLYNNREL_STATUS_*): 0 is success, every other
// value names one error kind and never changes meaning.
type Status uint32

// The status codes of include/flynnrel.h.
const (
	StatusOK               Status = C.FLYNNREL_STATUS_OK
	StatusInvalidArgument  Status = C.FLYNNREL_STATUS_INVALID_ARGUMENT
	StatusIO               Status = C.FLYNNREL_STATUS_IO
	StatusNetwork          Status = C.FLYNNREL_STATUS_NETWORK
	StatusNotFound         Status = C.FLYNNREL_STATUS_NOT_FOUND
	StatusRateLimited      Status = C.FLYNNREL_STATUS_RATE_LIMITED
	StatusInvalidData      Status = C.FLYNNREL_STATUS_INVALID_DATA
	StatusChecksumMismatch Status = C.FLYNNREL_STATUS_CHECKSUM_MISMATCH
	StatusSignatureInvalid Status = C.FLYNNREL_STATUS_SIGNATURE_INVALID
	StatusTooLarge         Status = C.FLYNNREL_STATUS_TOO_LARGE
	StatusVersionMismatch  Status = C.FLYNNREL_STATUS_VERSION_MISMATCH
	StatusInvalidReceipt   Status = C.FLYNNREL_STATUS_INVALID_RECEIPT
	StatusDowngradeRefused Status = C.FLYNNREL_STATUS_DOWNGRADE_REFUSED
	StatusLocked           Status = C.FLYNNREL_STATUS_LOCKED
	StatusCancelled        Status = C.FLYNNREL_STATUS_CANCELLED
	StatusSmokeTestFailed  Status = C.FLYNNREL_STATUS_SMOKE_TEST_FAILED
	StatusInsecureURL      Status = C.FLYNNREL_STATUS_INSECURE_URL
	StatusHTTPStatus       Status = C.FLYNNREL_STATUS_HTTP_STATUS
	StatusTUFSource        Status = C.FLYNNREL_STATUS_TUF_SOURCE
	StatusPanic            Status = C.FLYNNREL_STATUS_PANIC
	StatusNullArgument     Status = C.FLYNNREL_STATUS_NULL_ARGUMENT
	StatusUnsupported      Status = C.FLYNNREL_STATUS_UNSUPPORTED
)

var statusNames = map[Status]string{
	StatusOK:               "ok",
	StatusInvalidArgument:  "invalid_argument",
	StatusIO:               "io",
	StatusNetwork:          "network",
	StatusNotFound:         "not_found",
	StatusRateLimited:      "rate_limited",
	StatusInvalidData:      "invalid_data",
	StatusChecksumMismatch: "checksum_mismatch",
	StatusSignatureInvalid: "signature_invalid",
	StatusTooLarge:         "too_large",
	StatusVersionMismatch:  "version_mismatch",
	StatusInvalidReceipt:   "invalid_receipt",
	StatusDowngradeRefused: "downgrade_refused",
	StatusLocked:           "locked",
	StatusCancelled:        "cancelled",
	StatusSmokeTestFailed:  "smoke_test_failed",
	StatusInsecureURL:      "insecure_url",
	StatusHTTPStatus:       "http_status",
	StatusTUFSource:        "tuf_source",
	StatusPanic:            "panic",
	StatusNullArgument:     "null_argument",
	StatusUnsupported:      "unsupported",
}

// String returns the status's name ("checksum_mismatch"), or "status_N" for a code this package
// does not know (a newer library).
func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return "status_" + strconv.FormatUint(uint64(s), 10)
}

// Error is a failure reported by the library: its stable status code and its message, which
// names the file or URL involved and what to do.
type Error struct {
	Code    Status
	Message string
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

// Sentinel errors, one per status code, for errors.Is.
var (
	ErrInvalidArgument  = &Error{Code: StatusInvalidArgument}
	ErrIO               = &Error{Code: StatusIO}
	ErrNetwork          = &Error{Code: StatusNetwork}
	ErrNotFound         = &Error{Code: StatusNotFound}
	ErrRateLimited      = &Error{Code: StatusRateLimited}
	ErrInvalidData      = &Error{Code: StatusInvalidData}
	ErrChecksumMismatch = &Error{Code: StatusChecksumMismatch}
	ErrSignatureInvalid = &Error{Code: StatusSignatureInvalid}
	ErrTooLarge         = &Error{Code: StatusTooLarge}
	ErrVersionMismatch  = &Error{Code: StatusVersionMismatch}
	ErrInvalidReceipt   = &Error{Code: StatusInvalidReceipt}
	ErrDowngradeRefused = &Error{Code: StatusDowngradeRefused}
	ErrLocked           = &Error{Code: StatusLocked}
	ErrCancelled        = &Error{Code: StatusCancelled}
	ErrSmokeTestFailed  = &Error{Code: StatusSmokeTestFailed}
	ErrInsecureURL      = &Error{Code: StatusInsecureURL}
	ErrHTTPStatus       = &Error{Code: StatusHTTPStatus}
	ErrTUFSource        = &Error{Code: StatusTUFSource}
	ErrPanic            = &Error{Code: StatusPanic}
	ErrNullArgument     = &Error{Code: StatusNullArgument}
	ErrUnsupported      = &Error{Code: StatusUnsupported}
)
