//! Signed, expiring channel pointers (issue 16, docs/channels.md, SECURITY.md): `promote`
//! writes them, `flynnrel serve` serves them like GitHub's web host, and install/update read a
//! channel through them when a public key is configured. One named test per attack on the
//! pointer; each asserts the host (bin, config and layer dirs) byte-for-byte unchanged.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use flynnrel::ErrorKind;
use flynnrel::host::layout::HostLayout;
use flynnrel::host::receipt::InstallSource;
use flynnrel::model::pointer::{ChannelPointer, POINTER_FORMAT, rfc3339};
use flynnrel::ops::install::{InstallOptions, Target, install};
use flynnrel::ops::promote::{PromoteOptions, PromoteReport, promote};
use flynnrel::ops::update::{UpdateOptions, UpdateOutcome, update};
use flynnrel::remote::ghrelease::Channel;
use flynnrel::serve::Server;

const V1: &str = "v2024.01.27.1";
const V2: &str = "v2024.01.27.2";
const V3: &str = "v2024.01.27.3";
const DAY: Duration = Duration::from_secs(24 * 3600);

fn layers(v: u32) -> Vec<(&'static str, Vec<u8>)> {
    vec![("aaaa1111", noise(1, 50_000)), ("bbbb2222", noise(v + 10, 20_000))]
}

struct Host {
    tmp: tempfile::TempDir,
    serve: PathBuf,
    root: PathBuf,
    key_file: PathBuf,
    public_key: String,
}

impl Host {
    /// V1, V2 and V3 published and signed; V1 installed by version, pinning the key.
    fn new() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let serve = tmp.path().join("releases");
        std::fs::create_dir(&serve).unwrap();
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let key_file = tmp.path().join("release.key");
        std::fs::write(&key_file, kp.sk.to_box(None).unwrap().into_string()).unwrap();
        let root = tmp.path().join("root");
        let h = Host {
            serve,
            root,
            key_file,
            public_key: kp.pk.to_base64(),
            tmp,
        };
        for (i, v) in [V1, V2, V3].iter().enumerate() {
            let key = h.key_file.clone();
            publish_with(
                &h.serve,
                v,
                &format!("2024-01-27T0{i}:00:00Z"),
                &layers(i as u32),
                |o| o.sign_key = Some(key),
            );
        }
        std::fs::create_dir_all(h.branch().join("channels")).unwrap();
        let server = start(&h.serve);
        let mut o = InstallOptions::new(h.layout(), Target::Version(V1.into()));
        o.public_key = Some(h.public_key.clone());
        install(&client(&server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap();
        h
    }

    fn layout(&self) -> HostLayout {
        HostLayout::new(Some(&self.root), None, None, None)
    }

    /// The served checkout of the pointer branch (`flynnrel serve`'s layout).
    fn branch(&self) -> PathBuf {
        self.serve.join(REPO).join(".branches").join("flynn-channels")
    }

    fn pointer_file(&self, channel: &str) -> PathBuf {
        self.branch().join("channels").join(format!("{channel}.json"))
    }

    fn promote_at(
        &self,
        server: &Server,
        channel: Channel,
        version: Option<&str>,
        now: SystemTime,
        expires: Duration,
    ) -> flynnrel::Result<PromoteReport> {
        promote(
            &client(server),
            &PromoteOptions {
                channel,
                version: version.map(str::to_string),
                sign_key: self.key_file.clone(),
                password: None,
                expires,
                out_dir: self.branch(),
                now,
                previous_public_key: None,
            },
        )
    }

    fn promote(&self, server: &Server, version: &str) -> PromoteReport {
        self.promote_at(server, Channel::Stable, Some(version), SystemTime::now(), 14 * DAY)
            .unwrap()
    }

    /// Writes a pointer signed with the release key whatever its content (an attacker who
    /// holds an old pointer, or a publisher's mistake).
    fn write_pointer(&self, file_channel: &str, p: &ChannelPointer) {
        let (sk, _) = flynnrel::model::signature::load_secret_key(&self.key_file, None).unwrap();
        let (json, sig) = p.sign(&sk).unwrap();
        std::fs::write(self.pointer_file(file_channel), json).unwrap();
        std::fs::write(self.pointer_file(file_channel).with_extension("json.minisig"), sig).unwrap();
    }

    fn checksums_sha512(&self, version: &str) -> String {
        flynnrel::model::checksums::sha512_hex(
            &std::fs::read(self.serve.join(REPO).join(version).join("checksums.sha512")).unwrap(),
        )
    }

    fn pointer(&self, version: &str, sequence: u64) -> ChannelPointer {
        let now = SystemTime::now();
        ChannelPointer {
            format: POINTER_FORMAT,
            repository: REPO.into(),
            channel: "stable".into(),
            version: version.into(),
            sequence,
            issued_at: rfc3339(now),
            expires_at: rfc3339(now + DAY),
            checksums_sha512: if self.serve.join(REPO).join(version).is_dir() {
                self.checksums_sha512(version)
            } else {
                "0".repeat(128)
            },
        }
    }

    fn uopts(&self, server: &Server, check: bool) -> UpdateOptions {
        let mut o = UpdateOptions::new(self.layout());
        o.api_url = Some(server.api_url());
        o.check = check;
        o
    }

    fn run(&self, server: &Server, check: bool) -> flynnrel::Result<UpdateOutcome> {
        let mut co = options(server);
        co.web_url = server.web_url();
        co.retries = 1;
        update(
            &flynnrel::remote::ghrelease::Client::new(co).unwrap(),
            &self.uopts(server, check),
            &mut flynnrel::remote::fetch::no_progress,
        )
    }

    /// Runs an update (check and apply) that must fail, and asserts nothing on the host changed.
    fn attack(&self, server: &Server) -> flynnrel::Error {
        let before = snapshot(&self.root);
        let linked = flynnrel::host::layout::linked_version(&self.layout().bin_dir, "flynn-host");
        let check = self.run(server, true).expect_err("the check accepted the attack");
        let err = match self.run(server, false) {
            Err(e) => e,
            Ok(out) => panic!("the attack succeeded: {out:?}"),
        };
        assert_eq!(check.kind(), err.kind(), "check: {check}; update: {err}");
        assert_eq!(snapshot(&self.root), before, "the host changed after: {err}");
        assert_eq!(
            flynnrel::host::layout::linked_version(&self.layout().bin_dir, "flynn-host"),
            linked
        );
        err
    }

    fn receipt(&self) -> InstallSource {
        InstallSource::load(&self.layout().config_dir).unwrap().unwrap()
    }
}

fn expect(err: &flynnrel::Error, kind: ErrorKind, words: &[&str]) {
    assert_eq!(err.kind(), kind, "{err}");
    for w in words {
        assert!(err.message().contains(w), "{w:?} not in: {err}");
    }
}

fn web_server(h: &Host) -> Server {
    start(&h.serve)
}

#[test]
fn a_promoted_pointer_selects_the_channel_and_is_recorded() {
    let h = Host::new();
    let server = web_server(&h);
    // V3 is the newest by version order; the pointer says stable is V2.
    let rep = h.promote(&server, V2);
    assert_eq!(
        (rep.sequence, rep.version.as_str(), rep.previous_version.as_deref()),
        (1, V2, None)
    );
    match h.run(&server, true).unwrap() {
        UpdateOutcome::Available {
            target,
            pointer_expires_at,
            ..
        } => {
            assert_eq!(target, V2);
            assert_eq!(pointer_expires_at.as_deref(), Some(rep.expires_at.as_str()));
        }
        other => panic!("{other:?}"),
    }
    match h.run(&server, false).unwrap() {
        UpdateOutcome::Updated { to, .. } => assert_eq!(to, V2),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.receipt().channel_sequence(REPO, "stable"), Some(1));
    // Promoting V3 takes the next sequence; the host follows.
    let rep = h.promote(&server, V3);
    assert_eq!((rep.sequence, rep.previous_version.as_deref()), (2, Some(V2)));
    assert!(matches!(h.run(&server, false).unwrap(), UpdateOutcome::Updated { ref to, .. } if to == V3));
    assert_eq!(h.receipt().channel_sequence(REPO, "stable"), Some(2));
}

#[test]
fn without_a_key_the_pointer_is_not_read_and_version_order_stays() {
    let h = Host::new();
    let server = web_server(&h);
    h.promote(&server, V2);
    // An unpinned host (as before this change): the newest by version order, no pointer request.
    let mut r = h.receipt();
    r.public_key = None;
    r.save(&h.layout().config_dir).unwrap();
    server.clear_requests();
    match h.run(&server, true).unwrap() {
        UpdateOutcome::Available {
            target,
            pointer_expires_at,
            ..
        } => assert_eq!((target.as_str(), pointer_expires_at), (V3, None)),
        other => panic!("{other:?}"),
    }
    assert!(
        !server.requests().iter().any(|r| r.url.contains("flynn-channels")),
        "{:?}",
        server.requests()
    );
}

#[test]
fn expired_pointer() {
    let h = Host::new();
    let server = web_server(&h);
    // Issued 20 days ago for 14 days: the publisher stopped re-signing, or a mirror kept it.
    let rep = h
        .promote_at(
            &server,
            Channel::Stable,
            Some(V2),
            SystemTime::now() - 20 * DAY,
            14 * DAY,
        )
        .unwrap();
    let err = h.attack(&server);
    expect(
        &err,
        ErrorKind::ChannelPointerExpired,
        &["expired at", &rep.expires_at, "freeze"],
    );
}

#[test]
fn replayed_older_pointer() {
    let h = Host::new();
    let server = web_server(&h);
    h.promote(&server, V2);
    let old_json = std::fs::read(h.pointer_file("stable")).unwrap();
    let old_sig = std::fs::read(h.pointer_file("stable").with_extension("json.minisig")).unwrap();
    // Re-signed (sequence 2), and the host updates through it.
    let rep = h
        .promote_at(&server, Channel::Stable, None, SystemTime::now(), 14 * DAY)
        .unwrap();
    assert_eq!((rep.sequence, rep.version.as_str()), (2, V2));
    assert!(matches!(h.run(&server, false).unwrap(), UpdateOutcome::Updated { .. }));
    assert_eq!(h.receipt().channel_sequence(REPO, "stable"), Some(2));
    // The old pointer (validly signed, not expired, sequence 1) is served again.
    std::fs::write(h.pointer_file("stable"), old_json).unwrap();
    std::fs::write(h.pointer_file("stable").with_extension("json.minisig"), old_sig).unwrap();
    let err = h.attack(&server);
    expect(&err, ErrorKind::ChannelPointerReplayed, &["sequence 1", "sequence 2"]);
}

#[test]
fn an_up_to_date_update_records_the_sequence_so_older_pointers_are_refused() {
    let h = Host::new();
    let server = web_server(&h);
    h.promote(&server, V1);
    let old = std::fs::read(h.pointer_file("stable")).unwrap();
    let old_sig = std::fs::read(h.pointer_file("stable").with_extension("json.minisig")).unwrap();
    h.promote_at(&server, Channel::Stable, None, SystemTime::now(), 14 * DAY)
        .unwrap();
    // A check records nothing; an update that finds nothing to do records the sequence.
    assert!(matches!(h.run(&server, true).unwrap(), UpdateOutcome::UpToDate { .. }));
    assert_eq!(h.receipt().channel_sequence(REPO, "stable"), None);
    assert!(matches!(h.run(&server, false).unwrap(), UpdateOutcome::UpToDate { .. }));
    assert_eq!(h.receipt().channel_sequence(REPO, "stable"), Some(2));
    std::fs::write(h.pointer_file("stable"), old).unwrap();
    std::fs::write(h.pointer_file("stable").with_extension("json.minisig"), old_sig).unwrap();
    expect(&h.attack(&server), ErrorKind::ChannelPointerReplayed, &["sequence 1"]);
}

#[test]
fn pointer_naming_an_unsigned_version() {
    let h = Host::new();
    let server = web_server(&h);
    let unsigned = "v2024.01.27.4";
    publish(&h.serve, unsigned, "2024-01-27T05:00:00Z", &layers(4));
    // promote refuses it, writing nothing.
    let before = snapshot(&h.branch());
    let e = h
        .promote_at(&server, Channel::Stable, Some(unsigned), SystemTime::now(), DAY)
        .unwrap_err();
    expect(&e, ErrorKind::SignatureInvalid, &["not signed", unsigned]);
    assert_eq!(snapshot(&h.branch()), before);
    // A pointer made by hand is refused by the host.
    h.write_pointer("stable", &h.pointer(unsigned, 1));
    let err = h.attack(&server);
    expect(&err, ErrorKind::SignatureInvalid, &[unsigned, "not signed"]);
}

#[test]
fn pointer_naming_a_missing_version() {
    let h = Host::new();
    let server = web_server(&h);
    let missing = "v2024.01.27.9";
    let before = snapshot(&h.branch());
    let e = h
        .promote_at(&server, Channel::Stable, Some(missing), SystemTime::now(), DAY)
        .unwrap_err();
    expect(&e, ErrorKind::NotFound, &[missing, "not a published release"]);
    assert_eq!(snapshot(&h.branch()), before);
    h.write_pointer("stable", &h.pointer(missing, 1));
    let err = h.attack(&server);
    expect(&err, ErrorKind::NotFound, &[missing, "no such release"]);
}

#[test]
fn pointer_signed_for_another_channel() {
    let h = Host::new();
    let server = web_server(&h);
    // The nightly pointer, validly signed, served as stable.
    let rep = h
        .promote_at(&server, Channel::Nightly, Some(V3), SystemTime::now(), DAY)
        .unwrap();
    assert_eq!(rep.channel, "nightly");
    std::fs::copy(h.pointer_file("nightly"), h.pointer_file("stable")).unwrap();
    std::fs::copy(
        h.pointer_file("nightly").with_extension("json.minisig"),
        h.pointer_file("stable").with_extension("json.minisig"),
    )
    .unwrap();
    let err = h.attack(&server);
    expect(
        &err,
        ErrorKind::SignatureInvalid,
        &["channel=stable", "another channel"],
    );
}

#[test]
fn pointer_signed_for_another_repository() {
    let h = Host::new();
    let server = web_server(&h);
    // The same key signs another repository's pointer (a fork, a second product).
    let mut p = h.pointer(V3, 5);
    p.repository = "evil/flynn".into();
    h.write_pointer("stable", &p);
    let err = h.attack(&server);
    expect(
        &err,
        ErrorKind::SignatureInvalid,
        &["repo=flynn/flynn", "another repository"],
    );
}

#[test]
fn pointer_whose_checksums_hash_does_not_match_the_release() {
    let h = Host::new();
    let server = web_server(&h);
    // Signed by the key, names V3, but binds V2's checksums file.
    let mut p = h.pointer(V3, 1);
    p.checksums_sha512 = h.checksums_sha512(V2);
    h.write_pointer("stable", &p);
    let err = h.attack(&server);
    expect(&err, ErrorKind::ChecksumMismatch, &[V3, &p.checksums_sha512]);
}

#[test]
fn unsigned_or_tampered_pointer() {
    let h = Host::new();
    let server = web_server(&h);
    h.promote(&server, V3);
    let text = std::fs::read_to_string(h.pointer_file("stable")).unwrap();
    std::fs::write(h.pointer_file("stable"), text.replace(V3, V2)).unwrap();
    expect(&h.attack(&server), ErrorKind::SignatureInvalid, &["does not verify"]);
    std::fs::remove_file(h.pointer_file("stable").with_extension("json.minisig")).unwrap();
    expect(&h.attack(&server), ErrorKind::SignatureInvalid, &["no signature"]);
}

#[test]
fn a_pointer_that_disappears_after_it_was_accepted_is_not_replaced_by_version_order() {
    let h = Host::new();
    let server = web_server(&h);
    h.promote(&server, V2);
    assert!(matches!(h.run(&server, false).unwrap(), UpdateOutcome::Updated { .. }));
    std::fs::remove_file(h.pointer_file("stable")).unwrap();
    let err = h.attack(&server);
    expect(
        &err,
        ErrorKind::NotFound,
        &["accepted sequence 1", "refusing to fall back"],
    );
}

#[test]
fn frozen_mirror_is_detected_within_the_expiry() {
    let h = Host::new();
    let origin = web_server(&h);
    // The publisher's pointers last 3 s here (14 days in production) and are re-signed before.
    h.promote_at(
        &origin,
        Channel::Stable,
        Some(V1),
        SystemTime::now(),
        Duration::from_secs(3),
    )
    .unwrap();
    // A mirror copies the origin once, then stops updating.
    let mirror_root = h.tmp.path().join("mirror");
    copy_tree(&h.serve, &mirror_root);
    let mirror = start(&mirror_root);
    assert!(matches!(h.run(&mirror, true).unwrap(), UpdateOutcome::UpToDate { .. }));
    // Meanwhile the origin promotes V3 (and keeps re-signing); the mirror serves the old state.
    h.promote_at(&origin, Channel::Stable, Some(V3), SystemTime::now(), 14 * DAY)
        .unwrap();
    assert!(matches!(h.run(&origin, true).unwrap(), UpdateOutcome::Available { ref target, .. } if target == V3));
    std::thread::sleep(Duration::from_millis(3500));
    let err = h.attack(&mirror);
    expect(&err, ErrorKind::ChannelPointerExpired, &["expired at", "freeze"]);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn the_pointer_and_its_signature_verify_with_the_minisign_tool() {
    let h = Host::new();
    let server = web_server(&h);
    h.promote(&server, V2);
    let pubfile = h.tmp.path().join("release.pub");
    let pk = minisign::PublicKey::from_base64(&h.public_key).unwrap();
    std::fs::write(&pubfile, pk.to_box().unwrap().into_string()).unwrap();
    let out = std::process::Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(&pubfile)
        .arg("-m")
        .arg(h.pointer_file("stable"))
        .output()
        .expect("minisign must be installed (script/setup-tools installs it)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("repo=flynn/flynn") && log.contains("channel=stable") && log.contains("version=v2024.01.27.2"),
        "{log}"
    );
    // And a pointer signed by the minisign tool (password-protected key) verifies here.
    std::fs::copy(h.pointer_file("stable"), h.tmp.path().join("stable.json")).unwrap();
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(
            "printf 'pw\\npw\\n' | minisign -G -p tool.pub -s tool.sec >/dev/null && \
             printf 'pw\\n' | minisign -S -s tool.sec -m stable.json -t 'repo=flynn/flynn channel=stable'",
        )
        .current_dir(h.tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key = flynnrel::model::signature::TrustedKey::parse(h.tmp.path().join("tool.pub").to_str().unwrap()).unwrap();
    let json = std::fs::read(h.tmp.path().join("stable.json")).unwrap();
    let sig = std::fs::read_to_string(h.tmp.path().join("stable.json.minisig")).unwrap();
    let p =
        flynnrel::model::pointer::verify(&key, &json, &sig, "stable.json", REPO, "stable", SystemTime::now()).unwrap();
    assert_eq!(p.version, V2);
    let e = flynnrel::model::pointer::verify(&key, &json, &sig, "stable.json", REPO, "nightly", SystemTime::now())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SignatureInvalid);
}

#[test]
fn promote_refuses_bad_input_and_changes_nothing() {
    let h = Host::new();
    let server = web_server(&h);
    h.promote(&server, V2);
    let before = snapshot(&h.branch());
    // Another key's pointer in the checkout is not continued.
    let other = h.tmp.path().join("other.key");
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    std::fs::write(&other, kp.sk.to_box(None).unwrap().into_string()).unwrap();
    let mut o = PromoteOptions {
        channel: Channel::Stable,
        version: Some(V3.into()),
        sign_key: other,
        password: None,
        expires: DAY,
        out_dir: h.branch(),
        now: SystemTime::now(),
        previous_public_key: None,
    };
    let e = promote(&client(&server), &o).unwrap_err();
    expect(
        &e,
        ErrorKind::SignatureInvalid,
        &["stable.json", "must verify with the signing key", "previous public key"],
    );
    o.sign_key = h.key_file.clone();
    for (expires, out) in [
        (Duration::ZERO, h.branch()),
        (400 * DAY, h.branch()),
        (DAY, h.tmp.path().join("nope")),
    ] {
        o.expires = expires;
        o.out_dir = out;
        let e = promote(&client(&server), &o).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
    // Nothing to re-sign in an empty checkout.
    o.expires = DAY;
    o.version = None;
    o.channel = Channel::Nightly;
    o.out_dir = h.branch();
    let e = promote(&client(&server), &o).unwrap_err();
    expect(&e, ErrorKind::InvalidArgument, &["nightly.json", "--version"]);
    assert_eq!(snapshot(&h.branch()), before);
    assert!(flynnrel::model::pointer::parse_expiry("0s").is_err());
    assert_eq!(flynnrel::model::pointer::parse_expiry("14d").unwrap(), 14 * DAY);
}

/// `update --check` on a channel with a pointer reads the pointer and the release's checksums
/// and signature through the web host: no API request (from `flynnrel serve --request-log`).
#[test]
fn update_check_through_a_pointer_costs_no_api_request() {
    let h = Host::new();
    let log = h.tmp.path().join("requests.jsonl");
    let ready = h.tmp.path().join("ready.json");
    let mut child = std::process::Command::new(flynnrel_bin())
        .args(["serve", h.serve.to_str().unwrap(), "-q", "--ready-file"])
        .arg(&ready)
        .arg("--request-log")
        .arg(&log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ready.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let urls: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let (api, web) = (urls["api_url"].as_str().unwrap(), urls["web_url"].as_str().unwrap());
    let read_log = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let check = |expect_code: i32| {
        let skip = read_log().len();
        let out = std::process::Command::new(flynnrel_bin())
            .args(["update", "--check", "--root"])
            .arg(&h.root)
            .args(["--api-url", api, "--web-url", web])
            .env_remove("FLYNN_RELEASE_PUBLIC_KEY")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(expect_code),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
        let lines: Vec<serde_json::Value> = read_log().into_iter().skip(skip).collect();
        let api_requests = lines.iter().filter(|l| l["listener"] == "api").count();
        (api_requests, lines.len(), stdout)
    };
    // No pointer yet: version order, through the API.
    let (api_requests, _, stdout) = check(100);
    assert!(api_requests >= 1, "{stdout}");
    assert!(stdout.contains(&format!("target={V3}")), "{stdout}");
    // Promote V2 through the running server, then check again.
    promote(
        &{
            let mut o = flynnrel::remote::ghrelease::ClientOptions::new(REPO);
            o.api_url = api.to_string();
            o.web_url = web.to_string();
            flynnrel::remote::ghrelease::Client::new(o).unwrap()
        },
        &PromoteOptions {
            channel: Channel::Stable,
            version: Some(V2.into()),
            sign_key: h.key_file.clone(),
            password: None,
            expires: 14 * DAY,
            out_dir: h.branch(),
            now: SystemTime::now(),
            previous_public_key: None,
        },
    )
    .unwrap();
    let (api_requests, total, stdout) = check(100);
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("update --check through a pointer: {api_requests} API requests, {total} requests in all");
    assert_eq!(api_requests, 0, "{stdout}");
    assert!(
        total >= 4,
        "pointer, signature, checksums and its signature: {total} requests"
    );
    assert!(
        stdout.contains(&format!("target={V2}")) && stdout.contains("pointer_expires_at="),
        "{stdout}"
    );
}

/// After a key rotation the new key continues the old pointer's sequence, so a host that accepted
/// the old pointer accepts the new one (once its pin is rotated) instead of calling it a replay.
#[test]
fn a_key_rotation_continues_the_sequence() {
    let h = Host::new();
    let server = web_server(&h);
    h.promote(&server, V1);
    assert!(matches!(h.run(&server, false).unwrap(), UpdateOutcome::UpToDate { .. }));
    assert_eq!(h.receipt().channel_sequence(REPO, "stable"), Some(1));
    // A new key signs V2's checksums again (its release is re-signed), and takes over the channel.
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let new_key = h.tmp.path().join("new.key");
    std::fs::write(&new_key, kp.sk.to_box(None).unwrap().into_string()).unwrap();
    let dir = h.serve.join(REPO).join(V2);
    let sums = std::fs::read(dir.join("checksums.sha512")).unwrap();
    let (sk, _) = flynnrel::model::signature::load_secret_key(&new_key, None).unwrap();
    let sig = flynnrel::model::signature::sign_checksums(&sk, &sums, REPO, V2).unwrap();
    std::fs::write(dir.join("checksums.sha512.minisig"), sig).unwrap();
    let rep = promote(
        &client(&server),
        &PromoteOptions {
            channel: Channel::Stable,
            version: Some(V2.into()),
            sign_key: new_key,
            password: None,
            expires: DAY,
            out_dir: h.branch(),
            now: SystemTime::now(),
            previous_public_key: Some(h.public_key.clone()),
        },
    )
    .unwrap();
    assert_eq!(rep.sequence, 2);
    // The host's pin is rotated (flynnrel source set --pin-public-key), then it follows.
    let mut r = h.receipt();
    r.public_key = Some(kp.pk.to_base64());
    r.save(&h.layout().config_dir).unwrap();
    assert!(matches!(h.run(&server, false).unwrap(), UpdateOutcome::Updated { ref to, .. } if to == V2));
    assert_eq!(h.receipt().channel_sequence(REPO, "stable"), Some(2));
}
