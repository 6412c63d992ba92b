//! Small file-system helpers shared by the receipt, download and install code.
//!
//! The one rule they enforce: a file another process may read (the receipt, a config file, a
//! binary) is never seen half-written. [`atomic_write`] writes a temp file created exclusively in
//! the destination directory (never a predictable `/tmp` path), fsyncs it, renames it into place
//! and fsyncs the directory, so after a crash the path holds either the old or the new content.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// The directory a path lives in; `.` for a bare file name (its parent is `""`).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Bytes written between two requests to start writeback (see [`WritebackFile`]).
pub const WRITEBACK_WINDOW: u64 = 8 << 20;

/// A file being written that asks the kernel to start writing each completed
/// [`WRITEBACK_WINDOW`] to disk while the next one is produced (`sync_file_range(2)` with
/// `SYNC_FILE_RANGE_WRITE`, which starts writeback and does not wait for it). The fsync that
/// makes the file durable is still needed and still done by the caller; it then finds little
/// left to write, so a large download does not end with one long wait for the disk. Where the
/// call is not supported it is simply not made again: it is an optimisation, not a guarantee.
pub struct WritebackFile<'a> {
    file: &'a mut std::fs::File,
    written: u64,
    flushed: u64,
    enabled: bool,
}

impl<'a> WritebackFile<'a> {
    /// Wraps `file`, whose bytes before its current position are not tracked.
    pub fn new(file: &'a mut std::fs::File) -> WritebackFile<'a> {
        WritebackFile {
            file,
            written: 0,
            flushed: 0,
            enabled: true,
        }
    }

    /// The bytes written through this wrapper.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn start_writeback(&mut self) {
        use std::os::unix::io::AsRawFd;
        let len = self.written - self.flushed;
        // SAFETY: a plain system call on an open descriptor; it reads and writes no memory of ours.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                self.flushed as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc == 0 {
            self.flushed = self.written;
        } else {
            self.enabled = false;
        }
    }
}

impl Write for WritebackFile<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.enabled && self.written - self.flushed >= WRITEBACK_WINDOW {
            self.start_writeback();
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Atomically replace (or create) `path` with `data`, with permission bits `mode` (not subject to
/// the umask).
///
/// The temp file is `.<name>.<random>.tmp` in the same directory, so the final rename never
/// crosses file systems. On any failure the temp file is removed and `path` is untouched
/// (except when only the final directory fsync fails, after the rename). Fails with
/// [`ErrorKind::Io`] naming the path or directory, or [`ErrorKind::InvalidArgument`] when `path`
/// has no file name.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let Some(file_name) = path.file_name() else {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("cannot write {}: it is not a file path", path.display()),
        ));
    };
    let dir = parent_dir(path);
    let prefix = format!(".{}.", file_name.to_string_lossy());
    // NamedTempFile deletes itself on drop, which gives "temp file removed on failure" for every
    // early return below without explicit cleanup.
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create a temporary file in", &dir, e))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.write_all(data).map_err(|e| Error::io("write", &tmp_path, e))?;
    set_mode(tmp.as_file(), mode).map_err(|e| Error::io("set permissions on", &tmp_path, e))?;
    // Data must be on disk before the rename is, or a crash could leave an empty file at `path`.
    tmp.as_file().sync_all().map_err(|e| Error::io("sync", &tmp_path, e))?;
    tmp.persist(path).map_err(|e| Error::io("replace", path, e.error))?;
    fsync_dir(&dir)
}

#[cfg(unix)]
fn set_mode(file: &std::fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // fchmod on the open file: explicit mode bits, independent of the process umask.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &std::fs::File, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Flush a directory's entries (a rename or create in it) to disk.
///
/// Fails with [`ErrorKind::Io`] naming the directory when it cannot be opened or synced. File
/// systems that do not support syncing a directory (`EINVAL`) are treated as success, since
/// there is nothing more that can be done there.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let f = std::fs::File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
        match f.sync_all() {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            Err(e) => Err(Error::io("sync directory", dir, e)),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Create `dir` and any missing parents, each new directory with permission bits `mode` (not
/// subject to the umask). Existing directories are left as they are.
///
/// Fails with [`ErrorKind::Io`] naming the directory that could not be created, or naming `dir`
/// when it (or a parent) exists but is not a directory.
pub fn create_dir_all(dir: &Path, mode: u32) -> Result<()> {
    // Find the missing ancestors ourselves so the mode can be set exactly on each one we create
    // (DirBuilder's recursive mode would apply the umask).
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() {
            break;
        }
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(Error::io(
                    "create directory",
                    dir,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a directory", p.display()),
                    ),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(p),
            Err(e) => return Err(Error::io("inspect", p, e)),
        }
        cur = p.parent();
    }
    for p in missing.into_iter().rev() {
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(mode);
        }
        match builder.create(p) {
            Ok(()) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                        .map_err(|e| Error::io("set permissions on", p, e))?;
                }
            }
            // Another process created it between our check and now: fine if it is a directory.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => {}
            Err(e) => return Err(Error::io("create directory", p, e)),
        }
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(())
}

/// Opens `path` for reading only if it is a regular file: the open never blocks (`O_NONBLOCK`,
/// so a FIFO planted at the path cannot hang the reader) and the opened file is checked with
/// `fstat`. Symlinks are followed (a receipt or key may legitimately be one), but what they lead
/// to must be a regular file too.
///
/// Fails with the open error, or with `InvalidInput` naming the kind of file found.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let t = f.metadata()?.file_type();
    if !t.is_file() {
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_dir() {
            "a directory"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_block_device() || t.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file; remove it or put the real file there"),
        ));
    }
    Ok(f)
}

/// Reads the regular file at `path` (see [`open_regular`]), at most `max` bytes. `Ok(None)` when
/// it does not exist.
///
/// Fails with [`ErrorKind::Io`] naming the path when it cannot be read or is not a regular file,
/// and with [`ErrorKind::TooLarge`] when it is larger than `max` bytes (nothing past that is read).
pub fn read_regular(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let f = match open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let mut data = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| Error::io("read", path, e))?;
    if data.len() as u64 > max {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{} is larger than {max} bytes, more than such a file can be; remove it or put the real file there",
                path.display()
            ),
        ));
    }
    Ok(Some(data))
}

/// Like [`read_regular`], but a missing file is an error too.
pub fn read_regular_required(path: &Path, max: u64) -> Result<Vec<u8>> {
    read_regular(path, max)?.ok_or_else(|| Error::io("read", path, std::io::Error::from(std::io::ErrorKind::NotFound)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reading_a_fifo_fails_at_once_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("install-source.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = read_regular(&fifo, 1024).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(
            e.message().contains("FIFO") && e.message().contains("install-source.json"),
            "{e}"
        );
        let e = read_regular(dir.path(), 1024).unwrap_err();
        assert!(e.message().contains("directory"), "{e}");
        assert_eq!(read_regular(&dir.path().join("missing"), 1).unwrap(), None);
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        assert_eq!(read_regular(&big, 1024).unwrap_err().kind(), ErrorKind::TooLarge);
        assert_eq!(read_regular(&big, 2048).unwrap().unwrap().len(), 2048);
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn writes_content_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("install-source.json");
        atomic_write(&p, b"hello\n", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello\n");
        assert_eq!(mode_of(&p), 0o644);
        assert_eq!(listing(dir.path()), ["install-source.json"], "no temp left");

        let exe = dir.path().join("flynn-host.v1");
        atomic_write(&exe, b"#!", 0o755).unwrap();
        assert_eq!(mode_of(&exe), 0o755);
        // A mode stricter than any usual umask is applied exactly too.
        let secret = dir.path().join("secret");
        atomic_write(&secret, b"", 0o600).unwrap();
        assert_eq!(mode_of(&secret), 0o600);
    }

    #[test]
    fn replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"old content that is longer").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        atomic_write(&p, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(mode_of(&p), 0o644);
        assert_eq!(listing(dir.path()), ["f"]);
    }

    #[test]
    fn failure_when_directory_missing_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let before = listing(dir.path());
        let p = dir.path().join("missing").join("f");
        let e = atomic_write(&p, b"x", 0o644).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains("missing"), "{e}");
        assert_eq!(listing(dir.path()), before);
    }

    #[test]
    fn failure_when_target_is_a_directory_leaves_it_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"keep").unwrap();
        let before = listing(dir.path());
        let e = atomic_write(&target, b"x", 0o644).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains("target"), "{e}");
        assert_eq!(listing(dir.path()), before, "temp file removed");
        assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"keep");
    }

    #[test]
    fn path_without_file_name_is_rejected() {
        let e = atomic_write(Path::new("/"), b"x", 0o644).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn fsync_dir_works_and_names_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        fsync_dir(dir.path()).unwrap();
        let missing = dir.path().join("nope");
        let e = fsync_dir(&missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains("nope"), "{e}");
    }

    #[test]
    fn create_dir_all_sets_mode_on_new_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let deep = dir.path().join("etc").join("flynn");
        create_dir_all(&deep, 0o750).unwrap();
        assert!(deep.is_dir());
        assert_eq!(mode_of(&deep), 0o750);
        assert_eq!(mode_of(&dir.path().join("etc")), 0o750);
        assert_eq!(mode_of(dir.path()), 0o711, "existing dir untouched");
        // Idempotent.
        create_dir_all(&deep, 0o755).unwrap();
        assert_eq!(mode_of(&deep), 0o750);
    }

    #[test]
    fn create_dir_all_fails_on_a_file_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let e = create_dir_all(&file.join("sub"), 0o755).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains("file"), "{e}");
        assert!(file.is_file());
    }
}
