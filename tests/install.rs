//! Installing from the local release server into a temp root: the layout, the receipt, and every
//! refusal leaving the root byte-for-byte as it was.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use flynnrel::ErrorKind;
use flynnrel::host::layout::HostLayout;
use flynnrel::ops::install::{InstallOptions, Target, download, install};
use flynnrel::remote::ghrelease::Client;
use flynnrel::serve::{Listener, Server};

const V1: &str = "v2024.01.27.0";
const V2: &str = "v2024.01.27.1";

fn layers_v1() -> Vec<(&'static str, Vec<u8>)> {
    vec![("aaaa1111", noise(1, 400_000)), ("bbbb2222", noise(2, 150_000))]
}

fn layers_v2() -> Vec<(&'static str, Vec<u8>)> {
    vec![("aaaa1111", noise(1, 400_000)), ("cccc3333", noise(3, 200_000))]
}

struct Env {
    _tmp: tempfile::TempDir,
    serve_root: PathBuf,
    root: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let serve_root = tmp.path().join("releases");
    std::fs::create_dir(&serve_root).unwrap();
    publish(&serve_root, V1, "2024-01-27T10:00:00Z", &layers_v1());
    publish(&serve_root, V2, "2024-01-28T10:00:00Z", &layers_v2());
    let root = tmp.path().join("root");
    Env {
        serve_root,
        root,
        _tmp: tmp,
    }
}

fn layout(root: &Path) -> HostLayout {
    HostLayout::new(Some(root), None, None, None)
}

fn opts(root: &Path, version: &str) -> InstallOptions {
    InstallOptions::new(layout(root), Target::Version(version.into()))
}

fn install_v(server: &Server, root: &Path, version: &str) -> flynnrel::Result<flynnrel::ops::install::InstallReport> {
    install(
        &client(server),
        &opts(root, version),
        &mut flynnrel::remote::fetch::no_progress,
    )
}

#[test]
fn installs_the_layout_and_the_receipt() {
    let e = env();
    let server = start(&e.serve_root);
    let r = install_v(&server, &e.root, V1).unwrap();
    assert!(!r.already_installed);
    let bin = e.root.join("usr/local/bin");
    for n in ["flynn-host", "flynn-init", "flynn-linux-amd64"] {
        assert_eq!(
            std::fs::read_link(bin.join(n)).unwrap(),
            PathBuf::from(format!("{n}.{V1}"))
        );
        let body = std::fs::read_to_string(bin.join(format!("{n}.{V1}"))).unwrap();
        assert!(body.contains(&format!("echo {V1}")), "{body}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(bin.join(format!("{n}.{V1}")))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
    }
    assert_eq!(
        std::fs::read_link(bin.join("flynn")).unwrap(),
        PathBuf::from("flynn-linux-amd64")
    );
    let cfg = e.root.join("etc/flynn");
    assert!(cfg.join(format!("images.{V1}.json")).is_file());
    assert!(
        std::fs::read_to_string(cfg.join("bootstrap-manifest.json"))
            .unwrap()
            .contains(V1)
    );
    assert_eq!(std::fs::read_to_string(cfg.join("channel.txt")).unwrap(), "stable\n");
    for (id, data) in layers_v1() {
        assert_eq!(
            std::fs::read(e.root.join(format!("var/lib/flynn/layer-cache/{id}.squashfs"))).unwrap(),
            data
        );
    }
    let receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.join("install-source.json")).unwrap()).unwrap();
    assert_eq!(receipt["source"], "github");
    assert_eq!(receipt["repository"], REPO);
    assert_eq!(receipt["version"], V1);
    assert_eq!(receipt["highest_seen_version"], V1);
    assert_eq!(receipt["api_url"], server.api_url());
    assert!(receipt["installed_at"].as_str().unwrap().ends_with('Z'));
    assert!(receipt.get("public_key").is_none());
    // No lock file, temp file or staging leftovers anywhere.
    for (p, _) in snapshot(&e.root) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.') && name != "update.lock", "leftover {p:?}");
    }
    // The JSON report lists each written file with its sha512.
    let host = r
        .files
        .iter()
        .find(|f| f.path.ends_with(format!("flynn-host.{V1}")))
        .unwrap();
    assert_eq!(
        host.sha512,
        flynnrel::model::checksums::sha512_file(&host.path).unwrap()
    );
}

#[test]
fn rerunning_the_same_install_is_a_no_op() {
    let e = env();
    let server = start(&e.serve_root);
    install_v(&server, &e.root, V1).unwrap();
    let before = snapshot(&e.root);
    server.clear_requests();
    let r = install_v(&server, &e.root, V1).unwrap();
    assert!(r.already_installed);
    assert_eq!(snapshot(&e.root), before);
    assert!(
        server.requests().iter().all(|r| r.listener == Listener::Api),
        "no asset downloaded"
    );
}

#[test]
fn a_second_version_skips_layers_already_present() {
    let e = env();
    let server = start(&e.serve_root);
    install_v(&server, &e.root, V1).unwrap();
    let r = install_v(&server, &e.root, V2).unwrap();
    assert_eq!(r.skipped_layers, ["aaaa1111"]);
    assert_eq!(
        std::fs::read_link(e.root.join("usr/local/bin/flynn-host")).unwrap(),
        PathBuf::from(format!("flynn-host.{V2}"))
    );
    assert!(
        e.root.join(format!("usr/local/bin/flynn-host.{V1}")).is_file(),
        "the old version stays for rollback"
    );
    let receipt = flynnrel::host::receipt::InstallSource::load(&e.root.join("etc/flynn"))
        .unwrap()
        .unwrap();
    assert_eq!(receipt.version, V2);
    assert_eq!(receipt.highest_seen_version.as_deref(), Some(V2));
    // Installing the older one again is anti-rollback territory.
    let err = install_v(&server, &e.root, V1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DowngradeRefused);
    assert_eq!(
        err.hint(),
        Some(&flynnrel::Hint::AllowDowngrade { version: V1.into() }),
        "{err}"
    );
}

#[test]
fn channel_install_picks_the_highest_version() {
    let e = env();
    publish(&e.serve_root, "v2024.01.27.10", "2024-01-20T00:00:00Z", &layers_v1());
    let server = start(&e.serve_root);
    let o = InstallOptions::new(
        layout(&e.root),
        Target::Channel(flynnrel::remote::ghrelease::Channel::Stable),
    );
    let r = install(&client(&server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    assert_eq!(r.version, "v2024.01.27.10");
}

#[test]
fn download_lays_out_without_a_receipt() {
    let e = env();
    let server = start(&e.serve_root);
    download(
        &client(&server),
        &opts(&e.root, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert!(e.root.join(format!("usr/local/bin/flynn-host.{V1}")).is_file());
    assert!(!e.root.join("etc/flynn/install-source.json").exists());
}

/// Runs a failing install of `version` over an existing V1 install (or into an empty root when
/// `fresh`) and asserts the root did not change at all. Returns the error.
fn fails_unchanged(e: &Env, server: &Server, version: &str, fresh: bool, o: Option<InstallOptions>) -> flynnrel::Error {
    if !fresh {
        install_v(server, &e.root, V1).unwrap();
    }
    let existed = e.root.exists();
    let before = snapshot(&e.root);
    let o = o.unwrap_or_else(|| opts(&e.root, version));
    let err = install(&client(server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(snapshot(&e.root), before, "the root changed after: {err}");
    if !existed {
        assert!(
            !e.root.exists() || std::fs::read_dir(&e.root).unwrap().count() == 0,
            "nothing created in a fresh root"
        );
    }
    err
}

fn release_dir(e: &Env, v: &str) -> PathBuf {
    e.serve_root.join(REPO).join(v)
}

#[test]
fn tampered_asset_is_refused() {
    let e = env();
    let d = release_dir(&e, V2);
    std::fs::write(d.join("flynn-host-linux-amd64.gz"), gzip(b"#!/bin/sh\necho pwned\n")).unwrap();
    let server = start(&e.serve_root);
    for fresh in [true, false] {
        let _ = std::fs::remove_dir_all(&e.root);
        let err = fails_unchanged(&e, &server, V2, fresh, None);
        assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
        assert!(err.message().contains("flynn-host-linux-amd64.gz"), "{err}");
    }
}

#[test]
fn asset_missing_from_the_checksums_file_is_refused_before_any_download() {
    let e = env();
    rewrite_checksums(&release_dir(&e, V2), &["flynn-init-linux-amd64.gz"]);
    let server = start(&e.serve_root);
    let err = fails_unchanged(&e, &server, V2, false, None);
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert!(
        err.message().contains("no entry for flynn-init-linux-amd64.gz"),
        "{err}"
    );
}

#[test]
fn missing_checksums_file_is_refused() {
    let e = env();
    std::fs::remove_file(release_dir(&e, V2).join("checksums.sha512")).unwrap();
    let server = start(&e.serve_root);
    let err = fails_unchanged(&e, &server, V2, true, None);
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("checksums.sha512"), "{err}");
}

#[test]
fn truncated_download_that_cannot_resume_is_refused() {
    let e = env();
    let full = std::fs::metadata(release_dir(&e, V2).join("layers.tar.gz"))
        .unwrap()
        .len()
        .to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let server = start_with(&e.serve_root, move |r| {
        if r.listener == Listener::Storage && r.url.contains(V2) && r.url.contains("layers.tar.gz") {
            h.fetch_add(1, Ordering::SeqCst);
            // The full length announced, 100 bytes sent, no Accept-Ranges: nothing to resume.
            return raw("200 OK", &[("Content-Length", &full)], &[0u8; 100]);
        }
        None
    });
    let err = fails_unchanged(&e, &server, V2, false, None);
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(
        err.message().contains("layers.tar.gz") && err.message().contains("cut short"),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 5, "first try plus the retry budget (4)");
}

fn replace_layers(e: &Env, tar_gz: Vec<u8>) {
    let d = release_dir(e, V2);
    std::fs::write(d.join("layers.tar.gz"), tar_gz).unwrap();
    rewrite_checksums(&d, &[]);
}

#[test]
fn layer_whose_sha512_256_is_wrong_is_refused() {
    let e = env();
    let mut bad = noise(3, 200_000);
    bad[5] ^= 0xff;
    replace_layers(&e, hand_tar_gz(&[(b"cccc3333.squashfs", tar::EntryType::Regular, bad)]));
    let server = start(&e.serve_root);
    let err = fails_unchanged(&e, &server, V2, false, None);
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch);
    assert!(
        err.message().contains("cccc3333.squashfs") && err.message().contains("sha512_256"),
        "{err}"
    );
}

#[test]
fn tar_entries_with_dangerous_paths_or_types_are_refused() {
    let cases: Vec<(&[u8], tar::EntryType, &str)> = vec![
        (b"../cccc3333.squashfs", tar::EntryType::Regular, "only flat"),
        (b"/tmp/cccc3333.squashfs", tar::EntryType::Regular, "only flat"),
        (b"sub/cccc3333.squashfs", tar::EntryType::Regular, "only flat"),
        (b"cccc3333.squashfs", tar::EntryType::Symlink, "only regular files"),
        (b"cccc3333.squashfs", tar::EntryType::Link, "only regular files"),
        (b"cccc3333.squashfs", tar::EntryType::Char, "only regular files"),
        (b"cccc3333.squashfs", tar::EntryType::Block, "only regular files"),
        (b"cccc3333.squashfs", tar::EntryType::Fifo, "only regular files"),
        (b"evil.sh", tar::EntryType::Regular, "unexpected name"),
    ];
    for (name, kind, why) in cases {
        let e = env();
        let data = if kind == tar::EntryType::Regular {
            noise(3, 200_000)
        } else {
            Vec::new()
        };
        replace_layers(&e, hand_tar_gz(&[(name, kind, data)]));
        let server = start(&e.serve_root);
        let err = fails_unchanged(&e, &server, V2, false, None);
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
        assert!(
            err.message().contains(why),
            "{} -> {err}",
            String::from_utf8_lossy(name)
        );
        assert!(!e.root.parent().unwrap().join("cccc3333.squashfs").exists());
    }
}

#[test]
fn gzip_bombs_are_refused() {
    // A layers archive whose extra entry inflates far beyond anything the release needs.
    let e = env();
    replace_layers(
        &e,
        hand_tar_gz(&[(b"zzzz9999.squashfs", tar::EntryType::Regular, vec![0u8; 64 << 20])]),
    );
    let server = start(&e.serve_root);
    let err = fails_unchanged(&e, &server, V2, false, None);
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(err.message().contains("gzip bomb"), "{err}");

    // A binary that inflates past the binary cap.
    let e = env();
    let d = release_dir(&e, V2);
    std::fs::write(d.join("flynn-host-linux-amd64.gz"), gzip(&vec![0u8; 8 << 20])).unwrap();
    rewrite_checksums(&d, &[]);
    let server = start(&e.serve_root);
    let mut o = opts(&e.root, V2);
    o.max_binary = 1 << 20;
    let err = fails_unchanged(&e, &server, V2, false, Some(o));
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(err.message().contains("flynn-host-linux-amd64.gz"), "{err}");
}

#[test]
fn unknown_version_and_unreachable_server() {
    let e = env();
    let server = start(&e.serve_root);
    let err = fails_unchanged(&e, &server, "v2099.01.01.0", true, None);
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("v2099.01.01.0"), "{err}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut co = options(&server);
    co.api_url = format!("http://127.0.0.1:{port}");
    co.retries = 1;
    let before = snapshot(&e.root);
    let err = install(
        &Client::new(co).unwrap(),
        &opts(&e.root, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network);
    assert!(err.message().contains(&port.to_string()), "{err}");
    assert_eq!(snapshot(&e.root), before);
}

#[test]
fn cancelling_mid_download_leaves_nothing() {
    let e = env();
    let server = start(&e.serve_root);
    install_v(&server, &e.root, V1).unwrap();
    let before = snapshot(&e.root);
    let mut cb = |phase: &str, _: u64, _: u64| !phase.contains("layers");
    let err = install(&client(&server), &opts(&e.root, V2), &mut cb).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert_eq!(snapshot(&e.root), before);
}

#[test]
fn a_corrupt_receipt_stops_the_install_and_is_kept() {
    let e = env();
    let server = start(&e.serve_root);
    std::fs::create_dir_all(e.root.join("etc/flynn")).unwrap();
    std::fs::write(e.root.join("etc/flynn/install-source.json"), b"{not json").unwrap();
    let err = fails_unchanged(&e, &server, V1, true, None);
    assert_eq!(err.kind(), ErrorKind::InvalidReceipt);
    assert!(err.message().contains("install-source.json"), "{err}");
}

#[test]
fn signed_releases_need_a_valid_signature_for_this_repo_and_version() {
    let tmp = tempfile::tempdir().unwrap();
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let key_file = tmp.path().join("sign.key");
    std::fs::write(&key_file, kp.sk.to_box(None).unwrap().into_string()).unwrap();
    let pk = kp.pk.to_base64();
    let serve_root = tmp.path().join("releases");
    std::fs::create_dir(&serve_root).unwrap();
    let sign = |o: &mut flynnrel::ops::package::PackageOptions| o.sign_key = Some(key_file.clone());
    publish_with(&serve_root, V1, "2024-01-27T10:00:00Z", &layers_v1(), sign);
    publish_with(&serve_root, V2, "2024-01-28T10:00:00Z", &layers_v2(), sign);
    publish(&serve_root, "v2024.01.27.5", "2024-01-29T10:00:00Z", &layers_v1()); // unsigned
    // Mix-and-match: V2's assets with V1's (valid) signature.
    let mixed = serve_root.join(REPO).join("v2024.01.27.6");
    publish_with(&serve_root, "v2024.01.27.6", "2024-01-30T10:00:00Z", &layers_v1(), sign);
    std::fs::copy(
        serve_root.join(REPO).join(V1).join("checksums.sha512"),
        mixed.join("checksums.sha512"),
    )
    .unwrap();
    std::fs::copy(
        serve_root.join(REPO).join(V1).join("checksums.sha512.minisig"),
        mixed.join("checksums.sha512.minisig"),
    )
    .unwrap();

    let server = start(&serve_root);
    let root = tmp.path().join("root");
    let mut o = opts(&root, V1);
    o.public_key = Some(pk.clone());
    let r = install(&client(&server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    assert!(r.signature_verified);
    let receipt = flynnrel::host::receipt::InstallSource::load(&root.join("etc/flynn"))
        .unwrap()
        .unwrap();
    assert_eq!(receipt.public_key.as_deref(), Some(pk.as_str()));

    // The pinned key applies without the flag: an unsigned release is refused.
    let before = snapshot(&root);
    let err = install(
        &client(&server),
        &opts(&root, "v2024.01.27.5"),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureInvalid, "{err}");
    assert!(err.message().contains("checksums.sha512.minisig"), "{err}");
    let err = install(
        &client(&server),
        &opts(&root, "v2024.01.27.6"),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureInvalid, "{err}");
    assert!(err.message().contains("version=v2024.01.27.6"), "{err}");
    // Another key on the command line does not override the pin.
    let other = minisign::KeyPair::generate_unencrypted_keypair()
        .unwrap()
        .pk
        .to_base64();
    let mut o = opts(&root, V2);
    o.public_key = Some(other);
    let err = install(&client(&server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureInvalid);
    assert!(err.message().contains("pins public key"), "{err}");
    assert_eq!(snapshot(&root), before);
    // The properly signed V2 installs.
    install(
        &client(&server),
        &opts(&root, V2),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
}

/// The installed images.<ver>.json: Flynn's images.json with `layer_url_template` pointing at the
/// layer dir as the host sees it, every other byte (the manifest above all) as published.
#[test]
fn the_installed_images_manifest_points_at_the_hosts_layer_dir() {
    let e = env();
    let server = start(&e.serve_root);
    let published = std::fs::read(e.serve_root.join(format!(".build-{V1}/manifests/images.json"))).unwrap();
    let builder = format!("\"layer_url_template\": \"{BUILDER_LAYER_URL_TEMPLATE}\"");
    assert!(String::from_utf8_lossy(&published).contains(&builder));
    // --root: the default layer dir, without the root prefix.
    install_v(&server, &e.root, V1).unwrap();
    let installed = std::fs::read(e.root.join(format!("etc/flynn/images.{V1}.json"))).unwrap();
    assert_eq!(
        String::from_utf8(installed.clone()).unwrap(),
        String::from_utf8(published.clone()).unwrap(),
        "the builder's template already names the default layer dir"
    );
    // --layer-dir under --root: the template names the directory the host will use.
    let root2 = e.root.with_file_name("root2");
    let mut o = opts(&root2, V1);
    o.layout = HostLayout::new(Some(&root2), None, None, Some(Path::new("/data/flynn layers")));
    let r = install(&client(&server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    let path = root2.join(format!("etc/flynn/images.{V1}.json"));
    let installed = std::fs::read(&path).unwrap();
    let want = "file:///data/flynn%20layers/{id}.squashfs";
    let doc: serde_json::Value = serde_json::from_slice(&installed).unwrap();
    assert_eq!(doc["host"]["layer_url_template"], want);
    assert_eq!(raw_manifest(&installed, "host"), raw_manifest(&published, "host"));
    assert_eq!(
        String::from_utf8(installed.clone())
            .unwrap()
            .replace(want, BUILDER_LAYER_URL_TEMPLATE),
        String::from_utf8(published).unwrap(),
        "nothing but the template changed"
    );
    for (id, _) in layers_v1() {
        assert!(root2.join(format!("data/flynn layers/{id}.squashfs")).is_file());
    }
    // The report's hash is the installed (rewritten) file's.
    let f = r.files.iter().find(|f| f.path == path).unwrap();
    assert_eq!(f.sha512, flynnrel::model::checksums::sha512_hex(&installed));
}

/// A release packaged from images.json after Flynn's export (layer_url_template names the TUF
/// repository) installs with the template pointing at the layer dir: the layers are there.
#[test]
fn an_exported_images_manifest_is_pointed_at_the_layer_cache() {
    let e = env();
    let d = release_dir(&e, V1);
    let mut images = Vec::new();
    let gz = std::fs::read(d.join("images.json.gz")).unwrap();
    flynnrel::model::gz::gunzip_capped(&gz[..], &mut images, 1 << 20, "images.json.gz").unwrap();
    let exported = String::from_utf8(images).unwrap().replace(
        BUILDER_LAYER_URL_TEMPLATE,
        "https://dl.flynn.io/tuf?target=/layers/{id}.squashfs",
    );
    std::fs::write(d.join("images.json.gz"), gzip(exported.as_bytes())).unwrap();
    rewrite_checksums(&d, &[]);
    let server = start(&e.serve_root);
    install_v(&server, &e.root, V1).unwrap();
    let installed = std::fs::read(e.root.join(format!("etc/flynn/images.{V1}.json"))).unwrap();
    assert_eq!(
        String::from_utf8(installed).unwrap(),
        exported.replace(
            "https://dl.flynn.io/tuf?target=/layers/{id}.squashfs",
            BUILDER_LAYER_URL_TEMPLATE
        )
    );
}

fn request(root: &Path, parts: Option<&[&str]>, no_receipt: bool) -> flynnrel::ops::request::InstallRequest {
    flynnrel::ops::request::InstallRequest {
        root: Some(root.to_path_buf()),
        version: Some(V1.into()),
        no_receipt,
        parts: parts.map(|p| p.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn run(
    server: &Server,
    req: &flynnrel::ops::request::InstallRequest,
) -> flynnrel::Result<flynnrel::ops::install::InstallReport> {
    flynnrel::ops::request::install(&client(server), req, &mut flynnrel::remote::fetch::no_progress)
}

/// The files (not directories) under `root`, relative, sorted.
fn files_under(root: &Path) -> Vec<String> {
    snapshot(root)
        .into_iter()
        .filter(|(_, line)| !line.starts_with("d "))
        .map(|(p, _)| p.display().to_string())
        .collect()
}

#[test]
fn parts_download_exactly_the_subset_asked_for() {
    let e = env();
    let server = start(&e.serve_root);
    let bins: Vec<String> = ["flynn", "flynn-host", "flynn-init", "flynn-linux-amd64"]
        .iter()
        .flat_map(|n| {
            let mut v = vec![format!("usr/local/bin/{n}")];
            if *n != "flynn" {
                v.push(format!("usr/local/bin/{n}.{V1}"));
            }
            v
        })
        .collect();
    let config = vec![
        "etc/flynn/bootstrap-manifest.json".to_string(),
        format!("etc/flynn/images.{V1}.json"),
    ];
    let layers: Vec<String> = layers_v1()
        .iter()
        .map(|(id, _)| format!("var/lib/flynn/layer-cache/{id}.squashfs"))
        .collect();
    for (parts, want) in [
        (&["binaries"][..], vec![&bins]),
        (&["config"][..], vec![&config]),
        (&["layers"][..], vec![&layers]),
        (&["binaries", "layers"][..], vec![&bins, &layers]),
        (&["config", "layers", "config"][..], vec![&config, &layers]),
    ] {
        let root = e.root.with_file_name(format!("root-{}", parts.join("-")));
        let r = run(&server, &request(&root, Some(parts), true)).unwrap();
        let mut want: Vec<String> = want.into_iter().flatten().cloned().collect();
        want.sort();
        assert_eq!(files_under(&root), want, "{parts:?}");
        let mut reported: Vec<String> = r
            .files
            .iter()
            .map(|f| f.path.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        reported.sort();
        assert_eq!(reported, want, "{parts:?}: the report lists what was written");
        assert!(!root.join("etc/flynn/install-source.json").exists());
        if !parts.contains(&"binaries") {
            assert!(!root.join("usr").exists(), "{parts:?}: no bin dir");
        }
        if !parts.contains(&"layers") {
            assert!(!root.join("var").exists(), "{parts:?}: no layer dir");
        }
    }
}

#[test]
fn parts_without_binaries_leave_the_symlinks_alone() {
    let e = env();
    let server = start(&e.serve_root);
    // V1 fully laid out; then V2's config and layers only.
    run(&server, &request(&e.root, None, true)).unwrap();
    let bin = e.root.join("usr/local/bin");
    let links_before = snapshot(&bin);
    let mut req = request(&e.root, Some(&["config", "layers"]), true);
    req.version = Some(V2.into());
    let r = run(&server, &req).unwrap();
    assert_eq!(snapshot(&bin), links_before, "no binary fetched, no symlink moved");
    assert!(r.files.iter().all(|f| !f.path.starts_with(&bin)));
    assert!(e.root.join(format!("etc/flynn/images.{V2}.json")).is_file());
    assert!(
        std::fs::read_to_string(e.root.join("etc/flynn/bootstrap-manifest.json"))
            .unwrap()
            .contains(V2)
    );
    assert!(e.root.join("var/lib/flynn/layer-cache/cccc3333.squashfs").is_file());
    assert_eq!(r.skipped_layers, ["aaaa1111"]);
    // And the binaries after: the symlinks move then.
    req.parts = Some(vec!["binaries".into()]);
    run(&server, &req).unwrap();
    assert_eq!(
        std::fs::read_link(bin.join("flynn-host")).unwrap(),
        PathBuf::from(format!("flynn-host.{V2}"))
    );
}

#[test]
fn bad_parts_are_refused_and_change_nothing() {
    let e = env();
    let server = start(&e.serve_root);
    run(&server, &request(&e.root, None, true)).unwrap();
    let before = snapshot(&e.root);
    server.clear_requests();
    for (req, why) in [
        (request(&e.root, Some(&[]), true), "empty"),
        (request(&e.root, Some(&["binaries", "images"]), true), "\"images\""),
        (request(&e.root, Some(&["binaries"]), false), "no_receipt"),
        (
            request(&e.root, Some(&["binaries", "config", "layers"]), false),
            "no_receipt",
        ),
    ] {
        let err = run(&server, &req).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.message().contains("parts") && err.message().contains(why), "{err}");
        assert_eq!(snapshot(&e.root), before, "{err}");
    }
    assert!(server.requests().is_empty(), "refused before asking GitHub");
    // The core refuses a subset with the receipt whatever the front-end.
    let mut o = opts(&e.root, V2);
    o.parts = flynnrel::host::staging::Parts::from_names(&["layers"], "parts").unwrap();
    let err = install(&client(&server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(snapshot(&e.root), before);
}
