// Command tufrepo builds a TUF repository the way Flynn's release tooling does, with Flynn's own
// vendored go-tuf, for script/test-flynn. It is built inside the integrated Flynn tree (copied
// there by the test), never shipped.
//
//	tufrepo init DIR            new keys for every role; prints the root keys as JSON (the
//	                            value of Flynn's tufconfig.RootKeysJSON)
//	tufrepo publish DIR FILE... stage FILE (each relative to DIR/staged/targets, already
//	                            copied there) and commit a new snapshot and timestamp
//	tufrepo clientdb DB URL KEYS
//	                            a client database as install-flynn leaves it: initialised
//	                            with the root keys KEYS (JSON) from the repository at URL
//	tufrepo serve DIR READY LOG serve DIR/repository on 127.0.0.1 (a free port); write its URL
//	                            to READY, and one line per request ("GET /path") to LOG
//	tufrepo stage DIR VERSION BUILD LAYERS URL
//	                            stage a Flynn build tree as builder/export.go lays out a
//	                            release: VERSION/<binary>.gz and VERSION/<manifest>.gz
//	                            (images.json's layer_url_template rewritten to
//	                            URL?target=/layers/{id}.squashfs) and layers/<id>.squashfs for
//	                            and layers/<id>.json for every layer images.json names (from
//	                            LAYERS); prints the targets
//
// DIR/repository is what a TUF client fetches (serve it over HTTP).
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	ct "github.com/flynn/flynn/controller/types"
	tuf "github.com/flynn/go-tuf"
	"github.com/flynn/go-tuf/client"
	"github.com/flynn/go-tuf/data"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tufrepo:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: tufrepo init DIR | tufrepo publish DIR FILE")
	}
	if args[0] == "serve" {
		if len(args) != 4 {
			return fmt.Errorf("usage: tufrepo serve DIR READY LOG")
		}
		return serve(args[1], args[2], args[3])
	}
	if args[0] == "stage" {
		if len(args) != 6 {
			return fmt.Errorf("usage: tufrepo stage DIR VERSION BUILD LAYERS URL")
		}
		return stage(args[1], args[2], args[3], args[4], args[5])
	}
	if args[0] == "clientdb" {
		if len(args) != 4 {
			return fmt.Errorf("usage: tufrepo clientdb DB URL KEYS")
		}
		return clientDB(args[1], args[2], args[3])
	}
	repo, err := tuf.NewRepo(tuf.FileSystemStore(args[1], nil))
	if err != nil {
		return err
	}
	switch args[0] {
	case "init":
		if err := repo.Init(false); err != nil {
			return err
		}
		for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
			if _, err := repo.GenKey(role); err != nil {
				return fmt.Errorf("generating the %s key: %s", role, err)
			}
		}
		keys, err := repo.RootKeys()
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(keys)
	case "publish":
		if err := repo.AddTargets(args[2:], nil); err != nil {
			return err
		}
		if err := repo.Snapshot(tuf.CompressionTypeNone); err != nil {
			return err
		}
		if err := repo.Timestamp(); err != nil {
			return err
		}
		return repo.Commit()
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func serve(dir, ready, logPath string) error {
	// O_APPEND: the test empties the log between checks while the server runs.
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0644)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	files := http.FileServer(http.Dir(filepath.Join(dir, "repository")))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fmt.Fprintf(logf, "%s %s\n", r.Method, r.URL.Path)
		mu.Unlock()
		files.ServeHTTP(w, r)
	})
	tmp := ready + ".tmp"
	if err := os.WriteFile(tmp, []byte("http://"+l.Addr().String()+"\n"), 0644); err != nil {
		return err
	}
	if err := os.Rename(tmp, ready); err != nil {
		return err
	}
	return http.Serve(l, h)
}

func clientDB(db, url, keysJSON string) error {
	var keys []*data.Key
	if err := json.Unmarshal([]byte(keysJSON), &keys); err != nil {
		return fmt.Errorf("decoding the root keys: %s", err)
	}
	local, err := client.FileLocalStore(db)
	if err != nil {
		return err
	}
	remote, err := client.HTTPRemoteStore(url, nil)
	if err != nil {
		return err
	}
	c := client.NewClient(local, remote)
	if err := c.Init(keys, len(keys)); err != nil {
		return err
	}
	if _, err := c.Update(); err != nil && !client.IsLatestSnapshot(err) {
		return err
	}
	return nil
}

// stage lays out a build tree's release in DIR/staged/targets as Flynn's builder/export.go does
// and prints every target, one per line, for publish.
func stage(dir, version, build, layers, url string) error {
	targets := filepath.Join(dir, "staged", "targets")
	var names []string
	put := func(target string, data []byte, compress bool) error {
		if compress {
			var buf bytes.Buffer
			gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			if err != nil {
				return err
			}
			if _, err := gz.Write(data); err != nil {
				return err
			}
			if err := gz.Close(); err != nil {
				return err
			}
			data, target = buf.Bytes(), target+".gz"
		}
		p := filepath.Join(targets, filepath.FromSlash(target))
		if err := os.MkdirAll(filepath.Dir(p), 0755); err != nil {
			return err
		}
		names = append(names, target)
		return ioutil.WriteFile(p, data, 0644)
	}
	for _, bin := range []string{"flynn-host", "flynn-init", "flynn-linux-amd64"} {
		b, err := ioutil.ReadFile(filepath.Join(build, "bin", bin))
		if err != nil {
			return err
		}
		if err := put(version+"/"+bin, b, true); err != nil {
			return err
		}
	}
	boot, err := ioutil.ReadFile(filepath.Join(build, "manifests", "bootstrap-manifest.json"))
	if err != nil {
		return err
	}
	if err := put(version+"/bootstrap-manifest.json", boot, true); err != nil {
		return err
	}
	imagesPath := filepath.Join(build, "manifests", "images.json")
	manifest, err := ioutil.ReadFile(imagesPath)
	if err != nil {
		return err
	}
	var images map[string]*ct.Artifact
	if err := json.Unmarshal(manifest, &images); err != nil {
		return fmt.Errorf("%s: %s", imagesPath, err)
	}
	// As export.go: the build's layer URL template, byte for byte, becomes the TUF one.
	tufTemplate, _ := json.Marshal(url + "?target=/layers/{id}.squashfs")
	rewritten := map[string]bool{}
	layerIDs := map[string]*ct.ImageLayer{}
	for name, a := range images {
		if a.LayerURLTemplate == "" {
			return fmt.Errorf("%s: image %s has no layer_url_template", imagesPath, name)
		}
		if !rewritten[a.LayerURLTemplate] {
			rewritten[a.LayerURLTemplate] = true
			old, _ := json.Marshal(a.LayerURLTemplate)
			manifest = bytes.Replace(manifest, old, tufTemplate, -1)
		}
		for _, rootfs := range a.Manifest().Rootfs {
			for _, l := range rootfs.Layers {
				layerIDs[l.ID] = l
			}
		}
	}
	if err := put(version+"/images.json", manifest, true); err != nil {
		return err
	}
	for id, l := range layerIDs {
		// export.go also publishes each layer's config, layers/<id>.json.
		var conf bytes.Buffer
		if err := json.NewEncoder(&conf).Encode(l); err != nil {
			return err
		}
		if err := put("layers/"+id+".json", conf.Bytes(), false); err != nil {
			return err
		}
		b, err := ioutil.ReadFile(filepath.Join(layers, id+".squashfs"))
		if err != nil {
			return err
		}
		if err := put("layers/"+id+".squashfs", b, false); err != nil {
			return err
		}
	}
	for _, n := range names {
		fmt.Println(n)
	}
	return nil
}
