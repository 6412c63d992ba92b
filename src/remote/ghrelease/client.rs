//! The blocking GitHub Releases client.
//!
//! Every request goes through one place ([`Client::send`]) so that the security rules hold for
//! all of them: only `https` (plain `http` only to loopback), the token only to the exact API
//! origin and never to a redirect target on another origin, redirects followed by hand with a hop
//! limit and loop detection, bounded retries with backoff on 5xx and connection errors, rate limits
//! turned into a distinct error that says when to retry, and a size cap on every JSON body.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::blocking::{Client as HttpClient, RequestBuilder, Response};
use reqwest::header::{self, HeaderMap};
use reqwest::{StatusCode, Url};

use super::etag_cache::{self, Entry};
use super::link;
use super::options::{
    API_VERSION, ClientOptions, check_allowed, parse_allowed_url, redirect_target, same_origin, validate_repository,
};
use super::types::{Asset, Release};
use crate::error::{Error, ErrorKind, Result};

/// The ETag cache as this process sees it: in memory always; loaded from and saved to the
/// persistent file ([`ClientOptions::etag_cache`]) when there is one (see [`etag_cache`]).
#[derive(Default)]
struct EtagState {
    entries: HashMap<String, Entry>,
    /// The persistent file has been read (it is read once, at the first API request).
    loaded: bool,
    /// URLs whose entry this process stored or used: what a save writes back.
    touched: HashSet<String>,
    /// URLs whose cached body this process used on a `304`: what a failed operation forgets.
    hits: HashSet<String>,
    /// The last `used` stamp given, so stamps increase within a process.
    last_used: u64,
}

impl EtagState {
    fn stamp(&mut self) -> u64 {
        self.last_used = etag_cache::now_ms().max(self.last_used + 1);
        self.last_used
    }
}

/// An open asset download: the final response after redirects.
pub struct Download {
    /// The response whose body is the asset bytes (or the rest of them, for a resumed request).
    pub response: Response,
    /// The URL that served the bytes (after redirects).
    pub url: Url,
    /// The length of this response's body, when the server said.
    pub content_length: Option<u64>,
    /// For a `206` answer to a `Range` request: the offset the body starts at.
    pub resumed_from: Option<u64>,
    /// The server advertised `Accept-Ranges: bytes`.
    pub accept_ranges: bool,
}

impl Download {
    /// A `200` or `206` answer as an open download of `what` (its `Content-Length`,
    /// `Accept-Ranges`, and for a `206` the offset its `Content-Range` starts at: `InvalidData`
    /// when that is missing or invalid). Any other status gives the response back for the caller
    /// to word the error.
    pub(crate) fn from_response(resp: Response, what: &str) -> Result<std::result::Result<Download, Response>> {
        let status = resp.status();
        if status != StatusCode::OK && status != StatusCode::PARTIAL_CONTENT {
            return Ok(Err(resp));
        }
        let url = resp.url().clone();
        let headers = resp.headers();
        let accept_ranges = headers
            .get(header::ACCEPT_RANGES)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
        let content_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let resumed_from = match status {
            StatusCode::PARTIAL_CONTENT => Some(
                headers
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range_start)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidData,
                            format!("{url} answered 206 without a valid Content-Range for {what}"),
                        )
                    })?,
            ),
            _ => None,
        };
        Ok(Ok(Download {
            response: resp,
            url,
            content_length,
            resumed_from,
            accept_ranges,
        }))
    }
}

/// A GitHub Releases client for one repository. Cheap to share across threads (`Sync`): the
/// ETag cache is behind a mutex.
pub struct Client {
    opts: ClientOptions,
    owner: String,
    name: String,
    api: Url,
    http: HttpClient,
    etags: Mutex<EtagState>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

const MAX_REDIRECTS: usize = 10;

impl Client {
    /// A client for `opts.repository`. Fails with `InvalidArgument` for a bad repository or URL,
    /// `InsecureUrl` for plain http to a non-loopback host.
    pub fn new(opts: ClientOptions) -> Result<Client> {
        let (owner, name) = validate_repository(&opts.repository)?;
        let api = parse_allowed_url(opts.api_url.trim_end_matches('/'), "API URL")
            .map_err(|e| e.with_hint(crate::Hint::CheckApiUrl))?;
        parse_allowed_url(&opts.web_url, "web URL").map_err(|e| {
            e.with_hint(crate::Hint::SetOptions {
                options: vec![crate::HintOption::WebUrl],
            })
        })?;
        let http = HttpClient::builder()
            .user_agent(concat!("flynnrel/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.read_timeout)
            .build()
            .map_err(|e| Error::new(ErrorKind::Network, format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            opts,
            owner,
            name,
            api,
            http,
            etags: Mutex::new(EtagState::default()),
        })
    }

    /// A client with the same options that keeps its ETag cache in the file `path` (the
    /// operations use `<config-dir>/cache/github-etags.json`, see [`etag_cache::path_in`]).
    pub fn with_etag_cache(&self, path: PathBuf) -> Result<Client> {
        let mut o = self.opts.clone();
        o.etag_cache = Some(path);
        Client::new(o)
    }

    /// Ends an operation's use of the persistent ETag cache: when it `succeeded`, what this
    /// client learned and used is merged into the file; when it failed, nothing is added and the
    /// entries whose cached bodies it used are removed from the file, so a body that led to a
    /// refusal is fetched afresh next time instead of being offered again. Never fails: a cache
    /// that cannot be written is logged (`-v`) and otherwise ignored. Does nothing without
    /// [`ClientOptions::etag_cache`].
    pub fn finish_etag_cache(&self, succeeded: bool) {
        let Some(path) = &self.opts.etag_cache else { return };
        let limits = self.opts.etag_cache_limits;
        let Ok(mut st) = self.etags.lock() else { return };
        let result = if succeeded {
            let fresh: HashMap<String, Entry> = st
                .touched
                .iter()
                .filter_map(|u| st.entries.get(u).map(|e| (u.clone(), e.clone())))
                .collect();
            if fresh.is_empty() {
                Ok(())
            } else {
                etag_cache::save(path, &fresh, limits)
            }
        } else if st.hits.is_empty() || !path.is_file() {
            Ok(())
        } else {
            etag_cache::forget(path, &st.hits, limits)
        };
        st.touched.clear();
        st.hits.clear();
        drop(st);
        if let Err(e) = result {
            self.log(|| format!("etag_cache=not_written path={} error={:?}", path.display(), e.message()));
        }
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// `OWNER/NAME`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn log(&self, line: impl FnOnce() -> String) {
        if let Some(log) = &self.opts.log {
            log(&line());
        }
    }

    fn repo_url(&self, tail: &str) -> Result<Url> {
        let s = format!(
            "{}/repos/{}/{}/{tail}",
            self.api.as_str().trim_end_matches('/'),
            self.owner,
            self.name
        );
        Url::parse(&s).map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("cannot build API URL {s:?}: {e}")))
    }

    /// The release GitHub marks as latest (`/releases/latest`). Note that this can be lower than
    /// the newest release (a backport published later): use [`Client::channel_release`] to choose
    /// what to install.
    pub fn latest_release(&self) -> Result<Release> {
        let url = self.repo_url("releases/latest")?;
        self.get_json(&url, "the latest release")
    }

    /// The release tagged exactly `tag`. `NotFound` names the tag and repository.
    pub fn release_by_tag(&self, tag: &str) -> Result<Release> {
        if tag.is_empty() || tag.contains(['/', '?', '#', '%']) || tag.chars().any(char::is_control) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("invalid release tag {tag:?}: a tag is a version such as v20240127.0"),
            ));
        }
        let url = self.repo_url(&format!("releases/tags/{tag}"))?;
        self.get_json(&url, &format!("release {tag}"))
    }

    /// Every non-draft release, following `Link: rel="next"` until the last page.
    pub fn releases(&self) -> Result<Vec<Release>> {
        let mut url = self.repo_url(&format!("releases?per_page={}", self.opts.per_page.clamp(1, 100)))?;
        let mut all: Vec<Release> = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..self.opts.max_pages {
            if !seen.insert(url.to_string()) {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("pagination loop at {url}: the server's Link header points back to a page already read"),
                ));
            }
            let (page, headers): (Vec<Release>, HeaderMap) = self.get_parsed(&url, RELEASE_LIST)?;
            all.extend(page.into_iter().filter(|r| !r.draft));
            let next = headers
                .get(header::LINK)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| link::find_rel(h, "next"));
            match next {
                None => return Ok(all),
                Some(next) => {
                    url = Url::parse(&next).map_err(|e| {
                        Error::new(
                            ErrorKind::InvalidData,
                            format!("bad Link next URL {next:?} from {url}: {e}"),
                        )
                    })?;
                    check_allowed(&url, "pagination URL")?;
                }
            }
        }
        Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "{} has more than {} pages of releases; refusing to read more",
                self.repository(),
                self.opts.max_pages
            ),
        ))
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, url: &Url, what: &str) -> Result<T> {
        Ok(self.get_parsed(url, what)?.0)
    }

    /// GET and parse an API URL. A cached body (used on a `304`) is parsed exactly as a fresh
    /// one is; one that does not parse is dropped from the cache and the URL is fetched again
    /// without `If-None-Match`, once.
    fn get_parsed<T: serde::de::DeserializeOwned>(&self, url: &Url, what: &str) -> Result<(T, HeaderMap)> {
        let (body, headers, from_cache) = self.get_raw(url, what, true)?;
        match parse_json(&body, url) {
            Ok(v) => Ok((v, headers)),
            Err(_) if from_cache => {
                self.log(|| format!("http cache=unparsable url={url}; fetching it again"));
                if let Ok(mut st) = self.etags.lock() {
                    st.entries.remove(url.as_str());
                    st.touched.remove(url.as_str());
                    st.hits.insert(url.to_string());
                }
                let (body, headers, _) = self.get_raw(url, what, false)?;
                Ok((parse_json(&body, url)?, headers))
            }
            Err(e) => Err(e),
        }
    }

    /// The cached entry for `url`, reading the persistent cache the first time.
    fn cached(&self, url: &Url) -> Option<Entry> {
        let mut st = self.etags.lock().ok()?;
        if !st.loaded {
            st.loaded = true;
            if let Some(path) = &self.opts.etag_cache {
                st.entries = etag_cache::load(path, self.opts.etag_cache_limits);
            }
        }
        st.entries.get(url.as_str()).cloned()
    }

    /// GET an API URL with the ETag cache (when `conditional`), retries and the body cap;
    /// returns body, headers and whether the body is the cached one (the server answered 304).
    fn get_raw(&self, url: &Url, what: &str, conditional: bool) -> Result<(Arc<Vec<u8>>, HeaderMap, bool)> {
        let cached = if conditional { self.cached(url) } else { None };
        let resp = self.send(url, what, |req| {
            let req = req
                .header(header::ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", API_VERSION);
            match &cached {
                Some(e) => req.header(header::IF_NONE_MATCH, e.etag.as_str()),
                None => req,
            }
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if status == StatusCode::NOT_MODIFIED {
            if let Some(e) = cached {
                self.log(|| format!("http cache=hit url={url}"));
                if let Ok(mut st) = self.etags.lock() {
                    let used = st.stamp();
                    if let Some(entry) = st.entries.get_mut(url.as_str()) {
                        entry.used = used;
                    }
                    st.touched.insert(url.to_string());
                    st.hits.insert(url.to_string());
                }
                return Ok((e.body, headers, true));
            }
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!("{url} answered 304 Not Modified to a request without a cached copy"),
            ));
        }
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::HttpStatus,
                format!("unexpected HTTP {status} for {what} at {url}"),
            ));
        }
        let body = Arc::new(read_capped(resp, self.opts.max_json_bytes, url)?);
        let etag = headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|e| etag_cache::valid_etag(e) && body.len() as u64 <= self.opts.etag_cache_limits.max_bytes);
        if let (Some(etag), Ok(mut st)) = (etag, self.etags.lock()) {
            let used = st.stamp();
            st.entries.insert(
                url.to_string(),
                Entry {
                    etag: etag.to_string(),
                    body: body.clone(),
                    used,
                },
            );
            st.touched.insert(url.to_string());
            let limits = self.opts.etag_cache_limits;
            etag_cache::evict(&mut st.entries, limits);
        }
        Ok((body, headers, false))
    }

    /// Opens the bytes of `asset`, starting at `offset` (a `Range` request when non-zero).
    ///
    /// With a token, the asset's API URL is used with `Accept: application/octet-stream` (works
    /// for private repositories); otherwise its `browser_download_url`. Either way the redirect to
    /// the storage host is followed without the token.
    pub fn open_asset(&self, asset: &Asset, offset: u64) -> Result<Download> {
        let (start, accept) = if self.opts.token.is_some() {
            (asset.url.as_str(), "application/octet-stream")
        } else {
            (asset.browser_download_url.as_str(), "application/octet-stream")
        };
        let url = parse_allowed_url(start, "asset URL")?;
        let what = format!("asset {}", asset.name);
        let resp = self.send(&url, &what, |req| {
            let req = req.header(header::ACCEPT, accept);
            if offset > 0 {
                req.header(header::RANGE, format!("bytes={offset}-"))
            } else {
                req
            }
        })?;
        match Download::from_response(resp, &what)? {
            Ok(d) => Ok(d),
            Err(resp) => Err(Error::new(
                ErrorKind::HttpStatus,
                format!(
                    "unexpected HTTP {} downloading {} from {}",
                    resp.status(),
                    asset.name,
                    resp.url()
                ),
            )),
        }
    }

    /// GETs `{web_url}/OWNER/NAME/{tail}` from the web host (never the API: it costs no API
    /// request and carries no token), following its redirect to the storage host. `Ok(None)` for
    /// a 404; at most `cap` bytes. Channel pointers (`raw/<branch>/channels/<name>.json`) and a
    /// release's small files (`releases/download/<tag>/<name>`) are read this way.
    pub fn get_web_file(&self, tail: &str, cap: u64) -> Result<Option<(Vec<u8>, Url)>> {
        let s = format!(
            "{}/{}/{}/{tail}",
            self.opts.web_url.trim_end_matches('/'),
            self.owner,
            self.name
        );
        let url = parse_allowed_url(&s, "web URL")?;
        match self.send(&url, &s, |req| req.header(header::ACCEPT, "application/octet-stream")) {
            Ok(resp) => {
                let final_url = resp.url().clone();
                if resp.status() != StatusCode::OK {
                    return Err(Error::new(
                        ErrorKind::HttpStatus,
                        format!("unexpected HTTP {} for {s}", resp.status()),
                    ));
                }
                Ok(Some((read_capped(resp, cap, &final_url)?, url)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a GET to `url`, following redirects by hand and retrying transient failures.
    /// `decorate` adds the request-specific headers at every hop. Returns the final response,
    /// which is 2xx or 304; every other outcome is an error naming the URL.
    fn send(&self, url: &Url, what: &str, decorate: impl Fn(RequestBuilder) -> RequestBuilder) -> Result<Response> {
        let mut attempt: u32 = 0;
        loop {
            match self.send_once(url, what, &decorate) {
                Ok(resp) => return Ok(resp),
                Err(t) if !t.retryable => return Err(t.error),
                Err(t) if attempt < self.opts.retries => {
                    let delay = t.retry_after.unwrap_or_else(|| self.backoff(attempt));
                    attempt += 1;
                    self.log(|| {
                        format!(
                            "http retry={attempt} delay_ms={} reason={:?}",
                            delay.as_millis(),
                            t.error.message()
                        )
                    });
                    std::thread::sleep(delay);
                }
                Err(t) => {
                    let tries = attempt + 1;
                    return Err(Error::new(
                        t.error.kind(),
                        format!(
                            "{} (gave up after {tries} attempt{})",
                            t.error.message(),
                            if tries == 1 { "" } else { "s" }
                        ),
                    ));
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(8);
        (self.opts.retry_delay * factor).min(Duration::from_secs(10))
    }

    fn send_once(
        &self,
        start: &Url,
        what: &str,
        decorate: &dyn Fn(RequestBuilder) -> RequestBuilder,
    ) -> std::result::Result<Response, Transient> {
        let mut url = start.clone();
        let mut visited: HashSet<String> = HashSet::new();
        for _hop in 0..=MAX_REDIRECTS {
            check_allowed(&url, "URL").map_err(Transient::fatal)?;
            if !visited.insert(url.to_string()) {
                return Err(Transient::fatal(Error::new(
                    ErrorKind::InsecureUrl,
                    format!("redirect loop at {url} while fetching {what}; the server is misconfigured"),
                )));
            }
            let mut req = decorate(self.http.get(url.clone()));
            if let Some(token) = &self.opts.token {
                // The token goes to the exact API origin only: never to the web host, the storage
                // host or any other redirect target.
                if same_origin(&url, &self.api) {
                    req = req.bearer_auth(token);
                }
            }
            let resp = match req.send() {
                Ok(r) => r,
                Err(e) => {
                    let err = Error::new(
                        ErrorKind::Network,
                        format!(
                            "cannot reach {url} for {what}: {}; check the network and the API URL",
                            crate::remote::describe(&e)
                        ),
                    )
                    .with_hint(crate::Hint::CheckApiUrl)
                    .with_source(e);
                    return Err(Transient::retry(err, None));
                }
            };
            let status = resp.status();
            self.log(|| format!("http method=GET url={url} status={}", status.as_u16()));
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        Transient::fatal(Error::new(
                            ErrorKind::InvalidData,
                            format!("{url} answered HTTP {status} without a Location header"),
                        ))
                    })?;
                let next = redirect_target(&url, location).map_err(Transient::fatal)?;
                url = next;
                continue;
            }
            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            return Err(classify_failure(resp, &url, what, &self.repository()));
        }
        Err(Transient::fatal(Error::new(
            ErrorKind::InsecureUrl,
            format!("too many redirects (more than {MAX_REDIRECTS}) from {start} while fetching {what}"),
        )))
    }
}

/// A failed attempt: retryable or not.
struct Transient {
    error: Error,
    retry_after: Option<Duration>,
    retryable: bool,
}

impl Transient {
    fn fatal(error: Error) -> Transient {
        Transient {
            error,
            retry_after: None,
            retryable: false,
        }
    }
    fn retry(error: Error, retry_after: Option<Duration>) -> Transient {
        Transient {
            error,
            retry_after,
            retryable: true,
        }
    }
}

/// Turns a non-2xx, non-redirect response into an error, deciding whether it is retryable.
fn classify_failure(resp: Response, url: &Url, what: &str, repo: &str) -> Transient {
    let status = resp.status();
    let headers = resp.headers().clone();
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let retry_after = header_str("retry-after").and_then(|v| v.parse::<u64>().ok());
    let remaining_zero = header_str("x-ratelimit-remaining") == Some("0");
    let message = github_message(resp);
    if (status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS)
        && (remaining_zero || retry_after.is_some())
    {
        let now = SystemTime::now();
        let at = match retry_after {
            Some(secs) => now + Duration::from_secs(secs),
            None => header_str("x-ratelimit-reset")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|epoch| SystemTime::UNIX_EPOCH + Duration::from_secs(epoch))
                .unwrap_or(now + Duration::from_secs(60)),
        };
        let wait = at.duration_since(now).unwrap_or_default().as_secs();
        let when = humantime::format_rfc3339_seconds(at);
        let err = Error::new(
            ErrorKind::RateLimited,
            format!(
                "GitHub rate limit exceeded (HTTP {}) for {what} at {url}; retry after {when} (in {wait} s){}. \
                 Set FLYNN_GITHUB_TOKEN, GH_TOKEN or GITHUB_TOKEN for a higher limit",
                status.as_u16(),
                message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
        )
        .with_retry_at(at);
        return Transient::fatal(err);
    }
    if status.is_server_error() {
        let delay = retry_after.filter(|s| *s <= 30).map(Duration::from_secs);
        return Transient::retry(
            Error::new(
                ErrorKind::Network,
                format!("HTTP {} from {url} for {what}", status.as_u16()),
            ),
            delay,
        );
    }
    let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
    if status == StatusCode::NOT_FOUND {
        // GitHub answers an existing repository's release list with `[]`, never 404: a 404 there
        // means the repository itself does not exist (or is private and needs a token).
        let message = if what == RELEASE_LIST {
            format!(
                "repository {repo} not found ({url} answered 404{detail}); check the repository name; \
                 a private repository needs a token"
            )
        } else {
            format!(
                "{what} not found in {repo} ({url} answered 404{detail}); check the version, and the \
                 repository name; private repositories need a token"
            )
        };
        return Transient::fatal(Error::new(ErrorKind::NotFound, message).with_hint(crate::Hint::CheckRepository));
    }
    if status == StatusCode::UNAUTHORIZED {
        return Transient::fatal(Error::new(
            ErrorKind::HttpStatus,
            format!("{url} rejected the token (HTTP 401{detail}); check FLYNN_GITHUB_TOKEN / GH_TOKEN / GITHUB_TOKEN"),
        ));
    }
    Transient::fatal(Error::new(
        ErrorKind::HttpStatus,
        format!("unexpected HTTP {} for {what} at {url}{detail}", status.as_u16()),
    ))
}

/// What the release-list request is called in errors (a 404 for it names the repository).
const RELEASE_LIST: &str = "the release list";

/// GitHub's `{"message": …}` from an error body, if there is one (read with a small cap).
fn github_message(resp: Response) -> Option<String> {
    let mut buf = Vec::new();
    resp.take(64 << 10).read_to_end(&mut buf).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&buf).ok()?;
    v.get("message")
        .and_then(|m| m.as_str())
        .map(|m| m.chars().take(300).collect())
}

fn read_capped(resp: Response, cap: u64, url: &Url) -> Result<Vec<u8>> {
    let too_large = || {
        Error::new(
            ErrorKind::TooLarge,
            format!("response from {url} is larger than the {cap}-byte limit; is the API URL a GitHub API?"),
        )
        .with_hint(crate::Hint::CheckApiUrl)
    };
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    resp.take(cap + 1).read_to_end(&mut buf).map_err(|e| {
        Error::new(
            ErrorKind::Network,
            format!("reading the response from {url} failed: {e}"),
        )
    })?;
    if buf.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(buf)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], url: &Url) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::InvalidData,
            format!(
                "invalid JSON from {url}: {e}; is the API URL a GitHub API (https://api.github.com or \
                 https://HOST/api/v3)?"
            ),
        )
        .with_hint(crate::Hint::CheckApiUrl)
    })
}

/// The first byte offset of a `Content-Range: bytes START-END/TOTAL` header.
pub fn parse_content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, _total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    (end >= start).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in ["flynn/flynn", "a/b", "my-org/my.repo_x", "o/.github"] {
            assert!(validate_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "flynn", "flynn/", "/flynn", "a/b/c", "a/..", "a/.", "-a/b", "a b/c", "a/b?x", "a/b#",
        ] {
            let e = validate_repository(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(e.message().contains("OWNER/NAME"), "{e}");
        }
    }

    #[test]
    fn url_policy() {
        assert!(parse_allowed_url("https://api.github.com", "x").is_ok());
        assert!(parse_allowed_url("http://127.0.0.1:8080", "x").is_ok());
        assert!(parse_allowed_url("http://127.3.4.5", "x").is_ok());
        assert!(parse_allowed_url("http://localhost:1", "x").is_ok());
        assert!(parse_allowed_url("http://[::1]:1", "x").is_ok());
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "ftp://x/y",
            "file:///etc/passwd",
        ] {
            assert_eq!(
                parse_allowed_url(bad, "x").unwrap_err().kind(),
                ErrorKind::InsecureUrl,
                "{bad}"
            );
        }
        assert_eq!(
            parse_allowed_url("not a url", "x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn origins() {
        let a = Url::parse("https://api.github.com/repos").unwrap();
        assert!(same_origin(&a, &Url::parse("https://API.github.com:443/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("https://github.com/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("https://api.github.com:8443/x").unwrap()));
        assert!(!same_origin(&a, &Url::parse("http://api.github.com/x").unwrap()));
    }

    #[test]
    fn redirects_never_leave_https_for_http() {
        let from = Url::parse("https://api.github.com/repos/a/b/releases/assets/1").unwrap();
        let e = redirect_target(&from, "http://objects.example.com/x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InsecureUrl);
        assert!(e.message().contains("non-https"), "{e}");
        // Even to loopback: a downgrade is a downgrade.
        assert_eq!(
            redirect_target(&from, "http://127.0.0.1/x").unwrap_err().kind(),
            ErrorKind::InsecureUrl
        );
        assert_eq!(
            redirect_target(&from, "ftp://x/y").unwrap_err().kind(),
            ErrorKind::InsecureUrl
        );
        let ok = redirect_target(&from, "https://objects.githubusercontent.com/x?sig=1").unwrap();
        assert_eq!(ok.host_str(), Some("objects.githubusercontent.com"));
        let rel = redirect_target(&from, "/download/x").unwrap();
        assert_eq!(rel.as_str(), "https://api.github.com/download/x");
        // Loopback http may redirect within plain http (the local release server).
        let local = Url::parse("http://127.0.0.1:1/a").unwrap();
        assert!(redirect_target(&local, "http://127.0.0.1:2/b").is_ok());
        assert_eq!(
            redirect_target(&local, "http://example.com/b").unwrap_err().kind(),
            ErrorKind::InsecureUrl
        );
    }

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("bytes 5-4/9"), None);
        assert_eq!(parse_content_range_start("bytes */200"), None);
        assert_eq!(parse_content_range_start("items 1-2/3"), None);
    }

    #[test]
    fn token_is_redacted_in_debug() {
        let mut o = ClientOptions::new("a/b");
        o.token = Some("ghp_secret".into());
        assert!(!format!("{o:?}").contains("ghp_secret"));
    }
}
