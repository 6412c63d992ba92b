//! `flynnrel package` and `verify`: the assets of docs/release-assets.md#asset-table, reproducibility, signatures,
//! and refusals that change nothing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use flynnrel::ErrorKind;
use flynnrel::ops::package::{PackageOptions, package};
use flynnrel::ops::verify::verify_dir;

/// Options using a small stand-in helper binary (the debug build of flynnrel is large; one
/// test packages the real one).
fn opts(build: &Path, out: &Path, version: &str) -> PackageOptions {
    let mut o = PackageOptions::new(version, "flynn/flynn");
    o.build_dir = build.to_path_buf();
    o.layer_cache = layer_cache(build);
    o.out_dir = out.to_path_buf();
    o.helper = Some(build.join("fake-flynnrel"));
    o.helper_platform = Some(("linux".into(), "amd64".into()));
    o
}

fn sh(dir: &Path, cmd: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn layers() -> Vec<(&'static str, Vec<u8>)> {
    vec![("bbbb2222", noise(2, 300_000)), ("aaaa1111", noise(1, 2_500_000))]
}

#[test]
fn produces_exactly_the_spec_assets_which_the_system_tools_accept() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, "v2024.01.27.0", &layers());
    let out = tmp.path().join("release-artifacts");
    let mut o = opts(&build, &out, "v2024.01.27.0");
    o.helper = Some(flynnrel_bin());
    let report = package(&o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bootstrap-manifest.json.gz",
            "checksums.sha512",
            "flynn-host-linux-amd64.gz",
            "flynn-init-linux-amd64.gz",
            "flynn-linux-amd64.gz",
            "flynnrel-linux-amd64.gz",
            "images.json.gz",
            "install-flynn",
            "layers.tar.gz",
        ]
    );
    assert_eq!(report.assets.len(), names.len());
    assert!(report.skipped.iter().any(|s| s.contains("flynn-darwin-amd64.gz")));
    for a in [
        "flynn-windows-amd64.exe.gz",
        "flynn-linux-386.gz",
        "flynn-windows-386.exe.gz",
    ] {
        assert!(
            report.skipped.iter().any(|s| s.contains(a)),
            "{a}: {:?}",
            report.skipped
        );
    }
    // images.json.gz is Flynn's build/manifests/images.json byte for byte (the install rewrites).
    let (ok, log) = sh(
        &out,
        &format!(
            "gzip -dc images.json.gz | cmp - {}/manifests/images.json",
            build.display()
        ),
    );
    assert!(ok, "{log}");
    assert_eq!(report.layers, ["aaaa1111", "bbbb2222"]);

    let (ok, log) = sh(&out, "sha512sum -c --strict checksums.sha512");
    assert!(ok, "{log}");
    assert_eq!(log.matches(": OK").count(), 8, "{log}");
    let (ok, log) = sh(&out, "for f in *.gz; do gzip -t \"$f\" || exit 1; done");
    assert!(ok, "{log}");
    let (ok, log) = sh(&out, "tar -tzf layers.tar.gz");
    assert!(ok);
    assert_eq!(log, "aaaa1111.squashfs\nbbbb2222.squashfs\n");
    let (ok, log) = sh(&out, "tar -tvzf layers.tar.gz");
    assert!(ok);
    for line in log.lines() {
        assert!(line.starts_with("-rw-r--r-- 0/0"), "{line}");
        assert!(line.contains("1970-01-01"), "{line}");
    }
    // The layers come out byte-identical.
    let x = tmp.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let (ok, _) = sh(&x, &format!("tar -xzf {}/layers.tar.gz", out.display()));
    assert!(ok);
    assert_eq!(std::fs::read(x.join("aaaa1111.squashfs")).unwrap(), layers()[1].1);
    // The binaries decompress to the originals; the helper to this very binary.
    let (ok, log) = sh(&out, "gzip -dc flynn-host-linux-amd64.gz");
    assert!(ok && log.contains("echo v2024.01.27.0"), "{log}");
    let helper = std::fs::read(flynnrel_bin()).unwrap();
    let got = Command::new("gzip")
        .arg("-dc")
        .arg(out.join("flynnrel-linux-amd64.gz"))
        .output()
        .unwrap()
        .stdout;
    assert!(got == helper, "helper round trip");
    // install-flynn has the defaults baked in and is executable.
    let script = std::fs::read_to_string(out.join("install-flynn")).unwrap();
    assert!(script.contains("\nFLYNN_DEFAULT_VERSION='v2024.01.27.0'\n"));
    assert!(script.contains("\nFLYNN_DEFAULT_REPO='flynn/flynn'\n"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(out.join("install-flynn"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::metadata(out.join("images.json.gz"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    // verify agrees, and no staging folder is left beside the output.
    verify_dir(&out, None, None, None).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 3, "{leftovers:?}"); // build, release-artifacts, x
}

#[test]
fn output_is_reproducible_and_a_rerun_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, "v1.2.3", &layers());
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let mut o = opts(&build, &a, "v1.2.3");
    o.threads = 1;
    package(&o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    let mut o = opts(&build, &b, "v1.2.3");
    o.threads = 4;
    package(&o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    assert_eq!(
        snapshot(&a),
        snapshot(&b),
        "byte-identical across runs and thread counts"
    );
    // Touching mtimes of the inputs changes nothing.
    let (ok, _) = sh(&build, "touch -d '2001-01-01' bin/* manifests/* layer-cache/*");
    assert!(ok);
    let before = snapshot(&a);
    let r = package(&opts(&build, &a, "v1.2.3"), &mut flynnrel::remote::fetch::no_progress).unwrap();
    assert!(r.unchanged);
    assert_eq!(snapshot(&a), before);
}

#[test]
fn bad_inputs_are_errors_that_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, "v1.0.0", &layers());
    let out = tmp.path().join("out");

    // An output folder holding another release.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("checksums.sha512"), "x").unwrap();
    std::fs::write(out.join("flynn-host-linux-amd64.gz"), "old").unwrap();
    let before = snapshot(tmp.path());
    let e = package(&opts(&build, &out, "v1.0.0"), &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert!(
        e.message().contains("different release") && e.message().contains(out.to_str().unwrap()),
        "{e}"
    );
    assert_eq!(snapshot(tmp.path()), before);
    std::fs::remove_dir_all(&out).unwrap();

    let before = snapshot(tmp.path());
    let e = package(
        &opts(&build, &out, "not-a-version"),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("not-a-version"), "{e}");
    assert_eq!(snapshot(tmp.path()), before);

    std::fs::rename(build.join("bin/flynn-host"), tmp.path().join("host.bak")).unwrap();
    let before_missing = snapshot(tmp.path());
    let e = package(&opts(&build, &out, "v1.0.0"), &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("bin/flynn-host"), "{e}");
    assert_eq!(snapshot(tmp.path()), before_missing);
    std::fs::rename(tmp.path().join("host.bak"), build.join("bin/flynn-host")).unwrap();

    std::fs::remove_file(build.join("manifests/bootstrap-manifest.json")).unwrap();
    let e = package(&opts(&build, &out, "v1.0.0"), &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert!(e.message().contains("bootstrap-manifest.json"), "{e}");
    std::fs::write(build.join("manifests/bootstrap-manifest.json"), "{}").unwrap();

    // A layer whose bytes do not match images.json (same length): caught while streaming.
    let p = build.join("layer-cache/aaaa1111.squashfs");
    let mut data = std::fs::read(&p).unwrap();
    data[1000] ^= 1;
    std::fs::write(&p, &data).unwrap();
    let before = snapshot(tmp.path());
    let e = package(&opts(&build, &out, "v1.0.0"), &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(
        e.message().contains("aaaa1111.squashfs") && e.message().contains("sha512_256"),
        "{e}"
    );
    assert_eq!(snapshot(tmp.path()), before, "no output, no staging folder left");
    assert!(!out.exists());
}

#[test]
fn cancelling_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, "v1.0.0", &layers());
    let out = tmp.path().join("out");
    let before = snapshot(tmp.path());
    let mut cb = |phase: &str, _: u64, _: u64| !phase.contains("layers");
    let e = package(&opts(&build, &out, "v1.0.0"), &mut cb).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert_eq!(snapshot(tmp.path()), before);
}

#[test]
fn signed_with_a_minisign_tool_key_and_verified_by_the_minisign_tool() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, "v1.0.0", &layers());
    // A key made by the real minisign tool, password-protected.
    let (ok, log) = sh(tmp.path(), "printf 'pw\\npw\\n' | minisign -G -p key.pub -s key.sec");
    assert!(ok, "minisign must be installed (script/setup-tools): {log}");
    let out = tmp.path().join("out");
    let mut o = opts(&build, &out, "v1.0.0");
    o.sign_key = Some(tmp.path().join("key.sec"));
    o.sign_password = Some("pw".into());
    let r = package(&o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    assert!(r.signed);
    let (ok, log) = sh(
        tmp.path(),
        "minisign -V -p key.pub -m out/checksums.sha512 -x out/checksums.sha512.minisig",
    );
    assert!(ok, "{log}");
    assert!(
        log.contains("repo=flynn/flynn") && log.contains("version=v1.0.0"),
        "{log}"
    );
    let pubkey = std::fs::read_to_string(tmp.path().join("key.pub")).unwrap();
    let key = flynnrel::model::signature::TrustedKey::parse(&pubkey).unwrap();
    let script = std::fs::read_to_string(out.join("install-flynn")).unwrap();
    assert!(script.contains(&format!("\nFLYNN_DEFAULT_PUBLIC_KEY='{}'\n", key.to_base64())));
    let rep = verify_dir(&out, Some(&key), Some("flynn/flynn"), Some("v1.0.0")).unwrap();
    assert!(rep.signature_checked);
    let e = verify_dir(&out, Some(&key), Some("flynn/flynn"), Some("v1.0.1")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SignatureInvalid);
    // A wrong password is a clear error, and changes nothing.
    let out2 = tmp.path().join("out2");
    let mut o = opts(&build, &out2, "v1.0.0");
    o.sign_key = Some(tmp.path().join("key.sec"));
    o.sign_password = Some("nope".into());
    assert!(package(&o, &mut flynnrel::remote::fetch::no_progress).is_err());
    assert!(!out2.exists());
}

#[test]
fn verify_finds_extra_missing_and_tampered_files() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, "v1.0.0", &[]);
    let out = tmp.path().join("out");
    let r = package(&opts(&build, &out, "v1.0.0"), &mut flynnrel::remote::fetch::no_progress).unwrap();
    assert!(
        r.layers.is_empty() && !out.join("layers.tar.gz").exists(),
        "no layers, no archive"
    );
    let cli = |args: &[&str]| {
        let o = Command::new(flynnrel_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let d = out.to_str().unwrap();
    assert_eq!(cli(&["verify", d]).0, 0);
    std::fs::write(out.join("extra.txt"), "x").unwrap();
    let (code, err) = cli(&["verify", d]);
    assert_eq!(code, 1);
    assert!(err.contains("extra.txt") && err.contains("not listed"), "{err}");
    std::fs::remove_file(out.join("extra.txt")).unwrap();
    std::fs::write(out.join("images.json.gz"), "tampered").unwrap();
    let (code, err) = cli(&["verify", d]);
    assert_eq!(code, 1);
    assert!(err.contains("images.json.gz") && err.contains("sha512"), "{err}");
    std::fs::remove_file(out.join("images.json.gz")).unwrap();
    let (code, err) = cli(&["verify", d]);
    assert_eq!(code, 1);
    assert!(err.contains("images.json.gz") && err.contains("missing"), "{err}");
    let (code, err) = cli(&[
        "verify",
        d,
        "--public-key",
        "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3",
        "--version",
        "v1.0.0",
    ]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn cli_package_prints_assets_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, "v1.0.0", &layers());
    let out = tmp.path().join("out");
    let o = Command::new(flynnrel_bin())
        .args([
            "--json",
            "package",
            "--version",
            "v1.0.0",
            "--build-dir",
            build.to_str().unwrap(),
            "--layer-cache",
            build.join("layer-cache").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], "v1.0.0");
    assert_eq!(v["assets"].as_array().unwrap().len(), 9);
    assert_eq!(v["signed"], false);
    let o = Command::new(flynnrel_bin())
        .args([
            "package",
            "--version",
            "v1.0.0",
            "--build-dir",
            build.to_str().unwrap(),
            "--layer-cache",
            build.join("layer-cache").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.lines().last().unwrap().contains("unchanged=true"), "{stdout}");
    assert!(stdout.contains("asset=layers.tar.gz "), "{stdout}");
}

/// Flynn's build/bin names (script/build-flynn, builder/export.go): the Windows CLIs have no
/// `.exe` there; their assets do. The 386 builds are published too.
#[test]
fn flynns_cli_builds_are_published_under_their_asset_names() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, "v1.0.0", &layers());
    for name in [
        "flynn-darwin-amd64",
        "flynn-windows-amd64",
        "flynn-linux-386",
        "flynn-windows-386",
    ] {
        std::fs::write(build.join("bin").join(name), format!("{name} binary")).unwrap();
    }
    let out = tmp.path().join("out");
    let r = package(&opts(&build, &out, "v1.0.0"), &mut flynnrel::remote::fetch::no_progress).unwrap();
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    for (asset, name) in [
        ("flynn-darwin-amd64.gz", "flynn-darwin-amd64"),
        ("flynn-windows-amd64.exe.gz", "flynn-windows-amd64"),
        ("flynn-linux-386.gz", "flynn-linux-386"),
        ("flynn-windows-386.exe.gz", "flynn-windows-386"),
    ] {
        let (ok, log) = sh(&out, &format!("gzip -dc {asset}"));
        assert!(ok && log == format!("{name} binary"), "{asset}: {log}");
    }
    assert_eq!(r.assets.len(), 13, "{:?}", r.assets);
    verify_dir(&out, None, None, None).unwrap();
}

/// Layers come from the builder's layer cache: exactly the ids images.json references; a cache
/// holding other builds' layers is fine, a missing or different layer is an error naming the
/// layer, the path and --layer-cache, and changes nothing.
#[test]
fn layers_are_read_from_the_layer_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, "v1.0.0", &layers());
    let cache = layer_cache(&build);
    // Other builds' layers, and a file that is not a layer: neither is packed nor mentioned.
    std::fs::write(cache.join("ffff9999.squashfs"), noise(9, 1000)).unwrap();
    std::fs::write(cache.join("notes.txt"), "x").unwrap();
    let out = tmp.path().join("out");
    let r = package(&opts(&build, &out, "v1.0.0"), &mut flynnrel::remote::fetch::no_progress).unwrap();
    assert_eq!(r.layers, ["aaaa1111", "bbbb2222"]);
    assert!(
        r.skipped
            .iter()
            .all(|s| !s.contains("ffff9999") && !s.contains("notes")),
        "{:?}",
        r.skipped
    );
    let (ok, log) = sh(&out, "tar -tzf layers.tar.gz");
    assert!(ok);
    assert_eq!(log, "aaaa1111.squashfs\nbbbb2222.squashfs\n");
    std::fs::remove_dir_all(&out).unwrap();

    // The default is Flynn's builder cache, which this build's layers are not in.
    let mut o = opts(&build, &out, "v1.0.0");
    o.layer_cache = flynnrel::model::release::DEFAULT_LAYER_CACHE.into();
    assert_eq!(PackageOptions::new("v1.0.0", "a/b").layer_cache, o.layer_cache);

    // A missing layer.
    let moved = tmp.path().join("moved.squashfs");
    std::fs::rename(cache.join("bbbb2222.squashfs"), &moved).unwrap();
    let before = snapshot(tmp.path());
    let e = package(&opts(&build, &out, "v1.0.0"), &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let path = cache.join("bbbb2222.squashfs");
    for want in ["bbbb2222", path.to_str().unwrap(), "layer cache", "images.json"] {
        assert!(e.message().contains(want), "{want}: {e}");
    }
    assert_eq!(
        e.hint(),
        Some(&flynnrel::Hint::SetOptions {
            options: vec![flynnrel::HintOption::LayerCache]
        })
    );
    assert_eq!(snapshot(tmp.path()), before);

    // A layer of another length.
    std::fs::write(&path, b"short").unwrap();
    let before = snapshot(tmp.path());
    let e = package(&opts(&build, &out, "v1.0.0"), &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    assert!(
        e.message().contains("bbbb2222") && e.message().contains("5 bytes"),
        "{e}"
    );
    assert_eq!(snapshot(tmp.path()), before);

    // A symlink in place of the layer is not followed.
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&moved, &path).unwrap();
    let before = snapshot(tmp.path());
    let e = package(&opts(&build, &out, "v1.0.0"), &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    assert!(e.message().contains("not a regular file"), "{e}");
    assert_eq!(snapshot(tmp.path()), before);
    assert!(!out.exists());

    // The CLI names the option in its hint.
    let o = Command::new(flynnrel_bin())
        .args(["package", "--version", "v1.0.0", "--build-dir"])
        .arg(&build)
        .arg("--layer-cache")
        .arg(&cache)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pass --layer-cache"),
        "the hint, worded by the CLI: {stderr}"
    );
    assert!(!out.exists());
}
