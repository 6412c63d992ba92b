//! How the CLI talks: plain `key=value` lines, or one JSON document with `--json`.
//!
//! Translation only: values come from the core; this module decides nothing but formatting.

use std::io::Write;

use flynnrel::{Error, Hint, HintOption};

/// Output settings from the global flags.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
}

/// Quotes a value for a `key=value` line when it holds spaces, quotes, control characters or is
/// empty. Quoting escapes every control character (`\u{1b}`), so a value from the network (a
/// release name, a tag) never writes terminal escape sequences or forged lines.
pub fn kv_value(v: &str) -> String {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=')
    {
        format!("{v:?}")
    } else {
        v.to_string()
    }
}

impl Out {
    /// A `key=value` line on stdout (plain mode only).
    pub fn line(&self, pairs: &[(&str, String)]) {
        if self.json || self.quiet {
            return;
        }
        let s: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", kv_value(v))).collect();
        println!("{}", s.join(" "));
    }

    /// The single JSON document of a `--json` run.
    pub fn json(&self, v: &serde_json::Value) {
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, v);
            let _ = writeln!(out);
        }
    }

    /// Reports an error: always on stderr (with a `flynnrel: hint:` line when the core attached
    /// a hint this CLI words); with `--json` also as the JSON document on stdout, whose `hint` is
    /// the core's hint object as data.
    pub fn error(&self, e: &Error) {
        eprintln!("flynnrel: error: {e}");
        if let Some(advice) = e.hint().and_then(advice) {
            eprintln!("flynnrel: hint: {advice}");
        }
        if self.json {
            let mut err = serde_json::json!({ "kind": e.kind().name(), "code": e.code(), "message": e.message() });
            if let Some(h) = e.hint() {
                err["hint"] = serde_json::to_value(h).unwrap_or_default();
            }
            self.json(&serde_json::json!({ "error": err }));
        }
    }
}

/// The CLI's words for a hint of the core: its commands and flags. Every command in backquotes
/// runs as printed (with the same directory flags as the failed command). `None` for a hint this
/// CLI does not know.
pub fn advice(h: &Hint) -> Option<String> {
    Some(match h {
        Hint::AllowDowngrade { version } => {
            format!("to install {version} on purpose, run `flynnrel update --version {version} --allow-downgrade`")
        }
        Hint::NameVersion { version } => format!("run `flynnrel update --version {version}` (or pass --force)"),
        Hint::ChooseVersion => "name the version to install with --version".to_string(),
        Hint::RotatePinnedKey { key: Some(key) } => {
            format!("to rotate the key, change the pin first with `flynnrel source set --pin-public-key {key}`")
        }
        Hint::RotatePinnedKey { key: None } => {
            "rotate the pin with `flynnrel source set --pin-public-key NEWKEY`".to_string()
        }
        Hint::RepairReceipt => "fix it by hand, or replace it with `flynnrel source set --source github|tuf \
             --repository REPOSITORY`, which keeps the unreadable file beside the new receipt"
            .to_string(),
        Hint::FixReceiptField { field } => format!(
            "fix the field, or rewrite it with `flynnrel source set --{} VALUE`",
            field.replace('_', "-")
        ),
        Hint::TufRepositoryUrl => "a tuf source needs --repository set to the TUF repository URL".to_string(),
        Hint::ChooseRoot => "run as root, or give --root a writable directory (it is created if missing)".to_string(),
        Hint::InstallFirst => {
            "install Flynn first (`flynnrel install`), or point --root / --bin-dir / --config-dir at the host"
                .to_string()
        }
        Hint::CheckRepository => "check --repo, FLYNN_GITHUB_REPO or the receipt's `repository`".to_string(),
        Hint::CheckApiUrl => "check --api-url (FLYNN_GITHUB_API_URL): it must be a GitHub API, \
             https://api.github.com or https://HOST/api/v3"
            .to_string(),
        Hint::SetOptions { options } => {
            let flags: Option<Vec<&str>> = options.iter().map(|o| flag(*o)).collect();
            format!("pass {}", flags?.join(" and "))
        }
        _ => return None,
    })
}

/// The flag of an option a hint names.
fn flag(o: HintOption) -> Option<&'static str> {
    Some(match o {
        HintOption::Repository => "--repo",
        HintOption::Version => "--version",
        HintOption::WebUrl => "--web-url",
        HintOption::BuildDir => "--build-dir",
        HintOption::Helper => "--helper",
        HintOption::OutDir => "--out",
        HintOption::LayerCache => "--layer-cache",
        _ => return None,
    })
}
