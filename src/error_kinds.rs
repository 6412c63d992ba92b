// The one table of error kinds: `code Variant "name";`, each with its doc. Everything else is
// generated from it: `ErrorKind` with `name()`, `ALL` and `from_code()` (src/error.rs, through
// the `error_kinds!` macro), `flynnrel_status_name()`, the `FLYNNREL_STATUS_*` macros of
// include/flynnrel.h and the Rust constants of src/ffi, and Go's `Status*` constants and `Err*`
// sentinels in go/flynnrel/status_gen.go (build.rs reads this file with its own `error_kinds!`).
//
// A code never changes meaning once released: a new kind takes the next number, an old number is
// never reused. The name is the snake_case form of the variant (`--json` output, Go's
// `Status.String()`); the doc is the kind's documentation in Rust, C and Go.
error_kinds! {
    /// A caller passed an invalid argument (bad repository name, bad option, bad JSON options).
    1 InvalidArgument "invalid_argument";
    /// A local file-system operation failed (read, write, rename, permissions).
    2 Io "io";
    /// The network failed: connection refused, DNS, timeout, TLS, or retries exhausted on 5xx.
    3 Network "network";
    /// The release, tag, asset or file does not exist.
    4 NotFound "not_found";
    /// GitHub's rate limit was hit; the message says when to retry.
    5 RateLimited "rate_limited";
    /// Data from outside (JSON, checksums file, version string, tar, gzip) is malformed.
    6 InvalidData "invalid_data";
    /// A downloaded or local file does not match its expected hash.
    7 ChecksumMismatch "checksum_mismatch";
    /// A signature is missing, invalid, or signs another repository or version.
    8 SignatureInvalid "signature_invalid";
    /// A body, file or decompressed stream exceeded its size cap.
    9 TooLarge "too_large";
    /// Two versions of different schemes were compared.
    10 VersionMismatch "version_mismatch";
    /// The install receipt exists but is unreadable or invalid.
    11 InvalidReceipt "invalid_receipt";
    /// The requested operation would install an older version than policy allows.
    12 DowngradeRefused "downgrade_refused";
    /// Another install, update or receipt edit holds the lock.
    13 Locked "locked";
    /// The progress callback asked to stop.
    14 Cancelled "cancelled";
    /// The new `flynn-host` did not report the expected version; the switch was rolled back.
    15 SmokeTestFailed "smoke_test_failed";
    /// A URL is not allowed: plain http to a non-loopback host, a redirect loop, a redirect to
    /// http, or an unsupported scheme.
    16 InsecureUrl "insecure_url";
    /// The HTTP server answered with an unexpected status (4xx other than 404 and rate limits).
    17 HttpStatus "http_status";
    /// The install's source is TUF; the caller's TUF updater handles it (reserved in the C ABI:
    /// update reports TUF routing as a result, not an error).
    18 TufSource "tuf_source";
    /// A panic was caught at the C boundary (a bug; please report it).
    19 Panic "panic";
    /// A required pointer argument of a C function was NULL.
    20 NullArgument "null_argument";
    /// The operation is not supported here (for example a platform without a helper build).
    21 Unsupported "unsupported";
    /// A signed channel pointer has expired: its publisher stopped re-signing it, or a mirror or
    /// attacker keeps serving an old one (a freeze); the message names the expiry.
    22 ChannelPointerExpired "channel_pointer_expired";
    /// A signed channel pointer is older (lower sequence) than one this host already accepted:
    /// a replayed pointer (rollback of the channel).
    23 ChannelPointerReplayed "channel_pointer_replayed";
}
