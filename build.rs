//! Generates include/flynnrel.h from src/ffi/ with cbindgen, with version macros from
//! Cargo.toml and the status macros from the table of error kinds (src/error_kinds.rs), and
//! go/flynnrel/status_gen.go (Go's status constants and sentinels) from the same table. Committed
//! files are rewritten only when their content changes (so builds do not touch the tree
//! needlessly, and `git diff` shows any drift; script/test fails on it). The FFI's Rust status
//! constants go to `$OUT_DIR/status.rs`, which src/ffi includes.

use std::path::{Path, PathBuf};

/// One row of the table.
struct Kind {
    code: u32,
    variant: &'static str,
    name: &'static str,
    doc: &'static [&'static str],
}

/// Reads src/error_kinds.rs as data (src/error.rs expands the same invocation into the enum).
macro_rules! error_kinds {
    ($( $(#[doc = $doc:literal])* $code:literal $variant:ident $name:literal; )*) => {
        const KINDS: &[Kind] = &[$(Kind { code: $code, variant: stringify!($variant), name: $name, doc: &[$($doc),*] },)*];
    };
}

include!("src/error_kinds.rs");

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/error_kinds.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=Cargo.toml");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let mut config = match cbindgen::Config::from_file(dir.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => panic!("cannot read cbindgen.toml: {e}"),
    };
    let version = env("CARGO_PKG_VERSION");
    check_table();
    config.after_includes = Some(format!(
        "\n#define FLYNNREL_VERSION \"{version}\"\n#define FLYNNREL_VERSION_MAJOR {}\n#define FLYNNREL_VERSION_MINOR {}\n#define FLYNNREL_VERSION_PATCH {}\n{}",
        env("CARGO_PKG_VERSION_MAJOR"),
        env("CARGO_PKG_VERSION_MINOR"),
        env("CARGO_PKG_VERSION_PATCH"),
        c_status_macros(),
    ));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    write_if_changed(&out_dir.join("status.rs"), rust_status_consts().as_bytes());
    write_if_changed(&dir.join("go/flynnrel/status_gen.go"), go_status_file().as_bytes());
    let bindings = match cbindgen::Builder::new()
        .with_config(config)
        // mod.rs pulls in `mod api;` itself; naming api.rs too would declare everything twice.
        .with_src(dir.join("src/ffi/mod.rs"))
        .generate()
    {
        Ok(b) => b,
        Err(e) => panic!("cbindgen failed to generate include/flynnrel.h: {e}"),
    };
    let mut text = Vec::new();
    bindings.write(&mut text);
    write_if_changed(&dir.join("include/flynnrel.h"), &text);
}

/// Writes `text` to `path` unless it already holds exactly that (creating its folder).
fn write_if_changed(path: &Path, text: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(text) {
        let parent = path.parent().expect("a file in a folder");
        if let Err(e) = std::fs::create_dir_all(parent).and_then(|()| std::fs::write(path, text)) {
            panic!("cannot write {}: {e}", path.display());
        }
    }
}

/// The codes run 1, 2, … in order and the names are the snake_case variants: a table edit that
/// breaks either fails the build here, before anything is generated.
fn check_table() {
    for (i, k) in KINDS.iter().enumerate() {
        assert_eq!(
            k.code as usize,
            i + 1,
            "src/error_kinds.rs: {} must have code {}",
            k.variant,
            i + 1
        );
        assert_eq!(
            k.name,
            snake(k.variant),
            "src/error_kinds.rs: the name of {} must be its snake_case",
            k.variant
        );
        assert!(
            !k.doc.is_empty(),
            "src/error_kinds.rs: {} needs a doc comment",
            k.variant
        );
    }
}

/// The words of a CamelCase identifier.
fn words(camel: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() || out.is_empty() {
            out.push(String::new());
        }
        out.last_mut().expect("a word").push(c);
    }
    out
}

fn snake(camel: &str) -> String {
    words(camel)
        .iter()
        .map(|w| w.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join("_")
}

/// `FLYNNREL_STATUS_CHECKSUM_MISMATCH`.
fn c_name(k: &Kind) -> String {
    format!("FLYNNREL_STATUS_{}", k.name.to_ascii_uppercase())
}

/// The Go spelling of a variant: Go's initialisms in capitals (`Io` → `IO`, `InsecureUrl` →
/// `InsecureURL`), as the exported names have always been.
fn go_name(k: &Kind) -> String {
    words(k.variant)
        .into_iter()
        .map(|w| match w.as_str() {
            "Io" | "Url" | "Http" | "Tuf" => w.to_ascii_uppercase(),
            _ => w,
        })
        .collect()
}

/// The doc lines without the one leading space of `/// text`.
fn doc_lines(k: &Kind) -> impl Iterator<Item = &'static str> {
    k.doc.iter().map(|l| l.strip_prefix(' ').unwrap_or(l))
}

/// The status macros of the header, documented like cbindgen documents its items.
fn c_status_macros() -> String {
    let mut s = String::from("\n/*\n Success.\n */\n#define FLYNNREL_STATUS_OK 0\n");
    for k in KINDS {
        s.push_str("\n/*\n");
        for l in doc_lines(k) {
            s.push_str(&format!(" {l}\n"));
        }
        s.push_str(&format!(" */\n#define {} {}\n", c_name(k), k.code));
    }
    s
}

/// The FFI's Rust constants (src/ffi includes this file; cbindgen does not see it).
fn rust_status_consts() -> String {
    let mut s = String::from(
        "// Generated by build.rs from src/error_kinds.rs.\n\n/// Success.\npub const FLYNNREL_STATUS_OK: flynnrel_status = 0;\n",
    );
    for k in KINDS {
        for l in k.doc {
            s.push_str(&format!("///{l}\n"));
        }
        s.push_str(&format!("pub const {}: flynnrel_status = {};\n", c_name(k), k.code));
    }
    s
}

/// go/flynnrel/status_gen.go, gofmt-clean: one spec per paragraph, so gofmt aligns nothing.
fn go_status_file() -> String {
    let mut s = String::from(
        "// Code generated by build.rs from src/error_kinds.rs; DO NOT EDIT.\n\npackage flynnrel\n\n// #include \"flynnrel.h\"\nimport \"C\"\n\n// The status codes of include/flynnrel.h, one per error kind.\nconst (\n\t// StatusOK is success.\n\tStatusOK Status = C.FLYNNREL_STATUS_OK\n",
    );
    for k in KINDS {
        s.push_str(&format!("\n\t// Status{} ({}, {}):\n", go_name(k), k.name, k.code));
        for l in doc_lines(k) {
            s.push_str(&format!("\t// {l}\n"));
        }
        s.push_str(&format!("\tStatus{} Status = C.{}\n", go_name(k), c_name(k)));
    }
    s.push_str(")\n\n// Sentinel errors, one per status code, for errors.Is.\nvar (\n");
    for (i, k) in KINDS.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        let g = go_name(k);
        s.push_str(&format!(
            "\t// Err{g} matches every *Error of Status{g}.\n\tErr{g} = &Error{{Code: Status{g}}}\n"
        ));
    }
    s.push_str(")\n");
    s
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"))
}
