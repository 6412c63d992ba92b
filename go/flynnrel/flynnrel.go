package flynnrel

// #cgo CFLAGS: -I${SRCDIR}/../../include -I${SRCDIR}/prebuilt
// #include <stdlib.h>
// #include "flynnrel.h"
import "C"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unsafe"
)

// HeaderVersion is FLYNNREL_VERSION of the header this package was compiled against.
const HeaderVersion = C.FLYNNREL_VERSION

// Version returns the version of the linked library ("0.1.0"); it equals HeaderVersion unless a
// different library was linked than the header describes.
func Version() string {
	return C.GoString(C.flynnrel_version())
}

// ParsedVersion is a version as the library understands it (docs/versions.md#versions).
type ParsedVersion struct {
	// Version is the version as given, e.g. "v20240127.0".
	Version string `json:"version"`
	// Scheme is "flynn_date", "dotted_date" or "semver".
	Scheme string `json:"scheme"`
	// Prerelease is true for a version with a pre-release suffix ("v1.2.0-rc.1").
	Prerelease bool `json:"prerelease"`
}

// ParseVersion parses a Flynn date, dotted date or semver version. An unparsable string is
// ErrInvalidData.
func ParseVersion(version string) (*ParsedVersion, error) {
	cv := C.CString(version)
	defer C.free(unsafe.Pointer(cv))
	var out *C.char
	if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
		return C.flynnrel_version_parse(cv, &out, e)
	}); err != nil {
		return nil, err
	}
	var v ParsedVersion
	if err := decode(out, "version", &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// CompareVersions returns -1, 0 or 1 as a sorts before, equal to or after b, by version order
// (never by string order). Versions of different schemes are ErrVersionMismatch; an unparsable
// version is ErrInvalidData.
func CompareVersions(a, b string) (int, error) {
	ca, cb := C.CString(a), C.CString(b)
	defer C.free(unsafe.Pointer(ca))
	defer C.free(unsafe.Pointer(cb))
	var r C.int
	if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
		return C.flynnrel_version_compare(ca, cb, &r, e)
	}); err != nil {
		return 0, err
	}
	return int(r), nil
}

// call runs one library call and turns a failure into an *Error, freeing the C error at once.
func call(f func(**C.flynnrel_error) C.flynnrel_status) error {
	var cerr *C.flynnrel_error
	st := f(&cerr)
	if st == C.FLYNNREL_STATUS_OK {
		C.flynnrel_error_free(cerr) // never set on success; harmless when NULL
		return nil
	}
	return takeError(st, cerr)
}

// takeError copies a C error into an *Error and frees it.
func takeError(st C.flynnrel_status, cerr *C.flynnrel_error) *Error {
	e := &Error{Code: Status(st)}
	if cerr != nil {
		if c := C.flynnrel_error_code(cerr); c != 0 {
			e.Code = Status(c)
		}
		e.Message = C.GoString(C.flynnrel_error_message(cerr))
		if h := C.flynnrel_error_hint_json(cerr); h != nil {
			var hint Hint
			// A hint that does not decode is dropped: the message alone still says what failed.
			if json.Unmarshal([]byte(C.GoString(h)), &hint) == nil && hint.Kind != "" {
				e.Hint = &hint
			}
		}
		C.flynnrel_error_free(cerr)
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("flynnrel: %s (status %d)", e.Code, uint32(e.Code))
	}
	return e
}

// decode frees a JSON string returned by the library after decoding it into v.
func decode(s *C.char, what string, v interface{}) error {
	return decodeWith(json.Unmarshal, s, what, v)
}

// decodeStrict is decode for the library's own outcome documents: a field this package does not
// know is an error, so a library and a Go package that disagree on the contract fail loudly.
func decodeStrict(s *C.char, what string, v interface{}) error {
	return decodeWith(strictUnmarshal, s, what, v)
}

// decodeWith takes and frees the library's JSON string s and unmarshals it into v.
func decodeWith(unmarshal func([]byte, interface{}) error, s *C.char, what string, v interface{}) error {
	if s == nil {
		return &Error{Code: StatusInvalidData, Message: "flynnrel: the library returned no " + what}
	}
	text := C.GoString(s)
	C.flynnrel_string_free(s)
	if err := unmarshal([]byte(text), v); err != nil {
		return &Error{Code: StatusInvalidData, Message: fmt.Sprintf("flynnrel: cannot decode the %s the library returned: %v", what, err)}
	}
	return nil
}

// strictUnmarshal is json.Unmarshal refusing unknown fields and trailing data.
func strictUnmarshal(b []byte, v interface{}) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data after the document")
	}
	return nil
}

// cjson is C.CString of v as a JSON document; free the result with C.free.
func cjson(v interface{}) (*C.char, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, &Error{Code: StatusInvalidArgument, Message: fmt.Sprintf("flynnrel: cannot encode options: %v", err)}
	}
	return C.CString(string(b)), nil
}

// optCString is C.CString, or NULL for "".
func optCString(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}
