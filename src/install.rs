//! Downloading, verifying and laying out a release on a host; writing the receipt (docs/verification.md#order-of-checks).
//!
//! The transaction has two halves. [`stage`] does everything that can fail for outside reasons
//! (network, tampering, bad archives): it fetches `checksums.sha512` (and verifies its signature
//! when a key is configured), then every component in parallel, each streamed into an exclusive
//! temp file in its destination directory, hashed, capped, decompressed with a cap, and layers
//! extracted by exact expected name and checked against `images.json`. Nothing visible changes.
//! [`Staged::commit`] then renames the verified files into place, and [`Staged::switch`] moves the
//! symlinks (recording the previous state for rollback). A failure in `stage` leaves the host as
//! it was; dropping a `Staged` removes its temp files and any directory it created.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha512_256};
use tempfile::NamedTempFile;

use crate::checksums::{Checksums, eq_hex, hex};
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{self, Progress};
use crate::ghrelease::{Asset, Channel, Client, Release};
use crate::hostlayout::{self, CreatedDirs, HostLayout};
use crate::installsource::{InstallSource, Source};
use crate::layers::{self, LayerSpec};
use crate::release::{self, CHECKSUMS_ASSET, COMPONENTS, LAYERS_ASSET, Role};
use crate::signature::{self, SIGNATURE_ASSET, TrustedKey};
use crate::transaction::{self, ApplyOptions};
use crate::version::{Scheme, Version};

/// Largest accepted `checksums.sha512` or signature.
const MAX_SMALL_ASSET: u64 = 1 << 20;
/// Default cap on a decompressed binary.
pub const DEFAULT_MAX_BINARY: u64 = 1 << 30;
/// Cap on a decompressed manifest.
const MAX_MANIFEST: u64 = 64 << 20;

/// Which release to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Exactly this tag.
    Version(String),
    /// The newest release of a channel, by version order.
    Channel(Channel),
}

/// A file the transaction wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WrittenFile {
    /// Where it is.
    pub path: PathBuf,
    /// Lowercase hex sha512 of its content.
    pub sha512: String,
}

/// The components of a release, downloaded and verified, waiting in temp files.
#[derive(Debug)]
pub struct Staged {
    /// The release's version.
    pub version: Version,
    /// Whether the checksums' signature was verified.
    pub signature_verified: bool,
    binaries: Vec<(&'static str, Ready)>,
    images: Ready,
    bootstrap: NamedTempFile,
    layers: Vec<(LayerSpec, Ready)>,
    /// Layers that were already present and valid.
    pub skipped_layers: Vec<String>,
    /// Every layer the release needs.
    pub all_layers: Vec<String>,
    dirs: CreatedDirs,
    layout: HostLayout,
}

/// Resolves `target` to a release and its version: exactly the named tag (never a draft), or the
/// newest release of a channel by version order, restricted to `scheme` when given (a channel
/// never switches the host's version scheme on its own). The one resolution path of install,
/// download and update.
pub fn resolve(client: &Client, target: &Target, scheme: Option<Scheme>) -> Result<(Release, Version)> {
    match target {
        Target::Version(v) => {
            let version =
                Version::parse(v).map_err(|e| Error::new(ErrorKind::InvalidArgument, e.message().to_string()))?;
            let rel = client.release_by_tag(version.as_str())?;
            check_release_is(client, &rel, &version)?;
            if rel.draft {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("release {v} is a draft; publish it first"),
                ));
            }
            Ok((rel, version))
        }
        Target::Channel(c) => client.channel_release(*c, scheme),
    }
}

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

fn asset<'r>(rel: &'r Release, name: &str) -> Result<&'r Asset> {
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
fn fetch_small(client: &Client, a: &Asset) -> Result<Vec<u8>> {
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

/// What the download threads of one stage share: the progress callback (a `false` from it stops
/// all of them) and whether to hash the decompressed files for the report.
struct StageCtx<'p> {
    inner: Mutex<Progress<'p>>,
    cancelled: AtomicBool,
    report_sha512: bool,
}

impl StageCtx<'_> {
    fn report(&self, phase: &str, done: u64, total: u64) -> bool {
        if self.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        // Decide and record under the lock, so no thread calls the callback again once it has
        // said stop.
        let Ok(mut p) = self.inner.lock() else { return false };
        if self.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        let keep = (*p)(phase, done, total);
        if !keep {
            self.cancelled.store(true, Ordering::Relaxed);
        }
        keep
    }
}

/// Downloads and verifies every component of `rel` for `layout` (see the module docs).
pub fn stage(
    client: &Client,
    layout: &HostLayout,
    rel: &Release,
    version: &Version,
    key: Option<&TrustedKey>,
    limits: StageLimits,
    progress: Progress<'_>,
) -> Result<Staged> {
    let max_binary = limits.max_binary;
    let (sums, signature_verified) = fetch_checksums(client, rel, version, key)?;
    // Plan first: every component must be in the release and in checksums.sha512 before any
    // byte of it is downloaded. A component is needed when it is required, when the (signed)
    // checksums list it, or when the installed version has it: the API's asset list alone never
    // decides that a component is left out (a hidden flynn-init would leave it on the old version).
    let installed = hostlayout::linked_version(&layout.bin_dir, "flynn-host");
    let mut plan: Vec<(&'static str, &Asset, &str)> = Vec::new();
    for c in &COMPONENTS {
        if c.role == Role::OtherPlatform {
            continue;
        }
        let why = if c.required {
            Some("it is required".to_string())
        } else if sums.get(c.asset).is_some() {
            Some(format!("{CHECKSUMS_ASSET} lists it"))
        } else {
            match (c.role, &installed) {
                (Role::HostBinary(n), Some(v)) if layout.versioned_binary(n, v).is_file() => {
                    Some(format!("the installed {v} has {n}"))
                }
                _ => None,
            }
        };
        match (rel.asset(c.asset), why) {
            (Some(a), _) => {
                let cap = match c.role {
                    Role::HostBinary(_) => max_binary,
                    _ => MAX_MANIFEST,
                };
                check_announced_size(rel, a, cap)?;
                plan.push((c.asset, a, sums.require(c.asset, CHECKSUMS_ASSET)?));
            }
            (None, Some(why)) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "release {} of {} offers no {} but {why}; refusing a partial install (the release is \
                         incomplete or the API is hiding an asset): nothing was changed",
                        rel.tag_name,
                        client.repository(),
                        c.asset
                    ),
                ));
            }
            (None, None) => {}
        }
    }
    let mut dirs = CreatedDirs::default();
    dirs.ensure(&layout.bin_dir)?;
    dirs.ensure(&layout.config_dir)?;

    let shared = StageCtx {
        inner: Mutex::new(progress),
        cancelled: AtomicBool::new(false),
        report_sha512: limits.report_sha512,
    };

    // images.json first: it says which layers the release needs.
    let images_asset = rel
        .asset("images.json.gz")
        .ok_or_else(|| asset(rel, "images.json.gz").unwrap_err())?;
    check_announced_size(rel, images_asset, MAX_MANIFEST)?;
    check_free_space(&[(&layout.config_dir, images_asset.size.saturating_mul(2))])?;
    let images = fetch_and_gunzip(
        client,
        images_asset,
        sums.require("images.json.gz", CHECKSUMS_ASSET)?,
        &layout.config_dir,
        MAX_MANIFEST,
        &shared,
    )?;
    let images_bytes = crate::fsutil::read_regular_required(images.file.path(), MAX_MANIFEST)?;
    let specs = layers::layers_from_images_json(&images_bytes, &images_asset.browser_download_url)?;
    let mut skipped_layers = Vec::new();
    let mut needed: Vec<LayerSpec> = Vec::new();
    for s in &specs {
        if layers::layer_file_is_valid(&layout.layer_file(&s.id), s) {
            skipped_layers.push(s.id.clone());
        } else {
            needed.push(s.clone());
        }
    }
    let layers_plan = if needed.is_empty() {
        None
    } else {
        let a = asset(rel, LAYERS_ASSET)?;
        // The archive holds every layer of the release (tar headers and gzip framing add a
        // little): anything announced beyond that is refused before a byte is fetched.
        let tar_size: u64 = specs.iter().map(|s| s.length.div_ceil(512) * 512 + 512).sum::<u64>() + 1024;
        check_announced_size(rel, a, tar_size + tar_size / 64 + (1 << 20))?;
        let sha = sums.require(LAYERS_ASSET, CHECKSUMS_ASSET)?;
        dirs.ensure(&layout.layer_dir)?;
        Some((a, sha))
    };
    // Free space, before any large download starts: each compressed asset, what it unpacks to
    // (exact for layers; for binaries and manifests at most four times the compressed size, never
    // more than their cap), on the file system it goes to.
    let mut space: Vec<(&Path, u64)> = Vec::new();
    for (name, a, _) in &plan {
        let (dir, cap) = match release::component(name).map(|c| c.role) {
            Some(Role::HostBinary(_)) => (layout.bin_dir.as_path(), max_binary),
            _ => (layout.config_dir.as_path(), MAX_MANIFEST),
        };
        space.push((dir, a.size.saturating_add(a.size.saturating_mul(4).min(cap))));
    }
    if let Some((a, _)) = layers_plan {
        let unpacked: u64 = needed.iter().map(|s| s.length).sum();
        space.push((layout.layer_dir.as_path(), a.size.saturating_add(unpacked)));
    }
    check_free_space(&space)?;

    let result = std::thread::scope(|s| -> Result<_> {
        let mut handles = Vec::new();
        for (name, a, sha) in &plan {
            let comp = release::component(name);
            let dest = match comp.map(|c| c.role) {
                Some(Role::HostBinary(_)) => (&layout.bin_dir, max_binary),
                Some(Role::BootstrapManifest) => (&layout.config_dir, MAX_MANIFEST),
                _ => continue,
            };
            let shared = &shared;
            handles.push((
                *name,
                s.spawn(move || fetch_and_gunzip(client, a, sha, dest.0, dest.1, shared)),
            ));
        }
        let layer_handle = layers_plan.map(|(a, sha)| {
            let needed = &needed;
            let shared = &shared;
            s.spawn(move || fetch_layers(client, a, sha, &layout.layer_dir, needed, shared))
        });
        let mut binaries = Vec::new();
        let mut bootstrap = None;
        let mut first_err: Option<Error> = None;
        for (name, h) in handles {
            match h
                .join()
                .unwrap_or_else(|_| Err(Error::new(ErrorKind::Panic, format!("download of {name} panicked"))))
            {
                Ok(tmp) => match release::component(name).map(|c| c.role) {
                    Some(Role::HostBinary(bin)) => binaries.push((bin, tmp)),
                    _ => bootstrap = Some(tmp),
                },
                Err(e) => {
                    shared.cancelled.store(true, Ordering::Relaxed);
                    first_err.get_or_insert(e);
                }
            }
        }
        let staged_layers = match layer_handle {
            Some(h) => match h
                .join()
                .unwrap_or_else(|_| Err(Error::new(ErrorKind::Panic, "layer extraction panicked")))
            {
                Ok(l) => l,
                Err(e) => {
                    first_err.get_or_insert(e);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok((binaries, bootstrap, staged_layers))
    });
    let (binaries, bootstrap, staged_layers) = result?;
    let bootstrap = bootstrap.ok_or_else(|| asset(rel, "bootstrap-manifest.json.gz").unwrap_err())?;
    if !binaries.iter().any(|(n, _)| *n == "flynn-host") {
        return Err(asset(rel, "flynn-host-linux-amd64.gz").unwrap_err());
    }
    Ok(Staged {
        version: version.clone(),
        signature_verified,
        binaries,
        images,
        bootstrap: bootstrap.file,
        layers: staged_layers,
        skipped_layers,
        all_layers: specs.iter().map(|s| s.id.clone()).collect(),
        dirs,
        layout: layout.clone(),
    })
}

/// Refuses an asset whose announced size is above `cap` (the most an asset of its kind can be),
/// before anything of it is downloaded: an API announcing a 50 GiB flynn-host would otherwise fill
/// the disk with whatever it sends.
fn check_announced_size(rel: &Release, a: &Asset, cap: u64) -> Result<()> {
    if a.size > cap {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "release {} announces {} as {} bytes, more than the {cap} bytes an asset of its kind may be; \
                 refusing it before downloading anything (the release is wrong or the API is hostile)",
                rel.tag_name, a.name, a.size
            ),
        ));
    }
    Ok(())
}

/// The bytes available to root-less writers on the file system of `dir` (or of its nearest
/// existing ancestor, for a directory the run has yet to create), and that file system's id.
fn free_space(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if let Ok(m) = std::fs::metadata(d) {
            let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{} contains a NUL byte", d.display()),
                )
            })?;
            // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
                return Err(Error::io(
                    "inspect the file system of",
                    d,
                    std::io::Error::last_os_error(),
                ));
            }
            return Ok(((st.f_bavail as u64).saturating_mul(st.f_frsize as u64), m.dev()));
        }
        cur = d.parent();
    }
    Err(Error::new(
        ErrorKind::Io,
        format!("{} has no existing ancestor", dir.display()),
    ))
}

/// Refuses to start when the file systems of `needs` (directory, bytes) lack the space.
fn check_free_space(needs: &[(&Path, u64)]) -> Result<()> {
    let mut per_fs: Vec<(u64, u64, u64, &Path)> = Vec::new(); // (dev, need, free, a dir on it)
    for (dir, need) in needs {
        let (free, dev) = free_space(dir)?;
        match per_fs.iter_mut().find(|(d, ..)| *d == dev) {
            Some(e) => e.1 = e.1.saturating_add(*need),
            None => per_fs.push((dev, *need, free, dir)),
        }
    }
    for (_, need, free, dir) in per_fs {
        if need > free {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "not enough free space for this release on the file system of {}: it needs about {} MiB, \
                     {} MiB are free; free some space (or choose another --root) and run again: nothing was downloaded",
                    dir.display(),
                    need.div_ceil(1 << 20),
                    free >> 20
                ),
            ));
        }
    }
    Ok(())
}

/// How [`stage`] bounds and reports its work.
#[derive(Debug, Clone, Copy)]
pub struct StageLimits {
    /// Cap on a decompressed binary.
    pub max_binary: u64,
    /// Hash every decompressed file with sha512 for the report (a third of an install's CPU time;
    /// verification does not need it: the compressed assets are verified).
    pub report_sha512: bool,
}

impl Default for StageLimits {
    fn default() -> StageLimits {
        StageLimits {
            max_binary: DEFAULT_MAX_BINARY,
            report_sha512: true,
        }
    }
}

/// A verified, decompressed file waiting in a temp file, with the sha512 of its content when the
/// report asks for it (hashed while it was written, so committing does not read it again).
#[derive(Debug)]
struct Ready {
    file: NamedTempFile,
    sha512: String,
}

/// A writer that hashes with sha512 what it writes.
struct HashingWriter<'a> {
    inner: &'a mut std::fs::File,
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

/// Downloads `a` (verified against `sha512`) beside `dir` and decompresses it into a new temp file
/// in `dir`, capped at `cap` bytes. The compressed temp file is removed either way.
fn fetch_and_gunzip(
    client: &Client,
    a: &Asset,
    sha512: &str,
    dir: &Path,
    cap: u64,
    shared: &StageCtx<'_>,
) -> Result<Ready> {
    let mut cb = |p: &str, d: u64, t: u64| shared.report(p, d, t);
    let fetched = fetch::fetch_asset(client, a, dir, sha512, &mut cb)?;
    let input = fetched.reopen()?;
    let stem = a.name.trim_end_matches(".gz");
    let mut out = tempfile::Builder::new()
        .prefix(&format!(".{stem}."))
        .suffix(".new")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temp file in", dir, e))?;
    let mut w = HashingWriter {
        inner: out.as_file_mut(),
        hasher: shared.report_sha512.then(sha2::Sha512::new),
    };
    crate::gz::gunzip_capped(input, &mut w, cap, &a.name)?;
    let sha512 = w.hasher.map(|h| hex(&h.finalize())).unwrap_or_default();
    out.as_file()
        .sync_all()
        .map_err(|e| Error::io("fsync", out.path(), e))?;
    drop(fetched);
    Ok(Ready { file: out, sha512 })
}

/// Downloads `layers.tar.gz` and extracts exactly the `needed` layers into temp files in
/// `layer_dir`, each checked against its length and sha512/256. Every other kind of entry
/// (links, devices, directories, absolute or `..` paths, unknown or repeated names) is refused.
fn fetch_layers(
    client: &Client,
    a: &Asset,
    sha512: &str,
    layer_dir: &Path,
    needed: &[LayerSpec],
    shared: &StageCtx<'_>,
) -> Result<Vec<(LayerSpec, Ready)>> {
    let mut cb = |p: &str, d: u64, t: u64| shared.report(p, d, t);
    let fetched = fetch::fetch_asset(client, a, layer_dir, sha512, &mut cb)?;
    let source = a.browser_download_url.as_str();
    // The archive holds every layer of the release; cap the decompressed stream at what those
    // layers can take (plus tar headers and padding).
    let all_cap: u64 = needed.iter().map(|s| s.length + 1024).sum::<u64>();
    let input = fetched.reopen()?;
    let decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(256 << 10, input));
    // The archive may also hold layers we skip; allow for them with a generous fixed margin, and
    // rely on the per-entry size checks for the rest.
    let capped = CappedReader {
        inner: decoder,
        left: all_cap.saturating_add(a.size.saturating_mul(4)).saturating_add(1 << 20),
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
        let mut h = Sha512_256::new();
        let mut h512 = shared.report_sha512.then(sha2::Sha512::new);
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0u64;
        let phase = "extract layers";
        loop {
            let n = entry.read(&mut buf).map_err(|e| tar_err(source, e))?;
            if n == 0 {
                break;
            }
            got += n as u64;
            h.update(&buf[..n]);
            if let Some(h) = &mut h512 {
                h.update(&buf[..n]);
            }
            tmp.write_all(&buf[..n])
                .map_err(|e| Error::io("write", tmp.path(), e))?;
            if !shared.report(phase, got, spec.length) {
                return Err(Error::new(
                    ErrorKind::Cancelled,
                    "install cancelled; nothing was changed",
                ));
            }
        }
        let digest = hex(&h.finalize());
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
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io("fsync", tmp.path(), e))?;
        out.push((
            spec.clone(),
            Ready {
                file: tmp,
                sha512: h512.map(|h| hex(&h.finalize())).unwrap_or_default(),
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

impl Staged {
    /// Renames every verified file into place: versioned binaries (0755), `images.<ver>.json`,
    /// new layers. Nothing the running version uses changes. Returns what was written and which
    /// of those paths did not exist before (so an undo can remove exactly those).
    pub fn commit_files(&mut self) -> Result<(Vec<WrittenFile>, Vec<PathBuf>)> {
        let ver = self.version.as_str().to_string();
        let mut moves: Vec<(Ready, PathBuf, u32)> = Vec::new();
        for (spec, tmp) in self.layers.drain(..) {
            moves.push((tmp, self.layout.layer_file(&spec.id), 0o644));
        }
        for (name, tmp) in self.binaries.drain(..) {
            moves.push((tmp, self.layout.versioned_binary(name, &ver), 0o755));
        }
        let placeholder = Ready {
            file: placeholder(&self.layout.config_dir)?,
            sha512: String::new(),
        };
        let images = std::mem::replace(&mut self.images, placeholder);
        moves.push((images, self.layout.images_file(&ver), 0o644));
        let mut written = Vec::new();
        let mut created = Vec::new();
        for (Ready { file, sha512 }, dest, mode) in moves {
            let existed = std::fs::symlink_metadata(&dest).is_ok();
            if let Err(e) = persist(file, &dest, mode) {
                for c in &created {
                    let _ = std::fs::remove_file(c);
                }
                return Err(e);
            }
            if !existed {
                created.push(dest.clone());
            }
            written.push(WrittenFile { path: dest, sha512 });
        }
        crate::fsutil::fsync_dir(&self.layout.bin_dir)?;
        crate::fsutil::fsync_dir(&self.layout.config_dir)?;
        crate::fsutil::fsync_dir(&self.layout.layer_dir)
            .or_else(|e| if self.layout.layer_dir.exists() { Err(e) } else { Ok(()) })?;
        Ok((written, created))
    }

    /// Keeps the directories this run created: call once the whole run (switch and receipt)
    /// succeeded. Until then a failure removes them again, so a failed fresh install leaves the
    /// root exactly as it was, directories included.
    pub fn keep_dirs(&mut self) {
        self.dirs.commit();
    }

    /// The new bootstrap manifest's text.
    pub fn bootstrap_text(&self) -> Result<String> {
        let data = std::fs::read(self.bootstrap.path()).map_err(|e| Error::io("read", self.bootstrap.path(), e))?;
        String::from_utf8(data)
            .map_err(|_| Error::new(ErrorKind::InvalidData, "bootstrap-manifest.json is not UTF-8 text"))
    }
}

/// An empty temp file standing in for a field that was moved out.
fn placeholder(dir: &Path) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".placeholder.")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temp file in", dir, e))
}

fn persist(tmp: NamedTempFile, dest: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("set permissions on", tmp.path(), e))?;
    // rename(2) replaces whatever is at dest — including a planted symlink — without following it.
    tmp.persist(dest)
        .map_err(|e| Error::io("rename into place", dest, e.error))?;
    Ok(())
}

/// Options for [`install`] and [`download`].
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Where to install.
    pub layout: HostLayout,
    /// What to install.
    pub target: Target,
    /// A public key from the flag or environment; the receipt's pinned key applies otherwise.
    pub public_key: Option<String>,
    /// Cap on a decompressed binary.
    pub max_binary: u64,
    /// Report the sha512 of every file written (the `--json` document); off saves a third of the
    /// CPU time. Verification is the same either way.
    pub report_sha512: bool,
    /// Test-only failpoints (ignored in release builds); see [`crate::transaction`].
    #[doc(hidden)]
    pub failpoint: Option<String>,
}

impl InstallOptions {
    /// Defaults for `layout` and `target`.
    pub fn new(layout: HostLayout, target: Target) -> InstallOptions {
        InstallOptions {
            layout,
            target,
            public_key: None,
            max_binary: DEFAULT_MAX_BINARY,
            report_sha512: true,
            failpoint: None,
        }
    }
}

/// What [`install`] or [`download`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstallReport {
    /// `OWNER/NAME`.
    pub repository: String,
    /// The version installed.
    pub version: String,
    /// True when the host already ran this version from this source: nothing was done.
    pub already_installed: bool,
    /// Files written, with their sha512 (symlinks with an empty hash).
    pub files: Vec<WrittenFile>,
    /// Layers already present and valid, not downloaded.
    pub skipped_layers: Vec<String>,
    /// Whether the release's signature was verified.
    pub signature_verified: bool,
    /// The receipt written (install only).
    pub receipt: Option<PathBuf>,
}

/// The command that rotates a host's pinned key (the advice of a key-mismatch refusal).
pub const ROTATE_KEY_ADVICE: &str = "flynnrel source set --pin-public-key";

/// The key to enforce: the flag/env key, else the receipt's pinned key. A flag key that differs
/// from a pinned one is refused (rotating the pin is an explicit `source set --pin-public-key`).
pub fn effective_key(given: Option<&str>, receipt: Option<&InstallSource>) -> Result<Option<TrustedKey>> {
    let given = given
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(TrustedKey::parse)
        .transpose()?;
    let pinned = receipt
        .and_then(|r| r.public_key.as_deref())
        .filter(|k| !k.is_empty())
        .map(TrustedKey::parse)
        .transpose()?;
    match (given, pinned) {
        (Some(g), Some(p)) if g.to_base64() != p.to_base64() => Err(Error::new(
            ErrorKind::SignatureInvalid,
            format!(
                "the install receipt pins public key {} but {} was given; to rotate the key, change the pin \
                 first with `{ROTATE_KEY_ADVICE} {}`",
                p.to_base64(),
                g.to_base64(),
                g.to_base64()
            ),
        )),
        (Some(g), _) => Ok(Some(g)),
        (None, p) => Ok(p),
    }
}

/// The host as a run sees it once it holds the lock: an interrupted earlier switch finished or
/// undone, then the receipt read. Every decision of install, download, update, rollback and
/// `source set` is made from this, never from a receipt read before the lock was taken (a
/// concurrent run could have changed it meanwhile).
pub struct Locked {
    /// The lock (released on drop) and the directories created for it.
    pub held: Held,
    /// What recovery did.
    pub recovered: transaction::Recovery,
    /// The receipt, if the host has one.
    pub receipt: Option<InstallSource>,
}

/// Locks the config dir, recovers, and loads the receipt: the one order every writer follows.
pub fn lock_and_load(layout: &HostLayout) -> Result<Locked> {
    let held = lock(layout)?;
    let recovered = transaction::recover(layout)?;
    let receipt = InstallSource::load(&layout.config_dir)?;
    Ok(Locked {
        held,
        recovered,
        receipt,
    })
}

/// The version scheme a channel must stay in on this host: the receipt's version's, if it has one.
fn receipt_scheme(receipt: Option<&InstallSource>) -> Option<Scheme> {
    receipt.and_then(|r| crate::policy::seen_versions(r).first().map(Version::scheme))
}

/// Downloads, verifies and lays out a release (binaries, symlinks, manifests, layers) without
/// touching the receipt: Flynn's `flynn-host download`.
pub fn download(client: &Client, opts: &InstallOptions, progress: Progress<'_>) -> Result<InstallReport> {
    let mut locked = lock_and_load(&opts.layout)?;
    let key = effective_key(opts.public_key.as_deref(), locked.receipt.as_ref())?;
    let (rel, version) = resolve(client, &opts.target, receipt_scheme(locked.receipt.as_ref()))?;
    let mut staged = stage(
        client,
        &opts.layout,
        &rel,
        &version,
        key.as_ref(),
        limits(opts),
        progress,
    )?;
    let apply_opts = ApplyOptions {
        failpoint: opts.failpoint.clone(),
        ..ApplyOptions::default()
    };
    let applied = transaction::apply(&mut staged, &opts.layout, &apply_opts, &mut |_| Ok(()))?;
    staged.keep_dirs();
    locked.held.dirs.commit();
    Ok(InstallReport {
        repository: client.repository(),
        version: version.as_str().to_string(),
        already_installed: false,
        files: applied.files,
        skipped_layers: staged.skipped_layers.clone(),
        signature_verified: staged.signature_verified,
        receipt: None,
    })
}

fn limits(opts: &InstallOptions) -> StageLimits {
    StageLimits {
        max_binary: opts.max_binary,
        report_sha512: opts.report_sha512,
    }
}

/// The config-dir lock and the directories created to hold it. Field order matters: the lock
/// (and its file) goes first on drop, so an uncommitted, now empty config dir can be removed.
pub struct Held {
    _lock: hostlayout::ConfigLock,
    /// Directories created for the lock; committed when the run succeeds.
    pub dirs: CreatedDirs,
}

/// Takes the config-dir lock, creating the config dir if needed (kept only if the run commits).
pub fn lock(layout: &HostLayout) -> Result<Held> {
    let mut dirs = CreatedDirs::default();
    dirs.ensure(&layout.config_dir)?;
    let l = hostlayout::ConfigLock::acquire(&layout.config_dir)?;
    Ok(Held { _lock: l, dirs })
}

/// True when the host runs `version` from `repo` as recorded in `receipt`.
pub fn is_installed(layout: &HostLayout, receipt: &InstallSource, repo: &str, version: &str) -> bool {
    receipt.source == Source::Github
        && receipt.repository.eq_ignore_ascii_case(repo)
        && receipt.version == version
        && hostlayout::linked_version(&layout.bin_dir, "flynn-host").as_deref() == Some(version)
        && layout.versioned_binary("flynn-host", version).is_file()
}

/// The receipt after switching to `version` from `client`'s repository: the old receipt's fields
/// (unknown ones included) with source, repository, version, installed_at, api_url updated,
/// `highest_seen_version` raised (never lowered: see [`crate::policy::next_highest_seen`]), the
/// public key pinned when one was used.
pub fn next_receipt(
    old: Option<InstallSource>,
    client: &Client,
    version: &Version,
    key: Option<&TrustedKey>,
) -> InstallSource {
    let repo = client.repository();
    let now = std::time::SystemTime::now();
    let highest = crate::policy::next_highest_seen(old.as_ref(), version);
    let mut r = match old {
        Some(mut r) => {
            r.source = Source::Github;
            r.repository = repo;
            r.version = version.as_str().to_string();
            r.installed_at = humantime::format_rfc3339_seconds(now).to_string();
            r
        }
        None => InstallSource::new_github(&repo, version.as_str(), now),
    };
    r.highest_seen_version = Some(highest);
    r.api_url = Some(client.options().api_url.clone());
    if let Some(k) = key {
        r.public_key = Some(k.to_base64().to_string());
    }
    r
}

/// `flynnrel install`: [`download`] plus the receipt (docs/receipt.md#writing) and `channel.txt`. Re-running the
/// same install is a no-op (`already_installed`). A target below what the host has seen, or of
/// another version scheme, is refused (`DowngradeRefused`): use `update --version V
/// --allow-downgrade` to do that on purpose.
pub fn install(client: &Client, opts: &InstallOptions, progress: Progress<'_>) -> Result<InstallReport> {
    let mut locked = lock_and_load(&opts.layout)?;
    let receipt = locked.receipt.take();
    let key = effective_key(opts.public_key.as_deref(), receipt.as_ref())?;
    let (rel, version) = resolve(client, &opts.target, receipt_scheme(receipt.as_ref()))?;
    let repo = client.repository();
    if let Some(r) = &receipt {
        if is_installed(&opts.layout, r, &repo, version.as_str()) {
            return Ok(InstallReport {
                repository: repo,
                version: version.as_str().to_string(),
                already_installed: true,
                files: Vec::new(),
                skipped_layers: Vec::new(),
                signature_verified: false,
                receipt: Some(crate::installsource::receipt_path(&opts.layout.config_dir)),
            });
        }
        let advice = format!("To install it on purpose run `flynnrel update --version {version} --allow-downgrade`");
        crate::policy::check_not_rolled_back(r, &version, crate::policy::Permission::default(), &advice)?;
    }
    let mut staged = stage(
        client,
        &opts.layout,
        &rel,
        &version,
        key.as_ref(),
        limits(opts),
        progress,
    )?;
    let channel = match &opts.target {
        Target::Channel(c) => c.as_str().to_string(),
        Target::Version(_) => receipt
            .as_ref()
            .and_then(|r| r.channel.clone())
            .unwrap_or_else(|| Channel::Stable.as_str().to_string()),
    };
    let mut new = next_receipt(receipt, client, &version, key.as_ref());
    new.channel = Some(channel.clone());
    let config_dir = opts.layout.config_dir.clone();
    let mut write = |_: Option<&str>| -> Result<()> {
        let channel_file = config_dir.join(hostlayout::CHANNEL_FILE);
        crate::fsutil::atomic_write(&channel_file, format!("{channel}\n").as_bytes(), 0o644)?;
        // transaction::switch puts channel.txt and the receipt back if a later step fails.
        new.save(&config_dir)
    };
    let apply_opts = ApplyOptions {
        failpoint: opts.failpoint.clone(),
        ..ApplyOptions::default()
    };
    let applied = transaction::apply(&mut staged, &opts.layout, &apply_opts, &mut write)?;
    staged.keep_dirs();
    locked.held.dirs.commit();
    Ok(InstallReport {
        repository: repo,
        version: version.as_str().to_string(),
        already_installed: false,
        files: applied.files,
        skipped_layers: staged.skipped_layers.clone(),
        signature_verified: staged.signature_verified,
        receipt: Some(crate::installsource::receipt_path(&opts.layout.config_dir)),
    })
}

/// Downloads the asset `name` of release `tag` into `dest_dir/<name>` (mode 0644), verified
/// against the release's `checksums.sha512` and GitHub's digest. Returns (path, sha512, size).
pub fn download_asset(
    client: &Client,
    tag: &str,
    name: &str,
    dest_dir: &Path,
    progress: Progress<'_>,
) -> Result<(PathBuf, String, u64)> {
    crate::checksums::validate_asset_name(name)?;
    let version = Version::parse(tag).map_err(|e| Error::new(ErrorKind::InvalidArgument, e.message().to_string()))?;
    let rel = client.release_by_tag(tag)?;
    check_release_is(client, &rel, &version)?;
    let a = asset(&rel, name)?;
    let expected = if name == CHECKSUMS_ASSET {
        None
    } else {
        let (sums, _) = fetch_checksums(client, &rel, &version, None)?;
        Some(sums.require(name, CHECKSUMS_ASSET)?.to_string())
    };
    let dest = dest_dir.join(name);
    match expected {
        Some(sha) => {
            let fetched = fetch::fetch_asset(client, a, dest_dir, &sha, progress)?;
            let (sha512, size) = (fetched.sha512.clone(), fetched.size);
            fetched.persist(&dest, 0o644)?;
            Ok((dest, sha512, size))
        }
        None => {
            // The checksums file itself: its integrity comes from the signature, if any.
            let bytes = fetch_small(client, a)?;
            crate::fsutil::atomic_write(&dest, &bytes, 0o644)?;
            Ok((dest, crate::checksums::sha512_hex(&bytes), bytes.len() as u64))
        }
    }
}
