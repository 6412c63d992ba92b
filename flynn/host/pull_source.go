package main

// Added by libflynnrel's script/flynn-integrate: which downloader the daemon's pull handlers
// (/host/pull/images, /host/pull/binaries; flynn/patches/host-http.patch) use. The host's
// install receipt, <config-dir>/install-source.json with config-dir from the request, decides:
// source github ⇒ the GitHub Releases downloader built from the receipt (repository, api_url,
// public key pin; FLYNN_GITHUB_API_URL / FLYNN_GITHUB_URL override the bases), and the TUF
// database the request carries is not used; otherwise (tuf, or no receipt) Flynn's TUF
// downloader exactly as before. A receipt that cannot be read or is invalid is an error naming
// the file, never a silent fallback to TUF.

import (
	"net/url"

	"github.com/flynn/flynn/host/downloader"
	"github.com/flynn/flynn/libflynnrel/go/flynnhost"
	"github.com/flynn/flynn/pkg/httphelper"
	"github.com/inconshreveable/log15"
)

// githubLayerDir is where GitHub pulls keep the verified layers they import (the layer cache of
// libflynnrel's host layout).
var githubLayerDir = flynnhost.DefaultLayerDir

// pullDownloader returns the downloader of a pull request and a function that frees it.
func (h *jobAPI) pullDownloader(log log15.Logger, tufDB string, query url.Values) (downloader.Interface, func(), error) {
	receipt, err := flynnhost.PullSource(query.Get("config-dir"))
	if err != nil {
		log.Error("error reading the install receipt", "err", err)
		return nil, nil, visible(err)
	}
	if receipt != nil {
		log.Info("initializing GitHub Releases downloader", "repository", receipt.Repository)
		d, err := downloader.NewGitHub(receipt, query.Get("config-dir"), githubLayerDir, h.host.vman, query.Get("version"))
		if err != nil {
			log.Error("error initializing GitHub Releases downloader", "err", err)
			return nil, nil, visible(err)
		}
		return d, func() { d.Close() }, nil
	}

	log.Info("initializing TUF client")
	client, err := newTufClient(tufDB, query.Get("repository"))
	if err != nil {
		log.Error("error initializing TUF client", "err", err)
		return nil, nil, err
	}
	return downloader.New(client, h.host.vman, query.Get("version")), func() {}, nil
}

// visible makes err's message reach the client (httphelper.Error hides the message of other
// errors): the operator running `flynn-host update` must see which file to fix.
func visible(err error) error {
	return httphelper.JSONError{Code: httphelper.PreconditionFailedErrorCode, Message: err.Error()}
}
