//! The persistent ETag cache (docs/host-layout.md#the-etag-cache): the API bodies a host has
//! read, with their ETags, kept across processes in `<config-dir>/cache/github-etags.json` so
//! that the next `update --check` sends `If-None-Match` and GitHub's `304 Not Modified`, which
//! costs no rate limit, is enough.
//!
//! The rules, all enforced here:
//! - **Never trusted for content.** A cached body is used only when the server answers `304` to
//!   the `If-None-Match` it was sent with, and it then goes through exactly the parsing and checks
//!   a fresh body goes through (the client hands both to the same code). An entry whose body no
//!   longer matches its recorded sha256, or whose ETag is not a valid header value, is dropped
//!   on load, so the request goes out unconditional and a fresh body replaces it.
//! - **Read leniently.** A missing, unreadable, corrupt, oversized or foreign file is an empty
//!   cache, never an error; it is replaced on the next successful write.
//! - **Bounded.** At most [`CacheLimits::max_entries`] entries and
//!   [`CacheLimits::max_bytes`] bytes of bodies; the least recently used go first.
//! - **Written atomically, mode 0600** (temp file + rename in the same directory): a concurrent
//!   process sees the old file or the new one, never a torn one. Two writers merge with what is
//!   on disk at the time of writing, and the last writer wins for a URL both wrote.
//! - **Never holds a credential.** Entries are URL, ETag, body and bookkeeping; the
//!   `Authorization` header is not a part of any of them.
//! - **Written only when the operation succeeded**: the client collects what it learned and the
//!   operation calls [`super::Client::save_etag_cache`] at its end, so a refused install or update
//!   leaves nothing new on disk.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The cache file's name inside [`CACHE_DIR`].
pub const CACHE_FILE: &str = "github-etags.json";
/// The directory below the host's config dir that holds caches.
pub const CACHE_DIR: &str = "cache";
/// The format tag; a file with another is ignored (and replaced).
const FORMAT: &str = "flynnrel-etag-cache/1";
/// Longest ETag kept (GitHub's are under 100 bytes).
const MAX_ETAG: usize = 256;

/// Where the cache of the host whose config dir is `config_dir` lives.
pub fn path_in(config_dir: &Path) -> PathBuf {
    config_dir.join(CACHE_DIR).join(CACHE_FILE)
}

/// How much the cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Entries (one per API URL).
    pub max_entries: usize,
    /// Bytes of bodies, summed.
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    /// 64 entries and 16 MiB: a host reads a handful of API URLs (the release list, a release by
    /// tag), and a list of 100 Flynn releases is a few MiB.
    fn default() -> Self {
        CacheLimits {
            max_entries: 64,
            max_bytes: 16 << 20,
        }
    }
}

impl CacheLimits {
    /// The largest file read: bodies are JSON text stored as JSON strings (escaping can grow
    /// them), plus bookkeeping per entry. Anything larger is not read at all.
    fn max_file_bytes(&self) -> u64 {
        self.max_bytes
            .saturating_mul(2)
            .saturating_add(self.max_entries as u64 * 1024)
            .saturating_add(4096)
    }
}

/// One cached response.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) etag: String,
    pub(crate) body: Arc<Vec<u8>>,
    /// When it was last used (ms since the epoch): for least-recently-used eviction.
    pub(crate) used: u64,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    url: String,
    etag: String,
    sha256: String,
    used: u64,
    body: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    entries: Vec<FileEntry>,
}

/// Milliseconds since the epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `etag` can be sent back as an `If-None-Match` value (visible ASCII, bounded).
pub(crate) fn valid_etag(etag: &str) -> bool {
    !etag.is_empty() && etag.len() <= MAX_ETAG && etag.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Reads the cache at `path`. Anything wrong with the file, or with one entry, means that file
/// or entry is not there: the result is always usable, and bounded by `limits`.
pub(crate) fn load(path: &Path, limits: CacheLimits) -> HashMap<String, Entry> {
    let mut out = HashMap::new();
    let data = match crate::fsutil::read_regular(path, limits.max_file_bytes()) {
        Ok(Some(d)) => d,
        _ => return out,
    };
    let Ok(file) = serde_json::from_slice::<File>(&data) else {
        return out;
    };
    if file.format != FORMAT {
        return out;
    }
    for e in file.entries {
        let body = e.body.into_bytes();
        if !valid_etag(&e.etag) || hex(&Sha256::digest(&body)) != e.sha256 || body.len() as u64 > limits.max_bytes {
            continue;
        }
        out.insert(
            e.url,
            Entry {
                etag: e.etag,
                body: Arc::new(body),
                used: e.used,
            },
        );
    }
    evict(&mut out, limits);
    out
}

/// Drops the least recently used entries until `entries` is within `limits`.
pub(crate) fn evict(entries: &mut HashMap<String, Entry>, limits: CacheLimits) {
    let total = |m: &HashMap<String, Entry>| m.values().map(|e| e.body.len() as u64).sum::<u64>();
    let mut bytes = total(entries);
    if entries.len() <= limits.max_entries && bytes <= limits.max_bytes {
        return;
    }
    let mut order: Vec<(u64, String)> = entries.iter().map(|(k, e)| (e.used, k.clone())).collect();
    order.sort();
    for (_, url) in order {
        if entries.len() <= limits.max_entries && bytes <= limits.max_bytes {
            break;
        }
        if let Some(e) = entries.remove(&url) {
            bytes -= e.body.len() as u64;
        }
    }
}

/// Merges `fresh` (what this process learned or used) into the cache on disk and writes it back
/// atomically with mode 0600, creating `<config-dir>/cache` (0700) when needed. A directory that
/// is a symlink or not a directory is not written through. Errors are returned for the caller
/// to log: a cache that cannot be written is never a reason to fail an operation.
pub(crate) fn save(path: &Path, fresh: &HashMap<String, Entry>, limits: CacheLimits) -> crate::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(crate::Error::new(
                crate::ErrorKind::Io,
                format!("{} is not a directory; the ETag cache is not written", dir.display()),
            ));
        }
        Err(_) => crate::fsutil::create_dir_all(dir, 0o700)?,
    }
    let mut all = load(path, limits);
    for (url, e) in fresh {
        all.insert(url.clone(), e.clone());
    }
    evict(&mut all, limits);
    write(path, all)
}

fn write(path: &Path, all: HashMap<String, Entry>) -> crate::Result<()> {
    let mut entries: Vec<FileEntry> = all
        .into_iter()
        .filter_map(|(url, e)| {
            let sha256 = hex(&Sha256::digest(e.body.as_slice()));
            let body = String::from_utf8(e.body.to_vec()).ok()?;
            Some(FileEntry {
                url,
                etag: e.etag,
                sha256,
                used: e.used,
                body,
            })
        })
        .collect();
    entries.sort_by(|a, b| a.url.cmp(&b.url));
    let file = File {
        format: FORMAT.to_string(),
        entries,
    };
    let data = serde_json::to_vec(&file).map_err(|e| {
        crate::Error::new(
            crate::ErrorKind::InvalidData,
            format!("cannot encode the ETag cache: {e}"),
        )
    })?;
    crate::fsutil::atomic_write(path, &data, 0o600)
}

/// Removes the entries for `urls` from the cache file at `path` (atomically, like [`save`]);
/// the file is left as it is when none of them is in it.
pub(crate) fn forget(path: &Path, urls: &HashSet<String>, limits: CacheLimits) -> crate::Result<()> {
    let mut all = load(path, limits);
    let before = all.len();
    all.retain(|u, _| !urls.contains(u));
    if all.len() == before {
        return Ok(());
    }
    write(path, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str, used: u64) -> Entry {
        Entry {
            etag: format!("W/\"{used}\""),
            body: Arc::new(body.as_bytes().to_vec()),
            used,
        }
    }

    #[test]
    fn evicts_least_recently_used_by_count_and_bytes() {
        let mut m: HashMap<String, Entry> = (0..5).map(|i| (format!("u{i}"), entry("0123456789", i))).collect();
        evict(
            &mut m,
            CacheLimits {
                max_entries: 3,
                max_bytes: 1000,
            },
        );
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        assert_eq!(keys, ["u2", "u3", "u4"]);
        evict(
            &mut m,
            CacheLimits {
                max_entries: 3,
                max_bytes: 15,
            },
        );
        assert_eq!(m.keys().collect::<Vec<_>>(), ["u4"]);
    }

    #[test]
    fn round_trip_and_lenient_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let path = path_in(tmp.path());
        let limits = CacheLimits::default();
        assert!(load(&path, limits).is_empty(), "missing file is an empty cache");
        let fresh: HashMap<String, Entry> = [("https://a/x".to_string(), entry("[1]", 7))].into();
        save(&path, &fresh, limits).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let back = load(&path, limits);
        assert_eq!(back["https://a/x"].body.as_slice(), b"[1]");
        // A second writer merges with what is on disk.
        let other: HashMap<String, Entry> = [("https://a/y".to_string(), entry("[2]", 8))].into();
        save(&path, &other, limits).unwrap();
        assert_eq!(load(&path, limits).len(), 2);
        // A body changed without its hash, an invalid ETag: those entries are dropped.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("[2]", "[3]")).unwrap();
        assert_eq!(load(&path, limits).keys().collect::<Vec<_>>(), ["https://a/x"]);
        std::fs::write(&path, text.replace("W/\\\"7\\\"", "W/\\\"7\\r\\nX: y\\\"")).unwrap();
        assert_eq!(load(&path, limits).keys().collect::<Vec<_>>(), ["https://a/y"]);
        // Garbage, a foreign format, a file over the size bound: empty.
        for junk in [
            b"{not json".to_vec(),
            br#"{"format":"other/1","entries":[]}"#.to_vec(),
            vec![b' '; limits.max_file_bytes() as usize + 1],
        ] {
            std::fs::write(&path, junk).unwrap();
            assert!(load(&path, limits).is_empty());
        }
        // And a corrupt file is replaced by the next write.
        save(&path, &fresh, limits).unwrap();
        assert_eq!(load(&path, limits).len(), 1);
    }

    #[test]
    fn a_symlinked_cache_dir_is_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let config = tmp.path().join("etc");
        std::fs::create_dir(&config).unwrap();
        std::os::unix::fs::symlink(&elsewhere, config.join(CACHE_DIR)).unwrap();
        let fresh: HashMap<String, Entry> = [("https://a/x".to_string(), entry("[1]", 1))].into();
        assert!(save(&path_in(&config), &fresh, CacheLimits::default()).is_err());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
