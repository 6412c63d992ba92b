//! `flynnrel verify`: check a release folder as an installer would, before it is published:
//! every asset listed in `checksums.sha512` and matching, nothing extra, and the signature valid
//! when a public key is given.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::model::checksums::{Checksums, eq_hex, sha512_file};
use crate::model::release::CHECKSUMS_ASSET;
use crate::model::signature::{self, SIGNATURE_ASSET, TrustedKey};

/// What [`verify_dir`] checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// The folder.
    pub dir: PathBuf,
    /// Assets checked against `checksums.sha512`.
    pub assets: Vec<String>,
    /// Whether the signature was checked.
    pub signature_checked: bool,
}

/// Checks a release folder: `checksums.sha512` exists and parses, every other file (except the
/// signature) is listed and matches, every listed file exists; with `key`, the signature exists,
/// verifies and names `repo` and `version`. `ChecksumMismatch`, `InvalidData`, `NotFound` or
/// `SignatureInvalid` naming the file otherwise.
pub fn verify_dir(
    dir: &Path,
    key: Option<&TrustedKey>,
    repo: Option<&str>,
    version: Option<&str>,
) -> Result<VerifyReport> {
    let sums_path = dir.join(CHECKSUMS_ASSET);
    let text = crate::fsutil::open_regular(&sums_path)
        .and_then(|f| {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::Read::take(f, 1 << 20), &mut t).map(|_| t)
        })
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!("{} is missing: every release needs it", sums_path.display()),
                )
            } else {
                Error::io("read", &sums_path, e)
            }
        })?;
    let sums = Checksums::parse(&text, &sums_path.display().to_string())?;
    let mut present = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Hidden files are not assets (the release server's `.release.json` metadata, editors'
        // swap files); every asset name is visible.
        if name == CHECKSUMS_ASSET || name == SIGNATURE_ASSET || name.starts_with('.') {
            continue;
        }
        if sums.get(&name).is_none() {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{} is not listed in {}: remove it or re-package",
                    e.path().display(),
                    sums_path.display()
                ),
            ));
        }
        present.push(name);
    }
    for (name, want) in sums.iter() {
        let p = dir.join(name);
        let meta = std::fs::symlink_metadata(&p).map_err(|_| {
            Error::new(
                ErrorKind::NotFound,
                format!("{} lists {name} but {} is missing", sums_path.display(), p.display()),
            )
        })?;
        if !meta.file_type().is_file() {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!("{} is not a regular file", p.display()),
            ));
        }
        let got = sha512_file(&p)?;
        if !eq_hex(&got, want) {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "sha512 of {} is {got}, but {} says {want}",
                    p.display(),
                    sums_path.display()
                ),
            ));
        }
    }
    let mut signature_checked = false;
    if let Some(key) = key {
        let (Some(repo), Some(version)) = (repo, version) else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "checking a signature needs the repository and the version it must name",
            )
            .with_hint(crate::Hint::SetOptions {
                options: vec![crate::HintOption::Repository, crate::HintOption::Version],
            }));
        };
        let sig_path = dir.join(SIGNATURE_ASSET);
        let sig = crate::fsutil::read_regular_required(&sig_path, 1 << 20)
            .and_then(|b| String::from_utf8(b).map_err(|_| Error::new(ErrorKind::InvalidData, "not UTF-8")))
            .map_err(|_| {
                Error::new(
                    ErrorKind::SignatureInvalid,
                    format!(
                        "{} is missing but a public key is configured: sign the release",
                        sig_path.display()
                    ),
                )
            })?;
        signature::verify_checksums(
            key,
            text.as_bytes(),
            &sig,
            &sig_path.display().to_string(),
            repo,
            version,
        )?;
        signature_checked = true;
    }
    present.sort();
    Ok(VerifyReport {
        dir: dir.to_path_buf(),
        assets: present,
        signature_checked,
    })
}
