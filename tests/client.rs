//! The GitHub client and verified downloads against the local release server, judged by the
//! requests the server logged.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use flynnrel::ErrorKind;
use flynnrel::model::checksums::sha512_hex;
use flynnrel::remote::fetch::{self, fetch_asset};
use flynnrel::remote::ghrelease::{Channel, Client};
use flynnrel::serve::Listener;

fn api_requests(server: &flynnrel::serve::Server) -> Vec<flynnrel::serve::LoggedRequest> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Api)
        .collect()
}

#[test]
fn pagination_follows_link_next_over_three_pages() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..7 {
        simple_release(
            tmp.path(),
            &format!("v1.0.{i}"),
            &format!("2024-01-0{}T00:00:00Z", i + 1),
            false,
        );
    }
    let server = start(tmp.path());
    let mut o = options(&server);
    o.per_page = 3;
    let client = Client::new(o).unwrap();
    let all = client.releases().unwrap();
    let mut tags: Vec<String> = all.iter().map(|r| r.tag_name.clone()).collect();
    assert_eq!(tags.len(), 7, "{tags:?}");
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), 7, "duplicates across pages");
    let reqs = api_requests(&server);
    let lists: Vec<&str> = reqs
        .iter()
        .map(|r| r.url.as_str())
        .filter(|u| u.contains("/releases?") || u.contains("/releases&"))
        .collect();
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(lists[0].contains("per_page=3"));
    assert!(lists[1].contains("page=2") && lists[2].contains("page=3"), "{lists:?}");
}

#[test]
fn latest_stable_nightly_with_a_backport() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v2024.01.27.9", "2024-01-27T09:00:00Z", false);
    simple_release(tmp.path(), "v2024.01.27.10", "2024-01-27T10:00:00Z", false);
    simple_release(tmp.path(), "v2024.01.28.0-rc.1", "2024-01-28T00:00:00Z", true);
    // A backport of the .9 line published after .10: GitHub marks it "latest".
    simple_release(tmp.path(), "v2024.01.27.9-backport.1", "2024-01-29T00:00:00Z", false);
    simple_release(tmp.path(), "v2024.01.26.5", "2024-01-30T00:00:00Z", false);
    let server = start(tmp.path());
    let c = client(&server);
    assert_eq!(c.latest_release().unwrap().tag_name, "v2024.01.26.5");
    let (stable, v) = c.channel_release(Channel::Stable, None).unwrap();
    assert_eq!(stable.tag_name, "v2024.01.27.10");
    assert_eq!(v.as_str(), "v2024.01.27.10");
    let (nightly, _) = c.channel_release(Channel::Nightly, None).unwrap();
    assert_eq!(nightly.tag_name, "v2024.01.28.0-rc.1");
}

#[test]
fn unknown_tag_is_a_clear_not_found_and_drafts_are_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v1.0.0", "2024-01-01T00:00:00Z", false);
    add_release(
        tmp.path(),
        REPO,
        "v2.0.0",
        serde_json::json!({"draft": true}),
        &[("a", b"x")],
    );
    let server = start(tmp.path());
    let c = client(&server);
    let e = c.release_by_tag("v9.9.9").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("v9.9.9") && e.message().contains(REPO), "{e}");
    let tags: Vec<String> = c.releases().unwrap().into_iter().map(|r| r.tag_name).collect();
    assert_eq!(tags, vec!["v1.0.0"]);
    assert_eq!(c.release_by_tag("v2.0.0").unwrap_err().kind(), ErrorKind::NotFound);
    let (r, _) = c.channel_release(Channel::Nightly, None).unwrap();
    assert_eq!(r.tag_name, "v1.0.0");
}

#[test]
fn second_check_is_answered_304_from_the_etag_cache() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v1.0.0", "2024-01-01T00:00:00Z", false);
    let server = start(tmp.path());
    let c = client(&server);
    let first = c.latest_release().unwrap();
    let second = c.latest_release().unwrap();
    assert_eq!(first, second);
    let reqs = api_requests(&server);
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].status, 200);
    assert!(reqs[0].header("if-none-match").is_none());
    assert_eq!(reqs[1].status, 304);
    assert!(reqs[1].header("if-none-match").is_some());
}

fn one_asset_release(root: &std::path::Path, data: &[u8]) {
    add_release(
        root,
        REPO,
        "v1.0.0",
        serde_json::json!({"created_at": "2024-01-01T00:00:00Z"}),
        &[("flynn-host-linux-amd64.gz", data)],
    );
}

#[test]
fn token_goes_to_the_api_host_only_never_to_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    one_asset_release(tmp.path(), &data);
    let server = start(tmp.path());
    let mut o = options(&server);
    o.token = Some("ghp_TESTTOKEN".into());
    let c = Client::new(o).unwrap();
    let rel = c.release_by_tag("v1.0.0").unwrap();
    let asset = rel.asset("flynn-host-linux-amd64.gz").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let got = fetch_asset(&c, asset, dest.path(), &sha512_hex(&data), &mut fetch::no_progress).unwrap();
    assert_eq!(got.size, data.len() as u64);
    let reqs = server.requests();
    let api: Vec<_> = reqs.iter().filter(|r| r.listener == Listener::Api).collect();
    let storage: Vec<_> = reqs.iter().filter(|r| r.listener == Listener::Storage).collect();
    assert!(api.len() >= 2, "tag lookup and asset API request: {api:?}");
    assert!(api.iter().all(|r| r.header("authorization").is_some()), "{api:?}");
    assert_eq!(storage.len(), 1);
    assert!(
        storage[0].header("authorization").is_none(),
        "token leaked to storage: {:?}",
        storage[0]
    );
    // The token itself is never in the log.
    assert!(!format!("{reqs:?}").contains("ghp_TESTTOKEN"));
}

#[test]
fn anonymous_download_goes_web_then_storage_and_persists_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let data = b"flynn-host bytes".to_vec();
    one_asset_release(tmp.path(), &data);
    let server = start(tmp.path());
    let c = client(&server);
    let rel = c.release_by_tag("v1.0.0").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let got = fetch_asset(
        &c,
        rel.asset("flynn-host-linux-amd64.gz").unwrap(),
        dest.path(),
        &sha512_hex(&data),
        &mut fetch::no_progress,
    )
    .unwrap();
    let target = dest.path().join("flynn-host");
    got.persist(&target, 0o755).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 1, "no temp files left");
    let listeners: Vec<Listener> = server.requests().iter().map(|r| r.listener).collect();
    assert_eq!(listeners, vec![Listener::Api, Listener::Web, Listener::Storage]);
    assert!(server.requests().iter().all(|r| r.header("authorization").is_none()));
}

#[test]
fn retries_after_a_503() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v1.0.0", "2024-01-01T00:00:00Z", false);
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let server = start_with(tmp.path(), move |r| {
        if r.listener == Listener::Api && h.fetch_add(1, Ordering::SeqCst) == 0 {
            return raw("503 Service Unavailable", &[("Content-Length", "0")], b"");
        }
        None
    });
    let c = client(&server);
    assert_eq!(c.latest_release().unwrap().tag_name, "v1.0.0");
    let reqs = api_requests(&server);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(reqs[0].intercepted);
    assert_eq!(reqs[1].status, 200);
}

#[test]
fn a_5xx_storm_exhausts_the_retry_budget_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v1.0.0", "2024-01-01T00:00:00Z", false);
    let server = start_with(tmp.path(), |_| raw("502 Bad Gateway", &[("Content-Length", "0")], b""));
    let mut o = options(&server);
    o.retries = 2;
    let c = Client::new(o).unwrap();
    let e = c.latest_release().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network);
    assert!(e.message().contains("502") && e.message().contains("3 attempts"), "{e}");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn truncated_download_resumes_with_range() {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    one_asset_release(tmp.path(), &data);
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let half = data[..400_000].to_vec();
    let total = data.len().to_string();
    let server = start_with(tmp.path(), move |r| {
        if r.listener == Listener::Storage && h.fetch_add(1, Ordering::SeqCst) == 0 {
            // Announce everything, send 40%, hang up.
            return raw(
                "200 OK",
                &[("Content-Length", &total), ("Accept-Ranges", "bytes")],
                &half,
            );
        }
        None
    });
    let c = client(&server);
    let rel = c.release_by_tag("v1.0.0").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let got = fetch_asset(
        &c,
        rel.asset("flynn-host-linux-amd64.gz").unwrap(),
        dest.path(),
        &sha512_hex(&data),
        &mut fetch::no_progress,
    )
    .unwrap();
    assert_eq!(std::fs::read(got.path()).unwrap(), data);
    let storage: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Storage)
        .collect();
    assert_eq!(storage.len(), 2, "{storage:?}");
    assert!(storage[0].header("range").is_none());
    assert_eq!(storage[1].header("range"), Some("bytes=400000-"));
    assert_eq!(storage[1].status, 206);
}

#[test]
fn truncated_download_without_range_support_restarts_then_gives_up() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vec![42u8; 100_000];
    one_asset_release(tmp.path(), &data);
    let part = data[..1000].to_vec();
    let server = start_with(tmp.path(), move |r| {
        if r.listener == Listener::Storage {
            return raw("200 OK", &[("Content-Length", "100000")], &part);
        }
        None
    });
    let mut o = options(&server);
    o.retries = 2;
    let c = Client::new(o).unwrap();
    let rel = c.release_by_tag("v1.0.0").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let e = fetch_asset(
        &c,
        rel.asset("flynn-host-linux-amd64.gz").unwrap(),
        dest.path(),
        &sha512_hex(&data),
        &mut fetch::no_progress,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network);
    assert!(e.message().contains("cut short"), "{e}");
    let storage: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Storage)
        .collect();
    assert_eq!(storage.len(), 3);
    assert!(
        storage.iter().all(|r| r.header("range").is_none()),
        "no Range without Accept-Ranges"
    );
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0, "temp file removed");
}

#[test]
fn rate_limit_names_the_reset_time() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v1.0.0", "2024-01-01T00:00:00Z", false);
    let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 1800;
    let reset_s = reset.to_string();
    let body = br#"{"message":"API rate limit exceeded for 127.0.0.1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}"#;
    let server = start_with(tmp.path(), move |_| {
        raw(
            "403 Forbidden",
            &[
                ("x-ratelimit-limit", "60"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset_s),
                ("Content-Length", &body.len().to_string()),
            ],
            body,
        )
    });
    let e = client(&server).latest_release().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    let when = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(reset)).to_string();
    assert!(e.message().contains(&when), "{e} should name {when}");
    assert!(e.message().contains("API rate limit exceeded"), "{e}");
    assert_eq!(e.retry_at(), Some(UNIX_EPOCH + Duration::from_secs(reset)));
    assert_eq!(server.requests().len(), 1, "a rate limit is not retried");
}

#[test]
fn secondary_rate_limit_429_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v1.0.0", "2024-01-01T00:00:00Z", false);
    let server = start_with(tmp.path(), |_| {
        raw(
            "429 Too Many Requests",
            &[("retry-after", "120"), ("Content-Length", "0")],
            b"",
        )
    });
    let before = SystemTime::now();
    let e = client(&server).latest_release().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    let at = e.retry_at().unwrap();
    let secs = at.duration_since(before).unwrap().as_secs();
    assert!((119..=125).contains(&secs), "{secs}");
    assert!(e.message().contains("in 1"), "{e}");
}

#[test]
fn tampered_asset_is_refused_and_nothing_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let data = b"genuine".to_vec();
    one_asset_release(tmp.path(), &data);
    // Tamper after checksums were written: same size, other bytes.
    std::fs::write(
        tmp.path().join(REPO).join("v1.0.0/flynn-host-linux-amd64.gz"),
        b"GENUINE",
    )
    .unwrap();
    let server = start(tmp.path());
    let c = client(&server);
    let rel = c.release_by_tag("v1.0.0").unwrap();
    let dest = tempfile::tempdir().unwrap();
    std::fs::write(dest.path().join("existing"), b"keep").unwrap();
    let before = snapshot(dest.path());
    let mut asset = rel.asset("flynn-host-linux-amd64.gz").unwrap().clone();
    asset.digest = None; // the server's digest matches the tampered bytes; the checksums file must catch it
    let e = fetch_asset(&c, &asset, dest.path(), &sha512_hex(&data), &mut fetch::no_progress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch);
    assert!(
        e.message().contains("flynn-host-linux-amd64.gz") && e.message().contains("checksums.sha512"),
        "{e}"
    );
    assert_eq!(snapshot(dest.path()), before);
}

#[test]
fn digest_mismatch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = b"genuine".to_vec();
    one_asset_release(tmp.path(), &data);
    let server = start(tmp.path());
    let c = client(&server);
    let rel = c.release_by_tag("v1.0.0").unwrap();
    let mut asset = rel.asset("flynn-host-linux-amd64.gz").unwrap().clone();
    asset.digest = Some(format!("sha256:{}", "0".repeat(64)));
    let dest = tempfile::tempdir().unwrap();
    let e = fetch_asset(&c, &asset, dest.path(), &sha512_hex(&data), &mut fetch::no_progress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch);
    assert!(e.message().contains("digest"), "{e}");
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

#[test]
fn body_larger_than_announced_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vec![1u8; 5000];
    one_asset_release(tmp.path(), &data);
    let server = start_with(tmp.path(), |r| {
        if r.listener == Listener::Storage {
            return raw("200 OK", &[], &[1u8; 20000]);
        }
        None
    });
    let c = client(&server);
    let rel = c.release_by_tag("v1.0.0").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let e = fetch_asset(
        &c,
        rel.asset("flynn-host-linux-amd64.gz").unwrap(),
        dest.path(),
        &sha512_hex(&data),
        &mut fetch::no_progress,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

#[test]
fn progress_can_cancel() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vec![9u8; 2_000_000];
    one_asset_release(tmp.path(), &data);
    let server = start(tmp.path());
    let c = client(&server);
    let rel = c.release_by_tag("v1.0.0").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let mut calls = 0u32;
    let mut cb = |_: &str, done: u64, _: u64| {
        calls += 1;
        done < 500_000
    };
    let e = fetch_asset(
        &c,
        rel.asset("flynn-host-linux-amd64.gz").unwrap(),
        dest.path(),
        &sha512_hex(&data),
        &mut cb,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert!(calls >= 2);
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

#[test]
fn unreachable_api_is_a_network_error_naming_the_url() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut o = flynnrel::remote::ghrelease::ClientOptions::new(REPO);
    o.api_url = format!("http://127.0.0.1:{port}");
    o.retries = 1;
    o.retry_delay = Duration::from_millis(1);
    let e = Client::new(o).unwrap().latest_release().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network);
    assert!(
        e.message().contains(&format!("127.0.0.1:{port}")) && e.message().contains("2 attempts"),
        "{e}"
    );
}

#[test]
fn invalid_json_and_oversized_bodies_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v1.0.0", "2024-01-01T00:00:00Z", false);
    let server = start_with(tmp.path(), |r| {
        if r.url.contains("/latest") {
            return raw(
                "200 OK",
                &[("Content-Type", "text/html"), ("Content-Length", "15")],
                b"<html>hi</html>",
            );
        }
        None
    });
    let e = client(&server).latest_release().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(
        e.message().contains("invalid JSON") && e.message().contains("/releases/latest"),
        "{e}"
    );

    let mut o = options(&server);
    o.max_json_bytes = 100;
    let e = Client::new(o).unwrap().releases().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(e.message().contains("/releases"), "{e}");
}

#[test]
fn bad_repository_and_insecure_api_url_are_refused_before_any_request() {
    let mut o = flynnrel::remote::ghrelease::ClientOptions::new("not a repo");
    assert_eq!(Client::new(o.clone()).unwrap_err().kind(), ErrorKind::InvalidArgument);
    o.repository = REPO.into();
    o.api_url = "http://api.example.com".into();
    let e = Client::new(o).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InsecureUrl);
    assert!(e.message().contains("http://api.example.com"), "{e}");
}

#[test]
fn redirect_to_plain_http_from_https_is_impossible_and_loops_are_caught() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v1.0.0", "2024-01-01T00:00:00Z", false);
    let server = start_with(tmp.path(), |r| {
        if r.listener == Listener::Api && r.url.contains("/latest") {
            return raw("302 Found", &[("Location", &r.url), ("Content-Length", "0")], b"");
        }
        None
    });
    let e = client(&server).latest_release().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InsecureUrl);
    assert!(e.message().contains("redirect loop"), "{e}");
}

#[test]
fn github_enterprise_api_prefix_works() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v1.0.0", "2024-01-01T00:00:00Z", false);
    let server = start(tmp.path());
    let mut o = options(&server);
    o.api_url = format!("{}/api/v3/", server.api_url());
    let c = Client::new(o).unwrap();
    assert_eq!(c.latest_release().unwrap().tag_name, "v1.0.0");
    assert!(
        server.requests()[0]
            .url
            .starts_with("/api/v3/repos/flynn/flynn/releases/latest")
    );
}
