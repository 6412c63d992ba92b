package cli

// The GitHub Releases channel of flynn-host, beside TUF (libflynnrel; the logic is in
// github.com/flynn/flynn/libflynnrel/go/flynnhost). Flynn's update.go and download.go register
// runUpdateOrGitHub and runDownloadOrGitHub with their own usage plus the options below
// (flynn/patches/host-cli-*.patch in libflynnrel); this file only wires Flynn's TUF code in.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/boltdb/bolt"
	"github.com/flynn/flynn/libflynnrel/go/flynnhost"
	"github.com/flynn/flynn/pkg/tufconfig"
	"github.com/flynn/flynn/pkg/version"
	"github.com/flynn/go-docopt"
	tuf "github.com/flynn/go-tuf/client"
	"github.com/inconshreveable/log15"
)

// The option lines Flynn's update and download usages gain.
const (
	githubUpdateOptions   = flynnhost.FlynnUpdateOptions
	githubDownloadUsage   = flynnhost.FlynnDownloadUsage
	githubDownloadOptions = flynnhost.FlynnDownloadOptions
)

// githubHost reads FLYNN_GITHUB_API_URL, FLYNN_GITHUB_URL, FLYNN_GITHUB_REPO and the token
// variables; it prints result lines (key=value) on stdout.
var githubHost = flynnhost.NewHost(nil)

func init() {
	// github-update is a new command name, so registering it replaces nothing of Flynn's.
	for _, c := range githubHost.Commands() {
		if c.Name == "github-update" {
			run := c.Run
			Register(c.Name, func(args *docopt.Args) error { return exitStatus(run(args)) }, c.Usage)
		}
	}
}

// ErrExitStatus makes flynn-host exit with Code without logging an error (host/host.go): the
// command has already printed what the operator needs. `update --check` exits 100 when an update
// is available, 2 on a bad combination of options.
type ErrExitStatus struct {
	Code int
}

func (e ErrExitStatus) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// exitStatus turns the results that have their own exit code into ErrExitStatus.
func exitStatus(err error) error {
	switch code := flynnhost.ExitCode(err); code {
	case 0, 1:
		return err
	case 2:
		fmt.Fprintln(os.Stderr, err)
		return ErrExitStatus{Code: code}
	default:
		return ErrExitStatus{Code: code}
	}
}

// runUpdateOrGitHub is `flynn-host update`: the install receipt decides between Flynn's TUF
// update (runUpdate, with exactly Flynn's own options) and libflynnrel. A GitHub install
// without --root is updated by Flynn's cluster flow (updateCluster, without a TUF database:
// every daemon pulls from the source its own receipt names, host/pull_source.go).
func runUpdateOrGitHub(args *docopt.Args) error {
	return exitStatus(githubHost.FlynnUpdate(args, flynnhost.FlynnTUF{
		Update: runTUFUpdate,
		Check:  checkTUFUpdate,
		Cluster: func(args *docopt.Args) error {
			log := log15.New()
			log.Info("updating the cluster from GitHub Releases", "version", version.Release())
			return updateCluster(args, nil, log)
		},
	}))
}

// runDownloadOrGitHub is `flynn-host download`: Flynn's TUF download, or with --github-repo a
// download from GitHub Releases that writes the install receipt.
func runDownloadOrGitHub(args *docopt.Args) error {
	if args.String["--github-repo"] != "" {
		return exitStatus(githubHost.FlynnDownload(args))
	}
	return runDownload(args)
}

// runTUFUpdate runs Flynn's TUF update. runUpdate re-executes the newest flynn-host with
// os.Args[1:] plus --is-latest --is-tempfile, so os.Args becomes argv: options every flynn-host
// accepts, whichever GitHub options this run was given.
func runTUFUpdate(args *docopt.Args, argv []string) error {
	if argv != nil {
		os.Args = append([]string{os.Args[0]}, argv...)
		if err := ensureTUFRootKeys(args.String["--tuf-db"], args.String["--repository"]); err != nil {
			return err
		}
	}
	return runUpdate(args)
}

// ensureTUFRootKeys gives a TUF database without root metadata (a host installed from GitHub
// Releases now switched to TUF) the root keys built into this flynn-host, verified against the
// repository's root.json, as `flynn-host download` does for install-flynn.
func ensureTUFRootKeys(dbPath, repository string) error {
	meta, err := readTUFDB(dbPath)
	if err == nil && meta["root.json"] != nil {
		return nil
	}
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("reading the TUF database %s: %s", dbPath, err)
	}
	how := fmt.Sprintf("to switch this host to TUF, run `flynn-host download --repository=%s --tuf-db=%s` "+
		"(as install-flynn does), or keep updating from GitHub with `flynn-host update --source=github`", repository, dbPath)
	remote, err := tuf.HTTPRemoteStore(repository, tufHTTPOpts("updater"))
	if err != nil {
		return fmt.Errorf("the TUF database %s has no root keys, and the repository %s is unusable: %s; %s", dbPath, repository, err, how)
	}
	mem := tuf.MemoryLocalStore()
	if err := tuf.NewClient(mem, remote).Init(tufconfig.RootKeys, len(tufconfig.RootKeys)); err != nil {
		return fmt.Errorf("the TUF database %s has no root keys, and initialising it with this flynn-host's root keys from %s failed: %s; %s", dbPath, repository, err, how)
	}
	meta, err = mem.GetMeta()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0755); err != nil {
		return fmt.Errorf("creating the TUF database %s: %s", dbPath, err)
	}
	return writeTUFDB(dbPath, meta)
}

// checkTUFUpdate is `update --check` of a TUF install, read-only: the TUF metadata in dbPath is
// copied into memory, refreshed from the repository there, and the channel's version (the
// small channels/<channel> target) is read; tuf.db is not written and no component is
// downloaded.
func checkTUFUpdate(args *docopt.Args) (string, string, error) {
	dbPath := args.String["--tuf-db"]
	meta, err := readTUFDB(dbPath)
	if err != nil {
		return "", "", fmt.Errorf("update --check: reading the TUF database %s: %s (pass --tuf-db=<path>)", dbPath, err)
	}
	if meta["root.json"] == nil {
		return "", "", fmt.Errorf("update --check: the TUF database %s has no root keys: run `flynn-host update` to set it up", dbPath)
	}
	local := tuf.MemoryLocalStore()
	for name, m := range meta {
		if err := local.SetMeta(name, m); err != nil {
			return "", "", err
		}
	}
	remote, err := tuf.HTTPRemoteStore(args.String["--repository"], tufHTTPOpts("updater"))
	if err != nil {
		return "", "", err
	}
	client := tuf.NewClient(local, remote)
	if _, err := client.Update(); err != nil && !tuf.IsLatestSnapshot(err) {
		return "", "", fmt.Errorf("update --check: updating TUF metadata from %s: %s", args.String["--repository"], err)
	}
	latest, err := getChannelVersion(args.String["--config-dir"], client, log15.New())
	if err != nil {
		return "", "", err
	}
	return version.Release(), latest, nil
}

// tufDBBucket is where go-tuf's FileLocalStore keeps its metadata.
const tufDBBucket = "tuf-client"

// readTUFDB reads go-tuf's local metadata read-only (os.IsNotExist for a missing file).
func readTUFDB(path string) (map[string]json.RawMessage, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	meta := make(map[string]json.RawMessage)
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(tufDBBucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			meta[string(k)] = append(json.RawMessage(nil), v...)
			return nil
		})
	})
	return meta, err
}

// writeTUFDB stores metadata as go-tuf's FileLocalStore does, and closes the file again so
// that runUpdate can open it.
func writeTUFDB(path string, meta map[string]json.RawMessage) error {
	db, err := bolt.Open(path, 0600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("opening the TUF database %s: %s", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(tufDBBucket))
		if err != nil {
			return err
		}
		for name, m := range meta {
			if err := b.Put([]byte(name), m); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the TUF database %s: %s", path, err)
	}
	return nil
}
