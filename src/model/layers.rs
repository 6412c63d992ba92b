//! Squashfs layers: which ones a release needs and how each is checked (docs/host-layout.md#layer-cache).
//!
//! Flynn's `images.json` lists, for every image, `rootfs[].layers[]` entries of the form
//! `{"id": …, "type": "application/vnd.flynn.image.squashfs.v1", "length": N, "hashes":
//! {"sha512_256": …}}`. Those entries are the trust anchor for layers: `images.json` itself is
//! verified through `checksums.sha512`, and every layer file is checked against its entry. The
//! search walks the whole document for `layers` arrays, so both Flynn's map of image manifests
//! and artifact wrappers around them work.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha512_256};

use crate::error::{Error, ErrorKind, Result};
use crate::model::checksums::{eq_hex, hex};

/// One layer a release needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerSpec {
    /// The layer id (also the file name stem: `<id>.squashfs`).
    pub id: String,
    /// Exact size in bytes.
    pub length: u64,
    /// Lowercase hex sha512/256 of the file.
    pub sha512_256: String,
}

impl LayerSpec {
    /// `<id>.squashfs`, the name inside `layers.tar.gz` and in the layer directory.
    pub fn file_name(&self) -> String {
        layer_file_name(&self.id)
    }
}

/// `<id>.squashfs`.
pub fn layer_file_name(id: &str) -> String {
    format!("{id}.squashfs")
}

/// A layer id must be a plain token usable as a file name: letters, digits, `-`, `_`, `.`, not
/// starting with `.`, at most 200 characters.
pub fn validate_layer_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Every distinct layer `images.json` (the bytes, from `source`) refers to, sorted by id.
/// `InvalidData` for invalid JSON, an entry without a valid id, length or `sha512_256`, or two
/// entries with the same id and different length or hash.
pub fn layers_from_images_json(bytes: &[u8], source: &str) -> Result<Vec<LayerSpec>> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{source} is not valid JSON: {e}; the release is corrupt"),
        )
    })?;
    let mut found: BTreeMap<String, LayerSpec> = BTreeMap::new();
    collect(&doc, source, &mut found)?;
    Ok(found.into_values().collect())
}

fn collect(v: &serde_json::Value, source: &str, out: &mut BTreeMap<String, LayerSpec>) -> Result<()> {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                if k == "layers" {
                    if let Some(items) = child.as_array() {
                        for item in items {
                            let spec = parse_layer(item, source)?;
                            match out.get(&spec.id) {
                                Some(prev) if prev != &spec => {
                                    return Err(Error::new(
                                        ErrorKind::InvalidData,
                                        format!(
                                            "{source} lists layer {} twice with different length or hash; the release is corrupt",
                                            spec.id
                                        ),
                                    ));
                                }
                                Some(_) => {}
                                None => {
                                    out.insert(spec.id.clone(), spec);
                                }
                            }
                        }
                        continue;
                    }
                }
                collect(child, source, out)?;
            }
            Ok(())
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(|i| collect(i, source, out)),
        _ => Ok(()),
    }
}

fn parse_layer(item: &serde_json::Value, source: &str) -> Result<LayerSpec> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::InvalidData,
            format!(
                "{source} has an invalid layer entry ({why}): {}",
                truncate(&item.to_string())
            ),
        )
    };
    let id = item.get("id").and_then(|v| v.as_str()).ok_or_else(|| bad("no id"))?;
    if !validate_layer_id(id) {
        return Err(bad("the id is not a plain file-name token"));
    }
    let length = item
        .get("length")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| bad("no length"))?;
    let hash = item
        .get("hashes")
        .and_then(|h| h.get("sha512_256"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("no hashes.sha512_256"))?;
    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad("hashes.sha512_256 is not 64 hex digits"));
    }
    Ok(LayerSpec {
        id: id.to_string(),
        length,
        sha512_256: hash.to_ascii_lowercase(),
    })
}

fn truncate(s: &str) -> String {
    if s.len() > 200 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(200).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s.to_string()
    }
}

/// The name of a tar entry that may be extracted into the layer directory: valid UTF-8, one plain
/// path component (no `/`, no `\\`, not empty, `.` or `..`, no NUL). `None` otherwise.
pub fn flat_entry_name(raw: &[u8]) -> Option<&str> {
    let name = std::str::from_utf8(raw).ok()?;
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']);
    (!bad).then_some(name)
}

/// Hashes `reader` with sha512/256, reading at most `cap + 1` bytes; returns (length, hex).
pub fn sha512_256_reader(mut reader: impl Read, cap: u64) -> std::io::Result<(u64, String)> {
    let mut h = Sha512_256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    let mut limited = (&mut reader).take(cap.saturating_add(1));
    loop {
        let n = limited.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&h.finalize())))
}

/// True when the file at `path` exists, is a regular file (not a symlink), and has the layer's
/// length and sha512/256. Any read problem counts as "not valid" (the layer is fetched again).
pub fn layer_file_is_valid(path: &Path, spec: &LayerSpec) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.file_type().is_file() || meta.len() != spec.length {
        return false;
    }
    let Ok(f) = crate::fsutil::open_regular(path) else {
        return false;
    };
    match sha512_256_reader(f, spec.length) {
        Ok((len, h)) => len == spec.length && eq_hex(&h, &spec.sha512_256),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(layers: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "host": {"_type": "application/vnd.flynn.image.manifest.v1+json",
                     "rootfs": [{"platform": {"architecture": "amd64", "os": "linux"}, "layers": layers}]},
            "postgres": {"manifest": {"rootfs": [{"layers": [
                {"id": "aaa1", "type": "application/vnd.flynn.image.squashfs.v1", "length": 3, "hashes": {"sha512_256": "a".repeat(64)}}
            ]}]}}
        }))
        .unwrap()
    }

    #[test]
    fn finds_layers_everywhere_sorted_and_deduplicated() {
        let layers = serde_json::json!([
            {"id": "bbb2", "length": 10, "hashes": {"sha512_256": "B".repeat(64)}},
            {"id": "aaa1", "length": 3, "hashes": {"sha512_256": "a".repeat(64)}}
        ]);
        let specs = layers_from_images_json(&manifest(layers), "images.json").unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].id, "aaa1");
        assert_eq!(specs[1].sha512_256, "b".repeat(64));
        assert_eq!(specs[1].file_name(), "bbb2.squashfs");
    }

    #[test]
    fn rejects_bad_entries() {
        for (layers, why) in [
            (
                serde_json::json!([{"id": "../x", "length": 1, "hashes": {"sha512_256": "a".repeat(64)}}]),
                "file-name",
            ),
            (
                serde_json::json!([{"id": "x", "hashes": {"sha512_256": "a".repeat(64)}}]),
                "no length",
            ),
            (
                serde_json::json!([{"id": "x", "length": 1, "hashes": {}}]),
                "sha512_256",
            ),
            (
                serde_json::json!([{"id": "x", "length": 1, "hashes": {"sha512_256": "zz"}}]),
                "64 hex",
            ),
            (
                serde_json::json!([{"id": "aaa1", "length": 4, "hashes": {"sha512_256": "a".repeat(64)}}]),
                "twice",
            ),
        ] {
            let e = layers_from_images_json(&manifest(layers), "images.json").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData);
            assert!(e.message().contains(why) && e.message().contains("images.json"), "{e}");
        }
        assert!(layers_from_images_json(b"{", "i.json").is_err());
    }

    #[test]
    fn layer_file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"squashfs bytes";
        let (len, h) = sha512_256_reader(&data[..], u64::MAX).unwrap();
        let spec = LayerSpec {
            id: "l1".into(),
            length: len,
            sha512_256: h,
        };
        let p = dir.path().join(spec.file_name());
        assert!(!layer_file_is_valid(&p, &spec));
        std::fs::write(&p, data).unwrap();
        assert!(layer_file_is_valid(&p, &spec));
        std::fs::write(&p, b"squashfs BYTES").unwrap();
        assert!(!layer_file_is_valid(&p, &spec));
        std::fs::remove_file(&p).unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, data).unwrap();
        std::os::unix::fs::symlink(&real, &p).unwrap();
        assert!(!layer_file_is_valid(&p, &spec), "a symlink is never a valid layer");
    }
}
