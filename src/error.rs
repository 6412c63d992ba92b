//! The one error type of the crate.
//!
//! Every failure is an [`Error`] with a [`ErrorKind`] from a closed, documented set. Each kind has
//! a stable numeric code ([`ErrorKind::code`]) that the C ABI returns as its status and that never
//! changes meaning once released: new kinds get new numbers, old numbers are never reused. The
//! message is meant for an operator: it names the file or URL involved and says what to do.

use std::fmt;
use std::path::Path;

/// What went wrong, as a closed set. The discriminant is the stable status code of the C ABI
/// (`0` is reserved for success there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u32)]
pub enum ErrorKind {
    /// A caller passed an invalid argument (bad repository name, bad option, bad JSON options).
    InvalidArgument = 1,
    /// A local file-system operation failed (read, write, rename, permissions).
    Io = 2,
    /// The network failed: connection refused, DNS, timeout, TLS, or retries exhausted on 5xx.
    Network = 3,
    /// The release, tag, asset or file does not exist.
    NotFound = 4,
    /// GitHub's rate limit was hit; the message says when to retry.
    RateLimited = 5,
    /// Data from outside (JSON, checksums file, version string, tar, gzip) is malformed.
    InvalidData = 6,
    /// A downloaded or local file does not match its expected hash.
    ChecksumMismatch = 7,
    /// A signature is missing, invalid, or signs another repository or version.
    SignatureInvalid = 8,
    /// A body, file or decompressed stream exceeded its size cap.
    TooLarge = 9,
    /// Two versions of different schemes were compared.
    VersionMismatch = 10,
    /// The install receipt exists but is unreadable or invalid.
    InvalidReceipt = 11,
    /// The requested operation would install an older version than policy allows.
    DowngradeRefused = 12,
    /// Another update holds the lock.
    Locked = 13,
    /// The progress callback asked to stop.
    Cancelled = 14,
    /// The new `flynn-host` did not report the expected version; the switch was rolled back.
    SmokeTestFailed = 15,
    /// A URL is not allowed: plain http to a non-loopback host, a redirect loop, a redirect to
    /// http, or an unsupported scheme.
    InsecureUrl = 16,
    /// The HTTP server answered with an unexpected status (4xx other than 404 and rate limits).
    HttpStatus = 17,
    /// The install's source is TUF; the caller's TUF updater handles it.
    TufSource = 18,
    /// A panic was caught at the C boundary (a bug; please report it).
    Panic = 19,
    /// A required pointer argument of a C function was NULL.
    NullArgument = 20,
    /// The operation is not supported here (for example a platform without a helper build).
    Unsupported = 21,
}

impl ErrorKind {
    /// The stable numeric code of this kind (the C ABI status).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// A short, stable snake_case name (used in `--json` output and Go error values).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Io => "io",
            ErrorKind::Network => "network",
            ErrorKind::NotFound => "not_found",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::InvalidData => "invalid_data",
            ErrorKind::ChecksumMismatch => "checksum_mismatch",
            ErrorKind::SignatureInvalid => "signature_invalid",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::VersionMismatch => "version_mismatch",
            ErrorKind::InvalidReceipt => "invalid_receipt",
            ErrorKind::DowngradeRefused => "downgrade_refused",
            ErrorKind::Locked => "locked",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::SmokeTestFailed => "smoke_test_failed",
            ErrorKind::InsecureUrl => "insecure_url",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::TufSource => "tuf_source",
            ErrorKind::Panic => "panic",
            ErrorKind::NullArgument => "null_argument",
            ErrorKind::Unsupported => "unsupported",
        }
    }

    /// Every kind, in code order (for documentation, the C header and tests).
    pub const ALL: [ErrorKind; 21] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Io,
        ErrorKind::Network,
        ErrorKind::NotFound,
        ErrorKind::RateLimited,
        ErrorKind::InvalidData,
        ErrorKind::ChecksumMismatch,
        ErrorKind::SignatureInvalid,
        ErrorKind::TooLarge,
        ErrorKind::VersionMismatch,
        ErrorKind::InvalidReceipt,
        ErrorKind::DowngradeRefused,
        ErrorKind::Locked,
        ErrorKind::Cancelled,
        ErrorKind::SmokeTestFailed,
        ErrorKind::InsecureUrl,
        ErrorKind::HttpStatus,
        ErrorKind::TufSource,
        ErrorKind::Panic,
        ErrorKind::NullArgument,
        ErrorKind::Unsupported,
    ];
}

/// An error: a kind plus an operator-facing message that names the file or URL and what to do.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    retry_at: Option<std::time::SystemTime>,
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
            source: None,
        }
    }

    /// An I/O error on `path`, with what was being done (`"read"`, `"create"`, …).
    pub fn io(action: &str, path: &Path, err: std::io::Error) -> Error {
        let hint = match err.kind() {
            std::io::ErrorKind::PermissionDenied => " (permission denied: run as root or choose another --root)",
            std::io::ErrorKind::NotFound => " (not found)",
            _ => "",
        };
        Error {
            kind: ErrorKind::Io,
            message: escape(&format!("cannot {action} {}: {err}{hint}", path.display())),
            retry_at: None,
            source: Some(Box::new(err)),
        }
    }

    /// Attach the time after which a rate-limited request may be retried.
    pub fn with_retry_at(mut self, at: std::time::SystemTime) -> Error {
        self.retry_at = Some(at);
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
        assert_eq!(codes, (1..=21).collect::<Vec<u32>>());
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
        assert!(e.to_string().contains("run as root"), "{e}");
    }
}
