//! The one error type of the crate.
//!
//! Every failure is an [`Error`] with a [`ErrorKind`] from a closed, documented set. Each kind has
//! a stable numeric code ([`ErrorKind::code`]) that the C ABI returns as its status and that never
//! changes meaning once released: new kinds get new numbers, old numbers are never reused. The
//! message is meant for an operator: it names the file or URL involved and what went wrong, in
//! words that hold for every front-end. What the operator can do about it, when that is a command
//! or an option, is a separate typed [`Hint`]: the CLI renders it with its flags, the C ABI hands
//! it over as JSON, and Go's flynn-host renders it with its own flag names.

use std::fmt;
use std::path::Path;

/// Expands the table of src/error_kinds.rs into [`ErrorKind`] and its lookups. build.rs reads the
/// same table with a macro of its own for the C header, the FFI constants and the Go file.
macro_rules! error_kinds {
    ($( $(#[doc = $doc:literal])* $code:literal $variant:ident $name:literal; )*) => {
        /// What went wrong, as a closed set. The discriminant is the stable status code of the C
        /// ABI (`0` is reserved for success there). The kinds are listed once, in
        /// src/error_kinds.rs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[repr(u32)]
        pub enum ErrorKind {
            $( $(#[doc = $doc])* #[serde(rename = $name)] $variant = $code, )*
        }

        impl ErrorKind {
            /// Every kind, in code order (for documentation, the C header and tests).
            pub const ALL: [ErrorKind; [$($code),*].len()] = [$(ErrorKind::$variant),*];

            /// A short, stable snake_case name (used in `--json` output, `flynnrel_status_name`
            /// and Go's `Status.String()`).
            pub fn name(self) -> &'static str {
                match self {
                    $( ErrorKind::$variant => $name, )*
                }
            }

            /// [`ErrorKind::name`] with a terminating NUL (the static strings of the C ABI's
            /// `flynnrel_status_name`).
            pub(crate) fn name_with_nul(self) -> &'static str {
                match self {
                    $( ErrorKind::$variant => concat!($name, "\0"), )*
                }
            }

            /// The kind whose stable code is `code`, if any (0, success, is none).
            pub fn from_code(code: u32) -> Option<ErrorKind> {
                match code {
                    $( $code => Some(ErrorKind::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

include!("error_kinds.rs");

impl ErrorKind {
    /// The stable numeric code of this kind (the C ABI status).
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// What the operator can do about an error, as data: each front-end words it with its own
/// commands and flag names (the CLI's `--allow-downgrade`, flynn-host's `--allow-downgrade`, a Go
/// program's `UpdateOptions.AllowDowngrade`). Serialised as `{"hint": "<snake_case variant>",
/// …fields}` (the C ABI's `flynnrel_error_hint_json`, the CLI's `--json`). New variants may be
/// added: a front-end that does not know one shows the message alone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "hint", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Hint {
    /// `version` is below what the host has run or accepted, or of another version scheme:
    /// installing it needs that version named explicitly and downgrades allowed.
    AllowDowngrade {
        /// The version to install on purpose.
        version: String,
    },
    /// A development build is replaced only by an explicitly named version (or a forced update).
    NameVersion {
        /// The version the update would install.
        version: String,
    },
    /// The releases cannot be ordered (their version schemes differ): name the version.
    ChooseVersion,
    /// The host pins another public key: change the pin first (to `key`, when known), or give the
    /// pinned key.
    RotatePinnedKey {
        /// The new key (minisign base64), when the caller gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// The receipt is unreadable: fix it by hand, or replace it by setting the source and the
    /// repository anew (the unreadable file is kept beside the new receipt).
    RepairReceipt,
    /// One field of the receipt is bad: fix it, or set that field anew.
    FixReceiptField {
        /// The receipt's field name (`repository`, `api_url`, …).
        field: String,
    },
    /// A TUF source needs the TUF repository's URL as its repository.
    TufRepositoryUrl,
    /// The host's directories are unusable (not a directory, not writable, out of space): run as
    /// root or choose another root directory.
    ChooseRoot,
    /// Nothing is installed in the given directories: install first, or point the directories
    /// at the host.
    InstallFirst,
    /// Check the repository name (given, from the environment, or the receipt's).
    CheckRepository,
    /// Check the GitHub API URL (it must be a GitHub REST API).
    CheckApiUrl,
    /// Give these options of the operation.
    SetOptions {
        /// The options, in the order to mention them.
        options: Vec<HintOption>,
    },
}

/// An option of an operation that a [`Hint::SetOptions`] names; each front-end has its own
/// spelling (`--build-dir`, `PackageOptions.BuildDir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HintOption {
    /// The GitHub repository `OWNER/NAME`.
    Repository,
    /// The release version.
    Version,
    /// The GitHub web URL.
    WebUrl,
    /// Flynn's build directory (package).
    BuildDir,
    /// The flynnrel helper binary to ship (package).
    Helper,
    /// The output folder (package).
    OutDir,
    /// The builder's layer cache the layers are read from (package).
    LayerCache,
}

/// An error: a kind plus an operator-facing message that names the file or URL and what to do.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    retry_at: Option<std::time::SystemTime>,
    hint: Option<Hint>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with the full message. Control characters in it (they may come from
    /// the network or a file: a release name, an API error message) are escaped, so a message
    /// never carries ESC sequences or forged lines to a terminal or log.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: escape(&message.into()),
            retry_at: None,
            hint: None,
            source: None,
        }
    }

    /// An I/O error on `path`, with what was being done (`"read"`, `"create"`, …).
    pub fn io(action: &str, path: &Path, err: std::io::Error) -> Error {
        let (note, hint) = match err.kind() {
            std::io::ErrorKind::PermissionDenied => (" (permission denied)", Some(Hint::ChooseRoot)),
            std::io::ErrorKind::NotFound => (" (not found)", None),
            _ => ("", None),
        };
        Error {
            kind: ErrorKind::Io,
            message: escape(&format!("cannot {action} {}: {err}{note}", path.display())),
            retry_at: None,
            hint,
            source: Some(Box::new(err)),
        }
    }

    /// Attach the time after which a rate-limited request may be retried.
    pub fn with_retry_at(mut self, at: std::time::SystemTime) -> Error {
        self.retry_at = Some(at);
        self
    }

    /// Attach what the operator can do about it (replacing any hint it had).
    pub fn with_hint(mut self, hint: Hint) -> Error {
        self.hint = Some(hint);
        self
    }

    /// Attach an underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefix the message with context (for example the component being installed).
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = escape(&format!("{what}: {}", self.message));
        self
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable numeric code of this error's kind.
    pub fn code(&self) -> u32 {
        self.kind.code()
    }

    /// The operator-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the operator can do about it, for the front-end to word ([`Hint`]).
    pub fn hint(&self) -> Option<&Hint> {
        self.hint.as_ref()
    }

    /// For [`ErrorKind::RateLimited`]: when the limit resets, when the server said so.
    pub fn retry_at(&self) -> Option<std::time::SystemTime> {
        self.retry_at
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `s` with every control character (C0, DEL, C1: ESC, BEL, CR, LF, …) written as a visible
/// `\u{..}` escape; everything else unchanged. Use it for any text from the network or from disk
/// that reaches a terminal or a log.
pub fn escape(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_in_every_message() {
        let e = Error::new(
            ErrorKind::HttpStatus,
            "API said \u{1b}]0;pwned\u{7}\nFAKE LINE\u{9b}31m",
        );
        assert!(!e.message().chars().any(char::is_control), "{:?}", e.message());
        assert_eq!(e.message(), "API said \\u{1b}]0;pwned\\u{7}\\u{a}FAKE LINE\\u{9b}31m");
        let e = Error::new(ErrorKind::Io, "x").context("release \u{1b}[2J");
        assert!(!e.message().chars().any(char::is_control), "{:?}", e.message());
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn codes_are_stable_and_unique() {
        // These numbers are part of the C ABI: changing one is a breaking change.
        let codes: Vec<u32> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes, (1..=23).collect::<Vec<u32>>());
        assert_eq!(ErrorKind::ChecksumMismatch.code(), 7);
        assert_eq!(ErrorKind::RateLimited.code(), 5);
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn io_error_names_the_path() {
        let e = Error::io(
            "read",
            Path::new("/etc/flynn/x.json"),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("/etc/flynn/x.json"), "{e}");
        assert!(e.to_string().contains("permission denied"), "{e}");
        assert_eq!(e.hint(), Some(&Hint::ChooseRoot));
        assert!(!e.message().contains("--"), "no flag names in core messages: {e}");
    }

    #[test]
    fn the_table_round_trips_codes_names_and_serde() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.name()));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(ErrorKind::ALL.len() as u32 + 1), None);
        assert_eq!(ErrorKind::from_code(12), Some(ErrorKind::DowngradeRefused));
    }

    #[test]
    fn the_c_abi_doc_lists_every_kind_of_the_table() {
        // docs/c-abi.md's status table is prose, not generated: hold it to the table.
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/c-abi.md")).unwrap();
        let rows: Vec<(u32, String)> = doc
            .lines()
            .filter_map(|l| {
                let mut cells = l.split('|').map(str::trim).skip(1);
                let code = cells.next()?.parse().ok()?;
                let name = cells.next()?.trim_matches('`').to_string();
                Some((code, name))
            })
            .collect();
        let mut want = vec![(0, "FLYNNREL_STATUS_OK".to_string())];
        want.extend(
            ErrorKind::ALL
                .iter()
                .map(|k| (k.code(), format!("FLYNNREL_STATUS_{}", k.name().to_ascii_uppercase()))),
        );
        assert_eq!(rows, want);
    }

    #[test]
    fn hints_are_tagged_json() {
        let h = Hint::AllowDowngrade {
            version: "v1.2.3".into(),
        };
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            serde_json::json!({"hint": "allow_downgrade", "version": "v1.2.3"})
        );
        let h = Hint::RotatePinnedKey { key: None };
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"hint":"rotate_pinned_key"}"#);
        let h = Hint::SetOptions {
            options: vec![HintOption::Repository, HintOption::Version],
        };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"hint":"set_options","options":["repository","version"]}"#
        );
        let back: Hint = serde_json::from_str(r#"{"hint":"choose_root"}"#).unwrap();
        assert_eq!(back, Hint::ChooseRoot);
        let e = Error::new(ErrorKind::Io, "x")
            .with_hint(Hint::InstallFirst)
            .context("y");
        assert_eq!(e.hint(), Some(&Hint::InstallFirst), "context keeps the hint");
    }
}
