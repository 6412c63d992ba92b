//! Layers from outside the release (docs/layers.md): Option C against external storage played
//! by the release server's interceptor, Option B against a real registry (Debian's
//! `docker-registry`, the CNCF distribution registry, started here on 127.0.0.1), and the token
//! flow through the registry harness (script/lib/registry). Every refusal leaves the host root
//! byte-for-byte as it was.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use flynnrel::ErrorKind;
use flynnrel::host::layout::HostLayout;
use flynnrel::ops::install::{InstallOptions, Target, install};
use flynnrel::serve::{Listener, RequestInfo, Server};

const V1: &str = "v2024.01.27.0";
const V2: &str = "v2024.01.27.1";
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

fn layers_v1() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("aaaa1111", noise(1, 700_000)),
        ("bbbb2222", noise(2, 150_000)),
        ("cccc3333", noise(3, 90_000)),
        ("dddd4444", noise(4, 60_000)),
        ("eeee5555", noise(5, 30_000)),
    ]
}

fn layers_v2() -> Vec<(&'static str, Vec<u8>)> {
    vec![("aaaa1111", noise(1, 700_000)), ("ffff6666", noise(6, 120_000))]
}

fn opts(root: &Path, version: &str) -> InstallOptions {
    InstallOptions::new(
        HostLayout::new(Some(root), None, None, None),
        Target::Version(version.into()),
    )
}

fn layer_path(root: &Path, id: &str) -> PathBuf {
    root.join(format!("var/lib/flynn/layer-cache/{id}.squashfs"))
}

/// Asserts the install into `root` laid out exactly `layers`, and that the installed images.json
/// points at the host's layer dir (as in Option A).
fn assert_installed(root: &Path, version: &str, layers: &[(&str, Vec<u8>)]) {
    for (id, data) in layers {
        assert_eq!(&std::fs::read(layer_path(root, id)).unwrap(), data, "layer {id}");
    }
    let images = std::fs::read_to_string(root.join(format!("etc/flynn/images.{version}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&images).unwrap();
    // The layer dir as the host sees it (the root is where it is mounted during the install).
    assert_eq!(
        v["host"]["layer_url_template"],
        "file:///var/lib/flynn/layer-cache/{id}.squashfs"
    );
    for (p, _) in snapshot(root) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.') && !name.ends_with(".part"), "leftover {p:?}");
    }
}

/// Runs a failing install of `version` and asserts `root` did not change at all.
fn fails_unchanged(server: &Server, root: &Path, o: InstallOptions) -> flynnrel::Error {
    let before = snapshot(root);
    let err = install(&client(server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(snapshot(root), before, "the root changed after: {err}");
    err
}

// ---------------------------------------------------------------------------------------------
// Option C: external storage.

/// How the external storage answers a layer request.
#[derive(Clone, PartialEq)]
enum Cdn {
    /// The file's bytes.
    Serve,
    /// 404 for every layer.
    NotFound,
    /// A redirect to the same path on the storage host (another host name: `localhost`).
    RedirectToStorage,
    /// A redirect to plain http on a host that is not loopback.
    RedirectToPlainHttp,
    /// The first response of each layer cut short (no Accept-Ranges), the retry whole.
    CutOnce,
}

struct CdnEnv {
    _tmp: tempfile::TempDir,
    server: Server,
    root: PathBuf,
    /// What the storage holds: `<id>.squashfs`, served from `/cdn/<id>.squashfs` of any listener.
    cdn: PathBuf,
    mode: Arc<Mutex<Cdn>>,
    /// Requests for `/cdn/…`: (listener, url, had an Authorization header).
    seen: Arc<Mutex<Vec<(Listener, String, bool)>>>,
}

fn cdn_env() -> CdnEnv {
    let tmp = tempfile::tempdir().unwrap();
    let serve_root = tmp.path().join("releases");
    let cdn = tmp.path().join("cdn");
    std::fs::create_dir_all(&serve_root).unwrap();
    std::fs::create_dir_all(&cdn).unwrap();
    let mode = Arc::new(Mutex::new(Cdn::Serve));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let storage_base: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let cut: Arc<Mutex<std::collections::BTreeSet<String>>> = Arc::default();
    let (m, s, c, sb) = (mode.clone(), seen.clone(), cdn.clone(), storage_base.clone());
    let server = start_with(&serve_root, move |req: &RequestInfo| {
        let name = req.url.strip_prefix("/cdn/")?.to_string();
        s.lock()
            .unwrap()
            .push((req.listener, req.url.clone(), req.header("authorization").is_some()));
        let mode = m.lock().unwrap().clone();
        match mode {
            Cdn::NotFound => return raw("404 Not Found", &[("Content-Length", "0")], b""),
            Cdn::RedirectToStorage if req.listener != Listener::Storage => {
                let to = format!("{}/cdn/{name}", sb.lock().unwrap());
                return raw("302 Found", &[("Location", &to), ("Content-Length", "0")], b"");
            }
            Cdn::RedirectToPlainHttp => {
                let to = format!("http://cdn.example.com/cdn/{name}");
                return raw("302 Found", &[("Location", &to), ("Content-Length", "0")], b"");
            }
            _ => {}
        }
        let Ok(data) = std::fs::read(c.join(&name)) else {
            return raw("404 Not Found", &[("Content-Length", "0")], b"");
        };
        let len = data.len().to_string();
        if mode == Cdn::CutOnce && cut.lock().unwrap().insert(name) {
            return raw("200 OK", &[("Content-Length", &len)], &data[..data.len() / 2]);
        }
        raw("200 OK", &[("Content-Length", &len)], &data)
    });
    *storage_base.lock().unwrap() = server.storage_url();
    let template = format!("{}/cdn/{{id}}.squashfs", server.web_url());
    for (v, layers) in [(V1, layers_v1()), (V2, layers_v2())] {
        let out = publish_with(&serve_root, v, "2024-01-27T10:00:00Z", &layers, |o| {
            o.layers_url_template = Some(template.clone());
        });
        assert!(!out.join("layers.tar.gz").exists(), "no layers.tar.gz in Option C");
        // The operator uploads the layers from the layer cache.
        for (id, data) in &layers {
            std::fs::write(cdn.join(format!("{id}.squashfs")), data).unwrap();
        }
    }
    let root = tmp.path().join("root");
    CdnEnv {
        _tmp: tmp,
        server,
        root,
        cdn,
        mode,
        seen,
    }
}

#[test]
fn option_c_installs_from_external_storage_and_skips_layers_present() {
    let e = cdn_env();
    let r = install(
        &client(&e.server),
        &opts(&e.root, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert_installed(&e.root, V1, &layers_v1());
    assert!(r.skipped_layers.is_empty());
    let fetched = e.seen.lock().unwrap().len();
    assert_eq!(fetched, layers_v1().len(), "one request per layer");
    assert!(
        e.seen.lock().unwrap().iter().all(|(_, _, auth)| !auth),
        "no credentials to storage"
    );
    // V2 shares aaaa1111: only ffff6666 is fetched.
    e.seen.lock().unwrap().clear();
    let r = install(
        &client(&e.server),
        &opts(&e.root, V2),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert_eq!(r.skipped_layers, vec!["aaaa1111".to_string()]);
    let urls: Vec<String> = e.seen.lock().unwrap().iter().map(|(_, u, _)| u.clone()).collect();
    assert_eq!(urls, vec!["/cdn/ffff6666.squashfs".to_string()]);
    assert_installed(&e.root, V2, &layers_v2());
}

#[test]
fn option_c_follows_a_redirect_to_another_host_and_resumes_a_cut_transfer() {
    let e = cdn_env();
    *e.mode.lock().unwrap() = Cdn::RedirectToStorage;
    install(
        &client(&e.server),
        &opts(&e.root, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert_installed(&e.root, V1, &layers_v1());
    assert!(
        e.seen.lock().unwrap().iter().any(|(l, _, _)| *l == Listener::Storage),
        "the bytes came from the storage host"
    );
    let root2 = e.root.with_file_name("root2");
    *e.mode.lock().unwrap() = Cdn::CutOnce;
    install(
        &client(&e.server),
        &opts(&root2, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert_installed(&root2, V1, &layers_v1());
}

#[test]
fn option_c_refusals_leave_the_host_unchanged() {
    let e = cdn_env();
    // Over an existing install of V1, each bad V2 (its new layer ffff6666) is refused.
    install(
        &client(&e.server),
        &opts(&e.root, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    let good = std::fs::read(e.cdn.join("ffff6666.squashfs")).unwrap();
    let put = |data: &[u8]| std::fs::write(e.cdn.join("ffff6666.squashfs"), data).unwrap();

    // Tampered: same length, one byte flipped.
    let mut bad = good.clone();
    bad[1000] ^= 1;
    put(&bad);
    let err = fails_unchanged(&e.server, &e.root, opts(&e.root, V2));
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
    assert!(
        err.message().contains("ffff6666") && err.message().contains("images.json"),
        "{err}"
    );

    // Truncated: the storage holds half the file.
    put(&good[..good.len() / 2]);
    let err = fails_unchanged(&e.server, &e.root, opts(&e.root, V2));
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
    assert!(err.message().contains(&format!("({} bytes)", good.len() / 2)), "{err}");

    // Wrong length: longer than images.json says.
    let mut longer = good.clone();
    longer.extend_from_slice(b"extra");
    put(&longer);
    let err = fails_unchanged(&e.server, &e.root, opts(&e.root, V2));
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(err.message().contains("images.json says"), "{err}");
    put(&good);

    // 404.
    *e.mode.lock().unwrap() = Cdn::NotFound;
    let err = fails_unchanged(&e.server, &e.root, opts(&e.root, V2));
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("/cdn/ffff6666.squashfs"), "{err}");

    // A redirect to plain http on another (non-loopback) host.
    *e.mode.lock().unwrap() = Cdn::RedirectToPlainHttp;
    let err = fails_unchanged(&e.server, &e.root, opts(&e.root, V2));
    assert_eq!(err.kind(), ErrorKind::InsecureUrl, "{err}");
    assert!(err.message().contains("cdn.example.com"), "{err}");

    // And a fresh root stays empty.
    *e.mode.lock().unwrap() = Cdn::NotFound;
    let fresh = e.root.with_file_name("fresh");
    fails_unchanged(&e.server, &fresh, opts(&fresh, V1));
    assert!(!fresh.exists() || std::fs::read_dir(&fresh).unwrap().count() == 0);
}

#[test]
fn package_refuses_bad_layer_options_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, V1, &layers_v1());
    let out = tmp.path().join("out");
    for (registry, template, kind, needle) in [
        (
            None,
            Some("https://cdn.example/flynn/layer.squashfs"),
            ErrorKind::InvalidArgument,
            "{id}",
        ),
        (
            None,
            Some("http://cdn.example/{id}"),
            ErrorKind::InsecureUrl,
            "plain http",
        ),
        (
            None,
            Some("file:///srv/{id}"),
            ErrorKind::InsecureUrl,
            "--layers-url-template",
        ),
        (Some("ghcr.io/flynn/layers"), None, ErrorKind::InvalidArgument, "oci://"),
        (
            Some("oci://ghcr.io/Flynn/layers"),
            None,
            ErrorKind::InvalidArgument,
            "--layers",
        ),
        (
            Some("oci://example.com/flynn/layers"),
            Some("https://cdn.example/{id}"),
            ErrorKind::InvalidArgument,
            "not both",
        ),
    ] {
        let mut o = flynnrel::ops::package::PackageOptions::new(V1, REPO);
        o.build_dir = build.clone();
        o.layer_cache = layer_cache(&build);
        o.out_dir = out.clone();
        o.helper = Some(build.join("fake-flynnrel"));
        o.layers_registry = registry.map(str::to_string);
        o.layers_url_template = template.map(str::to_string);
        let e = flynnrel::ops::package::package(&o, &mut flynnrel::remote::fetch::no_progress).unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.message().contains(needle), "{needle}: {e}");
        assert!(!out.exists());
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "only build/ is there"
        );
    }
    // A layer in the cache that is not the build's (same length, other bytes) is refused too.
    let p = layer_cache(&build).join("bbbb2222.squashfs");
    let mut data = std::fs::read(&p).unwrap();
    data[7] ^= 1;
    std::fs::write(&p, &data).unwrap();
    let mut o = flynnrel::ops::package::PackageOptions::new(V1, REPO);
    o.build_dir = build.clone();
    o.layer_cache = layer_cache(&build);
    o.out_dir = out.clone();
    o.helper = Some(build.join("fake-flynnrel"));
    o.layers_url_template = Some("https://cdn.example/{id}.squashfs".into());
    let e = flynnrel::ops::package::package(&o, &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    assert!(
        e.message().contains("bbbb2222") && e.message().contains("sha512_256"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn package_refuses_layers_outside_flynn_artifacts_and_its_advice_works() {
    // images.json as bare image manifests (no artifact objects): nowhere to write the template.
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, V1, &layers_v1());
    let images_path = build.join("manifests/images.json");
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&images_path).unwrap()).unwrap();
    let bare: serde_json::Map<String, serde_json::Value> = doc
        .into_iter()
        .map(|(k, v)| {
            let m = v.get("manifest").cloned().unwrap_or(v);
            (k, m)
        })
        .collect();
    std::fs::write(&images_path, serde_json::to_vec_pretty(&bare).unwrap()).unwrap();
    let out = tmp.path().join("out");
    let package = |template: Option<&str>| {
        let mut o = flynnrel::ops::package::PackageOptions::new(V1, REPO);
        o.build_dir = build.clone();
        o.layer_cache = layer_cache(&build);
        o.out_dir = out.clone();
        o.helper = Some(build.join("fake-flynnrel"));
        o.layers_url_template = template.map(str::to_string);
        flynnrel::ops::package::package(&o, &mut flynnrel::remote::fetch::no_progress)
    };
    let e = package(Some("https://cdn.example/flynn/{id}.squashfs")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(
        e.message().contains("no Flynn artifact") && e.message().contains(&images_path.display().to_string()),
        "{e}"
    );
    assert!(!out.exists(), "nothing written");
    // The advice: without the option, the layers go into layers.tar.gz.
    package(None).unwrap();
    assert!(out.join("layers.tar.gz").is_file());
}

// ---------------------------------------------------------------------------------------------
// Option B: a real registry.

/// Whether the registry binary is here; absent, the registry tests are skipped with a printed
/// reason, except under script/test (`FLYNNREL_REQUIRE_REGISTRY=1`) or in CI (`CI` set), where
/// that is a failure: script/setup-tools installs it.
fn have(bin: &str, what: &str) -> bool {
    if Path::new(bin).is_file() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none() && std::env::var_os("FLYNNREL_REQUIRE_REGISTRY").is_none(),
        "{bin} is missing: script/setup-tools installs the Debian package {what}"
    );
    eprintln!("SKIPPED: {bin} is not installed (Debian package {what}); the registry tests did not run");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` on 127.0.0.1 with its storage in a temp dir; a pull-through cache of
/// `proxy_of` when given. Killed on drop.
struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start(proxy_of: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let proxy = proxy_of
                .map(|u| format!("proxy:\n  remoteurl: http://{u}\n"))
                .unwrap_or_default();
            let cfg = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{proxy}",
                dir.path().join("storage").display()
            );
            std::fs::write(dir.path().join("config.yml"), cfg).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                    use std::io::Write;
                    let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                    let mut b = String::new();
                    let _ = s.read_to_string(&mut b);
                    if b.starts_with("HTTP/1.0 200") || b.starts_with("HTTP/1.1 200") {
                        return Registry { child, addr, dir };
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start: {last}");
    }

    /// The file holding blob `sha256:<hex>` in the filesystem driver's layout.
    fn blob_file(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct OciEnv {
    _tmp: tempfile::TempDir,
    server: Server,
    serve_root: PathBuf,
    root: PathBuf,
    registry: Registry,
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn oci_env() -> Option<OciEnv> {
    if !have(REGISTRY_BIN, "docker-registry") {
        return None;
    }
    let registry = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let serve_root = tmp.path().join("releases");
    std::fs::create_dir_all(&serve_root).unwrap();
    let reference = format!("oci://{}/flynn/flynn-layers", registry.addr);
    for (v, layers) in [(V1, layers_v1()), (V2, layers_v2())] {
        let out = publish_with(&serve_root, v, "2024-01-27T10:00:00Z", &layers, |o| {
            o.layers_registry = Some(reference.clone());
        });
        assert!(!out.join("layers.tar.gz").exists(), "no layers.tar.gz in Option B");
    }
    let server = start(&serve_root);
    let root = tmp.path().join("root");
    Some(OciEnv {
        _tmp: tmp,
        server,
        serve_root,
        root,
        registry,
    })
}

/// The release's published images.json (gunzipped) and its pinned manifest digest.
fn published_template(e: &OciEnv, v: &str) -> (String, String) {
    let gz = std::fs::read(e.serve_root.join(REPO).join(v).join("images.json.gz")).unwrap();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let t = doc["host"]["layer_url_template"].as_str().unwrap().to_string();
    let digest = t
        .split("@sha256:")
        .nth(1)
        .unwrap()
        .trim_end_matches("/{id}")
        .to_string();
    (t, digest)
}

#[test]
fn option_b_pushes_installs_and_skopeo_reads_it_back() {
    let Some(e) = oci_env() else { return };
    let (template, digest) = published_template(&e, V1);
    assert_eq!(
        template,
        format!("oci://{}/flynn/flynn-layers@sha256:{digest}/{{id}}", e.registry.addr)
    );
    // Every layer is a blob in the registry, by its sha256.
    for (_, data) in layers_v1() {
        assert_eq!(std::fs::read(e.registry.blob_file(&sha256_hex(&data))).unwrap(), data);
    }
    install(
        &client(&e.server),
        &opts(&e.root, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert_installed(&e.root, V1, &layers_v1());
    let r = install(
        &client(&e.server),
        &opts(&e.root, V2),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert_eq!(r.skipped_layers, vec!["aaaa1111".to_string()]);
    assert_installed(&e.root, V2, &layers_v2());

    // Packaging again pushes the same bytes: the same manifest digest, nothing uploaded.
    let again = tempfile::tempdir().unwrap();
    let out = publish_with(again.path(), V1, "2024-01-27T10:00:00Z", &layers_v1(), |o| {
        o.layers_registry = Some(format!("oci://{}/flynn/flynn-layers", e.registry.addr));
    });
    assert_eq!(
        std::fs::read(out.join("images.json.gz")).unwrap(),
        std::fs::read(e.serve_root.join(REPO).join(V1).join("images.json.gz")).unwrap()
    );

    // A client this project did not write reads what was pushed.
    const SKOPEO: &str = "/usr/bin/skopeo";
    if !have(SKOPEO, "skopeo") {
        return;
    }
    let image = format!("docker://{}/flynn/flynn-layers:{V1}", e.registry.addr);
    let raw = Command::new(SKOPEO)
        .args(["inspect", "--raw", "--tls-verify=false", &image])
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    assert_eq!(sha256_hex(&raw.stdout), digest, "the tag names the pinned manifest");
    let dest = again.path().join("skopeo-copy");
    let copy = Command::new(SKOPEO)
        .args(["copy", "--src-tls-verify=false", &image])
        .arg(format!("dir:{}", dest.display()))
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
    for (_, data) in layers_v1() {
        assert_eq!(std::fs::read(dest.join(sha256_hex(&data))).unwrap(), data);
    }
}

#[test]
fn option_b_refusals_leave_the_host_unchanged() {
    let Some(e) = oci_env() else { return };
    install(
        &client(&e.server),
        &opts(&e.root, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    let new_layer = noise(6, 120_000);
    let blob = e.registry.blob_file(&sha256_hex(&new_layer));
    let put = |data: &[u8]| std::fs::write(&blob, data).unwrap();

    // A tampered blob in the registry's storage: same length, one byte flipped.
    let mut bad = new_layer.clone();
    bad[500] ^= 1;
    put(&bad);
    let err = fails_unchanged(&e.server, &e.root, opts(&e.root, V2));
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
    assert!(err.message().contains("ffff6666"), "{err}");

    // Truncated.
    put(&new_layer[..1000]);
    let err = fails_unchanged(&e.server, &e.root, opts(&e.root, V2));
    assert!(
        matches!(err.kind(), ErrorKind::ChecksumMismatch | ErrorKind::Network),
        "{err}"
    );
    assert!(err.message().contains("ffff6666"), "{err}");
    put(&new_layer);

    // The manifest the release pins, changed in the registry's storage.
    let (_, digest) = published_template(&e, V2);
    let manifest_file = e.registry.blob_file(&digest);
    let manifest = std::fs::read(&manifest_file).unwrap();
    let changed = String::from_utf8(manifest.clone()).unwrap().replacen('{', "{ ", 1);
    std::fs::write(&manifest_file, changed).unwrap();
    let err = fails_unchanged(&e.server, &e.root, opts(&e.root, V2));
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
    assert!(
        err.message().contains(&digest) && err.message().contains("pins"),
        "{err}"
    );
    std::fs::write(&manifest_file, &manifest).unwrap();

    // A blob missing from the registry.
    std::fs::remove_dir_all(blob.parent().unwrap()).unwrap();
    let err = fails_unchanged(&e.server, &e.root, opts(&e.root, V2));
    assert!(
        matches!(
            err.kind(),
            ErrorKind::NotFound | ErrorKind::Network | ErrorKind::HttpStatus
        ),
        "{err}"
    );
    assert!(err.message().contains("sha256:"), "{err}");

    // The registry gone.
    let dead = fails_unchanged(&e.server, &e.root, {
        let mut o = opts(&e.root, V2);
        o.registry_mirror = Some(format!("http://127.0.0.1:{}", free_port()));
        o
    });
    assert_eq!(dead.kind(), ErrorKind::Network, "{dead}");
}

#[test]
fn option_b_through_a_pull_through_cache() {
    let Some(e) = oci_env() else { return };
    let cache = Registry::start(Some(&e.registry.addr));
    let mut o = opts(&e.root, V1);
    o.registry_mirror = Some(format!("http://{}", cache.addr));
    install(&client(&e.server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    assert_installed(&e.root, V1, &layers_v1());
    // The cache now holds the layers: they came through it.
    for (_, data) in layers_v1() {
        let f = cache.blob_file(&sha256_hex(&data));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f.is_file() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(std::fs::read(&f).unwrap(), data);
    }
    // A cache serving other bytes is refused like any source: content is checked by digest.
    let new_layer = noise(6, 120_000);
    let root2 = e.root.with_file_name("root2");
    let mut o2 = opts(&root2, V2);
    o2.registry_mirror = Some(format!("http://{}", cache.addr));
    install(&client(&e.server), &o2, &mut flynnrel::remote::fetch::no_progress).unwrap();
    let f = cache.blob_file(&sha256_hex(&new_layer));
    let mut bad = new_layer.clone();
    bad[0] ^= 1;
    std::fs::write(&f, &bad).unwrap();
    let root3 = e.root.with_file_name("root3");
    let mut o3 = opts(&root3, V2);
    o3.registry_mirror = Some(format!("http://{}", cache.addr));
    let err = fails_unchanged(&e.server, &root3, o3);
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
}

// ---------------------------------------------------------------------------------------------
// Token auth through the registry harness (ghcr.io's flow), by the CLI.

/// The registry harness of this repository.
fn harness() -> PathBuf {
    std::env::var_os("FLYNNREL_REGISTRY_HARNESS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("script/lib/registry"))
}

struct Harness(PathBuf);

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = Command::new(harness()).arg("stop").arg(&self.0).status();
    }
}

fn env_file(path: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches(['\'', '"']).to_string()))
        .collect()
}

#[test]
fn option_b_token_auth_public_and_private_by_the_cli() {
    if !have(REGISTRY_BIN, "docker-registry") {
        return;
    }
    let h = harness();
    assert!(
        h.is_file(),
        "{} is missing: the registry harness (script/lib/registry) runs the token flow",
        h.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let hdir = tmp.path().join("registry");
    std::fs::create_dir_all(&hdir).unwrap();
    let _stop = Harness(hdir.clone());
    let st = Command::new(&h).arg("start").arg(&hdir).status().unwrap();
    assert!(st.success(), "the registry harness did not start");
    let env = env_file(&hdir.join("registry.env"));
    let addr = &env["REGISTRY_ADDR"];
    let bin = flynnrel_bin();
    let serve_root = tmp.path().join("releases");
    std::fs::create_dir_all(&serve_root).unwrap();
    let server = start(&serve_root);
    let layers = layers_v2();
    for (v, repo) in [(V1, "flynn/flynn-layers"), (V2, "private/flynn-layers")] {
        let build = tmp.path().join(format!("build-{v}"));
        make_build_tree(&build, v, &layers);
        let run = |user: Option<&str>| {
            let mut c = Command::new(&bin);
            c.args(["package", "--version", v, "--repo", REPO, "--threads", "2"])
                .arg("--build-dir")
                .arg(&build)
                .arg("--layer-cache")
                .arg(layer_cache(&build))
                .arg("--out")
                .arg(serve_root.join(REPO).join(v))
                .arg("--helper")
                .arg(build.join("fake-flynnrel"))
                .args(["--helper-platform", "linux/amd64"])
                .arg("--layers")
                .arg(format!("oci://{addr}/{repo}"))
                .env_remove("FLYNN_REGISTRY_USER")
                .env_remove("FLYNN_REGISTRY_TOKEN");
            if let Some(u) = user {
                c.env("FLYNN_REGISTRY_USER", u)
                    .env("FLYNN_REGISTRY_TOKEN", &env["REGISTRY_PASSWORD"]);
            }
            c.output().unwrap()
        };
        // Anonymous tokens are pull-only: the push is refused, and nothing is written.
        let anon = run(None);
        assert!(!anon.status.success());
        let msg = String::from_utf8_lossy(&anon.stderr);
        assert!(msg.contains("FLYNN_REGISTRY_TOKEN"), "{msg}");
        assert!(!serve_root.join(REPO).join(v).exists());
        let ok = run(Some(&env["REGISTRY_USER"]));
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    }
    let install_cli = |v: &str, root: &Path, creds: bool| {
        let mut c = Command::new(&bin);
        c.args(["install", "--version", v, "--repo", REPO, "--api-url"])
            .arg(server.api_url())
            .arg("--web-url")
            .arg(server.web_url())
            .arg("--root")
            .arg(root)
            .env_remove("FLYNN_REGISTRY_USER")
            .env_remove("FLYNN_REGISTRY_TOKEN")
            .env_remove("FLYNN_REGISTRY_MIRROR");
        if creds {
            c.env("FLYNN_REGISTRY_USER", &env["REGISTRY_USER"])
                .env("FLYNN_REGISTRY_TOKEN", &env["REGISTRY_PASSWORD"]);
        }
        c.output().unwrap()
    };
    // A public repository: anonymous pull through the 401 → token → retry flow.
    let root = tmp.path().join("root");
    let out = install_cli(V1, &root, false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_installed(&root, V1, &layers);
    // A private one: refused without credentials (host unchanged), installed with them.
    let root2 = tmp.path().join("root2");
    std::fs::create_dir_all(&root2).unwrap();
    let before = snapshot(&root2);
    let out = install_cli(V2, &root2, false);
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("FLYNN_REGISTRY_TOKEN"), "{msg}");
    assert_eq!(snapshot(&root2), before);
    let out = install_cli(V2, &root2, true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_installed(&root2, V2, &layers);
}

// ---------------------------------------------------------------------------------------------
// The registry protocol against a registry played in test code: the bearer-token flow, and a
// blob redirect to a storage host that must not receive the token.

struct FakeRegistry {
    _tmp: tempfile::TempDir,
    server: Server,
    root: PathBuf,
    /// (listener, method, url, authorization) of every registry, token and storage request.
    seen: Seen,
    /// (url, Range header) of every blob storage request.
    blob_ranges: BlobRanges,
}

/// Requests seen by the fake registry: (listener, method, url, authorization).
type Seen = Arc<Mutex<Vec<(Listener, String, String, Option<String>)>>>;
/// Blob storage requests seen by the fake registry: (url, Range header).
type BlobRanges = Arc<Mutex<Vec<(String, Option<String>)>>>;

const FAKE_TOKEN: &str = "t0ken-for-pull";

fn fake_registry() -> FakeRegistry {
    fake_registry_with(|_| {})
}

/// [`fake_registry`] whose release manifest (still pinned by the release) is changed by `tweak`.
fn fake_registry_with(tweak: impl FnOnce(&mut Vec<flynnrel::remote::oci::PushLayer>)) -> FakeRegistry {
    fake_registry_full(tweak, false)
}

/// [`fake_registry_with`]; with `cut_once`, the storage announces `Accept-Ranges: bytes`, cuts
/// the first response of each blob in half, and answers a `Range: bytes=N-` request with 206.
fn fake_registry_full(tweak: impl FnOnce(&mut Vec<flynnrel::remote::oci::PushLayer>), cut_once: bool) -> FakeRegistry {
    use flynnrel::remote::oci::{PushLayer, release_manifest};
    let tmp = tempfile::tempdir().unwrap();
    let serve_root = tmp.path().join("releases");
    std::fs::create_dir_all(&serve_root).unwrap();
    let layers = layers_v1();
    let dir = publish(&serve_root, V1, "2024-01-27T10:00:00Z", &layers);
    let mut push: Vec<PushLayer> = layers
        .iter()
        .map(|(id, d)| PushLayer {
            id: id.to_string(),
            size: d.len() as u64,
            sha256: sha256_hex(d),
        })
        .collect();
    tweak(&mut push);
    let (_, manifest) = release_manifest(V1, &push).unwrap();
    let digest = sha256_hex(&manifest);
    let blobs: std::collections::BTreeMap<String, Vec<u8>> =
        layers.iter().map(|(_, d)| (sha256_hex(d), d.clone())).collect();
    let seen: Seen = Arc::default();
    let blob_ranges: BlobRanges = Arc::default();
    let cut: Arc<Mutex<std::collections::BTreeSet<String>>> = Arc::default();
    let bases: Arc<Mutex<(String, String)>> = Arc::default();
    let (s, b, m, br) = (seen.clone(), bases.clone(), manifest.clone(), blob_ranges.clone());
    let server = start_with(&serve_root, move |req: &RequestInfo| {
        let url = req.url.clone();
        let is_registry = url.starts_with("/v2/") || url.starts_with("/token") || url.starts_with("/blobdata/");
        if !is_registry {
            return None;
        }
        let auth = req.header("authorization").map(str::to_string);
        s.lock()
            .unwrap()
            .push((req.listener, req.method.clone(), url.clone(), auth.clone()));
        let (api, storage) = b.lock().unwrap().clone();
        if let Some(hex) = url.strip_prefix("/blobdata/") {
            let data = blobs.get(hex)?;
            let range = req.header("range").map(str::to_string);
            br.lock().unwrap().push((url.clone(), range.clone()));
            if cut_once {
                let total = data.len();
                if let Some(from) = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-'))
                {
                    let from: usize = from.parse().unwrap();
                    return raw(
                        "206 Partial Content",
                        &[
                            ("Content-Length", &(total - from).to_string()),
                            ("Content-Range", &format!("bytes {from}-{}/{total}", total - 1)),
                            ("Accept-Ranges", "bytes"),
                        ],
                        &data[from..],
                    );
                }
                if cut.lock().unwrap().insert(hex.to_string()) {
                    return raw(
                        "200 OK",
                        &[("Content-Length", &total.to_string()), ("Accept-Ranges", "bytes")],
                        &data[..total / 2],
                    );
                }
            }
            return raw("200 OK", &[("Content-Length", &data.len().to_string())], data);
        }
        if url.starts_with("/token") {
            let body = format!("{{\"token\":\"{FAKE_TOKEN}\"}}");
            return raw("200 OK", &[("Content-Type", "application/json")], body.as_bytes());
        }
        if auth.as_deref() != Some(&format!("Bearer {FAKE_TOKEN}")) {
            let challenge =
                format!("Bearer realm=\"{api}/token\",service=\"fake\",scope=\"repository:flynn/layers:pull\"");
            return raw(
                "401 Unauthorized",
                &[("WWW-Authenticate", &challenge), ("Content-Length", "0")],
                b"",
            );
        }
        if url.starts_with("/v2/flynn/layers/manifests/sha256:") {
            return raw(
                "200 OK",
                &[
                    ("Content-Type", flynnrel::remote::oci::MANIFEST_MEDIA_TYPE),
                    ("Content-Length", &m.len().to_string()),
                ],
                &m,
            );
        }
        if let Some(hex) = url.strip_prefix("/v2/flynn/layers/blobs/sha256:") {
            let to = format!("{storage}/blobdata/{hex}");
            return raw(
                "307 Temporary Redirect",
                &[("Location", &to), ("Content-Length", "0")],
                b"",
            );
        }
        raw("404 Not Found", &[("Content-Length", "0")], b"")
    });
    *bases.lock().unwrap() = (server.api_url(), server.storage_url());
    // The release points its layers at this registry: images.json rewritten, no layers.tar.gz,
    // checksums rewritten (as the packager writes an Option B release).
    let registry = server.api_url().trim_start_matches("http://").to_string();
    let template = format!("oci://{registry}/flynn/layers@sha256:{digest}/{{id}}");
    let gz = std::fs::read(dir.join("images.json.gz")).unwrap();
    let mut images = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut images)
        .unwrap();
    let images = flynnrel::model::images::set_layer_url_template(&images, &template, "images.json").unwrap();
    std::fs::write(dir.join("images.json.gz"), gzip(&images)).unwrap();
    std::fs::remove_file(dir.join("layers.tar.gz")).unwrap();
    rewrite_checksums(&dir, &[]);
    let root = tmp.path().join("root");
    FakeRegistry {
        _tmp: tmp,
        server,
        root,
        seen,
        blob_ranges,
    }
}

#[test]
fn a_cut_registry_blob_resumes_with_range_from_where_it_stopped() {
    let f = fake_registry_full(|_| {}, true);
    install(
        &client(&f.server),
        &opts(&f.root, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert_installed(&f.root, V1, &layers_v1());
    // Each blob: one request without Range (cut at half), then one resuming at exactly that byte.
    let ranges = f.blob_ranges.lock().unwrap().clone();
    for (_, data) in layers_v1() {
        let url = format!("/blobdata/{}", sha256_hex(&data));
        let got: Vec<Option<String>> = ranges
            .iter()
            .filter(|(u, _)| *u == url)
            .map(|(_, r)| r.clone())
            .collect();
        assert_eq!(
            got,
            [None, Some(format!("bytes={}-", data.len() / 2))],
            "{url}: {ranges:?}"
        );
    }
}

#[test]
fn registry_token_flow_and_no_token_to_the_storage_host() {
    let f = fake_registry();
    install(
        &client(&f.server),
        &opts(&f.root, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    assert_installed(&f.root, V1, &layers_v1());
    let seen = f.seen.lock().unwrap().clone();
    // The first request is anonymous and challenged; the token request names service and scope.
    assert!(
        seen[0].2.contains("/manifests/sha256:") && seen[0].3.is_none(),
        "{seen:?}"
    );
    let token_req = seen
        .iter()
        .find(|r| r.2.starts_with("/token"))
        .expect("a token request");
    assert!(
        token_req.2.contains("service=fake") && token_req.2.contains("scope=repository%3Aflynn%2Flayers%3Apull"),
        "{token_req:?}"
    );
    let bearer = format!("Bearer {FAKE_TOKEN}");
    let authed: Vec<_> = seen
        .iter()
        .filter(|r| r.3.as_deref() == Some(bearer.as_str()))
        .collect();
    assert!(
        authed.iter().all(|r| r.0 == Listener::Api),
        "the token went to the registry only"
    );
    let storage: Vec<_> = seen.iter().filter(|r| r.2.starts_with("/blobdata/")).collect();
    assert_eq!(storage.len(), layers_v1().len(), "{seen:?}");
    assert!(
        storage.iter().all(|r| r.0 == Listener::Storage && r.3.is_none()),
        "no Authorization to the storage host: {storage:?}"
    );
    // One token: the manifest request got it, and the parallel layer downloads reuse it.
    let tokens = seen.iter().filter(|r| r.2.starts_with("/token")).count();
    assert_eq!(tokens, 1, "{seen:?}");
}

#[test]
fn a_bad_registry_mirror_is_refused_before_anything_changes() {
    let f = fake_registry();
    for (mirror, kind) in [
        ("not a url", ErrorKind::InvalidArgument),
        ("http://mirror.example.com:5000", ErrorKind::InsecureUrl),
    ] {
        let mut o = opts(&f.root, V1);
        o.registry_mirror = Some(mirror.into());
        let e = fails_unchanged(&f.server, &f.root, o);
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.message().contains("registry mirror"), "{e}");
        assert!(!f.root.exists());
    }
}

#[test]
fn flynns_downloader_parts_take_layers_from_outside_the_release() {
    // Flynn's downloader (go/flynnhost) calls the core's download with the parts config and
    // layers: the same decision and checks apply, with no Go logic.
    let e = cdn_env();
    let mut o = opts(&e.root, V1);
    o.parts = flynnrel::host::staging::Parts::from_names(&["config", "layers"], "parts").unwrap();
    flynnrel::ops::install::download(&client(&e.server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    assert_installed(&e.root, V1, &layers_v1());
    assert!(!e.root.join(format!("usr/local/bin/flynn-host.{V1}")).exists());
    let f = fake_registry();
    let mut o = opts(&f.root, V1);
    o.parts = flynnrel::host::staging::Parts::from_names(&["layers"], "parts").unwrap();
    flynnrel::ops::install::download(&client(&f.server), &o, &mut flynnrel::remote::fetch::no_progress).unwrap();
    for (id, data) in layers_v1() {
        assert_eq!(std::fs::read(layer_path(&f.root, id)).unwrap(), data);
    }
}

#[test]
fn cancelling_a_layer_download_leaves_nothing() {
    let e = cdn_env();
    let mut cb = |phase: &str, done: u64, _: u64| !(phase.starts_with("download aaaa1111") && done > 0);
    let before = snapshot(&e.root);
    let err = install(&client(&e.server), &opts(&e.root, V1), &mut cb).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert_eq!(snapshot(&e.root), before);
}

#[test]
fn the_cli_takes_the_layer_options() {
    let e = cdn_env();
    let bin = flynnrel_bin();
    let base = |cmd: &str| {
        let mut c = Command::new(&bin);
        c.args([cmd, "--version", V1, "--repo", REPO, "--api-url"])
            .arg(e.server.api_url())
            .arg("--web-url")
            .arg(e.server.web_url())
            .arg("--root")
            .arg(&e.root)
            .env_remove("FLYNN_REGISTRY_MIRROR");
        c
    };
    // A mirror given by flag or by environment is checked like every URL.
    let out = base("install")
        .args(["--registry-mirror", "http://mirror.example.com"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("registry mirror") && msg.contains("mirror.example.com"),
        "{msg}"
    );
    let out = base("download")
        .env("FLYNN_REGISTRY_MIRROR", "http://mirror.example.com")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("registry mirror"));
    assert!(!e.root.exists() || std::fs::read_dir(&e.root).unwrap().count() == 0);
    // Option C through the CLI: the install takes the layers from the storage.
    let out = base("install").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_installed(&e.root, V1, &layers_v1());

    // package --layers-url-template: the report names the template; no layers.tar.gz.
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    make_build_tree(&build, V2, &layers_v2());
    let out_dir = tmp.path().join("out");
    let out = Command::new(&bin)
        .args(["package", "--version", V2, "--repo", REPO, "--json"])
        .arg("--build-dir")
        .arg(&build)
        .arg("--layer-cache")
        .arg(layer_cache(&build))
        .arg("--out")
        .arg(&out_dir)
        .arg("--helper")
        .arg(build.join("fake-flynnrel"))
        .args(["--layers-url-template", "https://cdn.example/flynn/{id}.squashfs"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["layer_url_template"], "https://cdn.example/flynn/{id}.squashfs");
    assert_eq!(report["layers"], serde_json::json!(["aaaa1111", "ffff6666"]));
    assert!(!out_dir.join("layers.tar.gz").exists());
    let out = Command::new(&bin)
        .args(["package", "--version", V2, "--layers", "oci://ghcr.io/flynn/x"])
        .args(["--layers-url-template", "https://cdn.example/{id}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap refuses both");
}

#[test]
fn update_takes_layers_from_the_registry_and_refuses_a_tampered_one_unchanged() {
    use flynnrel::ops::update::{UpdateOptions, UpdateOutcome, update};
    let Some(e) = oci_env() else { return };
    install(
        &client(&e.server),
        &opts(&e.root, V1),
        &mut flynnrel::remote::fetch::no_progress,
    )
    .unwrap();
    let uopts = || UpdateOptions::new(HostLayout::new(Some(&e.root), None, None, None));
    // A tampered new layer: the update is refused and the host still runs V1, unchanged.
    let new_layer = noise(6, 120_000);
    let blob = e.registry.blob_file(&sha256_hex(&new_layer));
    let mut bad = new_layer.clone();
    bad[9] ^= 1;
    std::fs::write(&blob, &bad).unwrap();
    let before = snapshot(&e.root);
    let err = update(&client(&e.server), &uopts(), &mut flynnrel::remote::fetch::no_progress).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
    assert_eq!(snapshot(&e.root), before);
    std::fs::write(&blob, &new_layer).unwrap();
    match update(&client(&e.server), &uopts(), &mut flynnrel::remote::fetch::no_progress).unwrap() {
        UpdateOutcome::Updated { from, to, .. } => assert_eq!((from.as_str(), to.as_str()), (V1, V2)),
        other => panic!("{other:?}"),
    }
    assert_installed(&e.root, V2, &layers_v2());
}

#[test]
fn a_pinned_manifest_that_disagrees_with_images_json_is_refused_before_any_blob() {
    // A layer of another size than images.json says, and a layer left out: both refused naming
    // the manifest, before a blob is requested, and the host is unchanged.
    for (tweak, needle) in [
        (
            Box::new(|p: &mut Vec<flynnrel::remote::oci::PushLayer>| p[0].size += 1)
                as Box<dyn FnOnce(&mut Vec<flynnrel::remote::oci::PushLayer>)>,
            "bytes but images.json says",
        ),
        (
            Box::new(|p: &mut Vec<flynnrel::remote::oci::PushLayer>| {
                p.remove(1);
            }),
            "lacks layer",
        ),
    ] {
        let f = fake_registry_with(tweak);
        let err = fails_unchanged(&f.server, &f.root, opts(&f.root, V1));
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
        assert!(
            err.message().contains(needle) && err.message().contains("manifest sha256:"),
            "{err}"
        );
        let seen = f.seen.lock().unwrap().clone();
        assert!(!seen.iter().any(|r| r.2.contains("/blobs/")), "{seen:?}");
    }
}
