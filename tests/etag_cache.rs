//! The persistent ETag cache (docs/host-layout.md#the-etag-cache), judged by what a separate
//! `flynnrel serve` process logged: a second `update --check` process sends `If-None-Match`,
//! is answered 304 (not counted against the rate limit) and succeeds; a tampered cached body is
//! still verified (refused, and then fetched afresh); a corrupt cache is ignored and replaced;
//! the bounds hold; no credential is stored.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use flynnrel::remote::ghrelease::Client;
use flynnrel::remote::ghrelease::etag_cache::{CacheLimits, path_in};

const V1: &str = "v2024.01.27.9";
const V2: &str = "v2024.01.27.10";
const TOKEN: &str = "ghp_fleetSecretToken0123456789";

/// `flynnrel serve` as its own process, with a request log; killed on drop.
struct ServeProc {
    child: Child,
    api: String,
    web: String,
    log: PathBuf,
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeProc {
    fn start(dir: &Path, work: &Path) -> ServeProc {
        let ready = work.join("serve-ready.json");
        let log = work.join("requests.jsonl");
        let child = Command::new(flynnrel_bin())
            .args(["serve", dir.to_str().unwrap(), "--quiet", "--rate-limit", "60"])
            .arg("--ready-file")
            .arg(&ready)
            .arg("--request-log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.is_file() {
            assert!(Instant::now() < deadline, "flynnrel serve did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        let urls: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
        ServeProc {
            child,
            api: urls["api_url"].as_str().unwrap().to_string(),
            web: urls["web_url"].as_str().unwrap().to_string(),
            log,
        }
    }

    /// The API requests logged so far (the `/rate_limit` probe left out).
    fn api_requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["listener"] == "api" && r["url"] != "/rate_limit")
            .collect()
    }

    /// How many requests the server counted against its limit (`GET /rate_limit`, itself not
    /// counted), read over a plain socket so no client code is involved.
    fn rate_used(&self) -> u64 {
        let addr = self.api.trim_start_matches("http://").trim_end_matches('/');
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /rate_limit HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["resources"]["core"]["used"].as_u64().unwrap()
    }
}

struct Host {
    tmp: tempfile::TempDir,
    serve_root: PathBuf,
    root: PathBuf,
}

impl Host {
    fn cache(&self) -> PathBuf {
        path_in(&self.root.join("etc/flynn"))
    }
}

fn layers(seed: u32) -> Vec<(&'static str, Vec<u8>)> {
    vec![("aaaa1111", noise(1, 50_000)), ("bbbb2222", noise(seed + 1, 20_000))]
}

/// V1 and V2 published; the server process is started by the caller.
fn releases() -> Host {
    let tmp = tempfile::tempdir().unwrap();
    let serve_root = tmp.path().join("releases");
    std::fs::create_dir(&serve_root).unwrap();
    publish(&serve_root, V1, "2024-01-27T09:00:00Z", &layers(1));
    publish(&serve_root, V2, "2024-01-27T10:00:00Z", &layers(2));
    let root = tmp.path().join("root");
    Host { tmp, serve_root, root }
}

/// Runs the CLI against `s` on `h`'s root; returns exit code and stderr.
fn cli(h: &Host, s: &ServeProc, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = Command::new(flynnrel_bin());
    for k in [
        "FLYNN_GITHUB_REPO",
        "FLYNN_GITHUB_API_URL",
        "FLYNN_GITHUB_URL",
        "FLYNN_RELEASE_PUBLIC_KEY",
        "FLYNN_RELEASE_FAILPOINT",
        "FLYNN_GITHUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_TOKEN",
    ] {
        c.env_remove(k);
    }
    c.args([
        "--root",
        h.root.to_str().unwrap(),
        "--api-url",
        &s.api,
        "--web-url",
        &s.web,
    ])
    .args(args)
    .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-9),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn cache_json(h: &Host) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(h.cache()).unwrap()).unwrap()
}

#[test]
fn a_second_check_process_is_answered_304_and_the_304s_cost_no_rate_limit() {
    let h = releases();
    let s = ServeProc::start(&h.serve_root, h.tmp.path());
    let (code, err) = cli(&h, &s, &["install", "--version", V1], &[]);
    assert_eq!(code, 0, "{err}");
    // Written by the successful install: in the config dir, 0600 in a 0700 directory.
    assert_eq!(mode(&h.cache()), 0o600);
    assert_eq!(mode(h.cache().parent().unwrap()), 0o700);

    let mark = s.api_requests().len();
    let (code, err) = cli(&h, &s, &["update", "--check"], &[("FLYNN_GITHUB_TOKEN", TOKEN)]);
    assert_eq!(code, 100, "first check: update available\n{err}");
    let first: Vec<_> = s.api_requests().split_off(mark);
    assert!(!first.is_empty());
    assert!(first.iter().all(|r| r["status"] == 200), "{first:?}");
    let used_after_first = s.rate_used();

    let mark = s.api_requests().len();
    let (code, err) = cli(&h, &s, &["update", "--check", "-v"], &[]);
    assert_eq!(code, 100, "second check, another process: the same answer\n{err}");
    let second: Vec<_> = s.api_requests().split_off(mark);
    assert_eq!(second.len(), first.len(), "{second:?}");
    for r in &second {
        assert_eq!(r["status"], 304, "{r}");
        let inm = r["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv[0] == "if-none-match")
            .map(|kv| kv[1].as_str().unwrap().to_string());
        assert!(inm.is_some_and(|v| v.starts_with("W/\"")), "{r}");
    }
    assert!(err.contains("cache=hit"), "{err}");
    assert_eq!(s.rate_used(), used_after_first, "304 answers are not counted");

    // `releases` with --root reads the list through the same cache: a 304.
    let mark = s.api_requests().len();
    let (code, err) = cli(&h, &s, &["releases"], &[]);
    assert_eq!(code, 0, "{err}");
    let listed: Vec<_> = s.api_requests().split_off(mark);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["status"], 304, "{listed:?}");
    assert_eq!(s.rate_used(), used_after_first);

    // The token the first check ran with is nowhere in the cache.
    let text = std::fs::read_to_string(h.cache()).unwrap();
    assert!(!text.contains(TOKEN) && !text.to_ascii_lowercase().contains("authorization"));
}

#[test]
fn a_tampered_cached_body_is_verified_refused_then_fetched_afresh() {
    let h = releases();
    let s = ServeProc::start(&h.serve_root, h.tmp.path());
    assert_eq!(cli(&h, &s, &["install", "--version", V1], &[]).0, 0);
    assert_eq!(cli(&h, &s, &["update", "--check"], &[]).0, 100);

    // Someone rewrites the cached release list: V2's flynn-host now carries a digest of other
    // bytes, and the entry's own sha256 is recomputed so the cache loads it. The ETag still
    // matches, so the server answers 304 and the client uses this body.
    let mut cache = cache_json(&h);
    let mut tampered = 0;
    for e in cache["entries"].as_array_mut().unwrap() {
        let mut body: serde_json::Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
        let Some(list) = body.as_array_mut() else { continue };
        for rel in list.iter_mut().filter(|r| r["tag_name"] == V2) {
            for a in rel["assets"].as_array_mut().unwrap() {
                if a["name"].as_str().unwrap().starts_with("flynn-host") {
                    a["digest"] = format!("sha256:{}", "0".repeat(64)).into();
                    tampered += 1;
                }
            }
        }
        let text = serde_json::to_string(&body).unwrap();
        use sha2::Digest;
        e["sha256"] = sha2::Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into();
        e["body"] = text.into();
    }
    assert!(tampered > 0, "the release list is cached: {cache}");
    std::fs::write(h.cache(), serde_json::to_vec(&cache).unwrap()).unwrap();
    let cache_before = std::fs::read(h.cache()).unwrap();
    let before = snapshot(&h.root);

    let mark = s.api_requests().len();
    let (code, err) = cli(&h, &s, &["update"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("GitHub's asset digest says"), "{err}");
    assert!(
        s.api_requests()[mark..].iter().any(|r| r["status"] == 304),
        "the tampered body was the one offered"
    );
    assert_eq!(snapshot(&h.root), before, "the refused update changed the host");
    // The refusal added nothing to the cache, and forgot the body that led to it.
    let after: serde_json::Value = serde_json::from_slice(&std::fs::read(h.cache()).unwrap()).unwrap();
    assert_ne!(std::fs::read(h.cache()).unwrap(), cache_before);
    let urls = |v: &serde_json::Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["url"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(urls(&after).iter().all(|u| urls(&cache).contains(u)));
    assert!(
        after["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["body"].as_str().unwrap().contains(&"0".repeat(64)))
    );

    // The next update fetches the list afresh (no If-None-Match for it) and succeeds.
    let mark = s.api_requests().len();
    let (code, err) = cli(&h, &s, &["update"], &[]);
    assert_eq!(code, 0, "{err}");
    let list = s.api_requests()[mark..]
        .iter()
        .find(|r| r["url"].as_str().unwrap().contains("/releases?"))
        .cloned()
        .unwrap();
    assert_eq!(list["status"], 200, "{list}");
    assert!(
        !list["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|kv| kv[0] == "if-none-match")
    );
    let out = Command::new(h.root.join("usr/local/bin/flynn-host"))
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), V2);
}

#[test]
fn a_corrupt_or_unwritable_cache_is_ignored_never_an_error() {
    let h = releases();
    let s = ServeProc::start(&h.serve_root, h.tmp.path());
    assert_eq!(cli(&h, &s, &["install", "--version", V1], &[]).0, 0);
    let junk: [&[u8]; 3] = [
        b"{\"format\":\"flynnrel-etag-cache/1\",\"entries\":[{\"url\":",
        b"\x00\xff garbage",
        br#"{"format":"flynnrel-etag-cache/1","entries":[{"url":"x","etag":"W/\"1\"","sha256":"00","used":1,"body":"[]"}]}"#,
    ];
    for bad in junk {
        std::fs::write(h.cache(), bad).unwrap();
        let mark = s.api_requests().len();
        let (code, err) = cli(&h, &s, &["update", "--check"], &[]);
        assert_eq!(code, 100, "{err}");
        let reqs = s.api_requests().split_off(mark);
        assert!(reqs.iter().all(|r| r["status"] == 200), "nothing conditional: {reqs:?}");
        // Replaced by a valid cache.
        assert_eq!(cache_json(&h)["format"], "flynnrel-etag-cache/1");
    }
    // An entry whose body is intact (its sha256 matches) but is not JSON: offered on a 304, it
    // is not parsed into anything; the URL is fetched again unconditionally.
    let mut cache = cache_json(&h);
    for e in cache["entries"].as_array_mut().unwrap() {
        let junk = "{not json";
        use sha2::Digest;
        e["sha256"] = sha2::Sha256::digest(junk.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into();
        e["body"] = junk.into();
    }
    std::fs::write(h.cache(), serde_json::to_vec(&cache).unwrap()).unwrap();
    let mark = s.api_requests().len();
    let (code, err) = cli(&h, &s, &["update", "--check", "-v"], &[]);
    assert_eq!(code, 100, "{err}");
    assert!(err.contains("cache=unparsable"), "{err}");
    let reqs = s.api_requests().split_off(mark);
    assert_eq!(
        reqs.iter().map(|r| r["status"].as_u64().unwrap()).collect::<Vec<_>>(),
        [304, 200],
        "{reqs:?}"
    );
    assert!(!std::fs::read_to_string(h.cache()).unwrap().contains("{not json"));

    // A directory where the file should be: the check still works, and leaves it alone.
    std::fs::remove_file(h.cache()).unwrap();
    std::fs::create_dir(h.cache()).unwrap();
    let (code, err) = cli(&h, &s, &["update", "--check", "-v"], &[]);
    assert_eq!(code, 100, "{err}");
    assert!(err.contains("etag_cache=not_written"), "{err}");
    assert!(h.cache().is_dir());
}

#[test]
fn the_bounds_hold_least_recently_used_out() {
    let tmp = tempfile::tempdir().unwrap();
    let tags: Vec<String> = (0..5).map(|i| format!("v1.0.{i}")).collect();
    for (i, t) in tags.iter().enumerate() {
        simple_release(tmp.path(), t, &format!("2024-01-0{}T00:00:00Z", i + 1), false);
    }
    let server = start(tmp.path());
    let path = tmp.path().join("etc/cache/github-etags.json");
    let client_with = |limits: CacheLimits| {
        let mut o = options(&server);
        o.etag_cache = Some(path.clone());
        o.etag_cache_limits = limits;
        Client::new(o).unwrap()
    };
    let entries = |p: &Path| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect()
    };
    let three = CacheLimits {
        max_entries: 3,
        max_bytes: 1 << 20,
    };
    // One "process" per tag, each a separate client: the file never holds more than three, and
    // the three are the most recently used.
    for t in &tags {
        let c = client_with(three);
        c.release_by_tag(t).unwrap();
        c.finish_etag_cache(true);
        assert!(entries(&path).len() <= 3);
    }
    let mut kept = entries(&path);
    kept.sort();
    assert_eq!(kept, ["v1.0.2", "v1.0.3", "v1.0.4"]);
    // Using an entry (a 304) makes it recent: v1.0.2 survives the next insertion, v1.0.3 does not.
    let c = client_with(three);
    c.release_by_tag("v1.0.2").unwrap();
    c.finish_etag_cache(true);
    let c = client_with(three);
    c.release_by_tag("v1.0.0").unwrap();
    c.finish_etag_cache(true);
    let mut kept = entries(&path);
    kept.sort();
    assert_eq!(kept, ["v1.0.0", "v1.0.2", "v1.0.4"]);
    // A byte bound of two and a half bodies keeps two.
    let body_len = {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["entries"][0]["body"].as_str().unwrap().len() as u64
    };
    let tiny = CacheLimits {
        max_entries: 3,
        max_bytes: body_len * 2 + body_len / 2,
    };
    let c = client_with(tiny);
    c.release_by_tag("v1.0.1").unwrap();
    c.finish_etag_cache(true);
    assert_eq!(entries(&path).len(), 2, "two bodies fit the byte bound");
    let two = entries(&path);
    let none = CacheLimits {
        max_entries: 3,
        max_bytes: 10,
    };
    let c = client_with(none);
    c.release_by_tag("v1.0.3").unwrap();
    c.finish_etag_cache(true);
    assert_eq!(entries(&path), two, "a body over the byte bound is never stored");
}
