//! Layers from outside the release (docs/layers.md): where a release's layers come from is
//! decided here, once, from what the signed release says, and the layers of Options B (an OCI
//! registry) and C (external storage) are fetched here, each streamed into a temp file in the
//! layer dir and checked against `images.json`'s `length` and `sha512_256` (and, from a
//! registry, the descriptor's sha256) before anything is switched.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::Url;

use super::{Ready, StageCtx};
use crate::error::{Error, ErrorKind, Result};
use crate::model::checksums::{Checksums, eq_hex};
use crate::model::images::{LAYER_URL_TEMPLATE, layer_url_templates};
use crate::model::layers::LayerSpec;
use crate::model::release::{CHECKSUMS_ASSET, LAYERS_ASSET};
use crate::remote::fetch::{Hashers, StreamTarget, stream_to_temp};
use crate::remote::ghrelease::ClientOptions;
use crate::remote::oci::{Credentials, Http, LayersRef, Registry, Transfer};

/// How many layers are downloaded at once.
const PARALLEL_LAYERS: usize = 4;

/// Where a release's layers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSource {
    /// Option A: `layers.tar.gz`, a release asset (listed in `checksums.sha512`).
    Archive,
    /// Option B: an OCI registry, the manifest pinned by digest.
    Registry(LayersRef),
    /// Option C: external storage; the template expands `{id}` to each layer's URL.
    Url(String),
}

/// Decides where the layers of a release come from (docs/layers.md#how-an-install-decides): the
/// signed `checksums.sha512` listing `layers.tar.gz` means the archive; otherwise every artifact
/// with layers in the verified `images.json` (from `source`) must carry the same
/// `layer_url_template`, either `oci://…@sha256:…/{id}` (a registry) or an https URL (http only to
/// loopback) containing `{id}` (external storage). Anything else is refused, naming the file and
/// field.
pub fn decide(sums: &Checksums, images: &[u8], source: &str) -> Result<LayerSource> {
    if sums.get(LAYERS_ASSET).is_some() {
        return Ok(LayerSource::Archive);
    }
    let templates = layer_url_templates(images, source)?;
    let refuse = |why: String| {
        Error::new(
            ErrorKind::InvalidData,
            format!(
                "{CHECKSUMS_ASSET} lists no {LAYERS_ASSET}, so the layers must come from {source}'s \
                 {LAYER_URL_TEMPLATE}, but {why}; the release cannot be installed: re-package it with --layers \
                 oci://… or --layers-url-template: nothing was changed"
            ),
        )
    };
    let mut chosen: Option<(&str, &str)> = None;
    for (image, t) in &templates {
        let Some(t) = t.as_deref() else {
            return Err(refuse(format!("the image {image:?} has none")));
        };
        match chosen {
            None => chosen = Some((image, t)),
            Some((first, ft)) if ft != t => {
                return Err(refuse(format!(
                    "the images {first:?} and {image:?} have different ones ({ft:?}, {t:?}); one release's layers \
                     come from one place"
                )));
            }
            Some(_) => {}
        }
    }
    let Some((image, t)) = chosen else {
        return Err(refuse("no image has layers with one".to_string()));
    };
    if t.starts_with("oci://") {
        return Ok(LayerSource::Registry(LayersRef::parse_template(t, source)?));
    }
    if !t.contains("{id}") {
        return Err(refuse(format!("the image {image:?}'s {t:?} has no {{id}}")));
    }
    crate::remote::oci::check_layer_url(&t.replace("{id}", "layer"), "layer URL").map_err(|e| {
        refuse(format!(
            "the image {image:?}'s {t:?} is not a registry (oci://) or an https URL: {}",
            e.message()
        ))
    })?;
    Ok(LayerSource::Url(t.to_string()))
}

/// A registry mirror's URL: `http://127.0.0.1:PORT` of a pull-through cache, or https
/// (`InvalidArgument` for an unparsable one, `InsecureUrl` for plain http to another host).
pub fn parse_mirror(m: &str) -> Result<Url> {
    let u = Url::parse(m).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "invalid registry mirror {:?} (--registry-mirror, {}): {e}; give the URL of a pull-through \
                 cache such as https://mirror.example or http://127.0.0.1:5000",
                crate::error::escape(m),
                crate::remote::oci::MIRROR_ENV
            ),
        )
    })?;
    crate::remote::ghrelease::options::check_allowed(&u, "registry mirror")?;
    Ok(u)
}

/// How layers are fetched from outside the release.
pub(super) struct RemoteAccess<'a> {
    pub mirror: Option<&'a Url>,
    pub options: &'a ClientOptions,
}

/// One layer's opener: given an offset, an open download.
enum Origin<'a> {
    Url(&'a Http, &'a str),
    Registry(&'a Registry, std::collections::BTreeMap<String, (u64, String)>),
}

/// Downloads the `needed` layers from `src` (a registry or external storage) into temp files in
/// `layer_dir`, at most [`PARALLEL_LAYERS`] at once, each checked while it streams. All or nothing:
/// on the first failure the others stop and every temp file is removed.
pub(super) fn fetch_remote_layers(
    src: &LayerSource,
    access: &RemoteAccess<'_>,
    layer_dir: &std::path::Path,
    needed: &[LayerSpec],
    shared: &StageCtx<'_>,
) -> Result<Vec<(LayerSpec, Ready)>> {
    let transfer = Transfer::from_options(access.options);
    let http;
    let registry;
    let origin = match src {
        LayerSource::Archive => unreachable!("the archive is extracted by transfer::fetch_layers"),
        LayerSource::Url(t) => {
            http = Http::new(transfer)?;
            Origin::Url(&http, t)
        }
        LayerSource::Registry(r) => {
            registry = Registry::new(&r.repository, access.mirror, Credentials::from_env(), transfer)?;
            let (manifest, _) = registry.manifest_by_digest(&r.manifest_sha256)?;
            let source = format!(
                "manifest sha256:{} of {} (from {})",
                r.manifest_sha256,
                r.repository.to_oci_url(),
                registry.base()
            );
            let by_id = crate::remote::oci::layers_by_id(&manifest, &source)?;
            // Every needed layer must be in the pinned manifest with images.json's length, before
            // any blob is fetched.
            for s in needed {
                match by_id.get(&s.id) {
                    None => {
                        return Err(Error::new(
                            ErrorKind::InvalidData,
                            format!(
                                "{source} lacks layer {} that images.json lists; the release is incomplete: nothing \
                                 was installed",
                                s.id
                            ),
                        ));
                    }
                    Some((size, _)) if *size != s.length => {
                        return Err(Error::new(
                            ErrorKind::InvalidData,
                            format!(
                                "{source} says layer {} is {size} bytes but images.json says {}; the release is \
                                 corrupt: nothing was installed",
                                s.id, s.length
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            Origin::Registry(&registry, by_id)
        }
    };
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, Result<Ready>)>> = Mutex::new(Vec::new());
    let panicked = std::thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL_LAYERS.min(needed.len()))
            .map(|_| {
                s.spawn(|| {
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(spec) = needed.get(i) else { return };
                        let r = fetch_one(&origin, access.options, layer_dir, spec, shared);
                        if r.is_err() {
                            // Stop the other downloads of this stage too: it fails either way.
                            failed.store(true, Ordering::Relaxed);
                            shared.cancelled.store(true, Ordering::Relaxed);
                        }
                        if let Ok(mut v) = results.lock() {
                            v.push((i, r));
                        }
                    }
                })
            })
            .collect();
        // Join every worker (not short-circuiting), then say whether any panicked.
        let mut panicked = false;
        for w in workers {
            panicked |= w.join().is_err();
        }
        panicked
    });
    if panicked {
        return Err(Error::new(ErrorKind::Panic, "a layer download panicked"));
    }
    let mut results = results
        .into_inner()
        .map_err(|_| Error::new(ErrorKind::Panic, "a layer download panicked"))?;
    results.sort_by_key(|(i, _)| *i);
    // The first real failure, not the cancellations it caused in the other downloads.
    if let Some(pos) = results
        .iter()
        .position(|(_, r)| r.as_ref().is_err_and(|e| e.kind() != ErrorKind::Cancelled))
        .or_else(|| results.iter().position(|(_, r)| r.is_err()))
    {
        let (_, r) = results.swap_remove(pos);
        return Err(r.expect_err("an error"));
    }
    if results.len() != needed.len() {
        return Err(Error::new(
            ErrorKind::Panic,
            "a layer download stopped without a result",
        ));
    }
    Ok(results
        .into_iter()
        .map(|(i, r)| (needed[i].clone(), r.expect("checked above")))
        .collect())
}

fn fetch_one(
    origin: &Origin<'_>,
    opts: &ClientOptions,
    layer_dir: &std::path::Path,
    spec: &LayerSpec,
    shared: &StageCtx<'_>,
) -> Result<Ready> {
    let name = spec.file_name();
    let t = StreamTarget {
        name: &name,
        size: spec.length,
        announced_by: "images.json says",
        retries: opts.retries,
        read_timeout: opts.read_timeout,
        min_bytes_per_window: opts.min_bytes_per_window,
    };
    let mut cb = |p: &str, d: u64, t: u64| shared.report(p, d, t);
    let (streamed, want_sha256) = match origin {
        Origin::Url(http, template) => {
            let url = crate::remote::oci::check_layer_url(&template.replace("{id}", &spec.id), "layer URL")?;
            let what = format!("layer {}", spec.id);
            let mut open = |off: u64| http.open_url(&url, &what, off);
            let hashers = Hashers::new(shared.report_sha512, false, true);
            (stream_to_temp(&t, layer_dir, &mut open, hashers, &mut cb)?, None)
        }
        Origin::Registry(reg, by_id) => {
            let (_, sha256) = &by_id[&spec.id];
            let mut open = |off: u64| reg.open_blob(sha256, off);
            let hashers = Hashers::new(shared.report_sha512, true, true);
            (
                stream_to_temp(&t, layer_dir, &mut open, hashers, &mut cb)?,
                Some(sha256.as_str()),
            )
        }
    };
    let got = streamed.hashers.sha512_256_hex().unwrap_or_default();
    if streamed.written != spec.length || !eq_hex(&got, &spec.sha512_256) {
        return Err(Error::new(
            ErrorKind::ChecksumMismatch,
            format!(
                "layer {} from {} has sha512_256 {got} ({} bytes), but images.json says {} ({} bytes); the layer is \
                 corrupt or tampered: nothing was installed",
                spec.id, streamed.last_url, streamed.written, spec.sha512_256, spec.length
            ),
        ));
    }
    if let Some(want) = want_sha256 {
        let got256 = streamed.hashers.sha256_hex().unwrap_or_default();
        if !eq_hex(&got256, want) {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "layer {} from {} has sha256 {got256}, but the release manifest's digest is sha256:{want}; the \
                     registry is serving other content: nothing was installed",
                    spec.id, streamed.last_url
                ),
            ));
        }
    }
    streamed
        .file
        .as_file()
        .sync_all()
        .map_err(|e| Error::io("fsync", streamed.file.path(), e))?;
    Ok(Ready {
        sha512: streamed.hashers.sha512_hex().unwrap_or_default(),
        file: streamed.file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGES: &str = r#"{"a":{"manifest":{"rootfs":[{"layers":[{"id":"l1"}]}]},"layer_url_template":"T1"},
        "b":{"manifest":{"rootfs":[{"layers":[{"id":"l2"}]}]},"layer_url_template":"T2"},
        "c":{"manifest":{"rootfs":[]}}}"#;

    fn images(t1: &str, t2: &str) -> Vec<u8> {
        IMAGES.replace("T1", t1).replace("T2", t2).into_bytes()
    }

    fn sums(with_archive: bool) -> Checksums {
        let mut s = Checksums::new();
        s.insert("images.json.gz", &"a".repeat(128)).unwrap();
        if with_archive {
            s.insert(LAYERS_ASSET, &"b".repeat(128)).unwrap();
        }
        s
    }

    #[test]
    fn the_checksums_decide_the_archive() {
        let i = images("file:///x/{id}", "file:///x/{id}");
        assert_eq!(decide(&sums(true), &i, "images.json.gz").unwrap(), LayerSource::Archive);
    }

    #[test]
    fn templates_decide_the_rest() {
        let d = "0".repeat(64);
        let oci = format!("oci://ghcr.io/flynn/layers@sha256:{d}/{{id}}");
        match decide(&sums(false), &images(&oci, &oci), "images.json.gz").unwrap() {
            LayerSource::Registry(r) => assert_eq!(r.manifest_sha256, d),
            other => panic!("{other:?}"),
        }
        let cdn = "https://cdn.example/flynn/{id}.squashfs";
        assert_eq!(
            decide(&sums(false), &images(cdn, cdn), "images.json.gz").unwrap(),
            LayerSource::Url(cdn.to_string())
        );
        let local = "http://127.0.0.1:9/{id}.squashfs";
        assert_eq!(
            decide(&sums(false), &images(local, local), "i").unwrap(),
            LayerSource::Url(local.to_string())
        );
    }

    #[test]
    fn anything_else_is_refused_naming_the_file_and_field() {
        let cdn = "https://cdn.example/{id}";
        for (t1, t2, why) in [
            (
                "file:///var/lib/flynn/layer-cache/{id}.squashfs",
                "file:///var/lib/flynn/layer-cache/{id}.squashfs",
                "https",
            ),
            ("http://cdn.example/{id}", "http://cdn.example/{id}", "plain http"),
            ("https://cdn.example/x", "https://cdn.example/x", "{id}"),
            (cdn, "https://other.example/{id}", "different"),
            (
                "oci://ghcr.io/flynn/layers/{id}",
                "oci://ghcr.io/flynn/layers/{id}",
                "manifest digest",
            ),
        ] {
            let e = decide(&sums(false), &images(t1, t2), "images.json.gz").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
            assert!(
                e.message().contains("images.json.gz")
                    && e.message().contains(LAYER_URL_TEMPLATE)
                    && e.message().contains(why),
                "{why}: {e}"
            );
        }
        let missing = IMAGES.replace(r#","layer_url_template":"T2""#, "").replace("T1", cdn);
        let e = decide(&sums(false), missing.as_bytes(), "images.json.gz").unwrap_err();
        assert!(e.message().contains("\"b\" has none"), "{e}");
    }
}
