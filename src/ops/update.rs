//! `flynnrel update`, `rollback` and `source`: updates come from the source the host was
//! installed from, are checked against the version policy, and are applied all or nothing
//! (docs/cli.md#update, docs/verification.md#anti-rollback, docs/verification.md#all-or-nothing).
//!
//! Nothing here runs unless called: there are no timers or background checks, and no other
//! command updates as a side effect.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::host::layout::{self as hostlayout, HostLayout};
use crate::host::policy::{self, Permission, UpdateVerdict};
use crate::host::receipt::{InstallSource, Source};
use crate::host::staging::{self, DEFAULT_MAX_BINARY, WrittenFile};
use crate::host::switch::{self, ApplyOptions, Recovery};
use crate::host::{lock, receipt};
use crate::model::version::{Installed, Version};
use crate::ops::channels;
use crate::ops::install::{self, Target};
use crate::remote::fetch::Progress;
use crate::remote::ghrelease::options::web_url_for;
use crate::remote::ghrelease::{Channel, Client};

/// The TUF repository of a legacy install that has no receipt, unless the caller names another.
pub const DEFAULT_TUF_REPOSITORY: &str = "https://dl.flynn.io/tuf";
/// The receipt field recording the version before the last switch (for `rollback`).
pub const PREVIOUS_VERSION_FIELD: &str = "previous_version";

/// How to update.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// The host's directories.
    pub layout: HostLayout,
    /// Only report whether an update is available.
    pub check: bool,
    /// Reinstall even when up to date; allows updating a development build.
    pub force: bool,
    /// Install exactly this version instead of the channel's newest.
    pub version: Option<String>,
    /// Use this source instead of the receipt's (`github` on a TUF install: the hybrid mode).
    pub source: Option<Source>,
    /// With an explicit `version`, allow going to a lower version.
    pub allow_downgrade: bool,
    /// A public key from the flag or environment (the receipt's pinned key applies otherwise).
    pub public_key: Option<String>,
    /// Use this repository instead of the receipt's.
    pub repository: Option<String>,
    /// Use this API base instead of the receipt's.
    pub api_url: Option<String>,
    /// The TUF repository to report for a legacy install without a receipt.
    pub tuf_repository: String,
    /// How long `flynn-host.<ver> version` may take.
    pub smoke_timeout: Duration,
    /// Report the sha512 of every file written (see [`crate::ops::install::InstallOptions`]).
    pub report_sha512: bool,
    /// A pull-through cache for a registry release's layers (docs/layers.md#a-registry-mirror).
    pub registry_mirror: Option<String>,
    /// Test-only failpoints (ignored in release builds); see [`crate::host::switch`].
    #[doc(hidden)]
    pub failpoint: Option<String>,
}

impl UpdateOptions {
    /// Defaults: apply, no override, 30 s smoke test.
    pub fn new(layout: HostLayout) -> UpdateOptions {
        UpdateOptions {
            layout,
            check: false,
            force: false,
            version: None,
            source: None,
            allow_downgrade: false,
            public_key: None,
            repository: None,
            api_url: None,
            tuf_repository: DEFAULT_TUF_REPOSITORY.to_string(),
            smoke_timeout: Duration::from_secs(30),
            report_sha512: true,
            registry_mirror: None,
            failpoint: None,
        }
    }
}

/// The result of [`update`].
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum UpdateOutcome {
    /// Nothing newer (by version order) than what runs.
    UpToDate {
        /// `OWNER/NAME`.
        repository: String,
        /// The installed version (`dev` for a development build).
        current: String,
        /// The newest release of the channel (or the named version).
        target: String,
        /// When the channel was read from a signed pointer: its expiry (RFC 3339), by which the
        /// publisher must have re-signed it (docs/channels.md).
        #[serde(skip_serializing_if = "Option::is_none")]
        pointer_expires_at: Option<String>,
    },
    /// `--check`: an update is available.
    Available {
        /// `OWNER/NAME`.
        repository: String,
        /// The installed version.
        current: String,
        /// What `update` would install.
        target: String,
        /// When the channel was read from a signed pointer: its expiry (RFC 3339).
        #[serde(skip_serializing_if = "Option::is_none")]
        pointer_expires_at: Option<String>,
    },
    /// The host was switched to `to`.
    Updated {
        /// `OWNER/NAME`.
        repository: String,
        /// The version before (as the receipt said).
        from: String,
        /// The version now.
        to: String,
        /// Files and symlinks written.
        files: Vec<WrittenFile>,
        /// Layers already present, not downloaded.
        skipped_layers: Vec<String>,
        /// Older versions' files removed (the last two versions are kept).
        removed: Vec<String>,
        /// Whether the release's signature was verified.
        signature_verified: bool,
        /// An interrupted earlier update that was finished or undone first.
        recovered: Recovery,
    },
    /// The install's source is TUF: the caller's TUF updater (`flynn-host update`) handles it.
    Tuf {
        /// The TUF repository URL.
        repository: String,
        /// What to tell the operator.
        message: String,
    },
}

/// The installed version when the receipt does not say (a legacy TUF install): what
/// `<bin>/flynn-host version --release` prints (Flynn's bare release version). A binary without
/// `--release` is asked `version`, and Flynn's `-<commit>` build suffix is removed from that, so
/// `v20210218.0-<commit>` is read as `v20210218.0`, not as a pre-release of it.
fn probe_installed_version(layout: &HostLayout) -> Option<String> {
    let bin = layout.bin_dir.join("flynn-host");
    let run = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new(&bin)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        out.status
            .success()
            .then(|| text.split_whitespace().next().map(str::to_string))
            .flatten()
    };
    if let Some(v) = run(&["version", "--release"]) {
        return Some(v);
    }
    let printed = run(&["version"])?;
    match printed.rsplit_once('-') {
        Some((release, commit)) if switch::reports_version(&printed, release) && !commit.is_empty() => {
            Some(release.to_string())
        }
        _ => Some(printed),
    }
}

/// Checks for, or applies, an update (see [`UpdateOptions`]). `base` supplies the token, timeouts,
/// retries and defaults; the repository and API base come from the receipt unless overridden
/// (then a client for them is made from `base`'s options).
///
/// Errors: `InvalidReceipt` (corrupt receipt), `DowngradeRefused` (policy), `InvalidArgument`
/// (development build without `--version`/`--force`), `Locked`, `SmokeTestFailed` (rolled back),
/// and every download/verification error of install — in all cases the host is unchanged.
pub fn update(base: &Client, opts: &UpdateOptions, progress: Progress<'_>) -> Result<UpdateOutcome> {
    let layout = &opts.layout;
    // Applying takes the lock first, finishes or undoes a crashed earlier switch, and only then
    // reads the receipt, so every decision below sees the host as it really is. A check changes
    // nothing and takes no lock.
    let (locked, receipt) = if opts.check || !layout.config_dir.is_dir() {
        (None, InstallSource::load(&layout.config_dir)?)
    } else {
        let mut l = lock::lock_and_load(layout)?;
        let r = l.receipt.take();
        (Some(l), r)
    };
    if receipt.is_none() && std::fs::symlink_metadata(layout.bin_dir.join("flynn-host")).is_err() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "nothing is installed here: {} has no install receipt and {} has no flynn-host",
                layout.config_dir.display(),
                layout.bin_dir.display()
            ),
        )
        .with_hint(crate::Hint::InstallFirst));
    }
    let effective = receipt
        .clone()
        .unwrap_or_else(|| InstallSource::legacy_tuf(&opts.tuf_repository));
    let source = opts.source.unwrap_or(effective.source);
    if source == Source::Tuf {
        let tuf = if effective.source == Source::Tuf {
            effective.repository.clone()
        } else {
            opts.tuf_repository.clone()
        };
        return Ok(UpdateOutcome::Tuf {
            message: format!(
                "this install is updated through TUF ({tuf}); `flynn-host update` (the TUF updater) handles it"
            ),
            repository: tuf,
        });
    }
    let from_github = effective.source == Source::Github;
    let mut copts = base.options().clone();
    // A value taken from the receipt that is not valid is blamed on the receipt's field, not on
    // a flag the operator never gave.
    match &opts.repository {
        Some(r) => copts.repository = r.clone(),
        None if from_github => {
            crate::remote::ghrelease::options::validate_repository(&effective.repository)
                .map_err(|e| InstallSource::field_error(&layout.config_dir, "repository", &e))?;
            copts.repository = effective.repository.clone();
        }
        None => {}
    }
    let api_from_receipt = opts.api_url.is_none() && from_github && effective.api_url.is_some();
    if let Some(a) = opts
        .api_url
        .clone()
        .or_else(|| if from_github { effective.api_url.clone() } else { None })
    {
        if api_from_receipt {
            crate::remote::ghrelease::options::parse_allowed_url(a.trim_end_matches('/'), "API URL")
                .map_err(|e| InstallSource::field_error(&layout.config_dir, "api_url", &e))?;
        }
        copts.web_url = web_url_for(&a, &copts.web_url);
        copts.api_url = a;
    }
    // The API's ETag cache persists in the host's config dir (docs/host-layout.md#the-etag-cache):
    // a check may refresh it, and it is the only thing a check writes.
    copts.etag_cache = Some(crate::remote::ghrelease::etag_cache::path_in(&layout.config_dir));
    let client = Client::new(copts)?;
    let result = decide_and_apply(&client, opts, receipt, effective, locked, progress);
    client.finish_etag_cache(result.is_ok());
    result
}

/// [`update`] once the client is chosen: resolve the target, apply the version policy, and (not
/// for a check) stage and switch.
fn decide_and_apply(
    client: &Client,
    opts: &UpdateOptions,
    receipt: Option<InstallSource>,
    effective: InstallSource,
    mut locked: Option<lock::Locked>,
    progress: Progress<'_>,
) -> Result<UpdateOutcome> {
    let layout = &opts.layout;
    let mut effective = effective;
    if effective.version.is_empty() {
        // A legacy install without a receipt: what its flynn-host says it is.
        effective.version = probe_installed_version(layout).unwrap_or_default();
    }
    let current = Installed::parse(&effective.version);
    let target_spec = match &opts.version {
        Some(v) => Target::Version(v.clone()),
        None => Target::Channel(match effective.channel.as_deref() {
            Some(c) => c.parse()?,
            None => Channel::default(),
        }),
    };
    let scheme = current.version().map(Version::scheme);
    // The key is needed before resolving: with one, a channel is read from its signed pointer.
    let key = receipt::effective_key(opts.public_key.as_deref(), receipt.as_ref())?;
    let pointer = match &target_spec {
        Target::Channel(c) => {
            channels::pointer_for(client, *c, key.as_ref(), receipt.as_ref(), std::time::SystemTime::now())?
        }
        Target::Version(_) => None,
    };
    // A pointer names the version; the release itself is only asked of the API when it is
    // installed, so a check through a pointer costs no API request.
    let (rel, target) = match &pointer {
        Some(f) => (None, Version::parse(&f.pointer.version)?),
        None => {
            let (r, v) = install::resolve(client, &target_spec, scheme)?;
            (Some(r), v)
        }
    };
    let pointer_expires_at = pointer.as_ref().map(|f| f.pointer.expires_at.clone());
    let repository = client.repository();
    let current_name = current.to_string();

    // The version policy (docs/verification.md#anti-rollback), decided once in crate::host::policy.
    let perm = Permission {
        explicit: opts.version.is_some(),
        allow_downgrade: opts.allow_downgrade,
    };
    if policy::update_verdict(&current, &target, perm, opts.force, opts.check)? == UpdateVerdict::UpToDate {
        // An update (not a check) holds the lock: record the pointer's sequence, so an older
        // pointer is refused from now on even though nothing was installed.
        if let (Some(f), Some(_), Some(r)) = (&pointer, &locked, &receipt) {
            let mut r = r.clone();
            if r.raise_channel_sequence(&repository, &f.pointer.channel, f.pointer.sequence) {
                r.save(&layout.config_dir)?;
            }
        }
        return Ok(UpdateOutcome::UpToDate {
            repository,
            current: current_name,
            target: target.as_str().to_string(),
            pointer_expires_at,
        });
    }
    policy::check_not_rolled_back(&effective, &target, perm)?;
    if opts.check {
        return Ok(UpdateOutcome::Available {
            repository,
            current: current_name,
            target: target.as_str().to_string(),
            pointer_expires_at,
        });
    }

    let mut locked = match locked.take() {
        Some(l) => l,
        None => lock::lock_and_load(layout)?,
    };
    let recovered = locked.recovered.clone();
    let rel = match rel {
        Some(r) => r,
        None => install::resolve(client, &Target::Version(target.as_str().to_string()), None)?.0,
    };
    let mut staged = staging::stage(
        client,
        layout,
        &rel,
        &target,
        key.as_ref(),
        staging::StageLimits {
            max_binary: DEFAULT_MAX_BINARY,
            report_sha512: opts.report_sha512,
            parts: staging::Parts::ALL,
            checksums_sha512: pointer.as_ref().map(|f| f.pointer.checksums_sha512.clone()),
            registry_mirror: opts.registry_mirror.clone(),
        },
        progress,
    )?;
    let mut new = receipt::next_receipt(receipt, client, &target, key.as_ref());
    if new.channel.is_none() {
        new.channel = Some(Channel::Stable.as_str().to_string());
    }
    if let Some(f) = &pointer {
        new.raise_channel_sequence(&repository, &f.pointer.channel, f.pointer.sequence);
    }
    let config_dir = layout.config_dir.clone();
    let mut write = |previous: Option<&str>| -> Result<()> {
        if let Some(p) = previous.filter(|p| *p != target.as_str()) {
            new.extra
                .insert(PREVIOUS_VERSION_FIELD.into(), serde_json::Value::String(p.to_string()));
        }
        new.save(&config_dir)
    };
    let apply_opts = ApplyOptions {
        smoke_test: true,
        smoke_timeout: Some(opts.smoke_timeout),
        failpoint: opts.failpoint.clone(),
        skip_links: false,
    };
    let applied = switch::apply(&mut staged, layout, &apply_opts, &mut write)?;
    staged.keep_dirs();
    locked.held.dirs.commit();
    let keep: Vec<&str> = [Some(target.as_str()), applied.previous_version.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let removed = prune_versions(layout, &keep);
    Ok(UpdateOutcome::Updated {
        repository,
        from: current_name,
        to: target.as_str().to_string(),
        files: applied.files,
        skipped_layers: staged.skipped_layers.clone(),
        removed,
        signature_verified: staged.signature_verified,
        recovered,
    })
}

/// Removes versioned binaries and `images.<ver>.json` of every version not in `keep`. Best effort:
/// a file that cannot be removed stays. Returns the removed paths.
pub fn prune_versions(layout: &HostLayout, keep: &[&str]) -> Vec<String> {
    let mut removed = Vec::new();
    let names: Vec<&str> = crate::model::release::COMPONENTS
        .iter()
        .filter_map(|c| match c.role {
            crate::model::release::Role::HostBinary(n) => Some(n),
            _ => None,
        })
        .collect();
    // Whatever a symlink in the bin dir points at stays, whatever the versions say: pruning must
    // never leave a dangling link (a component the newest release lacks still runs the old file).
    let live = live_link_targets(&layout.bin_dir);
    let mut prune_dir = |dir: &Path, matches: &dyn Fn(&str) -> Option<String>| {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(ver) = matches(&name) else { continue };
            if keep.contains(&ver.as_str()) || Version::parse(&ver).is_err() || live.contains(&e.path()) {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(e.path()).is_ok() {
                removed.push(e.path().display().to_string());
            }
        }
    };
    prune_dir(&layout.bin_dir, &|name: &str| {
        names
            .iter()
            .find_map(|n| name.strip_prefix(&format!("{n}.")).map(str::to_string))
    });
    prune_dir(&layout.config_dir, &|name: &str| {
        name.strip_prefix("images.")
            .and_then(|r| r.strip_suffix(".json"))
            .map(str::to_string)
    });
    removed.sort();
    removed
}

/// The files the symlinks in `bin_dir` point at (resolved within `bin_dir` for relative links).
fn live_link_targets(bin_dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(bin_dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| if t.is_absolute() { t } else { bin_dir.join(t) })
        .collect()
}

/// What [`rollback`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RollbackOutcome {
    /// The version switched away from.
    pub from: String,
    /// The version switched back to.
    pub to: String,
}

/// Switches back to the version before the last update (symlinks and receipt; the bootstrap
/// manifest is left as it is). Refuses when the receipt records none or its files are gone.
pub fn rollback(layout: &HostLayout, smoke_timeout: Duration, failpoint: Option<String>) -> Result<RollbackOutcome> {
    let lock::Locked { mut held, receipt, .. } = lock::lock_and_load(layout)?;
    let receipt = receipt.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "{} has no install receipt: nothing to roll back",
                layout.config_dir.display()
            ),
        )
    })?;
    let previous = receipt
        .extra
        .get(PREVIOUS_VERSION_FIELD)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "the receipt records no previous version: there is nothing to roll back to",
            )
        })?;
    Version::parse(&previous)?;
    let bin = layout.versioned_binary("flynn-host", &previous);
    if !bin.is_file() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "the previous version {previous} is no longer on disk ({} is missing); install it again",
                bin.display()
            ),
        )
        .with_hint(crate::Hint::AllowDowngrade { version: previous }));
    }
    let from = receipt.version.clone();
    let mut new = receipt;
    new.version = previous.clone();
    new.installed_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    new.extra
        .insert(PREVIOUS_VERSION_FIELD.into(), serde_json::Value::String(from.clone()));
    let config_dir = layout.config_dir.clone();
    let mut write = |_: Option<&str>| new.save(&config_dir);
    let opts = ApplyOptions {
        smoke_test: true,
        smoke_timeout: Some(smoke_timeout),
        failpoint,
        skip_links: false,
    };
    switch::switch(layout, &previous, None, Vec::new(), &opts, &mut write)?;
    held.dirs.commit();
    Ok(RollbackOutcome { from, to: previous })
}

/// True when `link` in the bin dir points at `version` (for reports and tests).
pub fn runs_version(layout: &HostLayout, version: &str) -> bool {
    hostlayout::linked_version(&layout.bin_dir, "flynn-host").as_deref() == Some(version)
}
