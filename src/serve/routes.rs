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

use super::http::{Body, Request, Response, http_date, lock};
use super::store::{self, Asset, Release, Repo, Store, rfc3339};
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
fn enc_query(s: &str) -> String {
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
fn segments(path: &str) -> Option<Vec<String>> {
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

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// Base64 (standard alphabet, padded), for GitHub's legacy node ids.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= n {
                out.push(A[((v >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A legacy (v1) global node id, as in `MDc6UmVsZWFzZTE=` = base64(`07:Release1`).
fn node_id(kind: &str, id: u64) -> String {
    base64(format!("0{}:{kind}{id}", kind.len()).as_bytes())
}

/// The fixed account that "published" every release (GitHub Actions' bot, as on real releases).
fn author(api: &str) -> Value {
    let login = "github-actions[bot]";
    let u = format!("{api}/users/github-actions%5Bbot%5D");
    json!({
        "login": login,
        "id": 41898282,
        "node_id": "MDM6Qm90NDE4OTgyODI=",
        "avatar_url": "https://avatars.githubusercontent.com/in/15368?v=4",
        "gravatar_id": "",
        "url": u,
        "html_url": "https://github.com/apps/github-actions",
        "followers_url": format!("{u}/followers"),
        "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"),
        "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"),
        "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"),
        "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"),
        "type": "Bot",
        "user_view_type": "public",
        "site_admin": false
    })
}

/// Base URLs for one request: the API (with the prefix the client used) and the web host.
struct Bases {
    api: String,
    web: String,
    storage: String,
}

fn bases(ctx: &Ctx, req: &Request, prefix: &str) -> Bases {
    Bases {
        api: format!("{}{prefix}", api_base_url(ctx.api_addr, req)),
        web: base_url(ctx.web_addr, Some(req)),
        storage: storage_base_url(ctx.storage_addr, Some(req)),
    }
}

/// The storage URL of an asset's bytes. The query mimics the signed-URL parameters of GitHub's
/// storage host so clients are exercised with one; the server ignores it.
fn storage_url(storage: &str, repo: &Repo, tag: &str, name: &str) -> String {
    format!(
        "{storage}/{}/{}/{}/{}?response-content-disposition={}&response-content-type=application%2Foctet-stream",
        enc(&repo.owner),
        enc(&repo.name),
        enc(tag),
        enc(name),
        enc_query(&format!("attachment; filename={name}")),
    )
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".gz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    }
}

fn asset_json(ctx: &Ctx, b: &Bases, repo: &Repo, rel: &Release, a: &Asset) -> Result<Value> {
    let sha = ctx.store.sha256(a)?;
    let t = rfc3339(a.mtime.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    Ok(json!({
        "url": format!("{}/repos/{}/{}/releases/assets/{}", b.api, enc(&repo.owner), enc(&repo.name), a.id),
        "id": a.id,
        "node_id": node_id("ReleaseAsset", a.id),
        "name": a.name,
        "label": null,
        "uploader": author(&b.api),
        "content_type": content_type(&a.name),
        "state": "uploaded",
        "size": a.size,
        "digest": format!("sha256:{sha}"),
        "download_count": 0,
        "created_at": t,
        "updated_at": t,
        "browser_download_url": format!(
            "{}/{}/{}/releases/download/{}/{}",
            b.web, enc(&repo.owner), enc(&repo.name), enc(&rel.tag), enc(&a.name)
        ),
    }))
}

fn release_json(ctx: &Ctx, b: &Bases, repo: &Repo, rel: &Release) -> Result<Value> {
    let r = format!("{}/repos/{}/{}", b.api, enc(&repo.owner), enc(&repo.name));
    let assets = rel
        .assets
        .iter()
        .map(|a| asset_json(ctx, b, repo, rel, a))
        .collect::<Result<Vec<_>>>()?;
    let mut v = json!({
        "url": format!("{r}/releases/{}", rel.id),
        "assets_url": format!("{r}/releases/{}/assets", rel.id),
        "upload_url": format!("{r}/releases/{}/assets{{?name,label}}", rel.id),
        "html_url": format!("{}/{}/{}/releases/tag/{}", b.web, enc(&repo.owner), enc(&repo.name), enc(&rel.tag)),
        "id": rel.id,
        "author": author(&b.api),
        "node_id": node_id("Release", rel.id),
        "tag_name": rel.tag,
        "target_commitish": rel.target_commitish,
        "name": rel.name,
        "draft": rel.draft,
        "immutable": false,
        "prerelease": rel.prerelease,
        "created_at": rfc3339(rel.created),
        "updated_at": rfc3339(rel.published.unwrap_or(rel.created).max(rel.created)),
        "published_at": rel.published.map(rfc3339),
        "assets": assets,
        "tarball_url": format!("{r}/tarball/{}", enc(&rel.tag)),
        "zipball_url": format!("{r}/zipball/{}", enc(&rel.tag)),
        "body": rel.body,
    });
    // Real GitHub includes `discussion_url` only when the release has a discussion.
    if let (Some(d), Some(obj)) = (&rel.discussion_url, v.as_object_mut()) {
        obj.insert("discussion_url".into(), Value::String(d.clone()));
    }
    Ok(v)
}

/// The repository's owner, as an organization account (Flynn's releases come from one).
fn owner_json(b: &Bases, repo: &Repo) -> Value {
    let id = store::stable_id(&repo.owner);
    let u = format!("{}/users/{}", b.api, enc(&repo.owner));
    json!({
        "login": repo.owner,
        "id": id,
        "node_id": node_id("Organization", id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": u,
        "html_url": format!("{}/{}", b.web, enc(&repo.owner)),
        "followers_url": format!("{u}/followers"),
        "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"),
        "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"),
        "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"),
        "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"),
        "type": "Organization",
        "user_view_type": "public",
        "site_admin": false
    })
}

/// The repository URL templates, in GitHub's order: (key, suffix after the repository URL).
const REPO_URL_TEMPLATES: [(&str, &str); 36] = [
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

/// The repository object of `GET /repos/{owner}/{repo}`, as GitHub answers an anonymous caller
/// for a public repository (key order of a recorded real response; no `permissions`). It agrees
/// with the releases: `created_at` is the oldest release's creation (the directory's mtime when
/// there are none), `updated_at`/`pushed_at` the newest publication, `default_branch` the
/// `target_commitish` of the latest release when that names a branch rather than a commit.
fn repo_json(b: &Bases, repo: &Repo, all: &[Release]) -> Value {
    let id = store::stable_id(&format!("{}/{}", repo.owner, repo.name));
    let dir_secs = std::fs::metadata(&repo.dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let created = all.iter().map(|r| r.created).min().unwrap_or(dir_secs);
    let updated = all
        .iter()
        .map(|r| r.published.unwrap_or(r.created).max(r.created))
        .max()
        .unwrap_or(created);
    let is_sha = |c: &str| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit());
    let default_branch = store::latest(all)
        .map(|r| r.target_commitish.as_str())
        .filter(|c| !c.is_empty() && !is_sha(c))
        .unwrap_or("master");
    let full = format!("{}/{}", repo.owner, repo.name);
    let path = format!("{}/{}", enc(&repo.owner), enc(&repo.name));
    let r = format!("{}/repos/{path}", b.api);
    let html = format!("{}/{path}", b.web);
    let web_host = b.web.split_once("://").map(|(_, h)| h).unwrap_or(&b.web);
    let owner = owner_json(b, repo);
    let mut v = json!({
        "id": id,
        "node_id": node_id("Repository", id),
        "name": repo.name,
        "full_name": full,
        "private": false,
        "owner": owner,
        "html_url": html,
        "description": null,
        "fork": false,
        "url": r,
    });
    // In parts: one `json!` of this size exceeds the macro recursion limit.
    if let Some(a) = v.as_object_mut() {
        for (k, suffix) in REPO_URL_TEMPLATES {
            a.insert(k.to_string(), Value::String(format!("{r}{suffix}")));
        }
    }
    let rest = json!({
        "created_at": rfc3339(created),
        "updated_at": rfc3339(updated),
        "pushed_at": rfc3339(updated),
        "git_url": format!("git://{web_host}/{path}.git"),
        "ssh_url": format!("git@{web_host}:{path}.git"),
        "clone_url": format!("{html}.git"),
        "svn_url": html,
        "homepage": null,
        "size": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": null,
        "has_issues": true,
        "has_projects": true,
        "has_downloads": true,
        "has_wiki": true,
        "has_pages": false,
        "has_discussions": false,
        "forks_count": 0,
        "mirror_url": null,
        "archived": false,
        "disabled": false,
        "open_issues_count": 0,
        "license": null,
        "allow_forking": true,
        "is_template": false,
        "web_commit_signoff_required": false,
        "topics": [],
        "visibility": "public",
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "default_branch": default_branch,
        "temp_clone_token": null,
        "organization": owner,
        "network_count": 0,
        "subscribers_count": 0
    });
    if let (Some(a), Value::Object(b)) = (v.as_object_mut(), rest) {
        a.extend(b);
    }
    v
}

/// GitHub's `GET /rate_limit` body. `core` (and the legacy `rate`, its copy) is this server's
/// own window, the one behind the `x-ratelimit-*` headers; the other resources are not served
/// here and show their full budgets (search ones per minute, as on GitHub).
fn rate_limit_json(limit: u32, used: u32, reset: u64, now: u64) -> Value {
    let res = |limit: u32, used: u32, reset: u64| json!({"limit": limit, "used": used, "remaining": limit.saturating_sub(used), "reset": reset});
    let core = res(limit, used, reset);
    let minute = now + 60;
    json!({
        "resources": {
            "core": core,
            "search": res(10, 0, minute),
            "graphql": res(0, 0, reset),
            "integration_manifest": res(5000, 0, reset),
            "source_import": res(100, 0, minute),
            "code_scanning_upload": res(500, 0, reset),
            "code_scanning_autofix": res(10, 0, minute),
            "actions_runner_registration": res(10000, 0, reset),
            "scim": res(15000, 0, reset),
            "dependency_snapshots": res(100, 0, minute),
            "dependency_sbom": res(100, 0, minute),
            "audit_log": res(1750, 0, reset),
            "audit_log_streaming": res(15, 0, reset),
            "code_search": res(10, 0, minute)
        },
        "rate": core
    })
}

// ---------------------------------------------------------------------------------------------
// API listener
// ---------------------------------------------------------------------------------------------

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
fn etag_matches(inm: &str, etag: &str) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Web listener
// ---------------------------------------------------------------------------------------------

fn web_not_found() -> Response {
    Response::new(404, Body::Bytes(b"Not Found".to_vec())).header("content-type", "text/plain; charset=utf-8")
}

/// Answer a web request: release download URLs redirect to the storage host.
pub(crate) fn web(ctx: &Ctx, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return web_not_found();
    }
    let Some(segs) = segments(req.path()) else {
        return web_not_found();
    };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (owner, name, tag, file) = match s.as_slice() {
        [o, r, "releases", "download", tag, file] => (*o, *r, Some(*tag), *file),
        [o, r, "releases", "latest", "download", file] => (*o, *r, None, *file),
        _ => return web_not_found(),
    };
    let Some(repo) = ctx.store.repo(owner, name) else {
        return web_not_found();
    };
    let Ok(all) = ctx.store.releases(&repo) else {
        return Response::new(500, Body::Bytes(b"Internal Server Error".to_vec()));
    };
    let rel = match tag {
        Some(t) => all.iter().find(|r| !r.draft && r.tag == t),
        None => store::latest(&all),
    };
    let Some(rel) = rel else {
        return web_not_found();
    };
    if !rel.assets.iter().any(|a| a.name == file) {
        return web_not_found();
    }
    let loc = storage_url(&storage_base_url(ctx.storage_addr, Some(req)), &repo, &rel.tag, file);
    Response::new(302, Body::Empty)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("location", loc)
}

// ---------------------------------------------------------------------------------------------
// Storage listener
// ---------------------------------------------------------------------------------------------

/// A parsed single `Range: bytes=...` request.
enum RangeReq {
    /// No usable range: serve the whole file.
    Full,
    /// Serve `start..=end`.
    Part(u64, u64),
    /// The range cannot be satisfied (start beyond the end).
    Unsatisfiable,
}

/// Parse a `Range` header against a file of `size` bytes. Malformed or multi-range headers are
/// ignored (RFC 9110 §14.2 allows serving the full representation instead).
fn parse_range(h: &str, size: u64) -> RangeReq {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeReq::Full;
        };
        if n == 0 || size == 0 {
            return RangeReq::Unsatisfiable;
        }
        return RangeReq::Part(size.saturating_sub(n), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeReq::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return RangeReq::Full,
        }
    };
    if start >= size {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Part(start, end.min(size - 1))
}

fn storage_not_found() -> Response {
    Response::new(404, Body::Bytes(b"Not Found".to_vec())).header("content-type", "text/plain; charset=utf-8")
}

/// Serve asset bytes: `GET`/`HEAD /<owner>/<repo>/<tag>/<name>`, with single byte ranges.
pub(crate) fn storage(ctx: &Ctx, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return storage_not_found();
    }
    let Some(parts) = segments(req.path()) else {
        return storage_not_found();
    };
    let Some(path) = ctx.store.storage_file(&parts) else {
        return storage_not_found();
    };
    let Ok(file) = crate::fsutil::open_regular(&path) else {
        return storage_not_found();
    };
    // Size and mtime from the open handle, so headers and bytes describe the same file even if
    // it is replaced (renamed over) meanwhile.
    let Ok(meta) = file.metadata() else {
        return storage_not_found();
    };
    let size = meta.len();
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let nanos = mtime.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    // A cheap validator (no hashing per download) that changes whenever the file does.
    let etag = format!("\"{size:x}-{nanos:x}\"");
    let common = |r: Response| {
        r.header("content-type", "application/octet-stream")
            .header("accept-ranges", "bytes")
            .header("etag", etag.clone())
            .header("last-modified", http_date(mtime))
            .header("cache-control", "max-age=300")
    };
    if let Some(inm) = req.header("if-none-match") {
        if etag_matches(inm, &etag) {
            return common(Response::new(304, Body::Empty));
        }
    }
    // `If-Range` with a different validator means the client's partial copy is stale: send
    // the whole file rather than splicing bytes of two versions.
    let range_ok = match req.header("if-range") {
        Some(v) => v.trim() == etag || v.trim() == http_date(mtime),
        None => true,
    };
    let range = match req.header("range") {
        Some(h) if range_ok => parse_range(h, size),
        _ => RangeReq::Full,
    };
    match range {
        RangeReq::Full => common(Response::new(
            200,
            Body::File {
                file,
                offset: 0,
                len: size,
            },
        )),
        RangeReq::Part(start, end) => common(Response::new(
            206,
            Body::File {
                file,
                offset: start,
                len: end - start + 1,
            },
        ))
        .header("content-range", format!("bytes {start}-{end}/{size}")),
        RangeReq::Unsatisfiable => {
            common(Response::new(416, Body::Empty)).header("content-range", format!("bytes */{size}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
