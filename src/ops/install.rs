//! Install and download: resolve a target to a release, stage it, switch to it, and (install
//! only) write the receipt and `channel.txt`.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::host::layout::{self as hostlayout, HostLayout};
use crate::host::lock::lock_and_load;
use crate::host::receipt::{InstallSource, effective_key, is_installed, next_receipt, receipt_scheme};
use crate::host::staging::{
    DEFAULT_MAX_BINARY, Parts, StageLimits, WrittenFile, asset, check_release_is, fetch_checksums, fetch_small, stage,
};
use crate::host::switch::{self, ApplyOptions};
use crate::model::release::CHECKSUMS_ASSET;
use crate::model::signature::TrustedKey;
use crate::model::version::{Scheme, Version};
use crate::ops::channels;
use crate::remote::fetch::{self, Progress};
use crate::remote::ghrelease::channel::FetchedPointer;
use crate::remote::ghrelease::{Channel, Client, Release};

/// Which release to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Exactly this tag.
    Version(String),
    /// The newest release of a channel, by version order.
    Channel(Channel),
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

/// [`resolve`], with a channel read from its signed pointer when `key` is given
/// ([`crate::ops::channels::pointer_for`]); the pointer used is returned too.
pub fn resolve_with_pointer(
    client: &Client,
    target: &Target,
    scheme: Option<Scheme>,
    key: Option<&TrustedKey>,
    receipt: Option<&InstallSource>,
) -> Result<(Release, Version, Option<FetchedPointer>)> {
    if let Target::Channel(c) = target {
        if let Some(f) = channels::pointer_for(client, *c, key, receipt, std::time::SystemTime::now())? {
            let (rel, v) = resolve(client, &Target::Version(f.pointer.version.clone()), None)?;
            return Ok((rel, v, Some(f)));
        }
    }
    let (rel, v) = resolve(client, target, scheme)?;
    Ok((rel, v, None))
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
    /// Which parts of the release to download, verify and switch (default all). Only
    /// [`download`] takes a subset: an install with a receipt is always complete.
    pub parts: Parts,
    /// A pull-through cache for a registry release's layers (docs/layers.md#a-registry-mirror).
    pub registry_mirror: Option<String>,
    /// Test-only failpoints (ignored in release builds); see [`crate::host::switch`].
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
            parts: Parts::ALL,
            registry_mirror: None,
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

/// Downloads, verifies and lays out a release (binaries, symlinks, manifests, layers) without
/// touching the receipt: Flynn's `flynn-host download`.
///
/// The API's ETag cache persists in the host's config dir (docs/host-layout.md#the-etag-cache).
pub fn download(client: &Client, opts: &InstallOptions, progress: Progress<'_>) -> Result<InstallReport> {
    with_host_etag_cache(client, &opts.layout, |client| download_with(client, opts, progress))
}

/// Runs `op` with a client that keeps its ETag cache in `layout`'s config dir, and ends the
/// cache's use by `op`'s outcome ([`Client::finish_etag_cache`]): merged into the file when `op`
/// succeeded, its used entries forgotten when it failed.
pub(crate) fn with_host_etag_cache<T>(
    client: &Client,
    layout: &crate::host::layout::HostLayout,
    op: impl FnOnce(&Client) -> Result<T>,
) -> Result<T> {
    let cached = client.with_etag_cache(crate::remote::ghrelease::etag_cache::path_in(&layout.config_dir))?;
    let result = op(&cached);
    cached.finish_etag_cache(result.is_ok());
    result
}

fn download_with(client: &Client, opts: &InstallOptions, progress: Progress<'_>) -> Result<InstallReport> {
    let mut locked = lock_and_load(&opts.layout)?;
    let key = effective_key(opts.public_key.as_deref(), locked.receipt.as_ref())?;
    let (rel, version, pointer) = resolve_with_pointer(
        client,
        &opts.target,
        receipt_scheme(locked.receipt.as_ref()),
        key.as_ref(),
        locked.receipt.as_ref(),
    )?;
    let mut staged = stage(
        client,
        &opts.layout,
        &rel,
        &version,
        key.as_ref(),
        limits(opts, pointer.as_ref()),
        progress,
    )?;
    let apply_opts = ApplyOptions {
        failpoint: opts.failpoint.clone(),
        ..ApplyOptions::default()
    };
    let applied = switch::apply(&mut staged, &opts.layout, &apply_opts, &mut |_| Ok(()))?;
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

fn limits(opts: &InstallOptions, pointer: Option<&FetchedPointer>) -> StageLimits {
    StageLimits {
        max_binary: opts.max_binary,
        report_sha512: opts.report_sha512,
        parts: opts.parts,
        checksums_sha512: pointer.map(|f| f.pointer.checksums_sha512.clone()),
        registry_mirror: opts.registry_mirror.clone(),
    }
}

/// `flynnrel install`: [`download`] plus the receipt (docs/receipt.md#writing) and `channel.txt`. Re-running the
/// same install is a no-op (`already_installed`). A target below what the host has seen, or of
/// another version scheme, is refused (`DowngradeRefused`): use `update --version V
/// --allow-downgrade` to do that on purpose.
///
/// The API's ETag cache persists in the host's config dir (docs/host-layout.md#the-etag-cache).
pub fn install(client: &Client, opts: &InstallOptions, progress: Progress<'_>) -> Result<InstallReport> {
    with_host_etag_cache(client, &opts.layout, |client| install_with(client, opts, progress))
}

fn install_with(client: &Client, opts: &InstallOptions, progress: Progress<'_>) -> Result<InstallReport> {
    if opts.parts != Parts::ALL {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "parts selects a subset of the release, which only a download without the receipt (no_receipt) \
             takes: a receipt must describe a complete install; leave parts out or set no_receipt",
        ));
    }
    let mut locked = lock_and_load(&opts.layout)?;
    let receipt = locked.receipt.take();
    let key = effective_key(opts.public_key.as_deref(), receipt.as_ref())?;
    let (rel, version, pointer) = resolve_with_pointer(
        client,
        &opts.target,
        receipt_scheme(receipt.as_ref()),
        key.as_ref(),
        receipt.as_ref(),
    )?;
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
                receipt: Some(crate::host::receipt::receipt_path(&opts.layout.config_dir)),
            });
        }
        crate::host::policy::check_not_rolled_back(r, &version, crate::host::policy::Permission::default())?;
    }
    let mut staged = stage(
        client,
        &opts.layout,
        &rel,
        &version,
        key.as_ref(),
        limits(opts, pointer.as_ref()),
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
    if let Some(f) = &pointer {
        new.raise_channel_sequence(&repo, &f.pointer.channel, f.pointer.sequence);
    }
    let config_dir = opts.layout.config_dir.clone();
    let mut write = |_: Option<&str>| -> Result<()> {
        let channel_file = config_dir.join(hostlayout::CHANNEL_FILE);
        crate::fsutil::atomic_write(&channel_file, format!("{channel}\n").as_bytes(), 0o644)?;
        // switch::switch puts channel.txt and the receipt back if a later step fails.
        new.save(&config_dir)
    };
    let apply_opts = ApplyOptions {
        failpoint: opts.failpoint.clone(),
        ..ApplyOptions::default()
    };
    let applied = switch::apply(&mut staged, &opts.layout, &apply_opts, &mut write)?;
    staged.keep_dirs();
    locked.held.dirs.commit();
    Ok(InstallReport {
        repository: repo,
        version: version.as_str().to_string(),
        already_installed: false,
        files: applied.files,
        skipped_layers: staged.skipped_layers.clone(),
        signature_verified: staged.signature_verified,
        receipt: Some(crate::host::receipt::receipt_path(&opts.layout.config_dir)),
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
    crate::model::checksums::validate_asset_name(name)?;
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
            Ok((dest, crate::model::checksums::sha512_hex(&bytes), bytes.len() as u64))
        }
    }
}
