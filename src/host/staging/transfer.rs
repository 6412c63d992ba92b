//! The I/O of staging: small assets into memory, binaries and manifests through a capped gunzip
//! into temp files, layers out of `layers.tar.gz` by exact name, each hashed while it streams.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;

use sha2::Digest;
use tempfile::NamedTempFile;

use super::{MAX_SMALL_ASSET, Ready, StageCtx};
use crate::error::{Error, ErrorKind, Result};
use crate::model::checksums::{Checksums, eq_hex, hex};
use crate::model::layers::{self, LayerSpec};
use crate::model::release::CHECKSUMS_ASSET;
use crate::model::signature::{self, SIGNATURE_ASSET, TrustedKey};
use crate::model::version::Version;
use crate::remote::fetch::{self};
use crate::remote::ghrelease::{Asset, Client, Release};

/// Refuses a release whose `tag_name` is not exactly `version`: an API that answers
/// `/releases/tags/B` with release A would otherwise have A's (validly signed) bytes installed
/// under B's name.
pub fn check_release_is(client: &Client, rel: &Release, version: &Version) -> Result<()> {
    if rel.tag_name != version.as_str() {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "{} was asked for release {version} of {} and answered with release {:?}; the API is wrong or \
                 hostile: nothing was installed",
                client.options().api_url,
                client.repository(),
                rel.tag_name
            ),
        ));
    }
    Ok(())
}

pub(crate) fn asset<'r>(rel: &'r Release, name: &str) -> Result<&'r Asset> {
    rel.asset(name).ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "release {} has no asset {name}; it is incomplete: re-publish it",
                rel.tag_name
            ),
        )
    })
}

/// Downloads a small asset (checksums, signature) into memory, capped.
pub(crate) fn fetch_small(client: &Client, a: &Asset) -> Result<Vec<u8>> {
    if a.size > MAX_SMALL_ASSET {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{} is {} bytes; more than the {MAX_SMALL_ASSET}-byte limit",
                a.name, a.size
            ),
        ));
    }
    let mut dl = client.open_asset(a, 0)?;
    let mut buf = Vec::new();
    (&mut dl.response)
        .take(MAX_SMALL_ASSET + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            Error::new(
                ErrorKind::Network,
                format!("reading {} from {} failed: {e}", a.name, dl.url),
            )
        })?;
    if buf.len() as u64 > MAX_SMALL_ASSET {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("{} from {} is larger than {MAX_SMALL_ASSET} bytes", a.name, dl.url),
        ));
    }
    if buf.len() as u64 != a.size {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "{} from {} is {} bytes but the release says {}; try again",
                a.name,
                dl.url,
                buf.len(),
                a.size
            ),
        ));
    }
    if let Some(want) = a.sha256_digest() {
        let got = hex(&sha2::Sha256::digest(&buf));
        if !eq_hex(&got, want) {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "sha256 of {} from {} is {got}, but GitHub's asset digest says {want}; do not install this release",
                    a.name, dl.url
                ),
            ));
        }
    }
    Ok(buf)
}

/// Fetches and checks `checksums.sha512` (and its signature when `key` is given) of `rel`, whose
/// tag must be `version`; the signature's trusted comment must name that same version.
pub fn fetch_checksums(
    client: &Client,
    rel: &Release,
    version: &Version,
    key: Option<&TrustedKey>,
) -> Result<(Checksums, bool)> {
    fetch_checksums_expecting(client, rel, version, key, None)
}

/// [`fetch_checksums`], refusing (`ChecksumMismatch`) a file whose sha512 is not `expect` when
/// given (the hash a signed channel pointer binds).
pub(crate) fn fetch_checksums_expecting(
    client: &Client,
    rel: &Release,
    version: &Version,
    key: Option<&TrustedKey>,
    expect: Option<&str>,
) -> Result<(Checksums, bool)> {
    check_release_is(client, rel, version)?;
    let sums_asset = asset(rel, CHECKSUMS_ASSET).map_err(|_| {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "release {} of {} has no {CHECKSUMS_ASSET}; refusing to install an unverifiable release",
                rel.tag_name,
                client.repository()
            ),
        )
    })?;
    let bytes = fetch_small(client, sums_asset)?;
    let source = sums_asset.browser_download_url.clone();
    if let Some(want) = expect {
        let got = crate::model::checksums::sha512_hex(&bytes);
        if got != want {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "{source} has sha512 {got}, but the channel pointer binds release {} to {want}; refusing it",
                    rel.tag_name
                ),
            ));
        }
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::new(ErrorKind::InvalidData, format!("{source} is not UTF-8 text")))?;
    let mut verified = false;
    if let Some(key) = key {
        let sig_asset = rel.asset(SIGNATURE_ASSET).ok_or_else(|| {
            Error::new(
                ErrorKind::SignatureInvalid,
                format!(
                    "release {} has no {SIGNATURE_ASSET} but a public key is configured; refusing an unsigned release",
                    rel.tag_name
                ),
            )
        })?;
        let sig = fetch_small(client, sig_asset)?;
        let sig = String::from_utf8(sig).map_err(|_| {
            Error::new(
                ErrorKind::SignatureInvalid,
                format!("{} is not text", sig_asset.browser_download_url),
            )
        })?;
        signature::verify_checksums(
            key,
            text.as_bytes(),
            &sig,
            &sig_asset.browser_download_url,
            &client.repository(),
            version.as_str(),
        )?;
        verified = true;
    }
    Ok((Checksums::parse(&text, &source)?, verified))
}

/// A writer that hashes with sha512 what it writes.
struct HashingWriter<'a> {
    inner: crate::fsutil::WritebackFile<'a>,
    hasher: Option<sha2::Sha512>,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Chunks of a download (up to 256 KiB each) queued for the decoder working on it meanwhile
/// (several assets download at once: this bounds what each holds).
const TEE_CHUNKS: usize = 4;

/// Downloads `a`, verified against `sha512` (see [`fetch::fetch_asset_stream`]), and runs
/// `decode` on its bytes while they arrive, so that download, hashing and decompression overlap;
/// the compressed bytes are not written anywhere. `decode`'s result, or its error, is returned
/// only once the download is verified, and only when the download did not start over: then the
/// bytes it read are exactly the verified ones, so what it says is what decoding the verified
/// asset says. When the download started over (a server that ignored `Range` after a cut), that
/// run is void: the asset is downloaded again into a temp file in `dir`, verified, and decoded
/// from there (the temp file is removed either way).
fn fetch_decoded<T>(
    client: &Client,
    a: &Asset,
    sha512: &str,
    dir: &Path,
    shared: &StageCtx<'_>,
    decode: &(dyn Fn(&mut dyn Read) -> Result<T> + Sync),
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Option<Vec<u8>>>(TEE_CHUNKS);
    // Chunks the decoder has read come back to be filled again.
    let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(TEE_CHUNKS + 1);
    let (fetched, early) = std::thread::scope(|s| {
        let download = s.spawn(move || {
            let mut tx = Some(tx);
            let mut restarted = false;
            let mut tee = |ev: fetch::Tee<'_>| {
                restarted |= matches!(ev, fetch::Tee::Restart);
                let Some(t) = &tx else { return };
                let (msg, last) = match ev {
                    fetch::Tee::Data(b) => (Some(fetch::recycled_copy(&recycle_rx, b)), false),
                    fetch::Tee::Restart => (None, true),
                };
                // A decoder that stopped (done or failed) no longer listens; after a restart the
                // early run is void and gets nothing more.
                if t.send(msg).is_err() || last {
                    tx = None;
                }
            };
            let mut cb = |p: &str, d: u64, t: u64| shared.report(p, d, t);
            fetch::fetch_asset_stream(client, a, sha512, &mut cb, &mut tee).map(|v| (v, restarted))
        });
        let mut stream = TeeReader {
            rx,
            recycle: recycle_tx,
            buf: Vec::new(),
            pos: 0,
        };
        let early = decode(&mut stream);
        drop(stream);
        let fetched = download
            .join()
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Panic, format!("download of {} panicked", a.name))));
        (fetched, early)
    });
    let (_, restarted) = fetched?;
    match early {
        Err(e) if e.kind() == ErrorKind::Cancelled => Err(e),
        done if !restarted => done,
        _ => {
            let mut cb = |p: &str, d: u64, t: u64| shared.report(p, d, t);
            let fetched = fetch::fetch_asset(client, a, dir, sha512, &mut cb)?;
            decode(&mut fetched.reopen()?)
        }
    }
}

/// The bytes of a download in progress, as [`fetch_decoded`]'s tee sends them: the end of the
/// download (finished or failed) is the end of the stream; a restart is an error.
struct TeeReader {
    rx: std::sync::mpsc::Receiver<Option<Vec<u8>>>,
    /// Where read chunks go back to the download, to be reused.
    recycle: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for TeeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(Some(b)) => {
                    let done = std::mem::replace(&mut self.buf, b);
                    self.pos = 0;
                    // A full queue or a finished download: the chunk is simply dropped.
                    let _ = self.recycle.try_send(done);
                }
                Ok(None) => return Err(std::io::Error::other("the download started over")),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Downloads `a` (verified against `sha512`) beside `dir` and decompresses it into a new temp file
/// in `dir`, capped at `cap` bytes, while it downloads ([`fetch_decoded`]). The compressed temp
/// file is removed either way.
pub(super) fn fetch_and_gunzip(
    client: &Client,
    a: &Asset,
    sha512: &str,
    dir: &Path,
    cap: u64,
    shared: &StageCtx<'_>,
) -> Result<Ready> {
    let stem = a.name.trim_end_matches(".gz");
    let decode = |input: &mut dyn Read| -> Result<Ready> {
        let mut out = tempfile::Builder::new()
            .prefix(&format!(".{stem}."))
            .suffix(".new")
            .tempfile_in(dir)
            .map_err(|e| Error::io("create a temp file in", dir, e))?;
        let mut w = HashingWriter {
            inner: crate::fsutil::WritebackFile::new(out.as_file_mut()),
            hasher: shared.report_sha512.then(sha2::Sha512::new),
        };
        crate::model::gz::gunzip_capped(input, &mut w, cap, &a.name)?;
        let sha512 = w.hasher.map(|h| hex(&h.finalize())).unwrap_or_default();
        out.as_file()
            .sync_all()
            .map_err(|e| Error::io("fsync", out.path(), e))?;
        Ok(Ready { file: out, sha512 })
    };
    fetch_decoded(client, a, sha512, dir, shared, &decode)
}

/// Downloads `layers.tar.gz` and extracts exactly the `needed` layers into temp files in
/// `layer_dir`, each checked against its length and sha512/256, while it downloads
/// ([`fetch_decoded`]). Every other kind of entry (links, devices, directories, absolute or `..`
/// paths, unknown or repeated names) is refused.
pub(super) fn fetch_layers(
    client: &Client,
    a: &Asset,
    sha512: &str,
    layer_dir: &Path,
    needed: &[LayerSpec],
    shared: &StageCtx<'_>,
) -> Result<Vec<(LayerSpec, Ready)>> {
    let decode = |input: &mut dyn Read| extract_layers(input, a, layer_dir, needed, shared);
    fetch_decoded(client, a, sha512, layer_dir, shared, &decode)
}

/// Extracts exactly the `needed` layers of the `layers.tar.gz` stream `input` (asset `a`) into
/// temp files in `layer_dir`; see [`fetch_layers`]. Each layer is fsynced on a thread of its own
/// while the next one is extracted; all of them are synced when this returns `Ok`.
fn extract_layers(
    input: &mut dyn Read,
    a: &Asset,
    layer_dir: &Path,
    needed: &[LayerSpec],
    shared: &StageCtx<'_>,
) -> Result<Vec<(LayerSpec, Ready)>> {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel::<(std::fs::File, std::path::PathBuf)>();
        let syncer = s.spawn(move || -> Result<()> {
            for (file, path) in rx {
                file.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
            }
            Ok(())
        });
        // Each layer's sha512/256 (and sha512 for the report) on a thread of its own: hashing a
        // layer takes as long as writing it, and on a large release the two in turn were the
        // slowest link of an install.
        let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<fetch::SideMsg>(4);
        let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(5);
        let hashers = fetch::Hashers::new(shared.report_sha512, false, true);
        s.spawn(move || fetch::hash_side(hashers, hash_rx, recycle_tx));
        let hasher = LayerHasher {
            tx: hash_tx,
            recycle: recycle_rx,
        };
        let extracted = extract_layers_syncing(input, a, layer_dir, needed, shared, &tx, &hasher);
        drop(hasher);
        drop(tx);
        let synced = syncer
            .join()
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Panic, "fsync of the layers panicked")));
        let out = extracted?;
        synced?;
        Ok(out)
    })
}

/// The extracting side of the layer hashing thread ([`fetch::hash_side`]).
struct LayerHasher {
    tx: std::sync::mpsc::SyncSender<fetch::SideMsg>,
    recycle: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl LayerHasher {
    fn update(&self, b: &[u8]) -> Result<()> {
        self.tx
            .send(fetch::SideMsg::Data(fetch::recycled_copy(&self.recycle, b)))
            .map_err(|_| Error::new(ErrorKind::Panic, "the layer hashing thread stopped"))
    }

    /// The current layer's sha512/256 and optional sha512; the next bytes start a new layer.
    fn finish(&self) -> Result<(String, Option<String>)> {
        let stopped = || Error::new(ErrorKind::Panic, "the layer hashing thread stopped");
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.tx.send(fetch::SideMsg::End(reply)).map_err(|_| stopped())?;
        let h = answer.recv().map_err(|_| stopped())?;
        Ok((h.sha512_256_hex().unwrap_or_default(), h.sha512_hex()))
    }
}

/// [`extract_layers`], handing each extracted layer's file to `sync` to be fsynced and its bytes
/// to `hasher`.
fn extract_layers_syncing(
    input: &mut dyn Read,
    a: &Asset,
    layer_dir: &Path,
    needed: &[LayerSpec],
    shared: &StageCtx<'_>,
    sync: &std::sync::mpsc::Sender<(std::fs::File, std::path::PathBuf)>,
    hasher: &LayerHasher,
) -> Result<Vec<(LayerSpec, Ready)>> {
    let source = a.browser_download_url.as_str();
    // The archive holds every layer of the release; cap the decompressed stream at what those
    // layers can take (plus tar headers and padding).
    let all_cap: u64 = needed.iter().map(|s| s.length + 1024).sum::<u64>();
    // The archive may also hold layers we skip; allow for them with a generous fixed margin, and
    // rely on the per-entry size checks for the rest.
    let cap = all_cap.saturating_add(a.size.saturating_mul(4)).saturating_add(1 << 20);
    // The packager's members record their sizes: they are inflated in parallel, in order.
    let decoder = crate::model::gz::ParGzReader::new(input, crate::model::gz::default_threads(), cap, source);
    let capped = CappedReader {
        inner: decoder,
        left: cap,
        source: source.to_string(),
    };
    let mut archive = tar::Archive::new(capped);
    let wanted: BTreeSet<String> = needed.iter().map(|s| s.file_name()).collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    let entries = archive.entries().map_err(|e| tar_err(source, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| tar_err(source, e))?;
        let raw = entry.path_bytes().into_owned();
        let name = layers::flat_entry_name(&raw)
            .ok_or_else(|| {
                bad_entry(
                    source,
                    &format!(
                        "the path {:?} (only flat <layer-id>.squashfs names are allowed)",
                        String::from_utf8_lossy(&raw)
                    ),
                )
            })?
            .to_string();
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            return Err(bad_entry(
                source,
                &format!("{name:?} of type {kind:?} (only regular files are allowed)"),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(bad_entry(source, &format!("{name:?} twice")));
        }
        let Some(spec) = needed.iter().find(|s| s.file_name() == name) else {
            // A layer of the release that is already present and valid here: skip its bytes.
            if name.ends_with(".squashfs") && layers::validate_layer_id(name.trim_end_matches(".squashfs")) {
                continue;
            }
            return Err(bad_entry(source, &format!("the unexpected name {name:?}")));
        };
        let size = entry.header().size().map_err(|e| tar_err(source, e))?;
        if size != spec.length {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{source}: layer {name} is {size} bytes but images.json says {}; the release is corrupt",
                    spec.length
                ),
            ));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".new")
            .tempfile_in(layer_dir)
            .map_err(|e| Error::io("create a temp file in", layer_dir, e))?;
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0u64;
        let phase = "extract layers";
        let tmp_path = tmp.path().to_path_buf();
        let mut file = crate::fsutil::WritebackFile::new(tmp.as_file_mut());
        loop {
            let n = entry.read(&mut buf).map_err(|e| tar_err(source, e))?;
            if n == 0 {
                break;
            }
            got += n as u64;
            hasher.update(&buf[..n])?;
            file.write_all(&buf[..n])
                .map_err(|e| Error::io("write", &tmp_path, e))?;
            if !shared.report(phase, got, spec.length) {
                return Err(Error::new(
                    ErrorKind::Cancelled,
                    "install cancelled; nothing was changed",
                ));
            }
        }
        let (digest, sha512) = hasher.finish()?;
        if got != spec.length || !eq_hex(&digest, &spec.sha512_256) {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "layer {name} from {source} has sha512_256 {digest} ({got} bytes), but images.json says {} ({} bytes); \
                     the release is corrupt or tampered: nothing was installed",
                    spec.sha512_256, spec.length
                ),
            ));
        }
        let handle = tmp
            .as_file()
            .try_clone()
            .map_err(|e| Error::io("fsync", tmp.path(), e))?;
        // A syncer that stopped has failed: its error is returned once extraction ends.
        let _ = sync.send((handle, tmp.path().to_path_buf()));
        out.push((
            spec.clone(),
            Ready {
                file: tmp,
                sha512: sha512.unwrap_or_default(),
            },
        ));
    }
    let missing: Vec<&String> = wanted.iter().filter(|n| !seen.contains(*n)).collect();
    if !missing.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("{source} lacks layers {missing:?} that images.json lists; the release is incomplete"),
        ));
    }
    Ok(out)
}

fn bad_entry(source: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidData,
        format!("{source} has {what}; refusing the archive: the release is corrupt or malicious"),
    )
}

fn tar_err(source: &str, e: std::io::Error) -> Error {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        return Error::new(inner.kind(), inner.message().to_string());
    }
    Error::new(
        ErrorKind::InvalidData,
        format!("{source} is not a valid layers archive: {e}"),
    )
}

/// A reader that fails with `TooLarge` past `left` bytes (a gzip bomb inside the tar stream).
struct CappedReader<R> {
    inner: R,
    left: u64,
    source: String,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{} decompresses to more than its layers can take; refusing it as a possible gzip bomb",
                    self.source
                ),
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub(super) fn persist(tmp: NamedTempFile, dest: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("set permissions on", tmp.path(), e))?;
    // rename(2) replaces whatever is at dest — including a planted symlink — without following it.
    tmp.persist(dest)
        .map_err(|e| Error::io("rename into place", dest, e.error))?;
    Ok(())
}

/// `data` in a new, fsynced temp file in `dir` (named like the decompressed `stem`), with its
/// sha512 when `report_sha512`.
pub(super) fn ready_from_bytes(dir: &Path, stem: &str, data: &[u8], report_sha512: bool) -> Result<Ready> {
    let mut out = tempfile::Builder::new()
        .prefix(&format!(".{stem}."))
        .suffix(".new")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temp file in", dir, e))?;
    out.as_file_mut()
        .write_all(data)
        .and_then(|()| out.as_file().sync_all())
        .map_err(|e| Error::io("write", out.path(), e))?;
    let sha512 = if report_sha512 {
        crate::model::checksums::sha512_hex(data)
    } else {
        String::new()
    };
    Ok(Ready { file: out, sha512 })
}
