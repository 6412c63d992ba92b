//! The release folder: `ROOT/<owner>/<repo>/<tag>/<asset files>`, re-scanned on every request.
//!
//! Scanning is cheap (a few `readdir`/`stat` calls); hashing is not, so each asset's sha256 is
//! cached keyed on (path, size, mtime) and recomputed only when the file changes. Every path that
//! leaves this module has been checked to lie inside the canonical root, so a symlink pointing
//! outside the folder is neither listed nor served.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::http::lock;
use crate::error::{Error, ErrorKind, Result};

/// Name of the optional per-release metadata file inside a tag directory.
pub(crate) const METADATA_FILE: &str = ".release.json";

/// The optional contents of `<tag>/.release.json`. Unknown keys are rejected so a typo
/// (`"prerelase"`) is reported instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: Option<String>,
    body: Option<String>,
    draft: Option<bool>,
    prerelease: Option<bool>,
    created_at: Option<String>,
    published_at: Option<String>,
    /// GitHub's API takes `"true"`/`"false"`/`"legacy"`; a JSON bool is accepted too.
    make_latest: Option<serde_json::Value>,
    target_commitish: Option<String>,
    discussion_url: Option<String>,
}

/// The folder of a repository's branch files (channel pointers): `<repo>/.branches/<branch>/`.
/// Hidden, so it is never a release.
pub(crate) const BRANCHES_DIR: &str = ".branches";

/// A repository directory.
pub(crate) struct Repo {
    /// Owner and name as spelled on disk (used in generated URLs and ids).
    pub owner: String,
    pub name: String,
    pub dir: PathBuf,
}

/// One release, as scanned.
pub(crate) struct Release {
    pub tag: String,
    pub id: u64,
    pub name: String,
    pub body: Option<String>,
    pub draft: bool,
    pub prerelease: bool,
    /// Creation time, whole seconds since the epoch.
    pub created: u64,
    /// Publication time, whole seconds (None for drafts).
    pub published: Option<u64>,
    /// `Some(true)`: "set as latest"; `Some(false)`: never latest; `None`: GitHub's rule.
    pub make_latest: Option<bool>,
    pub target_commitish: String,
    pub discussion_url: Option<String>,
    pub assets: Vec<Asset>,
}

/// One asset file.
pub(crate) struct Asset {
    pub name: String,
    pub id: u64,
    /// Canonical path, inside the root.
    pub path: PathBuf,
    pub size: u64,
    pub mtime: SystemTime,
}

/// The folder plus the sha256 cache.
pub(crate) struct Store {
    root: PathBuf,
    hashes: Mutex<HashMap<PathBuf, (u64, SystemTime, String)>>,
}

/// A stable numeric id for a path-like key: the first 6 bytes of its sha256, big-endian. Six
/// bytes keep ids below 2^53, so JavaScript clients read them exactly, and they survive restarts.
pub(crate) fn stable_id(key: &str) -> u64 {
    let h = Sha256::digest(key.as_bytes());
    h[..6].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// Whether a path component may name something we list or serve.
pub(crate) fn component_ok(c: &str) -> bool {
    !c.is_empty() && c != ".." && !c.starts_with('.') && !c.contains(['/', '\\', '\0'])
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// RFC 3339 in UTC with whole seconds, as GitHub formats timestamps.
pub(crate) fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

impl Store {
    /// A store over `root`, which must already be canonical.
    pub fn new(root: PathBuf) -> Store {
        Store {
            root,
            hashes: Mutex::new(HashMap::new()),
        }
    }

    /// Resolve `path` (which may be a symlink) to a canonical path inside the root, or None.
    fn inside(&self, path: &Path) -> Option<PathBuf> {
        let canon = fs::canonicalize(path).ok()?;
        canon.starts_with(&self.root).then_some(canon)
    }

    /// Find a child directory by exact name, else case-insensitively (GitHub treats owner and
    /// repository names case-insensitively). Returns its on-disk name and canonical path.
    fn child_dir(&self, parent: &Path, name: &str) -> Option<(String, PathBuf)> {
        if !component_ok(name) {
            return None;
        }
        let exact = parent.join(name);
        if let Some(p) = self.inside(&exact).filter(|p| p.is_dir()) {
            return Some((name.to_string(), p));
        }
        let entries = fs::read_dir(parent).ok()?;
        for e in entries.flatten() {
            let Ok(n) = e.file_name().into_string() else {
                continue;
            };
            if component_ok(&n) && n.eq_ignore_ascii_case(name) {
                if let Some(p) = self.inside(&e.path()).filter(|p| p.is_dir()) {
                    return Some((n, p));
                }
            }
        }
        None
    }

    /// The repository directory for `owner/name`, if it exists.
    pub fn repo(&self, owner: &str, name: &str) -> Option<Repo> {
        let (owner, odir) = self.child_dir(&self.root, owner)?;
        let (name, dir) = self.child_dir(&odir, name)?;
        Some(Repo { owner, name, dir })
    }

    /// Every release of `repo` (drafts included), newest first: by creation second, then by tag
    /// in descending natural order (`v1.10.0` before `v1.9.0`), then by tag bytes.
    pub fn releases(&self, repo: &Repo) -> Result<Vec<Release>> {
        let entries = fs::read_dir(&repo.dir).map_err(|e| Error::io("list releases in", &repo.dir, e))?;
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| Error::io("list releases in", &repo.dir, e))?;
            let Ok(tag) = e.file_name().into_string() else {
                continue;
            };
            if !component_ok(&tag) {
                continue;
            }
            let Some(dir) = self.inside(&e.path()) else {
                continue;
            };
            if !dir.is_dir() {
                continue;
            }
            out.push(self.release(repo, &tag, &dir)?);
        }
        out.sort_by(|a, b| {
            b.created
                .cmp(&a.created)
                .then_with(|| natural_cmp(&b.tag, &a.tag))
                .then_with(|| b.tag.cmp(&a.tag))
        });
        Ok(out)
    }

    fn release(&self, repo: &Repo, tag: &str, dir: &Path) -> Result<Release> {
        let meta_path = dir.join(METADATA_FILE);
        let meta: Metadata = match crate::fsutil::read_regular(&meta_path, 1 << 20)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "invalid release metadata {}: {e} (allowed keys: name, body, draft, \
                         prerelease, created_at, published_at, make_latest, target_commitish, \
                         discussion_url)",
                        meta_path.display()
                    ),
                )
            })?,
            None => Metadata::default(),
        };
        let time = |field: &str, v: &Option<String>| -> Result<Option<u64>> {
            match v {
                None => Ok(None),
                Some(s) => humantime::parse_rfc3339_weak(s.trim())
                    .map(|t| Some(secs(t)))
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::InvalidData,
                            format!(
                                "invalid {field} {s:?} in {}: {e} (use RFC 3339 UTC, e.g. \
                                 2024-01-27T12:00:00Z)",
                                meta_path.display()
                            ),
                        )
                    }),
            }
        };
        let dir_mtime = fs::metadata(dir)
            .and_then(|m| m.modified())
            .map_err(|e| Error::io("stat", dir, e))?;
        let created = time("created_at", &meta.created_at)?.unwrap_or(secs(dir_mtime));
        let draft = meta.draft.unwrap_or(false);
        let published = if draft {
            None
        } else {
            Some(time("published_at", &meta.published_at)?.unwrap_or(created))
        };
        let make_latest = match &meta.make_latest {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Bool(b)) => Some(*b),
            Some(serde_json::Value::String(s)) if s == "true" => Some(true),
            Some(serde_json::Value::String(s)) if s == "false" => Some(false),
            Some(serde_json::Value::String(s)) if s == "legacy" => None,
            Some(other) => {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "invalid make_latest {other} in {}: use true or false",
                        meta_path.display()
                    ),
                ));
            }
        };
        let key = format!("{}/{}/{tag}", repo.owner, repo.name);
        let mut assets = Vec::new();
        let entries = fs::read_dir(dir).map_err(|e| Error::io("list assets in", dir, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io("list assets in", dir, e))?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if !component_ok(&name) {
                continue;
            }
            let Some(path) = self.inside(&e.path()) else {
                continue;
            };
            let Ok(m) = fs::metadata(&path) else { continue };
            if !m.is_file() {
                continue;
            }
            assets.push(Asset {
                id: stable_id(&format!("{key}/{name}")),
                name,
                path,
                size: m.len(),
                mtime: m.modified().unwrap_or(UNIX_EPOCH),
            });
        }
        // GitHub lists assets in upload order; we have no upload order, so use the name.
        assets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Release {
            tag: tag.to_string(),
            id: stable_id(&key),
            name: meta.name.unwrap_or_else(|| tag.to_string()),
            body: meta.body,
            draft,
            prerelease: meta.prerelease.unwrap_or(false),
            created,
            published,
            make_latest,
            target_commitish: meta.target_commitish.unwrap_or_else(|| "master".to_string()),
            discussion_url: meta.discussion_url,
            assets,
        })
    }

    /// The sha256 (hex) of an asset, from the cache when its size and mtime are unchanged.
    pub fn sha256(&self, asset: &Asset) -> Result<String> {
        if let Some((size, mtime, hex)) = lock(&self.hashes).get(&asset.path) {
            if *size == asset.size && *mtime == asset.mtime {
                return Ok(hex.clone());
            }
        }
        // Hash outside the lock so one large file does not stall every other request.
        let mut f = crate::fsutil::open_regular(&asset.path).map_err(|e| Error::io("open", &asset.path, e))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io("read", &asset.path, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let hex = hex(&h.finalize());
        lock(&self.hashes).insert(asset.path.clone(), (asset.size, asset.mtime, hex.clone()));
        Ok(hex)
    }

    /// A file of branch `branch` of `repo` (the web host's `raw/<branch>/<path>`):
    /// `<repo dir>/.branches/<branch>/<path>`. Every component must be a plain name, and the
    /// canonical file must be a regular file inside the root.
    pub fn branch_file(&self, repo: &Repo, branch: &str, path: &[&str]) -> Option<PathBuf> {
        if path.is_empty() || !component_ok(branch) || !path.iter().all(|p| component_ok(p)) {
            return None;
        }
        let mut p = repo.dir.join(BRANCHES_DIR).join(branch);
        for c in path {
            p.push(c);
        }
        let canon = self.inside(&p)?;
        fs::metadata(&canon).ok()?.is_file().then_some(canon)
    }

    /// The file for a storage URL `/<owner>/<repo>/<tag>/<name>`: every component must be a plain
    /// name, and the canonical file must be a regular file inside the root.
    pub fn storage_file(&self, parts: &[String]) -> Option<PathBuf> {
        if parts.len() != 4 || !parts.iter().all(|p| component_ok(p)) {
            return None;
        }
        let mut p = self.root.clone();
        for c in parts {
            p.push(c);
        }
        let canon = self.inside(&p)?;
        fs::metadata(&canon).ok()?.is_file().then_some(canon)
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The latest release by GitHub's rule: the newest non-draft, non-prerelease release flagged
/// `make_latest: true` if any; otherwise the most recently created non-draft, non-prerelease one
/// not flagged `make_latest: false`. `releases` must be sorted newest first.
pub(crate) fn latest(releases: &[Release]) -> Option<&Release> {
    let eligible = || releases.iter().filter(|r| !r.draft && !r.prerelease);
    eligible()
        .find(|r| r.make_latest == Some(true))
        .or_else(|| eligible().find(|r| r.make_latest != Some(false)))
}

/// Natural order: digit runs compare as numbers, everything else bytewise.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            // Compare without leading zeros: longer means larger, then lexicographic.
            let x = trim_zeros(&a[si..i]);
            let y = trim_zeros(&b[sj..j]);
            let o = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let o = a[i].cmp(&b[j]);
            if o != Ordering::Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let k = d.iter().position(|c| *c != b'0').unwrap_or(d.len());
    &d[k..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_sorts_numbers_numerically() {
        assert_eq!(natural_cmp("v1.10.0", "v1.9.0"), Ordering::Greater);
        assert_eq!(natural_cmp("v20240127.1", "v20240127.0"), Ordering::Greater);
        assert_eq!(natural_cmp("v1.2", "v1.2"), Ordering::Equal);
        assert_eq!(natural_cmp("v1.2", "v1.2.1"), Ordering::Less);
        assert_eq!(natural_cmp("v01", "v1"), Ordering::Equal);
    }

    #[test]
    fn ids_are_stable_and_small() {
        let id = stable_id("flynn/flynn/v1.0.0");
        assert_eq!(id, stable_id("flynn/flynn/v1.0.0"));
        assert!(id < (1u64 << 48));
        assert_ne!(id, stable_id("flynn/flynn/v1.0.1"));
    }

    #[test]
    fn components_are_checked() {
        for bad in ["", "..", ".", ".release.json", "a/b", "a\\b", "a\0"] {
            assert!(!component_ok(bad), "{bad:?}");
        }
        assert!(component_ok("flynn-host-linux-amd64.gz"));
    }
}
