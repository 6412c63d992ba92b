//! Verified streaming downloads.
//!
//! An asset is streamed into a temp file created exclusively (`O_EXCL`, random name, mode 0600)
//! in the destination directory, so that nobody can pre-create or swap it and the final rename
//! stays on one file system. The bytes are hashed (sha512, and sha256 when GitHub gives a
//! `digest`) as they are written and capped at the size the API announced. A transfer cut short is
//! resumed with `Range` where the server allows it, else restarted, within the retry budget. The
//! caller gets a verified [`Fetched`]; only [`Fetched::persist`] fsyncs it and puts it in place.
//! Dropping it removes the temp file, so a failure leaves nothing behind.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256, Sha512};
use tempfile::NamedTempFile;

use crate::error::{Error, ErrorKind, Result};
use crate::model::checksums::{eq_hex, hex};
use crate::remote::ghrelease::{Asset, Client};

/// A progress callback: `(phase, done, total) -> keep_going`. Returning `false` cancels the
/// operation cleanly (`ErrorKind::Cancelled`, nothing left behind).
pub type Progress<'a> = &'a mut (dyn FnMut(&str, u64, u64) -> bool + Send);

/// A progress callback that never cancels and reports nothing.
pub fn no_progress(_: &str, _: u64, _: u64) -> bool {
    true
}

/// A downloaded, verified asset in a temp file beside its destination.
#[derive(Debug)]
pub struct Fetched {
    file: NamedTempFile,
    /// Lowercase hex sha512 of the bytes (equal to the expected one).
    pub sha512: String,
    /// Number of bytes.
    pub size: u64,
    /// Where the bytes came from after redirects (for messages).
    pub url: String,
}

impl Fetched {
    /// The temp file's path (inside the destination directory).
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Reopens the verified bytes for reading from the start.
    pub fn reopen(&self) -> Result<File> {
        self.file.reopen().map_err(|e| Error::io("reopen", self.file.path(), e))
    }

    /// Renames the verified file to `dest` (same directory as the temp file), replacing it
    /// atomically, and sets `mode`.
    pub fn persist(self, dest: &Path, mode: u32) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        self.file
            .as_file()
            .sync_all()
            .map_err(|e| Error::io("fsync", self.file.path(), e))?;
        std::fs::set_permissions(self.file.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("set permissions on", self.file.path(), e))?;
        self.file
            .persist(dest)
            .map_err(|e| Error::io("rename into place", dest, e.error))?;
        Ok(dest.to_path_buf())
    }

    /// Keeps the temp file as it is and returns it (for callers that post-process it).
    pub fn into_temp(self) -> NamedTempFile {
        self.file
    }
}

/// Downloads `asset` into a new temp file in `dest_dir` and verifies it against
/// `expected_sha512` (from `checksums.sha512`), the asset's `digest` when GitHub gives one, and its
/// announced `size` (also the cap on bytes read).
///
/// Errors: `ChecksumMismatch` (hash or digest differs), `InvalidData` (size differs, asset not
/// fully uploaded), `TooLarge` (more bytes than announced), `Network`/`HttpStatus` (transfer
/// failed after retries), `Cancelled` (progress returned false), `Io` (temp file). In every error
/// case the temp file is removed.
pub fn fetch_asset(
    client: &Client,
    asset: &Asset,
    dest_dir: &Path,
    expected_sha512: &str,
    progress: Progress<'_>,
) -> Result<Fetched> {
    fetch_asset_tee(client, asset, dest_dir, expected_sha512, progress, &mut |_| {})
}

/// What [`fetch_asset_tee`] tells its observer while it downloads.
pub enum Tee<'a> {
    /// These bytes were just written, following the ones before (not verified yet).
    Data(&'a [u8]),
    /// The download starts over from byte 0: every byte told so far is void.
    Restart,
}

/// [`fetch_asset`], also handing every byte to `tee` as it is written, so that a caller can
/// work on the stream while it arrives. Those bytes are unverified until this returns `Ok`.
pub fn fetch_asset_tee(
    client: &Client,
    asset: &Asset,
    dest_dir: &Path,
    expected_sha512: &str,
    progress: Progress<'_>,
    tee: &mut dyn FnMut(Tee<'_>),
) -> Result<Fetched> {
    if asset.state != "uploaded" {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "asset {} is in state {:?}, not \"uploaded\": the release is still being published; try again later",
                asset.name, asset.state
            ),
        ));
    }
    let prefix = format!(".{}.", asset.name);
    let mut file = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".part")
        .tempfile_in(dest_dir)
        .map_err(|e| Error::io("create a temp file in", dest_dir, e))?;

    let cap = asset.size;
    let retries = client.options().retries;
    let phase = format!("download {}", asset.name);
    let mut sha512 = Sha512::new();
    let mut sha256 = Sha256::new();
    let mut written: u64 = 0;
    let mut interruptions: u32 = 0;
    let mut stalled = false;
    let mut buf = vec![0u8; 256 << 10];
    let mut last_url;
    if !progress(&phase, 0, cap) {
        return Err(cancelled(&asset.name));
    }
    loop {
        let mut dl = client.open_asset(asset, written)?;
        last_url = dl.url.to_string();
        if written > 0 && dl.resumed_from != Some(written) {
            if dl.resumed_from.is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "{} resumed {} at the wrong offset; retry the download",
                        dl.url, asset.name
                    ),
                ));
            }
            // The server ignored the Range request and sent everything: start over.
            (sha512, sha256) = restart(&mut file)?;
            tee(Tee::Restart);
            written = 0;
        }
        if let Some(len) = dl.content_length {
            if written + len > cap {
                return Err(too_large(asset, dl.url.as_ref(), written + len));
            }
        }
        let expected_end = dl.content_length.map(|len| written + len);
        // A server that drips bytes just fast enough to dodge the read timeout is cut off too:
        // every `read_timeout` window must bring at least `min_bytes_per_window` bytes.
        let window = client.options().read_timeout;
        let min_bytes = client.options().min_bytes_per_window;
        let mut window_start = Instant::now();
        let mut window_bytes = 0u64;
        let cut_short = loop {
            let n = match dl.response.read(&mut buf) {
                Ok(0) => break expected_end.is_some_and(|end| written < end),
                Ok(n) => n,
                Err(_) => break true,
            };
            window_bytes += n as u64;
            if window_start.elapsed() >= window {
                if window_bytes < min_bytes {
                    stalled = true;
                    break true;
                }
                window_start = Instant::now();
                window_bytes = 0;
            }
            if written + n as u64 > cap {
                return Err(too_large(asset, dl.url.as_ref(), written + n as u64));
            }
            file.write_all(&buf[..n])
                .map_err(|e| Error::io("write", file.path(), e))?;
            tee(Tee::Data(&buf[..n]));
            sha512.update(&buf[..n]);
            sha256.update(&buf[..n]);
            written += n as u64;
            if !progress(&phase, written, cap) {
                return Err(cancelled(&asset.name));
            }
        };
        if !cut_short {
            break;
        }
        interruptions += 1;
        if interruptions > retries {
            return Err(Error::new(
                ErrorKind::Network,
                format!(
                    "download of {} from {} was cut short {interruptions} times{} (got {written} of {cap} bytes); \
                     check the network and try again",
                    asset.name,
                    dl.url,
                    if stalled {
                        ", the last time because it stalled (too slow)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if !dl.accept_ranges {
            // Cannot resume: the next round restarts from byte 0.
            (sha512, sha256) = restart(&mut file)?;
            tee(Tee::Restart);
            written = 0;
        }
    }

    if written != asset.size {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "{} from {last_url} is {written} bytes but the release says {}; the asset is corrupt or \
                 tampered: nothing was installed",
                asset.name, asset.size
            ),
        ));
    }
    let got512 = hex(&sha512.finalize());
    if !eq_hex(&got512, expected_sha512) {
        return Err(Error::new(
            ErrorKind::ChecksumMismatch,
            format!(
                "sha512 of {} from {last_url} is {got512}, but checksums.sha512 says {expected_sha512}; \
                 the asset is corrupt or tampered: nothing was installed",
                asset.name
            ),
        ));
    }
    if let Some(want256) = asset.sha256_digest() {
        let got256 = hex(&sha256.finalize());
        if !eq_hex(&got256, want256) {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "sha256 of {} from {last_url} is {got256}, but GitHub's asset digest says {want256}; \
                     the asset is corrupt or tampered: nothing was installed",
                    asset.name
                ),
            ));
        }
    } else if asset.digest.is_some() {
        // A digest in a form we cannot check (another algorithm) is not trusted either way:
        // the sha512 from checksums.sha512 above is the binding check.
    }
    // Not fsynced here: most callers decompress the file and drop it; `persist` syncs before the
    // rename that makes it visible.
    Ok(Fetched {
        file,
        sha512: got512,
        size: written,
        url: last_url,
    })
}

/// Empties the temp file for a download that starts over, and returns fresh hashers.
fn restart(file: &mut NamedTempFile) -> Result<(Sha512, Sha256)> {
    let path = file.path().to_path_buf();
    let f = file.as_file_mut();
    f.set_len(0).map_err(|e| Error::io("truncate", &path, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| Error::io("seek", &path, e))?;
    Ok((Sha512::new(), Sha256::new()))
}

fn too_large(asset: &Asset, url: &str, got: u64) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!(
            "{} from {url} is larger than the {} bytes the release announced (at least {got}); \
             refusing it: the asset is corrupt or tampered",
            asset.name, asset.size
        ),
    )
}

fn cancelled(name: &str) -> Error {
    Error::new(
        ErrorKind::Cancelled,
        format!("download of {name} cancelled; nothing was installed"),
    )
}
