//! The switch from one installed version to another, all or nothing (docs/verification.md#all-or-nothing).
//!
//! Order of operations, each step durable before the next:
//! 1. verified files renamed into place under versioned names (nothing running uses them yet);
//! 2. a journal (`<config>/update-journal.json`) records the symlink targets and bootstrap
//!    manifest before and after;
//! 3. the bootstrap manifest and each symlink are switched atomically;
//! 4. optionally, `flynn-host.<ver> version` must report the new version (the smoke test);
//! 5. the caller's receipt write;
//! 6. the journal is removed.
//!
//! An error at any step puts back the symlinks and bootstrap manifest, removes the files step 1
//! added, and removes the journal: the host is exactly as before. A crash (SIGKILL, power loss)
//! leaves the journal behind; [`recover`], run under the lock by the next install, update or
//! rollback, finishes the switch when the receipt already names the new version and undoes it
//! otherwise, so the host converges to one complete version.
//!
//! Failpoints (`after-download`, `after-commit`, `mid-switch`, `before-receipt`,
//! `after-receipt`) let tests stop the transaction at each step, with an error or by SIGKILL.
//! They only exist in debug builds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::host::layout::{self as hostlayout, HostLayout};
use crate::host::receipt::InstallSource;
use crate::host::staging::{FileKind, Staged, WrittenFile};
use crate::model::release::{self, COMPONENTS, Role};

/// The journal file of an interrupted switch.
pub const JOURNAL_FILE: &str = "update-journal.json";
/// The most a config-dir file the switch reads (journal, receipt, channel, bootstrap manifest)
/// may hold.
const MAX_CONFIG_FILE: u64 = 64 << 20;

/// Stops the transaction at `name` when `failpoint` says so: `"<name>"` or `"<name>:error"` returns
/// an error, `"<name>:kill"` kills the process with SIGKILL. Several may be given, comma-separated.
/// A no-op in release builds.
pub fn failpoint(failpoint: Option<&str>, name: &str) -> Result<()> {
    if !cfg!(debug_assertions) {
        return Ok(());
    }
    let Some(spec) = failpoint else { return Ok(()) };
    for item in spec.split(',') {
        let (n, action) = item.split_once(':').unwrap_or((item, "error"));
        if n.trim() != name {
            continue;
        }
        if action.trim() == "kill" {
            // SAFETY: sending a signal to our own process; nothing is shared.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        return Err(Error::new(ErrorKind::Io, format!("failpoint {name} hit (test-only)")));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalLink {
    link: PathBuf,
    from: Option<PathBuf>,
    to: PathBuf,
}

/// What an interrupted switch needs to be finished or undone.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    from_version: Option<String>,
    to_version: String,
    links: Vec<JournalLink>,
    bootstrap: PathBuf,
    bootstrap_before: Option<String>,
    /// `None`: the switch leaves the bootstrap manifest alone (a rollback).
    bootstrap_after: Option<String>,
    created_files: Vec<PathBuf>,
}

/// How [`apply`] should behave.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Run `flynn-host.<ver> version` after the switch and roll back unless it reports the version.
    pub smoke_test: bool,
    /// How long the smoke test may take.
    pub smoke_timeout: Option<Duration>,
    /// Test-only failpoints (see the module docs).
    pub failpoint: Option<String>,
    /// Leave every symlink as it is (a run that staged no binaries).
    pub skip_links: bool,
}

/// What [`apply`] changed.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Files and symlinks written.
    pub files: Vec<WrittenFile>,
    /// The version `flynn-host` pointed at before, if any.
    pub previous_version: Option<String>,
}

fn link_names(layout: &HostLayout, ver: &str) -> Vec<(PathBuf, PathBuf)> {
    let mut names: Vec<&'static str> = COMPONENTS
        .iter()
        .filter_map(|c| match c.role {
            Role::HostBinary(n) if layout.versioned_binary(n, ver).is_file() => Some(n),
            _ => None,
        })
        .collect();
    names.sort();
    let mut links: Vec<(PathBuf, PathBuf)> = names
        .iter()
        .map(|n| (layout.bin_dir.join(n), PathBuf::from(format!("{n}.{ver}"))))
        .collect();
    let (cli, target) = release::CLI_LINK;
    if names.contains(&target) {
        links.push((layout.bin_dir.join(cli), PathBuf::from(target)));
    }
    links
}

fn current_target(link: &Path) -> Result<Option<PathBuf>> {
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => Ok(Some(
            std::fs::read_link(link).map_err(|e| Error::io("read the symlink", link, e))?,
        )),
        Ok(_) => Err(Error::new(
            ErrorKind::Io,
            format!(
                "{} exists and is not a symlink; move it away so it can be managed",
                link.display()
            ),
        )),
        Err(_) => Ok(None),
    }
}

fn journal_path(layout: &HostLayout) -> PathBuf {
    layout.config_dir.join(JOURNAL_FILE)
}

fn write_journal(layout: &HostLayout, j: &Journal) -> Result<()> {
    let data = serde_json::to_vec_pretty(j)
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("cannot encode the update journal: {e}")))?;
    crate::fsutil::atomic_write(&journal_path(layout), &data, 0o600)
}

fn remove_journal(layout: &HostLayout) -> Result<()> {
    let p = journal_path(layout);
    match std::fs::remove_file(&p) {
        Ok(()) => crate::fsutil::fsync_dir(&layout.config_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", &p, e)),
    }
}

fn set_links(layout: &HostLayout, j: &Journal, forward: bool) -> Result<()> {
    let mut first: Option<Error> = None;
    let mut keep = |r: Result<()>| {
        if let (Err(e), None) = (r, &first) {
            first = Some(e);
        }
    };
    if j.bootstrap_after.is_some() {
        let boot = if forward {
            j.bootstrap_after.as_ref()
        } else {
            j.bootstrap_before.as_ref()
        };
        keep(match boot {
            Some(text) => crate::fsutil::atomic_write(&j.bootstrap, text.as_bytes(), 0o644),
            None => match std::fs::remove_file(&j.bootstrap) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", &j.bootstrap, e)),
                _ => Ok(()),
            },
        });
    }
    for l in &j.links {
        let target = if forward { Some(&l.to) } else { l.from.as_ref() };
        keep(match target {
            Some(t) => hostlayout::replace_symlink(&l.link, t),
            None => match std::fs::remove_file(&l.link) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", &l.link, e)),
                _ => Ok(()),
            },
        });
    }
    if !j.links.is_empty() {
        keep(crate::fsutil::fsync_dir(&layout.bin_dir));
    }
    let _ = layout; // the config dir was synced by atomic_write
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn undo(layout: &HostLayout, j: &Journal) -> Result<()> {
    let r = set_links(layout, j, false);
    for f in &j.created_files {
        let _ = std::fs::remove_file(f);
    }
    r.and_then(|()| remove_journal(layout))
}

/// Puts `staged` in place and switches the host to it (see the module docs). `write_receipt` runs
/// after the switch (and smoke test) and before the journal is removed, with the version the host
/// ran before; if it fails, everything is undone. The caller holds the config-dir lock.
pub fn apply(
    staged: &mut Staged,
    layout: &HostLayout,
    opts: &ApplyOptions,
    write_receipt: &mut dyn FnMut(Option<&str>) -> Result<()>,
) -> Result<Applied> {
    failpoint(opts.failpoint.as_deref(), "after-download")?;
    let (files, created) = staged.commit_files()?;
    let bootstrap_after = match staged.bootstrap_text() {
        Ok(t) => t,
        Err(e) => {
            remove_files(&created);
            return Err(e);
        }
    };
    if let Err(e) = failpoint(opts.failpoint.as_deref(), "after-commit") {
        remove_files(&created);
        return Err(e);
    }
    let ver = staged.version.as_str().to_string();
    // Without the binaries no symlink moves; without the config the bootstrap manifest stays.
    let opts = &ApplyOptions {
        skip_links: opts.skip_links || !staged.parts().binaries,
        ..opts.clone()
    };
    let mut applied = switch(layout, &ver, bootstrap_after, created, opts, write_receipt)?;
    let mut all = files;
    all.append(&mut applied.files);
    applied.files = all;
    Ok(applied)
}

fn remove_files(files: &[PathBuf]) {
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}

/// Switches the host to version `ver`, whose versioned files are already in the bin dir: journal,
/// bootstrap manifest (when `bootstrap_after` is given), symlinks, smoke test, `write_receipt`,
/// journal removed. On error everything is undone, including removing `created` files.
pub fn switch(
    layout: &HostLayout,
    ver: &str,
    bootstrap_after: Option<String>,
    created: Vec<PathBuf>,
    opts: &ApplyOptions,
    write_receipt: &mut dyn FnMut(Option<&str>) -> Result<()>,
) -> Result<Applied> {
    let fp = opts.failpoint.as_deref();
    let previous_version = hostlayout::linked_version(&layout.bin_dir, "flynn-host");
    let links = if opts.skip_links {
        Vec::new()
    } else {
        link_names(layout, ver)
    };
    let mut jlinks = Vec::new();
    for (link, to) in &links {
        match current_target(link) {
            Ok(from) => jlinks.push(JournalLink {
                link: link.clone(),
                from,
                to: to.clone(),
            }),
            Err(e) => {
                remove_files(&created);
                return Err(e);
            }
        }
    }
    let bootstrap = layout.config_dir.join(hostlayout::BOOTSTRAP_FILE);
    let bootstrap_before = match crate::fsutil::read_regular(&bootstrap, MAX_CONFIG_FILE) {
        Ok(b) => b.map(|b| String::from_utf8_lossy(&b).into_owned()),
        Err(e) => {
            remove_files(&created);
            return Err(e);
        }
    };
    let journal = Journal {
        from_version: previous_version.clone(),
        to_version: ver.to_string(),
        links: jlinks,
        bootstrap: bootstrap.clone(),
        bootstrap_before,
        bootstrap_after,
        created_files: created.clone(),
    };
    if let Err(e) = write_journal(layout, &journal) {
        remove_files(&created);
        return Err(e);
    }
    // The receipt and channel.txt as they were, to put back if a step after write_receipt fails.
    let mut saved: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
    for p in [
        crate::host::receipt::receipt_path(&layout.config_dir),
        layout.config_dir.join(hostlayout::CHANNEL_FILE),
    ] {
        match crate::fsutil::read_regular(&p, MAX_CONFIG_FILE) {
            Ok(data) => saved.push((p, data)),
            Err(e) => {
                let _ = undo(layout, &journal);
                return Err(e);
            }
        }
    }

    let switched = (|| -> Result<()> {
        if let Some(text) = &journal.bootstrap_after {
            crate::fsutil::atomic_write(&bootstrap, text.as_bytes(), 0o644)?;
        }
        for (i, l) in journal.links.iter().enumerate() {
            hostlayout::replace_symlink(&l.link, &l.to)?;
            if i == 0 {
                failpoint(fp, "mid-switch")?;
            }
        }
        if !journal.links.is_empty() {
            crate::fsutil::fsync_dir(&layout.bin_dir)?;
        }
        if opts.smoke_test {
            smoke_test(layout, ver, opts.smoke_timeout.unwrap_or(Duration::from_secs(30)))?;
        }
        failpoint(fp, "before-receipt")?;
        write_receipt(previous_version.as_deref())?;
        failpoint(fp, "after-receipt")?;
        Ok(())
    })();
    if let Err(e) = switched {
        for (path, data) in &saved {
            let _ = match data {
                Some(d) => crate::fsutil::atomic_write(path, d, 0o644),
                None => std::fs::remove_file(path).map_err(|e| Error::io("remove", path, e)),
            };
        }
        return Err(match undo(layout, &journal) {
            Ok(()) => e,
            Err(u) => Error::new(
                e.kind(),
                format!(
                    "{}; rolling back also failed: {} (run the command again to recover)",
                    e.message(),
                    u.message()
                ),
            ),
        });
    }
    remove_journal(layout)?;
    let mut files: Vec<WrittenFile> = journal
        .links
        .iter()
        .map(|l| WrittenFile {
            path: l.link.clone(),
            sha512: String::new(),
            kind: FileKind::Link,
        })
        .collect();
    if let Some(text) = &journal.bootstrap_after {
        files.push(WrittenFile {
            path: bootstrap,
            sha512: crate::model::checksums::sha512_hex(text.as_bytes()),
            kind: FileKind::Manifest,
        });
    }
    Ok(Applied {
        files,
        previous_version,
    })
}

/// Runs `<bin>/flynn-host.<ver> version` and requires it to report exactly `ver` (see
/// [`reports_version`]). `SmokeTestFailed` otherwise, with what it printed.
///
/// The timeout is absolute: the command runs in its own process group, and when it has not both
/// exited and closed its output by the deadline (a child it left behind may hold stdout open),
/// the whole group is killed and the switch fails.
pub fn smoke_test(layout: &HostLayout, ver: &str, timeout: Duration) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let bin = layout.versioned_binary("flynn-host", ver);
    let fail = |why: String| {
        Error::new(
            ErrorKind::SmokeTestFailed,
            format!("{} version {why}; the switch to {ver} was rolled back", bin.display()),
        )
    };
    let deadline = Instant::now() + timeout;
    let mut child = std::process::Command::new(&bin)
        .arg("version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| fail(format!("could not run: {e}")))?;
    let group = child.id() as libc::pid_t;
    let kill_group = || {
        // SAFETY: a signal to the process group we created for the child; nothing is shared.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    };
    // Read the output on a thread so a child that never closes it cannot stall us past the
    // deadline; the thread ends when the group is killed (the pipe closes).
    let stdout = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut out = Vec::new();
        if let Some(s) = stdout {
            let _ = s.take(64 << 10).read_to_end(&mut out);
        }
        let _ = tx.send(out);
    });
    let timed_out = |what: &str| fail(format!("{what} within the {} s timeout", timeout.as_secs_f64()));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                kill_group();
                let _ = child.wait();
                return Err(timed_out("did not finish"));
            }
            Err(e) => {
                kill_group();
                let _ = child.wait();
                return Err(fail(format!("could not be waited for: {e}")));
            }
        }
    };
    let out = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(out) => out,
        Err(_) => {
            kill_group();
            return Err(timed_out(
                "exited but left a process holding its output open; not finished",
            ));
        }
    };
    let out = String::from_utf8_lossy(&out);
    if !status.success() {
        return Err(fail(format!("exited with {status}")));
    }
    if reports_version(&out, ver) {
        Ok(())
    } else {
        Err(fail(format!(
            "printed {:?}, not {ver}",
            crate::error::escape(out.trim())
        )))
    }
}

/// Whether the output of `flynn-host version` reports exactly `ver`: its first word is `ver`, or
/// (for Flynn's `vYYYYMMDD.N` versions) `ver` followed by Flynn's `-<commit>` build suffix of 7 to
/// 40 hex digits. A semver pre-release (`v1.2.3-rc.1` for `v1.2.3`) is another version, not a
/// suffix.
pub fn reports_version(output: &str, ver: &str) -> bool {
    let first = output.split_whitespace().next().unwrap_or("");
    if first == ver {
        return true;
    }
    let flynn_date = crate::model::version::Version::parse(ver)
        .is_ok_and(|v| v.scheme() == crate::model::version::Scheme::FlynnDate && !v.is_prerelease());
    match first.strip_prefix(ver).and_then(|r| r.strip_prefix('-')) {
        Some(commit) if flynn_date => (7..=40).contains(&commit.len()) && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => false,
    }
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Recovery {
    /// No interrupted switch.
    Clean,
    /// An interrupted switch to this version was completed (the receipt already named it).
    Completed(String),
    /// An interrupted switch to this version was undone.
    RolledBack(String),
}

/// Finishes or undoes a switch that a crash interrupted, and removes stale temp files of earlier
/// runs from the three directories. Call with the config-dir lock held.
pub fn recover(layout: &HostLayout) -> Result<Recovery> {
    let p = journal_path(layout);
    let outcome = match crate::fsutil::read_regular(&p, MAX_CONFIG_FILE)? {
        None => Recovery::Clean,
        Some(data) => {
            let j: Journal = serde_json::from_slice(&data).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "{} is corrupt ({e}); check the symlinks in {} and remove it",
                        p.display(),
                        layout.bin_dir.display()
                    ),
                )
            })?;
            let receipt = InstallSource::load(&layout.config_dir)?;
            if receipt.is_some_and(|r| r.version == j.to_version) {
                set_links(layout, &j, true)?;
                remove_journal(layout)?;
                Recovery::Completed(j.to_version)
            } else {
                undo(layout, &j)?;
                Recovery::RolledBack(j.to_version)
            }
        }
    };
    for dir in [&layout.bin_dir, &layout.config_dir, &layout.layer_dir] {
        remove_stale_temps(dir);
    }
    Ok(outcome)
}

/// Removes temp files this crate creates (`.<name>.<random>.part|.new`, `.<name>.link-…`,
/// `.placeholder.…`, `.<name>.<random>.tmp`) that a killed run left behind.
fn remove_stale_temps(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            continue;
        }
        let ours = name.ends_with(".part")
            || name.ends_with(".new")
            || name.ends_with(".tmp")
            || name.contains(".link-")
            || name.starts_with(".placeholder.");
        if ours && e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
