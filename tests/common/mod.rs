//! Shared fixtures for the integration tests: release folders, the local release server, clients,
//! raw fault responses and a snapshot of a directory tree for "nothing changed" assertions.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flynnrel::model::checksums::{Checksums, sha512_hex};
use flynnrel::remote::ghrelease::{Client, ClientOptions};
use flynnrel::serve::{self, Interceptor, RequestInfo, ServeOptions, Server};

pub const REPO: &str = "flynn/flynn";

/// The `flynnrel` CLI (the workspace member `cli/`), built into the same target directory as
/// these tests: `cargo test` at the workspace root builds it (the CLI's own tests need it).
pub fn flynnrel_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/flynnrel
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("flynnrel");
    assert!(
        bin.is_file(),
        "{} is missing: build the CLI first (`cargo build -p flynnrel-cli`, or run `cargo test` at the workspace root)",
        bin.display()
    );
    bin
}

/// Writes a release folder `root/OWNER/REPO/TAG/` with `assets`, a `checksums.sha512` over them,
/// and `.release.json` metadata when `meta` is not null.
pub fn add_release(root: &Path, repo: &str, tag: &str, meta: serde_json::Value, assets: &[(&str, &[u8])]) -> PathBuf {
    let dir = root.join(repo).join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let mut sums = Checksums::new();
    for (name, data) in assets {
        std::fs::write(dir.join(name), data).unwrap();
        sums.insert(name, &sha512_hex(data)).unwrap();
    }
    std::fs::write(dir.join("checksums.sha512"), sums.to_text()).unwrap();
    if !meta.is_null() {
        std::fs::write(dir.join(".release.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    }
    dir
}

/// A release created at `created_at` (RFC 3339) with one small asset.
pub fn simple_release(root: &Path, tag: &str, created_at: &str, prerelease: bool) -> PathBuf {
    add_release(
        root,
        REPO,
        tag,
        serde_json::json!({ "created_at": created_at, "prerelease": prerelease }),
        &[("flynn-host-linux-amd64.gz", format!("host {tag}").as_bytes())],
    )
}

/// Options serving `root` and keeping every request in memory, so tests can count them.
pub fn serve_options(root: &Path) -> ServeOptions {
    let mut opts = ServeOptions::new(root);
    opts.keep_requests = 100_000;
    opts
}

pub fn start(root: &Path) -> Server {
    serve::start(serve_options(root)).expect("start server")
}

pub fn start_with(
    root: &Path,
    interceptor: impl Fn(&RequestInfo) -> Option<Box<dyn Read + Send>> + Send + Sync + 'static,
) -> Server {
    let mut opts = serve_options(root);
    let i: Interceptor = Arc::new(interceptor);
    opts.interceptor = Some(i);
    serve::start(opts).expect("start server")
}

pub fn options(server: &Server) -> ClientOptions {
    let mut o = ClientOptions::new(REPO);
    o.api_url = server.api_url();
    o.web_url = server.web_url();
    o.retry_delay = Duration::from_millis(5);
    o.read_timeout = Duration::from_secs(10);
    o
}

pub fn client(server: &Server) -> Client {
    Client::new(options(server)).expect("client")
}

/// A raw HTTP/1.1 response, written verbatim; the connection closes after it.
pub fn raw(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Box<dyn Read + Send>> {
    let mut s = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("Connection: close\r\n\r\n");
    let mut bytes = s.into_bytes();
    bytes.extend_from_slice(body);
    Some(Box::new(std::io::Cursor::new(bytes)))
}

/// `dir` in the one tree-snapshot format of every test layer (script/lib/snapshot, whose header
/// defines it): per entry, keyed by its path relative to `dir`, the line
/// `TYPE MODE SIZE SHA256 TARGET PATH`. The root (".") is left out, so a missing or empty `dir`
/// is an empty map; [`snapshot_text`] gives the script's exact output. Equal snapshots mean
/// nothing was created, removed, changed, re-moded or re-pointed.
///
/// Like script/lib/snapshot, it leaves out a host's ETag cache file
/// (`cache/github-etags.json` anywhere below `dir`, docs/host-layout.md#the-etag-cache), which a
/// failed operation may shrink and which is never trusted for content.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut all = snapshot_all(dir);
    all.retain(|rel, _| !is_etag_cache(rel));
    all
}

/// Whether `rel` (below a snapshot's root) is a host's ETag cache file.
pub fn is_etag_cache(rel: &Path) -> bool {
    let cache = Path::new(flynnrel::remote::ghrelease::etag_cache::CACHE_DIR)
        .join(flynnrel::remote::ghrelease::etag_cache::CACHE_FILE);
    rel.ends_with(cache)
}

fn snapshot_all(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            out.insert(rel.clone(), snapshot_line(&p, &rel));
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Exactly what `script/lib/snapshot dir` prints: the root's line and [`snapshot`]'s, sorted by
/// path bytes; "" when `dir` does not exist.
pub fn snapshot_text(dir: &Path) -> String {
    if std::fs::symlink_metadata(dir).is_err() {
        return String::new();
    }
    let mut lines: Vec<(Vec<u8>, String)> = vec![(Vec::new(), snapshot_line(dir, Path::new("")))];
    use std::os::unix::ffi::OsStrExt;
    let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    for (rel, line) in if is_dir { snapshot(dir) } else { BTreeMap::new() } {
        lines.push((rel.as_os_str().as_bytes().to_vec(), line));
    }
    lines.sort();
    lines.into_iter().map(|(_, l)| l + "\n").collect()
}

/// One line of the snapshot format for `path`, shown as `rel` ("." when empty).
fn snapshot_line(path: &Path, rel: &Path) -> String {
    use sha2::Digest;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn escape(s: &[u8]) -> String {
        let mut o = String::new();
        for c in String::from_utf8_lossy(s).chars() {
            match c {
                '\\' => o.push_str("\\\\"),
                ' ' => o.push_str("\\s"),
                '\t' => o.push_str("\\t"),
                '\n' => o.push_str("\\n"),
                c => o.push(c),
            }
        }
        o
    }
    use std::os::unix::ffi::OsStrExt;
    let meta = std::fs::symlink_metadata(path).unwrap();
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        "f"
    } else if ft.is_dir() {
        "d"
    } else if ft.is_symlink() {
        "l"
    } else if ft.is_fifo() {
        "p"
    } else if ft.is_socket() {
        "s"
    } else if ft.is_char_device() {
        "c"
    } else {
        "b"
    };
    let (size, sha): (String, String) = if ft.is_file() {
        let data = std::fs::read(path).unwrap();
        (
            data.len().to_string(),
            sha2::Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect(),
        )
    } else {
        ("-".into(), "-".into())
    };
    let target = if ft.is_symlink() {
        escape(std::fs::read_link(path).unwrap().as_os_str().as_bytes())
    } else {
        "-".into()
    };
    let shown = if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        escape(rel.as_os_str().as_bytes())
    };
    format!("{kind} {:o} {size} {sha} {target} {shown}", meta.mode() & 0o7777)
}

/// A synthetic Flynn build tree in Flynn's shape: `bin/` with Flynn's names (shell scripts that
/// print their version), `manifests/images.json` as a map of `ct.Artifact` whose layers are
/// `layers` (id, bytes), `manifests/bootstrap-manifest.json`; the layers themselves in the
/// builder's layer cache, here [`layer_cache`]`(dir)`.
pub fn make_build_tree(dir: &Path, version: &str, layers: &[(&str, Vec<u8>)]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::create_dir_all(layer_cache(dir)).unwrap();
    for name in ["flynn-host", "flynn-init", "flynn-linux-amd64"] {
        let p = dir.join("bin").join(name);
        std::fs::write(&p, format!("#!/bin/sh\n# {name}\necho {version}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut entries = Vec::new();
    for (id, data) in layers {
        std::fs::write(layer_cache(dir).join(format!("{id}.squashfs")), data).unwrap();
        let (len, h) = flynnrel::model::layers::sha512_256_reader(&data[..], u64::MAX).unwrap();
        entries.push(serde_json::json!({
            "id": id, "type": "application/vnd.flynn.image.squashfs.v1", "length": len, "hashes": {"sha512_256": h}
        }));
    }
    std::fs::write(dir.join("manifests/images.json"), flynn_images_json(entries)).unwrap();
    std::fs::write(
        dir.join("manifests/bootstrap-manifest.json"),
        format!("{{\"version\":\"{version}\",\"steps\":[]}}\n"),
    )
    .unwrap();
    // A small stand-in for the helper binary (the debug build of flynnrel is ~80 MB).
    std::fs::write(dir.join("fake-flynnrel"), b"#!/bin/sh\necho flynnrel stand-in\n").unwrap();
}

/// Where [`make_build_tree`] puts the layers: `<build>/layer-cache` (package with
/// `layer_cache` set to it).
pub fn layer_cache(build: &Path) -> PathBuf {
    build.join("layer-cache")
}

/// The layer URL template Flynn's builder writes into images.json.
pub const BUILDER_LAYER_URL_TEMPLATE: &str = "file:///var/lib/flynn/layer-cache/{id}.squashfs";

/// The raw JSON of an image manifest listing `layers` (compact, as Flynn marshals it).
pub fn image_manifest(layers: Vec<serde_json::Value>) -> String {
    serde_json::to_string(&serde_json::json!({
        "_type": "application/vnd.flynn.image.manifest.v1+json",
        "meta": null,
        "rootfs": [{"platform": {"architecture": "amd64", "os": "linux"}, "layers": layers}],
    }))
    .unwrap()
}

/// Flynn's `build/manifests/images.json`: a map of image name to `ct.Artifact`, as
/// builder/build.go writes it (an artifact whose `manifest` lists `layers`, its sha512/256 as
/// `manifest.id`, and the builder's `layer_url_template`), pretty-printed like Go's
/// `json.MarshalIndent`.
pub fn flynn_images_json(layers: Vec<serde_json::Value>) -> Vec<u8> {
    use sha2::Digest;
    let manifest = image_manifest(layers);
    let id: String = sha2::Sha512_256::digest(manifest.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // ct.Artifact's fields in Go's order, indented like json.MarshalIndent; the manifest is
    // written as its raw bytes (Go's json.RawMessage), so manifest.id is the hash of exactly the
    // bytes in the file.
    let uri = format!("https://dl.flynn.io/tuf?target=/images/{id}.json");
    let size = manifest.len();
    format!(
        "{{\n  \"host\": {{\n    \"type\": \"flynn\",\n    \"uri\": \"{uri}\",\n    \"meta\": {{\n      \
         \"flynn.component\": \"host\",\n      \"manifest.id\": \"{id}\"\n    }},\n    \"manifest\": {manifest},\n    \
         \"hashes\": {{\n      \"sha512_256\": \"{id}\"\n    }},\n    \"size\": {size},\n    \
         \"layer_url_template\": \"{BUILDER_LAYER_URL_TEMPLATE}\"\n  }}\n}}\n"
    )
    .into_bytes()
}

/// The raw JSON text of `image`'s `manifest` in an images.json document.
pub fn raw_manifest(images: &[u8], image: &str) -> String {
    type Artifact<'a> = BTreeMap<&'a str, &'a serde_json::value::RawValue>;
    let all: BTreeMap<&str, Artifact<'_>> = serde_json::from_slice(images).unwrap();
    all.get(image)
        .and_then(|a| a.get("manifest"))
        .unwrap_or_else(|| panic!("no manifest of image {image}"))
        .get()
        .to_string()
}

/// Deterministic pseudo-random bytes (incompressible enough to stand in for squashfs).
pub fn noise(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

/// Packages a synthetic build of `version` into `serve_root/flynn/flynn/<version>` (the layout
/// `flynnrel serve` reads), created at `created_at`. Returns the release folder.
pub fn publish(serve_root: &Path, version: &str, created_at: &str, layers: &[(&str, Vec<u8>)]) -> PathBuf {
    publish_with(serve_root, version, created_at, layers, |_| {})
}

/// Like [`publish`], letting the caller adjust the package options (signing, helper).
pub fn publish_with(
    serve_root: &Path,
    version: &str,
    created_at: &str,
    layers: &[(&str, Vec<u8>)],
    adjust: impl FnOnce(&mut flynnrel::ops::package::PackageOptions),
) -> PathBuf {
    let build = serve_root.join(format!(".build-{version}"));
    make_build_tree(&build, version, layers);
    let out = serve_root.join(REPO).join(version);
    let mut o = flynnrel::ops::package::PackageOptions::new(version, REPO);
    o.build_dir = build.clone();
    o.layer_cache = layer_cache(&build);
    o.out_dir = out.clone();
    o.helper = Some(build.join("fake-flynnrel"));
    o.helper_platform = Some(("linux".into(), "amd64".into()));
    o.threads = 2;
    adjust(&mut o);
    flynnrel::ops::package::package(&o, &mut flynnrel::remote::fetch::no_progress).expect("package");
    std::fs::write(
        out.join(".release.json"),
        format!("{{\"created_at\":\"{created_at}\"}}"),
    )
    .unwrap();
    out
}

/// Rewrites `checksums.sha512` of a release folder after its assets were changed on purpose.
pub fn rewrite_checksums(release_dir: &Path, skip: &[&str]) {
    let mut sums = Checksums::new();
    let mut names: Vec<String> = std::fs::read_dir(release_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.') && n != "checksums.sha512" && n != "checksums.sha512.minisig")
        .collect();
    names.sort();
    for n in names {
        if skip.contains(&n.as_str()) {
            continue;
        }
        sums.insert(&n, &sha512_hex(&std::fs::read(release_dir.join(&n)).unwrap()))
            .unwrap();
    }
    std::fs::write(release_dir.join("checksums.sha512"), sums.to_text()).unwrap();
}

/// A gzip (single member, from flate2) of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A layers.tar.gz built by hand, so that headers can carry what the tar crate would refuse
/// (`..`, absolute paths, links to /etc/shadow, devices).
pub fn hand_tar_gz(entries: &[(&[u8], tar::EntryType, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(*kind);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.as_old_mut().linkname[..11].copy_from_slice(b"/etc/shadow");
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    gzip(&out)
}
