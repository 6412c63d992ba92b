//! The contract between the core and its front-ends: one golden JSON document of each request,
//! report and outcome, under `testdata/contract/`. This test writes nothing unless asked
//! (`CONTRACT_UPDATE=1`); it fails when the Rust types serialize differently from the committed
//! documents, and when a request document does not decode back to the same value (unknown fields
//! refused). The Go tests (go/flynnrel/contract_test.go) decode the same files into the Go types
//! with unknown fields refused and encode them back, so a field renamed on either side fails.

use std::path::{Path, PathBuf};

use flynnrel::host::receipt::InstallSource;
use flynnrel::host::staging::{FileKind, WrittenFile};
use flynnrel::host::switch::Recovery;
use flynnrel::ops::install::InstallReport;
use flynnrel::ops::request::{ClientSpec, InstallRequest, UpdateRequest};
use flynnrel::ops::update::UpdateOutcome;
use serde::Serialize;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/contract")
}

/// Compares `value`'s pretty JSON with the golden file `name` (or rewrites it).
fn golden<T: Serialize>(name: &str, value: &T) -> String {
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    let path = dir().join(name);
    if std::env::var_os("CONTRACT_UPDATE").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run CONTRACT_UPDATE=1 cargo test --test contract",
            path.display()
        )
    });
    assert_eq!(
        text, want,
        "{name} differs from what the Rust types produce; if the change is intended, run \
         CONTRACT_UPDATE=1 cargo test --test contract and update the Go types to match"
    );
    text
}

fn files() -> Vec<WrittenFile> {
    let f = |p: &str, sha: &str, kind| WrittenFile {
        path: p.into(),
        sha512: sha.into(),
        kind,
    };
    vec![
        f(
            "/usr/local/bin/flynn-host.v20240127.0",
            &"a".repeat(128),
            FileKind::Binary,
        ),
        f("/usr/local/bin/flynn-host", "", FileKind::Link),
        f(
            "/etc/flynn/images.v20240127.0.json",
            &"b".repeat(128),
            FileKind::Manifest,
        ),
        f(
            "/var/lib/flynn/layer-cache/3f1c.squashfs",
            &"c".repeat(128),
            FileKind::Layer,
        ),
    ]
}

#[test]
fn requests_have_one_shape_and_decode_back() {
    // Every field set, so the golden documents name them all.
    let client = ClientSpec {
        repository: Some("flynn/flynn".into()),
        api_url: Some("https://ghe.example/api/v3".into()),
        web_url: Some("https://ghe.example".into()),
        token: None,
        token_from_env: Some(false),
        timeout_secs: Some(60),
        connect_timeout_secs: Some(15),
        retries: Some(4),
        retry_delay_ms: Some(500),
    };
    let install = InstallRequest {
        root: Some("/tmp/root".into()),
        bin_dir: Some("/usr/local/bin".into()),
        config_dir: Some("/etc/flynn".into()),
        layer_dir: Some("/var/lib/flynn/layer-cache".into()),
        version: Some("v20240127.0".into()),
        channel: None,
        public_key: Some("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3".into()),
        no_receipt: true,
        report_sha512: Some(true),
        max_binary_bytes: Some(512 << 20),
        parts: Some(vec!["config".into(), "layers".into()]),
        registry_mirror: Some("http://127.0.0.1:5001".into()),
    };
    let update = UpdateRequest {
        root: Some("/tmp/root".into()),
        bin_dir: Some("/usr/local/bin".into()),
        config_dir: Some("/etc/flynn".into()),
        layer_dir: Some("/var/lib/flynn/layer-cache".into()),
        check: true,
        force: true,
        version: Some("v20240128.0".into()),
        source: Some("github".into()),
        allow_downgrade: true,
        public_key: Some("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3".into()),
        repository: Some("acme/flynn".into()),
        api_url: Some("https://api.github.com".into()),
        tuf_repository: Some("https://dl.flynn.io/tuf".into()),
        smoke_timeout_secs: Some(45),
        report_sha512: Some(false),
        registry_mirror: Some("http://127.0.0.1:5001".into()),
    };
    let t = golden("client.json", &client);
    assert_eq!(serde_json::from_str::<ClientSpec>(&t).unwrap(), client);
    let t = golden("install_request.json", &install);
    assert_eq!(serde_json::from_str::<InstallRequest>(&t).unwrap(), install);
    let t = golden("update_request.json", &update);
    assert_eq!(serde_json::from_str::<UpdateRequest>(&t).unwrap(), update);

    // An unknown field is refused, naming it; an empty document means every default.
    let e = serde_json::from_str::<InstallRequest>(r#"{"reciept": false}"#).unwrap_err();
    assert!(e.to_string().contains("reciept"), "{e}");
    assert_eq!(
        serde_json::from_str::<UpdateRequest>("{}").unwrap(),
        UpdateRequest::default()
    );
}

#[test]
fn reports_and_outcomes_have_one_shape() {
    let report = InstallReport {
        repository: "flynn/flynn".into(),
        version: "v20240127.0".into(),
        already_installed: false,
        files: files(),
        skipped_layers: vec!["9a7e".into()],
        signature_verified: true,
        receipt: Some("/etc/flynn/install-source.json".into()),
    };
    golden("install_report.json", &report);
    golden(
        "update_outcome_updated.json",
        &UpdateOutcome::Updated {
            repository: "flynn/flynn".into(),
            from: "v20240127.0".into(),
            to: "v20240128.0".into(),
            files: files(),
            skipped_layers: vec!["9a7e".into()],
            removed: vec!["/usr/local/bin/flynn-host.v20240126.0".into()],
            signature_verified: true,
            recovered: Recovery::RolledBack("v20240127.1".into()),
        },
    );
    golden(
        "update_outcome_available.json",
        &UpdateOutcome::Available {
            repository: "flynn/flynn".into(),
            current: "v20240127.0".into(),
            target: "v20240128.0".into(),
            pointer_expires_at: Some("2024-02-10T12:00:00Z".into()),
        },
    );
    golden(
        "update_outcome_tuf.json",
        &UpdateOutcome::Tuf {
            repository: "https://dl.flynn.io/tuf".into(),
            message: "this host installs from TUF".into(),
        },
    );
    let mut receipt = InstallSource::new_github(
        "flynn/flynn",
        "v20240127.0",
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_706_349_600),
    );
    receipt.channel = Some("stable".into());
    receipt.api_url = Some("https://api.github.com".into());
    receipt.public_key = Some("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3".into());
    receipt
        .extra
        .insert("previous_version".into(), serde_json::json!("v20240126.0"));
    receipt.raise_channel_sequence("flynn/flynn", "stable", 3);
    golden("receipt.json", &receipt);
}
