package main

// The daemon's pull handlers (host/http.go's jobAPI, patched by libflynnrel's
// flynn/patches/host-http.patch) run in process and driven through Flynn's own client
// (pkg/cluster.Host): a host installed from GitHub Releases pulls a release from the local release
// server, a host without a receipt pulls the same release from a TUF repository, and both must
// end with the same binaries, bootstrap manifest, images and imported layers. libflynnrel's
// script/test-flynn copies this file into the integrated Flynn tree (host/) and sets the
// environment below; it is not part of Flynn's own tests.

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/ioutil"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	ct "github.com/flynn/flynn/controller/types"
	"github.com/flynn/flynn/host/volume"
	"github.com/flynn/flynn/host/volume/manager"
	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
	"github.com/flynn/flynn/pkg/cluster"
	"github.com/inconshreveable/log15"
	"github.com/julienschmidt/httprouter"
)

// env returns the variable or fails: this test only runs under script/test-flynn.
func env(t *testing.T, name string) string {
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: run this test through libflynnrel's script/test-flynn", name)
	}
	return v
}

// memProvider is a volume.Provider keeping imported filesystems in memory (Flynn's own providers
// need ZFS). An import that fails to read its data stores nothing.
type memProvider struct {
	mu   sync.Mutex
	vols map[string]*memVolume
}

type memVolume struct {
	info     *volume.Info
	provider *memProvider
	data     []byte
	size     int64
	flags    uintptr
}

func (v *memVolume) Info() *volume.Info        { return v.info }
func (v *memVolume) Provider() volume.Provider { return v.provider }
func (v *memVolume) Location() string          { return "mem:" + v.info.ID }
func (v *memVolume) IsSnapshot() bool          { return false }
func (p *memProvider) Kind() string            { return "mem" }
func (p *memProvider) NewVolume(*volume.Info) (volume.Volume, error) {
	return nil, errors.New("memProvider: NewVolume is not supported")
}

func (p *memProvider) ImportFilesystem(fs *volume.Filesystem) (volume.Volume, error) {
	data, err := ioutil.ReadAll(fs.Data)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	v := &memVolume{info: fs.Info(), provider: p, data: data, size: fs.Size, flags: fs.MountFlags}
	p.vols[fs.ID] = v
	return v, nil
}

func (p *memProvider) DestroyVolume(volume.Volume) error {
	return errors.New("memProvider: not supported")
}
func (p *memProvider) CreateSnapshot(volume.Volume) (volume.Volume, error) {
	return nil, errors.New("memProvider: not supported")
}
func (p *memProvider) ForkVolume(volume.Volume) (volume.Volume, error) {
	return nil, errors.New("memProvider: not supported")
}
func (p *memProvider) ListHaves(volume.Volume) ([]json.RawMessage, error) { return nil, nil }
func (p *memProvider) SendSnapshot(volume.Volume, []json.RawMessage, io.Writer) error {
	return errors.New("memProvider: not supported")
}
func (p *memProvider) ReceiveSnapshot(volume.Volume, io.Reader) (volume.Volume, error) {
	return nil, errors.New("memProvider: not supported")
}
func (p *memProvider) MarshalGlobalState() (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}
func (p *memProvider) MarshalVolumeState(string) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}
func (p *memProvider) RestoreVolumeState(*volume.Info, json.RawMessage) (volume.Volume, error) {
	return nil, errors.New("memProvider: not supported")
}

// testDaemon is one host's daemon HTTP API (the real jobAPI routes) over a real volume manager
// with a memProvider, and Flynn's client for it.
type testDaemon struct {
	prov   *memProvider
	vman   *volumemanager.Manager
	client *cluster.Host
}

func newTestDaemon(t *testing.T, dir string) *testDaemon {
	prov := &memProvider{vols: map[string]*memVolume{}}
	vman := volumemanager.New(filepath.Join(dir, "volumes.bolt"), log15.New(), func() (volume.Provider, error) { return prov, nil })
	if err := vman.OpenDB(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vman.CloseDB() })
	h := &Host{vman: vman, log: log15.New("host", filepath.Base(dir))}
	r := httprouter.New()
	if err := (&jobAPI{host: h}).RegisterRoutes(r); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &testDaemon{prov: prov, vman: vman, client: cluster.NewHost(filepath.Base(dir), srv.URL, nil, nil)}
}

// pullImages runs PullImages and returns the ImagePullInfo stream as sorted lines.
func (d *testDaemon) pullImages(repository, configDir, version string, tufDB []byte) ([]string, error) {
	ch := make(chan *ct.ImagePullInfo)
	stream, err := d.client.PullImages(repository, configDir, version, bytes.NewReader(tufDB), ch)
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	var lines []string
	for info := range ch {
		switch info.Type {
		case ct.ImagePullTypeImage:
			lines = append(lines, fmt.Sprintf("image %s %s", info.Name, info.Artifact.Manifest().ID()))
		case ct.ImagePullTypeLayer:
			lines = append(lines, fmt.Sprintf("layer %s %s %d", info.Name, info.Layer.ID, info.Layer.Length))
		default:
			lines = append(lines, fmt.Sprintf("unexpected %s", info.Type))
		}
	}
	sort.Strings(lines)
	return lines, stream.Err()
}

// volumes describes every imported volume: id, size, type, flags and the sha512 of its bytes.
func (d *testDaemon) volumes() map[string]string {
	d.prov.mu.Lock()
	defer d.prov.mu.Unlock()
	out := map[string]string{}
	for id, v := range d.prov.vols {
		sum := sha512.Sum512(v.data)
		out[id] = fmt.Sprintf("size=%d len=%d type=%s flags=%d sha512=%s", v.size, len(v.data), v.info.Type, v.flags, hex.EncodeToString(sum[:]))
	}
	return out
}

func readImages(t *testing.T, path string) map[string]*ct.Artifact {
	b, err := ioutil.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var images map[string]*ct.Artifact
	if err := json.Unmarshal(b, &images); err != nil {
		t.Fatalf("%s: %s", path, err)
	}
	return images
}

// wantPull is what pulling images.json's images must report and import, from the release's
// images.json and its layer files (PULL_LAYERS/<id>.squashfs).
func wantPull(t *testing.T, images map[string]*ct.Artifact, layerDir string) ([]string, map[string]string) {
	var lines []string
	vols := map[string]string{}
	for _, a := range images {
		name := a.Meta["flynn.component"]
		lines = append(lines, fmt.Sprintf("image %s %s", name, a.Manifest().ID()))
		for _, rootfs := range a.Manifest().Rootfs {
			for _, l := range rootfs.Layers {
				if l.Type != ct.ImageLayerTypeSquashfs {
					continue
				}
				lines = append(lines, fmt.Sprintf("layer %s %s %d", name, l.ID, l.Length))
				data, err := ioutil.ReadFile(filepath.Join(layerDir, l.ID+".squashfs"))
				if err != nil {
					t.Fatal(err)
				}
				h := sha512.Sum512_256(data)
				if hex.EncodeToString(h[:]) != l.Hashes["sha512_256"] || int64(len(data)) != l.Length {
					t.Fatalf("the release's layer %s does not match its images.json", l.ID)
				}
				sum := sha512.Sum512(data)
				vols[l.ID] = fmt.Sprintf("size=%d len=%d type=%s flags=%d sha512=%s", l.Length, len(data), volume.VolumeTypeSquashfs, syscall.MS_RDONLY, hex.EncodeToString(sum[:]))
			}
		}
	}
	sort.Strings(lines)
	if len(vols) == 0 {
		t.Fatal("the release has no squashfs layer: nothing to pull")
	}
	return lines, vols
}

// installGitHubHost installs version of repo into dir/{bin,etc} with its receipt, as
// `flynn-host download --github-repo` does.
func installGitHubHost(t *testing.T, repo, version, dir string) (bin, etc string) {
	c, err := flynnrel.NewClient(repo, flynnrel.ClientOptions{APIURL: os.Getenv("FLYNN_GITHUB_API_URL"), WebURL: os.Getenv("FLYNN_GITHUB_URL")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bin, etc = filepath.Join(dir, "bin"), filepath.Join(dir, "etc")
	if _, err := c.Install(flynnrel.InstallOptions{Layout: flynnrel.Layout{BinDir: bin, ConfigDir: etc, LayerDir: githubLayerDir}, Version: version}); err != nil {
		t.Fatalf("installing %s %s: %s", repo, version, err)
	}
	return bin, etc
}

func fileSHA(t *testing.T, path string) string {
	b, err := ioutil.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(b)
	return hex.EncodeToString(sum[:])
}

func TestPullGitHubAndTUF(t *testing.T) {
	repo, v1, v2 := env(t, "PULL_REPO"), env(t, "PULL_V1"), env(t, "PULL_V2")
	build, layers := env(t, "PULL_BUILD"), env(t, "PULL_LAYERS")
	tufURL, tufDBPath := env(t, "PULL_TUF_URL"), env(t, "PULL_TUF_DB")
	env(t, "FLYNN_GITHUB_API_URL")
	work, err := ioutil.TempDir("", "pull-test")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	githubLayerDir = filepath.Join(work, "gh", "layer-cache")

	// A GitHub host at v1 pulls v2.
	gh := newTestDaemon(t, filepath.Join(work, "gh"))
	ghBin, ghEtc := installGitHubHost(t, repo, v1, filepath.Join(work, "gh"))
	// The TUF database is ignored for a github receipt: send garbage.
	ghLines, err := gh.pullImages("https://tuf.invalid", ghEtc, v2, []byte("not a TUF database"))
	if err != nil {
		t.Fatalf("GitHub PullImages: %s", err)
	}
	ghImages := readImages(t, filepath.Join(ghEtc, "images."+v2+".json"))
	wantLines, wantVols := wantPull(t, ghImages, layers)
	if !reflect.DeepEqual(ghLines, wantLines) {
		t.Fatalf("GitHub ImagePullInfo stream:\n%s\nwant:\n%s", strings.Join(ghLines, "\n"), strings.Join(wantLines, "\n"))
	}
	if got := gh.volumes(); !reflect.DeepEqual(got, wantVols) {
		t.Fatalf("GitHub imported volumes:\n%v\nwant:\n%v", got, wantVols)
	}
	for _, a := range ghImages {
		for _, l := range a.Manifest().Rootfs[0].Layers {
			if want := "file://" + filepath.Join(githubLayerDir, l.ID+".squashfs"); a.LayerURL(l) != want {
				t.Fatalf("GitHub images.json layer URL %s, want %s", a.LayerURL(l), want)
			}
		}
	}
	t.Logf("GitHub pull: %d images, %d layers imported", len(ghImages), len(wantVols))

	ghPaths, err := gh.client.PullBinariesAndConfig("https://tuf.invalid", ghBin, ghEtc, v2, bytes.NewReader(nil))
	if err != nil {
		t.Fatalf("GitHub PullBinariesAndConfig: %s", err)
	}
	wantPaths := map[string]string{
		"flynn-host":              filepath.Join(ghBin, "flynn-host."+v2),
		"flynn-init":              filepath.Join(ghBin, "flynn-init."+v2),
		"flynn-linux-amd64":       filepath.Join(ghBin, "flynn-linux-amd64."+v2),
		"bootstrap-manifest.json": filepath.Join(ghEtc, "bootstrap-manifest.json"),
	}
	if !reflect.DeepEqual(ghPaths, wantPaths) {
		t.Fatalf("GitHub PullBinariesAndConfig paths %v, want %v", ghPaths, wantPaths)
	}
	for name, p := range ghPaths {
		src := filepath.Join(build, "bin", name)
		if name == "bootstrap-manifest.json" {
			src = filepath.Join(build, "manifests", name)
		}
		if fileSHA(t, p) != fileSHA(t, src) {
			t.Fatalf("%s is not the release's %s", p, src)
		}
	}
	for _, name := range []string{"flynn-host", "flynn-init", "flynn-linux-amd64"} {
		if l, err := os.Readlink(filepath.Join(ghBin, name)); err != nil || l != name+"."+v2 {
			t.Fatalf("%s/%s -> %q (%v), want %s.%s", ghBin, name, l, err, name, v2)
		}
	}
	receipt, _, err := flynnrel.LoadReceipt(ghEtc)
	if err != nil || receipt.Source != "github" || receipt.Version != v2 || receipt.Repository != repo {
		t.Fatalf("the receipt after the pull: %+v (%v), want github %s %s", receipt, err, repo, v2)
	}

	// A host without a receipt pulls v2 from the TUF repository with Flynn's downloader.
	tufDB, err := ioutil.ReadFile(tufDBPath)
	if err != nil {
		t.Fatal(err)
	}
	tf := newTestDaemon(t, filepath.Join(work, "tuf"))
	tufBin, tufEtc := filepath.Join(work, "tuf", "bin"), filepath.Join(work, "tuf", "etc")
	if err := os.MkdirAll(tufEtc, 0755); err != nil {
		t.Fatal(err)
	}
	tufLines, err := tf.pullImages(tufURL, tufEtc, v2, tufDB)
	if err != nil {
		t.Fatalf("TUF PullImages: %s", err)
	}
	if !reflect.DeepEqual(tufLines, ghLines) {
		t.Fatalf("TUF ImagePullInfo stream:\n%s\nGitHub:\n%s", strings.Join(tufLines, "\n"), strings.Join(ghLines, "\n"))
	}
	if got := tf.volumes(); !reflect.DeepEqual(got, gh.volumes()) {
		t.Fatalf("TUF imported volumes:\n%v\nGitHub:\n%v", got, gh.volumes())
	}
	tufImages := readImages(t, filepath.Join(tufEtc, "images."+v2+".json"))
	strip := func(images map[string]*ct.Artifact) string {
		for _, a := range images {
			a.LayerURLTemplate = ""
		}
		b, _ := json.Marshal(images)
		return string(b)
	}
	for _, a := range tufImages {
		if !strings.HasPrefix(a.LayerURLTemplate, tufURL+"?target=/layers/") {
			t.Fatalf("TUF images.json layer_url_template %q", a.LayerURLTemplate)
		}
	}
	if strip(tufImages) != strip(ghImages) {
		t.Fatalf("the TUF and GitHub images differ (modulo layer_url_template)")
	}
	tufPaths, err := tf.client.PullBinariesAndConfig(tufURL, tufBin, tufEtc, v2, bytes.NewReader(tufDB))
	if err != nil {
		t.Fatalf("TUF PullBinariesAndConfig: %s", err)
	}
	if len(tufPaths) != len(ghPaths) {
		t.Fatalf("TUF paths %v, GitHub %v", tufPaths, ghPaths)
	}
	for name, p := range ghPaths {
		if tufPaths[name] == "" || fileSHA(t, tufPaths[name]) != fileSHA(t, p) {
			t.Fatalf("TUF %s (%s) differs from GitHub's %s", name, tufPaths[name], p)
		}
	}
	if _, err := os.Stat(filepath.Join(tufEtc, "install-source.json")); !os.IsNotExist(err) {
		t.Fatalf("the TUF pull wrote a receipt (%v)", err)
	}
	t.Logf("TUF pull: the same %d images, %d layers, %d binaries and config files", len(tufImages), len(wantVols), len(tufPaths))
}

// A release whose layers do not match its images.json is refused and nothing is imported; an
// invalid receipt is an error naming it, not a TUF pull.
func TestPullGitHubRefusals(t *testing.T) {
	v1, v2 := env(t, "PULL_V1"), env(t, "PULL_V2")
	tampered := env(t, "PULL_TAMPERED_REPO")
	work, err := ioutil.TempDir("", "pull-test")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	githubLayerDir = filepath.Join(work, "bad", "layer-cache")

	bad := newTestDaemon(t, filepath.Join(work, "bad"))
	_, etc := installGitHubHost(t, tampered, v1, filepath.Join(work, "bad"))
	cacheBefore, _ := filepath.Glob(filepath.Join(githubLayerDir, "*"))
	_, err = bad.pullImages("https://tuf.invalid", etc, v2, nil)
	if err == nil {
		t.Fatal("pulling the tampered release succeeded")
	}
	t.Logf("tampered release refused: %s", err)
	if got := bad.volumes(); len(got) != 0 {
		t.Fatalf("the tampered pull imported %v", got)
	}
	if _, err := os.Stat(filepath.Join(etc, "images."+v2+".json")); !os.IsNotExist(err) {
		t.Fatalf("the tampered pull left images.%s.json (%v)", v2, err)
	}
	if cacheAfter, _ := filepath.Glob(filepath.Join(githubLayerDir, "*")); !reflect.DeepEqual(cacheAfter, cacheBefore) {
		t.Fatalf("the tampered pull changed the layer cache: %v -> %v", cacheBefore, cacheAfter)
	}

	// An invalid receipt: an error naming it, and nothing pulled through TUF.
	if err := ioutil.WriteFile(filepath.Join(etc, "install-source.json"), []byte("{not json"), 0644); err != nil {
		t.Fatal(err)
	}
	_, err = bad.pullImages("https://tuf.invalid", etc, v2, nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(etc, "install-source.json")) {
		t.Fatalf("pulling with an invalid receipt: %v, want an error naming %s", err, filepath.Join(etc, "install-source.json"))
	}
	_, err = bad.client.PullBinariesAndConfig("https://tuf.invalid", filepath.Join(work, "bad", "bin"), etc, v2, bytes.NewReader(nil))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(etc, "install-source.json")) {
		t.Fatalf("PullBinariesAndConfig with an invalid receipt: %v, want an error naming %s", err, filepath.Join(etc, "install-source.json"))
	}
	if got := bad.volumes(); len(got) != 0 {
		t.Fatalf("imported %v", got)
	}
}
