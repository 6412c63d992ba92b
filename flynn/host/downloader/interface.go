package downloader

// Added by libflynnrel's script/flynn-integrate: the pull handlers of host/http.go take either
// downloader through this interface (flynn/patches/host-http.patch, host/pull_source.go).

import ct "github.com/flynn/flynn/controller/types"

// Interface is the method set of Downloader that the daemon's pull handlers use.
type Interface interface {
	// DownloadBinaries installs flynn-host, flynn-init and flynn-linux-amd64 into dir (versioned,
	// symlinks switched) and returns name → path.
	DownloadBinaries(dir string) (map[string]string, error)
	// DownloadConfig installs bootstrap-manifest.json into dir and returns name → path.
	DownloadConfig(dir string) (map[string]string, error)
	// DownloadImages writes images.<version>.json into dir, imports every squashfs layer into the
	// volume manager and reports each image and layer on info, which it closes.
	DownloadImages(dir string, info chan *ct.ImagePullInfo) error
}

var (
	_ Interface = (*Downloader)(nil)
	_ Interface = (*GitHub)(nil)
)
