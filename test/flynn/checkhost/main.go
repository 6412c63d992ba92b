// Command checkhost checks that an installed host's images are usable by Flynn's own code paths,
// for script/test-flynn-release. It is built inside the integrated Flynn tree (copied to
// util/checkhost-test and built with `go build -mod=vendor`), never shipped.
//
//	checkhost --version V [--config-dir /etc/flynn] [--layer-dir /var/lib/flynn/layer-cache]
//	          [--root DIR]
//
// It reads <config-dir>/images.<V>.json as host/downloader does (a map[string]*ct.Artifact),
// and for every image:
//   - checks the artifact: type flynn, its manifest against the artifact's hashes and size
//     (pkg/verify, as Flynn checks any downloaded manifest) and, when the artifact's meta has
//     manifest.id, that it is the manifest's ID() (the builder's build/images.json carries it;
//     the builder's WriteManifests drops it from build/manifests);
//   - builds the job's mount specs with the controller's own utils.SetupMountspecs (which
//     expands the artifact's layer_url_template with artifact.LayerURL) and requires one mount
//     spec per layer of the manifest (SetupMountspecs skips what it cannot mount);
//   - resolves each mount spec's URL as host/libcontainer_backend.go mountSquashfs does when the
//     layer is not imported yet (file:// URLs are opened by path), and verifies the file with
//     Flynn's pkg/verify (verify.NewVerifier(m.Hashes, m.Size)); beyond what mountSquashfs
//     checks, the file must also end there and lie in the layer dir.
//
// --root DIR is for tests: the host sees paths without it, so it is prefixed to the config dir
// and to every resolved layer path, never written into a URL. Output: one line per image, then
// "images=N layers=N distinct=N verified=N"; the first unresolvable or bad layer stops it with
// exit status 1 and a line naming the image, the layer and the URL.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net/url"
	"os"
	"path/filepath"
	"sort"

	ct "github.com/flynn/flynn/controller/types"
	"github.com/flynn/flynn/controller/utils"
	host "github.com/flynn/flynn/host/types"
	"github.com/flynn/flynn/pkg/verify"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "checkhost:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("checkhost", flag.ContinueOnError)
	version := fs.String("version", "", "the installed version (reads images.<version>.json)")
	configDir := fs.String("config-dir", "/etc/flynn", "the host's config dir, as the host sees it")
	layerDir := fs.String("layer-dir", "/var/lib/flynn/layer-cache", "the host's layer cache, as the host sees it")
	root := fs.String("root", "", "tests only: prefix every path the host sees with DIR")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *version == "" {
		return fmt.Errorf("usage: checkhost --version V [--config-dir DIR] [--layer-dir DIR] [--root DIR]")
	}
	if !filepath.IsAbs(*configDir) || !filepath.IsAbs(*layerDir) {
		return fmt.Errorf("--config-dir and --layer-dir must be absolute paths as the host sees them")
	}
	onHost := func(p string) string { return filepath.Join(*root, p) }

	// host/downloader DownloadImages: decode images.<version>.json into map[string]*ct.Artifact.
	path := filepath.Join(*configDir, "images."+*version+".json")
	f, err := os.Open(onHost(path))
	if err != nil {
		return fmt.Errorf("%s: %s", path, err)
	}
	var images map[string]*ct.Artifact
	err = json.NewDecoder(f).Decode(&images)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s is not Flynn's images map: %s", path, err)
	}
	if len(images) == 0 {
		return fmt.Errorf("%s lists no images", path)
	}

	names := make([]string, 0, len(images))
	for name := range images {
		names = append(names, name)
	}
	sort.Strings(names)
	checked := map[string]bool{} // resolved path + id -> verified
	var nSpecs, nVerified int
	for _, name := range names {
		artifact := images[name]
		if artifact == nil {
			return fmt.Errorf("image %s: null artifact in %s", name, path)
		}
		id, err := checkArtifact(artifact)
		if err != nil {
			return fmt.Errorf("image %s: %s", name, err)
		}
		nLayers := 0
		for _, rootfs := range artifact.Manifest().Rootfs {
			nLayers += len(rootfs.Layers)
		}
		// The controller's own mount specs for a job running this artifact.
		job := &host.Job{}
		utils.SetupMountspecs(job, []*ct.Artifact{artifact})
		if nLayers == 0 || len(job.Mountspecs) != nLayers {
			return fmt.Errorf("image %s: the controller mounts %d of its %d layers (one rootfs of squashfs layers expected)", name, len(job.Mountspecs), nLayers)
		}
		for _, m := range job.Mountspecs {
			nSpecs++
			file, err := resolve(m, *layerDir, onHost)
			if err != nil {
				return fmt.Errorf("image %s, layer %s: %s", name, m.ID, err)
			}
			key := file + "\x00" + m.ID
			if !checked[key] {
				if err := verifyLayer(m, file); err != nil {
					return fmt.Errorf("image %s, layer %s (%s): %s", name, m.ID, m.URL, err)
				}
				checked[key] = true
			}
			nVerified++
		}
		fmt.Printf("ok %s manifest=%s layers=%d\n", name, id[:16], len(job.Mountspecs))
	}
	fmt.Printf("images=%d layers=%d distinct=%d verified=%d\n", len(images), nSpecs, len(checked), nVerified)
	return nil
}

// checkArtifact checks an artifact's manifest against its hashes, size and meta; returns the
// manifest id.
func checkArtifact(a *ct.Artifact) (string, error) {
	if a.Type != ct.ArtifactTypeFlynn {
		return "", fmt.Errorf("artifact type %q, want %q", a.Type, ct.ArtifactTypeFlynn)
	}
	if len(a.RawManifest) == 0 {
		return "", fmt.Errorf("the artifact has no manifest")
	}
	v, err := verify.NewVerifier(a.Hashes, a.Size)
	if err != nil {
		return "", fmt.Errorf("the artifact's hashes/size cannot verify its manifest: %s", err)
	}
	r := v.Reader(bytes.NewReader(a.RawManifest))
	if _, err := io.Copy(ioutil.Discard, r); err != nil {
		return "", err
	}
	if err := v.Verify(); err != nil {
		return "", fmt.Errorf("manifest does not match the artifact's hashes/size: %s", err)
	}
	if int64(len(a.RawManifest)) != a.Size {
		return "", fmt.Errorf("manifest is %d bytes, the artifact says %d", len(a.RawManifest), a.Size)
	}
	id := a.Manifest().ID()
	if a.Hashes["sha512_256"] != id {
		return "", fmt.Errorf("manifest is not canonical: ID() %s, hashes.sha512_256 %s", id, a.Hashes["sha512_256"])
	}
	if want, ok := a.Meta["manifest.id"]; ok && want != id {
		return "", fmt.Errorf("meta manifest.id %s, but the manifest's ID() is %s", want, id)
	}
	return id, nil
}

// resolve a mount spec's URL as mountSquashfs does, to the file the host would open (under
// root), which must be <layerDir>/<id>.squashfs.
func resolve(m *host.Mountspec, layerDir string, onHost func(string) string) (string, error) {
	if m.URL == "" {
		return "", fmt.Errorf("missing URL (the artifact's layer_url_template does not expand)")
	}
	u, err := url.Parse(m.URL)
	if err != nil {
		return "", fmt.Errorf("URL %q: %s", m.URL, err)
	}
	if u.Scheme != "file" {
		return "", fmt.Errorf("URL %s is not a file:// URL into the layer cache %s", m.URL, layerDir)
	}
	want := filepath.Join(layerDir, m.ID+".squashfs")
	if u.Host != "" || u.Path != want {
		return "", fmt.Errorf("URL %s does not resolve to the layer cache: want file://%s", m.URL, want)
	}
	return onHost(u.Path), nil
}

// verifyLayer reads the file as mountSquashfs does, through pkg/verify, and requires it to end
// at the mount spec's size.
func verifyLayer(m *host.Mountspec, file string) error {
	v, err := verify.NewVerifier(m.Hashes, m.Size)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(ioutil.Discard, v.Reader(f)); err != nil {
		return err
	}
	if err := v.Verify(); err != nil {
		return err
	}
	if n, _ := f.Read(make([]byte, 1)); n != 0 {
		return fmt.Errorf("%s is longer than the %d bytes the manifest gives", file, m.Size)
	}
	return nil
}
