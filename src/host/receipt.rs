//! The install receipt `<config-dir>/install-source.json` (docs/receipt.md#the-install-receipt).
//!
//! The receipt records where an install came from (`github` or `tuf`), which version it is, and
//! the anti-rollback and signature pins of later updates (`highest_seen_version`, `public_key`).
//! Its first four fields are the original format that other readers rely on; the rest are
//! optional, and fields this version does not know are kept on rewrite. A missing receipt means
//! a legacy TUF install; a receipt that exists but cannot be read or parsed is an error naming
//! the file, never silently replaced, because replacing it would drop the pins.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Hint, Result};
use crate::fsutil;
use crate::host::layout::{self as hostlayout, HostLayout};
use crate::model::signature::TrustedKey;
use crate::model::version::Scheme;
use crate::model::version::Version;
use crate::remote::ghrelease::Client;

/// The receipt's file name inside the config directory.
pub const RECEIPT_FILE: &str = "install-source.json";

/// A receipt is a few hundred bytes; anything past this is not a receipt and is not read into
/// memory.
const MAX_RECEIPT_BYTES: u64 = 1024 * 1024;

/// The receipt's path: `<config_dir>/install-source.json`. Never fails.
pub fn receipt_path(config_dir: &Path) -> PathBuf {
    config_dir.join(RECEIPT_FILE)
}

/// Where an install came from, and so which updater handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// GitHub Releases (this crate's channel).
    Github,
    /// Flynn's original TUF repository; `flynn-host update` handles it.
    Tuf,
}

impl Source {
    /// The receipt spelling: `github` or `tuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Github => "github",
            Source::Tuf => "tuf",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Source {
    type Err = Error;

    /// Parse `github` or `tuf`; anything else fails with [`ErrorKind::InvalidArgument`].
    fn from_str(s: &str) -> Result<Source> {
        match s {
            "github" => Ok(Source::Github),
            "tuf" => Ok(Source::Tuf),
            other => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("unknown install source {other:?}: expected `github` or `tuf`"),
            )),
        }
    }
}

/// The contents of `install-source.json`. Field order here is the output order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallSource {
    /// `github` or `tuf`.
    pub source: Source,
    /// `owner/name` for GitHub, the repository URL for TUF.
    pub repository: String,
    /// The installed version; empty means unknown (a legacy TUF install).
    pub version: String,
    /// RFC 3339 UTC time of the install; empty when unknown.
    pub installed_at: String,
    /// The update channel (`stable`, `nightly`), when one was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The GitHub API base used for this install, when not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// The pinned minisign public key: when set, updates must be signed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The highest version ever installed or accepted (anti-rollback); only ever grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_seen_version: Option<String>,
    /// The highest sequence of a signed channel pointer accepted, per `owner/name:channel`
    /// (docs/channels.md#on-the-host); only ever grows. Once a channel has an entry, that
    /// channel's pointer is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_sequences: Option<std::collections::BTreeMap<String, u64>>,
    /// Fields this version does not know, written back unchanged after the known ones.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The text each unknown field had when the receipt was read, so an unchanged one is written
    /// back byte for byte (not only value for value: `1E400` stays `1E400`).
    #[serde(skip)]
    raw: RawFields,
}

/// The unknown fields' values as read, with their text. Not part of the receipt's value: two
/// receipts that differ only here are equal.
#[derive(Debug, Clone, Default)]
struct RawFields(std::collections::BTreeMap<String, (serde_json::Value, Box<serde_json::value::RawValue>)>);

impl PartialEq for RawFields {
    fn eq(&self, _: &RawFields) -> bool {
        true
    }
}

/// One value of the receipt file as written: its original text, or the value.
#[derive(Serialize)]
#[serde(untagged)]
enum Written<'a> {
    Raw(&'a serde_json::value::RawValue),
    Value(&'a serde_json::Value),
}

/// The receipt file's fields, in order.
struct WrittenFields<'a>(Vec<(&'a str, Written<'a>)>);

impl Serialize for WrittenFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl InstallSource {
    /// Read the receipt from `config_dir`.
    ///
    /// Returns `Ok(None)` when the file does not exist. Fails with [`ErrorKind::Io`] naming the
    /// file when it exists but cannot be read, and with [`ErrorKind::InvalidReceipt`] naming the
    /// file and how to fix it when it is not valid JSON, has a wrong type, lacks one of
    /// `source`/`repository`/`version`/`installed_at`, has an unknown `source`, or an empty
    /// `repository`. The file is never modified.
    pub fn load(config_dir: &Path) -> Result<Option<InstallSource>> {
        let path = receipt_path(config_dir);
        let bytes = match fsutil::read_regular(&path, MAX_RECEIPT_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::TooLarge => {
                return Err(invalid(&path, &format!("it is larger than {MAX_RECEIPT_BYTES} bytes")));
            }
            Err(e) => return Err(e),
        };
        let receipt = InstallSource::from_json(&bytes).map_err(|e| invalid(&path, &e.to_string()))?;
        receipt.validate().map_err(|why| invalid(&path, &why))?;
        Ok(Some(receipt))
    }

    /// Parses receipt JSON, remembering each unknown field's text so that saving it again keeps
    /// it byte for byte. Does not validate (see [`InstallSource::load`]).
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<InstallSource> {
        let mut receipt: InstallSource = serde_json::from_slice(bytes)?;
        let texts: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_slice(bytes)?;
        for (k, text) in texts {
            if let Some(v) = receipt.extra.get(&k) {
                receipt.raw.0.insert(k, (v.clone(), text));
            }
        }
        Ok(receipt)
    }

    /// Read the receipt, or describe a legacy TUF install when there is none.
    ///
    /// A missing file gives [`InstallSource::legacy_tuf`]`(tuf_repository)` (not written to
    /// disk). Fails like [`InstallSource::load`] when the file exists but is unreadable or
    /// invalid.
    pub fn load_or_legacy(config_dir: &Path, tuf_repository: &str) -> Result<InstallSource> {
        Ok(Self::load(config_dir)?.unwrap_or_else(|| Self::legacy_tuf(tuf_repository)))
    }

    /// The receipt an install without `install-source.json` implicitly has: `source: tuf`, the
    /// given TUF repository URL, unknown (empty) version and install time. Never fails.
    pub fn legacy_tuf(tuf_repository: &str) -> InstallSource {
        InstallSource {
            source: Source::Tuf,
            repository: tuf_repository.to_string(),
            version: String::new(),
            installed_at: String::new(),
            channel: None,
            api_url: None,
            public_key: None,
            highest_seen_version: None,
            channel_sequences: None,
            extra: serde_json::Map::new(),
            raw: RawFields::default(),
        }
    }

    /// A receipt for a fresh GitHub install of `version` from `repository` at `now`, with
    /// `installed_at` in RFC 3339 UTC seconds and `highest_seen_version` = `version`. Never
    /// fails (times outside 1970–9999 are clamped).
    pub fn new_github(repository: &str, version: &str, now: SystemTime) -> InstallSource {
        InstallSource {
            source: Source::Github,
            repository: repository.to_string(),
            version: version.to_string(),
            installed_at: rfc3339_seconds(now),
            channel: None,
            api_url: None,
            public_key: None,
            highest_seen_version: Some(version.to_string()),
            channel_sequences: None,
            extra: serde_json::Map::new(),
            raw: RawFields::default(),
        }
    }

    /// Write the receipt atomically (temp file, fsync, rename, fsync the directory), mode 0644,
    /// as pretty-printed JSON with a trailing newline. `config_dir` must exist.
    ///
    /// Fails with [`ErrorKind::InvalidArgument`] when the receipt is not valid (it would not load
    /// back), and with [`ErrorKind::Io`] naming the file when it cannot be written; the old file
    /// is then unchanged.
    pub fn save(&self, config_dir: &Path) -> Result<()> {
        let path = receipt_path(config_dir);
        self.validate().map_err(|why| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("refusing to write {}: {why}", path.display()),
            )
        })?;
        fsutil::atomic_write(&path, self.to_json().as_bytes(), 0o644)
    }

    /// The file content: pretty-printed JSON, original four fields first, then the optional
    /// ones, then unknown fields, and a trailing newline. Never fails.
    pub fn to_json(&self) -> String {
        let mut known = self.clone();
        known.extra = serde_json::Map::new();
        // Serializing strings and JSON values cannot fail; the defaults only avoid a panic path.
        let known = match serde_json::to_value(&known) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        let mut fields: Vec<(&str, Written<'_>)> = known.iter().map(|(k, v)| (k.as_str(), Written::Value(v))).collect();
        for (k, v) in &self.extra {
            let w = match self.raw.0.get(k) {
                // Unchanged since it was read: its own text.
                Some((read, text)) if read == v => Written::Raw(text),
                _ => Written::Value(v),
            };
            fields.push((k.as_str(), w));
        }
        let mut s = serde_json::to_string_pretty(&WrittenFields(fields)).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The installed version as a release or development build (see
    /// [`crate::model::version::Installed`]). Never fails.
    pub fn installed(&self) -> crate::model::version::Installed {
        crate::model::version::Installed::parse(&self.version)
    }

    /// `highest_seen_version` parsed; `None` when absent or unparsable.
    pub fn highest_seen(&self) -> Option<Version> {
        self.highest_seen_version
            .as_deref()
            .and_then(|s| Version::parse(s).ok())
    }

    /// Record that `v` was seen (installed or accepted): `highest_seen_version` becomes `v` if
    /// it is higher, or if the stored value is absent or unparsable; it never goes down.
    ///
    /// Fails with [`ErrorKind::VersionMismatch`] when the stored value is a valid version of
    /// another scheme: which one is "higher" is undefined, and guessing could open a rollback.
    /// The receipt is unchanged on failure.
    pub fn raise_highest_seen(&mut self, v: &Version) -> Result<()> {
        let stored = self
            .highest_seen_version
            .as_deref()
            .and_then(|s| Version::parse(s).ok());
        let replace = match stored {
            None => true,
            Some(cur) => {
                let ord = cur
                    .compare(v)
                    .map_err(|e| e.context("cannot update highest_seen_version in the install receipt"))?;
                ord == std::cmp::Ordering::Less
            }
        };
        if replace {
            self.highest_seen_version = Some(v.as_str().to_string());
        }
        Ok(())
    }

    /// The key of `channel_sequences` for `repo`'s `channel`: `owner/name:channel`, lowercased
    /// repository (GitHub names are case-insensitive).
    pub fn sequence_key(repo: &str, channel: &str) -> String {
        format!("{}:{channel}", repo.to_ascii_lowercase())
    }

    /// The highest pointer sequence accepted for `repo`'s `channel`, if any.
    pub fn channel_sequence(&self, repo: &str, channel: &str) -> Option<u64> {
        self.channel_sequences
            .as_ref()
            .and_then(|m| m.get(&Self::sequence_key(repo, channel)).copied())
    }

    /// Records that sequence `seq` of `repo`'s `channel` was accepted; never lowers the value.
    /// True when the receipt changed.
    pub fn raise_channel_sequence(&mut self, repo: &str, channel: &str, seq: u64) -> bool {
        let key = Self::sequence_key(repo, channel);
        if self.channel_sequence(repo, channel).is_some_and(|h| h >= seq) {
            return false;
        }
        self.channel_sequences
            .get_or_insert_with(Default::default)
            .insert(key, seq);
        true
    }

    /// The checks serde cannot express; the reason on failure.
    fn validate(&self) -> std::result::Result<(), String> {
        if self.repository.trim().is_empty() {
            return Err("`repository` is empty".into());
        }
        // Empty (unknown: a legacy install), `dev`, or a release version; anything else is not a
        // version and would be reported as if it were one.
        if !self.version.is_empty() && self.version != "dev" {
            if let Err(e) = Version::parse(&self.version) {
                return Err(format!("`version`: {}", e.message()));
            }
        }
        if let Some(h) = self.highest_seen_version.as_deref() {
            if let Err(e) = Version::parse(h) {
                return Err(format!("`highest_seen_version`: {}", e.message()));
            }
        }
        Ok(())
    }

    /// An error about the value of `field` of the receipt in `config_dir`: names the file and the
    /// field, and how to repair it.
    pub fn field_error(config_dir: &Path, field: &str, e: &Error) -> Error {
        Error::new(
            ErrorKind::InvalidReceipt,
            format!(
                "the install receipt {} has a bad `{field}`: {}",
                receipt_path(config_dir).display(),
                e.message(),
            ),
        )
        .with_hint(Hint::FixReceiptField {
            field: field.to_string(),
        })
    }
}

fn invalid(path: &Path, why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidReceipt,
        format!("{} is not a valid install receipt ({why})", path.display()),
    )
    .with_hint(Hint::RepairReceipt)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, clamped to what humantime can format (it panics before 1970 and
/// errors from year 10000 on).
fn rfc3339_seconds(t: SystemTime) -> String {
    let max = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    let t = t.clamp(UNIX_EPOCH, max);
    humantime::format_rfc3339_seconds(t).to_string()
}

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
                 first",
                p.to_base64(),
                g.to_base64(),
            ),
        )
        .with_hint(Hint::RotatePinnedKey {
            key: Some(g.to_base64().to_string()),
        })),
        (Some(g), _) => Ok(Some(g)),
        (None, p) => Ok(p),
    }
}

/// The version scheme a channel must stay in on this host: the receipt's version's, if it has one.
pub fn receipt_scheme(receipt: Option<&InstallSource>) -> Option<Scheme> {
    receipt.and_then(|r| crate::host::policy::seen_versions(r).first().map(Version::scheme))
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
/// `highest_seen_version` raised (never lowered: see [`crate::host::policy::next_highest_seen`]), the
/// public key pinned when one was used.
pub fn next_receipt(
    old: Option<InstallSource>,
    client: &Client,
    version: &Version,
    key: Option<&TrustedKey>,
) -> InstallSource {
    let repo = client.repository();
    let now = std::time::SystemTime::now();
    let highest = crate::host::policy::next_highest_seen(old.as_ref(), version);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const SPEC_SAMPLE: &str = r#"{
  "source": "github",
  "repository": "flynn/flynn",
  "version": "v20240127.0",
  "installed_at": "2024-01-27T10:00:00Z",
  "channel": "stable",
  "api_url": "https://api.github.com",
  "public_key": "RWQ…",
  "highest_seen_version": "v20240127.0"
}
"#;

    fn write_receipt(dir: &Path, text: &str) {
        std::fs::write(receipt_path(dir), text).unwrap();
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn spec_sample_parses_and_round_trips_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        write_receipt(dir.path(), SPEC_SAMPLE);
        let r = InstallSource::load(dir.path()).unwrap().unwrap();
        assert_eq!(r.source, Source::Github);
        assert_eq!(r.repository, "flynn/flynn");
        assert_eq!(r.version, "v20240127.0");
        assert_eq!(r.installed_at, "2024-01-27T10:00:00Z");
        assert_eq!(r.channel.as_deref(), Some("stable"));
        assert_eq!(r.api_url.as_deref(), Some("https://api.github.com"));
        assert_eq!(r.public_key.as_deref(), Some("RWQ…"));
        assert_eq!(r.highest_seen_version.as_deref(), Some("v20240127.0"));
        assert!(r.extra.is_empty());
        assert_eq!(r.to_json(), SPEC_SAMPLE);
        r.save(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(receipt_path(dir.path())).unwrap(), SPEC_SAMPLE);
    }

    #[test]
    fn minimal_four_field_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            r#"{"source":"tuf","repository":"https://dl.flynn.io/tuf","version":"v20210218.0","installed_at":""}"#;
        write_receipt(dir.path(), text);
        let r = InstallSource::load(dir.path()).unwrap().unwrap();
        assert_eq!(r.source, Source::Tuf);
        assert_eq!(r.repository, "https://dl.flynn.io/tuf");
        assert_eq!(r.channel, None);
        assert_eq!(r.highest_seen(), None);
        assert_eq!(r.installed().version().unwrap().as_str(), "v20210218.0");
        // Optional fields absent on output.
        assert_eq!(
            r.to_json(),
            "{\n  \"source\": \"tuf\",\n  \"repository\": \"https://dl.flynn.io/tuf\",\n  \
             \"version\": \"v20210218.0\",\n  \"installed_at\": \"\"\n}\n"
        );
    }

    #[test]
    fn unknown_fields_are_preserved_after_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        write_receipt(
            dir.path(),
            r#"{"zz_future":{"a":[1,2]},"version":"v1.0.0","source":"github",
                "installed_at":"2024-01-01T00:00:00Z","repository":"o/n","aa_note":"hi",
                "channel":"nightly"}"#,
        );
        let mut r = InstallSource::load(dir.path()).unwrap().unwrap();
        assert_eq!(r.extra.len(), 2);
        r.raise_highest_seen(&v("v1.1.0")).unwrap();
        r.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(receipt_path(dir.path())).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "source",
                "repository",
                "version",
                "installed_at",
                "channel",
                "highest_seen_version",
                "zz_future",
                "aa_note"
            ]
        );
        assert_eq!(value["zz_future"]["a"][1], 2);
        assert_eq!(value["aa_note"], "hi");
        assert!(text.ends_with("}\n"));
        let again = InstallSource::load(dir.path()).unwrap().unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn round_trip_with_all_fields_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_706_349_600); // 2024-01-27T10:00:00Z
        let mut r = InstallSource::new_github("flynn/flynn", "v20240127.0", now);
        assert_eq!(r.installed_at, "2024-01-27T10:00:00Z");
        assert_eq!(r.highest_seen_version.as_deref(), Some("v20240127.0"));
        r.channel = Some("stable".into());
        r.api_url = Some("https://ghe.example/api/v3".into());
        r.public_key = Some("RWQkey".into());
        r.extra.insert("x".into(), serde_json::json!(true));
        r.save(dir.path()).unwrap();
        let path = receipt_path(dir.path());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(InstallSource::load(dir.path()).unwrap().unwrap(), r);
        // Only the receipt is in the directory: no temp file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn unknown_values_are_written_back_exactly_as_read() {
        // Numbers outside f64's exact range, and forms an f64 (or serde_json's own number text)
        // would rewrite, survive any number of saves byte for byte.
        let dir = tempfile::tempdir().unwrap();
        let numbers = [
            "128446744073709551616",
            "1.10",
            "-0",
            "1e400",
            "1E+400",
            "2.5E-7",
            "0.30000000000000000001",
            "12345678901234567890123",
        ];
        let fields: Vec<String> = numbers
            .iter()
            .enumerate()
            .map(|(i, n)| format!("\"n{i}\": {n}"))
            .collect();
        let text = format!(
            "{{\"source\": \"github\", \"repository\": \"flynn/flynn\", \"version\": \"v20240127.0\", \
             \"installed_at\": \"\", {}, \"nested\": {{\"big\": [18446744073709551617]}}}}",
            fields.join(", ")
        );
        std::fs::write(receipt_path(dir.path()), text).unwrap();
        let first = InstallSource::load(dir.path()).unwrap().unwrap();
        first.save(dir.path()).unwrap();
        let saved = std::fs::read_to_string(receipt_path(dir.path())).unwrap();
        for (i, n) in numbers.iter().enumerate() {
            assert!(saved.contains(&format!("\"n{i}\": {n},")), "{n} rewritten: {saved}");
        }
        assert!(saved.contains("18446744073709551617"), "{saved}");
        InstallSource::load(dir.path())
            .unwrap()
            .unwrap()
            .save(dir.path())
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(receipt_path(dir.path())).unwrap(),
            saved,
            "not a fixed point"
        );
    }

    #[test]
    fn missing_file_is_none_or_legacy_tuf() {
        let dir = tempfile::tempdir().unwrap();
        assert!(InstallSource::load(dir.path()).unwrap().is_none());
        let r = InstallSource::load_or_legacy(dir.path(), "https://dl.flynn.io/tuf").unwrap();
        assert_eq!(r.source, Source::Tuf);
        assert_eq!(r.repository, "https://dl.flynn.io/tuf");
        assert_eq!(r.version, "");
        assert_eq!(r.installed_at, "");
        assert!(r.installed().is_development());
        assert!(!receipt_path(dir.path()).exists(), "not written to disk");
    }

    #[test]
    fn invalid_receipts_are_errors_and_left_untouched() {
        let cases = [
            "",
            "{",
            "not json",
            "[]",
            r#"{"source":"github","repository":"o/n","version":"v1.0.0"}"#,
            r#"{"repository":"o/n","version":"v1.0.0","installed_at":""}"#,
            r#"{"source":"s3","repository":"o/n","version":"v1.0.0","installed_at":""}"#,
            r#"{"source":"GitHub","repository":"o/n","version":"v1.0.0","installed_at":""}"#,
            r#"{"source":"github","repository":"","version":"v1.0.0","installed_at":""}"#,
            r#"{"source":"github","repository":7,"version":"v1.0.0","installed_at":""}"#,
            r#"{"source":"github","repository":"o/n","version":null,"installed_at":""}"#,
            r#"{"source":"github","repository":"o/n","version":"v1","installed_at":"","channel":3}"#,
        ];
        for text in cases {
            let dir = tempfile::tempdir().unwrap();
            write_receipt(dir.path(), text);
            let path = receipt_path(dir.path());
            let before = std::fs::read(&path).unwrap();
            for result in [
                InstallSource::load(dir.path()).map(|_| ()),
                InstallSource::load_or_legacy(dir.path(), "https://tuf").map(|_| ()),
            ] {
                let e = result.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::InvalidReceipt, "{text}");
                assert!(e.message().contains(&path.display().to_string()), "{e}");
                assert_eq!(e.hint(), Some(&crate::Hint::RepairReceipt), "{e}");
            }
            assert_eq!(std::fs::read(&path).unwrap(), before, "{text}");
        }
    }

    #[test]
    fn unreadable_receipt_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: exists, but cannot be read as a file.
        std::fs::create_dir(receipt_path(dir.path())).unwrap();
        let e = InstallSource::load(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains(RECEIPT_FILE), "{e}");
    }

    #[test]
    fn save_refuses_an_invalid_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let r = InstallSource::new_github("", "v1.0.0", SystemTime::now());
        let e = r.save(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(!receipt_path(dir.path()).exists());
    }

    #[test]
    fn source_parse_and_display() {
        assert_eq!("github".parse::<Source>().unwrap(), Source::Github);
        assert_eq!("tuf".parse::<Source>().unwrap(), Source::Tuf);
        assert_eq!(Source::Github.to_string(), "github");
        assert_eq!(Source::Tuf.to_string(), "tuf");
        let e = "s3".parse::<Source>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("s3"));
    }

    #[test]
    fn highest_seen_only_grows() {
        let mut r = InstallSource::new_github("o/n", "v20210218.0", UNIX_EPOCH);
        r.raise_highest_seen(&v("v20170116.0p1")).unwrap();
        assert_eq!(r.highest_seen_version.as_deref(), Some("v20210218.0"));
        r.raise_highest_seen(&v("v20210218.1")).unwrap();
        assert_eq!(r.highest_seen_version.as_deref(), Some("v20210218.1"));
        // v10 > v9 numerically (string comparison would get this wrong).
        r.highest_seen_version = Some("v20210218.9".into());
        r.raise_highest_seen(&v("v20210218.10")).unwrap();
        assert_eq!(r.highest_seen().unwrap().as_str(), "v20210218.10");

        // Another scheme: an error, and nothing changes.
        let e = r.raise_highest_seen(&v("v1.0.0")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::VersionMismatch);
        assert_eq!(r.highest_seen_version.as_deref(), Some("v20210218.10"));

        // Absent or unparsable: replaced.
        r.highest_seen_version = None;
        r.raise_highest_seen(&v("v1.0.0")).unwrap();
        assert_eq!(r.highest_seen_version.as_deref(), Some("v1.0.0"));
        r.highest_seen_version = Some("garbage".into());
        assert_eq!(r.highest_seen(), None);
        r.raise_highest_seen(&v("v1.0.0")).unwrap();
        assert_eq!(r.highest_seen_version.as_deref(), Some("v1.0.0"));
    }

    #[test]
    fn installed_at_is_clamped_not_panicking() {
        let before_epoch = UNIX_EPOCH - Duration::from_secs(10);
        let r = InstallSource::new_github("o/n", "v1.0.0", before_epoch);
        assert_eq!(r.installed_at, "1970-01-01T00:00:00Z");
    }
}
