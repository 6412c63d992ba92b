//! Signed, expiring channel pointers (docs/channels.md#the-pointer).
//!
//! A pointer says "channel C of repository R is version V" — with the time it was issued, the
//! time it stops being valid, a sequence number that only grows, and the sha512 of V's
//! `checksums.sha512`. It is the file `channels/<channel>.json` on the repository's
//! `flynn-channels` branch, signed with the release key as `channels/<channel>.json.minisig`
//! (the `minisign` tool's format; the trusted comment binds `repo=` and `channel=`). It plays the
//! part of TUF's timestamp and targets roles for a channel: an expired pointer is refused (a
//! frozen mirror or an attacker replaying an old, validly signed state is detected within the
//! expiry), a pointer older than one already accepted is refused (rollback), and the version it
//! names is bound to its exact signed checksums.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::model::signature::{self, TrustedKey};
use crate::model::version::Version;

/// The branch holding the pointers.
pub const POINTER_BRANCH: &str = "flynn-channels";
/// The pointer format this crate writes and reads.
pub const POINTER_FORMAT: u32 = 1;
/// A pointer file is a few hundred bytes; nothing larger is read.
pub const MAX_POINTER_BYTES: u64 = 64 << 10;
/// The default validity of a new or re-signed pointer.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(14 * 24 * 3600);
/// The longest validity accepted by `promote` (a longer one would defeat freeze detection).
pub const MAX_EXPIRY: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses a validity such as `14d` or `36h` (humantime syntax); it must be between 1 s and
/// [`MAX_EXPIRY`]. `InvalidArgument` otherwise.
pub fn parse_expiry(s: &str) -> Result<Duration> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("invalid expiry {s:?}: {e}; give a duration such as 14d or 36h"),
        )
    })?;
    if d.is_zero() || d > MAX_EXPIRY {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "expiry {s:?} is not between 1s and {}: a pointer must expire for hosts to detect a freeze",
                humantime::format_duration(MAX_EXPIRY)
            ),
        ));
    }
    Ok(d)
}

/// The path of a channel's pointer inside the branch: `channels/<channel>.json`.
pub fn pointer_path(channel: &str) -> String {
    format!("channels/{channel}.json")
}

/// The path of its signature: `channels/<channel>.json.minisig`.
pub fn signature_path(channel: &str) -> String {
    format!("channels/{channel}.json.minisig")
}

/// The contents of `channels/<channel>.json`. Unknown fields are refused: a reader must not
/// ignore a restriction a newer writer added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPointer {
    /// Always [`POINTER_FORMAT`].
    pub format: u32,
    /// `OWNER/NAME`.
    pub repository: String,
    /// `stable`, `nightly`.
    pub channel: String,
    /// The version the channel points at.
    pub version: String,
    /// Only grows: each promote or re-sign of this channel takes the next number.
    pub sequence: u64,
    /// RFC 3339 UTC.
    pub issued_at: String,
    /// RFC 3339 UTC; after this the pointer is refused.
    pub expires_at: String,
    /// Lowercase hex sha512 of the release's `checksums.sha512`.
    pub checksums_sha512: String,
}

/// RFC 3339 UTC seconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t.clamp(UNIX_EPOCH, UNIX_EPOCH + Duration::from_secs(253_402_300_799)))
        .to_string()
}

impl ChannelPointer {
    /// The file's bytes: pretty JSON and a newline (what is signed).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The trusted comment of its signature: binds repository, channel, version and sequence.
    pub fn trusted_comment(&self, timestamp: u64) -> String {
        format!(
            "timestamp:{timestamp} file:{}.json repo={} channel={} version={} sequence={} expires={}",
            self.channel, self.repository, self.channel, self.version, self.sequence, self.expires_at
        )
    }

    /// The expiry as a time (validated by [`verify`]).
    pub fn expires(&self) -> Result<SystemTime> {
        humantime::parse_rfc3339(&self.expires_at).map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("expires_at {:?} is not an RFC 3339 time: {e}", self.expires_at),
            )
        })
    }

    /// Signs the pointer with `sk`. Returns (json, minisig text).
    pub fn sign(&self, sk: &minisign::SecretKey) -> Result<(String, String)> {
        let json = self.to_json();
        let sig = signature::sign_with_comment(
            sk,
            json.as_bytes(),
            &pointer_path(&self.channel),
            &self.trusted_comment(signature::unix_now()),
        )?;
        Ok((json, sig))
    }
}

/// Parses and checks a pointer's bytes without a signature (`source` is named in errors): the
/// fields must be well formed. `InvalidData` otherwise.
pub fn parse(bytes: &[u8], source: &str) -> Result<ChannelPointer> {
    let bad = |why: String| {
        Error::new(
            ErrorKind::InvalidData,
            format!("channel pointer {source} is not valid: {why}; re-publish it with `flynnrel promote`"),
        )
    };
    let p: ChannelPointer = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if p.format != POINTER_FORMAT {
        return Err(bad(format!(
            "format {} is not {POINTER_FORMAT}, the one this flynnrel reads; update flynnrel",
            p.format
        )));
    }
    Version::parse(&p.version).map_err(|e| bad(format!("`version`: {}", e.message())))?;
    if p.checksums_sha512.len() != 128
        || !p
            .checksums_sha512
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad("`checksums_sha512` is not 128 lowercase hex digits".into()));
    }
    let issued = humantime::parse_rfc3339(&p.issued_at).map_err(|e| bad(format!("`issued_at`: {e}")))?;
    let expires = humantime::parse_rfc3339(&p.expires_at).map_err(|e| bad(format!("`expires_at`: {e}")))?;
    if expires <= issued {
        return Err(bad("`expires_at` is not after `issued_at`".into()));
    }
    Ok(p)
}

/// Verifies a fetched pointer for `repo`'s `channel` at time `now`: the signature by `key` over
/// exactly these bytes with `repo=` and `channel=` in its trusted comment, the fields (which must
/// name the same repository and channel), and the expiry.
///
/// `SignatureInvalid` (unsigned, another key, another repository or channel), `InvalidData`
/// (malformed), `ChannelPointerExpired` (naming the expiry). The sequence is checked by the
/// caller against what the host has accepted before ([`check_sequence`]).
pub fn verify(
    key: &TrustedKey,
    json: &[u8],
    sig: &str,
    source: &str,
    repo: &str,
    channel: &str,
    now: SystemTime,
) -> Result<ChannelPointer> {
    signature::verify_bound(
        key,
        json,
        &pointer_path(channel),
        sig,
        &[("repo", repo, "repository"), ("channel", channel, "channel")],
    )
    .map_err(|why| {
        Error::new(
            ErrorKind::SignatureInvalid,
            format!("the signature of channel pointer {source} is not acceptable: {why}; do not trust this pointer"),
        )
    })?;
    let p = parse(json, source)?;
    if !p.repository.eq_ignore_ascii_case(repo) || p.channel != channel {
        return Err(Error::new(
            ErrorKind::SignatureInvalid,
            format!(
                "channel pointer {source} is for {} channel {}, not {repo} channel {channel}; do not trust this pointer",
                p.repository, p.channel
            ),
        ));
    }
    let expires = p.expires()?;
    if expires <= now {
        return Err(Error::new(
            ErrorKind::ChannelPointerExpired,
            format!(
                "channel pointer {source} (version {}, sequence {}) expired at {}; it is {} now. The publisher \
                 re-signs pointers before they expire, so this is a stale mirror or an attacker holding back \
                 updates (a freeze): check the repository's {POINTER_BRANCH} branch and the mirror",
                p.version,
                p.sequence,
                p.expires_at,
                rfc3339(now)
            ),
        ));
    }
    Ok(p)
}

/// Refuses a pointer whose sequence is lower than `highest_seen` (the highest this host accepted
/// for the channel): a replayed older pointer. `ChannelPointerReplayed`.
pub fn check_sequence(p: &ChannelPointer, highest_seen: Option<u64>, source: &str) -> Result<()> {
    match highest_seen {
        Some(h) if p.sequence < h => Err(Error::new(
            ErrorKind::ChannelPointerReplayed,
            format!(
                "channel pointer {source} has sequence {} (version {}) but this host already accepted sequence {h} \
                 of channel {}: an older pointer is being replayed (rollback of the channel); refusing it",
                p.sequence, p.version, p.channel
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minisign::KeyPair;

    fn pointer(seq: u64, expires_in: u64) -> ChannelPointer {
        let now = SystemTime::now();
        ChannelPointer {
            format: POINTER_FORMAT,
            repository: "flynn/flynn".into(),
            channel: "stable".into(),
            version: "v20240127.0".into(),
            sequence: seq,
            issued_at: rfc3339(now - Duration::from_secs(10)),
            expires_at: rfc3339(now + Duration::from_secs(expires_in)),
            checksums_sha512: "a".repeat(128),
        }
    }

    #[test]
    fn signed_pointers_verify_and_bind_repo_and_channel() {
        let kp = KeyPair::generate_unencrypted_keypair().unwrap();
        let key = TrustedKey::parse(&kp.pk.to_base64()).unwrap();
        let (json, sig) = pointer(3, 3600).sign(&kp.sk).unwrap();
        let now = SystemTime::now();
        let p = verify(&key, json.as_bytes(), &sig, "s", "flynn/flynn", "stable", now).unwrap();
        assert_eq!(p.sequence, 3);
        let e = verify(&key, json.as_bytes(), &sig, "s", "flynn/flynn", "nightly", now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SignatureInvalid);
        assert!(e.message().contains("channel=nightly"), "{e}");
        let e = verify(&key, json.as_bytes(), &sig, "s", "evil/flynn", "stable", now).unwrap_err();
        assert!(e.message().contains("repo=evil/flynn"), "{e}");
        let e = verify(
            &key,
            json.replace("3,", "4,").as_bytes(),
            &sig,
            "s",
            "flynn/flynn",
            "stable",
            now,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SignatureInvalid);
        let later = now + Duration::from_secs(7200);
        let e = verify(&key, json.as_bytes(), &sig, "s", "flynn/flynn", "stable", later).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChannelPointerExpired);
        assert!(e.message().contains(&p.expires_at), "{e}");
        assert_eq!(
            check_sequence(&p, Some(4), "s").unwrap_err().kind(),
            ErrorKind::ChannelPointerReplayed
        );
        check_sequence(&p, Some(3), "s").unwrap();
        check_sequence(&p, None, "s").unwrap();
    }

    #[test]
    fn malformed_pointers_are_invalid_data() {
        let good = pointer(1, 60).to_json();
        for bad in [
            good.replace("\"format\": 1", "\"format\": 2"),
            good.replace("v20240127.0", "latest"),
            good.replace(&"a".repeat(128), "abc"),
            good.replace("\"sequence\"", "\"extra\": 1, \"sequence\""),
            "{}".to_string(),
        ] {
            let e = parse(bad.as_bytes(), "p.json").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{bad}");
            assert!(e.message().contains("p.json"), "{e}");
        }
    }
}
