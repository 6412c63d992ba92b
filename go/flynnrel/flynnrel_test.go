package flynnrel_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
)

func TestVersionMatchesHeader(t *testing.T) {
	if v := flynnrel.Version(); v != flynnrel.HeaderVersion || v == "" {
		t.Fatalf("Version() = %q, header FLYNNREL_VERSION = %q", v, flynnrel.HeaderVersion)
	}
}

func TestCompareVersionsUsesVersionOrder(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"v2024.01.27.10", "v2024.01.27.9", 1}, // a string comparison says -1
		{"v20170116.0p1", "v20170116.0", 1},
		{"v20210218.0", "v20210218.0", 0},
		{"v20201231.9", "v20210101.0", -1},
		{"v2024.01.27.0-test", "v2024.01.27.0", -1},
		{"v1.2.3-rc.1", "v1.2.3", -1},
		{"v1.10.0", "v1.9.9", 1},
		{"v1.2.3+build.7", "v1.2.3", 0},
	} {
		got, err := flynnrel.CompareVersions(c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d", c.a, c.b, got, err, c.want)
		}
		if back, err := flynnrel.CompareVersions(c.b, c.a); err != nil || back != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d", c.b, c.a, back, err, -c.want)
		}
	}
}

func TestCompareVersionsErrors(t *testing.T) {
	_, err := flynnrel.CompareVersions("v1.2.3", "v20240127.0")
	if !errors.Is(err, flynnrel.ErrVersionMismatch) || errors.Is(err, flynnrel.ErrInvalidData) {
		t.Fatalf("across schemes: %v, want ErrVersionMismatch only", err)
	}
	_, err = flynnrel.CompareVersions("not-a-version", "v1.0.0")
	var e *flynnrel.Error
	if !errors.As(err, &e) || e.Code != flynnrel.StatusInvalidData || !strings.Contains(e.Message, "not-a-version") {
		t.Fatalf("unparsable: %#v, want InvalidData naming the input", err)
	}
}

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		in, scheme string
		pre        bool
	}{
		{"v20240127.0", "flynn_date", false},
		{"v2024.01.27.0", "dotted_date", false},
		{"v2024.01.27.0-test", "dotted_date", true},
		{"v1.2.0-rc.1", "semver", true},
	} {
		v, err := flynnrel.ParseVersion(c.in)
		if err != nil || v.Version != c.in || v.Scheme != c.scheme || v.Prerelease != c.pre {
			t.Errorf("ParseVersion(%q) = %+v, %v; want scheme %s prerelease %v", c.in, v, err, c.scheme, c.pre)
		}
	}
	if _, err := flynnrel.ParseVersion("dev"); !errors.Is(err, flynnrel.ErrInvalidData) {
		t.Errorf("ParseVersion(dev) = %v, want ErrInvalidData", err)
	}
}

// The codes are part of the ABI: they never change once released (docs/c-abi.md#status-codes).
var stableCodes = []struct {
	err  *flynnrel.Error
	code uint32
	name string
}{
	{flynnrel.ErrInvalidArgument, 1, "invalid_argument"},
	{flynnrel.ErrIO, 2, "io"},
	{flynnrel.ErrNetwork, 3, "network"},
	{flynnrel.ErrNotFound, 4, "not_found"},
	{flynnrel.ErrRateLimited, 5, "rate_limited"},
	{flynnrel.ErrInvalidData, 6, "invalid_data"},
	{flynnrel.ErrChecksumMismatch, 7, "checksum_mismatch"},
	{flynnrel.ErrSignatureInvalid, 8, "signature_invalid"},
	{flynnrel.ErrTooLarge, 9, "too_large"},
	{flynnrel.ErrVersionMismatch, 10, "version_mismatch"},
	{flynnrel.ErrInvalidReceipt, 11, "invalid_receipt"},
	{flynnrel.ErrDowngradeRefused, 12, "downgrade_refused"},
	{flynnrel.ErrLocked, 13, "locked"},
	{flynnrel.ErrCancelled, 14, "cancelled"},
	{flynnrel.ErrSmokeTestFailed, 15, "smoke_test_failed"},
	{flynnrel.ErrInsecureURL, 16, "insecure_url"},
	{flynnrel.ErrHTTPStatus, 17, "http_status"},
	{flynnrel.ErrTUFSource, 18, "tuf_source"},
	{flynnrel.ErrPanic, 19, "panic"},
	{flynnrel.ErrNullArgument, 20, "null_argument"},
	{flynnrel.ErrUnsupported, 21, "unsupported"},
	{flynnrel.ErrChannelPointerExpired, 22, "channel_pointer_expired"},
	{flynnrel.ErrChannelPointerReplayed, 23, "channel_pointer_replayed"},
}

func TestSentinelCodesAreStable(t *testing.T) {
	for _, c := range stableCodes {
		if uint32(c.err.Code) != c.code || c.err.Code.String() != c.name {
			t.Errorf("%s: code %d (%s), want %d", c.name, c.err.Code, c.err.Code, c.code)
		}
	}
	if flynnrel.StatusOK != 0 || flynnrel.StatusOK.String() != "ok" || flynnrel.Status(99).String() != "status_99" {
		t.Errorf("StatusOK = %d, Status(99) = %s", flynnrel.StatusOK, flynnrel.Status(99))
	}
}

func TestErrorsIsMatchesExactlyOneSentinel(t *testing.T) {
	for _, c := range stableCodes {
		err := fmt.Errorf("while updating: %w", &flynnrel.Error{Code: flynnrel.Status(c.code), Message: "boom " + c.name})
		for _, other := range stableCodes {
			if got := errors.Is(err, other.err); got != (other.code == c.code) {
				t.Errorf("errors.Is(%s error, Err %s) = %v", c.name, other.name, got)
			}
		}
		var e *flynnrel.Error
		if !errors.As(err, &e) || e.Message != "boom "+c.name || e.Error() != "boom "+c.name {
			t.Errorf("errors.As: %#v", e)
		}
	}
	if errors.Is(errors.New("checksum_mismatch"), flynnrel.ErrChecksumMismatch) {
		t.Error("a foreign error matched a sentinel")
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readJSON(t *testing.T, path string) map[string]interface{} {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]interface{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return m
}

func TestReceiptRoundTripKeepsUnknownFields(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "install-source.json")
	writeFile(t, path, `{
  "source": "github",
  "repository": "flynn/flynn",
  "version": "v20240127.0",
  "installed_at": "2024-01-27T10:00:00Z",
  "channel": "stable",
  "highest_seen_version": "v20240127.0",
  "cluster_id": "c-42",
  "operator_notes": {"ticket": 7, "tags": ["a", "b"]}
}`)
	r, legacy, err := flynnrel.LoadReceipt(dir)
	if err != nil || legacy {
		t.Fatalf("LoadReceipt: %v (legacy %v)", err, legacy)
	}
	want := flynnrel.Receipt{Source: "github", Repository: "flynn/flynn", Version: "v20240127.0",
		InstalledAt: "2024-01-27T10:00:00Z", Channel: "stable", HighestSeenVersion: "v20240127.0"}
	extra := r.Extra
	r.Extra = nil
	if !reflect.DeepEqual(*r, want) {
		t.Fatalf("loaded %+v\nwant   %+v", *r, want)
	}
	if string(extra["cluster_id"]) != `"c-42"` || len(extra) != 2 {
		t.Fatalf("Extra = %s", extra)
	}
	r.Extra = extra
	r.Version, r.HighestSeenVersion = "v20240201.0", "v20240201.0"
	if err := r.Save(dir); err != nil {
		t.Fatal(err)
	}
	m := readJSON(t, path)
	if m["version"] != "v20240201.0" || m["highest_seen_version"] != "v20240201.0" || m["cluster_id"] != "c-42" {
		t.Fatalf("saved %v", m)
	}
	if !reflect.DeepEqual(m["operator_notes"], map[string]interface{}{"ticket": 7.0, "tags": []interface{}{"a", "b"}}) {
		t.Fatalf("operator_notes = %#v", m["operator_notes"])
	}
	if _, ok := m["legacy"]; ok {
		t.Fatal("legacy written to the receipt")
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("files left beside the receipt: %v", ents)
	}
	again, _, err := flynnrel.LoadReceipt(dir)
	if err != nil || !reflect.DeepEqual(again, r) {
		t.Fatalf("reloaded %+v, %v; want %+v", again, err, r)
	}
}

func TestMissingReceiptIsALegacyTUFInstall(t *testing.T) {
	dir := t.TempDir()
	r, legacy, err := flynnrel.LoadReceipt(dir)
	if err != nil || !legacy || r.Source != "tuf" || r.Repository != "https://dl.flynn.io/tuf" || r.Extra != nil {
		t.Fatalf("LoadReceipt(empty) = %+v, %v, %v", r, legacy, err)
	}
	r, legacy, err = flynnrel.LoadReceiptTUF(dir, "https://tuf.example.com/repo")
	if err != nil || !legacy || r.Repository != "https://tuf.example.com/repo" {
		t.Fatalf("LoadReceiptTUF = %+v, %v, %v", r, legacy, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("loading wrote %v", ents)
	}
}

func TestCorruptReceiptIsAnErrorAndKept(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "install-source.json")
	writeFile(t, path, `{"source": "github", "repository": `)
	_, _, err := flynnrel.LoadReceipt(dir)
	if !errors.Is(err, flynnrel.ErrInvalidReceipt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadReceipt(corrupt) = %v, want ErrInvalidReceipt naming %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"source": "github", "repository": ` {
		t.Fatalf("corrupt receipt rewritten: %q", b)
	}
}

func TestSaveCannotLowerHighestSeenOrSwapThePin(t *testing.T) {
	dir := t.TempDir()
	const pin = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"
	r := &flynnrel.Receipt{Source: "github", Repository: "flynn/flynn", Version: "v20240127.0",
		InstalledAt: "2024-01-27T10:00:00Z", HighestSeenVersion: "v20240201.0", PublicKey: pin}
	if err := r.Save(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "install-source.json")
	before, _ := os.ReadFile(path)
	lower := *r
	lower.HighestSeenVersion = "v20240101.0"
	if err := lower.Save(dir); !errors.Is(err, flynnrel.ErrDowngradeRefused) {
		t.Fatalf("lowering highest_seen_version: %v, want ErrDowngradeRefused", err)
	}
	unpinned := *r
	unpinned.PublicKey = ""
	err := unpinned.Save(dir)
	var e *flynnrel.Error
	if !errors.Is(err, flynnrel.ErrSignatureInvalid) || !errors.As(err, &e) || e.Hint == nil || e.Hint.Kind != flynnrel.HintRotatePinnedKey {
		t.Fatalf("removing the pin: %v (hint %+v), want ErrSignatureInvalid with a rotate_pinned_key hint", err, e)
	}
	if strings.Contains(e.Message, "--") {
		t.Fatalf("the library's message names a flag: %q", e.Message)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatalf("a refused save changed the receipt:\n%s", after)
	}
}

func TestSaveRefusesAnInvalidReceipt(t *testing.T) {
	dir := t.TempDir()
	r := &flynnrel.Receipt{Source: "ftp", Repository: "flynn/flynn", Version: "v20240127.0", InstalledAt: "2024-01-27T10:00:00Z"}
	if err := r.Save(dir); err == nil {
		t.Fatal("saved a receipt with source ftp")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a refused save wrote %v", ents)
	}
}

func TestNewClientValidatesAndCloseIsIdempotent(t *testing.T) {
	if _, err := flynnrel.NewClient("not a repository", flynnrel.ClientOptions{}); !errors.Is(err, flynnrel.ErrInvalidArgument) {
		t.Fatalf("NewClient(bad repo) = %v, want ErrInvalidArgument", err)
	}
	c, err := flynnrel.NewClient("flynn/flynn", flynnrel.ClientOptions{APIURL: "http://127.0.0.1:1", IgnoreTokenEnv: true, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if c.Repository() != "flynn/flynn" {
		t.Fatalf("Repository() = %q", c.Repository())
	}
	if _, err := c.LatestRelease(); !errors.Is(err, flynnrel.ErrNetwork) {
		t.Fatalf("LatestRelease against a closed port = %v, want ErrNetwork", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Releases(); !errors.Is(err, flynnrel.ErrInvalidArgument) || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Releases after Close = %v", err)
	}
}

func TestPlainHTTPIsRefusedOffLoopback(t *testing.T) {
	c, err := flynnrel.NewClient("flynn/flynn", flynnrel.ClientOptions{APIURL: "http://example.com", IgnoreTokenEnv: true})
	if err == nil {
		defer c.Close()
		_, err = c.LatestRelease()
	}
	if !errors.Is(err, flynnrel.ErrInsecureURL) {
		t.Fatalf("plain http to example.com: %v, want ErrInsecureURL", err)
	}
}
