//! `flynnrel source show` and `source set`: read and edit where a host's updates come from,
//! under the same lock-recover-load order as every writer. Also the one way to replace the
//! receipt from outside (the C ABI's and Go's receipt save).

use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::host::layout::{self as hostlayout, HostLayout};
use crate::host::lock;
use crate::host::receipt::{InstallSource, Source};
use crate::host::switch::{self};
use crate::model::version::Version;
use crate::remote::ghrelease::Channel;

/// Changes to the receipt made by `flynnrel source set`.
#[derive(Debug, Clone, Default)]
pub struct SourceEdit {
    /// `github` or `tuf`.
    pub source: Option<Source>,
    /// `OWNER/NAME` for github, the TUF URL for tuf.
    pub repository: Option<String>,
    /// `stable` or `nightly`.
    pub channel: Option<Channel>,
    /// A new public key (`Some("")` removes the pin).
    pub public_key: Option<String>,
    /// A new API base.
    pub api_url: Option<String>,
}

/// The receipt, or the legacy TUF value when there is none (`true` when legacy).
pub fn source_show(layout: &HostLayout, tuf_repository: &str) -> Result<(InstallSource, bool)> {
    match InstallSource::load(&layout.config_dir)? {
        Some(r) => Ok((r, false)),
        None => Ok((InstallSource::legacy_tuf(tuf_repository), true)),
    }
}

/// What [`source_set`] did.
#[derive(Debug, Clone)]
pub struct SourceSetOutcome {
    /// The receipt written.
    pub receipt: InstallSource,
    /// Where an unreadable receipt it replaced was kept, if it replaced one.
    pub kept_unreadable: Option<std::path::PathBuf>,
}

/// Edits the receipt under the lock, validating the result; a missing receipt starts from the
/// legacy TUF value. A receipt that cannot be read or parsed is replaced only when the edit names
/// both the source and the repository (everything a receipt needs): the unreadable file is kept
/// beside it as `install-source.json.unreadable-<unix time>`, and its pins are gone (re-pin a key
/// with `public_key`). Otherwise the error says so.
pub fn source_set(layout: &HostLayout, edit: &SourceEdit, tuf_repository: &str) -> Result<SourceSetOutcome> {
    let mut held = lock::lock(layout)?;
    switch::recover(layout)?;
    let mut kept_unreadable = None;
    let receipt = match InstallSource::load(&layout.config_dir) {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::InvalidReceipt && edit.source.is_some() && edit.repository.is_some() => {
            let path = crate::host::receipt::receipt_path(&layout.config_dir);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let kept = layout
                .config_dir
                .join(format!("{}.unreadable-{now}", crate::host::receipt::RECEIPT_FILE));
            std::fs::rename(&path, &kept).map_err(|e| Error::io("keep the unreadable receipt as", &kept, e))?;
            kept_unreadable = Some(kept);
            None
        }
        Err(e) => return Err(e),
    };
    let mut r = receipt.unwrap_or_else(|| InstallSource::legacy_tuf(tuf_repository));
    if let Some(s) = edit.source {
        r.source = s;
    }
    if let Some(repo) = &edit.repository {
        r.repository = repo.clone();
    }
    if let Some(c) = edit.channel {
        r.channel = Some(c.as_str().to_string());
    }
    if let Some(k) = &edit.public_key {
        r.public_key = if k.trim().is_empty() {
            None
        } else {
            Some(crate::model::signature::TrustedKey::parse(k)?.to_base64().to_string())
        };
    }
    if let Some(a) = &edit.api_url {
        crate::remote::ghrelease::options::parse_allowed_url(a, "API URL")?;
        r.api_url = Some(a.clone());
    }
    match r.source {
        Source::Github => {
            crate::remote::ghrelease::options::validate_repository(&r.repository)?;
        }
        Source::Tuf => {
            crate::remote::ghrelease::options::parse_allowed_url(&r.repository, "TUF repository URL").map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{} (a tuf source's repository is the TUF repository URL)", e.message()),
                )
                .with_hint(crate::Hint::TufRepositoryUrl)
            })?;
        }
    }
    if let Err(e) = r.save(&layout.config_dir) {
        // Put the unreadable file back: a failed repair changes nothing.
        if let Some(kept) = &kept_unreadable {
            let _ = std::fs::rename(kept, crate::host::receipt::receipt_path(&layout.config_dir));
        }
        return Err(e);
    }
    held.dirs.commit();
    Ok(SourceSetOutcome {
        receipt: r,
        kept_unreadable,
    })
}

/// Replaces the receipt of `config_dir` with `new` as a whole (the C ABI's and Go's receipt save),
/// under the config-dir lock and with the rules every receipt edit keeps: `highest_seen_version`
/// never goes down (an absent one keeps the stored value), and a pinned public key is neither
/// swapped nor removed here (rotating it is the explicit `source set --pin-public-key`). Unknown
/// fields are written as given. `config_dir` must exist. Refused while an interrupted switch
/// awaits recovery (its journal is present): run an install or update first.
pub fn receipt_replace(config_dir: &Path, mut new: InstallSource) -> Result<InstallSource> {
    let _lock = hostlayout::ConfigLock::acquire(config_dir)?;
    let journal = config_dir.join(switch::JOURNAL_FILE);
    if std::fs::symlink_metadata(&journal).is_ok() {
        return Err(Error::new(
            ErrorKind::Locked,
            format!(
                "{} records an interrupted switch; run `flynnrel update` (or install) to finish or undo it \
                 before editing the receipt",
                journal.display()
            ),
        ));
    }
    let path = crate::host::receipt::receipt_path(config_dir);
    if let Some(old) = InstallSource::load(config_dir)? {
        let old_pin = old.public_key.as_deref().filter(|k| !k.trim().is_empty());
        let new_pin = new.public_key.as_deref().filter(|k| !k.trim().is_empty());
        if let Some(pin) = old_pin {
            let same = new_pin
                .is_some_and(|k| crate::model::signature::TrustedKey::parse(k).is_ok_and(|k| k.to_base64() == pin));
            if !same {
                return Err(Error::new(
                    ErrorKind::SignatureInvalid,
                    format!(
                        "{} pins public key {pin}; a receipt save cannot change or remove the pin",
                        path.display()
                    ),
                )
                .with_hint(crate::Hint::RotatePinnedKey {
                    key: new_pin
                        .and_then(|k| crate::model::signature::TrustedKey::parse(k).ok())
                        .map(|k| k.to_base64().to_string()),
                }));
            }
        }
        match new.highest_seen_version.as_deref().map(Version::parse) {
            None => new.highest_seen_version = old.highest_seen_version.clone(),
            Some(Err(e)) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("highest_seen_version for {}: {}", path.display(), e.message()),
                ));
            }
            Some(Ok(h)) => {
                if let Some(seen) = old.highest_seen().filter(|s| s.scheme() == h.scheme()) {
                    if h.compare(&seen)?.is_lt() {
                        return Err(Error::new(
                            ErrorKind::DowngradeRefused,
                            format!(
                                "refusing to lower highest_seen_version of {} from {seen} to {h}: it only ever \
                                 grows (anti-rollback)",
                                path.display()
                            ),
                        ));
                    }
                }
            }
        }
    }
    if let Some(k) = new.public_key.as_deref().filter(|k| !k.trim().is_empty()) {
        new.public_key = Some(crate::model::signature::TrustedKey::parse(k)?.to_base64().to_string());
    }
    new.save(config_dir)?;
    Ok(new)
}
