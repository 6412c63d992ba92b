//! Update channels: which release a host should run.
//!
//! The choice is made by version order (docs/versions.md#channels), never by GitHub's "latest" marker and never by
//! comparing tag strings: `/releases/latest` is whatever was published last or marked latest,
//! which for a backport is lower than the newest release, and following it would downgrade.

use std::fmt;
use std::str::FromStr;

use super::client::Client;
use super::types::Release;
use crate::error::{Error, ErrorKind, Result};
use crate::model::checksums::sha512_hex;
use crate::model::pointer::{self, ChannelPointer, POINTER_BRANCH};
use crate::model::release::CHECKSUMS_ASSET;
use crate::model::signature::{self, SIGNATURE_ASSET, TrustedKey};
use crate::model::version::{Scheme, Version};
use std::time::SystemTime;

/// An update channel; the default is `stable`, for a host that names none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The highest non-draft release that is not marked pre-release on GitHub and whose version
    /// has no pre-release part.
    #[default]
    Stable,
    /// The highest non-draft release, pre-releases included.
    Nightly,
}

impl Channel {
    /// `"stable"` or `"nightly"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Nightly => "nightly",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Channel> {
        match s.trim() {
            "stable" => Ok(Channel::Stable),
            "nightly" => Ok(Channel::Nightly),
            other => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("unknown channel {other:?}: use stable or nightly"),
            )),
        }
    }
}

/// The version of `r` when it belongs to `channel`: not a draft, tagged with a version, and for
/// `stable` neither marked pre-release on GitHub nor a pre-release version. `None` otherwise.
pub fn in_channel(r: &Release, channel: Channel) -> Option<Version> {
    if r.draft {
        return None;
    }
    let v = Version::parse(&r.tag_name).ok()?;
    if channel == Channel::Stable && (r.prerelease || v.is_prerelease()) {
        return None;
    }
    Some(v)
}

/// The newest release of `channel` among `releases`, by version order.
///
/// Drafts, assets-less tags and tags that are not versions are ignored. When `scheme` is given
/// (the installed version's scheme) only releases of that scheme count; otherwise releases of
/// several schemes are an error (`VersionMismatch`), since they cannot be ordered.
pub fn select_channel(
    releases: &[Release],
    channel: Channel,
    scheme: Option<Scheme>,
) -> Result<Option<(&Release, Version)>> {
    let mut best: Option<(&Release, Version)> = None;
    for r in releases {
        let Some(v) = in_channel(r, channel) else {
            continue;
        };
        if scheme.is_some_and(|s| s != v.scheme()) {
            continue;
        }
        best = match best {
            None => Some((r, v)),
            Some((br, bv)) => {
                if v.scheme() != bv.scheme() {
                    return Err(Error::new(
                        ErrorKind::VersionMismatch,
                        format!(
                            "releases use different version schemes ({} and {}); they cannot be \
                             ordered: name the version to install",
                            bv, v
                        ),
                    )
                    .with_hint(crate::Hint::ChooseVersion));
                }
                if v.compare(&bv)?.is_gt() {
                    Some((r, v))
                } else {
                    Some((br, bv))
                }
            }
        };
    }
    Ok(best)
}

impl Client {
    /// The newest release of `channel` (see [`select_channel`]). `NotFound` when the repository
    /// has none.
    pub fn channel_release(&self, channel: Channel, scheme: Option<Scheme>) -> Result<(Release, Version)> {
        let releases = self.releases()?;
        match select_channel(&releases, channel, scheme)? {
            Some((r, v)) => Ok((r.clone(), v)),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} has no {channel} release{} at {}; publish one or choose another channel or repository",
                    self.repository(),
                    scheme
                        .map(|s| format!(" of the installed version's scheme ({s:?})"))
                        .unwrap_or_default(),
                    self.options().api_url
                ),
            )
            .with_hint(crate::Hint::CheckRepository)),
        }
    }
}

/// A channel pointer fetched and verified, with the URL it came from.
#[derive(Debug, Clone)]
pub struct FetchedPointer {
    /// The verified pointer.
    pub pointer: ChannelPointer,
    /// Its URL on the web host.
    pub source: String,
}

impl Client {
    /// Fetches `channels/<channel>.json` and its `.minisig` from the repository's
    /// [`POINTER_BRANCH`] through the web host (`{web_url}/OWNER/NAME/raw/<branch>/…`: no API
    /// request) and verifies them with `key` at `now` ([`pointer::verify`]). `Ok(None)` when the
    /// channel has no pointer; a pointer without its signature is `SignatureInvalid`.
    pub fn channel_pointer(
        &self,
        channel: Channel,
        key: &TrustedKey,
        now: SystemTime,
    ) -> Result<Option<FetchedPointer>> {
        let path = pointer::pointer_path(channel.as_str());
        let tail = format!("raw/{POINTER_BRANCH}/{path}");
        let Some((json, url)) = self.get_web_file(&tail, pointer::MAX_POINTER_BYTES)? else {
            return Ok(None);
        };
        let source = url.to_string();
        let sig_tail = format!("raw/{POINTER_BRANCH}/{}", pointer::signature_path(channel.as_str()));
        let sig = match self.get_web_file(&sig_tail, pointer::MAX_POINTER_BYTES)? {
            Some((s, _)) => String::from_utf8(s).map_err(|_| {
                Error::new(
                    ErrorKind::SignatureInvalid,
                    format!("the signature of {source} is not text"),
                )
            })?,
            None => {
                return Err(Error::new(
                    ErrorKind::SignatureInvalid,
                    format!(
                        "channel pointer {source} has no signature ({}.minisig is missing) but a public key is \
                         configured; refusing an unsigned pointer",
                        path
                    ),
                ));
            }
        };
        let pointer = pointer::verify(key, &json, &sig, &source, &self.repository(), channel.as_str(), now)?;
        Ok(Some(FetchedPointer { pointer, source }))
    }

    /// Checks that the release a verified pointer names exists, is signed by `key` for this
    /// repository and version, and has exactly the `checksums.sha512` the pointer binds. Reads
    /// `checksums.sha512` and its `.minisig` through the web host's download URLs (no API
    /// request). `NotFound` (no such release or no checksums), `SignatureInvalid` (unsigned or
    /// badly signed), `ChecksumMismatch` (another checksums file than the pointer's).
    pub fn verify_pointer_release(&self, fetched: &FetchedPointer, key: &TrustedKey) -> Result<()> {
        let p = &fetched.pointer;
        let cap = 4 << 20;
        let tail = format!("releases/download/{}/{CHECKSUMS_ASSET}", p.version);
        let Some((sums, url)) = self.get_web_file(&tail, cap)? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "channel pointer {} names version {}, but {} has no such release with a {CHECKSUMS_ASSET} \
                     (at {}/{}/{tail}); refusing it: promote a published release",
                    fetched.source,
                    p.version,
                    self.repository(),
                    self.options().web_url.trim_end_matches('/'),
                    self.repository()
                ),
            ));
        };
        let sig_tail = format!("releases/download/{}/{SIGNATURE_ASSET}", p.version);
        let Some((sig, sig_url)) = self.get_web_file(&sig_tail, cap)? else {
            return Err(Error::new(
                ErrorKind::SignatureInvalid,
                format!(
                    "channel pointer {} names version {}, which is not signed (no {SIGNATURE_ASSET}); refusing it",
                    fetched.source, p.version
                ),
            ));
        };
        let sig = String::from_utf8(sig)
            .map_err(|_| Error::new(ErrorKind::SignatureInvalid, format!("{sig_url} is not text")))?;
        signature::verify_checksums(key, &sums, &sig, sig_url.as_str(), &self.repository(), &p.version)?;
        let got = sha512_hex(&sums);
        if got != p.checksums_sha512 {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "channel pointer {} binds {} to a {CHECKSUMS_ASSET} with sha512 {}, but {url} has sha512 {got}; \
                     refusing it",
                    fetched.source, p.version, p.checksums_sha512
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(tag: &str, prerelease: bool, draft: bool) -> Release {
        Release {
            url: String::new(),
            html_url: String::new(),
            id: 1,
            tag_name: tag.into(),
            name: None,
            body: None,
            draft,
            prerelease,
            created_at: None,
            published_at: None,
            assets: vec![],
        }
    }

    #[test]
    fn stable_is_highest_by_version_not_by_string_or_order() {
        // As GitHub lists them: newest first by creation. The backport v2024.01.27.9 was
        // created last; v2024.01.27.10 is the highest version.
        let rs = vec![
            rel("v2024.01.27.9", false, false),
            rel("v2024.01.27.10", false, false),
            rel("v2024.01.27.11-rc.1", false, false),
            rel("v2024.01.28.0", true, false),
            rel("v2024.02.01.0", false, true),
            rel("not-a-version", false, false),
        ];
        let (r, _) = select_channel(&rs, Channel::Stable, None).unwrap().unwrap();
        assert_eq!(r.tag_name, "v2024.01.27.10");
        let (r, _) = select_channel(&rs, Channel::Nightly, None).unwrap().unwrap();
        assert_eq!(r.tag_name, "v2024.01.28.0");
    }

    #[test]
    fn mixed_schemes_need_a_hint() {
        let rs = vec![rel("v1.2.3", false, false), rel("v20210218.0", false, false)];
        let e = select_channel(&rs, Channel::Stable, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::VersionMismatch);
        let (r, _) = select_channel(&rs, Channel::Stable, Some(Scheme::FlynnDate))
            .unwrap()
            .unwrap();
        assert_eq!(r.tag_name, "v20210218.0");
        let (r, _) = select_channel(&rs, Channel::Stable, Some(Scheme::Semver))
            .unwrap()
            .unwrap();
        assert_eq!(r.tag_name, "v1.2.3");
    }

    #[test]
    fn none_when_nothing_qualifies() {
        let rs = vec![rel("v1.0.0", true, false), rel("v2.0.0", false, true)];
        assert!(select_channel(&rs, Channel::Stable, None).unwrap().is_none());
        assert!(select_channel(&[], Channel::Nightly, None).unwrap().is_none());
    }

    #[test]
    fn channel_names() {
        assert_eq!("stable".parse::<Channel>().unwrap(), Channel::Stable);
        assert_eq!("nightly".parse::<Channel>().unwrap(), Channel::Nightly);
        assert_eq!(
            "beta".parse::<Channel>().unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
