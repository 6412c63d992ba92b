//! Packaging a release from Flynn's build tree, and verifying a release folder (docs/release-assets.md#packaging, docs/verification.md#checksums).
//!
//! Everything is built in a staging folder created exclusively next to the output folder and
//! moved into place only when complete, so an error (or a cancel) changes nothing. Compression
//! streams through [`crate::model::gz::ParGzWriter`] (parallel, reproducible, hashed while written);
//! layers are tarred with fixed headers (sorted, uid/gid 0, mtime 0, mode 0644) and their
//! sha512/256 is checked against `images.json` while they stream into the archive.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha512_256};

use crate::error::{Error, ErrorKind, Result};
use crate::model::checksums::{Checksums, eq_hex, hex, sha512_hex};
use crate::model::gz::{self, ParGzWriter};
use crate::model::layers::{self, LayerSpec};
use crate::model::release::{
    self, CHECKSUMS_ASSET, COMPONENTS, DEFAULT_LAYER_CACHE, INSTALL_SCRIPT_ASSET, LAYERS_ASSET,
};
use crate::model::signature::{self, SIGNATURE_ASSET, TrustedKey};
use crate::model::version::Version;
use crate::remote::fetch::Progress;

/// The install script, compiled in so that the helper can bake it into any release.
pub const INSTALL_SCRIPT_TEMPLATE: &str = include_str!("../../script/install-flynn-github");

/// What to package.
#[derive(Debug, Clone)]
pub struct PackageOptions {
    /// The release version = tag (`v20240127.0`).
    pub version: String,
    /// `OWNER/NAME`, baked into `install-flynn` and the signature.
    pub repository: String,
    /// Flynn's build tree (`build/`): `bin/`, `manifests/`.
    pub build_dir: PathBuf,
    /// The builder's layer cache, where `<id>.squashfs` of every layer `images.json` references
    /// is read from (default `/var/lib/flynn/layer-cache`). Only those files are opened; the
    /// directory is never listed.
    pub layer_cache: PathBuf,
    /// Where the assets go (`release-artifacts/`); must not exist, be empty, or already hold
    /// exactly this release.
    pub out_dir: PathBuf,
    /// The helper binary to publish; `None` = the running executable.
    pub helper: Option<PathBuf>,
    /// The helper's platform in Go's names; `None` = this machine.
    pub helper_platform: Option<(String, String)>,
    /// A minisign secret key to sign `checksums.sha512` with.
    pub sign_key: Option<PathBuf>,
    /// Its password, for an encrypted key.
    pub sign_password: Option<String>,
    /// A public key to bake into `install-flynn` when not signing here (CI signs later).
    pub public_key: Option<String>,
    /// Compression threads (`0` = all cores).
    pub threads: usize,
    /// Compression level, 1–12.
    pub level: i32,
    /// Option B (docs/layers.md): push the layers to this registry repository,
    /// `oci://REGISTRY/NAMESPACE/NAME`, instead of writing `layers.tar.gz`; credentials from
    /// `FLYNN_REGISTRY_USER` / `FLYNN_REGISTRY_TOKEN`.
    pub layers_registry: Option<String>,
    /// Option C (docs/layers.md): the operator uploads the layers to external storage at this URL
    /// template (`https://…/{id}.squashfs`) instead of a `layers.tar.gz` asset.
    pub layers_url_template: Option<String>,
}

impl PackageOptions {
    /// Defaults: `build/` → `release-artifacts/`, all cores, level 6.
    pub fn new(version: impl Into<String>, repository: impl Into<String>) -> PackageOptions {
        PackageOptions {
            version: version.into(),
            repository: repository.into(),
            build_dir: PathBuf::from("build"),
            layer_cache: PathBuf::from(DEFAULT_LAYER_CACHE),
            out_dir: PathBuf::from("release-artifacts"),
            helper: None,
            helper_platform: None,
            sign_key: None,
            sign_password: None,
            public_key: None,
            threads: 0,
            level: gz::DEFAULT_LEVEL,
            layers_registry: None,
            layers_url_template: None,
        }
    }
}

/// One asset written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AssetInfo {
    /// Asset name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha512.
    pub sha512: String,
}

/// What [`package`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackageReport {
    /// The version packaged.
    pub version: String,
    /// The output folder.
    pub out_dir: PathBuf,
    /// Every asset, sorted by name (signature included when signed).
    pub assets: Vec<AssetInfo>,
    /// Optional inputs that were absent (with why).
    pub skipped: Vec<String>,
    /// Layers packed (ids).
    pub layers: Vec<String>,
    /// Whether `checksums.sha512.minisig` was written.
    pub signed: bool,
    /// True when the output folder already held exactly this release and was left as it was.
    pub unchanged: bool,
    /// Uncompressed input bytes.
    pub bytes_in: u64,
    /// Where the layers are, when not in `layers.tar.gz`: the `layer_url_template` written into
    /// every artifact of the published `images.json` (a registry reference pinning the manifest,
    /// or the external-storage template).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_url_template: Option<String>,
    /// Layers uploaded to the registry by this run (the others were there already).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pushed_layers: Vec<String>,
}

/// What Option B pushes: the repository, the layers, the config blob and the manifest.
type PushPlan = (
    crate::remote::oci::Repository,
    Vec<crate::remote::oci::PushLayer>,
    Vec<u8>,
    Vec<u8>,
);

/// Where a packaged release's layers go.
enum LayerMode {
    /// `layers.tar.gz` (Option A).
    Archive,
    /// A registry repository (Option B).
    Registry(crate::remote::oci::Repository),
    /// External storage at a URL template (Option C).
    Url(String),
}

/// The layer mode the options ask for, checked before anything is read or written.
fn layer_mode(opts: &PackageOptions) -> Result<LayerMode> {
    match (&opts.layers_registry, &opts.layers_url_template) {
        (Some(_), Some(_)) => Err(Error::new(
            ErrorKind::InvalidArgument,
            "give either --layers oci://… or --layers-url-template, not both: a release's layers come from one place",
        )),
        (Some(r), None) => Ok(LayerMode::Registry(crate::remote::oci::Repository::parse(
            r, "--layers",
        )?)),
        (None, Some(t)) => {
            if !t.contains("{id}") {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "--layers-url-template {:?} has no {{id}}; give a URL such as \
                         https://cdn.example/flynn/{{id}}.squashfs",
                        crate::error::escape(t)
                    ),
                ));
            }
            crate::remote::oci::check_layer_url(&t.replace("{id}", "layer"), "--layers-url-template")?;
            Ok(LayerMode::Url(t.clone()))
        }
        (None, None) => Ok(LayerMode::Archive),
    }
}

/// Packages `opts.build_dir` into `opts.out_dir` (docs/release-assets.md#packaging). See the module docs for the
/// guarantees. Errors: `InvalidArgument` (version, repository, key), `NotFound` (a required input
/// is missing, naming it), `InvalidData` (images.json or a layer does not match), `Io`,
/// `Cancelled`; in every case the output folder is unchanged.
pub fn package(opts: &PackageOptions, progress: Progress<'_>) -> Result<PackageReport> {
    let version = Version::parse(&opts.version)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("cannot package: {}", e.message())))?;
    crate::remote::ghrelease::options::validate_repository(&opts.repository)?;
    let mode = layer_mode(opts)?;
    let build = &opts.build_dir;
    if !build.is_dir() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "build directory {} does not exist; run Flynn's `make release` first or choose another build \
                 directory",
                build.display()
            ),
        )
        .with_hint(crate::Hint::SetOptions {
            options: vec![crate::HintOption::BuildDir],
        }));
    }
    let threads = if opts.threads == 0 {
        gz::default_threads()
    } else {
        opts.threads
    };

    // Inputs, checked before anything is written.
    let mut skipped = Vec::new();
    let mut inputs: Vec<(&'static str, PathBuf)> = Vec::new();
    for c in &COMPONENTS {
        let p = build.join(c.build_path);
        if p.is_file() {
            inputs.push((c.asset, p));
        } else if c.required {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} is missing from the build tree; it is required for {}",
                    p.display(),
                    c.asset
                ),
            ));
        } else {
            skipped.push(format!("{} (no {})", c.asset, p.display()));
        }
    }
    let images_path = build.join("manifests/images.json");
    let images = crate::fsutil::read_regular_required(&images_path, 1 << 30)?;
    let layer_specs = layers::layers_from_images_json(&images, &images_path.display().to_string())?;
    // Exactly the layers images.json references, from the layer cache; the cache itself is never
    // listed (a builder's holds thousands of layers of other builds).
    let layer_dir = &opts.layer_cache;
    for spec in &layer_specs {
        let p = layer_dir.join(spec.file_name());
        let meta = std::fs::symlink_metadata(&p).map_err(|e| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} references layer {} but {} cannot be read ({e}); give the layer cache of \
                     the build that wrote it (Flynn's builder keeps it in {DEFAULT_LAYER_CACHE})",
                    images_path.display(),
                    spec.id,
                    p.display()
                ),
            )
            .with_hint(crate::Hint::SetOptions {
                options: vec![crate::HintOption::LayerCache],
            })
        })?;
        if !meta.is_file() {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{} (layer {} of {}) is not a regular file; give the layer cache of the build that wrote it",
                    p.display(),
                    spec.id,
                    images_path.display()
                ),
            )
            .with_hint(crate::Hint::SetOptions {
                options: vec![crate::HintOption::LayerCache],
            }));
        }
        if meta.len() != spec.length {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{} (layer {}) is {} bytes but {} says {}; the layer cache does not hold this build's layer: \
                     rebuild, or give the layer cache of the build that wrote it",
                    p.display(),
                    spec.id,
                    meta.len(),
                    images_path.display(),
                    spec.length
                ),
            ));
        }
    }
    let helper = match &opts.helper {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot locate the running flynnrel: {e}; name the helper binary"),
            )
            .with_hint(crate::Hint::SetOptions {
                options: vec![crate::HintOption::Helper],
            })
        })?,
    };
    if !helper.is_file() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("helper binary {} does not exist", helper.display()),
        )
        .with_hint(crate::Hint::SetOptions {
            options: vec![crate::HintOption::Helper],
        }));
    }
    let (os, arch) = match &opts.helper_platform {
        Some((o, a)) => (o.clone(), a.clone()),
        None => {
            let (o, a) = release::go_os_arch();
            (o.to_string(), a.to_string())
        }
    };
    let signer = match &opts.sign_key {
        Some(p) => Some(signature::load_secret_key(p, opts.sign_password.clone())?),
        None => None,
    };
    let baked_key = match (&signer, &opts.public_key) {
        (Some((_, pk)), _) => Some(pk.clone()),
        (None, Some(k)) => Some(TrustedKey::parse(k)?.to_base64().to_string()),
        (None, None) => None,
    };
    let script = bake_install_script(
        INSTALL_SCRIPT_TEMPLATE,
        &opts.repository,
        version.as_str(),
        baked_key.as_deref(),
    )?;

    // Staging folder beside the output, so the final move is a rename on one file system.
    let out = &opts.out_dir;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    crate::fsutil::create_dir_all(&parent, 0o755)?;
    let stage = tempfile::Builder::new()
        .prefix(".flynnrel-package.")
        .tempdir_in(&parent)
        .map_err(|e| Error::io("create a staging folder in", &parent, e))?;
    let sdir = stage.path();

    let mut sums = Checksums::new();
    let mut assets: BTreeMap<String, AssetInfo> = BTreeMap::new();
    let mut bytes_in = 0u64;
    let mut record = |name: &str, size: u64, sha: String, sums: &mut Checksums| -> Result<()> {
        sums.insert(name, &sha)?;
        assets.insert(
            name.to_string(),
            AssetInfo {
                name: name.to_string(),
                size,
                sha512: sha,
            },
        );
        Ok(())
    };

    // Options B and C: every layer's sha512/256 checked here (the archive checks it while
    // tarring), and images.json published with the layers' template in every artifact.
    let mut push: Option<PushPlan> = None;
    // The template travels in Flynn's artifacts (image objects with a `manifest`): an images.json
    // whose layers sit in none of them could be published, but no host could install it.
    if !matches!(mode, LayerMode::Archive)
        && !layer_specs.is_empty()
        && crate::model::images::layer_url_templates(&images, &images_path.display().to_string())?.is_empty()
    {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{} has layers but no Flynn artifact (an image object with a \"manifest\") to carry their \
                 layer_url_template, so layers outside the release could never be found by a host; package \
                 Flynn's own build/manifests/images.json, or leave out --layers/--layers-url-template to \
                 ship the layers in layers.tar.gz: nothing was written or pushed",
                images_path.display()
            ),
        ));
    }
    let template = match &mode {
        LayerMode::Archive => None,
        LayerMode::Url(t) => {
            hash_layers(layer_dir, &layer_specs, progress)?;
            Some(t.clone())
        }
        LayerMode::Registry(repo) => {
            let pushed = hash_layers(layer_dir, &layer_specs, progress)?;
            let (config, manifest) = crate::remote::oci::release_manifest(version.as_str(), &pushed)?;
            let reference = crate::remote::oci::LayersRef {
                repository: repo.clone(),
                manifest_sha256: hex(&sha2::Sha256::digest(&manifest)),
            };
            push = Some((repo.clone(), pushed, config, manifest));
            Some(reference.template())
        }
    };
    let images_src = match &template {
        Some(t) => {
            let rewritten =
                crate::model::images::set_layer_url_template(&images, t, &images_path.display().to_string())?;
            let p = sdir.join(".images.json.source");
            write_file(&p, &rewritten, 0o600)?;
            Some(p)
        }
        None => None,
    };
    for (asset, src) in &inputs {
        let src = match &images_src {
            Some(p) if *asset == "images.json.gz" => p,
            _ => src,
        };
        let s = gzip_file(src, &sdir.join(asset), threads, opts.level, asset, progress)?;
        bytes_in += s.bytes_in;
        record(asset, s.bytes_out, s.sha512, &mut sums)?;
    }
    let helper_asset = release::helper_asset_name(&os, &arch);
    let s = gzip_file(
        &helper,
        &sdir.join(&helper_asset),
        threads,
        opts.level,
        &helper_asset,
        progress,
    )?;
    bytes_in += s.bytes_in;
    record(&helper_asset, s.bytes_out, s.sha512, &mut sums)?;

    if let Some(p) = &images_src {
        std::fs::remove_file(p).map_err(|e| Error::io("remove", p, e))?;
    }
    if !layer_specs.is_empty() && template.is_none() {
        let s = tar_layers(
            layer_dir,
            &layer_specs,
            &sdir.join(LAYERS_ASSET),
            threads,
            opts.level,
            progress,
        )?;
        bytes_in += s.bytes_in;
        record(LAYERS_ASSET, s.bytes_out, s.sha512, &mut sums)?;
    }

    write_file(&sdir.join(INSTALL_SCRIPT_ASSET), script.as_bytes(), 0o755)?;
    record(
        INSTALL_SCRIPT_ASSET,
        script.len() as u64,
        sha512_hex(script.as_bytes()),
        &mut sums,
    )?;

    let sums_text = sums.to_text();
    write_file(&sdir.join(CHECKSUMS_ASSET), sums_text.as_bytes(), 0o644)?;
    let info = |name: &str, data: &[u8]| AssetInfo {
        name: name.into(),
        size: data.len() as u64,
        sha512: sha512_hex(data),
    };
    assets.insert(CHECKSUMS_ASSET.to_string(), info(CHECKSUMS_ASSET, sums_text.as_bytes()));
    if let Some((sk, _)) = &signer {
        let sig = signature::sign_checksums(sk, sums_text.as_bytes(), &opts.repository, version.as_str())?;
        write_file(&sdir.join(SIGNATURE_ASSET), sig.as_bytes(), 0o644)?;
        assets.insert(SIGNATURE_ASSET.to_string(), info(SIGNATURE_ASSET, sig.as_bytes()));
    }

    // The registry last, once every asset is built and signed: a failure before this leaves the
    // registry as it was; blobs are content-addressed, so pushing again is harmless.
    let mut pushed_layers = Vec::new();
    if let Some((repo, layers, config, manifest)) = &push {
        pushed_layers = push_release(repo, version.as_str(), layer_dir, layers, config, manifest, progress)?;
    }
    let unchanged = commit_output(stage, out, &sums_text)?;
    Ok(PackageReport {
        version: version.as_str().to_string(),
        out_dir: out.clone(),
        assets: assets.into_values().collect(),
        skipped,
        layers: layer_specs.iter().map(|s| s.id.clone()).collect(),
        signed: signer.is_some(),
        unchanged,
        bytes_in,
        layer_url_template: template,
        pushed_layers,
    })
}

/// Checks every layer file against images.json's sha512/256 and returns what a registry needs
/// (size and sha256) of each, in one read.
fn hash_layers(
    layer_dir: &Path,
    specs: &[LayerSpec],
    progress: Progress<'_>,
) -> Result<Vec<crate::remote::oci::PushLayer>> {
    let total: u64 = specs.iter().map(|s| s.length).sum();
    let mut done = 0u64;
    let mut out = Vec::new();
    for spec in specs {
        let p = layer_dir.join(spec.file_name());
        let (size, sha256, sha512_256) = crate::remote::oci::hash_layer_file(&p)?;
        if size != spec.length || !eq_hex(&sha512_256, &spec.sha512_256) {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{} (layer {}) has sha512_256 {sha512_256} ({size} bytes) but images.json says {} ({} bytes); \
                     the layer cache does not hold this build's layer: rebuild, or give the layer cache of the build \
                     that wrote it",
                    p.display(),
                    spec.id,
                    spec.sha512_256,
                    spec.length
                ),
            ));
        }
        done += size;
        if !progress("check layers", done, total) {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "packaging cancelled; nothing was written",
            ));
        }
        out.push(crate::remote::oci::PushLayer {
            id: spec.id.clone(),
            size,
            sha256,
        });
    }
    Ok(out)
}

/// Pushes the layers (each skipped when the registry has it), the config blob and the manifest,
/// tagged with the version. Returns the ids of the layers uploaded.
fn push_release(
    repo: &crate::remote::oci::Repository,
    version: &str,
    layer_dir: &Path,
    layers: &[crate::remote::oci::PushLayer],
    config: &[u8],
    manifest: &[u8],
    progress: Progress<'_>,
) -> Result<Vec<String>> {
    use crate::remote::oci::{Credentials, Registry, Transfer};
    let transfer = Transfer::from_options(&crate::remote::ghrelease::ClientOptions::new(
        crate::remote::ghrelease::options::DEFAULT_REPOSITORY,
    ));
    let reg = Registry::new(repo, None, Credentials::from_env(), transfer)?;
    let total: u64 = layers.iter().map(|l| l.size).sum();
    let mut done = 0u64;
    let mut pushed = Vec::new();
    for l in layers {
        let p = layer_dir.join(layers::layer_file_name(&l.id));
        let open = || -> Result<reqwest::blocking::Body> {
            let f = File::open(&p).map_err(|e| Error::io("open", &p, e))?;
            Ok(reqwest::blocking::Body::sized(f, l.size))
        };
        if reg.ensure_blob(&l.sha256, l.size, &open)? {
            pushed.push(l.id.clone());
        }
        done += l.size;
        if !progress("push layers", done, total) {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "packaging cancelled; the output folder is unchanged (layers already pushed stay in the registry)",
            ));
        }
    }
    let config_sha = hex(&sha2::Sha256::digest(config));
    let body = config.to_vec();
    reg.ensure_blob(&config_sha, config.len() as u64, &|| Ok(body.clone().into()))?;
    reg.put_manifest(version, manifest)?;
    Ok(pushed)
}

/// Moves the finished staging folder to `out`. Returns `true` when `out` already held exactly this
/// release (same checksums, verifying) and was left untouched.
fn commit_output(stage: tempfile::TempDir, out: &Path, sums_text: &str) -> Result<bool> {
    let existing: Vec<String> = match std::fs::read_dir(out) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let staged = stage.keep();
            std::fs::rename(&staged, out).map_err(|e| {
                let _ = std::fs::remove_dir_all(&staged);
                Error::io("move the packaged release to", out, e)
            })?;
            set_dir_mode(out)?;
            return Ok(false);
        }
        Err(e) => return Err(Error::io("read", out, e)),
    };
    if existing.is_empty() {
        std::fs::remove_dir(out).map_err(|e| Error::io("replace the empty folder", out, e))?;
        let staged = stage.keep();
        std::fs::rename(&staged, out).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            Error::io("move the packaged release to", out, e)
        })?;
        set_dir_mode(out)?;
        return Ok(false);
    }
    let same = crate::fsutil::read_regular(&out.join(CHECKSUMS_ASSET), 1 << 20)
        .ok()
        .flatten()
        .as_deref()
        == Some(sums_text.as_bytes())
        && crate::ops::verify::verify_dir(out, None, None, None).is_ok();
    if same {
        return Ok(true);
    }
    Err(Error::new(
        ErrorKind::InvalidArgument,
        format!(
            "output folder {} already holds a different release ({} files); remove it or choose another one",
            out.display(),
            existing.len()
        ),
    )
    .with_hint(crate::Hint::SetOptions {
        options: vec![crate::HintOption::OutDir],
    }))
}

fn set_dir_mode(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("set permissions on", dir, e))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    f.write_all(data).map_err(|e| Error::io("write", path, e))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("set permissions on", path, e))
}

fn create_output(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io("create", path, e))
}

/// A reader that reports progress and can be cancelled through it.
struct Reporting<'a, 'p, R> {
    inner: R,
    done: u64,
    total: u64,
    phase: &'a str,
    progress: &'a mut Progress<'p>,
}

impl<R: Read> Read for Reporting<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if !(self.progress)(self.phase, self.done, self.total) {
            // Not ErrorKind::Interrupted: io::copy (used by tar) retries those forever.
            return Err(std::io::Error::other(Cancelled));
        }
        Ok(n)
    }
}

/// Marks an I/O error as a cancel requested by the progress callback.
#[derive(Debug)]
struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled by the progress callback")
    }
}

impl std::error::Error for Cancelled {}

fn is_cancel(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Cancelled>())
}

fn map_stream_err(e: std::io::Error, what: &str, path: &Path) -> Error {
    if is_cancel(&e) {
        Error::new(
            ErrorKind::Cancelled,
            format!("packaging cancelled while writing {what}; nothing was changed"),
        )
    } else {
        Error::io(&format!("compress {what} from"), path, e)
    }
}

fn gzip_file(
    src: &Path,
    dst: &Path,
    threads: usize,
    level: i32,
    asset: &str,
    mut progress: Progress<'_>,
) -> Result<gz::GzSummary> {
    let f = crate::fsutil::open_regular(src).map_err(|e| Error::io("open", src, e))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let phase = format!("compress {asset}");
    let mut reader = Reporting {
        inner: BufReader::with_capacity(1 << 20, f),
        done: 0,
        total,
        phase: &phase,
        progress: &mut progress,
    };
    let out = create_output(dst)?;
    let mut w = ParGzWriter::new(out, threads, level)?;
    std::io::copy(&mut reader, &mut w).map_err(|e| map_stream_err(e, asset, src))?;
    let (out, summary) = w.finish().map_err(|e| Error::io("write", dst, e))?;
    out.sync_all().map_err(|e| Error::io("fsync", dst, e))?;
    set_mode(dst, 0o644)?;
    Ok(summary)
}

/// A reader that hashes with sha512/256 what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha512_256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn tar_layers(
    layer_dir: &Path,
    specs: &[LayerSpec],
    dst: &Path,
    threads: usize,
    level: i32,
    progress: Progress<'_>,
) -> Result<gz::GzSummary> {
    let out = create_output(dst)?;
    let gzw = ParGzWriter::new(out, threads, level)?;
    let mut builder = tar::Builder::new(gzw);
    let total: u64 = specs.iter().map(|s| s.length).sum();
    let mut done_before = 0u64;
    // specs are sorted by id, so entries are sorted by name.
    for spec in specs {
        let name = spec.file_name();
        let src = layer_dir.join(&name);
        let f = crate::fsutil::open_regular(&src).map_err(|e| Error::io("open", &src, e))?;
        let mut header = tar::Header::new_ustar();
        header
            .set_path(&name)
            .map_err(|e| Error::new(ErrorKind::InvalidData, format!("layer name {name}: {e}")))?;
        header.set_size(spec.length);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut hashing = Hashing {
            inner: BufReader::with_capacity(1 << 20, f).take(spec.length),
            hasher: Sha512_256::new(),
        };
        let phase = "compress layers.tar.gz";
        let mut offset_progress = |p: &str, d: u64, _t: u64| progress(p, done_before + d, total);
        let mut op: Progress<'_> = &mut offset_progress;
        let mut reporting = Reporting {
            inner: &mut hashing,
            done: 0,
            total: spec.length,
            phase,
            progress: &mut op,
        };
        builder
            .append(&header, &mut reporting)
            .map_err(|e| map_stream_err(e, LAYERS_ASSET, &src))?;
        let got = hex(&hashing.hasher.finalize());
        if !eq_hex(&got, &spec.sha512_256) {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{} (layer {}) has sha512_256 {got} but images.json says {}; the layer cache does not hold \
                     this build's layer: rebuild, or give the layer cache of the build that wrote it",
                    src.display(),
                    spec.id,
                    spec.sha512_256
                ),
            ));
        }
        done_before += spec.length;
    }
    let gzw = builder.into_inner().map_err(|e| Error::io("finish", dst, e))?;
    let (out, summary) = gzw.finish().map_err(|e| Error::io("write", dst, e))?;
    out.sync_all().map_err(|e| Error::io("fsync", dst, e))?;
    set_mode(dst, 0o644)?;
    Ok(summary)
}

/// The variables of `script/install-flynn-github` that packaging sets (one line each).
pub const BAKED_VARIABLES: [&str; 3] = [
    "FLYNN_DEFAULT_REPO",
    "FLYNN_DEFAULT_VERSION",
    "FLYNN_DEFAULT_PUBLIC_KEY",
];

/// Returns the install script with repository, version and public key baked in as defaults.
/// The values are validated (no quoting is needed for them); `InvalidData` when the template
/// lacks one of the [`BAKED_VARIABLES`] lines.
pub fn bake_install_script(template: &str, repo: &str, version: &str, public_key: Option<&str>) -> Result<String> {
    let safe = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || "-_./+=:".contains(c));
    for v in [repo, version, public_key.unwrap_or("")] {
        if !safe(v) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("cannot bake {v:?} into install-flynn: unexpected characters"),
            ));
        }
    }
    let values = [repo, version, public_key.unwrap_or("")];
    let mut out = String::with_capacity(template.len() + 128);
    let mut seen = [0usize; 3];
    for line in template.split_inclusive('\n') {
        let replaced = BAKED_VARIABLES.iter().enumerate().find_map(|(i, var)| {
            line.starts_with(&format!("{var}=")).then(|| {
                seen[i] += 1;
                format!("{var}='{}'\n", values[i])
            })
        });
        out.push_str(replaced.as_deref().unwrap_or(line));
    }
    if seen.iter().any(|&n| n != 1) {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "the install script template must set each of {} exactly once at the start of a line",
                BAKED_VARIABLES.join(", ")
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_install_script_can_be_baked() {
        let s = bake_install_script(
            INSTALL_SCRIPT_TEMPLATE,
            "acme/flynn",
            "v2024.01.27.0",
            Some("RWQabc+/="),
        )
        .unwrap();
        assert!(s.contains("\nFLYNN_DEFAULT_REPO='acme/flynn'\n"));
        assert!(s.contains("\nFLYNN_DEFAULT_VERSION='v2024.01.27.0'\n"));
        assert!(s.contains("\nFLYNN_DEFAULT_PUBLIC_KEY='RWQabc+/='\n"));
        assert_eq!(s.lines().count(), INSTALL_SCRIPT_TEMPLATE.lines().count());
    }

    #[test]
    fn baking_refuses_odd_values_and_broken_templates() {
        assert!(bake_install_script(INSTALL_SCRIPT_TEMPLATE, "a/b'; rm -rf /", "v1.0.0", None).is_err());
        assert_eq!(
            bake_install_script("#!/bin/bash\n", "a/b", "v1.0.0", None)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidData
        );
    }
}
