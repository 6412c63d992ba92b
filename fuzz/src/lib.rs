//! The fuzz targets of flynnrel: one per parser that reads outside input, plus the C ABI and the
//! release server. Each `pub fn <target>(data: &[u8])` checks invariants and panics with a
//! message naming the broken one; "does not panic" alone is never the only property.
//!
//! This file must not use `libfuzzer-sys`: `cargo +nightly fuzz run <target>` calls these
//! functions from `fuzz_targets/<target>.rs`, and the root crate's `tests/fuzz_corpus.rs`
//! includes this file as a module to replay `fuzz/corpus/` and `fuzz/regressions/` on stable.
//! Only crates the root crate already depends on are used, and paths never start with `crate::`
//! (that would name the test crate when included).
//!
//! Inputs that carry structure start with a mode byte that is never valid UTF-8 (`0xFF`), so the
//! real-data seeds (text) and the structured inputs share one corpus per target.

use std::cmp::Ordering;
use std::ffi::{CStr, CString, c_char, c_int};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use flynnrel::ErrorKind;
use flynnrel::ffi;
use flynnrel::host::receipt::{InstallSource, receipt_path};
use flynnrel::model::checksums::{Checksums, sha512_hex, validate_asset_name};
use flynnrel::model::layers::{flat_entry_name, layers_from_images_json, validate_layer_id};
use flynnrel::model::signature::{TrustedKey, verify_checksums};
use flynnrel::model::version::{Installed, Scheme, Version, newest};
use flynnrel::remote::ghrelease::link::find_rel;
use flynnrel::remote::ghrelease::{Channel, Release, select_channel};

/// The structured-input mode byte (never the first byte of UTF-8 text).
const STRUCTURED: u8 = 0xFF;
/// Separates fields inside a structured input (never a byte of UTF-8 text).
const FIELD: u8 = 0xFE;

/// The fuzzing-only key pair and the genuine signature made with it (fuzz/keys/README.md).
pub const FUZZ_PUBLIC_KEY: &str = include_str!("../keys/fuzz.pub");
/// The signed checksums file.
pub const FUZZ_CHECKSUMS: &str = include_str!("../keys/checksums.sha512");
/// `minisign -S` of [`FUZZ_CHECKSUMS`] with [`FUZZ_KEY`], naming [`SIG_REPO`] and [`SIG_VERSION`].
pub const FUZZ_SIGNATURE: &str = include_str!("../keys/checksums.sha512.minisig");
/// The repository the genuine signature's trusted comment names.
pub const SIG_REPO: &str = "flynn/flynn";
/// The version the genuine signature's trusted comment names.
pub const SIG_VERSION: &str = "v20240127.0";

/// A scratch directory on tmpfs when there is one (receipt saves fsync).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let b = tempfile::Builder::new()
        .prefix("flynnrel-fuzz-")
        .tempdir_in(if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        });
    b.expect("create a scratch directory")
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// The UTF-8 fields of a structured input, split at [`FIELD`]; invalid fields are skipped.
fn fields(data: &[u8]) -> Vec<&str> {
    data.split(|b| *b == FIELD).filter_map(text).collect()
}

// ---- version ------------------------------------------------------------------------------------

/// `flynnrel::model::version`: the whole input and up to three lines of it as versions. Invariants:
/// `parse(display(v)) == v` (same string, scheme, pre-release flag; serde too), the leading `v`
/// is optional, `Installed::parse` agrees, and the order is a total order within a scheme
/// (antisymmetric, transitive, consistent with `==` and `partial_cmp`, errors across schemes),
/// with `newest` returning a maximum.
pub fn version(data: &[u8]) {
    let Some(s) = text(data) else { return };
    version_roundtrip(s);
    let vs: Vec<Version> = s
        .split('\n')
        .take(3)
        .filter_map(|p| {
            version_roundtrip(p);
            Version::parse(p).ok()
        })
        .collect();
    for a in &vs {
        for b in &vs {
            version_pair(a, b);
        }
    }
    if let [a, b, c] = &vs[..] {
        for (x, y, z) in [(a, b, c), (a, c, b), (b, a, c), (b, c, a), (c, a, b), (c, b, a)] {
            let le = |p: &Version, q: &Version| p.compare(q).is_ok_and(Ordering::is_le);
            if le(x, y) && le(y, z) {
                assert!(le(x, z), "order not transitive: {x} <= {y} <= {z} but not {x} <= {z}");
            }
        }
    }
    match newest(&vs) {
        Ok(Some(n)) => {
            for v in &vs {
                assert!(
                    v.compare(n).expect("same scheme").is_le(),
                    "newest() returned {n} but {v} is higher"
                );
            }
        }
        Ok(None) => assert!(vs.is_empty(), "newest() of {} versions is None", vs.len()),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::VersionMismatch, "newest(): {}", e.message());
            assert!(
                vs.iter().any(|v| v.scheme() != vs[0].scheme()),
                "newest() failed on versions of one scheme: {}",
                e.message()
            );
        }
    }
}

fn version_roundtrip(s: &str) {
    let v = match Version::parse(s) {
        Ok(v) => v,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidData, "Version::parse({s:?}) error kind");
            return;
        }
    };
    let shown = v.to_string();
    assert_eq!(shown, s, "Version displays {s:?} as {shown:?}");
    let again = Version::parse(&shown).unwrap_or_else(|e| panic!("parse(display({s:?})) fails: {}", e.message()));
    assert_eq!(again.as_str(), v.as_str());
    assert_eq!(again.scheme(), v.scheme(), "scheme of {s:?} changed on re-parse");
    assert_eq!(again.is_prerelease(), v.is_prerelease());
    assert!(again == v, "parse(display({s:?})) != parse({s:?})");
    assert_eq!(again.compare(&v).ok(), Some(Ordering::Equal));
    let json = serde_json::to_string(&v).expect("serialize a version");
    let back: Version = serde_json::from_str(&json).unwrap_or_else(|e| panic!("serde round trip of {s:?}: {e}"));
    assert_eq!(back.as_str(), s, "serde changed {s:?}");
    if !s.starts_with('v') {
        let with_v = format!("v{s}");
        let w =
            Version::parse(&with_v).unwrap_or_else(|e| panic!("{s:?} parses but {with_v:?} does not: {}", e.message()));
        assert!(w == v, "{with_v:?} != {s:?} although the leading v is optional");
    }
    if s.trim() == s && s != "dev" {
        match Installed::parse(s) {
            Installed::Release(i) => assert!(i == v && i.as_str() == s, "Installed::parse({s:?}) differs"),
            Installed::Development(_) => panic!("{s:?} is a version but Installed::parse says development"),
        }
    }
}

fn version_pair(a: &Version, b: &Version) {
    match (a.compare(b), b.compare(a)) {
        (Ok(x), Ok(y)) => {
            assert_eq!(
                x,
                y.reverse(),
                "order not antisymmetric: {a} vs {b}: {x:?}, {b} vs {a}: {y:?}"
            );
            assert_eq!(a.scheme(), b.scheme(), "{a} and {b} compare across schemes");
            assert_eq!(
                a.partial_cmp(b),
                Some(x),
                "partial_cmp disagrees with compare for {a}, {b}"
            );
            assert_eq!(a == b, x == Ordering::Equal, "== disagrees with compare for {a}, {b}");
            if x == Ordering::Equal {
                assert_eq!(
                    a.is_prerelease(),
                    b.is_prerelease(),
                    "{a} == {b} but only one is a pre-release"
                );
            }
        }
        (Err(e), Err(f)) => {
            assert_eq!(e.kind(), ErrorKind::VersionMismatch);
            assert_eq!(f.kind(), ErrorKind::VersionMismatch);
            assert_ne!(a.scheme(), b.scheme(), "{a} and {b} share a scheme but do not compare");
            assert!(
                a != b && a.partial_cmp(b).is_none(),
                "{a}, {b}: no order but == or partial_cmp"
            );
        }
        _ => panic!("compare is not symmetric in failing: {a} vs {b}"),
    }
}

// ---- checksums ----------------------------------------------------------------------------------

/// `Checksums::parse` of the input as a file: accepted files have valid names and lowercase
/// 128-hex hashes, and `parse(to_text())` gives the same entries (and the same text again).
/// Structured (`0xFF`, flag byte, names split at `0xFE`): `Checksums::insert` of each name;
/// anything insert accepts must be read back equal by `parse(to_text())`, a name `-` (stdin to
/// `sha512sum`) must be refused, and when the flag byte is 0 the file plus the asset files are
/// written to a temp dir and `sha512sum -c --strict` must accept them.
pub fn checksums(data: &[u8]) {
    if let Some((&STRUCTURED, rest)) = data.split_first() {
        return checksums_insert(rest);
    }
    let Some(s) = text(data) else { return };
    let sums = match Checksums::parse(s, "fuzz") {
        Ok(sums) => sums,
        Err(e) => {
            assert_eq!(
                e.kind(),
                ErrorKind::InvalidData,
                "Checksums::parse error kind: {}",
                e.message()
            );
            return;
        }
    };
    assert!(!sums.is_empty(), "parse accepted a file without entries");
    for (name, hash) in sums.iter() {
        assert!(
            validate_asset_name(name).is_ok(),
            "parse accepted the asset name {name:?}"
        );
        assert_ne!(name, "-", "parse accepted the name `-` (sha512sum reads stdin for it)");
        assert!(
            hash.len() == 128 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "hash of {name:?} is not 128 lowercase hex digits: {hash:?}"
        );
        assert_eq!(sums.get(name), Some(hash));
    }
    let out = sums.to_text();
    let again = Checksums::parse(&out, "to_text").unwrap_or_else(|e| panic!("parse(to_text()) fails: {}", e.message()));
    assert_eq!(sorted(&again), sorted(&sums), "parse(to_text()) changed the entries");
    assert_eq!(again.to_text(), out, "to_text is not a fixed point");
}

fn sorted(sums: &Checksums) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = sums.iter().map(|(n, h)| (n.to_string(), h.to_string())).collect();
    v.sort();
    v
}

fn checksums_insert(data: &[u8]) {
    let Some((&flag, rest)) = data.split_first() else {
        return;
    };
    let mut sums = Checksums::new();
    let mut accepted: Vec<(&str, String)> = Vec::new();
    for (i, name) in fields(rest).into_iter().enumerate() {
        let content = format!("asset {i}\n");
        match sums.insert(name, &sha512_hex(content.as_bytes())) {
            Ok(()) => {
                assert_ne!(
                    name, "-",
                    "Checksums::insert accepted the name `-` (sha512sum -c reads stdin for it)"
                );
                assert!(validate_asset_name(name).is_ok(), "insert accepted {name:?}");
                accepted.push((name, content));
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidData, "insert error kind: {}", e.message()),
        }
    }
    if accepted.is_empty() {
        return;
    }
    let out = sums.to_text();
    let parsed = Checksums::parse(&out, "to_text").unwrap_or_else(|e| {
        let names: Vec<&str> = accepted.iter().map(|(n, _)| *n).collect();
        panic!(
            "Checksums::insert accepted {names:?} but parse(to_text()) refuses it: {}",
            e.message()
        )
    });
    assert_eq!(
        sorted(&parsed),
        sorted(&sums),
        "parse(to_text()) of inserted names changed the entries"
    );
    // Real sha512sum, for a sample only (a process per input is slow). Names longer than a file
    // name may be are not a finding of ours.
    if flag == 0 && accepted.iter().all(|(n, _)| n.len() <= 200) {
        // The checksums file sits outside the asset folder: any name may be an asset's.
        let dir = scratch();
        let assets = dir.path().join("assets");
        std::fs::create_dir(&assets).expect("mkdir");
        for (name, content) in &accepted {
            std::fs::write(assets.join(name), content).expect("write an asset file");
        }
        std::fs::write(dir.path().join("sums"), &out).expect("write the checksums file");
        if let Ok(o) = std::process::Command::new("sha512sum")
            .args(["-c", "--strict", "--quiet", "../sums"])
            .current_dir(&assets)
            .stdin(std::process::Stdio::null())
            .output()
        {
            assert!(
                o.status.success(),
                "sha512sum -c --strict refuses our checksums file {out:?}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

// ---- link ---------------------------------------------------------------------------------------

/// `find_rel` on the input as a `Link` header: every URL returned is a non-empty substring of the
/// header without surrounding whitespace or `>`. Structured (`0xFF`): a header is built from
/// parts where the expected `next` URL is known (quoted parameter values containing `rel=next`,
/// `;`, `,` and `<…>` must not count, blank targets must not be returned).
pub fn link(data: &[u8]) {
    if let Some((&STRUCTURED, rest)) = data.split_first() {
        return link_structured(rest);
    }
    let Some(h) = text(data) else { return };
    for rel in ["next", "last", "prev", "first"] {
        let got = link_check(h, rel);
        // Where the header is well-formed RFC 8288, the answer is known.
        if let Some(links) = strict_links(h) {
            let first_real = links.iter().position(|(u, rels)| has_rel(rels, rel) && usable(u));
            let blank_before = links
                .iter()
                .take(first_real.unwrap_or(links.len()))
                .any(|(u, rels)| has_rel(rels, rel) && !usable(u));
            let want = first_real.map(|i| links[i].0.trim().to_string());
            if !(blank_before && got.is_none()) {
                assert_eq!(got, want, "find_rel({h:?}, {rel:?}) on a well-formed header");
            }
        }
    }
}

/// A target that can be a link: not blank, no whitespace inside (a URI has none).
fn usable(target: &str) -> bool {
    let t = target.trim();
    !t.is_empty() && !t.contains(char::is_whitespace)
}

fn has_rel(rels: &[String], rel: &str) -> bool {
    rels.iter().any(|r| r.eq_ignore_ascii_case(rel))
}

/// A strict RFC 8288 parse: `(target, relations of its rel parameter)` per link, or `None` when
/// the header is not well-formed. Only a link's first `rel` counts (RFC 8288 §3.3). Targets
/// contain neither `<` nor `>`; one with whitespace is no link (see [`usable`]).
fn strict_links(h: &str) -> Option<Vec<(String, Vec<String>)>> {
    fn tchar(c: char) -> bool {
        c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
    }
    fn ows(s: &mut std::iter::Peekable<std::str::Chars<'_>>) {
        while s.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            s.next();
        }
    }
    let mut s = h.chars().peekable();
    let mut links = Vec::new();
    ows(&mut s);
    loop {
        if s.next()? != '<' {
            return None;
        }
        let mut target = String::new();
        loop {
            match s.next()? {
                '>' => break,
                '<' => return None,
                c if c.is_control() => return None,
                c => target.push(c),
            }
        }
        let mut rels: Option<Vec<String>> = None;
        loop {
            ows(&mut s);
            match s.peek() {
                Some(';') => {
                    s.next();
                }
                Some(',') | None => break,
                _ => return None,
            }
            ows(&mut s);
            let mut name = String::new();
            while s.peek().is_some_and(|c| tchar(*c)) {
                name.push(s.next()?);
            }
            if name.is_empty() {
                return None;
            }
            ows(&mut s);
            let mut value = String::new();
            if s.peek() == Some(&'=') {
                s.next();
                ows(&mut s);
                if s.peek() == Some(&'"') {
                    s.next();
                    loop {
                        match s.next()? {
                            '"' => break,
                            '\\' => value.push(s.next()?),
                            c if c.is_control() && c != '\t' => return None,
                            c => value.push(c),
                        }
                    }
                } else {
                    while s.peek().is_some_and(|c| tchar(*c)) {
                        value.push(s.next()?);
                    }
                    if value.is_empty() {
                        return None;
                    }
                }
            }
            // RFC 8288 §3.3: occurrences of rel after the first are ignored.
            if name.eq_ignore_ascii_case("rel") && rels.is_none() {
                rels = Some(
                    value
                        .split([' ', '\t'])
                        .filter(|r| !r.is_empty())
                        .map(str::to_string)
                        .collect(),
                );
            }
        }
        links.push((target, rels.unwrap_or_default()));
        ows(&mut s);
        match s.next() {
            None => return Some(links),
            Some(',') => ows(&mut s),
            Some(_) => return None,
        }
    }
}

fn link_check(h: &str, rel: &str) -> Option<String> {
    let u = find_rel(h, rel)?;
    assert!(!u.is_empty(), "find_rel({h:?}, {rel}) returned an empty URL");
    assert_eq!(
        u.trim(),
        u,
        "find_rel({h:?}, {rel}) returned {u:?} with surrounding whitespace"
    );
    assert!(
        h.contains(&u),
        "find_rel({h:?}, {rel}) returned {u:?}, not part of the header"
    );
    assert!(!u.contains('>'), "find_rel({h:?}, {rel}) returned {u:?} containing '>'");
    Some(u)
}

/// A tiny reader over the fuzz bytes: each call takes one byte (0 when exhausted).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn pick<'b>(&mut self, from: &[&'b str]) -> &'b str {
        from[usize::from(self.next()) % from.len()]
    }
}

fn link_structured(data: &[u8]) {
    const SEP: [&str; 4] = [", ", ",", " , ", ",\t"];
    const PSEP: [&str; 4] = ["; ", ";", " ; ", ";\t"];
    const RELS: [&str; 8] = [
        "next",
        "last",
        "prev",
        "first",
        "NEXT",
        "prefetch next",
        "nextx",
        "next last",
    ];
    // Quoted values: never contain '"' or '\\', but everything else a naive parser trips on.
    const QUOTED: [&str; 8] = [
        "a; rel=next; b",
        "x, <https://evil.example/>; rel=next",
        "rel=next",
        "; rel=\u{27}next\u{27}",
        "a,b",
        "",
        "<https://evil.example/?page=9>",
        "next",
    ];
    let mut b = Bytes(data);
    let n_links = 1 + usize::from(b.next() % 4);
    let mut header = String::new();
    // (url, rel values of its real rel parameters)
    let mut links: Vec<(String, bool)> = Vec::new();
    for i in 0..n_links {
        if i > 0 {
            header.push_str(b.pick(&SEP));
        }
        let url = match b.next() % 8 {
            0 => " ".to_string(),
            1 => String::new(),
            _ => format!("https://h{i}.example/r?page={}", b.next()),
        };
        header.push('<');
        header.push_str(&url);
        header.push('>');
        let mut is_next = false;
        let mut seen_rel = false;
        for _ in 0..(1 + b.next() % 3) {
            header.push_str(b.pick(&PSEP));
            match b.next() % 5 {
                0 | 1 => {
                    let rel = b.pick(&RELS);
                    let key = b.pick(&["rel", "REL", "Rel"]);
                    let eq = b.pick(&["=", " = ", "="]);
                    let quoted = rel.contains(' ') || b.next() % 2 == 0;
                    if quoted {
                        header.push_str(&format!("{key}{eq}\"{rel}\""));
                    } else {
                        header.push_str(&format!("{key}{eq}{rel}"));
                    }
                    // RFC 8288 §3.3: a rel parameter after the first is ignored.
                    if !seen_rel {
                        is_next = rel.split(' ').any(|r| r.eq_ignore_ascii_case("next"));
                        seen_rel = true;
                    }
                }
                2 | 3 => {
                    let key = b.pick(&["title", "anchor", "type", "hreflang"]);
                    header.push_str(&format!("{key}=\"{}\"", b.pick(&QUOTED)));
                }
                _ => header.push_str(b.pick(&["crossorigin", "x=y", "media=screen"])),
            }
        }
        links.push((url, is_next));
    }
    let got = link_check(&header, "next");
    let first_real = links.iter().position(|(u, n)| *n && usable(u));
    let blank_before = links
        .iter()
        .take(first_real.unwrap_or(links.len()))
        .any(|(u, n)| *n && !usable(u));
    let want = first_real.map(|i| links[i].0.clone());
    if blank_before && got.is_none() {
        // A blank rel=next target before the real one may end the search; it must never be
        // returned (link_check) and nothing else may be.
        return;
    }
    assert_eq!(got, want, "find_rel({header:?}, \"next\")");
}

// ---- receipt ------------------------------------------------------------------------------------

const RECEIPT_FIELDS: [&str; 8] = [
    "source",
    "repository",
    "version",
    "installed_at",
    "channel",
    "api_url",
    "public_key",
    "highest_seen_version",
];

/// `InstallSource::load` of the input as `install-source.json`. For accepted receipts:
/// save → load → save is a fixed point (byte-identical), load gives back an equal receipt, the
/// file is `to_json()`, unknown fields keep their values, and every number in the written file
/// appears verbatim in the input (an unknown `128446744073709551616` must stay exactly that).
/// Refused receipts are `InvalidReceipt`.
pub fn receipt(data: &[u8]) {
    let dir = scratch();
    std::fs::write(receipt_path(dir.path()), data).expect("write the receipt");
    let r = match InstallSource::load(dir.path()) {
        Ok(Some(r)) => r,
        Ok(None) => panic!("load() says there is no receipt, but the file exists"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidReceipt, "load error kind: {}", e.message());
            return;
        }
    };
    let first = save_read(&r);
    assert_eq!(first, r.to_json(), "save() did not write to_json()");
    let d2 = scratch();
    std::fs::write(receipt_path(d2.path()), &first).expect("write");
    let r2 = InstallSource::load(d2.path())
        .unwrap_or_else(|e| panic!("a receipt save() wrote does not load: {}\n{first}", e.message()))
        .expect("present");
    assert_eq!(r2, r, "load(save(r)) != r");
    let second = save_read(&r2);
    assert_eq!(second, first, "save → load → save is not a fixed point");

    let input: serde_json::Value = serde_json::from_slice(data).expect("load accepted it, so it is JSON");
    let output: serde_json::Value = serde_json::from_str(&first).expect("save writes JSON");
    if let (Some(i), Some(o)) = (input.as_object(), output.as_object()) {
        for (k, v) in i {
            if !RECEIPT_FIELDS.contains(&k.as_str()) {
                assert_eq!(o.get(k), Some(v), "unknown field {k:?} not kept unchanged");
            }
        }
    }
    let input_numbers = number_literals(&String::from_utf8_lossy(data));
    for n in number_literals(&first) {
        assert!(
            input_numbers.contains(&n),
            "the saved receipt has the number {n} that the input does not have (inputs: {input_numbers:?}): a \
             number of an unknown field was rewritten"
        );
    }
}

fn save_read(r: &InstallSource) -> String {
    let d = scratch();
    r.save(d.path())
        .unwrap_or_else(|e| panic!("save() of a loaded receipt fails: {}", e.message()));
    std::fs::read_to_string(receipt_path(d.path())).expect("read the saved receipt")
}

/// The number tokens of a JSON text, outside strings.
fn number_literals(json: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
        } else if c == '-' || c.is_ascii_digit() {
            let mut n = String::from(c);
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E' | '+' | '-') {
                    n.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(n);
        }
    }
    out
}

// ---- release JSON and channels -------------------------------------------------------------------

/// GitHub release JSON (`Vec<Release>` or one `Release`): accepted input survives a serde round
/// trip, and for each channel and scheme filter the chosen release is one of the inputs, never
/// a draft, its tag parses to the returned version, stable never picks a pre-release, and no
/// other release of the channel (and scheme) is higher; `None` only when nothing qualifies,
/// `VersionMismatch` only for mixed schemes without a filter; nightly is never below stable.
pub fn release_json(data: &[u8]) {
    let releases: Vec<Release> = match serde_json::from_slice::<Vec<Release>>(data) {
        Ok(v) => v,
        Err(_) => match serde_json::from_slice::<Release>(data) {
            Ok(r) => vec![r],
            Err(_) => return,
        },
    };
    let json = serde_json::to_string(&releases).expect("serialize releases");
    let back: Vec<Release> = serde_json::from_str(&json).unwrap_or_else(|e| panic!("serde round trip: {e}"));
    assert_eq!(back, releases, "releases changed in a serde round trip");
    for r in &releases {
        for a in &r.assets {
            assert_eq!(r.asset(&a.name).map(|x| &x.name), Some(&a.name));
            if let Some(d) = a.sha256_digest() {
                assert!(a.digest.as_deref().is_some_and(|full| full.ends_with(d)));
            }
        }
    }
    for scheme in [
        None,
        Some(Scheme::FlynnDate),
        Some(Scheme::DottedDate),
        Some(Scheme::Semver),
    ] {
        let stable = channel_check(&releases, Channel::Stable, scheme);
        let nightly = channel_check(&releases, Channel::Nightly, scheme);
        if let (Some(s), Some(n)) = (stable, nightly) {
            assert!(
                !n.compare(&s).is_ok_and(Ordering::is_lt),
                "nightly chose {n}, below stable's {s}"
            );
        }
    }
}

fn qualifies(r: &Release, channel: Channel, scheme: Option<Scheme>) -> Option<Version> {
    if r.draft {
        return None;
    }
    let v = Version::parse(&r.tag_name).ok()?;
    if channel == Channel::Stable && (r.prerelease || v.is_prerelease()) {
        return None;
    }
    if scheme.is_some_and(|s| s != v.scheme()) {
        return None;
    }
    Some(v)
}

fn channel_check(releases: &[Release], channel: Channel, scheme: Option<Scheme>) -> Option<Version> {
    let eligible: Vec<Version> = releases.iter().filter_map(|r| qualifies(r, channel, scheme)).collect();
    match select_channel(releases, channel, scheme) {
        Ok(Some((r, v))) => {
            assert!(
                releases.iter().any(|x| std::ptr::eq(x, r)),
                "{channel}: the chosen release is not one of the inputs"
            );
            assert!(!r.draft, "{channel}: chose the draft {}", r.tag_name);
            let tag = Version::parse(&r.tag_name).expect("the chosen tag is a version");
            assert!(
                tag == v && v.as_str() == r.tag_name,
                "{channel}: version {v} is not the tag {}",
                r.tag_name
            );
            if channel == Channel::Stable {
                assert!(!r.prerelease && !v.is_prerelease(), "stable chose the pre-release {v}");
            }
            if let Some(s) = scheme {
                assert_eq!(v.scheme(), s, "{channel}: chose {v} outside the scheme {s}");
            }
            for e in &eligible {
                let o = e
                    .compare(&v)
                    .unwrap_or_else(|_| panic!("{channel}: chose {v} among mixed schemes ({e})"));
                assert!(o.is_le(), "{channel}: chose {v} but {e} is higher");
            }
            Some(v)
        }
        Ok(None) => {
            assert!(eligible.is_empty(), "{channel}: chose nothing among {eligible:?}");
            None
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::VersionMismatch, "{channel}: {}", e.message());
            assert!(
                scheme.is_none() && eligible.iter().any(|v| v.scheme() != eligible[0].scheme()),
                "{channel}: VersionMismatch without mixed schemes: {}",
                e.message()
            );
            None
        }
    }
}

// ---- images.json and layer entry names -----------------------------------------------------------

/// `layers_from_images_json` of the input: accepted layers have valid ids (plain file-name
/// tokens), 64 lowercase-hex sha512/256, unique sorted ids, and file names `<id>.squashfs` that
/// `flat_entry_name` accepts unchanged. `flat_entry_name` of the input: an accepted name is the
/// input itself, plain (no `/`, `\`, NUL, not `.`/`..`, not empty), and survives a tar header
/// round trip.
pub fn images(data: &[u8]) {
    match layers_from_images_json(data, "images.json") {
        Ok(layers) => {
            for w in layers.windows(2) {
                assert!(
                    w[0].id < w[1].id,
                    "layers not sorted and unique: {} then {}",
                    w[0].id,
                    w[1].id
                );
            }
            for l in &layers {
                assert!(validate_layer_id(&l.id), "accepted the layer id {:?}", l.id);
                assert!(
                    l.sha512_256.len() == 64
                        && l.sha512_256
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    "layer {} hash {:?}",
                    l.id,
                    l.sha512_256
                );
                let f = l.file_name();
                assert_eq!(f, format!("{}.squashfs", l.id));
                assert_eq!(
                    flat_entry_name(f.as_bytes()),
                    Some(f.as_str()),
                    "layer file name {f:?} is not flat"
                );
            }
        }
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::InvalidData,
            "images.json error kind: {}",
            e.message()
        ),
    }
    for raw in [data, data.split(|b| *b == b'\n').next().unwrap_or_default()] {
        entry_name(raw);
    }
}

fn entry_name(raw: &[u8]) {
    let Some(name) = flat_entry_name(raw) else { return };
    assert_eq!(name.as_bytes(), raw, "flat_entry_name changed the name");
    assert!(!name.is_empty() && name != "." && name != "..", "accepted {name:?}");
    assert!(!name.contains(['/', '\\', '\0']), "accepted the path-like {name:?}");
    if name.len() > 200 {
        return;
    }
    // What a tar writer stores under this name reads back as the same flat name.
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    let mut b = tar::Builder::new(Vec::new());
    if b.append_data(&mut header, name, &b"x"[..]).is_err() {
        return;
    }
    let bytes = b.into_inner().expect("finish the tar");
    let mut a = tar::Archive::new(&bytes[..]);
    let mut entries = a.entries().expect("read our own tar");
    let e = entries.next().expect("one entry").expect("a valid entry");
    let stored = e.path_bytes().into_owned();
    assert_eq!(
        flat_entry_name(&stored),
        Some(name),
        "tar round trip of {name:?} gave {stored:?}"
    );
}

// ---- signature ----------------------------------------------------------------------------------

fn fuzz_key() -> &'static TrustedKey {
    static KEY: OnceLock<TrustedKey> = OnceLock::new();
    KEY.get_or_init(|| TrustedKey::parse(FUZZ_PUBLIC_KEY).expect("the fuzzing key parses"))
}

/// What a minisign signature's checks cover: (decoded line 2, trusted comment, decoded line 4).
fn signed_parts(sig: &str) -> Option<(Vec<u8>, String, Vec<u8>)> {
    use ct_codecs::{Base64, Decoder};
    let mut lines = sig.lines();
    // minisign refuses a first line without this prefix, so it is part of what must be intact.
    lines.next()?.strip_prefix("untrusted comment: ")?;
    let l2 = Base64::decode_to_vec(lines.next()?.trim(), None).ok()?;
    let tc = lines.next()?.strip_prefix("trusted comment: ")?.trim().to_string();
    let l4 = Base64::decode_to_vec(lines.next()?.trim(), None).ok()?;
    Some((l2, tc, l4))
}

/// `verify_checksums` with the fuzzing key: the input as the signature over the genuine
/// checksums, and the genuine signature over the input as the checksums. Invariants: no panic
/// (a genuine signature whose 4th line decodes to fewer than 64 bytes must be refused, not
/// crash), only the genuine signature (its signed parts unmodified) of the genuine file
/// verifies, errors are `SignatureInvalid`. `TrustedKey::parse` of the input: `InvalidArgument`
/// or a key whose algorithm id is `Ed`, which round-trips through its base64.
pub fn signature(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let key = fuzz_key();
    match verify_checksums(key, FUZZ_CHECKSUMS.as_bytes(), s, "fuzz.minisig", SIG_REPO, SIG_VERSION) {
        Ok(()) => assert_eq!(
            signed_parts(s),
            signed_parts(FUZZ_SIGNATURE),
            "a signature whose signed parts differ from the genuine one verified:\n{s}"
        ),
        Err(e) => {
            assert_eq!(
                e.kind(),
                ErrorKind::SignatureInvalid,
                "verify error kind: {}",
                e.message()
            );
            assert!(
                signed_parts(s) != signed_parts(FUZZ_SIGNATURE),
                "the genuine signature (signed parts unmodified) was refused: {}",
                e.message()
            );
        }
    }
    match verify_checksums(key, data, FUZZ_SIGNATURE, "fuzz.minisig", SIG_REPO, SIG_VERSION) {
        Ok(()) => assert_eq!(s, FUZZ_CHECKSUMS, "the genuine signature verified other checksums"),
        Err(e) => {
            assert_eq!(
                e.kind(),
                ErrorKind::SignatureInvalid,
                "verify error kind: {}",
                e.message()
            );
            assert_ne!(
                s, FUZZ_CHECKSUMS,
                "the genuine signature of the genuine file was refused"
            );
        }
    }
    trusted_key(s);
}

fn trusted_key(s: &str) {
    use ct_codecs::{Base64, Decoder};
    // A path names a file of this machine, not fuzz input.
    let t = s.trim();
    if !t.contains('\n') && !t.starts_with("RW") && (t.is_empty() || Path::new(t).exists()) {
        return;
    }
    match TrustedKey::parse(s) {
        Ok(k) => {
            let raw = Base64::decode_to_vec(k.to_base64(), None).expect("to_base64 is base64");
            assert_eq!(raw.len(), 42, "key {} is not 42 bytes", k.to_base64());
            assert_eq!(
                &raw[..2],
                b"Ed",
                "TrustedKey::parse accepted the algorithm id {:?} (not Ed)",
                &raw[..2]
            );
            let again = TrustedKey::parse(k.to_base64()).expect("to_base64 parses");
            assert_eq!(again.to_base64(), k.to_base64());
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidArgument, "key error kind: {}", e.message()),
    }
}

// ---- C ABI --------------------------------------------------------------------------------------

/// The C ABI functions that take caller bytes, with NUL-terminated fuzzed strings (first byte:
/// which function; the rest: arguments split at NUL). Invariants: never `PANIC`, statuses in
/// each function's documented set, an error object exactly when the status is not OK (code =
/// status, message valid UTF-8) and freed, out-strings only on success, valid JSON, freed with
/// `flynnrel_string_free`, results consistent with the Rust API.
pub fn capi(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let args: Vec<CString> = rest
        .split(|b| *b == 0)
        .map(|p| CString::new(p).expect("no NUL inside a piece"))
        .collect();
    let arg = |i: usize| args.get(i).map(|c| c.as_ptr()).unwrap_or(std::ptr::null());
    use ffi::*;
    match sel % 6 {
        0 => {
            let mut out: *mut c_char = std::ptr::null_mut();
            let mut err: *mut flynnrel_error = std::ptr::null_mut();
            let st = flynnrel_version_parse(arg(0), &mut out, &mut err);
            let allowed = [
                FLYNNREL_STATUS_OK,
                FLYNNREL_STATUS_INVALID_ARGUMENT,
                FLYNNREL_STATUS_INVALID_DATA,
                FLYNNREL_STATUS_NULL_ARGUMENT,
            ];
            capi_status("flynnrel_version_parse", st, err, &allowed);
            if let Some(j) = capi_json("flynnrel_version_parse", st, out) {
                let given = args[0].to_str().expect("OK means UTF-8");
                let v = Version::parse(given).expect("the C ABI parsed it");
                assert_eq!(j["version"], given);
                assert_eq!(j["scheme"], v.scheme().name());
                assert_eq!(j["prerelease"], v.is_prerelease());
            }
        }
        1 => {
            let mut r: c_int = 99;
            let mut err: *mut flynnrel_error = std::ptr::null_mut();
            let st = flynnrel_version_compare(arg(0), arg(1), &mut r, &mut err);
            let allowed = [
                FLYNNREL_STATUS_OK,
                FLYNNREL_STATUS_INVALID_ARGUMENT,
                FLYNNREL_STATUS_INVALID_DATA,
                FLYNNREL_STATUS_VERSION_MISMATCH,
                FLYNNREL_STATUS_NULL_ARGUMENT,
            ];
            capi_status("flynnrel_version_compare", st, err, &allowed);
            if st == FLYNNREL_STATUS_OK {
                let a = Version::parse(args[0].to_str().unwrap()).unwrap();
                let b = Version::parse(args[1].to_str().unwrap()).unwrap();
                assert_eq!(r, a.compare(&b).unwrap() as c_int, "flynnrel_version_compare({a}, {b})");
            } else {
                assert_eq!(r, 99, "flynnrel_version_compare wrote result_out on an error");
            }
        }
        2 => {
            let dir = scratch();
            if let Some(content) = args.first() {
                std::fs::write(receipt_path(dir.path()), content.as_bytes()).expect("write the receipt");
            }
            let cdir = cpath(dir.path());
            let mut out: *mut c_char = std::ptr::null_mut();
            let mut err: *mut flynnrel_error = std::ptr::null_mut();
            let st = flynnrel_receipt_load(cdir.as_ptr(), arg(1), &mut out, &mut err);
            let allowed = [
                FLYNNREL_STATUS_OK,
                FLYNNREL_STATUS_INVALID_ARGUMENT,
                FLYNNREL_STATUS_INVALID_RECEIPT,
            ];
            capi_status("flynnrel_receipt_load", st, err, &allowed);
            if let Some(j) = capi_json("flynnrel_receipt_load", st, out) {
                assert_eq!(j["legacy"], args.is_empty(), "legacy flag");
            }
        }
        3 => {
            let dir = scratch();
            let cdir = cpath(dir.path());
            let allowed = [
                FLYNNREL_STATUS_OK,
                FLYNNREL_STATUS_INVALID_ARGUMENT,
                FLYNNREL_STATUS_INVALID_RECEIPT,
                FLYNNREL_STATUS_DOWNGRADE_REFUSED,
                FLYNNREL_STATUS_SIGNATURE_INVALID,
                FLYNNREL_STATUS_NULL_ARGUMENT,
            ];
            for i in 0..2 {
                let mut err: *mut flynnrel_error = std::ptr::null_mut();
                let st = flynnrel_receipt_save(cdir.as_ptr(), arg(i), &mut err);
                capi_status("flynnrel_receipt_save", st, err, &allowed);
                if st == FLYNNREL_STATUS_OK {
                    let mut out: *mut c_char = std::ptr::null_mut();
                    let mut err: *mut flynnrel_error = std::ptr::null_mut();
                    let st = flynnrel_receipt_load(cdir.as_ptr(), std::ptr::null(), &mut out, &mut err);
                    capi_status("flynnrel_receipt_load after save", st, err, &[FLYNNREL_STATUS_OK]);
                    let j = capi_json("flynnrel_receipt_load", st, out).expect("OK");
                    assert_eq!(j["legacy"], false, "a saved receipt loads as legacy");
                }
            }
        }
        4 => {
            let mut out: *mut c_char = std::ptr::null_mut();
            let mut err: *mut flynnrel_error = std::ptr::null_mut();
            let dir = cpath(signed_release_dir());
            let st = flynnrel_verify(dir.as_ptr(), arg(0), &mut out, &mut err);
            let allowed = [
                FLYNNREL_STATUS_OK,
                FLYNNREL_STATUS_INVALID_ARGUMENT,
                FLYNNREL_STATUS_INVALID_DATA,
                FLYNNREL_STATUS_SIGNATURE_INVALID,
                FLYNNREL_STATUS_NOT_FOUND,
                FLYNNREL_STATUS_IO,
            ];
            capi_status("flynnrel_verify", st, err, &allowed);
            capi_json("flynnrel_verify", st, out);
        }
        _ => {
            let mut cl: *mut flynnrel_client = std::ptr::null_mut();
            let mut err: *mut flynnrel_error = std::ptr::null_mut();
            let st = flynnrel_client_new(arg(0), &mut cl, &mut err);
            let allowed = [
                FLYNNREL_STATUS_OK,
                FLYNNREL_STATUS_INVALID_ARGUMENT,
                FLYNNREL_STATUS_INSECURE_URL,
            ];
            capi_status("flynnrel_client_new", st, err, &allowed);
            assert_eq!(st == FLYNNREL_STATUS_OK, !cl.is_null(), "client_out written iff OK");
            flynnrel_client_free(cl);
        }
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.to_str().expect("UTF-8 temp path")).expect("no NUL in a temp path")
}

fn capi_status(name: &str, st: ffi::flynnrel_status, err: *mut ffi::flynnrel_error, allowed: &[ffi::flynnrel_status]) {
    let msg = if err.is_null() {
        String::new()
    } else {
        // SAFETY: err came from the library's err_out and is freed below, once.
        let m = unsafe { CStr::from_ptr(ffi::flynnrel_error_message(err)) };
        m.to_str()
            .unwrap_or_else(|_| panic!("{name}: the error message is not UTF-8"))
            .to_string()
    };
    assert_ne!(st, ffi::FLYNNREL_STATUS_PANIC, "{name} returned PANIC: {msg}");
    assert!(
        allowed.contains(&st),
        "{name} returned status {st} outside {allowed:?}: {msg}"
    );
    if st == ffi::FLYNNREL_STATUS_OK {
        assert!(err.is_null(), "{name}: OK with an error object");
    } else {
        assert!(!err.is_null(), "{name}: status {st} without an error object");
        assert_eq!(
            ffi::flynnrel_error_code(err),
            st,
            "{name}: error code differs from the status"
        );
        assert!(!msg.is_empty(), "{name}: empty error message");
    }
    ffi::flynnrel_error_free(err);
}

/// The JSON an OK call wrote, freed; on an error the out-parameter must still be NULL.
fn capi_json(name: &str, st: ffi::flynnrel_status, out: *mut c_char) -> Option<serde_json::Value> {
    if st != ffi::FLYNNREL_STATUS_OK {
        assert!(out.is_null(), "{name}: wrote json_out on an error");
        return None;
    }
    assert!(!out.is_null(), "{name}: OK without json_out");
    // SAFETY: a NUL-terminated string the library returned; freed below, once.
    let s = unsafe { CStr::from_ptr(out) }.to_str().map(str::to_owned);
    ffi::flynnrel_string_free(out);
    let s = s.unwrap_or_else(|_| panic!("{name}: json_out is not UTF-8"));
    Some(serde_json::from_str(&s).unwrap_or_else(|e| panic!("{name}: json_out is not JSON ({e}): {s}")))
}

/// A signed release folder: the fuzzing key's genuine checksums file, signature and assets.
fn signed_release_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::Builder::new()
            .prefix("flynnrel-fuzz-release-")
            .tempdir()
            .expect("temp dir");
        let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/github");
        let testdata = if testdata.is_dir() {
            testdata
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/github")
        };
        let sums = Checksums::parse(FUZZ_CHECKSUMS, "fuzz").expect("the fuzz checksums parse");
        for name in sums.names() {
            std::fs::copy(testdata.join(name), d.path().join(name)).expect("copy a signed asset");
        }
        std::fs::write(d.path().join("checksums.sha512"), FUZZ_CHECKSUMS).expect("write");
        std::fs::write(d.path().join("checksums.sha512.minisig"), FUZZ_SIGNATURE).expect("write");
        d
    })
    .path()
}

// ---- the release server -------------------------------------------------------------------------

struct ServeFixture {
    server: flynnrel::serve::Server,
    addrs: [SocketAddr; 3],
    _root: tempfile::TempDir,
}

/// The most log entries the fuzzing server keeps.
pub const KEEP_REQUESTS: usize = 64;

fn serve_fixture() -> &'static ServeFixture {
    static SERVER: OnceLock<ServeFixture> = OnceLock::new();
    SERVER.get_or_init(|| {
        let root = tempfile::Builder::new()
            .prefix("flynnrel-fuzz-serve-")
            .tempdir()
            .expect("temp dir");
        for (tag, meta) in [
            (
                "v20240127.0",
                r#"{"name": "first", "prerelease": false, "created_at": "2024-01-27T12:00:00Z"}"#,
            ),
            (
                "v20240128.0",
                r#"{"prerelease": true, "created_at": "2024-01-28T12:00:00Z"}"#,
            ),
        ] {
            let dir = root.path().join("flynn/flynn").join(tag);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let mut sums = Checksums::new();
            for (name, body) in [
                ("flynn-host-linux-amd64.gz", format!("host {tag}")),
                ("images.json.gz", format!("images {tag}")),
            ] {
                std::fs::write(dir.join(name), &body).expect("write asset");
                sums.insert(name, &sha512_hex(body.as_bytes())).expect("insert");
            }
            std::fs::write(dir.join("checksums.sha512"), sums.to_text()).expect("write");
            std::fs::write(dir.join(".release.json"), meta).expect("write");
        }
        let mut opts = flynnrel::serve::ServeOptions::new(root.path());
        opts.keep_requests = KEEP_REQUESTS;
        // The server plays GitHub's 5000-an-hour rate limit; a fuzzer sends more than that in
        // seconds, and a 403 after it is GitHub's behaviour, not a fault.
        opts.rate_limit = u32::MAX;
        let server = flynnrel::serve::start(opts).expect("start the release server");
        let addr = |url: String| -> SocketAddr {
            let port: u16 = url
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port in URL");
            SocketAddr::from(([127, 0, 0, 1], port))
        };
        let addrs = [
            addr(server.api_url()),
            addr(server.web_url()),
            addr(server.storage_url()),
        ];
        ServeFixture {
            server,
            addrs,
            _root: root,
        }
    })
}

/// Sends `request` on a new connection, half-closes, and reads the answer until the server
/// closes (at most 8 MiB). `Err` when the server neither answers nor closes within 10 s.
fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = s.write_all(request);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > 8 << 20 {
                    return Ok(out);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!(
                    "no answer and no close within 10 s ({} bytes so far)",
                    out.len()
                ));
            }
            // A reset after the server closed with our bytes unread: what arrived is the answer.
            Err(_) => return Ok(out),
        }
    }
}

/// Checks that `resp` starts with a status line `HTTP/1.1 NNN ` (100–599; `HTTP/1.0 NNN ` for
/// an HTTP/1.0 request, which hyper answers in the client's version), or is a prefix of one when
/// the connection was cut short.
fn check_status_line(resp: &[u8], what: &str) {
    if resp.is_empty() {
        return;
    }
    let head = &resp[..resp.len().min(13)];
    let pattern = b"HTTP/1.v ddd ";
    for (i, (&got, &want)) in head.iter().zip(pattern.iter()).enumerate() {
        let ok = match want {
            b'd' => got.is_ascii_digit(),
            b'v' => got == b'0' || got == b'1',
            _ => got == want,
        };
        assert!(
            ok,
            "{what}: the answer does not start with `HTTP/1.x NNN ` (byte {i}): {:?}",
            String::from_utf8_lossy(&resp[..resp.len().min(80)])
        );
    }
    if resp.len() >= 13 {
        let code: u16 = std::str::from_utf8(&resp[9..12]).unwrap().parse().unwrap();
        assert!((100..=599).contains(&code), "{what}: status {code}");
    }
}

/// The release server (`flynnrel::serve`, started once over a two-release folder): the input
/// as raw bytes of a request to each of the three listeners. Invariants: every answer starts
/// with a valid `HTTP/1.1 NNN` status line, the server closes after the client's end (no
/// hang), keeps answering a normal GET afterwards, and keeps its request log bounded.
pub fn serve_http(data: &[u8]) {
    let f = serve_fixture();
    let names = ["api", "web", "storage"];
    for (addr, name) in f.addrs.iter().zip(names) {
        let resp = exchange(*addr, data).unwrap_or_else(|e| panic!("{name} listener: {e}"));
        check_status_line(&resp, name);
    }
    let normal = b"GET /repos/flynn/flynn/releases HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let resp = exchange(f.addrs[0], normal).unwrap_or_else(|e| panic!("normal GET after the input: {e}"));
    assert!(
        resp.starts_with(b"HTTP/1.1 200 "),
        "the server no longer answers a normal GET: {:?}",
        String::from_utf8_lossy(&resp[..resp.len().min(200)])
    );
    let log = f.server.requests();
    assert!(
        log.len() <= KEEP_REQUESTS,
        "the server keeps {} requests, more than {KEEP_REQUESTS}",
        log.len()
    );
    for r in &log {
        use flynnrel::serve::{LOGGED_URL_BYTES, LOGGED_VALUE_BYTES};
        assert!(r.url.len() <= LOGGED_URL_BYTES, "a logged URL of {} bytes", r.url.len());
        assert!(
            r.method.len() <= LOGGED_VALUE_BYTES,
            "a logged method of {} bytes",
            r.method.len()
        );
        assert!(r.headers.len() <= 7, "{} logged headers", r.headers.len());
        for (n, v) in &r.headers {
            assert!(v.len() <= LOGGED_VALUE_BYTES, "logged header {n} of {} bytes", v.len());
        }
    }
}

// ---- gzip ---------------------------------------------------------------------------------------

/// The cap of the fuzzed decompression.
pub const GZIP_CAP: u64 = 1 << 20;

/// `flynnrel::model::gz`: the input as a gzip stream, decompressed with a cap: never more than the cap
/// (`TooLarge` beyond it), the count returned equals the bytes written, errors are `InvalidData`
/// or `TooLarge`, and a cap of one byte less than the output is refused. The input as data:
/// `ParGzWriter` output is identical for 1 and 2 threads (levels 0, 4, 8, 12), its summary is right, and
/// `gunzip_capped` gives the input back (within a cap of exactly its length).
pub fn gzip(data: &[u8]) {
    use flynnrel::model::gz::{ParGzWriter, gunzip_capped};
    let mut out = Vec::new();
    match gunzip_capped(data, &mut out, GZIP_CAP, "fuzz.gz") {
        Ok(n) => {
            assert_eq!(
                n,
                out.len() as u64,
                "gunzip_capped returned {n} but wrote {}",
                out.len()
            );
            assert!(n <= GZIP_CAP, "decompressed {n} bytes past the cap {GZIP_CAP}");
            if n > 0 {
                let mut o2 = Vec::new();
                let e = gunzip_capped(data, &mut o2, n - 1, "fuzz.gz").expect_err("a cap below the output");
                assert_eq!(e.kind(), ErrorKind::TooLarge, "{}", e.message());
                assert!((o2.len() as u64) < n, "wrote {} bytes past the cap {}", o2.len(), n - 1);
            }
        }
        Err(e) => {
            assert!(
                matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::TooLarge),
                "gunzip error kind {:?}: {}",
                e.kind(),
                e.message()
            );
            assert!(out.len() as u64 <= GZIP_CAP, "wrote {} bytes past the cap", out.len());
        }
    }
    let level = i32::from(data.first().copied().unwrap_or(0) % 13);
    let compress = |threads: usize| {
        let mut w = ParGzWriter::new(Vec::new(), threads, level).expect("levels 0-12 are valid");
        for piece in data.chunks(1000) {
            w.write_all(piece).expect("compress");
        }
        w.finish().expect("finish")
    };
    let (one, s1) = compress(1);
    // Threads are costly under the sanitizer: compare thread counts for a quarter of inputs.
    if level % 4 == 0 {
        let (two, s2) = compress(2);
        assert!(one == two && s1 == s2, "compression depends on the thread count");
    }
    assert_eq!(s1.bytes_in, data.len() as u64);
    assert_eq!(s1.bytes_out, one.len() as u64);
    assert_eq!(s1.sha512, sha512_hex(&one));
    let mut back = Vec::new();
    let n = gunzip_capped(&one[..], &mut back, data.len() as u64, "roundtrip.gz")
        .unwrap_or_else(|e| panic!("our own gzip does not decompress within its length: {}", e.message()));
    assert_eq!(n, data.len() as u64);
    assert!(back == data, "gzip round trip changed the data");
}

/// A fuzz target.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: [(&str, Target); 10] = [
    ("version", version),
    ("checksums", checksums),
    ("link", link),
    ("receipt", receipt),
    ("release_json", release_json),
    ("images", images),
    ("signature", signature),
    ("capi", capi),
    ("serve_http", serve_http),
    ("gzip", gzip),
];

/// The directory of this crate (`fuzz/`), where `corpus/` and `regressions/` are.
pub fn fuzz_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("fuzz_targets").is_dir() {
        here.to_path_buf()
    } else {
        here.join("fuzz")
    }
}
