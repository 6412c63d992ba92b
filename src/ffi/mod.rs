//! The C ABI (docs/c-abi.md#the-c-abi): translation only.
//!
//! Conventions, after rustls-ffi:
//! - every fallible function returns a `flynnrel_status` (0 = ok, else the stable code of a
//!   [`crate::ErrorKind`]) and takes a last parameter `flynnrel_error **err_out` (may be NULL) that
//!   receives an error object (code + message) to free with `flynnrel_error_free`; there is no
//!   thread-local "last error", since a goroutine can move between OS threads between two calls;
//! - out-parameters are written only on success;
//! - structured results are UTF-8 JSON strings owned by Rust, freed with `flynnrel_string_free`;
//! - every pointer is checked for NULL; every body runs inside [`guard`], so no panic crosses the
//!   boundary (it becomes `FLYNNREL_STATUS_PANIC`);
//! - long operations take a progress callback; returning false cancels cleanly.
#![allow(non_camel_case_types)]
// The exported functions are safe `extern "C" fn`s by design (as in rustls-ffi): they are called
// from C, check every pointer for NULL, and document what a valid pointer means.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod api;

use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, ErrorKind};

pub use api::*;

/// A status code: `FLYNNREL_STATUS_OK` (0) or the stable code of an error kind.
pub type flynnrel_status = u32;

/// Success.
pub const FLYNNREL_STATUS_OK: flynnrel_status = 0;
/// An argument is invalid (bad repository, bad option, bad JSON).
pub const FLYNNREL_STATUS_INVALID_ARGUMENT: flynnrel_status = 1;
/// A local file-system operation failed.
pub const FLYNNREL_STATUS_IO: flynnrel_status = 2;
/// The network failed (connection, DNS, timeout, TLS, retries exhausted).
pub const FLYNNREL_STATUS_NETWORK: flynnrel_status = 3;
/// The release, tag, asset or file does not exist.
pub const FLYNNREL_STATUS_NOT_FOUND: flynnrel_status = 4;
/// GitHub's rate limit was hit; the message says when to retry.
pub const FLYNNREL_STATUS_RATE_LIMITED: flynnrel_status = 5;
/// Data from outside is malformed.
pub const FLYNNREL_STATUS_INVALID_DATA: flynnrel_status = 6;
/// A file does not match its expected hash.
pub const FLYNNREL_STATUS_CHECKSUM_MISMATCH: flynnrel_status = 7;
/// A signature is missing or invalid, or signs another repository or version.
pub const FLYNNREL_STATUS_SIGNATURE_INVALID: flynnrel_status = 8;
/// A body, file or decompressed stream exceeded its cap.
pub const FLYNNREL_STATUS_TOO_LARGE: flynnrel_status = 9;
/// Versions of different schemes were compared.
pub const FLYNNREL_STATUS_VERSION_MISMATCH: flynnrel_status = 10;
/// The install receipt exists but is invalid.
pub const FLYNNREL_STATUS_INVALID_RECEIPT: flynnrel_status = 11;
/// Policy refuses to install an older version.
pub const FLYNNREL_STATUS_DOWNGRADE_REFUSED: flynnrel_status = 12;
/// Another install or update holds the lock.
pub const FLYNNREL_STATUS_LOCKED: flynnrel_status = 13;
/// The progress callback cancelled the operation.
pub const FLYNNREL_STATUS_CANCELLED: flynnrel_status = 14;
/// The new flynn-host did not report its version; the switch was rolled back.
pub const FLYNNREL_STATUS_SMOKE_TEST_FAILED: flynnrel_status = 15;
/// A URL or redirect is not allowed (plain http, loop, downgrade to http).
pub const FLYNNREL_STATUS_INSECURE_URL: flynnrel_status = 16;
/// The server answered with an unexpected HTTP status.
pub const FLYNNREL_STATUS_HTTP_STATUS: flynnrel_status = 17;
/// The install's source is TUF (reserved; update reports TUF routing as a result, not an error).
pub const FLYNNREL_STATUS_TUF_SOURCE: flynnrel_status = 18;
/// A panic was caught at the boundary (a bug).
pub const FLYNNREL_STATUS_PANIC: flynnrel_status = 19;
/// A required pointer argument was NULL.
pub const FLYNNREL_STATUS_NULL_ARGUMENT: flynnrel_status = 20;
/// Not supported here.
pub const FLYNNREL_STATUS_UNSUPPORTED: flynnrel_status = 21;

/// An error: a status code and a message. Owned by the caller once returned through `err_out`;
/// free it with `flynnrel_error_free`. Not thread-safe to free twice; reading it from several
/// threads is fine.
pub struct flynnrel_error {
    code: flynnrel_status,
    message: CString,
}

/// A progress callback: `(user, phase, done, total) -> keep_going`. Called on the thread that
/// called the library function (or, during parallel downloads, on a worker thread of that call,
/// one call at a time). Return false to cancel: the operation stops and leaves nothing
/// half-installed.
pub type flynnrel_progress_cb =
    Option<unsafe extern "C" fn(user: *mut c_void, phase: *const c_char, done: u64, total: u64) -> bool>;

pub(crate) fn make_error(e: &Error) -> Box<flynnrel_error> {
    let msg = e.message().replace('\0', " ");
    Box::new(flynnrel_error {
        code: e.code(),
        message: CString::new(msg).unwrap_or_default(),
    })
}

/// Runs `f` behind the panic boundary and turns its result into a status and an error object.
pub(crate) fn guard(err_out: *mut *mut flynnrel_error, f: impl FnOnce() -> Result<(), Error>) -> flynnrel_status {
    let result = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::Panic,
            "internal error: a panic was caught at the C boundary; please report it",
        )),
    };
    match result {
        Ok(()) => FLYNNREL_STATUS_OK,
        Err(e) => {
            if !err_out.is_null() {
                // SAFETY: the caller passed a valid, writable `flynnrel_error **` (checked non-NULL).
                unsafe { *err_out = Box::into_raw(make_error(&e)) };
            }
            e.code()
        }
    }
}

fn null(name: &str) -> Error {
    Error::new(ErrorKind::NullArgument, format!("argument {name} must not be NULL"))
}

/// Borrows a required C string argument as UTF-8.
pub(crate) fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string valid for this call.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("argument {name} is not valid UTF-8"),
        )
    })
}

/// Borrows an optional C string argument (NULL = none).
pub(crate) fn opt_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        Ok(None)
    } else {
        arg_str(p, name).map(Some)
    }
}

/// Checks that an out-parameter is not NULL.
pub(crate) fn out_ptr<T>(p: *mut T, name: &str) -> Result<(), Error> {
    if p.is_null() { Err(null(name)) } else { Ok(()) }
}

/// Writes a JSON result into `*out` (already checked non-NULL).
pub(crate) fn put_json(out: *mut *mut c_char, value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("cannot encode the result as JSON: {e}")))?;
    let c = CString::new(text).map_err(|_| Error::new(ErrorKind::InvalidData, "the result contains a NUL byte"))?;
    // SAFETY: `out` was checked non-NULL by the caller of this helper.
    unsafe { *out = c.into_raw() };
    Ok(())
}

/// Parses a JSON options argument (NULL = defaults from `{}`).
pub(crate) fn parse_options<T: serde::de::DeserializeOwned>(p: *const c_char, name: &str) -> Result<T, Error> {
    let text = opt_str(p, name)?.unwrap_or("{}");
    serde_json::from_str(text)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("invalid JSON in {name}: {e}")))
}

/// Adapts a C progress callback to the core's progress closure.
pub(crate) struct CProgress {
    cb: flynnrel_progress_cb,
    user: *mut c_void,
}

// SAFETY: the C caller promises that `user` may be used from the worker threads of the call it
// passed it to (documented on every function taking a callback); calls are serialised by the core.
unsafe impl Send for CProgress {}

impl CProgress {
    pub(crate) fn new(cb: flynnrel_progress_cb, user: *mut c_void) -> CProgress {
        CProgress { cb, user }
    }

    pub(crate) fn call(&self, phase: &str, done: u64, total: u64) -> bool {
        let Some(cb) = self.cb else { return true };
        let phase = CString::new(phase.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the caller supplied a valid function pointer and user data for this call.
        unsafe { cb(self.user, phase.as_ptr(), done, total) }
    }
}
