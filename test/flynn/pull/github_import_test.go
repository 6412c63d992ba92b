package downloader

// The GitHub downloader's layer import (flynn/host/downloader/github.go in libflynnrel): a layer
// file that does not match the manifest's length or hashes is refused and nothing is imported;
// one that changes while it is imported fails the import. libflynnrel's script/test-flynn copies
// this file into the integrated Flynn tree (host/downloader/).

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/ioutil"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ct "github.com/flynn/flynn/controller/types"
	"github.com/flynn/flynn/host/volume"
	"github.com/flynn/flynn/host/volume/manager"
	"github.com/flynn/flynn/libflynnrel/go/flynnhost"
	"github.com/inconshreveable/log15"
)

// importProvider stores what it imports; before, when set, runs before the data is read.
type importProvider struct {
	volume.Provider // nil: only the methods below are used
	imported        map[string][]byte
	before          func()
}

type importedVolume struct {
	info *volume.Info
	p    *importProvider
}

func (v *importedVolume) Info() *volume.Info        { return v.info }
func (v *importedVolume) Provider() volume.Provider { return v.p }
func (v *importedVolume) Location() string          { return "" }
func (v *importedVolume) IsSnapshot() bool          { return false }

func (p *importProvider) Kind() string { return "import-test" }
func (p *importProvider) MarshalGlobalState() (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}
func (p *importProvider) MarshalVolumeState(string) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}
func (p *importProvider) ImportFilesystem(fs *volume.Filesystem) (volume.Volume, error) {
	if p.before != nil {
		p.before()
	}
	b, err := ioutil.ReadAll(fs.Data)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != fs.Size {
		return nil, errors.New("short data")
	}
	p.imported[fs.ID] = b
	return &importedVolume{info: fs.Info(), p: p}, nil
}

func TestGitHubImportVerifiesLayers(t *testing.T) {
	dir, err := ioutil.TempDir("", "github-import")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	prov := &importProvider{imported: map[string][]byte{}}
	vman := volumemanager.New(filepath.Join(dir, "volumes.bolt"), log15.New(), func() (volume.Provider, error) { return prov, nil })
	if err := vman.OpenDB(); err != nil {
		t.Fatal(err)
	}
	defer vman.CloseDB()
	layerDir := filepath.Join(dir, "layers")
	if err := os.MkdirAll(layerDir, 0755); err != nil {
		t.Fatal(err)
	}
	d := &GitHub{puller: &flynnhost.Puller{LayerDir: layerDir}, vman: vman}

	data := []byte(strings.Repeat("squashfs layer bytes ", 1000))
	sum := sha512.Sum512_256(data)
	layer := &ct.ImageLayer{ID: "0123456789abcdef", Type: ct.ImageLayerTypeSquashfs, Length: int64(len(data)),
		Hashes: map[string]string{"sha512_256": hex.EncodeToString(sum[:])}}
	path := filepath.Join(layerDir, layer.ID+".squashfs")
	url := "file://" + path
	write := func(b []byte) {
		if err := ioutil.WriteFile(path, b, 0644); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(what, wantErr string) {
		t.Helper()
		err := d.importLayer(layer, url, nil)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("%s: importLayer returned %v, want an error with %q", what, err, wantErr)
		}
		if len(prov.imported) != 0 || vman.GetVolume(layer.ID) != nil {
			t.Fatalf("%s: the layer was imported", what)
		}
	}

	tampered := append([]byte(nil), data...)
	tampered[len(tampered)/2] ^= 1
	write(tampered)
	refused("a flipped byte", "expected sha512_256 hash")
	write(append(append([]byte(nil), data...), 'x'))
	refused("a longer file", "the manifest says")
	write(data[:len(data)-1])
	refused("a shorter file", "the manifest says")
	write(data)
	url = "file://" + filepath.Join(dir, layer.ID+".squashfs")
	refused("a URL outside the layer cache", "is not the verified layer file")
	url = "http://127.0.0.1:9/" + layer.ID + ".squashfs"
	refused("a URL that is not a file", "is not the verified layer file")
	url = "file://" + path
	// The file changes after the check, while the provider reads it: the verifying reader fails
	// the read, so the provider imports nothing.
	prov.before = func() { write(tampered) }
	refused("a file changed during the import", "layer data: verify")
	prov.before = nil
	write(data)
	if err := d.importLayer(layer, url, map[string]string{"flynn.component": "test"}); err != nil {
		t.Fatalf("importing the valid layer: %s", err)
	}
	if got := prov.imported[layer.ID]; string(got) != string(data) || vman.GetVolume(layer.ID) == nil {
		t.Fatalf("the valid layer was not imported with its bytes (%d bytes)", len(got))
	}
	// A layer the volume manager has is not imported again.
	write(tampered)
	if err := d.importLayer(layer, url, nil); err != nil {
		t.Fatalf("a layer already imported: %s", err)
	}
}
