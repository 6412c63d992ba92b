//! How the CLI talks: plain `key=value` lines, or one JSON document with `--json`.
//!
//! Translation only: values come from the core; this module decides nothing but formatting.

use std::io::Write;

use flynnrel::Error;

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

    /// Reports an error: always on stderr; with `--json` also as the JSON document on stdout.
    pub fn error(&self, e: &Error) {
        eprintln!("flynnrel: error: {e}");
        if self.json {
            self.json(&serde_json::json!({
                "error": { "kind": e.kind().name(), "code": e.code(), "message": e.message() }
            }));
        }
    }
}
