//! The `flynnrel` binary: output formats, exit codes and error messages.

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
    let (code, out, err) = run(helper().args(["--repo", "not a repo", "releases", "--api-url", &server.api_url()]));
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("invalid repository") && err.contains("OWNER/NAME"),
        "{err}"
    );

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
