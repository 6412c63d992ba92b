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
use crate::remote::ghrelease::{Asset, Client, Download};

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
    let (file, sha512, size, url) =
        fetch_checked(client, asset, Some(dest_dir), expected_sha512, progress, &mut |_| {})?;
    Ok(Fetched {
        file: kept_file(file, &asset.name)?,
        sha512,
        size,
        url,
    })
}

/// What [`fetch_asset_stream`] tells its observer while it downloads.
pub enum Tee<'a> {
    /// These bytes just arrived, following the ones before (not verified yet).
    Data(&'a [u8]),
    /// The download starts over from byte 0: every byte told so far is void.
    Restart,
}

/// What [`fetch_asset_stream`] verified: the sha512, the size, and the URL after redirects.
#[derive(Debug, Clone)]
pub struct Verified {
    pub sha512: String,
    pub size: u64,
    pub url: String,
}

/// [`fetch_asset`] without the temp file: the bytes exist only as `tee` sees them, and are
/// verified (size, sha512, digest) once this returns `Ok`. A download that resumes with `Range`
/// continues the same stream; one that starts over tells `tee` [`Tee::Restart`].
pub fn fetch_asset_stream(
    client: &Client,
    asset: &Asset,
    expected_sha512: &str,
    progress: Progress<'_>,
    tee: &mut dyn FnMut(Tee<'_>),
) -> Result<Verified> {
    let (_, sha512, size, url) = fetch_checked(client, asset, None, expected_sha512, progress, tee)?;
    Ok(Verified { sha512, size, url })
}

/// Downloads `asset` (into a temp file in `dest_dir` when given) and checks it: the shared part
/// of [`fetch_asset`] and [`fetch_asset_stream`]. Returns the file, the sha512, the size and
/// the last URL.
fn fetch_checked(
    client: &Client,
    asset: &Asset,
    dest_dir: Option<&Path>,
    expected_sha512: &str,
    progress: Progress<'_>,
    tee: &mut dyn FnMut(Tee<'_>),
) -> Result<(Option<NamedTempFile>, String, u64, String)> {
    if asset.state != "uploaded" {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "asset {} is in state {:?}, not \"uploaded\": the release is still being published; try again later",
                asset.name, asset.state
            ),
        ));
    }
    let target = StreamTarget {
        name: &asset.name,
        size: asset.size,
        announced_by: "the release announced",
        retries: client.options().retries,
        read_timeout: client.options().read_timeout,
        min_bytes_per_window: client.options().min_bytes_per_window,
    };
    let mut open = |offset: u64| client.open_asset(asset, offset);
    let streamed = stream_to_temp_tee(
        &target,
        dest_dir,
        &mut open,
        Hashers::new(true, asset.sha256_digest().is_some(), false),
        progress,
        tee,
    )?;
    let Streamed {
        file,
        written,
        last_url,
        hashers,
    } = streamed;
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
    let got512 = hashers.sha512_hex().unwrap_or_default();
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
        let got256 = hashers.sha256_hex().unwrap_or_default();
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
    Ok((file, got512, written, last_url))
}

fn cancelled(name: &str) -> Error {
    Error::new(
        ErrorKind::Cancelled,
        format!("download of {name} cancelled; nothing was installed"),
    )
}

/// What [`stream_to_temp`] fetches: a named byte stream of an exactly known size (the cap), and
/// the transfer rules of the client it comes through.
pub(crate) struct StreamTarget<'a> {
    /// The name in messages and in the temp file's name (`.<name>.XXXX.part`).
    pub name: &'a str,
    /// The exact size; also the cap on bytes read.
    pub size: u64,
    /// Who announced the size, for messages ("the release announced", "images.json says").
    pub announced_by: &'a str,
    /// Interruptions tolerated (each resumed with `Range` where the server allows, else restarted).
    pub retries: u32,
    /// The window in which at least `min_bytes_per_window` bytes must arrive.
    pub read_timeout: std::time::Duration,
    /// See `read_timeout`.
    pub min_bytes_per_window: u64,
}

/// The hashes computed while a stream is written (each only when asked for).
#[derive(Clone)]
pub(crate) struct Hashers {
    sha512: Option<Sha512>,
    sha256: Option<Sha256>,
    sha512_256: Option<sha2::Sha512_256>,
}

impl Hashers {
    pub(crate) fn new(sha512: bool, sha256: bool, sha512_256: bool) -> Hashers {
        Hashers {
            sha512: sha512.then(Sha512::new),
            sha256: sha256.then(Sha256::new),
            sha512_256: sha512_256.then(sha2::Sha512_256::new),
        }
    }
    fn update(&mut self, b: &[u8]) {
        if let Some(h) = &mut self.sha512 {
            h.update(b);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(b);
        }
        if let Some(h) = &mut self.sha512_256 {
            h.update(b);
        }
    }
    fn reset(&mut self) {
        *self = Hashers::new(self.sha512.is_some(), self.sha256.is_some(), self.sha512_256.is_some());
    }
    /// Splits off the SHA-512-family hashes to run on a thread of their own when there is also
    /// a sha256 to compute here (see [`HashLanes`]); `None` when there is nothing to split.
    fn split(mut self) -> (Hashers, Option<Hashers>) {
        if self.sha256.is_none() || (self.sha512.is_none() && self.sha512_256.is_none()) {
            return (self, None);
        }
        let side = Hashers {
            sha512: self.sha512.take(),
            sha256: None,
            sha512_256: self.sha512_256.take(),
        };
        (self, Some(side))
    }
    /// Takes back what [`Hashers::split`] split off.
    fn merge(&mut self, side: Hashers) {
        self.sha512 = self.sha512.take().or(side.sha512);
        self.sha512_256 = self.sha512_256.take().or(side.sha512_256);
    }
    pub(crate) fn sha512_hex(&self) -> Option<String> {
        self.sha512.clone().map(|h| hex(&h.finalize()))
    }
    pub(crate) fn sha256_hex(&self) -> Option<String> {
        self.sha256.clone().map(|h| hex(&h.finalize()))
    }
    pub(crate) fn sha512_256_hex(&self) -> Option<String> {
        self.sha512_256.clone().map(|h| hex(&h.finalize()))
    }
}

/// A stream written to a temp file, not yet checked against anything but its size cap.
/// [`stream_to_temp_tee`] gives an `Option` file: one only when a temp file was asked for.
pub(crate) struct Streamed<F = NamedTempFile> {
    pub file: F,
    pub written: u64,
    pub last_url: String,
    pub hashers: Hashers,
}

/// Streams what `open(offset)` answers into a new exclusive temp file in `dest_dir`, hashing it
/// as it is written and capping it at `t.size`. A transfer cut short (error, early end, a stall
/// below `min_bytes_per_window`) is resumed with `Range` where the server allows it, else
/// restarted, at most `t.retries` times. The caller checks the size and the hashes; every error
/// removes the temp file.
pub(crate) fn stream_to_temp(
    t: &StreamTarget<'_>,
    dest_dir: &Path,
    open: &mut dyn FnMut(u64) -> Result<Download>,
    hashers: Hashers,
    progress: Progress<'_>,
) -> Result<Streamed> {
    let s = stream_to_temp_tee(t, Some(dest_dir), open, hashers, progress, &mut |_| {})?;
    Ok(Streamed {
        file: kept_file(s.file, t.name)?,
        written: s.written,
        last_url: s.last_url,
        hashers: s.hashers,
    })
}

/// The temp file a download into a directory wrote (always there: the directory was given).
fn kept_file(file: Option<NamedTempFile>, name: &str) -> Result<NamedTempFile> {
    file.ok_or_else(|| Error::new(ErrorKind::Panic, format!("download of {name} kept no file")))
}

/// `b` in a buffer taken from `pool` (chunks a consumer is done with) when one is there, else in
/// a new one: a fresh 256 KiB per chunk would cost a page fault per 4 KiB.
pub(crate) fn recycled_copy(pool: &std::sync::mpsc::Receiver<Vec<u8>>, b: &[u8]) -> Vec<u8> {
    let mut chunk = pool.try_recv().unwrap_or_default();
    chunk.clear();
    chunk.extend_from_slice(b);
    chunk
}

/// Streams at least this large hash on two threads (see [`HashLanes`]).
const SPLIT_HASHING_FROM: u64 = 8 << 20;

/// What a side-thread hasher ([`hash_side`]) is sent.
pub(crate) enum SideMsg {
    /// The next bytes.
    Data(Vec<u8>),
    /// The stream starts over: forget every byte so far.
    Reset,
    /// The end of one stream: answer with its hashes, and start over for the next one.
    End(std::sync::mpsc::SyncSender<Hashers>),
}

/// Hashes, on a side thread, the chunks `rx` brings with `hashers`, handing each chunk back
/// through `recycle` (see [`recycled_copy`]). Returns the hashes once the sender is dropped.
/// Used by downloads ([`HashLanes`]) and by layer extraction.
pub(crate) fn hash_side(
    mut hashers: Hashers,
    rx: std::sync::mpsc::Receiver<SideMsg>,
    recycle: std::sync::mpsc::SyncSender<Vec<u8>>,
) -> Hashers {
    for msg in rx {
        match msg {
            SideMsg::Data(chunk) => {
                hashers.update(&chunk);
                // A full queue or a finished producer: the chunk is simply dropped.
                let _ = recycle.try_send(chunk);
            }
            SideMsg::Reset => hashers.reset(),
            SideMsg::End(reply) => {
                let _ = reply.send(hashers.clone());
                hashers.reset();
            }
        }
    }
    hashers
}

/// The hashes of a stream being written: those computed on this thread, and optionally the
/// SHA-512-family ones computed on a side thread from copies of the chunks. Each hash is a
/// sequential pass over every byte; for a large asset one thread doing sha512 and sha256 in
/// turn is the slowest link of an install, while the copy costs a tenth of a hash.
struct HashLanes {
    here: Hashers,
    /// The side thread, and the chunks it is done with (to be filled again).
    side: Option<(std::sync::mpsc::SyncSender<SideMsg>, std::sync::mpsc::Receiver<Vec<u8>>)>,
}

impl HashLanes {
    fn update(&mut self, b: &[u8]) {
        self.here.update(b);
        if let Some((tx, pool)) = &self.side {
            // The side thread only stops when this sender is dropped.
            let _ = tx.send(SideMsg::Data(recycled_copy(pool, b)));
        }
    }
    fn reset(&mut self) {
        self.here.reset();
        if let Some((tx, _)) = &self.side {
            let _ = tx.send(SideMsg::Reset);
        }
    }
}

/// [`stream_to_temp`], also handing every byte written to `tee` (see [`fetch_asset_tee`]).
/// Without `dest_dir` the bytes go only to the hashes and `tee`.
fn stream_to_temp_tee(
    t: &StreamTarget<'_>,
    dest_dir: Option<&Path>,
    open: &mut dyn FnMut(u64) -> Result<Download>,
    hashers: Hashers,
    progress: Progress<'_>,
    tee: &mut dyn FnMut(Tee<'_>),
) -> Result<Streamed<Option<NamedTempFile>>> {
    let (here, side) = match t.size >= SPLIT_HASHING_FROM {
        true => hashers.split(),
        false => (hashers, None),
    };
    let Some(side) = side else {
        let lanes = HashLanes { here, side: None };
        return stream_to_temp_lanes(t, dest_dir, open, lanes, progress, tee);
    };
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<SideMsg>(4);
        let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(5);
        let worker = s.spawn(move || hash_side(side, rx, recycle_tx));
        let lanes = HashLanes {
            here,
            side: Some((tx, recycle_rx)),
        };
        let streamed = stream_to_temp_lanes(t, dest_dir, open, lanes, progress, tee);
        let side = worker
            .join()
            .map_err(|_| Error::new(ErrorKind::Panic, format!("hashing {} panicked", t.name)))?;
        let mut streamed = streamed?;
        streamed.hashers.merge(side);
        Ok(streamed)
    })
}

/// [`stream_to_temp_tee`] with its hashes laid out.
fn stream_to_temp_lanes(
    t: &StreamTarget<'_>,
    dest_dir: Option<&Path>,
    open: &mut dyn FnMut(u64) -> Result<Download>,
    mut lanes: HashLanes,
    progress: Progress<'_>,
    tee: &mut dyn FnMut(Tee<'_>),
) -> Result<Streamed<Option<NamedTempFile>>> {
    let prefix = format!(".{}.", t.name);
    let mut file = match dest_dir {
        Some(dir) => Some(
            tempfile::Builder::new()
                .prefix(&prefix)
                .suffix(".part")
                .tempfile_in(dir)
                .map_err(|e| Error::io("create a temp file in", dir, e))?,
        ),
        None => None,
    };
    let cap = t.size;
    let phase = format!("download {}", t.name);
    let mut written: u64 = 0;
    let mut interruptions: u32 = 0;
    let mut stalled = false;
    let mut buf = vec![0u8; 256 << 10];
    let mut last_url;
    if !progress(&phase, 0, cap) {
        return Err(cancelled(t.name));
    }
    loop {
        let mut dl = open(written)?;
        last_url = dl.url.to_string();
        if written > 0 && dl.resumed_from != Some(written) {
            if dl.resumed_from.is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("{} resumed {} at the wrong offset; retry the download", dl.url, t.name),
                ));
            }
            // The server ignored the Range request and sent everything: start over.
            restart(file.as_mut())?;
            lanes.reset();
            tee(Tee::Restart);
            written = 0;
        }
        if let Some(len) = dl.content_length {
            if written + len > cap {
                return Err(too_large(t, dl.url.as_ref(), written + len));
            }
        }
        let expected_end = dl.content_length.map(|len| written + len);
        // A server that drips bytes just fast enough to dodge the read timeout is cut off too:
        // every `read_timeout` window must bring at least `min_bytes_per_window` bytes.
        let mut window_start = Instant::now();
        let mut window_bytes = 0u64;
        let cut_short = loop {
            let n = match dl.response.read(&mut buf) {
                Ok(0) => break expected_end.is_some_and(|end| written < end),
                Ok(n) => n,
                Err(_) => break true,
            };
            window_bytes += n as u64;
            if window_start.elapsed() >= t.read_timeout {
                if window_bytes < t.min_bytes_per_window {
                    stalled = true;
                    break true;
                }
                window_start = Instant::now();
                window_bytes = 0;
            }
            if written + n as u64 > cap {
                return Err(too_large(t, dl.url.as_ref(), written + n as u64));
            }
            if let Some(file) = file.as_mut() {
                file.write_all(&buf[..n])
                    .map_err(|e| Error::io("write", file.path(), e))?;
            }
            tee(Tee::Data(&buf[..n]));
            lanes.update(&buf[..n]);
            written += n as u64;
            if !progress(&phase, written, cap) {
                return Err(cancelled(t.name));
            }
        };
        if !cut_short {
            break;
        }
        interruptions += 1;
        if interruptions > t.retries {
            return Err(Error::new(
                ErrorKind::Network,
                format!(
                    "download of {} from {} was cut short {interruptions} times{} (got {written} of {cap} bytes); \
                     check the network and try again",
                    t.name,
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
            restart(file.as_mut())?;
            lanes.reset();
            tee(Tee::Restart);
            written = 0;
        }
    }
    // Dropping the side sender ends the side thread's stream.
    Ok(Streamed {
        file,
        written,
        last_url,
        hashers: lanes.here,
    })
}

/// Empties the temp file (if any) for a download that starts over.
fn restart(file: Option<&mut NamedTempFile>) -> Result<()> {
    let Some(file) = file else { return Ok(()) };
    let path = file.path().to_path_buf();
    let f = file.as_file_mut();
    f.set_len(0).map_err(|e| Error::io("truncate", &path, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| Error::io("seek", &path, e))?;
    Ok(())
}

fn too_large(t: &StreamTarget<'_>, url: &str, got: u64) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!(
            "{} from {url} is larger than the {} bytes {} (at least {got}); \
             refusing it: it is corrupt or tampered",
            t.name, t.size, t.announced_by
        ),
    )
}
