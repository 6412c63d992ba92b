//! `update`, `rollback` and `source` against the local release server on temp roots: policy,
//! all-or-nothing switching, rollback on a failed smoke test, locks, failpoints and crash recovery.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use flynnrel::ErrorKind;
use flynnrel::host::layout::HostLayout;
use flynnrel::host::receipt::InstallSource;
use flynnrel::ops::install::{InstallOptions, Target, install};
use flynnrel::ops::update::{UpdateOptions, UpdateOutcome, rollback, update};
use flynnrel::serve::Server;

const V1: &str = "v2024.01.27.9";
const V2: &str = "v2024.01.27.10";

fn layers(seed: u32) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("aaaa1111", noise(1, 300_000)),
        (
            if seed == 1 { "bbbb2222" } else { "cccc3333" },
            noise(seed + 1, 100_000),
        ),
    ]
}

struct Env {
    tmp: tempfile::TempDir,
    serve_root: PathBuf,
    root: PathBuf,
    server: Server,
}

/// V1 and V2 published (V2 the higher version, by number: .10 > .9), V1 installed.
fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let serve_root = tmp.path().join("releases");
    std::fs::create_dir(&serve_root).unwrap();
    publish(&serve_root, V1, "2024-01-27T09:00:00Z", &layers(1));
    publish(&serve_root, V2, "2024-01-27T10:00:00Z", &layers(2));
    let root = tmp.path().join("root");
    let server = start(&serve_root);
    let o = InstallOptions::new(layout(&root), Target::Version(V1.into()));
    install(&client(&server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    Env {
        tmp,
        serve_root,
        root,
        server,
    }
}

fn layout(root: &Path) -> HostLayout {
    HostLayout::new(Some(root), None, None, None)
}

fn uopts(e: &Env) -> UpdateOptions {
    UpdateOptions::new(layout(&e.root))
}

fn run(e: &Env, o: &UpdateOptions) -> flynnrel::Result<UpdateOutcome> {
    update(&client(&e.server), o, &mut flynnrel::remote::fetch::no_progress)
}

fn linked(root: &Path) -> Option<String> {
    flynnrel::host::layout::linked_version(&root.join("usr/local/bin"), "flynn-host")
}

fn receipt(root: &Path) -> InstallSource {
    InstallSource::load(&root.join("etc/flynn")).unwrap().unwrap()
}

/// The host runs exactly one version completely: every symlink, the receipt and the bootstrap
/// manifest agree, and `flynn-host version` prints it.
fn assert_consistent(root: &Path) -> String {
    let v = linked(root).expect("flynn-host is linked");
    let bin = root.join("usr/local/bin");
    for n in ["flynn-init", "flynn-linux-amd64"] {
        assert_eq!(
            std::fs::read_link(bin.join(n)).unwrap(),
            PathBuf::from(format!("{n}.{v}")),
            "{n}"
        );
    }
    assert_eq!(receipt(root).version, v);
    assert!(
        std::fs::read_to_string(root.join("etc/flynn/bootstrap-manifest.json"))
            .unwrap()
            .contains(&v)
    );
    let out = Command::new(bin.join("flynn-host")).arg("version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), v);
    assert!(!root.join("etc/flynn/update-journal.json").exists());
    v
}

#[test]
fn check_then_update_by_version_order() {
    let e = env();
    let mut o = uopts(&e);
    o.check = true;
    match run(&e, &o).unwrap() {
        UpdateOutcome::Available { current, target, .. } => assert_eq!((current.as_str(), target.as_str()), (V1, V2)),
        other => panic!("{other:?}"),
    }
    let before = snapshot(&e.root);
    o.check = false;
    match run(&e, &o).unwrap() {
        UpdateOutcome::Updated {
            from,
            to,
            skipped_layers,
            ..
        } => {
            assert_eq!((from.as_str(), to.as_str()), (V1, V2));
            assert_eq!(skipped_layers, ["aaaa1111"]);
        }
        other => panic!("{other:?}"),
    }
    assert_ne!(snapshot(&e.root), before);
    assert_eq!(assert_consistent(&e.root), V2);
    let r = receipt(&e.root);
    assert_eq!(r.highest_seen_version.as_deref(), Some(V2));
    assert_eq!(r.extra["previous_version"], V1);
    assert!(
        e.root.join(format!("usr/local/bin/flynn-host.{V1}")).is_file(),
        "previous version kept"
    );
    o.check = true;
    assert!(matches!(run(&e, &o).unwrap(), UpdateOutcome::UpToDate { .. }));
}

#[test]
fn a_backport_marked_latest_does_not_downgrade() {
    let e = env();
    let mut o = uopts(&e);
    run(&e, &o).unwrap();
    // A later-published backport of the older line that GitHub marks latest.
    let d = publish(&e.serve_root, "v2024.01.27.9-1", "2024-02-01T00:00:00Z", &layers(1));
    std::fs::write(
        d.join(".release.json"),
        r#"{"created_at":"2024-02-01T00:00:00Z","make_latest":true}"#,
    )
    .unwrap();
    assert_eq!(client(&e.server).latest_release().unwrap().tag_name, "v2024.01.27.9-1");
    o.check = true;
    match run(&e, &o).unwrap() {
        UpdateOutcome::UpToDate { current, target, .. } => assert_eq!((current.as_str(), target.as_str()), (V2, V2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn downgrades_need_both_flags_and_force_reinstalls() {
    let e = env();
    run(&e, &uopts(&e)).unwrap();
    let before = snapshot(&e.root);
    let mut o = uopts(&e);
    o.version = Some(V1.into());
    let err = run(&e, &o).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DowngradeRefused);
    assert_eq!(
        err.hint(),
        Some(&flynnrel::Hint::AllowDowngrade { version: V1.into() }),
        "{err}"
    );
    assert_eq!(snapshot(&e.root), before);

    o.allow_downgrade = true;
    run(&e, &o).unwrap();
    assert_eq!(assert_consistent(&e.root), V1);
    assert_eq!(
        receipt(&e.root).highest_seen_version.as_deref(),
        Some(V2),
        "highest_seen never shrinks"
    );

    // Back on V1 with highest_seen V2: the channel (V2) is fine, an explicit V1 again is up to date,
    // and --force reinstalls it.
    let mut o = uopts(&e);
    o.version = Some(V1.into());
    assert!(matches!(run(&e, &o).unwrap(), UpdateOutcome::UpToDate { .. }));
    o.force = true;
    o.allow_downgrade = true;
    assert!(matches!(run(&e, &o).unwrap(), UpdateOutcome::Updated { .. }));
    assert_eq!(assert_consistent(&e.root), V1);
}

#[test]
fn anti_rollback_blocks_versions_below_the_highest_seen() {
    let e = env();
    let mut r = receipt(&e.root);
    r.highest_seen_version = Some("v2024.01.28.0".into());
    r.save(&e.root.join("etc/flynn")).unwrap();
    let before = snapshot(&e.root);
    let err = run(&e, &uopts(&e)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DowngradeRefused);
    assert!(
        err.message().contains("v2024.01.28.0") && err.message().contains("anti-rollback"),
        "{err}"
    );
    assert_eq!(snapshot(&e.root), before);
}

#[test]
fn a_failing_smoke_test_rolls_everything_back() {
    let e = env();
    // V3's flynn-host prints the wrong version.
    let d = publish(&e.serve_root, "v2024.01.27.11", "2024-01-27T11:00:00Z", &layers(3));
    let build = e.serve_root.join(".build-v2024.01.27.11");
    std::fs::write(build.join("bin/flynn-host"), "#!/bin/sh\necho v2024.01.27.9\n").unwrap();
    std::fs::remove_dir_all(&d).unwrap();
    let mut po = flynnrel::ops::package::PackageOptions::new("v2024.01.27.11", REPO);
    po.build_dir = build.clone();
    po.layer_cache = layer_cache(&build);
    po.out_dir = d.clone();
    po.helper = Some(build.join("fake-flynnrel"));
    flynnrel::ops::package::package(&po, &mut flynnrel::remote::fetch::no_progress).unwrap();
    let before = snapshot(&e.root);
    let err = run(&e, &uopts(&e)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SmokeTestFailed, "{err}");
    assert!(
        err.message().contains("rolled back") && err.message().contains("v2024.01.27.9"),
        "{err}"
    );
    assert_eq!(
        snapshot(&e.root),
        before,
        "bin dir, layer dir, config dir and receipt unchanged"
    );
    assert_eq!(assert_consistent(&e.root), V1);
}

#[test]
fn a_second_concurrent_update_fails_at_once() {
    let e = env();
    let held = flynnrel::host::layout::ConfigLock::acquire(&e.root.join("etc/flynn")).unwrap();
    let before = snapshot(&e.root);
    let err = run(&e, &uopts(&e)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.message().contains("update.lock"), "{err}");
    assert_eq!(snapshot(&e.root), before);
    drop(held);
    run(&e, &uopts(&e)).unwrap();
}

#[test]
fn every_failpoint_error_leaves_the_host_unchanged() {
    for fp in [
        "after-download",
        "after-commit",
        "mid-switch",
        "before-receipt",
        "after-receipt",
    ] {
        let e = env();
        let before = snapshot(&e.root);
        let mut o = uopts(&e);
        o.failpoint = Some(fp.into());
        let err = run(&e, &o).unwrap_err();
        assert!(err.message().contains(fp), "{fp}: {err}");
        assert_eq!(snapshot(&e.root), before, "{fp}");
        o.failpoint = None;
        run(&e, &o).unwrap();
        assert_eq!(assert_consistent(&e.root), V2, "{fp}: a re-run converges");
    }
}

fn helper() -> Command {
    let mut c = Command::new(flynnrel_bin());
    for k in [
        "FLYNN_GITHUB_REPO",
        "FLYNN_GITHUB_API_URL",
        "FLYNN_GITHUB_URL",
        "FLYNN_RELEASE_PUBLIC_KEY",
        "FLYNN_RELEASE_FAILPOINT",
    ] {
        c.env_remove(k);
    }
    c.stdin(Stdio::null());
    c
}

fn cli(e: &Env, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = helper();
    c.args(["--root", e.root.to_str().unwrap(), "--web-url", &e.server.web_url()])
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-9),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn sigkill_at_every_step_then_a_rerun_converges() {
    for fp in [
        "after-download",
        "after-commit",
        "mid-switch",
        "before-receipt",
        "after-receipt",
    ] {
        let e = env();
        let (code, _, err) = cli(&e, &["update"], &[("FLYNN_RELEASE_FAILPOINT", &format!("{fp}:kill"))]);
        assert_eq!(code, -9, "{fp}: killed by SIGKILL ({err})");
        // Whatever the kill left, the next run recovers first, then updates.
        let (code, out, err) = cli(&e, &["update"], &[]);
        assert_eq!(code, 0, "{fp}: {out}{err}");
        assert_eq!(assert_consistent(&e.root), V2, "{fp}");
        let leftovers: Vec<_> = snapshot(&e.root)
            .into_keys()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{fp}: stale temp files {leftovers:?}");
    }
}

#[test]
fn killed_mid_switch_recovery_alone_restores_one_version() {
    let e = env();
    let (code, _, _) = cli(&e, &["update"], &[("FLYNN_RELEASE_FAILPOINT", "mid-switch:kill")]);
    assert_eq!(code, -9);
    assert!(
        e.root.join("etc/flynn/update-journal.json").exists(),
        "the journal survives the crash"
    );
    // Recovery (run by rollback/update/install under the lock) undoes the half switch.
    let l = layout(&e.root);
    let _held = flynnrel::host::lock::lock(&l).unwrap();
    let r = flynnrel::host::switch::recover(&l).unwrap();
    assert_eq!(r, flynnrel::host::switch::Recovery::RolledBack(V2.into()));
    assert_eq!(assert_consistent(&e.root), V1);
}

#[test]
fn cli_exit_codes_and_tuf_routing() {
    let e = env();
    let api = e.server.api_url();
    let (code, out, _) = cli(&e, &["update", "--check"], &[]);
    assert_eq!(code, 100, "{out}");
    assert!(
        out.contains(&format!("current={V1}")) && out.contains(&format!("target={V2}")),
        "{out}"
    );
    let (code, out, _) = cli(&e, &["--json", "update", "--check"], &[]);
    assert_eq!(code, 100);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["target"].as_str()),
        (Some("available"), Some(V2))
    );
    assert_eq!(cli(&e, &["update"], &[]).0, 0);
    assert_eq!(cli(&e, &["update", "--check"], &[]).0, 0);

    // A TUF receipt: exit 3 and the TUF message; --source github checks GitHub instead.
    let (code, _, err) = cli(
        &e,
        &[
            "source",
            "set",
            "--source",
            "tuf",
            "--repository",
            "https://dl.flynn.io/tuf",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let before = snapshot(&e.root);
    let (code, out, err) = cli(&e, &["update"], &[]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("TUF") && err.contains("flynn-host update"), "{err}");
    assert_eq!(snapshot(&e.root), before);
    let (code, out, err) = cli(
        &e,
        &[
            "--api-url",
            &api,
            "--repo",
            REPO,
            "update",
            "--source",
            "github",
            "--check",
        ],
        &[],
    );
    assert_eq!(code, 0, "up to date on GitHub too: {out}{err}");
    publish(&e.serve_root, "v2024.01.27.12", "2024-01-27T12:00:00Z", &layers(2));
    let (code, out, _) = cli(
        &e,
        &[
            "--api-url",
            &api,
            "--repo",
            REPO,
            "update",
            "--source",
            "github",
            "--check",
        ],
        &[],
    );
    assert_eq!(code, 100, "{out}");
    let (code, out, err) = cli(
        &e,
        &["--api-url", &api, "--repo", REPO, "update", "--source", "github"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let r = receipt(&e.root);
    assert_eq!((r.source.as_str(), r.version.as_str()), ("github", "v2024.01.27.12"));
}

#[test]
fn a_legacy_install_without_receipt_is_tuf() {
    // A host Flynn's own installer set up: flynn-host, no receipt. (A root with neither is not an
    // install at all: tests/cli.rs a_root_with_nothing_installed_says_so.)
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("flynn-host"), "#!/bin/sh\necho v20210218.0-c283e9f5\n").unwrap();
    let o = UpdateOptions::new(layout(tmp.path()));
    let out = update(
        &flynnrel::remote::ghrelease::Client::new(flynnrel::remote::ghrelease::ClientOptions::new(REPO)).unwrap(),
        &o,
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    match out {
        UpdateOutcome::Tuf { repository, .. } => assert_eq!(repository, flynnrel::ops::update::DEFAULT_TUF_REPOSITORY),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "nothing written");
    assert!(!tmp.path().join("etc").exists());
}

#[test]
fn development_builds_need_an_explicit_target() {
    let e = env();
    let mut r = receipt(&e.root);
    r.version = "dev".into();
    r.save(&e.root.join("etc/flynn")).unwrap();
    let before = snapshot(&e.root);
    let err = run(&e, &uopts(&e)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.message().contains("development build") && err.message().contains("explicit target version"),
        "{err}"
    );
    assert!(matches!(err.hint(), Some(flynnrel::Hint::NameVersion { .. })), "{err}");
    assert_eq!(snapshot(&e.root), before);
    let mut o = uopts(&e);
    o.check = true;
    assert!(
        matches!(run(&e, &o).unwrap(), UpdateOutcome::Available { .. }),
        "never up to date"
    );
    o.check = false;
    o.version = Some(V2.into());
    run(&e, &o).unwrap();
    assert_eq!(assert_consistent(&e.root), V2);
}

#[test]
fn rollback_switches_back_and_refuses_without_a_previous_version() {
    let e = env();
    let err = rollback(&layout(&e.root), std::time::Duration::from_secs(10), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    run(&e, &uopts(&e)).unwrap();
    let r = rollback(&layout(&e.root), std::time::Duration::from_secs(10), None).unwrap();
    assert_eq!((r.from.as_str(), r.to.as_str()), (V2, V1));
    let v = linked(&e.root).unwrap();
    assert_eq!(v, V1);
    assert_eq!(receipt(&e.root).version, V1);
    assert_eq!(receipt(&e.root).extra["previous_version"], V2);
    // And forward again.
    rollback(&layout(&e.root), std::time::Duration::from_secs(10), None).unwrap();
    assert_eq!(linked(&e.root).as_deref(), Some(V2));
    // Gone from disk: refused.
    std::fs::remove_file(e.root.join(format!("usr/local/bin/flynn-host.{V1}"))).unwrap();
    let err = rollback(&layout(&e.root), std::time::Duration::from_secs(10), None).unwrap_err();
    assert!(err.message().contains("no longer on disk"), "{err}");
    let _ = &e.tmp;
}

#[test]
fn only_the_last_two_versions_are_kept() {
    let e = env();
    run(&e, &uopts(&e)).unwrap();
    publish(&e.serve_root, "v2024.01.27.12", "2024-01-27T12:00:00Z", &layers(2));
    match run(&e, &uopts(&e)).unwrap() {
        UpdateOutcome::Updated { removed, .. } => assert!(
            removed.iter().any(|r| r.ends_with(&format!("flynn-host.{V1}"))),
            "{removed:?}"
        ),
        other => panic!("{other:?}"),
    }
    let bin = e.root.join("usr/local/bin");
    assert!(!bin.join(format!("flynn-host.{V1}")).exists());
    assert!(!e.root.join(format!("etc/flynn/images.{V1}.json")).exists());
    assert!(bin.join(format!("flynn-host.{V2}")).exists());
    assert!(bin.join("flynn-host.v2024.01.27.12").exists());
}

#[test]
fn source_set_validates_and_keeps_unknown_fields() {
    let e = env();
    let mut r = receipt(&e.root);
    r.extra.insert("operator_note".into(), serde_json::json!("keep me"));
    r.save(&e.root.join("etc/flynn")).unwrap();
    let (code, _, err) = cli(&e, &["source", "set", "--repository", "not a repo"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid repository"), "{err}");
    let (code, out, err) = cli(
        &e,
        &["source", "set", "--repository", "acme/flynn", "--channel", "nightly"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("repository=acme/flynn"), "{out}");
    let r = receipt(&e.root);
    assert_eq!(r.repository, "acme/flynn");
    assert_eq!(r.channel.as_deref(), Some("nightly"));
    assert_eq!(r.extra["operator_note"], "keep me");
    let (code, out, _) = cli(&e, &["--json", "source", "show"], &[]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["repository"], "acme/flynn");
    assert_eq!(v["legacy"], false);
}

#[test]
fn a_legacy_host_is_probed_for_its_bare_release_version() {
    // Flynn's `flynn-host version` prints `<release>-<commit>`; `version --release` the release.
    let tmp = tempfile::tempdir().unwrap();
    let serve_root = tmp.path().join("releases");
    std::fs::create_dir(&serve_root).unwrap();
    publish(&serve_root, "v20240127.0", "2024-01-27T09:00:00Z", &layers(1));
    let server = start(&serve_root);
    for script in [
        // A flynn-host with --release.
        "#!/bin/sh\nif [ \"$2\" = --release ]; then echo v20240127.0; else echo v20240127.0-c283e9f5; fi\n",
        // An older one without it: the -<commit> suffix is removed from `version`.
        "#!/bin/sh\nif [ -n \"$2\" ]; then echo \"unknown flag $2\" >&2; exit 2; fi\necho v20240127.0-c283e9f5\n",
    ] {
        let root = tmp.path().join("host");
        let _ = std::fs::remove_dir_all(&root);
        let bin = root.join("usr/local/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("flynn-host"), script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("flynn-host"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut o = UpdateOptions::new(layout(&root));
        o.check = true;
        o.source = Some(flynnrel::host::receipt::Source::Github);
        o.api_url = Some(server.api_url());
        match update(&client(&server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap() {
            UpdateOutcome::UpToDate { current, .. } => assert_eq!(current, "v20240127.0"),
            other => panic!("v20240127.0-<commit> was read as older than v20240127.0: {other:?}"),
        }
    }
}
