//! The release's `checksums.sha512` file (docs/release-assets.md#checksums-file, docs/verification.md#checksums).
//!
//! It is the coreutils `sha512sum` format, so `sha512sum -c checksums.sha512` works in a release
//! folder. Parsing is fail-closed: every line must be well-formed, every name a plain asset file
//! name (no paths), and every name listed once, because a lenient parser is exactly where a
//! tampered release would slip through. [`Checksums::require`] is how installers look up an
//! asset; a missing entry is an error, never "skip verification". The module also has the hashing
//! helpers ([`sha512_hex`], [`sha512_file`]) used when packaging and verifying.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha512};

use crate::error::{Error, ErrorKind, Result};

/// Length of a sha512 digest in hex characters.
const SHA512_HEX_LEN: usize = 128;

/// Read buffer for [`sha512_file`]: large enough to be fast, small enough to never hold a
/// multi-hundred-megabyte asset in memory.
const HASH_BUF: usize = 64 * 1024;

/// What an operator should do when the file itself is malformed.
const FIX_HINT: &str = "the file is corrupt or not in `sha512sum` format; download it again or \
     regenerate it with `sha512sum` / `flynnrel package`";

/// The parsed checksums file: asset names mapped to lowercase hex sha512 digests, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checksums {
    entries: Vec<(String, String)>,
    /// name → index into `entries`, for lookups and duplicate detection.
    index: HashMap<String, usize>,
}

impl Checksums {
    /// An empty set, to be filled with [`Checksums::insert`].
    pub fn new() -> Checksums {
        Checksums::default()
    }

    /// Parse a `sha512sum` file. `source` (the file path or URL) is named in every error.
    ///
    /// Accepts `<hex>  <name>` (text) and `<hex> *<name>` (binary) lines, upper- or lowercase hex
    /// (stored lowercase), `\n` or `\r\n` line ends and an optional final newline. Fails with
    /// [`ErrorKind::InvalidData`], naming the source and the 1-based line, on an empty file, an
    /// empty line, a malformed line, a hash that is not 128 hex characters, a path-like name, a
    /// duplicate name, or coreutils' escaped-name form (a line starting with `\`).
    pub fn parse(text: &str, source: &str) -> Result<Checksums> {
        let mut sums = Checksums::new();
        // A final newline leaves one empty piece after the split; that one is allowed, any other
        // empty line is not (it would hide a truncated or concatenated file).
        let body = text.strip_suffix('\n').unwrap_or(text);
        if body.is_empty() || body == "\r" {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!("{source} is empty: {FIX_HINT}"),
            ));
        }
        for (i, raw) in body.split('\n').enumerate() {
            let lineno = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let bad = |why: String| {
                Error::new(
                    ErrorKind::InvalidData,
                    format!("{source} line {lineno}: {why}; {FIX_HINT}"),
                )
            };
            // Check the hash before the separator so garbage (an HTML error page) is reported
            // as "not hexadecimal" rather than as a spacing problem.
            let (hash, rest) = split_line(line).map_err(bad)?;
            let hash = normalise_hash(hash).map_err(bad)?;
            let name = name_field(rest).map_err(bad)?;
            validate_name_str(name).map_err(bad)?;
            if let Some(&first) = sums.index.get(name) {
                return Err(bad(format!(
                    "{name:?} is listed twice (first on line {}); a release lists each asset once",
                    first + 1
                )));
            }
            sums.push(name.to_string(), hash);
        }
        Ok(sums)
    }

    /// The lowercase hex sha512 of `name`, or `None` when it is not listed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.entries[i].1.as_str())
    }

    /// The lowercase hex sha512 of `name`.
    ///
    /// Fails with [`ErrorKind::InvalidData`] when the file (named by `source`) has no entry for
    /// it: an asset without a checksum must never be installed.
    pub fn require(&self, name: &str, source: &str) -> Result<&str> {
        self.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{source} has no entry for {name}: the release is incomplete or tampered; do \
                     not install it"
                ),
            )
        })
    }

    /// The asset names, in file (or insertion) order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// `(name, lowercase hex sha512)` pairs, in file (or insertion) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, h)| (n.as_str(), h.as_str()))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add an entry (the hash may be upper- or lowercase; it is stored lowercase).
    ///
    /// Fails with [`ErrorKind::InvalidData`] on a path-like name, a hash that is not 128 hex
    /// characters, or a name already present.
    pub fn insert(&mut self, name: &str, sha512_hex: &str) -> Result<()> {
        let bad = |why: String| {
            Error::new(
                ErrorKind::InvalidData,
                format!("cannot add checksum for {name:?}: {why}"),
            )
        };
        let hash = normalise_hash(sha512_hex).map_err(bad)?;
        validate_name_str(name).map_err(bad)?;
        if self.index.contains_key(name) {
            return Err(bad("it is already listed".into()));
        }
        self.push(name.to_string(), hash);
        Ok(())
    }

    /// The file text: one `<hex>  <name>\n` line per entry, sorted by name so the same assets
    /// always give byte-identical output (reproducible releases).
    pub fn to_text(&self) -> String {
        let mut sorted: Vec<&(String, String)> = self.entries.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::with_capacity(sorted.len() * (SHA512_HEX_LEN + 40));
        for (name, hash) in sorted {
            out.push_str(hash);
            out.push_str("  ");
            out.push_str(name);
            out.push('\n');
        }
        out
    }

    fn push(&mut self, name: String, hash: String) {
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push((name, hash));
    }
}

/// Split a line at its first space into the hash and the rest (separator and name).
fn split_line(line: &str) -> std::result::Result<(&str, &str), String> {
    if line.is_empty() {
        return Err("empty line".into());
    }
    if line.starts_with('\\') {
        // coreutils writes `\<hash>  <escaped name>` for names containing `\` or a newline. Such
        // names are never valid asset names, so refuse rather than implement the unescaping.
        return Err(
            "escaped file name (line starts with `\\`) is not supported: asset names never \
             contain backslashes or newlines"
                .into(),
        );
    }
    if line.starts_with("SHA512 (") {
        return Err("BSD-style (`--tag`) line; expected `<sha512>  <name>`".into());
    }
    line.split_once(' ')
        .ok_or_else(|| "expected `<sha512>  <name>` or `<sha512> *<name>`".to_string())
}

/// The name from what follows the hash's first space: ` <name>` (text) or `*<name>` (binary).
fn name_field(rest: &str) -> std::result::Result<&str, String> {
    let name = rest
        .strip_prefix(' ')
        .or_else(|| rest.strip_prefix('*'))
        .ok_or_else(|| {
            "expected two spaces (text mode) or ` *` (binary mode) between the hash and the name".to_string()
        })?;
    if name.starts_with([' ', '\t']) {
        // Refused by the naming rule too; said here in terms of the line's layout.
        return Err("extra whitespace between the hash and the name".into());
    }
    Ok(name)
}

/// Check a sha512 hex digest and return it lowercase.
fn normalise_hash(hash: &str) -> std::result::Result<String, String> {
    if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("the hash {:?} is not hexadecimal", truncate_for_message(hash)));
    }
    if hash.len() != SHA512_HEX_LEN {
        return Err(format!(
            "the hash has {} hex characters, a sha512 has {SHA512_HEX_LEN}",
            hash.len()
        ));
    }
    Ok(hash.to_ascii_lowercase())
}

/// Keep error messages readable when a line is garbage (e.g. an HTML error page).
fn truncate_for_message(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The one naming rule for reading and writing checksums files (and for every asset file name
/// joined to a directory): whatever [`Checksums::insert`] accepts, [`Checksums::parse`] reads
/// back equal and `sha512sum -c --strict` checks.
fn validate_name_str(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("the file name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is a directory reference, not an asset name"));
    }
    if name == "-" {
        // `sha512sum -c` reads standard input for a file named `-`.
        return Err("\"-\" means standard input to sha512sum, not an asset name".into());
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        // A leading space is read as extra separator, a trailing one is lost by editors and
        // `sha512sum` output alike: the name would not survive the round trip.
        return Err(format!("{name:?} begins or ends with whitespace"));
    }
    if name.contains(['/', '\\']) {
        return Err(format!("{name:?} is a path; asset names are plain file names"));
    }
    if name.chars().any(char::is_control) {
        // Covers NUL, newlines, tabs and escape sequences that could forge terminal output.
        return Err(format!("{name:?} contains control characters"));
    }
    Ok(())
}

/// Check that `name` is a plain asset file name, safe to join to a directory.
///
/// Fails with [`ErrorKind::InvalidData`] when it is empty, `.` or `..`, contains `/` or `\`, or
/// contains a control character (including NUL).
pub fn validate_asset_name(name: &str) -> Result<()> {
    validate_name_str(name).map_err(|why| Error::new(ErrorKind::InvalidData, format!("invalid asset name: {why}")))
}

/// Lowercase hex of `bytes`. Never fails.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// The lowercase hex sha512 of `data`. Never fails.
pub fn sha512_hex(data: &[u8]) -> String {
    hex(&Sha512::digest(data))
}

/// The lowercase hex sha512 of the file at `path`, read in 64 KiB chunks (assets can be large).
///
/// Fails with [`ErrorKind::Io`] naming the path when it cannot be opened or read.
pub fn sha512_file(path: &Path) -> Result<String> {
    let mut file = crate::fsutil::open_regular(path).map_err(|e| Error::io("open", path, e))?;
    let mut hasher = Sha512::new();
    let mut buf = vec![0u8; HASH_BUF];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Whether two hex digests are equal, ignoring ASCII case. Never fails.
pub fn eq_hex(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const EMPTY_SHA512: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
                                47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

    fn h(c: char) -> String {
        std::iter::repeat_n(c, 128).collect()
    }

    #[test]
    fn hashing_helpers() {
        assert_eq!(sha512_hex(b""), EMPTY_SHA512);
        assert_eq!(hex(&[0x00, 0xab, 0xff, 0x10]), "00abff10");
        assert!(eq_hex("ABCdef", "abcDEF"));
        assert!(!eq_hex("abc", "abd"));
        assert!(!eq_hex("abc", "abcd"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        // Larger than one buffer and not a multiple of it, to exercise the streaming loop.
        let data: Vec<u8> = (0..(HASH_BUF * 3 + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        assert_eq!(sha512_file(&path).unwrap(), sha512_hex(&data));

        let missing = dir.path().join("missing");
        let e = sha512_file(&missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains("missing"), "{e}");
    }

    #[test]
    fn insert_and_parse_share_one_naming_rule() {
        // Every name insert accepts is written as a line parse reads back equal; the names that
        // would not survive (or that sha512sum reads as standard input) are refused by both.
        for bad in [" a", "a ", "\u{3000}a", "a\u{a0}", "-", "\t", "a/b", "..", ""] {
            let mut sums = Checksums::new();
            let e = sums.insert(bad, &h('a')).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{bad:?}");
            let line = format!("{}  {bad}\n", h('a'));
            assert!(Checksums::parse(&line, "c").is_err(), "parse accepted {bad:?}");
        }
        let mut sums = Checksums::new();
        for good in ["-a", "a-", "*star", "a b", "flynn-host.gz", "\u{e9}t\u{e9}"] {
            sums.insert(good, &h('b')).unwrap();
        }
        let back = Checksums::parse(&sums.to_text(), "c").unwrap();
        assert_eq!(back.iter().collect::<Vec<_>>(), {
            let mut v: Vec<_> = sums.iter().collect();
            v.sort();
            v
        });
    }

    #[test]
    fn parses_text_and_binary_forms() {
        let text = format!(
            "{}  flynn-host-linux-amd64.gz\r\n{} *images.json.gz\n{}  install-flynn",
            h('a'),
            h('B'),
            h('0')
        );
        let sums = Checksums::parse(&text, "checksums.sha512").unwrap();
        assert_eq!(sums.len(), 3);
        assert!(!sums.is_empty());
        assert_eq!(sums.get("flynn-host-linux-amd64.gz"), Some(h('a').as_str()));
        // Uppercase normalised to lowercase.
        assert_eq!(sums.get("images.json.gz"), Some(h('b').as_str()));
        assert_eq!(sums.require("install-flynn", "checksums.sha512").unwrap(), h('0'));
        assert_eq!(
            sums.names().collect::<Vec<_>>(),
            ["flynn-host-linux-amd64.gz", "images.json.gz", "install-flynn"]
        );
        assert_eq!(sums.iter().nth(1), Some(("images.json.gz", h('b').as_str())));
        assert_eq!(sums.get("flynn"), None);
        // Exact names only: no substring match.
        assert_eq!(sums.get("flynn-host"), None);
    }

    #[test]
    fn require_names_source_and_asset() {
        let sums = Checksums::parse(&format!("{}  a\n", h('a')), "https://x/checksums.sha512").unwrap();
        let e = sums
            .require("flynn-host-linux-amd64.gz", "https://x/checksums.sha512")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert_eq!(
            e.message(),
            "https://x/checksums.sha512 has no entry for flynn-host-linux-amd64.gz: the release \
             is incomplete or tampered; do not install it"
        );
    }

    #[test]
    fn rejections_name_source_and_line() {
        let good = format!("{}  ok.gz", h('a'));
        let cases: Vec<(String, usize, &str)> = vec![
            (String::new(), 0, "empty"),
            ("\n".into(), 0, "empty"),
            (format!("{good}\n\n{}  b", h('b')), 2, "empty line"),
            (format!("{good}\n\n"), 2, "empty line"),
            (format!("{good}\n{}", h('c')), 2, "expected"),
            (format!("{} b", h('a')), 1, "two spaces"),
            (format!("{}\tb", h('a')), 1, "expected"),
            (format!("{}   b", h('a')), 1, "extra whitespace"),
            (format!("{}  b", &h('a')[..127]), 1, "127 hex"),
            (format!("{}a  b", h('a')), 1, "129 hex"),
            (format!("{}g  b", &h('a')[..127]), 1, "not hexadecimal"),
            (format!("{good}\n{}  ok.gz", h('b')), 2, "listed twice"),
            (format!("{good}\n{} *ok.gz", h('b')), 2, "listed twice"),
            (format!("{}  ../etc/passwd", h('a')), 1, "is a path"),
            (format!("{}  /etc/passwd", h('a')), 1, "is a path"),
            (format!("{}  dir/file", h('a')), 1, "is a path"),
            (format!("{}  dir\\file", h('a')), 1, "is a path"),
            (format!("{}  ..", h('a')), 1, "directory reference"),
            (format!("{}  .", h('a')), 1, "directory reference"),
            (format!("{}  ", h('a')), 1, "name is empty"),
            (format!("{} *", h('a')), 1, "name is empty"),
            (format!("{}  a\0b", h('a')), 1, "control"),
            (format!("{}  a\x1bb", h('a')), 1, "control"),
            (format!("\\{}  a\\\\b", h('a')), 1, "escaped file name"),
            (format!("SHA512 (a) = {}", h('a')), 1, "BSD-style"),
            ("<html>not found</html>".into(), 1, "not hexadecimal"),
        ];
        for (text, line, needle) in cases {
            let e = match Checksums::parse(&text, "/rel/checksums.sha512") {
                Ok(s) => panic!("{text:?} should be rejected, got {s:?}"),
                Err(e) => e,
            };
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{text:?}");
            let msg = e.message();
            assert!(msg.starts_with("/rel/checksums.sha512"), "{msg}");
            assert!(msg.contains(needle), "{text:?}: {msg}");
            if line > 0 {
                assert!(msg.contains(&format!(" line {line}:")), "{text:?}: {msg}");
            }
            assert!(msg.contains("download it again"), "says what to do: {msg}");
        }
    }

    #[test]
    fn validate_asset_name_rules() {
        for ok in ["flynn-host-linux-amd64.gz", "-dash", "a..b", ".hidden", "with space"] {
            validate_asset_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "/abs", "a\\b", "a\0", "a\nb", "\t"] {
            let e = validate_asset_name(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{bad:?}");
        }
    }

    #[test]
    fn insert_and_to_text_are_sorted_and_validated() {
        let mut sums = Checksums::new();
        assert!(sums.is_empty());
        sums.insert("zeta.gz", &h('F')).unwrap();
        sums.insert("alpha.gz", &h('1')).unwrap();
        assert_eq!(
            sums.insert("alpha.gz", &h('2')).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
        assert!(sums.insert("../x", &h('2')).is_err());
        assert!(sums.insert("x", "abc").is_err());
        assert_eq!(sums.len(), 2);
        let text = sums.to_text();
        assert_eq!(text, format!("{}  alpha.gz\n{}  zeta.gz\n", h('1'), h('f')));
        // Round trip.
        let back = Checksums::parse(&text, "t").unwrap();
        assert_eq!(back.get("zeta.gz"), Some(h('f').as_str()));
        assert_eq!(back.to_text(), text);
    }

    fn have_sha512sum() -> bool {
        Command::new("sha512sum").arg("--version").output().is_ok()
    }

    #[test]
    fn to_text_passes_real_sha512sum_check() {
        if !have_sha512sum() {
            eprintln!("sha512sum not installed; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut sums = Checksums::new();
        for (name, data) in [("b.gz", &b"bee"[..]), ("a.gz", b""), ("install-flynn", b"#!")] {
            let p = dir.path().join(name);
            std::fs::write(&p, data).unwrap();
            sums.insert(name, &sha512_file(&p).unwrap()).unwrap();
        }
        std::fs::write(dir.path().join("checksums.sha512"), sums.to_text()).unwrap();
        let out = Command::new("sha512sum")
            .args(["-c", "--strict", "checksums.sha512"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // And a tampered file makes the real tool fail, so the test is meaningful.
        std::fs::write(dir.path().join("b.gz"), b"wasp").unwrap();
        let out = Command::new("sha512sum")
            .args(["-c", "checksums.sha512"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
    }

    #[test]
    fn parses_real_sha512sum_output_text_and_binary() {
        if !have_sha512sum() {
            eprintln!("sha512sum not installed; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let names = ["flynn-host-linux-amd64.gz", "images.json.gz", "layers.tar.gz"];
        for (i, name) in names.iter().enumerate() {
            std::fs::write(dir.path().join(name), vec![i as u8; 1000 * (i + 1)]).unwrap();
        }
        for mode in [None, Some("-b")] {
            let mut cmd = Command::new("sha512sum");
            cmd.args(mode).args(names).current_dir(dir.path());
            let out = cmd.output().unwrap();
            assert!(out.status.success());
            let text = String::from_utf8(out.stdout).unwrap();
            if mode.is_some() {
                assert!(text.contains(" *"), "binary form expected: {text}");
            }
            let sums = Checksums::parse(&text, "sha512sum output").unwrap();
            assert_eq!(sums.len(), names.len());
            for name in names {
                let want = sha512_file(&dir.path().join(name)).unwrap();
                assert!(eq_hex(sums.require(name, "sha512sum output").unwrap(), &want));
            }
        }
    }
}
