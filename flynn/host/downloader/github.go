package downloader

// The GitHub Releases downloader (libflynnrel): Downloader's methods for a host whose install
// receipt says github. libflynnrel downloads and verifies (checksums, signature pin,
// anti-rollback; github.com/flynn/flynn/libflynnrel/go/flynnhost's Puller); this file reads the
// manifest with Flynn's types and imports the verified layers into the volume manager, streaming
// each through pkg/verify once more.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"syscall"

	ct "github.com/flynn/flynn/controller/types"
	"github.com/flynn/flynn/host/volume"
	"github.com/flynn/flynn/host/volume/manager"
	"github.com/flynn/flynn/libflynnrel/go/flynnhost"
	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	"github.com/flynn/flynn/pkg/httphelper"
	"github.com/flynn/flynn/pkg/verify"
)

// GitHub downloads one release from the GitHub repository of a host's install receipt.
type GitHub struct {
	puller  *flynnhost.Puller
	vman    *volumemanager.Manager
	version string
}

// NewGitHub returns the GitHub downloader of version for the host whose github receipt r is in
// configDir; layers are kept in layerDir ("" = /var/lib/flynn/layer-cache) and imported into
// vman. Close it when done.
func NewGitHub(r *flynnrel.Receipt, configDir, layerDir string, vman *volumemanager.Manager, version string) (*GitHub, error) {
	p, err := flynnhost.NewPuller(r, configDir, layerDir, version)
	if err != nil {
		return nil, err
	}
	return &GitHub{puller: p, vman: vman, version: version}, nil
}

// Close frees the GitHub client.
func (d *GitHub) Close() error { return d.puller.Close() }

// DownloadBinaries updates the host to the version through libflynnrel (all or nothing, the
// receipt rewritten to it) and returns name → versioned path, as Downloader.DownloadBinaries.
func (d *GitHub) DownloadBinaries(dir string) (map[string]string, error) {
	paths, err := d.puller.PullBinaries(dir)
	return paths, visible(err)
}

// DownloadConfig installs bootstrap-manifest.json into dir, as Downloader.DownloadConfig.
func (d *GitHub) DownloadConfig(dir string) (map[string]string, error) {
	paths, err := d.puller.PullConfig(dir)
	return paths, visible(err)
}

// visible makes err's message reach the client of the pull handler (httphelper.Error hides the
// message of other errors); DownloadImages' errors reach it through the event stream as they are.
func visible(err error) error {
	if err == nil {
		return nil
	}
	return httphelper.JSONError{Code: httphelper.UnknownErrorCode, Message: err.Error()}
}

// DownloadImages installs images.<version>.json into dir and the layers into the layer cache
// (verified by libflynnrel), then, as Downloader.DownloadImages, reports every image and
// squashfs layer on info and imports each layer the volume manager does not have.
func (d *GitHub) DownloadImages(dir string, info chan *ct.ImagePullInfo) error {
	defer close(info)

	path, err := d.puller.PullImages(dir)
	if err != nil {
		return err
	}
	if want := filepath.Join(dir, "images."+d.version+".json"); filepath.Clean(path) != want {
		return fmt.Errorf("github downloader: the images manifest is %s, want %s", path, want)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var images map[string]*ct.Artifact
	if err := json.NewDecoder(f).Decode(&images); err != nil {
		return fmt.Errorf("github downloader: reading %s: %s", path, err)
	}

	for _, image := range images {
		if err := d.downloadImage(image, info); err != nil {
			return err
		}
	}
	return nil
}

func (d *GitHub) downloadImage(artifact *ct.Artifact, info chan *ct.ImagePullInfo) error {
	info <- &ct.ImagePullInfo{
		Name:     artifact.Meta["flynn.component"],
		Type:     ct.ImagePullTypeImage,
		Artifact: artifact,
	}

	for _, rootfs := range artifact.Manifest().Rootfs {
		for _, layer := range rootfs.Layers {
			if layer.Type != ct.ImageLayerTypeSquashfs {
				continue
			}

			info <- &ct.ImagePullInfo{
				Name:  artifact.Meta["flynn.component"],
				Type:  ct.ImagePullTypeLayer,
				Layer: layer,
			}

			if err := d.importLayer(layer, artifact.LayerURL(layer), artifact.Meta); err != nil {
				return fmt.Errorf("error downloading layer: %s", err)
			}
		}
	}

	return nil
}

// importLayer imports the verified layer file the manifest's URL names (file://<layer
// cache>/<id>.squashfs) unless the volume exists. The file is checked against the manifest's
// length and hashes first, so a mismatch imports nothing, and its bytes are streamed into the
// volume through pkg/verify again, so a file changed in between fails the import.
func (d *GitHub) importLayer(layer *ct.ImageLayer, layerURL string, meta map[string]string) error {
	if vol := d.vman.GetVolume(layer.ID); vol != nil {
		return nil
	}

	u, err := url.Parse(layerURL)
	if err != nil {
		return err
	}
	want := filepath.Join(d.puller.LayerDir, layer.ID+".squashfs")
	if u.Scheme != "file" || filepath.Clean(u.Path) != want {
		return fmt.Errorf("layer %s: URL %q is not the verified layer file file://%s", layer.ID, layerURL, want)
	}

	if err := verifyLayerFile(want, layer); err != nil {
		return err
	}
	f, err := os.Open(want)
	if err != nil {
		return err
	}
	defer f.Close()
	v, err := verify.NewVerifier(layer.Hashes, layer.Length)
	if err != nil {
		return fmt.Errorf("layer %s: %s", layer.ID, err)
	}

	_, err = d.vman.ImportFilesystem("default", &volume.Filesystem{
		ID:         layer.ID,
		Data:       &verifyingReader{v: v, r: v.Reader(f)},
		Size:       layer.Length,
		Type:       volume.VolumeTypeSquashfs,
		MountFlags: syscall.MS_RDONLY,
		Meta:       meta,
	})
	return err
}

// verifyLayerFile checks path's size and hashes against layer.
func verifyLayerFile(path string, layer *ct.ImageLayer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != layer.Length {
		return fmt.Errorf("layer %s: %s is %d bytes, the manifest says %d", layer.ID, path, st.Size(), layer.Length)
	}
	v, err := verify.NewVerifier(layer.Hashes, layer.Length)
	if err != nil {
		return fmt.Errorf("layer %s: %s", layer.ID, err)
	}
	if _, err := io.Copy(io.Discard, v.Reader(f)); err != nil {
		return err
	}
	if err := v.Verify(); err != nil {
		return fmt.Errorf("layer %s: %s: %s", layer.ID, path, err)
	}
	return nil
}

// verifyingReader reads through a pkg/verify Verifier and ends with its verdict: a mismatch is
// the error of the last read instead of io.EOF, so the volume provider fails the import.
type verifyingReader struct {
	v *verify.Verifier
	r io.Reader
}

func (vr *verifyingReader) Read(p []byte) (int, error) {
	n, err := vr.r.Read(p)
	if err == io.EOF {
		if verr := vr.v.Verify(); verr != nil {
			return n, fmt.Errorf("layer data: %s", verr)
		}
	}
	return n, err
}
