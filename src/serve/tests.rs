//! End-to-end tests of the release server through a real HTTP client (reqwest, blocking, with
//! redirects disabled so every hop is checked).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use reqwest::blocking::{Client, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::*;
use crate::remote::ghrelease::Release;

/// Options keeping every request in memory, so tests can look at them.
fn kept_options(root: impl Into<std::path::PathBuf>) -> ServeOptions {
    let mut o = ServeOptions::new(root);
    o.keep_requests = 100_000;
    o
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

fn meta(root: &Path, release_dir: &str, json: &str) {
    put(root, &format!("{release_dir}/.release.json"), json.as_bytes());
}

/// A release dir with one asset and a fixed creation time.
fn release(root: &Path, tag: &str, created: &str, extra: &str) {
    put(root, &format!("o/r/{tag}/flynn-host-linux-amd64.gz"), tag.as_bytes());
    meta(
        root,
        &format!("o/r/{tag}"),
        &format!("{{\"created_at\":\"{created}\"{extra}}}"),
    );
}

fn testdata(name: &str) -> Value {
    let p = format!("{}/testdata/github/{name}", env!("CARGO_MANIFEST_DIR"));
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {p}: {e}"));
    serde_json::from_str(&s).expect("testdata json")
}

/// reqwest's `json` feature is not enabled in this crate; decode with serde_json.
trait Js {
    fn js<T: serde::de::DeserializeOwned>(self) -> serde_json::Result<T>;
}

impl Js for Response {
    fn js<T: serde::de::DeserializeOwned>(self) -> serde_json::Result<T> {
        let bytes = self.bytes().map_err(serde::de::Error::custom)?;
        serde_json::from_slice(&bytes)
    }
}

fn json(r: Response) -> Value {
    r.js().expect("json body")
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn start_at(root: &Path) -> Server {
    start(kept_options(root)).expect("start")
}

/// Send a raw request line (reqwest would normalize `..` away) and return the status.
fn raw_status(base: &str, target: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(s, "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn release_json_has_githubs_shape_and_parses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    put(root, "o/r/v1.0.0/flynn-host-linux-amd64.gz", b"host bytes");
    put(root, "o/r/v1.0.0/checksums.sha512", b"sums");
    put(root, "o/r/v1.0.0/.hidden", b"not an asset");
    meta(
        root,
        "o/r/v1.0.0",
        r#"{"body":"notes","created_at":"2024-01-27T12:00:00Z",
            "discussion_url":"https://example.com/d/1"}"#,
    );
    put(root, "o/r/v0.9.0/a.bin", b"x");
    let srv = start_at(root);
    let c = client();

    let example = testdata("openapi-example-release.json");
    let example_asset = &example["assets"][0];
    let r = c
        .get(format!("{}/repos/o/r/releases/tags/v1.0.0", srv.api_url()))
        .send()
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    let v = json(r);
    for k in example.as_object().expect("object").keys() {
        assert!(v.get(k).is_some(), "release key {k} missing: {v}");
    }
    for k in example["author"].as_object().expect("author").keys() {
        assert!(v["author"].get(k).is_some(), "author key {k} missing");
    }
    let assets = v["assets"].as_array().expect("assets");
    assert_eq!(assets.len(), 2, "hidden files are not assets: {v}");
    for a in assets {
        for k in example_asset.as_object().expect("asset").keys() {
            assert!(a.get(k).is_some(), "asset key {k} missing: {a}");
        }
    }
    let rel: Release = serde_json::from_value(v.clone()).expect("Release deserializes");
    assert_eq!(rel.tag_name, "v1.0.0");
    assert_eq!(rel.name.as_deref(), Some("v1.0.0"));
    assert_eq!(rel.body.as_deref(), Some("notes"));
    assert_eq!(rel.created_at.as_deref(), Some("2024-01-27T12:00:00Z"));
    assert_eq!(rel.published_at.as_deref(), Some("2024-01-27T12:00:00Z"));
    assert_eq!(rel.html_url, format!("{}/o/r/releases/tag/v1.0.0", srv.web_url()));
    assert_eq!(rel.url, format!("{}/repos/o/r/releases/{}", srv.api_url(), rel.id));
    let a = rel.asset("flynn-host-linux-amd64.gz").expect("asset");
    assert_eq!(a.size, 10);
    assert_eq!(a.content_type, "application/gzip");
    assert_eq!(a.label, None);
    assert_eq!(a.state, "uploaded");
    let want = crate::serve::store::hex(&Sha256::digest(b"host bytes"));
    assert_eq!(a.sha256_digest(), Some(want.as_str()));
    assert_eq!(
        a.browser_download_url,
        format!(
            "{}/o/r/releases/download/v1.0.0/flynn-host-linux-amd64.gz",
            srv.web_url()
        )
    );
    assert_eq!(
        rel.asset("checksums.sha512").expect("sums").content_type,
        "application/octet-stream"
    );

    // Ids are stable: the same release by id, and again after a restart.
    let by_id = json(c.get(&rel.url).send().expect("by id"));
    assert_eq!(by_id, v);
    let id = rel.id;
    drop(srv);
    let srv = start_at(root);
    let again: Release = c
        .get(format!("{}/repos/o/r/releases/tags/v1.0.0", srv.api_url()))
        .send()
        .expect("get")
        .js()
        .expect("json");
    assert_eq!(again.id, id);

    // Without a discussion, real GitHub omits `discussion_url`; everything else is there.
    let v = json(
        c.get(format!("{}/repos/o/r/releases/tags/v0.9.0", srv.api_url()))
            .send()
            .expect("get"),
    );
    for k in example.as_object().expect("object").keys() {
        assert!(
            k == "discussion_url" || v.get(k).is_some(),
            "release key {k} missing: {v}"
        );
    }
    assert!(v["body"].is_null());

    // Single asset and asset list endpoints.
    let list = json(c.get(again.assets_url()).send().expect("assets"));
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    let a = again.asset("flynn-host-linux-amd64.gz").expect("asset");
    let one = json(c.get(&a.url).send().expect("asset"));
    assert_eq!(one["name"], "flynn-host-linux-amd64.gz");
    assert_eq!(one["digest"], format!("sha256:{want}"));
}

trait AssetsUrl {
    fn assets_url(&self) -> String;
}

impl AssetsUrl for Release {
    fn assets_url(&self) -> String {
        format!("{}/assets", self.url)
    }
}

#[test]
fn list_paginates_with_githubs_link_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for i in 0..8 {
        release(root, &format!("v1.{i}.0"), &format!("2024-01-0{}T00:00:00Z", i + 1), "");
    }
    let srv = start_at(root);
    let c = client();
    let base = format!("{}/repos/o/r/releases", srv.api_url());

    let r = c.get(format!("{base}?per_page=3")).send().expect("page 1");
    assert_eq!(
        header(&r, "link").as_deref(),
        Some(format!("<{base}?per_page=3&page=2>; rel=\"next\", <{base}?per_page=3&page=3>; rel=\"last\"").as_str())
    );
    let r2 = c.get(format!("{base}?per_page=3&page=2")).send().expect("page 2");
    assert_eq!(
        header(&r2, "link").as_deref(),
        Some(
            format!(
                "<{base}?per_page=3&page=1>; rel=\"prev\", <{base}?per_page=3&page=3>; rel=\"next\", \
                 <{base}?per_page=3&page=3>; rel=\"last\", <{base}?per_page=3&page=1>; rel=\"first\""
            )
            .as_str()
        )
    );

    // Follow `next` like a client must, collecting every tag.
    let mut url = Some(format!("{base}?per_page=3"));
    let mut tags = Vec::new();
    let mut pages = 0;
    while let Some(u) = url.take() {
        let r = c.get(&u).send().expect("page");
        assert_eq!(r.status(), 200);
        url = header(&r, "link").and_then(|l| {
            l.split(", ")
                .find(|p| p.ends_with("rel=\"next\""))
                .map(|p| p[1..p.find('>').unwrap_or(1)].to_string())
        });
        let page: Vec<Release> = r.js().expect("releases");
        tags.extend(page.into_iter().map(|r| r.tag_name));
        pages += 1;
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..8).rev().map(|i| format!("v1.{i}.0")).collect();
    assert_eq!(tags, want, "newest first, no duplicates, none missing");

    // Last page: only prev and first.
    let r = c.get(format!("{base}?per_page=3&page=3")).send().expect("page 3");
    assert_eq!(
        header(&r, "link").as_deref(),
        Some(format!("<{base}?per_page=3&page=2>; rel=\"prev\", <{base}?per_page=3&page=1>; rel=\"first\"").as_str())
    );
    // Everything on one page: no Link header; per_page is capped at 100.
    let r = c.get(format!("{base}?per_page=500")).send().expect("all");
    assert_eq!(header(&r, "link"), None);
    assert_eq!(json(r).as_array().map(Vec::len), Some(8));
}

#[test]
fn ties_on_created_at_sort_by_tag_descending_naturally() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for tag in ["v1.9.0", "v1.10.0", "v1.2.0"] {
        release(root, tag, "2024-01-01T00:00:00Z", "");
    }
    let srv = start_at(root);
    let rels: Vec<Release> = client()
        .get(format!("{}/repos/o/r/releases", srv.api_url()))
        .send()
        .expect("list")
        .js()
        .expect("json");
    let tags: Vec<&str> = rels.iter().map(|r| r.tag_name.as_str()).collect();
    assert_eq!(tags, ["v1.10.0", "v1.9.0", "v1.2.0"]);
}

#[test]
fn latest_follows_githubs_rule_and_hides_drafts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    release(root, "v1.0.0", "2024-01-01T00:00:00Z", "");
    release(root, "v1.1.0", "2024-02-01T00:00:00Z", "");
    // A backport: an older version created later is GitHub's latest.
    release(root, "v1.0.1", "2024-03-01T00:00:00Z", "");
    release(root, "v1.2.0-rc.1", "2024-04-01T00:00:00Z", ",\"prerelease\":true");
    release(root, "v2.0.0", "2024-05-01T00:00:00Z", ",\"draft\":true");
    let srv = start_at(root);
    let c = client();
    let api = srv.api_url();
    let latest = |c: &Client| -> Release {
        c.get(format!("{api}/repos/o/r/releases/latest"))
            .send()
            .expect("latest")
            .js()
            .expect("json")
    };
    assert_eq!(latest(&c).tag_name, "v1.0.1");

    // Drafts: hidden from the list and the tag lookup.
    let rels: Vec<Release> = c
        .get(format!("{api}/repos/o/r/releases"))
        .send()
        .expect("list")
        .js()
        .expect("json");
    let tags: Vec<&str> = rels.iter().map(|r| r.tag_name.as_str()).collect();
    assert_eq!(tags, ["v1.2.0-rc.1", "v1.0.1", "v1.1.0", "v1.0.0"]);
    assert!(rels.iter().any(|r| r.prerelease));
    let r = c
        .get(format!("{api}/repos/o/r/releases/tags/v2.0.0"))
        .send()
        .expect("draft");
    assert_eq!(r.status(), 404);

    // The web host's latest/download follows the same rule.
    let r = c
        .get(format!(
            "{}/o/r/releases/latest/download/flynn-host-linux-amd64.gz",
            srv.web_url()
        ))
        .send()
        .expect("web latest");
    assert_eq!(r.status(), 302);
    let loc = header(&r, "location").expect("location");
    assert!(loc.contains("/o/r/v1.0.1/"), "{loc}");

    // make_latest elsewhere wins over the backport (the folder is re-read per request).
    meta(
        root,
        "o/r/v1.1.0",
        r#"{"created_at":"2024-02-01T00:00:00Z","make_latest":true}"#,
    );
    assert_eq!(latest(&c).tag_name, "v1.1.0");

    // No eligible release: 404.
    let dir2 = tempfile::tempdir().expect("tempdir");
    release(
        dir2.path(),
        "v1.0.0-rc.1",
        "2024-01-01T00:00:00Z",
        ",\"prerelease\":true",
    );
    let srv2 = start_at(dir2.path());
    let r = c
        .get(format!("{}/repos/o/r/releases/latest", srv2.api_url()))
        .send()
        .expect("latest");
    assert_eq!(r.status(), 404);
}

#[test]
fn not_found_is_githubs_body_and_other_methods_404() {
    let dir = tempfile::tempdir().expect("tempdir");
    release(dir.path(), "v1.0.0", "2024-01-01T00:00:00Z", "");
    let srv = start_at(dir.path());
    let c = client();
    let want = r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest/releases/releases","status":"404"}"#;
    for url in [
        "/repos/o/r/releases/tags/v9.9.9",
        "/repos/o/nope/releases",
        "/repos/o/r/releases/12345",
        "/repos/o/r/releases/assets/12345",
        "/something/else",
    ] {
        let r = c.get(format!("{}{url}", srv.api_url())).send().expect("get");
        assert_eq!(r.status(), 404, "{url}");
        assert_eq!(
            header(&r, "content-type").as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(r.text().expect("body"), want, "{url}");
    }
    let r = c
        .post(format!("{}/repos/o/r/releases", srv.api_url()))
        .body("{}")
        .send()
        .expect("post");
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().expect("body"), want);
}

#[test]
fn etag_304_and_rate_limit_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    release(dir.path(), "v1.0.0", "2024-01-01T00:00:00Z", "");
    let mut opts = kept_options(dir.path());
    opts.rate_limit = 4;
    let srv = start(opts).expect("start");
    let c = client();
    let url = format!("{}/repos/o/r/releases/latest", srv.api_url());

    let r = c.get(&url).send().expect("first");
    assert_eq!(r.status(), 200);
    let etag = header(&r, "etag").expect("etag");
    assert!(etag.starts_with("W/\"") && etag.len() == 3 + 64 + 1, "{etag}");
    assert_eq!(header(&r, "x-ratelimit-limit").as_deref(), Some("4"));
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("3"));
    assert_eq!(header(&r, "x-ratelimit-used").as_deref(), Some("1"));
    assert_eq!(header(&r, "x-ratelimit-resource").as_deref(), Some("core"));
    assert_eq!(
        header(&r, "cache-control").as_deref(),
        Some("private, max-age=60, s-maxage=60")
    );
    assert_eq!(
        header(&r, "x-github-api-version-selected").as_deref(),
        Some("2022-11-28")
    );
    assert_eq!(
        header(&r, "x-github-media-type").as_deref(),
        Some("github.v3; format=json")
    );
    assert!(header(&r, "x-github-request-id").is_some());
    let reset: u64 = header(&r, "x-ratelimit-reset")
        .and_then(|v| v.parse().ok())
        .expect("reset");
    let now = SystemTimeExt::now_secs();
    assert!(reset > now + 3500 && reset <= now + 3600, "{reset} vs {now}");

    // 304 with no body, not counted.
    let r = c.get(&url).header("If-None-Match", &etag).send().expect("conditional");
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "etag").as_deref(), Some(etag.as_str()));
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("3"));
    assert_eq!(r.bytes().expect("body").len(), 0);

    // A stale ETag gets the full body and counts; so do 404s.
    let r = c
        .get(&url)
        .header("If-None-Match", "W/\"stale\"")
        .send()
        .expect("stale");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("2"));
    let r = c
        .get(format!("{}/repos/o/r/releases/tags/nope", srv.api_url()))
        .send()
        .expect("404");
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("1"));
    let r = c.get(&url).send().expect("last");
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("0"));
    // Exhausted: GitHub's 403 with remaining 0.
    let r = c.get(&url).send().expect("limited");
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert!(
        json(r)["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("API rate limit exceeded"))
    );
}

struct SystemTimeExt;

impl SystemTimeExt {
    fn now_secs() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

#[test]
fn downloads_redirect_to_storage_and_support_ranges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    put(root, "o/r/v1.0.0/flynn-linux-amd64.gz", &data);
    let srv = start_at(root);
    let c = client();
    let rel: Release = c
        .get(format!("{}/repos/o/r/releases/tags/v1.0.0", srv.api_url()))
        .send()
        .expect("release")
        .js()
        .expect("json");
    let asset = rel.asset("flynn-linux-amd64.gz").expect("asset");

    // Asset API with Accept: application/octet-stream → 302 to storage.
    let r = c
        .get(&asset.url)
        .header("Accept", "application/octet-stream")
        .header("Authorization", "Bearer secret-token")
        .send()
        .expect("asset api");
    assert_eq!(r.status(), 302);
    let loc = header(&r, "location").expect("location");
    assert!(loc.starts_with(&srv.storage_url()), "{loc}");
    let body = c.get(&loc).send().expect("storage").bytes().expect("bytes");
    assert_eq!(&body[..], &data[..]);

    // Web download → 302 to storage.
    let r = c.get(&asset.browser_download_url).send().expect("web download");
    assert_eq!(r.status(), 302);
    let loc = header(&r, "location").expect("location");
    assert!(loc.starts_with(&srv.storage_url()), "{loc}");
    let r = c.get(&loc).send().expect("storage");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some("application/octet-stream"));
    assert_eq!(header(&r, "content-length").as_deref(), Some("100000"));
    assert_eq!(header(&r, "accept-ranges").as_deref(), Some("bytes"));
    assert!(header(&r, "etag").is_some());
    assert!(header(&r, "last-modified").is_some_and(|v| v.ends_with(" GMT")));
    assert_eq!(r.bytes().expect("bytes").len(), data.len());

    // Unknown files on the web host: 404.
    let r = c
        .get(format!("{}/o/r/releases/download/v1.0.0/nope", srv.web_url()))
        .send()
        .expect("web 404");
    assert_eq!(r.status(), 404);

    // Ranges.
    let r = c.get(&loc).header("Range", "bytes=99990-").send().expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range").as_deref(), Some("bytes 99990-99999/100000"));
    assert_eq!(&r.bytes().expect("bytes")[..], &data[99_990..]);
    let r = c.get(&loc).header("Range", "bytes=10-19").send().expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().expect("bytes")[..], &data[10..20]);
    let r = c.get(&loc).header("Range", "bytes=100000-").send().expect("416");
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "content-range").as_deref(), Some("bytes */100000"));
    // HEAD: headers only.
    let r = c.head(&loc).send().expect("head");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").as_deref(), Some("100000"));

    // The log holds the token's presence, never its value.
    let logged = srv.requests();
    let with_auth = logged
        .iter()
        .find(|l| l.header("authorization").is_some())
        .expect("auth request logged");
    assert_eq!(with_auth.header("authorization"), Some("<redacted>"));
    assert_eq!(with_auth.header("accept"), Some("application/octet-stream"));
    assert_eq!(with_auth.status, 302);
    let text = serde_json::to_string(&logged).expect("serialize");
    assert!(!text.contains("secret-token"));
    assert!(
        logged
            .iter()
            .any(|l| l.listener == Listener::Storage && l.header("range") == Some("bytes=10-19") && l.status == 206)
    );
    srv.clear_requests();
    assert!(srv.requests().is_empty());
}

#[test]
fn traversal_hidden_files_and_outside_symlinks_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("outside");
    let root = dir.path();
    put(root, "o/r/v1.0.0/a.bin", b"ok");
    put(root, "secret.txt", b"secret");
    std::fs::write(outside.path().join("leak"), b"leak").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path().join("leak"), root.join("o/r/v1.0.0/leak")).expect("symlink");
    meta(root, "o/r/v1.0.0", "{}");
    let srv = start_at(root);
    let s = srv.storage_url();
    assert_eq!(raw_status(&s, "/o/r/v1.0.0/a.bin"), 200);
    for bad in [
        "/o/r/v1.0.0/../../../secret.txt",
        "/o/r/../../secret.txt",
        "/o/r/v1.0.0/%2e%2e",
        "/o/r/%2e%2e/%2e%2e/secret.txt",
        "/o/r/v1.0.0/.release.json",
        "/o/r/v1.0.0//a.bin",
        "/o/r/v1.0.0/..%2F..%2F..%2Fsecret.txt",
        "/o/r/v1.0.0/leak",
        "/secret.txt",
    ] {
        assert_eq!(raw_status(&s, bad), 404, "{bad}");
    }
    let w = srv.web_url();
    assert_eq!(
        raw_status(&w, "/o/r/releases/download/v1.0.0/../../../../secret.txt"),
        404
    );
    // The outside symlink is not listed as an asset either.
    let rel: Release = client()
        .get(format!("{}/repos/o/r/releases/tags/v1.0.0", srv.api_url()))
        .send()
        .expect("get")
        .js()
        .expect("json");
    let names: Vec<&str> = rel.assets.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a.bin"]);
}

#[test]
fn interceptor_answers_raw_and_is_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    put(dir.path(), "o/r/v1.0.0/a.bin", b"0123456789");
    let mut opts = kept_options(dir.path());
    let ic: Interceptor = Arc::new(|req: &RequestInfo| {
        if req.listener == Listener::Api && req.url.ends_with("/releases/latest") {
            let raw = "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nbad";
            return Some(Box::new(std::io::Cursor::new(raw.as_bytes().to_vec())) as Box<dyn Read + Send>);
        }
        if req.listener == Listener::Storage && req.header("x-truncate").is_some() {
            // Promises 10 bytes, sends 3, then the connection closes.
            let raw = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n012";
            return Some(Box::new(std::io::Cursor::new(raw.as_bytes().to_vec())));
        }
        None
    });
    opts.interceptor = Some(ic);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    opts.log = Some(Box::new(move |l: &LoggedRequest| {
        lock(&s2).push(format!("{:?} {} {}", l.listener, l.url, l.status))
    }));
    let srv = start(opts).expect("start");
    let c = client();
    let r = c
        .get(format!("{}/repos/o/r/releases/latest", srv.api_url()))
        .send()
        .expect("intercepted");
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().expect("body"), "bad");

    let url = format!("{}/o/r/v1.0.0/a.bin", srv.storage_url());
    let r = c.get(&url).header("x-truncate", "1").send().expect("head");
    assert_eq!(r.status(), 200);
    assert!(r.bytes().is_err(), "a truncated body must surface as an error");
    // Not intercepted: served normally.
    assert_eq!(
        &c.get(&url).send().expect("normal").bytes().expect("bytes")[..],
        b"0123456789"
    );

    let log = srv.requests();
    assert_eq!(log.len(), 3);
    assert!(log[0].intercepted && log[0].status == 0 && log[0].listener == Listener::Api);
    assert!(log[1].intercepted && log[1].listener == Listener::Storage);
    assert!(!log[2].intercepted && log[2].status == 200);
    assert_eq!(lock(&seen).len(), 3);
    let j = serde_json::to_value(&log[0]).expect("serialize");
    assert_eq!(j["listener"], "api");
}

#[test]
fn enterprise_prefix_is_served_and_kept_in_urls() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..3 {
        release(
            dir.path(),
            &format!("v1.{i}.0"),
            &format!("2024-01-0{}T00:00:00Z", i + 1),
            "",
        );
    }
    let srv = start_at(dir.path());
    let c = client();
    let base = format!("{}/api/v3", srv.api_url());
    let r = c
        .get(format!("{base}/repos/o/r/releases?per_page=1"))
        .send()
        .expect("list");
    assert_eq!(r.status(), 200);
    let link = header(&r, "link").expect("link");
    assert!(
        link.starts_with(&format!("<{base}/repos/o/r/releases?per_page=1&page=2>")),
        "{link}"
    );
    let rels: Vec<Release> = r.js().expect("json");
    assert!(rels[0].url.starts_with(&format!("{base}/repos/o/r/releases/")));
    let a = &rels[0].assets[0];
    assert!(a.url.starts_with(&format!("{base}/repos/o/r/releases/assets/")));
    let r = c
        .get(&a.url)
        .header("Accept", "application/octet-stream")
        .send()
        .expect("asset");
    assert_eq!(r.status(), 302);
    let r = c
        .get(format!("{base}/repos/o/r/releases/latest"))
        .send()
        .expect("latest");
    assert_eq!(r.status(), 200);
}

#[test]
fn start_reports_missing_root_and_busy_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let e = start(kept_options(&missing)).expect_err("missing root");
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("nope"), "{e}");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    let e = start(kept_options(&file)).expect_err("file root");
    assert_eq!(e.kind(), ErrorKind::Io);

    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr");
    let mut opts = kept_options(dir.path());
    opts.web_listen = addr;
    let e = start(opts).expect_err("busy");
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}

#[test]
fn invalid_metadata_is_a_500_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    put(dir.path(), "o/r/v1.0.0/a.bin", b"x");
    meta(dir.path(), "o/r/v1.0.0", r#"{"prelease":true}"#);
    let srv = start_at(dir.path());
    let r = client()
        .get(format!("{}/repos/o/r/releases", srv.api_url()))
        .send()
        .expect("list");
    assert_eq!(r.status(), 500);
    let m = json(r)["message"].as_str().unwrap_or_default().to_string();
    assert!(m.contains(".release.json") && m.contains("prelease"), "{m}");
}

#[test]
fn many_concurrent_downloads_proceed_in_parallel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = vec![7u8; 2 * 1024 * 1024];
    put(dir.path(), "o/r/v1.0.0/big.bin", &data);
    let srv = start_at(dir.path());
    let url = format!("{}/o/r/v1.0.0/big.bin", srv.storage_url());
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let b = client().get(&url).send().and_then(|r| r.bytes());
                b.map(|b| b.len()).unwrap_or(0)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), data.len());
    }
    srv.shutdown();
}

#[test]
fn tampered_files_are_rehashed() {
    let dir = tempfile::tempdir().expect("tempdir");
    put(dir.path(), "o/r/v1.0.0/a.bin", b"first");
    let srv = start_at(dir.path());
    let c = client();
    let url = format!("{}/repos/o/r/releases/tags/v1.0.0", srv.api_url());
    let d1 = json(c.get(&url).send().expect("get"))["assets"][0]["digest"].clone();
    put(dir.path(), "o/r/v1.0.0/a.bin", b"second!");
    let d2 = json(c.get(&url).send().expect("get"))["assets"][0]["digest"].clone();
    assert_ne!(d1, d2);
    let want = format!("sha256:{}", crate::serve::store::hex(&Sha256::digest(b"second!")));
    assert_eq!(d2, want);
}

/// A raw GET with this `Host` header: (status, body).
fn raw_get_with_host(base: &str, target: &str, host: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(s, "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn repository_object_has_githubs_shape_and_agrees_with_the_releases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    release(root, "v1.0.0", "2024-01-20T12:00:00Z", "");
    release(
        root,
        "v1.1.0",
        "2024-01-25T12:00:00Z",
        r#","published_at":"2024-01-26T08:00:00Z""#,
    );
    release(root, "v1.2.0-rc1", "2024-01-27T12:00:00Z", r#","prerelease":true"#);
    let srv = start_at(root);
    let c = client();

    let r = c.get(format!("{}/repos/o/r", srv.api_url())).send().expect("get");
    assert_eq!(r.status(), 200);
    assert!(header(&r, "etag").is_some());
    assert!(header(&r, "x-ratelimit-used").is_some());
    let v = json(r);

    // Every key of a recorded real response is there, in the same order, except the ones only
    // an authenticated collaborator sees.
    let recorded = testdata("recorded/octokit-fixtures-rename-repository-301-raw.json");
    let real = &recorded[3]["response"];
    let want: Vec<&String> = real
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| {
            !k.starts_with("allow_")
                && ![
                    "permissions",
                    "delete_branch_on_merge",
                    "use_squash_pr_title_as_default",
                ]
                .contains(&k.as_str())
        })
        .collect();
    let got: Vec<&String> = v
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| want.contains(k))
        .collect();
    assert_eq!(got, want, "{v}");
    for k in real["owner"].as_object().expect("owner").keys() {
        assert!(v["owner"].get(k).is_some(), "owner key {k} missing");
    }

    let api = srv.api_url();
    let web = srv.web_url();
    let releases: Value = json(c.get(format!("{api}/repos/o/r/releases")).send().expect("list"));
    assert_eq!(v["name"], "r");
    assert_eq!(v["full_name"], "o/r");
    assert_eq!(v["owner"]["login"], "o");
    assert_eq!(v["owner"]["type"], "Organization");
    assert_eq!(v["owner"]["html_url"], format!("{web}/o"));
    assert_eq!(v["organization"], v["owner"]);
    assert_eq!(v["private"], false);
    assert_eq!(v["visibility"], "public");
    assert_eq!(v["fork"], false);
    assert_eq!(v["default_branch"], "master");
    assert_eq!(v["url"], format!("{api}/repos/o/r"));
    assert_eq!(v["html_url"], format!("{web}/o/r"));
    assert_eq!(v["clone_url"], format!("{web}/o/r.git"));
    assert_eq!(v["releases_url"], format!("{api}/repos/o/r/releases{{/id}}"));
    assert_eq!(v["archive_url"], format!("{api}/repos/o/r/{{archive_format}}{{/ref}}"));
    let id = v["id"].as_u64().expect("id");
    assert!(id > 0 && id < (1u64 << 53));
    assert_eq!(v["node_id"], node_id_of("Repository", id));
    // Release URLs hang off the repository's URL.
    for rel in releases.as_array().expect("array") {
        assert!(
            rel["url"]
                .as_str()
                .expect("url")
                .starts_with(v["url"].as_str().expect("url"))
        );
    }
    assert_eq!(v["created_at"], "2024-01-20T12:00:00Z", "the oldest release");
    assert_eq!(v["pushed_at"], "2024-01-27T12:00:00Z", "the newest release");
    assert_eq!(v["updated_at"], v["pushed_at"]);

    // Owner and repository names are case-insensitive, answered as spelled on disk; the
    // Enterprise prefix works too; the id is stable.
    let again = json(c.get(format!("{api}/api/v3/repos/O/R")).send().expect("get"));
    assert_eq!(again["full_name"], "o/r");
    assert_eq!(again["id"], v["id"]);
    assert_eq!(again["url"], format!("{api}/api/v3/repos/o/r"));
}

#[test]
fn repository_default_branch_follows_the_latest_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    release(root, "v1.0.0", "2024-01-20T12:00:00Z", r#","target_commitish":"main""#);
    release(
        root,
        "v1.1.0",
        "2024-01-21T12:00:00Z",
        &format!(r#","target_commitish":"{}""#, "a".repeat(40)),
    );
    let srv = start_at(root);
    let c = client();
    // The latest release names a commit, not a branch: fall back to GitHub's default.
    let v = json(c.get(format!("{}/repos/o/r", srv.api_url())).send().expect("get"));
    assert_eq!(v["default_branch"], "master");
    std::fs::remove_dir_all(root.join("o/r/v1.1.0")).expect("rm");
    let v = json(c.get(format!("{}/repos/o/r", srv.api_url())).send().expect("get"));
    assert_eq!(v["default_branch"], "main");
}

#[test]
fn unknown_repository_is_githubs_404() {
    let dir = tempfile::tempdir().expect("tempdir");
    release(dir.path(), "v1.0.0", "2024-01-20T12:00:00Z", "");
    let srv = start_at(dir.path());
    let c = client();
    for path in [
        "/repos/o/nope",
        "/repos/nope/r",
        "/repos/o/..",
        "/repos/o/.hidden",
        "/repos/o",
    ] {
        let r = c.get(format!("{}{path}", srv.api_url())).send().expect("get");
        assert_eq!(r.status(), 404, "{path}");
        let v = json(r);
        assert_eq!(v["message"], "Not Found", "{path}");
        assert_eq!(v["status"], "404", "{path}");
        assert!(
            v["documentation_url"]
                .as_str()
                .expect("docs")
                .starts_with("https://docs.github.com/rest/")
        );
    }
    let v = json(c.get(format!("{}/repos/o/nope", srv.api_url())).send().expect("get"));
    assert_eq!(
        v["documentation_url"],
        "https://docs.github.com/rest/repos/repos#get-a-repository"
    );
    assert_eq!(
        c.post(format!("{}/repos/o/r", srv.api_url()))
            .send()
            .expect("post")
            .status(),
        404
    );
}

#[test]
fn rate_limit_reports_the_window_and_is_not_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    release(dir.path(), "v1.0.0", "2024-01-20T12:00:00Z", "");
    let mut opts = kept_options(dir.path());
    opts.rate_limit = 3;
    let srv = start(opts).expect("start");
    let c = client();
    let api = srv.api_url();
    let get = |p: &str| c.get(format!("{api}{p}")).send().expect("get");

    let r = get("/rate_limit");
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-ratelimit-used").as_deref(),
        Some("0"),
        "reading it is free"
    );
    let reset = header(&r, "x-ratelimit-reset").expect("reset");
    let v = json(r);
    let core = &v["resources"]["core"];
    assert_eq!(core["limit"], 3);
    assert_eq!(core["used"], 0);
    assert_eq!(core["remaining"], 3);
    assert_eq!(core["reset"].to_string(), reset);
    assert_eq!(v["rate"], *core, "the legacy `rate` is core");
    for k in ["search", "graphql", "integration_manifest", "code_search"] {
        let res = &v["resources"][k];
        assert!(
            res["limit"].is_u64() && res["used"].is_u64() && res["remaining"].is_u64() && res["reset"].is_u64(),
            "{k}: {res}"
        );
    }

    assert_eq!(get("/repos/o/r/releases").status(), 200);
    assert_eq!(get("/repos/o/r").status(), 200);
    let r = get("/rate_limit");
    assert_eq!(header(&r, "x-ratelimit-used").as_deref(), Some("2"));
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("1"));
    let v = json(r);
    assert_eq!(v["resources"]["core"]["used"], 2);
    assert_eq!(v["resources"]["core"]["remaining"], 1);

    // Spent: other routes get GitHub's 403, /rate_limit still answers and says so.
    assert_eq!(get("/repos/o/r/releases/latest").status(), 200);
    assert_eq!(get("/repos/o/r").status(), 403);
    let r = get("/rate_limit");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("0"));
    let v = json(r);
    assert_eq!(v["resources"]["core"]["used"], 3);
    assert_eq!(v["resources"]["core"]["remaining"], 0);
    // The GitHub Enterprise prefix too.
    assert_eq!(get("/api/v3/rate_limit").status(), 200);
}

#[test]
fn storage_is_served_under_another_host_name_than_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    put(dir.path(), "o/r/v1.0.0/a.bin", b"bytes");
    let srv = start_at(dir.path());
    let c = client();
    let api = reqwest::Url::parse(&srv.api_url()).expect("api url");
    let storage = reqwest::Url::parse(&srv.storage_url()).expect("storage url");
    assert_eq!(api.host_str(), Some("127.0.0.1"));
    assert_eq!(storage.host_str(), Some("localhost"));
    // Both allowed as plain http by the project's own client (loopback only).
    assert!(
        crate::remote::ghrelease::options::is_loopback(&api)
            && crate::remote::ghrelease::options::is_loopback(&storage)
    );

    let rel = json(
        c.get(format!("{}/repos/o/r/releases/latest", srv.api_url()))
            .send()
            .expect("latest"),
    );
    let asset_url = rel["assets"][0]["url"].as_str().expect("asset url").to_string();
    let r = c
        .get(&asset_url)
        .header("accept", "application/octet-stream")
        .send()
        .expect("asset");
    assert_eq!(r.status(), 302);
    let loc = reqwest::Url::parse(&header(&r, "location").expect("location")).expect("location url");
    assert_eq!(loc.host_str(), Some("localhost"));
    assert_ne!(loc.host_str(), api.host_str());
    assert_eq!(
        c.get(loc).send().expect("storage").bytes().expect("bytes").as_ref(),
        b"bytes"
    );

    // An explicit storage address is named as it is.
    let mut opts = kept_options(dir.path());
    opts.storage_listen = SocketAddr::from(([127, 0, 0, 2], 0));
    if let Ok(srv2) = start(opts) {
        assert!(
            srv2.storage_url().starts_with("http://127.0.0.2:"),
            "{}",
            srv2.storage_url()
        );
    }
}

#[test]
fn api_urls_use_the_host_name_the_client_called() {
    let dir = tempfile::tempdir().expect("tempdir");
    release(dir.path(), "v1.0.0", "2024-01-20T12:00:00Z", "");
    release(dir.path(), "v1.1.0", "2024-01-21T12:00:00Z", "");
    let srv = start_at(dir.path());
    let api = srv.api_url();
    let port = api.rsplit(':').next().expect("port");

    let (status, body) = raw_get_with_host(&api, "/repos/o/r", &format!("api.localhost:{port}"));
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["url"], format!("http://api.localhost:{port}/repos/o/r"));
    // The web and storage hosts are the server's own.
    assert!(v["html_url"].as_str().expect("html").starts_with(&srv.web_url()));

    let (_, body) = raw_get_with_host(&api, "/repos/o/r/releases/latest", &format!("api.localhost:{port}"));
    let v: Value = serde_json::from_str(&body).expect("json");
    assert!(
        v["url"]
            .as_str()
            .expect("url")
            .starts_with(&format!("http://api.localhost:{port}/repos/o/r/releases/"))
    );
    assert!(
        v["assets"][0]["browser_download_url"]
            .as_str()
            .expect("bdu")
            .starts_with(&srv.web_url())
    );

    // A Host for another port, or not a host name, is not echoed.
    for host in [
        "api.localhost:1".to_string(),
        format!("evil/x:{port}"),
        format!("a b:{port}"),
        format!("a@b:{port}"),
        format!("[zz]:{port}"),
        String::new(),
    ] {
        let (status, body) = raw_get_with_host(&api, "/repos/o/r", &host);
        if status == 200 {
            let v: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(v["url"], format!("{api}/repos/o/r"), "Host {host:?}");
        }
    }
    let (_, body) = raw_get_with_host(&api, "/repos/o/r", &format!("[::1]:{port}"));
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["url"], format!("http://[::1]:{port}/repos/o/r"));
}

/// GitHub's legacy node id, computed independently of the server's.
fn node_id_of(kind: &str, id: u64) -> String {
    use std::fmt::Write;
    let raw = format!("0{}:{kind}{id}", kind.len());
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bits: Vec<u8> = raw.bytes().collect();
    let mut out = String::new();
    for ch in bits.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= ch.len() {
                let _ = write!(out, "{}", A[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Send a request head with `extra` header lines and return the status.
fn raw_with_headers(base: &str, target: &str, extra: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    let head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    // The server may answer and close before reading everything; a write error then is fine.
    let _ = s.write_all(head.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn the_request_log_is_kept_only_when_asked_and_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    release(dir.path(), "v1.0.0", "2024-01-01T00:00:00Z", "");
    // By default nothing stays in memory, however many requests come.
    let srv = start(ServeOptions::new(dir.path())).expect("start");
    for _ in 0..50 {
        assert_eq!(raw_status(&srv.api_url(), "/repos/o/r/releases"), 200);
    }
    assert!(srv.requests().is_empty());

    // Asked for 3, it keeps the latest 3.
    let mut opts = ServeOptions::new(dir.path());
    opts.keep_requests = 3;
    let srv = start(opts).expect("start");
    for page in 1..=10 {
        raw_status(&srv.api_url(), &format!("/repos/o/r/releases?page={page}"));
    }
    let urls: Vec<String> = srv.requests().into_iter().map(|r| r.url).collect();
    assert_eq!(
        urls,
        [
            "/repos/o/r/releases?page=8",
            "/repos/o/r/releases?page=9",
            "/repos/o/r/releases?page=10"
        ]
    );

    // Each entry is bounded: a long URL and long, repeated header values are cut.
    srv.clear_requests();
    let long_url = format!("/repos/o/r/releases?q={}", "x".repeat(10_000));
    let ua = format!("User-Agent: {}\r\n", "u".repeat(10_000));
    assert_eq!(raw_with_headers(&srv.api_url(), &long_url, &ua.repeat(4)), 200);
    let r = &srv.requests()[0];
    assert!(
        r.url.len() <= LOGGED_URL_BYTES && r.url.ends_with('…'),
        "{}",
        r.url.len()
    );
    let uas: Vec<_> = r.headers.iter().filter(|(n, _)| n == "user-agent").collect();
    assert_eq!(uas.len(), 1, "one value per header name");
    assert!(uas[0].1.len() <= LOGGED_VALUE_BYTES);

    // A request head over 64 KiB is refused before it is handled (or logged).
    srv.clear_requests();
    let big = format!("User-Agent: {}\r\n", "u".repeat(16_000)).repeat(5);
    assert_eq!(raw_with_headers(&srv.api_url(), "/repos/o/r/releases", &big), 431);
    assert!(srv.requests().iter().all(|r| r.status != 200));
}
