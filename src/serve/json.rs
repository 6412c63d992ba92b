//! The JSON documents of the API, in GitHub's shape and key order: releases, assets, the
//! repository, its owner, the rate limit.

use std::time::UNIX_EPOCH;

use serde_json::{Value, json};

use super::http::Request;
use super::routes::{Ctx, REPO_URL_TEMPLATES, api_base_url, base_url, enc, enc_query, storage_base_url};
use super::store::{self, Asset, Release, Repo, rfc3339};
use crate::error::Result;

/// Base64 (standard alphabet, padded), for GitHub's legacy node ids.
pub(super) fn base64(data: &[u8]) -> String {
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
pub(super) fn node_id(kind: &str, id: u64) -> String {
    base64(format!("0{}:{kind}{id}", kind.len()).as_bytes())
}

/// The fixed account that "published" every release (GitHub Actions' bot, as on real releases).
pub(super) fn author(api: &str) -> Value {
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
pub(super) struct Bases {
    pub(super) api: String,
    pub(super) web: String,
    pub(super) storage: String,
}

pub(super) fn bases(ctx: &Ctx, req: &Request, prefix: &str) -> Bases {
    Bases {
        api: format!("{}{prefix}", api_base_url(ctx.api_addr, req)),
        web: base_url(ctx.web_addr, Some(req)),
        storage: storage_base_url(ctx.storage_addr, Some(req)),
    }
}

/// The storage URL of an asset's bytes. The query mimics the signed-URL parameters of GitHub's
/// storage host so clients are exercised with one; the server ignores it.
pub(super) fn storage_url(storage: &str, repo: &Repo, tag: &str, name: &str) -> String {
    format!(
        "{storage}/{}/{}/{}/{}?response-content-disposition={}&response-content-type=application%2Foctet-stream",
        enc(&repo.owner),
        enc(&repo.name),
        enc(tag),
        enc(name),
        enc_query(&format!("attachment; filename={name}")),
    )
}

pub(super) fn content_type(name: &str) -> &'static str {
    if name.ends_with(".gz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    }
}

pub(super) fn asset_json(ctx: &Ctx, b: &Bases, repo: &Repo, rel: &Release, a: &Asset) -> Result<Value> {
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

pub(super) fn release_json(ctx: &Ctx, b: &Bases, repo: &Repo, rel: &Release) -> Result<Value> {
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
pub(super) fn owner_json(b: &Bases, repo: &Repo) -> Value {
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

/// The repository object of `GET /repos/{owner}/{repo}`, as GitHub answers an anonymous caller
/// for a public repository (key order of a recorded real response; no `permissions`). It agrees
/// with the releases: `created_at` is the oldest release's creation (the directory's mtime when
/// there are none), `updated_at`/`pushed_at` the newest publication, `default_branch` the
/// `target_commitish` of the latest release when that names a branch rather than a commit.
pub(super) fn repo_json(b: &Bases, repo: &Repo, all: &[Release]) -> Value {
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
pub(super) fn rate_limit_json(limit: u32, used: u32, reset: u64, now: u64) -> Value {
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
