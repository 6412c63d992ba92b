//! `flynnrel promote`: publish a signed channel pointer (docs/channels.md#promote).
//!
//! The pointer is written into a directory (a checkout of the repository's `flynn-channels`
//! branch) as `channels/<channel>.json` and `channels/<channel>.json.minisig`; committing and
//! pushing them is the workflow's job. A pointer only names a release that exists and is signed
//! with the same key: its `checksums.sha512` and signature are fetched (through the web host) and
//! verified first, and the pointer binds that file's sha512. Without `--version` the channel's
//! current pointer is re-signed (same version, next sequence, new expiry): the scheduled job
//! that keeps pointers from expiring.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, ErrorKind, Result};
use crate::fsutil;
use crate::model::checksums::sha512_hex;
use crate::model::pointer::{self, ChannelPointer, MAX_EXPIRY, MAX_POINTER_BYTES, POINTER_FORMAT};
use crate::model::release::CHECKSUMS_ASSET;
use crate::model::signature::{self, SIGNATURE_ASSET, TrustedKey};
use crate::model::version::Version;
use crate::remote::ghrelease::{Channel, Client};

/// What to promote.
#[derive(Debug, Clone)]
pub struct PromoteOptions {
    /// The channel.
    pub channel: Channel,
    /// The version to point at; `None` re-signs the current pointer's version.
    pub version: Option<String>,
    /// The minisign secret key (the release key).
    pub sign_key: PathBuf,
    /// Its password, if encrypted.
    pub password: Option<String>,
    /// How long the pointer is valid.
    pub expires: Duration,
    /// The checkout of the pointer branch the files are written into.
    pub out_dir: PathBuf,
    /// After a key rotation: the previous release key, which the current pointer is signed
    /// with. Its sequence is continued, so hosts that accepted it take the new pointer.
    pub previous_public_key: Option<String>,
    /// The issue time (now, except in tests).
    pub now: SystemTime,
}

/// What [`promote`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PromoteReport {
    /// `OWNER/NAME`.
    pub repository: String,
    /// The channel.
    pub channel: String,
    /// The version it points at now.
    pub version: String,
    /// The version it pointed at before, if it had a pointer.
    pub previous_version: Option<String>,
    /// The new sequence number.
    pub sequence: u64,
    /// The new expiry (RFC 3339).
    pub expires_at: String,
    /// The two files written.
    pub files: Vec<PathBuf>,
}

/// Writes a new signed pointer for `opts.channel` of `client`'s repository (see the module docs).
/// Nothing is written unless every check passed: a bad option, key, existing pointer or release
/// leaves `out_dir` unchanged.
pub fn promote(client: &Client, opts: &PromoteOptions) -> Result<PromoteReport> {
    if opts.expires.is_zero() || opts.expires > MAX_EXPIRY {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "--expires {} is not between 1s and {}: a pointer must expire for hosts to detect a freeze",
                humantime::format_duration(opts.expires),
                humantime::format_duration(MAX_EXPIRY)
            ),
        ));
    }
    if !opts.out_dir.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "--out {} is not a directory: give a checkout of the repository's {} branch",
                opts.out_dir.display(),
                pointer::POINTER_BRANCH
            ),
        ));
    }
    let repo = client.repository();
    let channel = opts.channel.as_str();
    let (sk, pk) = signature::load_secret_key(&opts.sign_key, opts.password.clone())?;
    let key = TrustedKey::parse(&pk)?;
    let json_path = opts.out_dir.join(pointer::pointer_path(channel));
    let sig_path = opts.out_dir.join(pointer::signature_path(channel));
    let previous = opts.previous_public_key.as_deref().map(TrustedKey::parse).transpose()?;
    let current = read_current(&json_path, &sig_path, previous.as_ref().unwrap_or(&key), &repo, channel)?;
    let version = match (&opts.version, &current) {
        (Some(v), _) => {
            Version::parse(v).map_err(|e| Error::new(ErrorKind::InvalidArgument, e.message().to_string()))?
        }
        (None, Some(c)) => Version::parse(&c.version)?,
        (None, None) => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{} has no pointer to re-sign; give --version to promote a release to {channel}",
                    json_path.display()
                ),
            ));
        }
    };
    let checksums_sha512 = signed_checksums_hash(client, &key, version.as_str())?;
    let pointer = ChannelPointer {
        format: POINTER_FORMAT,
        repository: repo.clone(),
        channel: channel.to_string(),
        version: version.as_str().to_string(),
        sequence: current.as_ref().map_or(1, |c| c.sequence.saturating_add(1)),
        issued_at: pointer::rfc3339(opts.now),
        expires_at: pointer::rfc3339(opts.now + opts.expires),
        checksums_sha512,
    };
    let (json, sig) = pointer.sign(&sk)?;
    let dir = opts.out_dir.join("channels");
    fsutil::create_dir_all(&dir, 0o755)?;
    // The signature first, then the pointer; if the pointer cannot be written, the old
    // signature is put back so the pair stays consistent.
    let old_sig = fsutil::read_regular(&sig_path, MAX_POINTER_BYTES)?;
    fsutil::atomic_write(&sig_path, sig.as_bytes(), 0o644)?;
    if let Err(e) = fsutil::atomic_write(&json_path, json.as_bytes(), 0o644) {
        let _ = match old_sig {
            Some(old) => fsutil::atomic_write(&sig_path, &old, 0o644),
            None => std::fs::remove_file(&sig_path).map_err(|e| Error::io("remove", &sig_path, e)),
        };
        return Err(e);
    }
    Ok(PromoteReport {
        repository: repo,
        channel: channel.to_string(),
        version: pointer.version,
        previous_version: current.map(|c| c.version),
        sequence: pointer.sequence,
        expires_at: pointer.expires_at,
        files: vec![json_path, sig_path],
    })
}

/// The pointer already in the checkout, verified with the signing key (expired is fine: it is
/// about to be replaced). A pointer the key did not sign, or for another repository or channel,
/// is refused: the sequence would continue from numbers nobody vouched for.
fn read_current(
    json_path: &Path,
    sig_path: &Path,
    key: &TrustedKey,
    repo: &str,
    channel: &str,
) -> Result<Option<ChannelPointer>> {
    let Some(json) = fsutil::read_regular(json_path, MAX_POINTER_BYTES)? else {
        return Ok(None);
    };
    let source = json_path.display().to_string();
    let sig = fsutil::read_regular(sig_path, MAX_POINTER_BYTES)?.ok_or_else(|| {
        Error::new(
            ErrorKind::SignatureInvalid,
            format!(
                "{source} exists but {} does not; restore it from the branch's history before promoting",
                sig_path.display()
            ),
        )
    })?;
    let sig = String::from_utf8(sig).map_err(|_| {
        Error::new(
            ErrorKind::SignatureInvalid,
            format!("{} is not text", sig_path.display()),
        )
    })?;
    // Verified as of its own issue time, so an expired pointer can be re-signed.
    let p = pointer::parse(&json, &source)?;
    let at = humantime::parse_rfc3339(&p.issued_at).unwrap_or(SystemTime::UNIX_EPOCH);
    pointer::verify(key, &json, &sig, &source, repo, channel, at).map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "{}; the current pointer must verify with the signing key before it is replaced (after a key \
                 rotation, give the previous public key: its sequence is continued, so hosts accept the new \
                 pointer)",
                e.message()
            ),
        )
    })?;
    Ok(Some(p))
}

/// The sha512 of `version`'s `checksums.sha512`, after checking that it exists and that its
/// signature verifies with `key` for this repository and version.
fn signed_checksums_hash(client: &Client, key: &TrustedKey, version: &str) -> Result<String> {
    let web = format!(
        "{}/{}",
        client.options().web_url.trim_end_matches('/'),
        client.repository()
    );
    let tail = format!("releases/download/{version}/{CHECKSUMS_ASSET}");
    let (sums, _) = client.get_web_file(&tail, 4 << 20)?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("{web}/{tail} does not exist: {version} is not a published release; publish it before promoting"),
        )
    })?;
    let sig_tail = format!("releases/download/{version}/{SIGNATURE_ASSET}");
    let (sig, sig_url) = client.get_web_file(&sig_tail, 64 << 10)?.ok_or_else(|| {
        Error::new(
            ErrorKind::SignatureInvalid,
            format!("{web}/{sig_tail} does not exist: release {version} is not signed; refusing to promote it"),
        )
    })?;
    let sig = String::from_utf8(sig)
        .map_err(|_| Error::new(ErrorKind::SignatureInvalid, format!("{sig_url} is not text")))?;
    signature::verify_checksums(key, &sums, &sig, sig_url.as_str(), &client.repository(), version)?;
    Ok(sha512_hex(&sums))
}
