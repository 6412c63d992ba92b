package downloader

// The GitHub Releases mode of the downloader (libflynnrel): the same DownloadBinaries,
// DownloadConfig and layer methods as the TUF Downloader, each a verified, all-or-nothing
// install of one release into the directory it names, without an install receipt. The logic
// is in github.com/flynn/flynn/libflynnrel/go/flynnhost; this file only makes it reachable as
// downloader.GitHub.

import (
	"github.com/flynn/flynn/libflynnrel/go/flynnhost"
	"github.com/flynn/flynn/libflynnrel/go/flynnrel"
)

// GitHub downloads one release's components from a repository's GitHub Releases.
type GitHub = flynnhost.Downloader

// NewGitHub returns a GitHub downloader of version ("" = the stable channel's newest) from
// client's repository; layout places the components a method is not about (its Root, when
// set, applies to every directory).
func NewGitHub(client *flynnrel.Client, version string, layout flynnrel.Layout) *GitHub {
	return flynnhost.NewDownloader(client, version, layout)
}
