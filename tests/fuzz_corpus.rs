//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) and the past crash and
//! invariant-violation inputs (`fuzz/regressions/<target>/`) through the fuzz targets, on stable,
//! so every `cargo test` re-checks them. The targets themselves are `fuzz/src/lib.rs` (the same
//! functions `cargo +nightly fuzz run` calls; SECURITY.md#fuzzing).

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    v.sort();
    v
}

thread_local! {
    /// Set while this thread runs a target: its panics are collected, not printed one by one.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that is silent on threads running a target and the default hook
/// everywhere else (tests run in parallel, so the hook cannot be swapped per test).
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                default(info);
            }
        }));
    });
}

/// Runs every file of `fuzz/<kind>/<target>/` (and `extra` generated inputs) through `target`;
/// on failure names every file that panicked and its message.
fn replay(name: &str, extra: Vec<(String, Vec<u8>)>) {
    let f = targets::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .expect("a target of that name");
    let root = targets::fuzz_dir();
    let corpus = files(&root.join("corpus").join(name));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{name}/ is empty: run fuzz/seed (and cargo fuzz cmin) to restore it"
    );
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for p in corpus.iter().chain(files(&root.join("regressions").join(name)).iter()) {
        let shown = p.strip_prefix(&root).unwrap_or(p).display().to_string();
        inputs.push((format!("fuzz/{shown}"), std::fs::read(p).expect("read a corpus file")));
    }
    inputs.extend(extra);
    quiet_panics();
    let mut failures = Vec::new();
    for (shown, data) in &inputs {
        QUIET.set(true);
        let r = std::panic::catch_unwind(|| f(data));
        QUIET.set(false);
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into());
            failures.push(format!("{shown}: {msg}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs of target {name} fail:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

/// The genuine fuzz signature with its line `line` (1-based) base64 cut to every shorter length:
/// each must be refused, never panic (finding 1: a 4th line of fewer than 64 bytes).
fn truncated_signatures() -> Vec<(String, Vec<u8>)> {
    let lines: Vec<&str> = targets::FUZZ_SIGNATURE.lines().collect();
    let mut out = Vec::new();
    for line in [2usize, 4] {
        let full = lines[line - 1];
        for cut in 0..full.len() {
            let mut l = lines.clone();
            l[line - 1] = &full[..cut];
            out.push((
                format!("generated: signature line {line} cut to {cut} base64 characters"),
                (l.join("\n") + "\n").into_bytes(),
            ));
        }
    }
    out
}

#[test]
fn version() {
    replay("version", Vec::new());
}

#[test]
fn checksums() {
    replay("checksums", Vec::new());
}

#[test]
fn link() {
    replay("link", Vec::new());
}

#[test]
fn receipt() {
    replay("receipt", Vec::new());
}

#[test]
fn release_json() {
    replay("release_json", Vec::new());
}

#[test]
fn images() {
    replay("images", Vec::new());
}

#[test]
fn signature() {
    replay("signature", truncated_signatures());
}

#[test]
fn capi() {
    replay("capi", Vec::new());
}

#[test]
fn serve_http() {
    replay("serve_http", Vec::new());
}

#[test]
fn gzip() {
    replay("gzip", Vec::new());
}

#[test]
fn every_target_has_a_test() {
    let mut names: Vec<&str> = targets::TARGETS.iter().map(|(n, _)| *n).collect();
    names.sort();
    let dir = targets::fuzz_dir().join("fuzz_targets");
    let mut bins: Vec<String> = files(&dir)
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    bins.sort();
    assert_eq!(bins, names, "fuzz/fuzz_targets and targets::TARGETS differ");
}
