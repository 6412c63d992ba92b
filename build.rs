//! Generates include/flynnrel.h from src/ffi/ with cbindgen, with version macros from
//! Cargo.toml, and rewrites the committed file only when its content changes (so builds do not
//! touch the tree needlessly, and `git diff` shows any drift; script/test fails on it).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=Cargo.toml");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let mut config = match cbindgen::Config::from_file(dir.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => panic!("cannot read cbindgen.toml: {e}"),
    };
    let version = env("CARGO_PKG_VERSION");
    config.after_includes = Some(format!(
        "\n#define FLYNNREL_VERSION \"{version}\"\n#define FLYNNREL_VERSION_MAJOR {}\n#define FLYNNREL_VERSION_MINOR {}\n#define FLYNNREL_VERSION_PATCH {}\n",
        env("CARGO_PKG_VERSION_MAJOR"),
        env("CARGO_PKG_VERSION_MINOR"),
        env("CARGO_PKG_VERSION_PATCH"),
    ));
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
    let out = dir.join("include/flynnrel.h");
    if std::fs::read(&out).ok().as_deref() != Some(&text[..]) {
        if let Err(e) = std::fs::create_dir_all(dir.join("include")).and_then(|()| std::fs::write(&out, &text)) {
            panic!("cannot write {}: {e}", out.display());
        }
    }
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"))
}
