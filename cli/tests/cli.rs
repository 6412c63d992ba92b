//! The `flynnrel` binary: output formats, exit codes and error messages.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};

use common::*;

fn helper() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flynnrel"));
    for k in [
        "FLYNN_GITHUB_REPO",
        "FLYNN_GITHUB_API_URL",
        "FLYNN_GITHUB_URL",
        "FLYNN_GITHUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_TOKEN",
        "FLYNN_RELEASE_PUBLIC_KEY",
    ] {
        c.env_remove(k);
    }
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.stdin(Stdio::null()).output().expect("run flynnrel");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn releases_fixture() -> (tempfile::TempDir, flynnrel::serve::Server) {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v2024.01.27.9", "2024-01-27T09:00:00Z", false);
    simple_release(tmp.path(), "v2024.01.27.10", "2024-01-27T10:00:00Z", false);
    simple_release(tmp.path(), "v2024.01.28.0", "2024-01-28T00:00:00Z", true);
    let server = start(tmp.path());
    (tmp, server)
}

#[test]
fn releases_plain_and_json() {
    let (_tmp, server) = releases_fixture();
    let (code, out, err) = run(helper().args([
        "releases",
        "--channel",
        "stable",
        "--api-url",
        &server.api_url(),
        "--web-url",
        &server.web_url(),
    ]));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("tag=v2024.01.27.10 "), "{out}");
    assert_eq!(lines[2], "channel=stable selected=v2024.01.27.10");

    let (code, out, err) = run(helper()
        .args(["--json", "releases", "--channel", "nightly"])
        .env("FLYNN_GITHUB_API_URL", server.api_url())
        .env("FLYNN_GITHUB_URL", server.web_url()));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["selected"], "v2024.01.28.0");
    assert_eq!(v["channel"], "nightly");
    assert_eq!(v["releases"].as_array().unwrap().len(), 3);
    assert_eq!(v["releases"][0]["assets"][0]["name"], "checksums.sha512");
}

#[test]
fn errors_exit_1_with_a_message_and_json_error() {
    let (_tmp, server) = releases_fixture();
    // A bad repository from the environment is not a usage error: it is reported as an error.
    let (code, out, err) = run(helper()
        .args(["releases", "--api-url", &server.api_url()])
        .env("FLYNN_GITHUB_REPO", "not a repo"));
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("invalid repository") && err.contains("OWNER/NAME"),
        "{err}"
    );
    assert!(err.contains("flynnrel: hint: check --repo, FLYNN_GITHUB_REPO"), "{err}");

    let (code, out, _) = run(helper().args([
        "--json",
        "--repo",
        "flynn/nope",
        "releases",
        "--channel",
        "stable",
        "--api-url",
        &server.api_url(),
        "--web-url",
        &server.web_url(),
    ]));
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["kind"], "not_found");
    assert_eq!(v["error"]["code"], 4);
    // The hint is data in --json, and the message carries no flag names.
    assert_eq!(v["error"]["hint"], serde_json::json!({"hint": "check_repository"}));
    assert!(!v["error"]["message"].as_str().unwrap().contains("--"), "{v}");

    let (code, _, err) = run(helper().args(["releases", "--api-url", "http://example.com"]));
    assert_eq!(code, 1);
    assert!(err.contains("refusing plain http"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, err) = run(helper().args(["releases", "--no-such-flag"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(helper().arg("frobnicate"));
    assert_eq!(code, 2);
}

#[test]
fn serve_reports_its_urls_and_refuses_a_missing_folder() {
    let tmp = tempfile::tempdir().unwrap();
    simple_release(tmp.path(), "v1.0.0", "2024-01-01T00:00:00Z", false);
    let ready = tmp.path().join("ready.json");
    let log = tmp.path().join("requests.jsonl");
    let mut child = helper()
        .args([
            "serve",
            tmp.path().to_str().unwrap(),
            "-q",
            "--ready-file",
            ready.to_str().unwrap(),
            "--request-log",
            log.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut urls = None;
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            urls = serde_json::from_str::<serde_json::Value>(&text).ok();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let urls = urls.expect("ready file");
    let (code, out, err) = run(helper().args([
        "releases",
        "--api-url",
        urls["api_url"].as_str().unwrap(),
        "--web-url",
        urls["web_url"].as_str().unwrap(),
    ]));
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("tag=v1.0.0 "), "{out}");
    let logged = std::fs::read_to_string(&log).unwrap();
    let first: serde_json::Value = serde_json::from_str(logged.lines().next().unwrap()).unwrap();
    assert_eq!(first["listener"], "api");
    assert_eq!(first["status"], 200);

    let missing = tmp.path().join("nope");
    let (code, _, err) = run(helper().args(["serve", missing.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
}

#[test]
fn serve_refuses_useless_connection_limits_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let ready = tmp.path().join("ready.json");
    for (flag, value) in [
        ("--max-connections-per-ip", "0"),
        ("--max-connections", "0"),
        ("--header-timeout", "0"),
        ("--idle-timeout", "0"),
    ] {
        let (code, _, err) = run(helper().args([
            "serve",
            tmp.path().to_str().unwrap(),
            flag,
            value,
            "--ready-file",
            ready.to_str().unwrap(),
        ]));
        assert_eq!(code, 1, "{flag}: {err}");
        assert!(err.contains(flag), "{flag}: {err}");
        assert!(!ready.exists(), "{flag}: a refused server wrote its ready file");
    }
    let (code, _, err) = run(helper().args(["serve", tmp.path().to_str().unwrap(), "--header-timeout", "soon"]));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn syntax_errors_in_arguments_are_usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--repo", "not a repo", "releases"], "invalid repository"),
        (&["releases", "--repo", "a/b/c"], "invalid repository"),
        (&["install", "--version", "garbage"], "invalid version \"garbage\""),
        (&["update", "--version", "1.2"], "invalid version"),
        (&["install", "--channel", "beta"], "beta"),
        (&["update", "--source", "cvs"], "cvs"),
        (&["source", "set", "--channel", "weekly"], "weekly"),
    ];
    for (args, words) in cases {
        let (code, out, err) = run(helper().args(*args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        assert!(err.contains(words), "{args:?}: {words:?} not in {err}");
    }
}

#[test]
fn each_command_lists_its_own_options_then_only_the_shared_ones_it_uses() {
    let help = |args: &[&str]| run(helper().args(args)).1;
    let serve = help(&["serve", "--help"]);
    assert!(
        serve.contains("--storage-listen") && serve.contains("Output:"),
        "{serve}"
    );
    for absent in ["--bin-dir", "--public-key", "--repo", "--api-url"] {
        assert!(!serve.contains(absent), "serve --help lists {absent}:\n{serve}");
    }
    let package = help(&["package", "--help"]);
    assert!(
        package.contains("--repo") && package.contains("--public-key"),
        "{package}"
    );
    assert!(
        !package.contains("--api-url") && !package.contains("--root"),
        "{package}"
    );
    // Own options come first, the shared ones under their headings after them.
    let install = help(&["install", "--help"]);
    let own = install.find("--channel").unwrap();
    for heading in [
        "GitHub repository:",
        "GitHub hosts:",
        "Host directories:",
        "Signatures:",
        "Output:",
    ] {
        let at = install
            .find(heading)
            .unwrap_or_else(|| panic!("{heading} missing:\n{install}"));
        assert!(at > own, "{heading} before the command's own options");
    }
    // `source set` has one --api-url (what it records); the shared one is not offered there.
    let set = help(&["source", "set", "--help"]);
    assert_eq!(set.matches("--api-url").count(), 1, "{set}");
    assert!(
        !set.contains("--set-api-url <") && !set.contains("--public-key <"),
        "{set}"
    );
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let (code, bash, err) = run(helper().args(["completions", "bash"]));
    assert_eq!(code, 0, "{err}");
    for w in ["_flynnrel()", "install", "--allow-downgrade", "--pin-public-key"] {
        assert!(bash.contains(w), "{w} not in the bash completion");
    }
    let (code, man, err) = run(helper().arg("man"));
    assert_eq!(code, 0, "{err}");
    assert!(
        man.starts_with(".ie") || man.contains(".TH flynnrel"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(man.contains("install") && man.contains("update"));
}

/// A root with a receipt written by hand (and a flynn-host link, so it counts as installed).
fn root_with_receipt(text: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("etc/flynn")).unwrap();
    std::fs::create_dir_all(t.path().join("usr/local/bin")).unwrap();
    std::fs::write(t.path().join("etc/flynn/install-source.json"), text).unwrap();
    std::os::unix::fs::symlink("flynn-host.v2024.01.27.9", t.path().join("usr/local/bin/flynn-host")).unwrap();
    t
}

#[test]
fn a_corrupt_receipt_names_a_repair_that_works() {
    let t = root_with_receipt("{\"source\": \"github\", \"repository\": ");
    let root = t.path().to_str().unwrap();
    let before = snapshot(t.path());
    let (code, _, err) = run(helper().args(["update", "--check", "--root", root]));
    assert_eq!(code, 1);
    assert!(
        err.contains("install-source.json is not a valid install receipt"),
        "{err}"
    );
    assert_eq!(snapshot(t.path()), before, "a failed check changed the host");
    // The advice, as the CLI words the core's hint, with the placeholders filled in.
    let hint = err
        .lines()
        .find_map(|l| l.strip_prefix("flynnrel: hint: "))
        .expect("a hint line");
    let advice = hint.split('`').nth(1).expect("a command in backquotes");
    assert!(
        advice.starts_with("flynnrel source set --source github|tuf --repository REPOSITORY"),
        "{advice}"
    );
    let (code, out, err) = run(helper().args([
        "source",
        "set",
        "--source",
        "github",
        "--repository",
        "acme/flynn-fork",
        "--root",
        root,
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kept_unreadable_receipt="), "{out}");
    let kept: Vec<_> = std::fs::read_dir(t.path().join("etc/flynn"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("install-source.json.unreadable-"))
        .collect();
    assert_eq!(kept.len(), 1, "the broken file is kept beside the new receipt");
    let broken = std::fs::read_to_string(t.path().join("etc/flynn").join(&kept[0])).unwrap();
    assert_eq!(broken, "{\"source\": \"github\", \"repository\": ");
    let (code, out, err) = run(helper().args(["source", "show", "--root", root]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("source=github repository=acme/flynn-fork"), "{out}");
    // Without both --source and --repository it refuses and changes nothing.
    let t = root_with_receipt("not json");
    let before = snapshot(t.path());
    let (code, _, err) = run(helper().args([
        "source",
        "set",
        "--channel",
        "nightly",
        "--root",
        t.path().to_str().unwrap(),
    ]));
    assert_eq!(code, 1);
    assert!(err.contains("not a valid install receipt"), "{err}");
    assert_eq!(snapshot(t.path()), before);
}

#[test]
fn a_bad_value_from_the_receipt_is_blamed_on_the_receipt_field() {
    let t = root_with_receipt(
        r#"{"source":"github","repository":"not a repo","version":"v2024.01.27.9","installed_at":""}"#,
    );
    let (code, _, err) = run(helper().args(["update", "--check", "--root", t.path().to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(err.contains("install-source.json has a bad `repository`"), "{err}");
    assert!(
        !err.contains("--repo or FLYNN_GITHUB_REPO") || err.contains("source set --repository"),
        "{err}"
    );
    let t = root_with_receipt(
        r#"{"source":"github","repository":"a/b","version":"v2024.01.27.9","installed_at":"","api_url":"http://example.com"}"#,
    );
    let (code, _, err) = run(helper().args(["update", "--check", "--root", t.path().to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(
        err.contains("has a bad `api_url`") && err.contains("source set --api-url"),
        "{err}"
    );
}

#[test]
fn a_receipt_version_that_is_not_a_version_is_rejected() {
    let t = root_with_receipt(r#"{"source":"github","repository":"a/b","version":"garbage","installed_at":""}"#);
    let (code, out, err) = run(helper().args(["update", "--check", "--root", t.path().to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(!out.contains("current=garbage"), "{out}");
    assert!(
        err.contains("`version`") && err.contains("invalid version \"garbage\""),
        "{err}"
    );
}

#[test]
fn a_root_that_is_a_file_is_named_as_such() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("root-file");
    std::fs::write(&f, b"x").unwrap();
    for args in [
        &["update", "--check"][..],
        &["source", "show"],
        &["install", "--version", "v1.0.0"],
    ] {
        let (code, _, err) = run(helper().args(args).args(["--root", f.to_str().unwrap()]));
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("is not a directory"), "{args:?}: {err}");
        assert!(
            err.contains("flynnrel: hint: run as root, or give --root a writable directory"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("install-source.json"), "{err}");
    }
    assert_eq!(std::fs::read(&f).unwrap(), b"x");
}

#[test]
fn a_root_with_nothing_installed_says_so() {
    let t = tempfile::tempdir().unwrap();
    let (code, out, err) = run(helper().args(["update", "--check", "--root", t.path().to_str().unwrap()]));
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("nothing is installed here"), "{err}");
    assert!(!out.contains("status=tuf"), "{out}");
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
}

#[test]
fn a_missing_repository_is_reported_as_such() {
    let (_tmp, server) = releases_fixture();
    let (code, _, err) = run(helper().args(["releases", "--repo", "nobody/missing", "--api-url", &server.api_url()]));
    assert_eq!(code, 1);
    assert!(err.contains("repository nobody/missing not found"), "{err}");
    assert!(!err.contains("check the version"), "{err}");
}

#[test]
fn max_binary_bytes_caps_what_install_and_download_decompress() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = tmp.path().join("releases");
    std::fs::create_dir(&serve).unwrap();
    publish(&serve, "v2024.01.27.1", "2024-01-27T01:00:00Z", &[]);
    let server = start(&serve);
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    for cmd in ["install", "download"] {
        let (code, _, err) = run(helper()
            .args([cmd, "--version", "v2024.01.27.1", "--max-binary-bytes", "16"])
            .args(["--root", root.to_str().unwrap(), "--api-url", &server.api_url()])
            .args(["--web-url", &server.web_url()]));
        assert_eq!(code, 1, "{cmd}: {err}");
        assert!(err.contains("16-byte") || err.contains("16 bytes"), "{cmd}: {err}");
        assert_eq!(snapshot(&root), Default::default(), "{cmd} left files behind");
    }
    // Without the cap the same install succeeds.
    let (code, _, err) = run(helper()
        .args(["install", "--version", "v2024.01.27.1"])
        .args(["--root", root.to_str().unwrap(), "--api-url", &server.api_url()])
        .args(["--web-url", &server.web_url()]));
    assert_eq!(code, 0, "{err}");
}
