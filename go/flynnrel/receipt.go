package flynnrel

// #include <stdlib.h>
// #include "flynnrel.h"
import "C"

import (
	"encoding/json"
	"fmt"
	"unsafe"
)

// Receipt is the install receipt, <config-dir>/install-source.json (docs/receipt.md#the-install-receipt): where this host
// was installed from, so updates come from the same place.
type Receipt struct {
	// Source is "github" or "tuf".
	Source string
	// Repository is OWNER/NAME for github, the TUF repository URL for tuf.
	Repository string
	// Version is the installed version.
	Version string
	// InstalledAt is an RFC 3339 time.
	InstalledAt string
	// Channel is "stable" or "nightly" ("" when none was chosen).
	Channel string
	// APIURL is the GitHub API base ("" for the default).
	APIURL string
	// PublicKey is the pinned minisign public key ("" when not pinned).
	PublicKey string
	// HighestSeenVersion only ever grows (anti-rollback).
	HighestSeenVersion string
	// Extra holds every other field of the file, written back unchanged by Save.
	Extra map[string]json.RawMessage
}

// The fields Receipt knows; everything else goes to Extra.
var receiptFields = map[string]bool{
	"source": true, "repository": true, "version": true, "installed_at": true, "channel": true,
	"api_url": true, "public_key": true, "highest_seen_version": true,
}

type receiptJSON struct {
	Source             string `json:"source"`
	Repository         string `json:"repository"`
	Version            string `json:"version"`
	InstalledAt        string `json:"installed_at"`
	Channel            string `json:"channel,omitempty"`
	APIURL             string `json:"api_url,omitempty"`
	PublicKey          string `json:"public_key,omitempty"`
	HighestSeenVersion string `json:"highest_seen_version,omitempty"`
}

// MarshalJSON writes the receipt's fields and Extra as one object.
func (r *Receipt) MarshalJSON() ([]byte, error) {
	known, err := json.Marshal(receiptJSON{
		r.Source, r.Repository, r.Version, r.InstalledAt, r.Channel, r.APIURL, r.PublicKey, r.HighestSeenVersion,
	})
	if err != nil {
		return nil, err
	}
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(known, &m); err != nil {
		return nil, err
	}
	for k, v := range r.Extra {
		if !receiptFields[k] {
			m[k] = v
		}
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads the known fields and keeps the others in Extra. A null optional field
// reads as "".
func (r *Receipt) UnmarshalJSON(b []byte) error {
	var k struct {
		Source             *string `json:"source"`
		Repository         *string `json:"repository"`
		Version            *string `json:"version"`
		InstalledAt        *string `json:"installed_at"`
		Channel            *string `json:"channel"`
		APIURL             *string `json:"api_url"`
		PublicKey          *string `json:"public_key"`
		HighestSeenVersion *string `json:"highest_seen_version"`
	}
	if err := json.Unmarshal(b, &k); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	s := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	*r = Receipt{
		Source: s(k.Source), Repository: s(k.Repository), Version: s(k.Version), InstalledAt: s(k.InstalledAt),
		Channel: s(k.Channel), APIURL: s(k.APIURL), PublicKey: s(k.PublicKey), HighestSeenVersion: s(k.HighestSeenVersion),
	}
	for name, v := range all {
		if !receiptFields[name] {
			if r.Extra == nil {
				r.Extra = map[string]json.RawMessage{}
			}
			r.Extra[name] = v
		}
	}
	return nil
}

// LoadReceipt reads the receipt of configDir. Without a receipt file the host is a legacy TUF
// install: the result has Source "tuf" and Flynn's default TUF repository, and legacy is true.
// A receipt that exists but is unreadable or invalid is ErrInvalidReceipt (or ErrIO), never
// replaced.
func LoadReceipt(configDir string) (r *Receipt, legacy bool, err error) {
	return LoadReceiptTUF(configDir, "")
}

// LoadReceiptTUF is LoadReceipt with the TUF repository to report for a legacy install ("" for
// Flynn's default).
func LoadReceiptTUF(configDir, tufRepository string) (r *Receipt, legacy bool, err error) {
	cdir := C.CString(configDir)
	defer C.free(unsafe.Pointer(cdir))
	ctuf := optCString(tufRepository)
	defer C.free(unsafe.Pointer(ctuf))
	var out *C.char
	if err := call(func(e **C.flynnrel_error) C.flynnrel_status {
		return C.flynnrel_receipt_load(cdir, ctuf, &out, e)
	}); err != nil {
		return nil, false, err
	}
	r = &Receipt{}
	if err := decode(out, "receipt", r); err != nil {
		return nil, false, err
	}
	if raw, ok := r.Extra["legacy"]; ok {
		if err := json.Unmarshal(raw, &legacy); err != nil {
			return nil, false, &Error{Code: StatusInvalidData, Message: fmt.Sprintf("flynnrel: bad legacy flag %s", raw)}
		}
		delete(r.Extra, "legacy")
		if len(r.Extra) == 0 {
			r.Extra = nil
		}
	}
	return r, legacy, nil
}

// Save writes the receipt to configDir atomically (temp file, fsync, rename, mode 0644), keeping
// Extra, under the config-dir lock and with the rules of every receipt edit: an invalid receipt
// is ErrInvalidArgument, lowering HighestSeenVersion is ErrDowngradeRefused, changing or removing
// a pinned PublicKey is ErrSignatureInvalid (rotate a pin with `flynnrel source set
// --pin-public-key`), and ErrLocked while an install or update runs. Nothing is written on error.
func (r *Receipt) Save(configDir string) error {
	doc, err := cjson(r)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(doc))
	cdir := C.CString(configDir)
	defer C.free(unsafe.Pointer(cdir))
	return call(func(e **C.flynnrel_error) C.flynnrel_status {
		return C.flynnrel_receipt_save(cdir, doc, e)
	})
}
