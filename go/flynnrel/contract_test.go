package flynnrel

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The golden documents of testdata/contract (written by the Rust tests in tests/contract.rs)
// decode into the Go types with unknown fields refused, and encode back to the same document: a
// field renamed or added on one side fails here or there.
func TestContractDocuments(t *testing.T) {
	cases := []struct {
		file string
		v    interface{}
	}{
		{"client.json", &clientJSON{}},
		{"install_request.json", &InstallOptions{}},
		{"update_request.json", &UpdateOptions{}},
		{"install_report.json", &InstallReport{}},
		{"update_outcome_updated.json", &UpdateResult{}},
		{"update_outcome_available.json", &UpdateResult{}},
		{"update_outcome_tuf.json", &UpdateResult{}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join("..", "..", "testdata", "contract", c.file))
			if err != nil {
				t.Fatal(err)
			}
			if err := strictUnmarshal(text, c.v); err != nil {
				t.Fatalf("%s does not decode into %T: %v", c.file, c.v, err)
			}
			back, err := json.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			var want, got map[string]interface{}
			if err := json.Unmarshal(text, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(back, &got); err != nil {
				t.Fatal(err)
			}
			// Outcome structs hold every variant's fields; compare the fields the document has.
			for k, w := range want {
				g, ok := got[k]
				if w == nil && !ok {
					continue // null in the contract: Go omits the zero value
				}
				if !ok || !reflect.DeepEqual(g, w) {
					t.Errorf("%s: field %q: Go encodes %v, the contract says %v", c.file, k, g, w)
				}
			}
			if _, isOutcome := c.v.(*UpdateResult); !isOutcome {
				for k := range got {
					if _, ok := want[k]; !ok {
						t.Errorf("%s: Go encodes field %q the contract does not have", c.file, k)
					}
				}
			}
		})
	}
}

// A document with a field the Go types do not know is refused, naming the field.
func TestContractRefusesUnknownFields(t *testing.T) {
	var r InstallReport
	err := strictUnmarshal([]byte(`{"repository":"a/b","versoin":"v1"}`), &r)
	if err == nil || !strings.Contains(err.Error(), "versoin") {
		t.Fatalf("want an error naming versoin, got %v", err)
	}
}
