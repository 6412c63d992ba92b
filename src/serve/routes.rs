//! The three listeners' routes: the REST API (api.github.com), the web host's download redirects
//! (github.com) and the storage host that serves the bytes (objects.githubusercontent.com).
//!
//! Responses copy GitHub's observable behaviour: the JSON shape and key order of real release
//! responses, the `Link` pagination format, weak ETags with `304` on `If-None-Match`, the
//! `x-ratelimit-*` headers (and the `403` once the budget is spent), and `302` redirects from
//! the API and web hosts to the storage host.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::http::{Body, Request, Response, lock};
use super::json::*;
use super::store::{self, Asset, Release, Store};
use crate::error::Result;

/// GitHub's documentation link in release 404 bodies.
const RELEASES_DOCS: &str = "https://docs.github.com/rest/releases/releases";
/// GitHub's documentation link in repository 404 bodies.
const REPO_DOCS: &str = "https://docs.github.com/rest/repos/repos#get-a-repository";
const RATE_LIMIT_DOCS: &str = "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting";
/// GitHub's default and maximum page sizes.
const DEFAULT_PER_PAGE: usize = 30;
const MAX_PER_PAGE: usize = 100;
/// The GitHub Enterprise prefix under which the API is also served.
const GHE_PREFIX: &str = "/api/v3";

/// The rate-limit window: GitHub's primary limit, counted per server (not per client).
struct RateWindow {
    used: u32,
    reset: u64,
}

/// Everything the handlers share.
pub(crate) struct Ctx {
    pub store: Store,
    pub api_addr: SocketAddr,
    pub web_addr: SocketAddr,
    pub storage_addr: SocketAddr,
    rate_limit: u32,
    rate: Mutex<RateWindow>,
    request_seq: AtomicU64,
}

impl Ctx {
    /// Handler state; the rate-limit window resets one hour from now.
    pub fn new(
        store: Store,
        api_addr: SocketAddr,
        web_addr: SocketAddr,
        storage_addr: SocketAddr,
        rate_limit: u32,
    ) -> Ctx {
        Ctx {
            store,
            api_addr,
            web_addr,
            storage_addr,
            rate_limit,
            rate: Mutex::new(RateWindow {
                used: 0,
                reset: now_secs() + 3600,
            }),
            request_seq: AtomicU64::new(1),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `http://HOST:PORT` for a listener. A wildcard bind (`0.0.0.0`) has no useful address of its
/// own, so the host the client used (its `Host` header) is combined with the listener's port.
pub(crate) fn base_url(addr: SocketAddr, req: Option<&Request>) -> String {
    if addr.ip().is_unspecified() {
        let host = req
            .and_then(|r| r.header("host"))
            .map(strip_port)
            .filter(|h| !h.is_empty() && !h.contains(['/', '@', '?', '#', ' ']));
        if let Some(h) = host {
            return format!("http://{h}:{}", addr.port());
        }
        return format!("http://127.0.0.1:{}", addr.port());
    }
    format!("http://{addr}")
}

/// The storage host's base URL. Real GitHub serves asset bytes from another host name
/// (objects.githubusercontent.com), and some clients depend on that: PyGithub refuses a redirect
/// to the API's own host name on a different port. So a storage listener on 127.0.0.1 is named
/// `localhost` (the API stays `127.0.0.1`): a different host name, still loopback for clients
/// that only allow plain http to loopback. Any other address is named as it is.
pub(crate) fn storage_base_url(addr: SocketAddr, req: Option<&Request>) -> String {
    if addr.ip() == std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST) {
        return format!("http://localhost:{}", addr.port());
    }
    base_url(addr, req)
}

/// The API's own base URL as the client addressed it. GitHub's URLs are always on the host name
/// the client called, and some clients (PyGithub) refuse to follow a `url` or `Link` on another
/// one; so a `Host` header that names this listener's port, with a well-formed host name, is
/// used as it is (`api.localhost:PORT`). Anything else falls back to [`base_url`].
pub(crate) fn api_base_url(addr: SocketAddr, req: &Request) -> String {
    if let Some(h) = req.header("host").map(str::trim) {
        let host = strip_port(h);
        let port = h[host.len()..].strip_prefix(':');
        let well_formed = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(ip6) => ip6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)),
        };
        if well_formed && port == Some(addr.port().to_string().as_str()) {
            return format!("http://{host}:{}", addr.port());
        }
    }
    base_url(addr, Some(req))
}

/// `host:port` → `host`, keeping IPv6 brackets.
fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.find(']').map(|i| &h[..=i]).unwrap_or(h);
    }
    h.rsplit_once(':').map(|(a, _)| a).unwrap_or(h)
}

/// Percent-encode one path segment (RFC 3986 `pchar`s other than `%` stay as they are).
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode a query value (stricter: `&`, `=`, `+` and `;` are encoded too).
pub(super) fn enc_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decode; None when the result is not UTF-8 (no such file can be served anyway).
pub(crate) fn dec(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = h {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Split a path into decoded segments (`/a/b` → `["a","b"]`); None if a segment does not decode.
pub(super) fn segments(path: &str) -> Option<Vec<String>> {
    path.strip_prefix('/')?.split('/').map(dec).collect()
}

/// Query pairs in order, values decoded (`+` is a space in query strings).
fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |x: &str| dec(&x.replace('+', " ")).unwrap_or_default();
            (d(k), d(v))
        })
        .collect()
}

/// The repository URL templates, in GitHub's order: (key, suffix after the repository URL).
pub(super) const REPO_URL_TEMPLATES: [(&str, &str); 36] = [
    ("forks_url", "/forks"),
    ("keys_url", "/keys{/key_id}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("teams_url", "/teams"),
    ("hooks_url", "/hooks"),
    ("issue_events_url", "/issues/events{/number}"),
    ("events_url", "/events"),
    ("assignees_url", "/assignees{/user}"),
    ("branches_url", "/branches{/branch}"),
    ("tags_url", "/tags"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("trees_url", "/git/trees{/sha}"),
    ("statuses_url", "/statuses/{sha}"),
    ("languages_url", "/languages"),
    ("stargazers_url", "/stargazers"),
    ("contributors_url", "/contributors"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("commits_url", "/commits{/sha}"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("comments_url", "/comments{/number}"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("contents_url", "/contents/{+path}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("merges_url", "/merges"),
    ("archive_url", "/{archive_format}{/ref}"),
    ("downloads_url", "/downloads"),
    ("issues_url", "/issues{/number}"),
    ("pulls_url", "/pulls{/number}"),
    ("milestones_url", "/milestones{/number}"),
    ("notifications_url", "/notifications{?since,all,participating}"),
    ("labels_url", "/labels{/name}"),
    ("releases_url", "/releases{/id}"),
    ("deployments_url", "/deployments"),
];

/// What an API route produced, before the common headers, ETag and rate limiting.
enum ApiOut {
    Json(u16, Value, Vec<(String, String)>),
    Redirect(String),
    /// `GET /rate_limit`: rendered from the window itself, and not counted against it.
    RateLimit,
}

fn not_found() -> ApiOut {
    ApiOut::Json(
        404,
        json!({"message": "Not Found", "documentation_url": RELEASES_DOCS, "status": "404"}),
        Vec::new(),
    )
}

fn server_error(e: &crate::Error) -> ApiOut {
    ApiOut::Json(
        500,
        json!({"message": e.to_string(), "documentation_url": RELEASES_DOCS, "status": "500"}),
        Vec::new(),
    )
}

/// Answer an API request.
pub(crate) fn api(ctx: &Ctx, req: &Request) -> Response {
    let path = req.path();
    let (prefix, rest) = match path.strip_prefix(GHE_PREFIX) {
        Some(r) if r.is_empty() || r.starts_with('/') => (GHE_PREFIX, r),
        _ => ("", path),
    };
    let get = req.method == "GET" || req.method == "HEAD";
    let out = if get {
        let b = bases(ctx, req, prefix);
        api_route(ctx, req, &b, rest).unwrap_or_else(|e| server_error(&e))
    } else {
        not_found()
    };
    finish_api(ctx, req, out)
}

fn api_route(ctx: &Ctx, req: &Request, b: &Bases, path: &str) -> Result<ApiOut> {
    let Some(segs) = segments(path) else {
        return Ok(not_found());
    };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (owner, name, tail) = match s.as_slice() {
        ["rate_limit"] => return Ok(ApiOut::RateLimit),
        ["repos", o, r] => {
            let Some(repo) = ctx.store.repo(o, r) else {
                return Ok(ApiOut::Json(
                    404,
                    json!({"message": "Not Found", "documentation_url": REPO_DOCS, "status": "404"}),
                    Vec::new(),
                ));
            };
            let all = ctx.store.releases(&repo)?;
            return Ok(ApiOut::Json(200, repo_json(b, &repo, &all), vec![]));
        }
        ["repos", o, r, "releases", tail @ ..] => (*o, *r, tail),
        _ => return Ok(not_found()),
    };
    let Some(repo) = ctx.store.repo(owner, name) else {
        return Ok(not_found());
    };
    let all = ctx.store.releases(&repo)?;
    // Drafts are visible only to collaborators on GitHub; this server answers as the public.
    let visible = || all.iter().filter(|r| !r.draft);
    let one = |rel: Option<&Release>| -> Result<ApiOut> {
        match rel {
            Some(r) => Ok(ApiOut::Json(200, release_json(ctx, b, &repo, r)?, vec![])),
            None => Ok(not_found()),
        }
    };
    match tail {
        [] => {
            let rels: Vec<&Release> = visible().collect();
            let base = format!("{}/repos/{}/{}/releases", b.api, enc(&repo.owner), enc(&repo.name));
            paginate(req, &base, &rels, |r| release_json(ctx, b, &repo, r))
        }
        ["latest"] => one(store::latest(&all)),
        ["tags", tag] => one(visible().find(|r| r.tag == *tag)),
        ["assets", id] => {
            let Ok(id) = id.parse::<u64>() else {
                return Ok(not_found());
            };
            let found = visible().find_map(|r| r.assets.iter().find(|a| a.id == id).map(|a| (r, a)));
            let Some((rel, asset)) = found else {
                return Ok(not_found());
            };
            let wants_bytes = req
                .header("accept")
                .is_some_and(|a| a.to_ascii_lowercase().contains("application/octet-stream"));
            if wants_bytes {
                return Ok(ApiOut::Redirect(storage_url(&b.storage, &repo, &rel.tag, &asset.name)));
            }
            Ok(ApiOut::Json(200, asset_json(ctx, b, &repo, rel, asset)?, vec![]))
        }
        [id] => {
            let Ok(id) = id.parse::<u64>() else {
                return Ok(not_found());
            };
            one(visible().find(|r| r.id == id))
        }
        [id, "assets"] => {
            let Some(rel) = id.parse::<u64>().ok().and_then(|id| visible().find(|r| r.id == id)) else {
                return Ok(not_found());
            };
            let assets: Vec<&Asset> = rel.assets.iter().collect();
            let base = format!(
                "{}/repos/{}/{}/releases/{}/assets",
                b.api,
                enc(&repo.owner),
                enc(&repo.name),
                rel.id
            );
            paginate(req, &base, &assets, |a| asset_json(ctx, b, &repo, rel, a))
        }
        _ => Ok(not_found()),
    }
}

/// One page of `items` with GitHub's `Link` header (`prev`, `next`, `last`, `first`, in that
/// order, each present only when meaningful; no header when everything fits on one page).
fn paginate<T>(req: &Request, base: &str, items: &[T], render: impl Fn(&T) -> Result<Value>) -> Result<ApiOut> {
    let pairs = query_pairs(req.query());
    let param = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let per_page = param("per_page")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .map(|n| n.min(MAX_PER_PAGE))
        .unwrap_or(DEFAULT_PER_PAGE);
    let page = param("page")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let last = items.len().div_ceil(per_page).max(1);
    let start = (page - 1).saturating_mul(per_page);
    let body = items
        .iter()
        .skip(start)
        .take(per_page)
        .map(&render)
        .collect::<Result<Vec<_>>>()?;
    // Page URLs keep the client's query parameters in order, replacing or appending `page`, as
    // GitHub does (`?per_page=3` → `?per_page=3&page=2`).
    let url = |n: usize| {
        let mut q: Vec<String> = Vec::new();
        let mut replaced = false;
        for (k, v) in &pairs {
            if k == "page" {
                if !replaced {
                    q.push(format!("page={n}"));
                    replaced = true;
                }
            } else {
                q.push(format!("{}={}", enc_query(k), enc_query(v)));
            }
        }
        if !replaced {
            q.push(format!("page={n}"));
        }
        format!("{base}?{}", q.join("&"))
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", url((page - 1).min(last))));
    }
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", url(1)));
    }
    let headers = if links.is_empty() {
        vec![]
    } else {
        vec![("link".to_string(), links.join(", "))]
    };
    Ok(ApiOut::Json(200, Value::Array(body), headers))
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, lists and `*` allowed).
pub(super) fn etag_matches(inm: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let want = strip(etag);
    inm.split(',').any(|t| t.trim() == "*" || strip(t) == want)
}

/// Add GitHub's common headers, apply the ETag check and the rate limit, and serialize.
fn finish_api(ctx: &Ctx, req: &Request, out: ApiOut) -> Response {
    let seq = ctx.request_seq.fetch_add(1, Ordering::Relaxed);
    let request_id = format!(
        "F1E0:{:04X}:{:X}:{:X}:{:08X}",
        ctx.api_addr.port(),
        seq,
        seq.wrapping_mul(0x9E37) & 0xFF_FFFF,
        (ctx_reset(ctx) - 3600) & 0xFFFF_FFFF
    );
    // `GET /rate_limit` does not count against the limit and still answers once it is spent,
    // as on GitHub; its body is the window as it stands.
    let counted = !matches!(out, ApiOut::RateLimit);
    let (status, body, extra, location) = match out {
        ApiOut::Json(s, v, h) => (s, serde_json::to_vec(&v).unwrap_or_default(), h, None),
        ApiOut::Redirect(loc) => (302, Vec::new(), vec![], Some(loc)),
        ApiOut::RateLimit => {
            let (used, reset) = {
                let mut w = lock(&ctx.rate);
                roll_window(&mut w);
                (w.used, w.reset)
            };
            let v = rate_limit_json(ctx.rate_limit, used, reset, now_secs());
            (200, serde_json::to_vec(&v).unwrap_or_default(), vec![], None)
        }
    };
    let etag = (status == 200).then(|| format!("W/\"{}\"", store::hex(&Sha256::digest(&body))));

    // Conditional requests answered with 304 do not count against the limit, as on GitHub.
    let not_modified = match (&etag, req.header("if-none-match")) {
        (Some(e), Some(inm)) => etag_matches(inm, e),
        _ => false,
    };
    let (used, reset, exceeded) = {
        let mut w = lock(&ctx.rate);
        roll_window(&mut w);
        let exceeded = counted && !not_modified && w.used >= ctx.rate_limit;
        if counted && !not_modified && !exceeded {
            w.used += 1;
        }
        (w.used, w.reset, exceeded)
    };
    let mut resp = if exceeded {
        let who = if req.header("authorization").is_some() {
            "user ID 41898282".to_string()
        } else {
            req.peer.ip().to_string()
        };
        let msg = format!(
            "API rate limit exceeded for {who}. (But here's the good news: Authenticated \
             requests get a higher rate limit. Check out the documentation for more details.)"
        );
        let v = json!({"message": msg, "documentation_url": RATE_LIMIT_DOCS});
        Response::new(403, Body::Bytes(serde_json::to_vec(&v).unwrap_or_default()))
            .header("content-type", "application/json; charset=utf-8")
    } else if not_modified {
        Response::new(304, Body::Empty)
    } else if let Some(loc) = location {
        Response::new(302, Body::Empty)
            .header("content-type", "text/html;charset=utf-8")
            .header("location", loc)
    } else {
        let mut r = Response::new(status, Body::Bytes(body)).header("content-type", "application/json; charset=utf-8");
        for (k, v) in extra {
            r = r.header(&k, v);
        }
        r
    };
    if !exceeded {
        if let Some(e) = etag {
            resp = resp.header("etag", e);
        }
    }
    resp.header("cache-control", "private, max-age=60, s-maxage=60")
        .header("vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
        .header("x-github-api-version-selected", "2022-11-28")
        .header("x-github-media-type", "github.v3; format=json")
        .header("x-ratelimit-limit", ctx.rate_limit.to_string())
        .header("x-ratelimit-remaining", ctx.rate_limit.saturating_sub(used).to_string())
        .header("x-ratelimit-reset", reset.to_string())
        .header("x-ratelimit-used", used.to_string())
        .header("x-ratelimit-resource", "core")
        .header(
            "access-control-expose-headers",
            "ETag, Link, Location, Retry-After, X-GitHub-OTP, X-RateLimit-Limit, \
             X-RateLimit-Remaining, X-RateLimit-Used, X-RateLimit-Resource, X-RateLimit-Reset, \
             X-OAuth-Scopes, X-Accepted-OAuth-Scopes, X-Poll-Interval, X-GitHub-Media-Type, \
             X-GitHub-SSO, X-GitHub-Request-Id, Deprecation, Sunset",
        )
        .header("access-control-allow-origin", "*")
        .header("x-github-request-id", request_id)
}

/// Start a new hour once the window's reset time has passed.
fn roll_window(w: &mut RateWindow) {
    let now = now_secs();
    if now >= w.reset {
        w.used = 0;
        w.reset = now + 3600;
    }
}

fn ctx_reset(ctx: &Ctx) -> u64 {
    lock(&ctx.rate).reset
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::download::{RangeReq, parse_range};

    #[test]
    fn node_ids_match_githubs_legacy_format() {
        assert_eq!(node_id("Release", 1), "MDc6UmVsZWFzZTE=");
        assert_eq!(node_id("ReleaseAsset", 1), "MDEyOlJlbGVhc2VBc3NldDE=");
    }

    #[test]
    fn ranges_parse() {
        assert!(matches!(parse_range("bytes=0-", 10), RangeReq::Part(0, 9)));
        assert!(matches!(parse_range("bytes=2-4", 10), RangeReq::Part(2, 4)));
        assert!(matches!(parse_range("bytes=2-40", 10), RangeReq::Part(2, 9)));
        assert!(matches!(parse_range("bytes=-3", 10), RangeReq::Part(7, 9)));
        assert!(matches!(parse_range("bytes=10-", 10), RangeReq::Unsatisfiable));
        assert!(matches!(parse_range("bytes=4-2", 10), RangeReq::Full));
        assert!(matches!(parse_range("bytes=0-1,3-4", 10), RangeReq::Full));
        assert!(matches!(parse_range("items=0-1", 10), RangeReq::Full));
    }

    #[test]
    fn percent_coding_round_trips() {
        assert_eq!(enc("v1.0.0+build"), "v1.0.0+build");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(dec("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(dec("%2e%2e").as_deref(), Some(".."));
        assert_eq!(dec("100%").as_deref(), Some("100%"));
        assert_eq!(dec("%ff"), None);
    }

    #[test]
    fn etags_compare_weakly() {
        assert!(etag_matches("W/\"abc\"", "W/\"abc\""));
        assert!(etag_matches("\"abc\"", "W/\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "W/\"abc\""));
        assert!(!etag_matches("\"abd\"", "W/\"abc\""));
    }
}
