//! Staging: download and verify every component of a release into temp files beside their
//! destinations (docs/verification.md#order-of-checks). Nothing visible changes here.
//!
//! [`stage`] does everything that can fail for outside reasons (network, tampering, bad
//! archives): it fetches `checksums.sha512` (and verifies its signature when a key is
//! configured), then every component in parallel, each streamed into an exclusive temp file in
//! its destination directory, hashed, capped, decompressed with a cap, and layers extracted by
//! exact expected name and checked against `images.json`. [`Staged::commit`] renames the
//! verified files into place; the switch ([`crate::host::switch`]) then moves the symlinks. A
//! failure leaves the host as it was; dropping a `Staged` removes its temp files and any
//! directory it created.

pub mod external;
mod transfer;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tempfile::NamedTempFile;

use crate::error::{Error, ErrorKind, Result};
use crate::host::layout::{self as hostlayout, CreatedDirs, HostLayout};
use crate::model::layers::{self, LayerSpec};
use crate::model::release::{self, CHECKSUMS_ASSET, COMPONENTS, LAYERS_ASSET, Role};
use crate::model::signature::TrustedKey;
use crate::model::version::Version;
use crate::remote::fetch::Progress;
use crate::remote::ghrelease::{Asset, Client, Release};
pub(crate) use transfer::{asset, fetch_small};
pub use transfer::{check_release_is, fetch_checksums};
use transfer::{fetch_and_gunzip, fetch_layers, persist, ready_from_bytes};

/// Largest accepted `checksums.sha512` or signature.
const MAX_SMALL_ASSET: u64 = 1 << 20;
/// Default cap on a decompressed binary.
pub const DEFAULT_MAX_BINARY: u64 = 1 << 30;
/// Cap on a decompressed manifest.
const MAX_MANIFEST: u64 = 64 << 20;

/// A file the transaction wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrittenFile {
    /// Where it is.
    pub path: PathBuf,
    /// Lowercase hex sha512 of its content (empty for a symlink).
    pub sha512: String,
    /// What it is, so callers never guess from the name.
    pub kind: FileKind,
}

/// The kinds of file an install writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A versioned binary, `<bin>/<name>.<version>`.
    Binary,
    /// An unversioned symlink, `<bin>/<name>` → `<name>.<version>`.
    Link,
    /// A manifest in the config dir: `images.<version>.json`, `bootstrap-manifest.json`.
    Manifest,
    /// An image layer, `<layer-dir>/<id>.squashfs`.
    Layer,
}

/// The components of a release, downloaded and verified, waiting in temp files.
#[derive(Debug)]
pub struct Staged {
    /// The release's version.
    pub version: Version,
    /// Whether the checksums' signature was verified.
    pub signature_verified: bool,
    binaries: Vec<(&'static str, Ready)>,
    /// `images.<ver>.json` (rewritten for the host), staged only with [`Parts::config`].
    images: Option<Ready>,
    bootstrap: Option<NamedTempFile>,
    parts: Parts,
    layers: Vec<(LayerSpec, Ready)>,
    /// Layers that were already present and valid.
    pub skipped_layers: Vec<String>,
    /// Every layer the release needs.
    pub all_layers: Vec<String>,
    dirs: CreatedDirs,
    layout: HostLayout,
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
    // A bad mirror is refused whatever the release's layer source, before anything is fetched.
    let mirror = limits
        .registry_mirror
        .as_deref()
        .map(external::parse_mirror)
        .transpose()?;
    let (sums, signature_verified) =
        transfer::fetch_checksums_expecting(client, rel, version, key, limits.checksums_sha512.as_deref())?;
    // Plan first: every component must be in the release and in checksums.sha512 before any
    // byte of it is downloaded. A component is needed when it is required, when the (signed)
    // checksums list it, or when the installed version has it: the API's asset list alone never
    // decides that a component is left out (a hidden flynn-init would leave it on the old version).
    let installed = hostlayout::linked_version(&layout.bin_dir, "flynn-host");
    let mut plan: Vec<(&'static str, &Asset, &str)> = Vec::new();
    let parts = limits.parts;
    for c in &COMPONENTS {
        let wanted = match c.role {
            Role::OtherPlatform => false,
            Role::HostBinary(_) => parts.binaries,
            // images.json.gz is fetched below, whenever config or layers are asked for.
            Role::Images | Role::BootstrapManifest => parts.config,
        };
        if !wanted {
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
    if parts.binaries {
        dirs.ensure(&layout.bin_dir)?;
    }
    // The lock lives in the config dir, and images.json is staged there whenever it is fetched.
    dirs.ensure(&layout.config_dir)?;

    let shared = StageCtx {
        inner: Mutex::new(progress),
        cancelled: AtomicBool::new(false),
        report_sha512: limits.report_sha512,
    };

    // images.json first: it says which layers the release needs. It is verified as published
    // (checksums.sha512 names the compressed asset) and installed rewritten: every artifact's
    // layer_url_template points at this host's layer dir (docs/host-layout.md#images-manifest).
    let (images, specs, images_source) = if parts.config || parts.layers {
        let images_asset = rel
            .asset("images.json.gz")
            .ok_or_else(|| asset(rel, "images.json.gz").unwrap_err())?;
        check_announced_size(rel, images_asset, MAX_MANIFEST)?;
        check_free_space(&[(&layout.config_dir, images_asset.size.saturating_mul(3))])?;
        let fetched = fetch_and_gunzip(
            client,
            images_asset,
            sums.require("images.json.gz", CHECKSUMS_ASSET)?,
            &layout.config_dir,
            MAX_MANIFEST,
            &shared,
        )?;
        let source = &images_asset.browser_download_url;
        let images_bytes = crate::fsutil::read_regular_required(fetched.file.path(), MAX_MANIFEST)?;
        let specs = layers::layers_from_images_json(&images_bytes, source)?;
        let rewritten =
            crate::model::images::with_layer_url_template(&images_bytes, &layout.runtime_layer_dir, source)?;
        let images = match parts.config {
            false => None,
            true if rewritten == images_bytes => Some(fetched),
            true => Some(ready_from_bytes(
                &layout.config_dir,
                "images.json",
                &rewritten,
                shared.report_sha512,
            )?),
        };
        // Where the layers come from is decided by what the signed release says (checksums.sha512
        // and the verified images.json), before any layer is fetched.
        let layer_source = if parts.layers && !specs.is_empty() {
            Some(external::decide(&sums, &images_bytes, source)?)
        } else {
            None
        };
        (images, specs, layer_source)
    } else {
        (None, Vec::new(), None)
    };
    let mut skipped_layers = Vec::new();
    let mut needed: Vec<LayerSpec> = Vec::new();
    for s in specs.iter().filter(|_| parts.layers) {
        if layers::layer_file_is_valid(&layout.layer_file(&s.id), s) {
            skipped_layers.push(s.id.clone());
        } else {
            needed.push(s.clone());
        }
    }
    let remote_source = images_source.filter(|s| *s != external::LayerSource::Archive);
    let layers_plan = if needed.is_empty() || remote_source.is_some() {
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
    let remote_plan = match remote_source {
        Some(src) if !needed.is_empty() => {
            dirs.ensure(&layout.layer_dir)?;
            space.push((layout.layer_dir.as_path(), needed.iter().map(|s| s.length).sum()));
            Some(src)
        }
        _ => None,
    };
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
        let layer_handle = layers_plan
            .map(|(a, sha)| {
                let needed = &needed;
                let shared = &shared;
                s.spawn(move || fetch_layers(client, a, sha, &layout.layer_dir, needed, shared))
            })
            .or_else(|| {
                remote_plan.as_ref().map(|src| {
                    let needed = &needed;
                    let shared = &shared;
                    let access = external::RemoteAccess {
                        mirror: mirror.as_ref(),
                        options: client.options(),
                    };
                    s.spawn(move || external::fetch_remote_layers(src, &access, &layout.layer_dir, needed, shared))
                })
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
                    // A layer failure cancels the other downloads: report it, not their
                    // cancellation.
                    match &first_err {
                        Some(f) if f.kind() == ErrorKind::Cancelled && e.kind() != ErrorKind::Cancelled => {
                            first_err = Some(e)
                        }
                        Some(_) => {}
                        None => first_err = Some(e),
                    }
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
    if parts.config && bootstrap.is_none() {
        return Err(asset(rel, "bootstrap-manifest.json.gz").unwrap_err());
    }
    if parts.binaries && !binaries.iter().any(|(n, _)| *n == "flynn-host") {
        return Err(asset(rel, "flynn-host-linux-amd64.gz").unwrap_err());
    }
    Ok(Staged {
        version: version.clone(),
        signature_verified,
        binaries,
        images,
        bootstrap: bootstrap.map(|b| b.file),
        parts,
        layers: staged_layers,
        skipped_layers,
        all_layers: specs.iter().filter(|_| parts.layers).map(|s| s.id.clone()).collect(),
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
                     {} MiB are free; free some space and run again: nothing was downloaded",
                    dir.display(),
                    need.div_ceil(1 << 20),
                    free >> 20
                ),
            )
            .with_hint(crate::Hint::ChooseRoot));
        }
    }
    Ok(())
}

/// Which parts of a release a run downloads, verifies and switches (Flynn's downloader fetches
/// them separately: `DownloadBinaries`, `DownloadConfig`, layers). Default: all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// The host binaries (`<name>.<ver>`) and their symlinks.
    pub binaries: bool,
    /// `bootstrap-manifest.json` and `images.<ver>.json`.
    pub config: bool,
    /// The layers `images.json` references (images.json.gz is fetched and verified to know them,
    /// and written only with `config`).
    pub layers: bool,
}

impl Parts {
    /// Everything: what an install always takes.
    pub const ALL: Parts = Parts {
        binaries: true,
        config: true,
        layers: true,
    };
    /// The names the requests use, in order.
    pub const NAMES: [&'static str; 3] = ["binaries", "config", "layers"];

    /// The parts `names` select. `InvalidArgument` naming `field` for an empty list or an unknown
    /// name.
    pub fn from_names<S: AsRef<str>>(names: &[S], field: &str) -> Result<Parts> {
        if names.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{field} is an empty list; leave it out for everything or name some of {}",
                    Parts::NAMES.join(", ")
                ),
            ));
        }
        let mut p = Parts {
            binaries: false,
            config: false,
            layers: false,
        };
        for n in names {
            match n.as_ref() {
                "binaries" => p.binaries = true,
                "config" => p.config = true,
                "layers" => p.layers = true,
                other => {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "{field} names {:?}, which is not a part of a release; use {}",
                            crate::error::escape(other),
                            Parts::NAMES.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(p)
    }
}

impl Default for Parts {
    fn default() -> Parts {
        Parts::ALL
    }
}

/// How [`stage`] bounds and reports its work.
#[derive(Debug, Clone)]
pub struct StageLimits {
    /// Cap on a decompressed binary.
    pub max_binary: u64,
    /// Hash every decompressed file with sha512 for the report (a third of an install's CPU time;
    /// verification does not need it: the compressed assets are verified).
    pub report_sha512: bool,
    /// Which parts to stage (default all).
    pub parts: Parts,
    /// The sha512 (lowercase hex) `checksums.sha512` must have: the one a signed channel pointer
    /// binds (docs/channels.md). Checked before any component is downloaded.
    pub checksums_sha512: Option<String>,
    /// A pull-through cache (`http://127.0.0.1:PORT`, or https) to pull a registry release's
    /// manifest and layers from, by digest, instead of the registry images.json names
    /// (docs/layers.md#a-registry-mirror).
    pub registry_mirror: Option<String>,
}

impl Default for StageLimits {
    fn default() -> StageLimits {
        StageLimits {
            max_binary: DEFAULT_MAX_BINARY,
            report_sha512: true,
            parts: Parts::ALL,
            checksums_sha512: None,
            registry_mirror: None,
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

impl Staged {
    /// Renames every verified file into place: versioned binaries (0755), `images.<ver>.json`,
    /// new layers. Nothing the running version uses changes. Returns what was written and which
    /// of those paths did not exist before (so an undo can remove exactly those).
    pub fn commit_files(&mut self) -> Result<(Vec<WrittenFile>, Vec<PathBuf>)> {
        let ver = self.version.as_str().to_string();
        let mut moves: Vec<(Ready, PathBuf, u32, FileKind)> = Vec::new();
        for (spec, tmp) in self.layers.drain(..) {
            moves.push((tmp, self.layout.layer_file(&spec.id), 0o644, FileKind::Layer));
        }
        for (name, tmp) in self.binaries.drain(..) {
            moves.push((tmp, self.layout.versioned_binary(name, &ver), 0o755, FileKind::Binary));
        }
        if let Some(images) = self.images.take() {
            moves.push((images, self.layout.images_file(&ver), 0o644, FileKind::Manifest));
        }
        let mut written = Vec::new();
        let mut created = Vec::new();
        for (Ready { file, sha512 }, dest, mode, kind) in moves {
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
            written.push(WrittenFile {
                path: dest,
                sha512,
                kind,
            });
        }
        if self.parts.binaries {
            crate::fsutil::fsync_dir(&self.layout.bin_dir)?;
        }
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

    /// The new bootstrap manifest's text; `None` when the run does not stage the config.
    pub fn bootstrap_text(&self) -> Result<Option<String>> {
        let Some(b) = &self.bootstrap else { return Ok(None) };
        let data = std::fs::read(b.path()).map_err(|e| Error::io("read", b.path(), e))?;
        String::from_utf8(data)
            .map(Some)
            .map_err(|_| Error::new(ErrorKind::InvalidData, "bootstrap-manifest.json is not UTF-8 text"))
    }

    /// Which parts this run staged.
    pub fn parts(&self) -> Parts {
        self.parts
    }
}
