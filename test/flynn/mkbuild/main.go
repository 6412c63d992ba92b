// Command mkbuild writes a Flynn-shaped build tree, as upstream Flynn's builder leaves it, for
// script/test-flynn-release and script/bench-install. It is built inside the integrated Flynn
// tree (copied to util/mkbuild-test and built with `go build -mod=vendor`), never shipped, and
// uses Flynn's own types (controller/types) and the builder's conventions (builder/build.go):
//
//	mkbuild --flynn FLYNN --version V --out OUT --layer-cache CACHE [--total-mib N]
//	        [--format squashfs|raw] [--bin NAME=FILE]...
//
//	OUT/bin/{flynn-host,flynn-init,flynn-linux-amd64,flynn-linux-386,flynn-darwin-amd64,
//	         flynn-windows-amd64,flynn-windows-386}
//	        small executables (flynn-host prints V for `flynn-host version`), or the given
//	        files (--bin flynn-host=PATH copies a real flynn-host in)
//	OUT/manifests/images.json
//	        FLYNN/util/release/images_template.json with every $image_artifact[NAME] replaced
//	        by the image's ct.Artifact (as the builder's WriteManifests does), each artifact
//	        built as Builder.BuildImage builds it: Type flynn, URI
//	        "<tuf repository>?name=NAME&target=/images/<manifest id>.json", RawManifest,
//	        Hashes and Size of the ct.ImageManifest, the builder's layer URL template and Meta
//	        manifest.id, flynn.component, flynn.system-image
//	OUT/manifests/bootstrap-manifest.json
//	        FLYNN/bootstrap/manifest_template.json, replaced the same way (with the Meta
//	        WriteManifests gives: flynn.component and flynn.system-image)
//	CACHE/<id>.squashfs, CACHE/<id>.json
//	        every layer, and its ct.ImageLayer as the builder writes it next to the layer
//
// The images, their bases and their layers come from FLYNN/builder/manifest.json: an image's
// rootfs is its base image's layers followed by its own, so images share their base layers
// (ubuntu-bionic, busybox, ...). A layer's id is computed as Builder.generateLayerID does: the
// sha512/256 of the canonical JSON of the layer's name, run commands (derived from
// manifest.json as the builder derives them), env, the base artifact's manifest and its file
// inputs, which here are the generated content files (not Flynn's sources). A layer's content
// is deterministic: 256 KiB files of AES-CTR keystream (incompressible, like compiled code and
// compressed data) and, every fourth file, text, keyed by the image and layer name. With
// --format squashfs (the default) each layer is a real squashfs image made by mksquashfs
// (root-owned, timestamps 0, no xattrs, fixed processor count: the same arguments give the same
// bytes); --format raw writes the content stream itself (no mksquashfs needed). --total-mib
// scales the raw content of all layers together (base OS images weigh more than binaries).
//
// As the builder does, a layer whose <id>.json is already in CACHE is not rebuilt; mkbuild
// additionally checks the cached layer against that json (pkg/verify) and rebuilds it when it
// does not match. The last line on stdout is a summary: images=N layers=N layer_bytes=N.
package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	ct "github.com/flynn/flynn/controller/types"
	"github.com/flynn/flynn/pkg/verify"
	cjson "github.com/tent/canonical-json-go"
)

// The builder's layer URL template (builder/build.go layerURLTemplate).
const layerURLTemplate = "file:///var/lib/flynn/layer-cache/{id}.squashfs"

// Flynn's build/bin, as script/build-flynn and builder/export.go name them.
var binNames = []string{"flynn-host", "flynn-init", "flynn-linux-amd64", "flynn-linux-386",
	"flynn-darwin-amd64", "flynn-windows-amd64", "flynn-windows-386"}

// The parts of builder/manifest.json mkbuild reads (builder/build.go Image and Layer).
type manifestFile struct {
	TUF struct {
		Repository string `json:"repository"`
	} `json:"tuf"`
	Images []*image `json:"images"`
}

type image struct {
	ID         string              `json:"id"`
	Base       string              `json:"base"`
	Env        map[string]string   `json:"env"`
	Layers     []*layerDef         `json:"layers"`
	Entrypoint *ct.ImageEntrypoint `json:"entrypoint"`
}

type layerDef struct {
	Name       string            `json:"name"`
	BuildWith  string            `json:"build_with"`
	Run        []string          `json:"run"`
	Script     string            `json:"script"`
	GoBin      []string          `json:"gobin"`
	ProtoBuild []string          `json:"protobuild"`
	GoBuild    map[string]string `json:"gobuild"`
	CGoBuild   map[string]string `json:"cgobuild"`
	Copy       map[string]string `json:"copy"`
	Env        map[string]string `json:"env"`
}

// fileInput is builder/build.go's fileInput.
type fileInput struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	SHA  string `json:"sha"`
}

type binFlags map[string]string

func (b binFlags) String() string { return "" }
func (b binFlags) Set(v string) error {
	i := strings.IndexByte(v, '=')
	if i <= 0 || i == len(v)-1 {
		return fmt.Errorf("--bin wants NAME=FILE, got %q", v)
	}
	name := v[:i]
	known := false
	for _, n := range binNames {
		known = known || n == name
	}
	if !known {
		return fmt.Errorf("--bin %s: not one of Flynn's binaries (%s)", name, strings.Join(binNames, ", "))
	}
	b[name] = v[i+1:]
	return nil
}

type generator struct {
	flynn, version, out, cache, format string
	rawTotal                           int64
	manifest                           manifestFile
	images                             map[string]*image
	artifacts                          map[string]*ct.Artifact
	weights                            map[string]int64 // layer key -> weight
	unit                               int64            // raw bytes per weight unit
	layers                             map[string]*ct.ImageLayer
	layerOrder                         []string
	reused                             int
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkbuild:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkbuild", flag.ContinueOnError)
	g := &generator{}
	bins := binFlags{}
	var totalMiB int64
	fs.StringVar(&g.flynn, "flynn", ".", "the Flynn tree (builder/manifest.json, util/release/images_template.json, bootstrap/manifest_template.json)")
	fs.StringVar(&g.version, "version", "", "the release version the binaries print")
	fs.StringVar(&g.out, "out", "", "the build tree to write (bin/, manifests/)")
	fs.StringVar(&g.cache, "layer-cache", "", "the layer cache to write <id>.squashfs and <id>.json into")
	fs.Int64Var(&totalMiB, "total-mib", 20, "raw content of all layers together, in MiB")
	fs.StringVar(&g.format, "format", "squashfs", "layer format: squashfs (mksquashfs) or raw")
	fs.Var(bins, "bin", "NAME=FILE: copy FILE in as bin/NAME (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case g.version == "" || strings.ContainsAny(g.version, " \t\n'\"\\$`"):
		return fmt.Errorf("--version is required and must be a plain token")
	case g.out == "" || g.cache == "":
		return fmt.Errorf("--out and --layer-cache are required")
	case totalMiB < 1 || totalMiB > 64*1024:
		return fmt.Errorf("--total-mib must be between 1 and 65536, got %d", totalMiB)
	case g.format != "squashfs" && g.format != "raw":
		return fmt.Errorf("--format must be squashfs or raw, got %q", g.format)
	}
	if g.format == "squashfs" {
		if _, err := exec.LookPath("mksquashfs"); err != nil {
			return fmt.Errorf("--format squashfs needs mksquashfs (apt-get install squashfs-tools), or use --format raw")
		}
	}
	g.rawTotal = totalMiB << 20
	if err := g.load(); err != nil {
		return err
	}
	for _, dir := range []string{filepath.Join(g.out, "bin"), filepath.Join(g.out, "manifests"), g.cache} {
		if err := os.MkdirAll(dir, 0755); err != nil {
			return err
		}
	}
	if err := g.writeBinaries(bins); err != nil {
		return err
	}
	imagesTmpl, err := ioutil.ReadFile(filepath.Join(g.flynn, "util", "release", "images_template.json"))
	if err != nil {
		return err
	}
	bootstrapTmpl, err := ioutil.ReadFile(filepath.Join(g.flynn, "bootstrap", "manifest_template.json"))
	if err != nil {
		return err
	}
	wanted := append(templateNames(imagesTmpl), templateNames(bootstrapTmpl)...)
	g.planWeights(wanted)
	for _, name := range wanted {
		if _, err := g.build(name); err != nil {
			return err
		}
	}
	// images.json: the builder's artifacts (Meta as BuildImage sets it).
	images, err := g.interpolate(imagesTmpl, func(*ct.Artifact) {})
	if err != nil {
		return fmt.Errorf("util/release/images_template.json: %s", err)
	}
	// bootstrap-manifest.json: WriteManifests's Meta.
	bootstrap, err := g.interpolate(bootstrapTmpl, func(a *ct.Artifact) {
		a.Meta = map[string]string{"flynn.component": a.Meta["flynn.component"], "flynn.system-image": "true"}
	})
	if err != nil {
		return fmt.Errorf("bootstrap/manifest_template.json: %s", err)
	}
	// Both must be valid JSON of the shape Flynn reads.
	var check map[string]*ct.Artifact
	if err := json.Unmarshal(images, &check); err != nil {
		return fmt.Errorf("the generated images.json is not a map of artifacts: %s", err)
	}
	if !json.Valid(bootstrap) {
		return fmt.Errorf("the generated bootstrap-manifest.json is not valid JSON")
	}
	if err := writeFile(filepath.Join(g.out, "manifests", "images.json"), images, 0644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(g.out, "manifests", "bootstrap-manifest.json"), bootstrap, 0644); err != nil {
		return err
	}
	var total int64
	for _, id := range g.layerOrder {
		total += g.layers[id].Length
	}
	fmt.Printf("images=%d layers=%d layer_bytes=%d format=%s reused=%d\n", len(check), len(g.layerOrder), total, g.format, g.reused)
	return nil
}

func (g *generator) load() error {
	path := filepath.Join(g.flynn, "builder", "manifest.json")
	data, err := ioutil.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading Flynn's builder manifest: %s (is --flynn the Flynn tree?)", err)
	}
	if err := json.Unmarshal(data, &g.manifest); err != nil {
		return fmt.Errorf("%s: %s", path, err)
	}
	if g.manifest.TUF.Repository == "" {
		return fmt.Errorf("%s has no tuf.repository", path)
	}
	g.images = make(map[string]*image, len(g.manifest.Images))
	for _, img := range g.manifest.Images {
		g.images[img.ID] = img
	}
	g.artifacts = make(map[string]*ct.Artifact)
	g.layers = make(map[string]*ct.ImageLayer)
	g.weights = make(map[string]int64)
	return nil
}

var imageArtifactPattern = regexp.MustCompile(`\$image_artifact\[[^\]]+\]`)

// templateNames: the image names a template refers to, in order of first use.
func templateNames(tmpl []byte) []string {
	var names []string
	seen := map[string]bool{}
	for _, raw := range imageArtifactPattern.FindAll(tmpl, -1) {
		name := string(raw[16 : len(raw)-1])
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return names
}

// interpolate replaces $image_artifact[NAME] as the builder's WriteManifests does.
func (g *generator) interpolate(tmpl []byte, adjust func(*ct.Artifact)) ([]byte, error) {
	var replaceErr error
	out := imageArtifactPattern.ReplaceAllFunc(tmpl, func(raw []byte) []byte {
		name := string(raw[16 : len(raw)-1])
		a, ok := g.artifacts[name]
		if !ok {
			replaceErr = fmt.Errorf("unknown image %q", name)
			return nil
		}
		copied := &ct.Artifact{Type: a.Type, URI: a.URI, Meta: a.Meta, RawManifest: a.RawManifest,
			Hashes: a.Hashes, Size: a.Size, LayerURLTemplate: a.LayerURLTemplate}
		adjust(copied)
		data, err := json.Marshal(copied)
		if err != nil {
			replaceErr = err
			return nil
		}
		return data
	})
	return out, replaceErr
}

// layerName is the builder's: the layer's name, else the image's id.
func layerName(img *image, l *layerDef) string {
	if l.Name != "" {
		return l.Name
	}
	return img.ID
}

// weight of one layer: base OS images are large, package layers medium, binaries small.
func layerWeight(img *image, l *layerDef) int64 {
	name := layerName(img, l)
	switch {
	case img.ID == "busybox":
		return 1
	case img.Base == "" || img.ID == "heroku-18" || img.ID == "cedar-14":
		return 12
	case img.ID == "go" || img.ID == "heroku-18-build":
		return 8
	case strings.HasSuffix(name, "-packages"):
		return 3
	default:
		return 1
	}
}

// planWeights: every layer the wanted images use, once, and the bytes per weight unit.
func (g *generator) planWeights(wanted []string) {
	var sum int64
	var visit func(name string)
	visit = func(name string) {
		img := g.images[name]
		if img == nil {
			return
		}
		if img.Base != "" {
			visit(img.Base)
		}
		for i, l := range img.Layers {
			key := fmt.Sprintf("%s/%d", img.ID, i)
			if _, ok := g.weights[key]; !ok {
				w := layerWeight(img, l)
				g.weights[key] = w
				sum += w
			}
		}
	}
	for _, name := range wanted {
		visit(name)
	}
	if sum == 0 {
		sum = 1
	}
	g.unit = g.rawTotal / sum
	if g.unit < 16<<10 {
		g.unit = 16 << 10
	}
}

// build returns the artifact of image name, building its base and layers first (the
// builder's BuildImage).
func (g *generator) build(name string) (*ct.Artifact, error) {
	if a, ok := g.artifacts[name]; ok {
		return a, nil
	}
	img := g.images[name]
	if img == nil {
		return nil, fmt.Errorf("image %q is not in builder/manifest.json", name)
	}
	var base *ct.Artifact
	if img.Base != "" {
		var err error
		if base, err = g.build(img.Base); err != nil {
			return nil, err
		}
	}
	var layers []*ct.ImageLayer
	for i, l := range img.Layers {
		with := base
		if l.BuildWith != "" {
			var err error
			if with, err = g.build(l.BuildWith); err != nil {
				return nil, err
			}
		}
		layer, err := g.buildLayer(img, i, l, with)
		if err != nil {
			return nil, fmt.Errorf("image %s, layer %s: %s", img.ID, layerName(img, l), err)
		}
		layers = append(layers, layer)
	}
	var baseLayers []*ct.ImageLayer
	if base != nil {
		for _, rootfs := range base.Manifest().Rootfs {
			baseLayers = append(baseLayers, rootfs.Layers...)
		}
	}
	manifest := ct.ImageManifest{
		Type: ct.ImageManifestTypeV1,
		Rootfs: []*ct.ImageRootfs{{
			Platform: ct.DefaultImagePlatform,
			Layers:   append(baseLayers, layers...),
		}},
	}
	if img.Entrypoint != nil {
		manifest.Entrypoints = map[string]*ct.ImageEntrypoint{"_default": img.Entrypoint}
	}
	artifact := &ct.Artifact{
		Type:             ct.ArtifactTypeFlynn,
		URI:              fmt.Sprintf("%s?name=%s&target=/images/%s.json", g.manifest.TUF.Repository, img.ID, manifest.ID()),
		RawManifest:      manifest.RawManifest(),
		Hashes:           manifest.Hashes(),
		Size:             int64(len(manifest.RawManifest())),
		LayerURLTemplate: layerURLTemplate,
		Meta: map[string]string{
			"manifest.id":        manifest.ID(),
			"flynn.component":    img.ID,
			"flynn.system-image": "true",
		},
	}
	g.artifacts[name] = artifact
	return artifact, nil
}

// runCommands derives a layer's run list from manifest.json as Builder.BuildImage does (without
// the Go source inputs, which mkbuild replaces with generated content).
func runCommands(l *layerDef) []string {
	run := append([]string{}, l.Run...)
	if l.Script != "" {
		run = append(run, "bash -e "+l.Script)
	}
	for _, bin := range l.GoBin {
		run = append(run, "GOBIN=/bin GOBIN_CACHE=/tmp/gobin gobin -m "+bin)
	}
	dirs := append([]string{}, l.ProtoBuild...)
	sort.Strings(dirs)
	for _, dir := range dirs {
		outDir := filepath.Join("/mnt/out/proto", dir)
		run = append(run, "mkdir -p "+outDir, fmt.Sprintf("protoc -I /usr/local/include -I %s --go_out=plugins=grpc:%s %s/*.proto", dir, outDir, dir))
	}
	for _, m := range []struct {
		cmd  string
		dirs map[string]string
	}{{"go build", l.GoBuild}, {"cgo build", l.CGoBuild}} {
		keys := make([]string, 0, len(m.dirs))
		for k := range m.dirs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, dir := range keys {
			run = append(run, fmt.Sprintf("%s -o %s %s", m.cmd, m.dirs[dir], "./"+dir))
		}
	}
	paths := make([]string, 0, len(l.Copy))
	for p := range l.Copy {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		dst := l.Copy[p]
		run = append(run, fmt.Sprintf("mkdir -p %q && cp %q %q", filepath.Dir(dst), p, dst))
	}
	return run
}

// content is one layer's generated files.
type content struct {
	key   []byte // AES key
	files []fileInput
}

const fileChunk = 256 << 10

func newContent(img *image, index int, name string, raw int64) *content {
	k := sha256.Sum256([]byte(fmt.Sprintf("mkbuild layer\x00%s\x00%d\x00%s", img.ID, index, name)))
	c := &content{key: k[:16]}
	for i := 0; raw > 0; i++ {
		size := int64(fileChunk)
		if raw < size {
			size = raw
		}
		p := fmt.Sprintf("usr/lib/%s/part%04d.bin", name, i)
		if i%4 == 3 {
			p = fmt.Sprintf("usr/share/doc/%s/part%04d.txt", name, i)
		}
		c.files = append(c.files, fileInput{Path: p, Size: size})
		raw -= size
	}
	return c
}

// write the bytes of file i to w.
func (c *content) write(i int, w io.Writer) error {
	f := c.files[i]
	if strings.HasSuffix(f.Path, ".txt") {
		var buf bytes.Buffer
		for n := 0; int64(buf.Len()) < f.Size; n++ {
			fmt.Fprintf(&buf, "%s line %07d: Flynn system image documentation, generated by mkbuild for tests.\n", f.Path, n)
		}
		_, err := w.Write(buf.Bytes()[:f.Size])
		return err
	}
	block, err := aes.NewCipher(c.key)
	if err != nil {
		return err
	}
	iv := make([]byte, aes.BlockSize)
	iv[0] = byte(i >> 8)
	iv[1] = byte(i)
	stream := cipher.NewCTR(block, iv)
	buf := make([]byte, f.Size)
	stream.XORKeyStream(buf, buf)
	_, err = w.Write(buf)
	return err
}

func (g *generator) buildLayer(img *image, index int, l *layerDef, with *ct.Artifact) (*ct.ImageLayer, error) {
	name := layerName(img, l)
	raw := g.weights[fmt.Sprintf("%s/%d", img.ID, index)] * g.unit
	c := newContent(img, index, name, raw)
	for i := range c.files {
		h := sha512.New512_256()
		if err := c.write(i, h); err != nil {
			return nil, err
		}
		c.files[i].SHA = hex.EncodeToString(h.Sum(nil))
	}
	env := map[string]string{}
	for k, v := range img.Env {
		env[k] = v
	}
	for k, v := range l.Env {
		env[k] = v
	}
	spec := struct {
		Name        string            `json:"name"`
		Run         []string          `json:"run,omitempty"`
		Env         map[string]string `json:"env,omitempty"`
		RawManifest json.RawMessage   `json:"manifest,omitempty"`
		Files       []*fileInput      `json:"files,omitempty"`
	}{Name: name, Run: runCommands(l), Env: env}
	if with != nil {
		spec.RawManifest = with.RawManifest
	}
	for i := range c.files {
		spec.Files = append(spec.Files, &c.files[i])
	}
	data, err := cjson.Marshal(spec)
	if err != nil {
		return nil, err
	}
	sum := sha512.Sum512_256(data)
	id := hex.EncodeToString(sum[:])
	if layer, ok := g.layers[id]; ok {
		return layer, nil
	}
	layer, err := g.cachedLayer(id)
	if err != nil {
		return nil, err
	}
	if layer != nil {
		g.reused++
	} else if layer, err = g.makeLayer(id, c); err != nil {
		return nil, err
	}
	g.layers[id] = layer
	g.layerOrder = append(g.layerOrder, id)
	return layer, nil
}

// cachedLayer: the layer from CACHE/<id>.json when CACHE/<id>.squashfs verifies against it.
func (g *generator) cachedLayer(id string) (*ct.ImageLayer, error) {
	data, err := ioutil.ReadFile(filepath.Join(g.cache, id+".json"))
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	layer := &ct.ImageLayer{}
	if err := json.Unmarshal(data, layer); err != nil || layer.ID != id {
		return nil, nil
	}
	f, err := os.Open(filepath.Join(g.cache, id+".squashfs"))
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	v, err := verify.NewVerifier(layer.Hashes, layer.Length)
	if err != nil {
		return nil, nil
	}
	if _, err := io.Copy(ioutil.Discard, v.Reader(f)); err != nil || v.Verify() != nil {
		return nil, nil
	}
	if n, _ := f.Read(make([]byte, 1)); n != 0 {
		return nil, nil
	}
	return layer, nil
}

// makeLayer writes CACHE/<id>.squashfs and CACHE/<id>.json (builder/build.go BuildLayer).
func (g *generator) makeLayer(id string, c *content) (*ct.ImageLayer, error) {
	tmp, err := ioutil.TempFile(g.cache, ".mkbuild-layer-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if g.format == "raw" {
		for i := range c.files {
			if err := c.write(i, tmp); err != nil {
				return nil, err
			}
		}
	} else {
		stage, err := ioutil.TempDir(g.cache, ".mkbuild-stage-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(stage)
		for i, f := range c.files {
			p := filepath.Join(stage, "root", f.Path)
			if err := os.MkdirAll(filepath.Dir(p), 0755); err != nil {
				return nil, err
			}
			var buf bytes.Buffer
			if err := c.write(i, &buf); err != nil {
				return nil, err
			}
			if err := ioutil.WriteFile(p, buf.Bytes(), 0644); err != nil {
				return nil, err
			}
		}
		sq := filepath.Join(stage, "layer.squashfs")
		cmd := exec.Command("mksquashfs", filepath.Join(stage, "root"), sq, "-noappend", "-all-root",
			"-no-xattrs", "-mkfs-time", "0", "-all-time", "0", "-processors", "2", "-quiet", "-no-progress")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("mksquashfs: %s: %s", err, bytes.TrimSpace(out))
		}
		src, err := os.Open(sq)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(tmp, src)
		src.Close()
		if err != nil {
			return nil, err
		}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	h := sha512.New512_256()
	n, err := io.Copy(h, tmp)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("the layer is empty")
	}
	if err := tmp.Chmod(0644); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(g.cache, id+".squashfs")); err != nil {
		return nil, err
	}
	layer := &ct.ImageLayer{
		ID:     id,
		Type:   ct.ImageLayerTypeSquashfs,
		Length: n,
		Hashes: map[string]string{"sha512_256": hex.EncodeToString(h.Sum(nil))},
	}
	data, err := json.Marshal(layer)
	if err != nil {
		return nil, err
	}
	return layer, writeFile(filepath.Join(g.cache, id+".json"), data, 0644)
}

// writeBinaries writes OUT/bin: the given files, else small executables.
func (g *generator) writeBinaries(given binFlags) error {
	for _, name := range binNames {
		dst := filepath.Join(g.out, "bin", name)
		var data []byte
		if src, ok := given[name]; ok {
			var err error
			if data, err = ioutil.ReadFile(src); err != nil {
				return fmt.Errorf("--bin %s: %s", name, err)
			}
		} else if name == "flynn-host" {
			data = []byte(fmt.Sprintf("#!/bin/sh\n# mkbuild stand-in for Flynn's flynn-host %s\n"+
				"case \"$1\" in version) echo %s ;; *) echo \"flynn-host %s (mkbuild stand-in): only 'version' works\" >&2; exit 1 ;; esac\n",
				g.version, g.version, g.version))
		} else {
			data = []byte(fmt.Sprintf("#!/bin/sh\n# mkbuild stand-in for Flynn's %s %s\necho %s %s\n", name, g.version, name, g.version))
		}
		if err := writeFile(dst, data, 0755); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes data to path through a temp file in the same directory.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := ioutil.TempFile(filepath.Dir(path), ".mkbuild-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
