//! The installed `images.<ver>.json`: Flynn's `images.json` with every artifact's
//! `layer_url_template` pointing at the host's layer cache (docs/host-layout.md#images-manifest).
//!
//! Flynn's build writes `build/manifests/images.json` as a map of image name to `ct.Artifact`
//! (controller/types/types.go): `{"type": "flynn", "manifest": {…}, "meta": {…}, "hashes": …,
//! "size": …, "uri": …, "layer_url_template": …}`. Flynn's daemon fetches a layer it has not
//! imported yet from `artifact.LayerURL(layer)`, the URI template `layer_url_template` expanded with
//! `{id}`. The builder writes `file:///var/lib/flynn/layer-cache/{id}.squashfs`, Flynn's export
//! rewrites it to its TUF repository; neither is where this host keeps the layers when it was
//! installed with `--layer-dir`, so the install sets it to `file://<runtime layer dir>/{id}.squashfs`.
//!
//! Only the value of `layer_url_template` changes (or the key is added, right after the
//! artifact's opening brace): every other byte of the document stays as it was, in particular each
//! `manifest` object, whose bytes Flynn hashes into the artifact's `manifest.id`. A top-level entry
//! that is not an artifact (a bare image manifest, as older synthetic builds wrote) is left alone.

use std::path::Path;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, ErrorKind, Result};

/// The key Flynn's `ct.Artifact` reads the layer URL template from.
pub const LAYER_URL_TEMPLATE: &str = "layer_url_template";

/// `file://<dir>/{id}.squashfs` for a layer directory as the host sees it (absolute). Every byte
/// of the path outside `A-Z a-z 0-9 - . _ ~ /` is percent-encoded, so the template parses as a URI
/// template and Go's `url.Parse` gives back exactly `dir` as the path.
pub fn layer_url_template(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::from("file://");
    let bytes = dir.as_os_str().as_bytes();
    let trimmed = match bytes {
        [rest @ .., b'/'] if !rest.is_empty() => rest,
        b => b,
    };
    for &b in trimmed {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if !out.ends_with('/') {
        out.push('/');
    }
    out.push_str("{id}.squashfs");
    out
}

/// A JSON object's members in document order, borrowed from the input (duplicates kept).
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether an artifact's `manifest` lists at least one layer in `rootfs[].layers[]`.
fn manifest_has_layers(manifest: &RawValue) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(manifest.get()) else {
        return false;
    };
    v.get("rootfs").and_then(|r| r.as_array()).is_some_and(|rootfs| {
        rootfs.iter().any(|fs| {
            fs.get("layers")
                .and_then(|l| l.as_array())
                .is_some_and(|l| !l.is_empty())
        })
    })
}

/// `images` (the verified `images.json`, from `source`) with `layer_url_template` set to
/// [`layer_url_template`]`(layer_dir)` in every artifact object that has layers or a template
/// (see the module docs). `InvalidData` when the document is not a JSON object, or an artifact
/// names a key twice, or has a `layer_url_template` that is not a string or a `manifest` that is
/// not an object: what Flynn would read from such a document is ambiguous.
pub fn with_layer_url_template(images: &[u8], layer_dir: &Path, source: &str) -> Result<Vec<u8>> {
    set_layer_url_template(images, &layer_url_template(layer_dir), source)
}

/// `images` with `layer_url_template` set to `template` in every artifact object that has layers
/// or a template, every other byte kept (see [`with_layer_url_template`]). The packager writes a
/// release's registry or external-storage template this way (docs/layers.md).
pub fn set_layer_url_template(images: &[u8], template: &str, source: &str) -> Result<Vec<u8>> {
    let bad = |why: String| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{source} {why}; the release is corrupt: nothing was installed"),
        )
    };
    let text = std::str::from_utf8(images).map_err(|_| bad("is not UTF-8 text".into()))?;
    let top: Members<'_> =
        serde_json::from_str(text).map_err(|e| bad(format!("is not a JSON object of images ({e})")))?;
    let template = serde_json::to_string(template).expect("a string encodes");
    let offset = |raw: &RawValue| raw.get().as_ptr() as usize - text.as_ptr() as usize;
    // (start, end, replacement) edits of the input, in document order.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (name, value) in &top.0 {
        if !value.get().starts_with('{') {
            continue;
        }
        let members: Members<'_> =
            serde_json::from_str(value.get()).map_err(|e| bad(format!("has an invalid entry {name:?} ({e})")))?;
        let mut seen = std::collections::BTreeSet::new();
        for (k, _) in &members.0 {
            if !seen.insert(k.as_str()) {
                return Err(bad(format!("names {k:?} twice in the image {name:?}")));
            }
        }
        let get = |key: &str| members.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
        let manifest = get("manifest");
        if let Some(m) = manifest {
            if !m.get().starts_with('{') {
                return Err(bad(format!(
                    "has a manifest of the image {name:?} that is not an object"
                )));
            }
        }
        match get(LAYER_URL_TEMPLATE) {
            Some(t) => {
                if !t.get().starts_with('"') {
                    return Err(bad(format!(
                        "has a {LAYER_URL_TEMPLATE} of the image {name:?} that is not a string"
                    )));
                }
                let start = offset(t);
                edits.push((start, start + t.get().len(), template.clone()));
            }
            None if manifest.is_some_and(manifest_has_layers) => {
                // After the artifact's opening brace; an object with a manifest has a member after it.
                let start = offset(value) + 1;
                edits.push((start, start, format!("{:?}:{template},", LAYER_URL_TEMPLATE)));
            }
            None => {}
        }
    }
    let mut out = Vec::with_capacity(images.len() + edits.len() * (template.len() + 24));
    let mut at = 0;
    for (start, end, with) in edits {
        out.extend_from_slice(&images[at..start]);
        out.extend_from_slice(with.as_bytes());
        at = end;
    }
    out.extend_from_slice(&images[at..]);
    Ok(out)
}

/// The `layer_url_template` of every artifact in `images` (from `source`) that has layers, by image
/// name in document order (`None` for an artifact without one). `InvalidData` for a document
/// that is not a JSON object or a template that is not a string.
pub fn layer_url_templates(images: &[u8], source: &str) -> Result<Vec<(String, Option<String>)>> {
    let bad = |why: String| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{source} {why}; the release is corrupt: nothing was installed"),
        )
    };
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(images).map_err(|e| bad(format!("is not a JSON object of images ({e})")))?;
    let mut out = Vec::new();
    for (name, v) in &doc {
        let Some(obj) = v.as_object() else { continue };
        let Some(manifest) = obj.get("manifest") else { continue };
        let raw =
            serde_json::value::to_raw_value(manifest).map_err(|e| bad(format!("has an invalid manifest ({e})")))?;
        if !manifest_has_layers(&raw) {
            continue;
        }
        let t = match obj.get(LAYER_URL_TEMPLATE) {
            None => None,
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            Some(_) => {
                return Err(bad(format!(
                    "has a {LAYER_URL_TEMPLATE} of the image {name:?} that is not a string"
                )));
            }
        };
        out.push((name.clone(), t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLYNN: &str = r#"{
  "host": {
    "type": "flynn",
    "manifest": {"_type":"application/vnd.flynn.image.manifest.v1+json","meta":null,"rootfs":[{"platform":{"architecture":"amd64","os":"linux"},"layers":[{"id":"ab12","type":"application/vnd.flynn.image.squashfs.v1","length":4096,"hashes":{"sha512_256":"00"}}]}]},
    "meta": {"flynn.component": "host", "manifest.id": "f00"},
    "hashes": {"sha512_256": "f00"},
    "size": 123,
    "layer_url_template": "file:///var/lib/flynn/layer-cache/{id}.squashfs"
  },
  "postgres": {"type":"flynn","manifest":{"rootfs":[{"layers":[{"id":"cd34"}]}]},"size":1},
  "empty": {"type":"flynn","manifest":{"rootfs":[]}},
  "bare": {"_type":"application/vnd.flynn.image.manifest.v1+json","rootfs":[{"layers":[{"id":"ef56"}]}]}
}
"#;

    fn v(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn sets_the_template_and_keeps_every_other_byte() {
        let out = with_layer_url_template(FLYNN.as_bytes(), Path::new("/data/layers"), "images.json").unwrap();
        let want_t = "file:///data/layers/{id}.squashfs";
        let doc = v(&out);
        assert_eq!(doc["host"][LAYER_URL_TEMPLATE], want_t);
        assert_eq!(doc["postgres"][LAYER_URL_TEMPLATE], want_t, "added where missing");
        assert!(doc["empty"].get(LAYER_URL_TEMPLATE).is_none(), "no layers, no template");
        assert!(
            doc["bare"].get(LAYER_URL_TEMPLATE).is_none(),
            "a bare manifest is not an artifact"
        );
        // Apart from the two edits, the bytes are the input's.
        let text = String::from_utf8(out).unwrap();
        let back = text
            .replace("file:///data/layers/{id}.squashfs", "file:///var/lib/flynn/layer-cache/{id}.squashfs")
            .replacen(
                r#"{"layer_url_template":"file:///var/lib/flynn/layer-cache/{id}.squashfs","type":"flynn","manifest":{"rootfs":[{"layers":[{"id":"cd34"}]}]}"#,
                r#"{"type":"flynn","manifest":{"rootfs":[{"layers":[{"id":"cd34"}]}]}"#,
                1,
            );
        assert_eq!(back, FLYNN);
        // The manifest objects are byte-identical substrings of the output.
        let manifest = r#"{"_type":"application/vnd.flynn.image.manifest.v1+json","meta":null,"rootfs":[{"platform":{"architecture":"amd64","os":"linux"},"layers":[{"id":"ab12","type":"application/vnd.flynn.image.squashfs.v1","length":4096,"hashes":{"sha512_256":"00"}}]}]}"#;
        assert!(text.contains(manifest));
        // Idempotent: rewriting again for the same directory changes nothing.
        let again = with_layer_url_template(text.as_bytes(), Path::new("/data/layers/"), "i").unwrap();
        assert_eq!(String::from_utf8(again).unwrap(), text);
    }

    #[test]
    fn an_exported_template_is_replaced_too() {
        let doc = br#"{"x":{"manifest":{"rootfs":[{"layers":[{"id":"a"}]}]},"layer_url_template":"https://dl.flynn.io/tuf?target=/layers/{id}.squashfs"}}"#;
        let out = with_layer_url_template(doc, Path::new("/var/lib/flynn/layer-cache"), "i").unwrap();
        assert_eq!(
            v(&out)["x"][LAYER_URL_TEMPLATE],
            "file:///var/lib/flynn/layer-cache/{id}.squashfs"
        );
    }

    #[test]
    fn templates_are_read_per_artifact_with_layers() {
        let t = layer_url_templates(FLYNN.as_bytes(), "images.json").unwrap();
        assert_eq!(
            t,
            vec![
                (
                    "host".to_string(),
                    Some("file:///var/lib/flynn/layer-cache/{id}.squashfs".to_string())
                ),
                ("postgres".to_string(), None),
            ]
        );
        let set = set_layer_url_template(FLYNN.as_bytes(), "https://cdn.example/{id}", "images.json").unwrap();
        let t = layer_url_templates(&set, "images.json").unwrap();
        assert!(
            t.iter().all(|(_, t)| t.as_deref() == Some("https://cdn.example/{id}")),
            "{t:?}"
        );
        assert_eq!(t.len(), 2);
        let e = layer_url_templates(
            br#"{"x":{"manifest":{"rootfs":[{"layers":[{"id":"a"}]}]},"layer_url_template":1}}"#,
            "i.json",
        )
        .unwrap_err();
        assert!(
            e.message().contains("i.json") && e.message().contains("not a string"),
            "{e}"
        );
    }

    #[test]
    fn odd_paths_are_percent_encoded() {
        assert_eq!(
            layer_url_template(Path::new("/srv/my layers/{x}%")),
            "file:///srv/my%20layers/%7Bx%7D%25/{id}.squashfs"
        );
        assert_eq!(layer_url_template(Path::new("/")), "file:///{id}.squashfs");
    }

    #[test]
    fn refuses_ambiguous_documents() {
        for (doc, why) in [
            (&b"[1]"[..], "not a JSON object"),
            (b"{", "not a JSON object"),
            (b"\xff", "UTF-8"),
            (br#"{"x":{"manifest":{},"manifest":{"rootfs":[]}}}"#, "twice"),
            (br#"{"x":{"manifest":"{}"}}"#, "not an object"),
            (br#"{"x":{"manifest":{},"layer_url_template":7}}"#, "not a string"),
        ] {
            let e = with_layer_url_template(doc, Path::new("/l"), "images.json.gz").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData);
            assert!(
                e.message().contains(why) && e.message().contains("images.json.gz"),
                "{e}"
            );
        }
    }
}
