//! What a client is configured with, and the URL rules every request obeys: `https` only (plain
//! `http` only to loopback), repositories as `OWNER/NAME`, redirects resolved and checked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::error::{Error, ErrorKind, Result};

/// A sink for diagnostic lines (`-v`). Lines never contain the token.
pub type LogFn = Arc<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("repository", &self.repository)
            .field("api_url", &self.api_url)
            .field("web_url", &self.web_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("retries", &self.retries)
            .field("etag_cache", &self.etag_cache)
            .finish_non_exhaustive()
    }
}

/// GitHub's public API base.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The repository when nothing names one: upstream Flynn.
pub const DEFAULT_REPOSITORY: &str = "flynn/flynn";
/// GitHub's public web base.
pub const DEFAULT_WEB_URL: &str = "https://github.com";
/// Environment variables holding a token, in the order they are consulted.
pub const TOKEN_ENV_VARS: [&str; 3] = ["FLYNN_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"];
/// The REST API version this client speaks.
pub const API_VERSION: &str = "2022-11-28";

/// The first non-empty token of [`TOKEN_ENV_VARS`], if any.
pub fn token_from_env() -> Option<String> {
    TOKEN_ENV_VARS
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
}

/// How a [`Client`] talks to GitHub.
#[derive(Clone)]
pub struct ClientOptions {
    /// `OWNER/NAME`.
    pub repository: String,
    /// API base: `https://api.github.com`, `https://HOST/api/v3` for GitHub Enterprise, or a mirror.
    pub api_url: String,
    /// Web base (used for messages and `browser_download_url` checks).
    pub web_url: String,
    /// A token for the API host only. `None` means anonymous.
    pub token: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for a response or for the next bytes of a body.
    pub read_timeout: Duration,
    /// Retries after the first attempt on 5xx and connection errors.
    pub retries: u32,
    /// A download that brings fewer bytes than this in a whole `read_timeout` window has stalled
    /// (a slow drip) and is cut off like a broken connection.
    pub min_bytes_per_window: u64,
    /// First backoff delay; doubles per retry, capped at 10 s.
    pub retry_delay: Duration,
    /// Cap on a JSON response body.
    pub max_json_bytes: u64,
    /// Cap on the number of pages followed when listing.
    pub max_pages: u32,
    /// Releases asked for per page on the first list request (GitHub allows up to 100); later
    /// pages come from the `Link` header as given.
    pub per_page: u32,
    /// Where `-v` diagnostics go.
    pub log: Option<LogFn>,
    /// The persistent ETag cache file (docs/host-layout.md#the-etag-cache); `None` keeps the
    /// cache in memory only. The operations with a host layout set it to
    /// `<config-dir>/cache/github-etags.json`.
    pub etag_cache: Option<PathBuf>,
    /// How much the ETag cache may hold.
    pub etag_cache_limits: super::etag_cache::CacheLimits,
}

impl ClientOptions {
    /// Defaults for `repository` on github.com, anonymous.
    pub fn new(repository: impl Into<String>) -> ClientOptions {
        ClientOptions {
            repository: repository.into(),
            api_url: DEFAULT_API_URL.to_string(),
            web_url: DEFAULT_WEB_URL.to_string(),
            token: None,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            retries: 4,
            min_bytes_per_window: 1024,
            retry_delay: Duration::from_millis(500),
            max_json_bytes: 32 << 20,
            max_pages: 100,
            per_page: 100,
            log: None,
            etag_cache: None,
            etag_cache_limits: super::etag_cache::CacheLimits::default(),
        }
    }
}

/// Checks `OWNER/NAME` the way GitHub names repositories.
pub fn validate_repository(repo: &str) -> Result<(String, String)> {
    let bad = || {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "invalid repository {repo:?}: expected OWNER/NAME such as flynn/flynn \
                 (letters, digits, '-', '_', '.')"
            ),
        )
        .with_hint(crate::Hint::CheckRepository)
    };
    let (owner, name) = repo.split_once('/').ok_or_else(bad)?;
    let owner_ok = !owner.is_empty()
        && owner.len() <= 39
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !owner.starts_with('-');
    let name_ok = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if owner_ok && name_ok {
        Ok((owner.to_string(), name.to_string()))
    } else {
        Err(bad())
    }
}

/// True for hosts on this machine: `localhost`, 127.0.0.0/8 and `::1`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses `url` and refuses anything but `https`, or `http` to loopback.
pub fn parse_allowed_url(url: &str, what: &str) -> Result<Url> {
    let parsed = Url::parse(url).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("invalid {what} {url:?}: {e}; give an absolute https:// URL"),
        )
    })?;
    check_allowed(&parsed, what)?;
    Ok(parsed)
}

pub(crate) fn check_allowed(url: &Url, what: &str) -> Result<()> {
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(Error::new(
            ErrorKind::InsecureUrl,
            format!(
                "refusing plain http {what} {url}: only https is allowed (plain http only to \
                 loopback); use an https:// URL"
            ),
        )),
        _ => Err(Error::new(
            ErrorKind::InsecureUrl,
            format!("refusing {what} {url}: unsupported URL scheme; use an https:// URL"),
        )),
    }
}

/// Where a redirect from `from` with `Location: location` leads: resolved against `from`, and
/// refused (`InsecureUrl`) when it would leave https for http or go to a URL that is not allowed
/// (plain http to a non-loopback host). `InvalidData` for an unparsable location.
pub fn redirect_target(from: &Url, location: &str) -> Result<Url> {
    let next = from.join(location).map_err(|e| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{from} redirected to an invalid Location {location:?}: {e}"),
        )
    })?;
    if from.scheme() == "https" && next.scheme() != "https" {
        return Err(Error::new(
            ErrorKind::InsecureUrl,
            format!("refusing redirect from {from} to non-https {next}"),
        ));
    }
    check_allowed(&next, "redirect target")?;
    Ok(next)
}

pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The web base for an API base: github.com for api.github.com, `https://HOST` for GitHub
/// Enterprise's `https://HOST/api/v3`, else `fallback`.
pub fn web_url_for(api_url: &str, fallback: &str) -> String {
    let trimmed = api_url.trim_end_matches('/');
    if trimmed == DEFAULT_API_URL {
        return DEFAULT_WEB_URL.to_string();
    }
    match trimmed.strip_suffix("/api/v3") {
        Some(host) => host.to_string(),
        None => fallback.to_string(),
    }
}
