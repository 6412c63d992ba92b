//! Release versions: parsing and ordering (docs/versions.md#versions).
//!
//! Flynn's history has three tag schemes: Flynn date versions (`v20210218.0`, `v20170116.0p1`,
//! `v20180216.dev1`), dotted date versions (`v2024.01.27.0`) and semver (`v1.2.3-rc.1`). A
//! [`Version`] keeps the original string (tags are matched exactly against GitHub) and a parsed
//! key that orders versions numerically within one scheme. Comparing across schemes is an error
//! ([`ErrorKind::VersionMismatch`]), never a guess, and tags are never compared as strings: the
//! original design's `latestTag > current` put `v9` after `v10`.
//!
//! What is running on a host is an [`Installed`]: either a release version or a development
//! build (`dev`, empty, or anything unparsable), which is never "up to date" and never updated
//! without an explicit target.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use semver::Prerelease;

use crate::error::{Error, ErrorKind, Result};

/// Longest digit string accepted for a number. 18 digits always fit a `u64`, so parsing can
/// never overflow; no real tag comes anywhere near this.
const MAX_DIGITS: usize = 18;

/// The accepted forms, quoted in every parse error so the operator can fix the input.
const ACCEPTED_FORMS: &str = "expected a Flynn date version (v20210218.0, v20170116.0p1, \
     v20180216.dev1), a dotted date version (v2024.01.27.0) or a semver version (v1.2.3, \
     v1.2.3-rc.1); date versions may carry a -suffix pre-release (v2024.01.27.0-test)";

/// A version scheme. Versions are only ordered within one scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Flynn's own tags: `vYYYYMMDD.N`, `vYYYYMMDD.NpM`, `vYYYYMMDD.devN`.
    FlynnDate,
    /// `vYYYY.MM.DD.N`.
    DottedDate,
    /// Semantic versioning, `v1.2.3`, `v1.2.3-rc.1`.
    Semver,
}

impl Scheme {
    /// The stable snake_case name (as serialized), e.g. `flynn_date`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::FlynnDate => "flynn_date",
            Scheme::DottedDate => "dotted_date",
            Scheme::Semver => "semver",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parsed, comparable part of a version. Field order inside each variant is the precedence
/// order, but comparison is written out explicitly in [`Key::cmp_same_scheme`] so that the
/// pre-release rule (no suffix sorts last) is visible rather than implied by a derive.
#[derive(Debug, Clone)]
enum Key {
    Flynn {
        /// `YYYYMMDD` as a number: numeric order equals calendar order.
        date: u32,
        /// `vYYYYMMDD.devN` builds come before every `vYYYYMMDD.N` of the same date.
        dev: bool,
        /// `N` of `.N`, or `N` of `.devN`.
        n: u64,
        /// `M` of `pM`; no patch sorts before any patch.
        patch: Option<u64>,
        /// The `-suffix`, empty when there is none.
        pre: Prerelease,
    },
    Dotted {
        year: u32,
        month: u32,
        day: u32,
        n: u64,
        pre: Prerelease,
    },
    Semver(semver::Version),
}

impl Key {
    fn scheme(&self) -> Scheme {
        match self {
            Key::Flynn { .. } => Scheme::FlynnDate,
            Key::Dotted { .. } => Scheme::DottedDate,
            Key::Semver(_) => Scheme::Semver,
        }
    }

    /// Precedence of two keys of the same scheme; `None` across schemes.
    fn cmp_same_scheme(&self, other: &Key) -> Option<Ordering> {
        match (self, other) {
            (
                Key::Flynn {
                    date: d1,
                    dev: v1,
                    n: n1,
                    patch: p1,
                    pre: r1,
                },
                Key::Flynn {
                    date: d2,
                    dev: v2,
                    n: n2,
                    patch: p2,
                    pre: r2,
                },
            ) => Some(
                d1.cmp(d2)
                    // `!dev` so that a dev build (true) sorts before a release (false).
                    .then_with(|| (!v1).cmp(&!v2))
                    .then_with(|| n1.cmp(n2))
                    .then_with(|| p1.cmp(p2))
                    .then_with(|| cmp_pre(r1, r2)),
            ),
            (
                Key::Dotted {
                    year: y1,
                    month: m1,
                    day: dd1,
                    n: n1,
                    pre: r1,
                },
                Key::Dotted {
                    year: y2,
                    month: m2,
                    day: dd2,
                    n: n2,
                    pre: r2,
                },
            ) => Some((y1, m1, dd1, n1).cmp(&(y2, m2, dd2, n2)).then_with(|| cmp_pre(r1, r2))),
            // cmp_precedence ignores build metadata, as semver requires.
            (Key::Semver(a), Key::Semver(b)) => Some(a.cmp_precedence(b)),
            _ => None,
        }
    }

    fn is_prerelease(&self) -> bool {
        match self {
            Key::Flynn { dev, pre, .. } => *dev || !pre.is_empty(),
            Key::Dotted { pre, .. } => !pre.is_empty(),
            Key::Semver(v) => !v.pre.is_empty(),
        }
    }
}

/// Pre-release precedence: no suffix sorts after any suffix; two suffixes follow semver's rules
/// (dot-separated identifiers, numeric ones compared as numbers).
fn cmp_pre(a: &Prerelease, b: &Prerelease) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

/// A release version: the original string plus a parsed key ordered within its [`Scheme`].
///
/// Equality and ordering are by precedence within one scheme (`v1.2.3+a == v1.2.3+b`); versions
/// of different schemes are neither equal nor ordered (`partial_cmp` is `None`), and
/// [`Version::compare`] reports them as an error.
#[derive(Clone, Debug)]
pub struct Version {
    original: String,
    key: Key,
}

impl Version {
    /// Parse a version; the leading `v` is optional (tags have it).
    ///
    /// Fails with [`ErrorKind::InvalidData`], quoting the string and listing the accepted forms,
    /// when it matches none of the schemes (or has an impossible date or an absurdly long
    /// number).
    pub fn parse(s: &str) -> Result<Version> {
        let key = parse_key(s).map_err(|why| {
            Error::new(
                ErrorKind::InvalidData,
                format!("invalid version {s:?}: {why}; {ACCEPTED_FORMS}"),
            )
        })?;
        Ok(Version {
            original: s.to_string(),
            key,
        })
    }

    /// The original string, exactly as parsed (e.g. the tag `v20210218.0`).
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The scheme this version belongs to.
    pub fn scheme(&self) -> Scheme {
        self.key.scheme()
    }

    /// Whether this is a pre-release: a `-suffix`, a semver pre-release, or a Flynn `.devN`.
    pub fn is_prerelease(&self) -> bool {
        self.key.is_prerelease()
    }

    /// Order two versions by precedence.
    ///
    /// Fails with [`ErrorKind::VersionMismatch`], naming both versions and their schemes, when
    /// the schemes differ: there is no meaningful order between, say, `v20210218.0` and `v1.2.0`.
    pub fn compare(&self, other: &Version) -> Result<Ordering> {
        self.key.cmp_same_scheme(&other.key).ok_or_else(|| {
            Error::new(
                ErrorKind::VersionMismatch,
                format!(
                    "cannot compare version {:?} ({}) with {:?} ({}): they use different version \
                     schemes; name the version to install explicitly",
                    self.original,
                    self.scheme(),
                    other.original,
                    other.scheme()
                ),
            )
        })
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.key.cmp_same_scheme(&other.key) == Some(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        self.key.cmp_same_scheme(&other.key)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl FromStr for Version {
    type Err = Error;

    fn from_str(s: &str) -> Result<Version> {
        Version::parse(s)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.original)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Version, D::Error> {
        let s = String::deserialize(deserializer)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The maximum of `versions`, or `None` when there are none.
///
/// Fails with [`ErrorKind::VersionMismatch`] when the versions mix schemes (a release list
/// mixing `v20210218.0` and `v1.0.0` has no defined newest). Among equal-precedence versions
/// (differing only in semver build metadata) the first one wins.
pub fn newest<'a>(versions: impl IntoIterator<Item = &'a Version>) -> Result<Option<&'a Version>> {
    let mut best: Option<&'a Version> = None;
    for v in versions {
        best = match best {
            None => Some(v),
            Some(b) => match v.compare(b)? {
                Ordering::Greater => Some(v),
                _ => Some(b),
            },
        };
    }
    Ok(best)
}

/// The version of what is installed on a host.
#[derive(Clone, Debug, PartialEq)]
pub enum Installed {
    /// A release build with a parsable version.
    Release(Version),
    /// A development build: `dev`, empty, or any unparsable string (kept as given). It is never
    /// "up to date" and never updated without an explicit target version.
    Development(String),
}

impl Installed {
    /// Classify a version string reported by an installed binary or receipt. Never fails: what
    /// does not parse as a release version is a development build. Surrounding whitespace (a
    /// trailing newline from `flynn-host version`) is ignored.
    pub fn parse(s: &str) -> Installed {
        let t = s.trim();
        if t.is_empty() || t == "dev" {
            return Installed::Development(t.to_string());
        }
        match Version::parse(t) {
            Ok(v) => Installed::Release(v),
            Err(_) => Installed::Development(t.to_string()),
        }
    }

    /// Whether this is a development build.
    pub fn is_development(&self) -> bool {
        matches!(self, Installed::Development(_))
    }

    /// The release version, or `None` for a development build.
    pub fn version(&self) -> Option<&Version> {
        match self {
            Installed::Release(v) => Some(v),
            Installed::Development(_) => None,
        }
    }
}

impl fmt::Display for Installed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Installed::Release(v) => f.write_str(v.as_str()),
            Installed::Development(s) if s.is_empty() => f.write_str("dev"),
            Installed::Development(s) => f.write_str(s),
        }
    }
}

// ---- parsing ----------------------------------------------------------------------------------

/// Parse into a key; the error is the specific reason, wrapped by [`Version::parse`].
fn parse_key(s: &str) -> std::result::Result<Key, String> {
    let body = s.strip_prefix('v').unwrap_or(s);
    if body.is_empty() {
        return Err("it is empty".into());
    }
    // The numeric core decides the scheme: date schemes have a fixed shape, everything else is
    // handed to semver. Split off `+build` and `-suffix` only to look at the core's shape.
    let core_end = body.find(['-', '+']).unwrap_or(body.len());
    let core = &body[..core_end];
    let parts: Vec<&str> = core.split('.').collect();

    if parts.len() == 2 && parts[0].len() == 8 && all_digits(parts[0]) {
        return parse_flynn(parts[0], parts[1], &body[core_end..]);
    }
    if parts.len() == 4 && parts[0].len() == 4 && parts.iter().all(|p| all_digits(p)) {
        return parse_dotted(&parts, &body[core_end..]);
    }
    if parts.len() == 3 {
        return semver::Version::parse(body)
            .map(Key::Semver)
            .map_err(|e| format!("not valid semver ({e})"));
    }
    Err("it matches none of the accepted forms".into())
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A decimal number without leading zeros (so every version has one spelling) and short enough
/// to never overflow.
fn number(s: &str, what: &str) -> std::result::Result<u64, String> {
    if !all_digits(s) {
        return Err(format!("{what} {s:?} is not a number"));
    }
    if s.len() > MAX_DIGITS {
        return Err(format!("{what} has more than {MAX_DIGITS} digits"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("{what} {s:?} has a leading zero"));
    }
    s.parse::<u64>().map_err(|_| format!("{what} {s:?} is out of range"))
}

fn check_date(year: u32, month: u32, day: u32) -> std::result::Result<(), String> {
    if year == 0 {
        return Err("year 0000 is not a date".into());
    }
    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} is not between 01 and 12"));
    }
    if !(1..=31).contains(&day) {
        return Err(format!("day {day:02} is not between 01 and 31"));
    }
    Ok(())
}

/// `rest` is what follows the numeric core: empty or `-suffix`. Build metadata is a semver
/// concept only; on a date version it is rejected rather than silently ignored.
fn date_prerelease(rest: &str) -> std::result::Result<Prerelease, String> {
    if rest.is_empty() {
        return Ok(Prerelease::EMPTY);
    }
    if rest.contains('+') {
        return Err("build metadata (+...) is only allowed on semver versions".into());
    }
    let suffix = &rest[1..];
    if suffix.is_empty() {
        return Err("the -suffix after the version is empty".into());
    }
    Prerelease::new(suffix).map_err(|e| format!("invalid -suffix {suffix:?} ({e})"))
}

fn parse_flynn(date: &str, tail: &str, rest: &str) -> std::result::Result<Key, String> {
    // The 8 digits are checked by the caller, so these slices and parses cannot fail.
    let year: u32 = date[0..4].parse().map_err(|_| "bad year")?;
    let month: u32 = date[4..6].parse().map_err(|_| "bad month")?;
    let day: u32 = date[6..8].parse().map_err(|_| "bad day")?;
    check_date(year, month, day)?;
    let date_num: u32 = date.parse().map_err(|_| "bad date")?;

    let (dev, n, patch) = if let Some(dev_n) = tail.strip_prefix("dev") {
        (true, number(dev_n, "the dev build number")?, None)
    } else if let Some((n, p)) = tail.split_once('p') {
        let patch = number(p, "the patch number")?;
        (false, number(n, "the build number")?, Some(patch))
    } else {
        (false, number(tail, "the build number")?, None)
    };
    Ok(Key::Flynn {
        date: date_num,
        dev,
        n,
        patch,
        pre: date_prerelease(rest)?,
    })
}

fn parse_dotted(parts: &[&str], rest: &str) -> std::result::Result<Key, String> {
    if parts[1].len() != 2 || parts[2].len() != 2 {
        return Err("month and day must have two digits (v2024.01.27.0)".into());
    }
    let year: u32 = parts[0].parse().map_err(|_| "bad year")?;
    let month: u32 = parts[1].parse().map_err(|_| "bad month")?;
    let day: u32 = parts[2].parse().map_err(|_| "bad day")?;
    check_date(year, month, day)?;
    Ok(Key::Dotted {
        year,
        month,
        day,
        n: number(parts[3], "the build number")?,
        pre: date_prerelease(rest)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        match Version::parse(s) {
            Ok(v) => v,
            Err(e) => panic!("{s} should parse: {e}"),
        }
    }

    #[test]
    fn schemes_are_detected() {
        let cases = [
            ("v20161108.0", Scheme::FlynnDate, false),
            ("v20170116.0p1", Scheme::FlynnDate, false),
            ("v20180216.dev1", Scheme::FlynnDate, true),
            ("v20210218.0", Scheme::FlynnDate, false),
            ("20210218.0", Scheme::FlynnDate, false),
            ("v20210218.0-test", Scheme::FlynnDate, true),
            ("v2024.01.27.0", Scheme::DottedDate, false),
            ("2024.01.27.10", Scheme::DottedDate, false),
            ("v2024.01.27.0-test", Scheme::DottedDate, true),
            ("v1.2.3", Scheme::Semver, false),
            ("1.2.3", Scheme::Semver, false),
            ("v1.2.3-rc.1", Scheme::Semver, true),
            ("v1.2.3+build.5", Scheme::Semver, false),
        ];
        for (s, scheme, pre) in cases {
            let parsed = v(s);
            assert_eq!(parsed.scheme(), scheme, "{s}");
            assert_eq!(parsed.is_prerelease(), pre, "{s}");
            assert_eq!(parsed.as_str(), s, "original string kept");
            assert_eq!(parsed.to_string(), s, "Display is the original");
        }
    }

    #[test]
    fn invalid_versions_are_rejected_with_accepted_forms() {
        let cases = [
            "",
            "v",
            "dev",
            "latest",
            "v20241301.0",                   // month 13
            "v20240001.0",                   // month 0
            "v20240132.0",                   // day 32
            "v20240100.0",                   // day 0
            "v00000101.0",                   // year 0
            "v20240101",                     // no build number
            "v20240101.",                    // empty build number
            "v20240101.x",                   // not a number
            "v20240101.01",                  // leading zero
            "v20240101.0p",                  // empty patch
            "v20240101.dev",                 // dev without number
            "v20240101.0-",                  // empty suffix
            "v20240101.0+build",             // build metadata on a date version
            "v20240101.0-a..b",              // invalid pre-release identifier
            "v2024.1.27.0",                  // one-digit month
            "v2024.13.27.0",                 // month 13
            "v2024.01.27",                   // semver shape but leading zero
            "v2024.01.27.0.1",               // too many parts
            "v1.2",                          // semver needs three parts
            "v01.2.3",                       // semver leading zero
            "v20240101.1234567890123456789", // absurdly long
            "v2024.01.27.99999999999999999999999",
            "v99999999999999999999999.0.0",
        ];
        for s in cases {
            let e = match Version::parse(s) {
                Ok(parsed) => panic!("{s:?} should be rejected, got {parsed:?}"),
                Err(e) => e,
            };
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{s}");
            assert!(e.message().contains(&format!("{s:?}")), "{e}");
            assert!(e.message().contains("v20210218.0"), "lists forms: {e}");
            assert!(e.message().contains("v1.2.3"), "lists forms: {e}");
        }
    }

    #[test]
    fn ordering_rules() {
        use Ordering::*;
        let cases = [
            // Flynn date versions, including the real tags.
            ("v20161108.0", "v20170116.0", Less),
            ("v20170116.0p1", "v20170116.0", Greater),
            ("v20170116.0p2", "v20170116.0p1", Greater),
            ("v20170116.0p10", "v20170116.0p9", Greater),
            ("v20170116.1", "v20170116.0p5", Greater),
            ("v20180216.dev1", "v20180216.0", Less),
            ("v20180216.dev2", "v20180216.dev1", Greater),
            ("v20180216.dev9", "v20180215.0", Greater),
            ("v20210218.0", "v20180216.dev1", Greater),
            ("v20210218.10", "v20210218.9", Greater),
            ("20210218.0", "v20210218.0", Equal),
            ("v20210218.0-test", "v20210218.0", Less),
            ("v20210218.0-rc.2", "v20210218.0-rc.10", Less),
            ("v20210218.0-alpha", "v20210218.0-beta", Less),
            // Dotted dates.
            ("v2024.01.27.10", "v2024.01.27.9", Greater),
            ("v2024.02.01.0", "v2024.01.31.5", Greater),
            ("v2025.01.01.0", "v2024.12.31.0", Greater),
            ("v2024.01.27.0-test", "v2024.01.27.0", Less),
            ("v2024.01.27.0-rc.1", "v2024.01.27.0-rc.2", Less),
            ("v2024.01.27.0-rc.2", "v2024.01.27.0-rc.10", Less),
            ("v2024.01.27.1-rc.1", "v2024.01.27.0", Greater),
            ("v2024.01.27.0", "2024.01.27.0", Equal),
            // Semver.
            ("v1.2.3", "v1.2.4", Less),
            ("v1.10.0", "v1.9.0", Greater),
            ("v1.2.3-rc.1", "v1.2.3", Less),
            ("v1.2.3-rc.2", "v1.2.3-rc.10", Less),
            ("v1.2.3-alpha", "v1.2.3-alpha.1", Less),
            ("v1.2.3+build.1", "v1.2.3+build.2", Equal),
            ("v1.2.3+zzz", "v1.2.3", Equal),
            ("v2.0.0", "v1.99.99", Greater),
        ];
        for (a, b, want) in cases {
            let (va, vb) = (v(a), v(b));
            assert_eq!(va.compare(&vb).unwrap(), want, "{a} vs {b}");
            assert_eq!(vb.compare(&va).unwrap(), want.reverse(), "{b} vs {a}");
            assert_eq!(va.partial_cmp(&vb), Some(want), "{a} vs {b}");
            assert_eq!(va == vb, want == Equal, "{a} == {b}");
        }
    }

    #[test]
    fn cross_scheme_comparison_is_an_error() {
        let cases = [
            ("v20210218.0", "v2021.02.18.0"),
            ("v20210218.0", "v1.2.3"),
            ("v2024.01.27.0", "v1.2.3"),
            ("v20180216.dev1", "v1.0.0-rc.1"),
        ];
        for (a, b) in cases {
            let (va, vb) = (v(a), v(b));
            let e = va.compare(&vb).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::VersionMismatch);
            assert!(e.message().contains(a) && e.message().contains(b), "{e}");
            assert_eq!(va.partial_cmp(&vb), None);
            assert!(va != vb);
            // The operators agree: incomparable versions are neither less, greater nor equal.
            assert_eq!((va < vb, va > vb, va <= vb, va >= vb), (false, false, false, false));
        }
    }

    /// A small deterministic shuffle (xorshift), so the test needs no extra dependency.
    fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
        let mut out = items.to_vec();
        let mut x = seed | 1;
        for i in (1..out.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.swap(i, (x % (i as u64 + 1)) as usize);
        }
        out
    }

    #[test]
    fn sorting_shuffled_lists_gives_the_expected_order() {
        let lists: [&[&str]; 3] = [
            &[
                "v20161108.0",
                "v20170116.0",
                "v20170116.0p1",
                "v20170116.0p2",
                "v20170116.1",
                "v20180216.dev1-a",
                "v20180216.dev1",
                "v20180216.dev2",
                "v20180216.0-rc.1",
                "v20180216.0-rc.2",
                "v20180216.0",
                "v20210218.0",
                "v20210218.9",
                "v20210218.10",
            ],
            &[
                "v2023.12.31.0",
                "v2024.01.27.0-rc.1",
                "v2024.01.27.0-rc.2",
                "v2024.01.27.0-rc.10",
                "v2024.01.27.0-test",
                "v2024.01.27.0",
                "v2024.01.27.2",
                "v2024.01.27.9",
                "v2024.01.27.10",
                "v2024.02.01.0",
            ],
            &[
                "v0.9.0",
                "v1.0.0-alpha",
                "v1.0.0-alpha.1",
                "v1.0.0-beta.2",
                "v1.0.0-beta.11",
                "v1.0.0-rc.1",
                "v1.0.0",
                "v1.2.0",
                "v1.10.0",
                "v2.0.0",
            ],
        ];
        for expected in lists {
            for seed in 1..50u64 {
                let mut versions: Vec<Version> = shuffled(expected, seed).iter().map(|s| v(s)).collect();
                versions.sort_by(|a, b| a.compare(b).unwrap());
                let got: Vec<&str> = versions.iter().map(Version::as_str).collect();
                assert_eq!(got, expected, "seed {seed}");
                let top = newest(&versions).unwrap().unwrap();
                assert_eq!(top.as_str(), *expected.last().unwrap());
            }
        }
    }

    #[test]
    fn newest_of_lists() {
        assert!(newest(&[]).unwrap().is_none());
        let list = [v("v20210218.0"), v("v20170116.0p1"), v("v20210218.1")];
        assert_eq!(newest(&list).unwrap().unwrap().as_str(), "v20210218.1");
        // v10 after v9: the string-comparison bug of the original design.
        let list = [v("v1.10.0"), v("v1.9.0")];
        assert_eq!(newest(&list).unwrap().unwrap().as_str(), "v1.10.0");
        let mixed = [v("v20210218.0"), v("v1.0.0")];
        assert_eq!(newest(&mixed).unwrap_err().kind(), ErrorKind::VersionMismatch);
    }

    #[test]
    fn from_str_and_serde_use_the_string() {
        let parsed: Version = "v20170116.0p1".parse().unwrap();
        assert_eq!(parsed.as_str(), "v20170116.0p1");
        assert_eq!("nope".parse::<Version>().unwrap_err().kind(), ErrorKind::InvalidData);
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(json, "\"v20170116.0p1\"");
        let back: Version = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_str(), "v20170116.0p1");
        assert!(serde_json::from_str::<Version>("\"v2024.13.01.0\"").is_err());
        assert_eq!(serde_json::to_string(&Scheme::FlynnDate).unwrap(), "\"flynn_date\"");
        assert_eq!(serde_json::to_string(&Scheme::DottedDate).unwrap(), "\"dotted_date\"");
        assert_eq!(serde_json::to_string(&Scheme::Semver).unwrap(), "\"semver\"");
    }

    #[test]
    fn installed_classifies_development_builds() {
        for s in ["dev", "", "  ", "garbage", "v20241301.0", "1.2"] {
            let i = Installed::parse(s);
            assert!(i.is_development(), "{s:?}");
            assert!(i.version().is_none());
        }
        let i = Installed::parse("v20210218.0\n");
        assert!(!i.is_development());
        assert_eq!(i.version().unwrap().as_str(), "v20210218.0");
        assert_eq!(i.to_string(), "v20210218.0");
        assert_eq!(Installed::parse("").to_string(), "dev");
    }
}
