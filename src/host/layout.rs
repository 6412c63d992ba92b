//! Where files go on a host (docs/host-layout.md#host-layout), and the primitives of the install transaction: creating
//! directories that can be taken back, the update lock, atomic symlink switches.
//!
//! The layout is compatible with Flynn's own downloader: versioned binaries
//! `<bin>/flynn-host.<ver>` with relative symlinks `flynn-host -> flynn-host.<ver>`, configuration
//! in `/etc/flynn`, squashfs layers in `/var/lib/flynn/layer-cache`.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// Default binary directory.
pub const DEFAULT_BIN_DIR: &str = "/usr/local/bin";
/// Default configuration directory.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/flynn";
/// Default layer cache directory.
pub const DEFAULT_LAYER_DIR: &str = "/var/lib/flynn/layer-cache";
/// The lock file that keeps two installs or updates from running at once.
pub const LOCK_FILE: &str = "update.lock";
/// The file recording the chosen channel.
pub const CHANNEL_FILE: &str = "channel.txt";
/// The bootstrap manifest's file name in the config dir.
pub const BOOTSTRAP_FILE: &str = "bootstrap-manifest.json";

/// The three directories of a host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostLayout {
    /// Binaries and their symlinks.
    pub bin_dir: PathBuf,
    /// Receipt, manifests, channel.
    pub config_dir: PathBuf,
    /// Squashfs layers.
    pub layer_dir: PathBuf,
    /// The layer directory as the host itself sees it: `layer_dir` without the `--root` prefix,
    /// absolute. Flynn's daemon reads layers from here (the installed images manifest points at it).
    pub runtime_layer_dir: PathBuf,
}

fn under(root: Option<&Path>, dir: &Path) -> PathBuf {
    match root {
        None => dir.to_path_buf(),
        Some(root) => {
            let rel: PathBuf = dir.components().filter(|c| matches!(c, Component::Normal(_))).collect();
            root.join(rel)
        }
    }
}

/// `dir` as the host sees it: inside `root` it is the same path from `/` (as [`under`] places it);
/// without a root, `dir` made absolute against the current directory.
fn runtime(root: Option<&Path>, dir: &Path) -> PathBuf {
    match root {
        Some(_) => Path::new("/").join(under(Some(Path::new("")), dir)),
        None => std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
    }
}

impl HostLayout {
    /// The layout for the given overrides; with `root`, every directory (default or given) is
    /// taken inside it.
    pub fn new(
        root: Option<&Path>,
        bin_dir: Option<&Path>,
        config_dir: Option<&Path>,
        layer_dir: Option<&Path>,
    ) -> HostLayout {
        HostLayout {
            bin_dir: under(root, bin_dir.unwrap_or(Path::new(DEFAULT_BIN_DIR))),
            config_dir: under(root, config_dir.unwrap_or(Path::new(DEFAULT_CONFIG_DIR))),
            layer_dir: under(root, layer_dir.unwrap_or(Path::new(DEFAULT_LAYER_DIR))),
            runtime_layer_dir: runtime(root, layer_dir.unwrap_or(Path::new(DEFAULT_LAYER_DIR))),
        }
    }

    /// Refuses a root folder that exists but is not a directory (a file given as `--root` would
    /// otherwise surface as a confusing "Not a directory" on some file inside it). A root that does
    /// not exist yet is fine: installs create it.
    pub fn check_root(root: &Path) -> Result<()> {
        match std::fs::metadata(root) {
            Ok(m) if !m.is_dir() => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("the root {} is not a directory", root.display()),
            )
            .with_hint(crate::Hint::ChooseRoot)),
            _ => Ok(()),
        }
    }

    /// `<bin>/<name>.<ver>`.
    pub fn versioned_binary(&self, name: &str, version: &str) -> PathBuf {
        self.bin_dir.join(format!("{name}.{version}"))
    }

    /// `<config>/images.<ver>.json`.
    pub fn images_file(&self, version: &str) -> PathBuf {
        self.config_dir.join(format!("images.{version}.json"))
    }

    /// `<layer>/<id>.squashfs`.
    pub fn layer_file(&self, id: &str) -> PathBuf {
        self.layer_dir.join(crate::model::layers::layer_file_name(id))
    }
}

/// Directories created during a transaction, removed again (if still empty) unless committed, so
/// a failed install leaves not even an empty folder behind.
#[derive(Debug, Default)]
pub struct CreatedDirs {
    dirs: Vec<PathBuf>,
    committed: bool,
}

impl CreatedDirs {
    /// Creates `dir` and its missing parents (mode 0755), remembering which were new. Refuses a
    /// directory that is world-writable without the sticky bit, or that is not a directory.
    pub fn ensure(&mut self, dir: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut cur = Some(dir);
        while let Some(d) = cur {
            if d.as_os_str().is_empty() {
                break; // the current directory of a relative path
            }
            match std::fs::metadata(d) {
                Ok(m) if m.is_dir() => break,
                Ok(_) => {
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!("{} exists and is not a directory; move it away", d.display()),
                    ));
                }
                Err(_) => missing.push(d.to_path_buf()),
            }
            cur = d.parent();
        }
        for d in missing.iter().rev() {
            match std::fs::create_dir(d) {
                Ok(()) => {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                        .map_err(|e| Error::io("set permissions on", d, e))?;
                    self.dirs.push(d.clone());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create directory", d, e)),
            }
        }
        check_dir_safe(dir)
    }

    /// Keeps the created directories.
    pub fn commit(&mut self) {
        self.committed = true;
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        if !self.committed {
            for d in self.dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// Refuses to install into a directory that anyone can write to (without the sticky bit):
/// another user could swap files in it between verification and use.
pub fn check_dir_safe(dir: &Path) -> Result<()> {
    let m = std::fs::metadata(dir).map_err(|e| Error::io("inspect", dir, e))?;
    let mode = m.mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{} is world-writable (mode {:o}); refusing to install root-owned binaries there: chmod o-w it",
                dir.display(),
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// An exclusive lock on `<config>/update.lock`, taken without waiting. The file is removed when
/// the lock is released, so a finished run leaves nothing behind; a holder that finds the path no
/// longer names its file knows it lost a race and gives up.
#[derive(Debug)]
pub struct ConfigLock {
    path: PathBuf,
    _file: File,
}

impl ConfigLock {
    /// Takes the lock or fails at once with `Locked`.
    pub fn acquire(config_dir: &Path) -> Result<ConfigLock> {
        let path = config_dir.join(LOCK_FILE);
        let busy = || {
            Error::new(
                ErrorKind::Locked,
                format!(
                    "another flynnrel install or update is running (lock {} is held); wait for it to finish",
                    path.display()
                ),
            )
        };
        // The lock file is ours alone and never a link: a symlink planted at its path is removed
        // (unlink does not follow it), and the open refuses to follow one (O_NOFOLLOW), so root
        // never creates or locks a file outside the config dir.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(&path).map_err(|e| Error::io("remove the planted symlink", &path, e))?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| Error::io("open the lock file", &path, e))?;
        if !file.metadata().map_err(|e| Error::io("inspect", &path, e))?.is_file() {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{} is not a regular file; remove it (no install or update is running) and try again",
                    path.display()
                ),
            ));
        }
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(busy());
        }
        let ours = file.metadata().map_err(|e| Error::io("inspect", &path, e))?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {}
            _ => return Err(busy()),
        }
        let _ = std::io::Write::write_all(&mut &file, format!("{}\n", std::process::id()).as_bytes());
        Ok(ConfigLock { path, _file: file })
    }
}

impl Drop for ConfigLock {
    fn drop(&mut self) {
        // Remove while still holding the lock; the file is closed (and unlocked) after this.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Points `link` at `target` (a relative name) atomically: a new symlink under a random name in
/// the same directory, renamed over `link`.
pub fn replace_symlink(link: &Path, target: &Path) -> Result<()> {
    let dir = link.parent().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{} has no parent directory", link.display()),
        )
    })?;
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for attempt in 0..16u32 {
        let tmp = dir.join(format!(".{name}.link-{}-{attempt}-{}", std::process::id(), nonce()));
        match std::os::unix::fs::symlink(target, &tmp) {
            Ok(()) => {
                return std::fs::rename(&tmp, link).map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    Error::io("switch the symlink", link, e)
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create a symlink in", dir, e)),
        }
    }
    Err(Error::new(
        ErrorKind::Io,
        format!("cannot create a temporary symlink in {}", dir.display()),
    ))
}

fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// The version a versioned symlink currently points at: `flynn-host -> flynn-host.v1.2.3` gives
/// `v1.2.3`. `None` when the link is missing or points elsewhere.
pub fn linked_version(bin_dir: &Path, name: &str) -> Option<String> {
    let target = std::fs::read_link(bin_dir.join(name)).ok()?;
    let t = target.to_str()?;
    t.strip_prefix(&format!("{name}."))
        .filter(|v| !v.is_empty() && !v.contains('/'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_under_root() {
        let l = HostLayout::new(Some(Path::new("/tmp/r")), None, Some(Path::new("/opt/flynn/etc")), None);
        assert_eq!(l.bin_dir, Path::new("/tmp/r/usr/local/bin"));
        assert_eq!(l.config_dir, Path::new("/tmp/r/opt/flynn/etc"));
        assert_eq!(l.layer_dir, Path::new("/tmp/r/var/lib/flynn/layer-cache"));
        assert_eq!(
            l.versioned_binary("flynn-host", "v1.0.0"),
            Path::new("/tmp/r/usr/local/bin/flynn-host.v1.0.0")
        );
        // `..` cannot climb out of the root.
        let l = HostLayout::new(Some(Path::new("/tmp/r")), Some(Path::new("/../../etc")), None, None);
        assert_eq!(l.bin_dir, Path::new("/tmp/r/etc"));
        let l = HostLayout::new(None, None, None, None);
        assert_eq!(l.config_dir, Path::new("/etc/flynn"));
    }

    #[test]
    fn runtime_layer_dir_is_the_hosts_view() {
        let r = Some(Path::new("/tmp/r"));
        let l = HostLayout::new(r, None, None, None);
        assert_eq!(l.runtime_layer_dir, Path::new(DEFAULT_LAYER_DIR));
        let l = HostLayout::new(r, None, None, Some(Path::new("/data/../layers")));
        assert_eq!(l.layer_dir, Path::new("/tmp/r/data/layers"));
        assert_eq!(l.runtime_layer_dir, Path::new("/data/layers"));
        let l = HostLayout::new(None, None, None, Some(Path::new("/srv/layers")));
        assert_eq!(l.runtime_layer_dir, Path::new("/srv/layers"));
        let l = HostLayout::new(None, None, None, Some(Path::new("rel/layers")));
        assert_eq!(l.runtime_layer_dir, std::env::current_dir().unwrap().join("rel/layers"));
    }

    #[test]
    fn created_dirs_are_removed_unless_committed() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("a/b/c");
        {
            let mut g = CreatedDirs::default();
            g.ensure(&deep).unwrap();
            assert!(deep.is_dir());
        }
        assert!(!t.path().join("a").exists());
        let mut g = CreatedDirs::default();
        g.ensure(&deep).unwrap();
        g.commit();
        drop(g);
        assert!(deep.is_dir());
    }

    #[test]
    fn world_writable_dirs_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("ww");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = CreatedDirs::default().ensure(&d).unwrap_err();
        assert!(e.message().contains("world-writable"), "{e}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        CreatedDirs::default().ensure(&d).unwrap();
    }

    #[test]
    fn lock_is_exclusive_and_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let a = ConfigLock::acquire(t.path()).unwrap();
        let e = ConfigLock::acquire(t.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Locked);
        assert!(e.message().contains("update.lock"));
        drop(a);
        assert!(!t.path().join(LOCK_FILE).exists());
        let _b = ConfigLock::acquire(t.path()).unwrap();
    }

    #[test]
    fn symlinks_switch_atomically_and_name_their_version() {
        let t = tempfile::tempdir().unwrap();
        let link = t.path().join("flynn-host");
        assert_eq!(linked_version(t.path(), "flynn-host"), None);
        replace_symlink(&link, Path::new("flynn-host.v1")).unwrap();
        assert_eq!(linked_version(t.path(), "flynn-host").as_deref(), Some("v1"));
        replace_symlink(&link, Path::new("flynn-host.v2")).unwrap();
        assert_eq!(linked_version(t.path(), "flynn-host").as_deref(), Some("v2"));
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1, "no temp links left");
        replace_symlink(&link, Path::new("elsewhere/flynn-host.v3")).unwrap();
        assert_eq!(linked_version(t.path(), "flynn-host"), None);
    }
}
