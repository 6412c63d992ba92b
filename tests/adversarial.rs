//! The adversarial suite (issue 7, SECURITY.md): one named test per attack on the GitHub
//! channel. Each stages the attack with the local release server (files changed on disk, or a
//! fault-injecting interceptor around it), runs a real update of an installed host, and asserts
//! that the host (bin dir, config dir, layer dir) is byte-for-byte unchanged and that the error
//! names the problem.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use flynnrel::ErrorKind;
use flynnrel::host::layout::HostLayout;
use flynnrel::ops::install::{InstallOptions, Target, install};
use flynnrel::ops::update::{UpdateOptions, UpdateOutcome, update};
use flynnrel::remote::ghrelease::ClientOptions;
use flynnrel::serve::{Listener, RequestInfo, Server};

const V1: &str = "v2024.01.27.1";
const V2: &str = "v2024.01.27.2";

fn layers(v: u32) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("aaaa1111", noise(1, 200_000)),
        (if v == 1 { "bbbb2222" } else { "cccc3333" }, noise(v + 10, 100_000)),
    ]
}

struct Host {
    _tmp: tempfile::TempDir,
    serve: PathBuf,
    root: PathBuf,
    key_file: Option<PathBuf>,
    public_key: Option<String>,
}

impl Host {
    /// V1 and V2 published (signed when `signed`), V1 installed (pinning the key when signed).
    fn new(signed: bool) -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let serve = tmp.path().join("releases");
        std::fs::create_dir(&serve).unwrap();
        let (key_file, public_key) = if signed {
            let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
            let f = tmp.path().join("release.key");
            std::fs::write(&f, kp.sk.to_box(None).unwrap().into_string()).unwrap();
            (Some(f), Some(kp.pk.to_base64()))
        } else {
            (None, None)
        };
        let root = tmp.path().join("root");
        let h = Host {
            _tmp: tmp,
            serve,
            root,
            key_file,
            public_key,
        };
        h.publish(V1, "2024-01-27T01:00:00Z", 1);
        h.publish(V2, "2024-01-27T02:00:00Z", 2);
        let server = start(&h.serve);
        let mut o = InstallOptions::new(h.layout(), Target::Version(V1.into()));
        o.public_key = h.public_key.clone();
        install(&client(&server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap();
        h
    }

    fn publish(&self, v: &str, created: &str, seed: u32) -> PathBuf {
        let key = self.key_file.clone();
        publish_with(&self.serve, v, created, &layers(seed), |o| o.sign_key = key)
    }

    fn dir(&self, v: &str) -> PathBuf {
        self.serve.join(REPO).join(v)
    }

    fn layout(&self) -> HostLayout {
        HostLayout::new(Some(&self.root), None, None, None)
    }

    /// Update options against `server` (each test starts its own server, so the receipt's API URL
    /// from the install is overridden).
    fn uopts(&self, server: &Server) -> UpdateOptions {
        let mut o = UpdateOptions::new(self.layout());
        o.api_url = Some(server.api_url());
        o
    }

    /// Runs `update` (to `version`, or the channel's newest) and asserts nothing changed.
    fn attack(
        &self,
        server: &Server,
        version: Option<&str>,
        adjust: impl FnOnce(&mut ClientOptions),
    ) -> flynnrel::Error {
        let before = snapshot(&self.root);
        let mut co = options(server);
        co.retries = 2;
        adjust(&mut co);
        let mut o = self.uopts(server);
        o.version = version.map(str::to_string);
        let err = match update(
            &flynnrel::remote::ghrelease::Client::new(co.clone()).unwrap(),
            &o,
            &mut flynnrel::remote::fetch::no_progress,
        ) {
            Err(e) => e,
            Ok(out) => panic!("the attack succeeded: {out:?}"),
        };
        assert_eq!(snapshot(&self.root), before, "the host changed after: {err}");
        assert_eq!(
            flynnrel::host::layout::linked_version(&self.layout().bin_dir, "flynn-host").as_deref(),
            Some(V1)
        );
        err
    }
}

fn expect(err: &flynnrel::Error, kind: ErrorKind, words: &[&str]) {
    assert_eq!(err.kind(), kind, "{err}");
    for w in words {
        assert!(err.message().contains(w), "{w:?} not in: {err}");
    }
}

fn storage_for(r: &RequestInfo, asset: &str) -> bool {
    r.listener == Listener::Storage && r.url.contains(V2) && r.url.contains(asset)
}

#[test]
fn tampered_asset() {
    let h = Host::new(false);
    std::fs::write(
        h.dir(V2).join("flynn-host-linux-amd64.gz"),
        gzip(b"#!/bin/sh\necho evil\n"),
    )
    .unwrap();
    let err = h.attack(&start(&h.serve), None, |_| {});
    expect(
        &err,
        ErrorKind::ChecksumMismatch,
        &["flynn-host-linux-amd64.gz", "checksums.sha512"],
    );
}

#[test]
fn asset_and_checksums_both_replaced_are_caught_by_the_signature() {
    let h = Host::new(true);
    std::fs::write(
        h.dir(V2).join("flynn-host-linux-amd64.gz"),
        gzip(b"#!/bin/sh\necho evil\n"),
    )
    .unwrap();
    rewrite_checksums(&h.dir(V2), &[]);
    let err = h.attack(&start(&h.serve), None, |_| {});
    expect(
        &err,
        ErrorKind::SignatureInvalid,
        &["checksums.sha512.minisig", "does not verify"],
    );
}

#[test]
fn checksums_line_for_a_substring_collision_name() {
    let h = Host::new(false);
    let p = h.dir(V2).join("checksums.sha512");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("  flynn-host-linux-amd64.gz", "  xflynn-host-linux-amd64.gz");
    std::fs::write(&p, text).unwrap();
    let err = h.attack(&start(&h.serve), None, |_| {});
    expect(
        &err,
        ErrorKind::InvalidData,
        &["no entry for flynn-host-linux-amd64.gz"],
    );
}

#[test]
fn checksums_duplicate_lines() {
    let h = Host::new(false);
    let p = h.dir(V2).join("checksums.sha512");
    let text = std::fs::read_to_string(&p).unwrap();
    let line = text
        .lines()
        .find(|l| l.ends_with("flynn-host-linux-amd64.gz"))
        .unwrap()
        .to_string();
    std::fs::write(&p, format!("{text}{line}\n")).unwrap();
    let err = h.attack(&start(&h.serve), None, |_| {});
    expect(
        &err,
        ErrorKind::InvalidData,
        &["flynn-host-linux-amd64.gz", "listed twice"],
    );
}

#[test]
fn checksums_path_like_names() {
    let h = Host::new(false);
    let p = h.dir(V2).join("checksums.sha512");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}{}  ../../etc/passwd\n", "0".repeat(128))).unwrap();
    let err = h.attack(&start(&h.serve), None, |_| {});
    expect(&err, ErrorKind::InvalidData, &["../../etc/passwd"]);
}

#[test]
fn asset_digest_mismatch() {
    // The API's digest for an asset disagrees with the bytes the storage host serves.
    let h = Host::new(false);
    let server = start(&h.serve);
    let c = client(&server);
    let rel = c.release_by_tag(V2).unwrap();
    let mut asset = rel.asset("flynn-host-linux-amd64.gz").unwrap().clone();
    asset.digest = Some(format!("sha256:{}", "1".repeat(64)));
    let sums = flynnrel::model::checksums::Checksums::parse(
        &std::fs::read_to_string(h.dir(V2).join("checksums.sha512")).unwrap(),
        "c",
    )
    .unwrap();
    let bin = h.layout().bin_dir;
    let before = snapshot(&h.root);
    let err = flynnrel::remote::fetch::fetch_asset(
        &c,
        &asset,
        &bin,
        sums.get(&asset.name).unwrap(),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap_err();
    expect(
        &err,
        ErrorKind::ChecksumMismatch,
        &["digest", "flynn-host-linux-amd64.gz"],
    );
    assert_eq!(snapshot(&h.root), before);
}

#[test]
fn content_length_larger_than_the_announced_size() {
    let h = Host::new(false);
    let server = start_with(&h.serve, |r| {
        storage_for(r, "flynn-host-linux-amd64.gz")
            .then(|| raw("200 OK", &[("Content-Length", "99999999")], b"x"))
            .flatten()
    });
    let err = h.attack(&server, None, |_| {});
    expect(&err, ErrorKind::TooLarge, &["flynn-host-linux-amd64.gz", "larger than"]);
}

#[test]
fn content_length_smaller_than_the_announced_size() {
    let h = Host::new(false);
    let server = start_with(&h.serve, |r| {
        storage_for(r, "flynn-host-linux-amd64.gz")
            .then(|| raw("200 OK", &[("Content-Length", "10")], b"0123456789"))
            .flatten()
    });
    let err = h.attack(&server, None, |_| {});
    expect(
        &err,
        ErrorKind::InvalidData,
        &["flynn-host-linux-amd64.gz", "bytes but the release says"],
    );
}

/// An endless stream of zeros.
struct Endless;
impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        buf.fill(0);
        Ok(buf.len())
    }
}

#[test]
fn endless_body_without_content_length() {
    let h = Host::new(false);
    let server = start_with(&h.serve, |r| {
        if storage_for(r, "layers.tar.gz") {
            let head = std::io::Cursor::new(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec());
            return Some(Box::new(head.chain(Endless)) as Box<dyn Read + Send>);
        }
        None
    });
    let err = h.attack(&server, None, |_| {});
    expect(&err, ErrorKind::TooLarge, &["layers.tar.gz"]);
}

#[test]
fn body_larger_than_declared_size() {
    let h = Host::new(false);
    let server = start_with(&h.serve, |r| {
        storage_for(r, "flynn-init")
            .then(|| raw("200 OK", &[], &[7u8; 500_000]))
            .flatten()
    });
    let err = h.attack(&server, None, |_| {});
    expect(&err, ErrorKind::TooLarge, &["flynn-init-linux-amd64.gz"]);
}

/// Sends the head, then one byte every 100 ms.
struct Drip {
    head: std::io::Cursor<Vec<u8>>,
}
impl Read for Drip {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(100));
        buf[0] = 0;
        Ok(1)
    }
}

#[test]
fn slow_drip_past_the_timeout() {
    let h = Host::new(false);
    let len = std::fs::metadata(h.dir(V2).join("layers.tar.gz")).unwrap().len();
    let server = start_with(&h.serve, move |r| {
        if storage_for(r, "layers.tar.gz") {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            return Some(Box::new(Drip {
                head: std::io::Cursor::new(head.into_bytes()),
            }) as Box<dyn Read + Send>);
        }
        None
    });
    let err = h.attack(&server, None, |o| {
        o.read_timeout = Duration::from_secs(1);
        o.retries = 1;
    });
    expect(&err, ErrorKind::Network, &["layers.tar.gz", "stalled"]);
}

#[test]
fn truncated_body_with_range_support_resumes_and_the_update_completes() {
    let h = Host::new(false);
    let data = std::fs::read(h.dir(V2).join("layers.tar.gz")).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let hh = hits.clone();
    let server = start_with(&h.serve, move |r| {
        if storage_for(r, "layers.tar.gz") && hh.fetch_add(1, Ordering::SeqCst) == 0 {
            let len = data.len().to_string();
            return raw(
                "200 OK",
                &[("Content-Length", &len), ("Accept-Ranges", "bytes")],
                &data[..data.len() / 3],
            );
        }
        None
    });
    let out = update(
        &client(&server),
        &h.uopts(&server),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert!(matches!(out, UpdateOutcome::Updated { .. }));
    let resumed = server
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Storage && r.url.contains("layers.tar.gz"))
        .collect::<Vec<_>>();
    assert!(
        resumed
            .last()
            .unwrap()
            .header("range")
            .is_some_and(|v| v.starts_with("bytes=")),
        "{resumed:?}"
    );
}

/// A download that starts over (cut short, no `Range`) after its first attempt sent a complete,
/// valid but different gzip file: install decompresses while downloading, and must not keep what
/// it decoded from the void attempt (here that would be a valid stream: the other file's content
/// followed by the binary's).
#[test]
fn restarted_download_voids_what_was_decoded_while_it_streamed() {
    use std::io::Write;
    let h = Host::new(false);
    let real = std::fs::read(h.dir(V2).join("flynn-host-linux-amd64.gz")).unwrap();
    let mut w = flynnrel::model::gz::ParGzWriter::new(Vec::new(), 1, 6).unwrap();
    w.write_all(b"not the flynn-host binary").unwrap();
    let other = w.finish().unwrap().0;
    assert!(other.len() < real.len());
    let hits = Arc::new(AtomicUsize::new(0));
    let hh = hits.clone();
    let len = real.len().to_string();
    let server = start_with(&h.serve, move |r| {
        if storage_for(r, "flynn-host-linux-amd64.gz") && hh.fetch_add(1, Ordering::SeqCst) == 0 {
            return raw("200 OK", &[("Content-Length", &len)], &other);
        }
        None
    });
    let out = update(
        &client(&server),
        &h.uopts(&server),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert!(matches!(out, UpdateOutcome::Updated { .. }));
    // The restart voids the run that decoded while streaming; the asset is then fetched once
    // more into a temp file and decoded from the verified file.
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "one cut attempt, one restart, one fetch to a file"
    );
    let mut want = Vec::new();
    flynnrel::model::gz::gunzip_capped(&real[..], &mut want, 1 << 30, "flynn-host-linux-amd64.gz").unwrap();
    let got = std::fs::read(h.layout().versioned_binary("flynn-host", V2)).unwrap();
    assert!(got == want, "the installed flynn-host is not the release's");
}

#[test]
fn restarted_layers_download_installs_the_verified_layers() {
    let h = Host::new(false);
    let mut first = std::fs::read(h.dir(V2).join("layers.tar.gz")).unwrap();
    let len = first.len().to_string();
    // Changed bytes in the second layer's part, then cut short: the early extraction fails or is
    // voided, and the asset is fetched again into a temp file, verified, and extracted from it.
    let at = first.len() * 3 / 4;
    first[at] ^= 0x55;
    first.truncate(first.len() - 100);
    let hits = Arc::new(AtomicUsize::new(0));
    let hh = hits.clone();
    let server = start_with(&h.serve, move |r| {
        if storage_for(r, "layers.tar.gz") && hh.fetch_add(1, Ordering::SeqCst) == 0 {
            return raw("200 OK", &[("Content-Length", &len)], &first);
        }
        None
    });
    let out = update(
        &client(&server),
        &h.uopts(&server),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert!(matches!(out, UpdateOutcome::Updated { .. }));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "one cut attempt, one restart, one fetch to a file"
    );
    for (id, data) in layers(2) {
        assert!(std::fs::read(h.layout().layer_file(id)).unwrap() == data, "layer {id}");
    }
}

#[test]
fn truncated_body_without_range_support() {
    let h = Host::new(false);
    let len = std::fs::metadata(h.dir(V2).join("layers.tar.gz"))
        .unwrap()
        .len()
        .to_string();
    let server = start_with(&h.serve, move |r| {
        storage_for(r, "layers.tar.gz")
            .then(|| raw("200 OK", &[("Content-Length", &len)], &[0u8; 1000]))
            .flatten()
    });
    let err = h.attack(&server, None, |_| {});
    expect(&err, ErrorKind::Network, &["layers.tar.gz", "cut short"]);
}

#[test]
fn server_error_storm_past_the_retry_budget() {
    let h = Host::new(false);
    let server = start_with(&h.serve, |r| {
        (r.listener == Listener::Api)
            .then(|| raw("503 Service Unavailable", &[("Content-Length", "0")], b""))
            .flatten()
    });
    let err = h.attack(&server, None, |_| {});
    expect(&err, ErrorKind::Network, &["503", "gave up after 3 attempts"]);
}

#[test]
fn redirect_loop() {
    let h = Host::new(false);
    let server = start_with(&h.serve, |r| {
        (r.listener == Listener::Web && r.url.contains(V2))
            .then(|| raw("302 Found", &[("Location", &r.url), ("Content-Length", "0")], b""))
            .flatten()
    });
    let err = h.attack(&server, None, |_| {});
    expect(&err, ErrorKind::InsecureUrl, &["redirect loop"]);
}

#[test]
fn redirect_from_https_to_http() {
    let from = reqwest::Url::parse("https://api.github.com/repos/flynn/flynn/releases/assets/1").unwrap();
    let err =
        flynnrel::remote::ghrelease::options::redirect_target(&from, "http://objects.example.com/asset").unwrap_err();
    expect(&err, ErrorKind::InsecureUrl, &["non-https"]);
}

#[test]
fn redirect_to_a_foreign_host_does_not_carry_the_token() {
    let h = Host::new(false);
    let server = start(&h.serve);
    let mut co = options(&server);
    co.token = Some("ghp_adversarial".into());
    update(
        &flynnrel::remote::ghrelease::Client::new(co.clone()).unwrap(),
        &h.uopts(&server),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .filter(|r| r.listener == Listener::Api)
            .all(|r| r.header("authorization").is_some())
    );
    let others: Vec<_> = reqs.iter().filter(|r| r.listener != Listener::Api).collect();
    assert!(!others.is_empty());
    assert!(
        others.iter().all(|r| r.header("authorization").is_none()),
        "token followed a redirect: {others:?}"
    );
}

#[test]
fn rate_limit_403() {
    let h = Host::new(false);
    let server = start_with(&h.serve, |r| {
        (r.listener == Listener::Api)
            .then(|| {
                raw(
                    "403 Forbidden",
                    &[
                        ("x-ratelimit-remaining", "0"),
                        ("x-ratelimit-reset", "4102444800"),
                        ("Content-Length", "0"),
                    ],
                    b"",
                )
            })
            .flatten()
    });
    let err = h.attack(&server, None, |_| {});
    expect(&err, ErrorKind::RateLimited, &["2100-01-01T00:00:00Z"]);
}

#[test]
fn rate_limit_429_with_retry_after() {
    let h = Host::new(false);
    let server = start_with(&h.serve, |r| {
        (r.listener == Listener::Api)
            .then(|| {
                raw(
                    "429 Too Many Requests",
                    &[("retry-after", "60"), ("Content-Length", "0")],
                    b"",
                )
            })
            .flatten()
    });
    let err = h.attack(&server, None, |_| {});
    expect(&err, ErrorKind::RateLimited, &["retry after", "(in 6"]);
}

#[test]
fn rollback_attack_older_signed_release_served_as_latest() {
    let h = Host::new(true);
    let server = start(&h.serve);
    update(
        &client(&server),
        &h.uopts(&server),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    // The attacker republishes the older, validly signed V1 as the newest, "latest" release.
    std::fs::write(
        h.dir(V1).join(".release.json"),
        r#"{"created_at":"2030-01-01T00:00:00Z","make_latest":true}"#,
    )
    .unwrap();
    let before = snapshot(&h.root);
    let out = update(
        &client(&server),
        &h.uopts(&server),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert!(matches!(out, UpdateOutcome::UpToDate { .. }), "{out:?}");
    let mut o = h.uopts(&server);
    o.version = Some(V1.into());
    let err = update(&client(&server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    expect(
        &err,
        ErrorKind::DowngradeRefused,
        &["older than", "explicit permission"],
    );
    assert_eq!(
        err.hint(),
        Some(&flynnrel::Hint::AllowDowngrade { version: V1.into() }),
        "{err}"
    );
    assert_eq!(snapshot(&h.root), before);
}

#[test]
fn fast_forward_attack_forged_unsigned_v999() {
    let h = Host::new(true);
    publish(&h.serve, "v2999.12.31.0", "2030-01-01T00:00:00Z", &layers(3));
    let err = h.attack(&start(&h.serve), None, |_| {});
    expect(
        &err,
        ErrorKind::SignatureInvalid,
        &["v2999.12.31.0", "checksums.sha512.minisig"],
    );
}

#[test]
fn mix_and_match_signature_over_a_different_version() {
    let h = Host::new(true);
    let v3 = h.publish("v2024.01.27.3", "2024-01-27T03:00:00Z", 3);
    for f in ["checksums.sha512", "checksums.sha512.minisig"] {
        std::fs::copy(h.dir(V2).join(f), v3.join(f)).unwrap();
    }
    let err = h.attack(&start(&h.serve), Some("v2024.01.27.3"), |_| {});
    expect(&err, ErrorKind::SignatureInvalid, &["version=v2024.01.27.3"]);
}

fn tar_attack(entries: &[(&[u8], tar::EntryType, Vec<u8>)], kind: ErrorKind, words: &[&str]) {
    let h = Host::new(false);
    std::fs::write(h.dir(V2).join("layers.tar.gz"), hand_tar_gz(entries)).unwrap();
    rewrite_checksums(&h.dir(V2), &[]);
    let err = h.attack(&start(&h.serve), None, |_| {});
    expect(&err, kind, words);
    assert!(!h.root.parent().unwrap().join("cccc3333.squashfs").exists());
}

#[test]
fn gzip_bomb() {
    tar_attack(
        &[(b"dddd4444.squashfs", tar::EntryType::Regular, vec![0u8; 32 << 20])],
        ErrorKind::TooLarge,
        &["gzip bomb"],
    );
}

#[test]
fn tar_dotdot_path() {
    tar_attack(
        &[(b"../cccc3333.squashfs", tar::EntryType::Regular, noise(12, 100_000))],
        ErrorKind::InvalidData,
        &["only flat"],
    );
}

#[test]
fn tar_absolute_path() {
    tar_attack(
        &[(b"/tmp/cccc3333.squashfs", tar::EntryType::Regular, noise(12, 100_000))],
        ErrorKind::InvalidData,
        &["only flat"],
    );
}

#[test]
fn tar_symlink() {
    tar_attack(
        &[(b"cccc3333.squashfs", tar::EntryType::Symlink, vec![])],
        ErrorKind::InvalidData,
        &["Symlink"],
    );
}

#[test]
fn tar_hardlink() {
    tar_attack(
        &[(b"cccc3333.squashfs", tar::EntryType::Link, vec![])],
        ErrorKind::InvalidData,
        &["Link"],
    );
}

#[test]
fn tar_device() {
    tar_attack(
        &[(b"cccc3333.squashfs", tar::EntryType::Char, vec![])],
        ErrorKind::InvalidData,
        &["Char"],
    );
}

#[test]
fn pre_existing_symlink_at_an_install_path_is_replaced_not_followed() {
    let h = Host::new(false);
    let victim = h.root.parent().unwrap().join("victim");
    std::fs::write(&victim, b"do not touch").unwrap();
    let bin = h.layout().bin_dir;
    std::os::unix::fs::symlink(&victim, bin.join(format!("flynn-host.{V2}"))).unwrap();
    std::os::unix::fs::symlink(&victim, h.layout().config_dir.join(format!("images.{V2}.json"))).unwrap();
    let server = start(&h.serve);
    let out = update(
        &client(&server),
        &h.uopts(&server),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert!(matches!(out, UpdateOutcome::Updated { .. }));
    assert_eq!(std::fs::read(&victim).unwrap(), b"do not touch");
    let m = std::fs::symlink_metadata(bin.join(format!("flynn-host.{V2}"))).unwrap();
    assert!(
        m.file_type().is_file(),
        "the planted symlink was replaced by the verified file"
    );
}

#[test]
fn world_writable_install_dir_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let h = Host::new(false);
    let bin = h.layout().bin_dir;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = h.attack(&start(&h.serve), None, |_| {});
    expect(&err, ErrorKind::Io, &["world-writable", bin.to_str().unwrap()]);
}

#[test]
fn temp_files_pre_created_by_someone_else_are_never_opened() {
    // Temp names are random and created with O_EXCL: a file (or a symlink to a victim) planted
    // under a guessable name is never written through.
    let h = Host::new(false);
    let victim = h.root.parent().unwrap().join("victim");
    std::fs::write(&victim, b"do not touch").unwrap();
    let bin = h.layout().bin_dir;
    for guess in [
        ".flynn-host-linux-amd64.gz.part",
        ".flynn-host-linux-amd64.gz.000000.part",
        ".flynn-host.new",
        "flynn-host.tmp",
    ] {
        std::os::unix::fs::symlink(&victim, bin.join(guess)).unwrap();
    }
    let server = start(&h.serve);
    let out = update(
        &client(&server),
        &h.uopts(&server),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert!(matches!(out, UpdateOutcome::Updated { .. }));
    assert_eq!(std::fs::read(&victim).unwrap(), b"do not touch");
}

#[test]
fn install_script_bootstrap_refuses_unsigned_when_a_key_is_configured() {
    // The helper side of "install script and helper refuse an unsigned release whenever a key is
    // configured" (the script side is in test/e2e): a fresh install with a key and no signature.
    let h = Host::new(false);
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let fresh = h.root.parent().unwrap().join("fresh");
    let mut o = InstallOptions::new(
        HostLayout::new(Some(&fresh), None, None, None),
        Target::Version(V2.into()),
    );
    o.public_key = Some(kp.pk.to_base64());
    let err = install(&client(&start(&h.serve)), &o, &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    expect(
        &err,
        ErrorKind::SignatureInvalid,
        &["no checksums.sha512.minisig", "unsigned"],
    );
    assert!(!fresh.exists() || snapshot(&fresh).is_empty());
    let _ = Path::new("");
}
