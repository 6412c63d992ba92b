//! Status names and error hints: what a caller asks about a status code or an error object
//! without keeping its own table (docs/c-abi.md#hints).

use std::ffi::c_char;

use super::{flynnrel_error, flynnrel_status};
use crate::error::ErrorKind;

/// The stable snake_case name of `status` (`"ok"` for 0, `"checksum_mismatch"` for
/// `FLYNNREL_STATUS_CHECKSUM_MISMATCH`, …), as a static NUL-terminated string: never free it; it
/// stays valid for the life of the program. NULL for a code this library does not know (from a
/// newer library, or not a status at all). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_status_name(status: flynnrel_status) -> *const c_char {
    if status == 0 {
        return c"ok".as_ptr();
    }
    match ErrorKind::from_code(status) {
        Some(k) => k.name_with_nul().as_ptr().cast(),
        None => std::ptr::null(),
    }
}

/// What the operator can do about `err`, as a JSON object owned by `err` (valid until
/// `flynnrel_error_free`; do not free it): `{"hint": "<kind>", …fields}`, for example
/// `{"hint":"allow_downgrade","version":"v20240127.0"}` (the kinds and fields are listed in
/// docs/c-abi.md#hints). The message never names a front-end's flags; a caller words the hint
/// with its own. NULL when the error has no hint, or `err` is NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_error_hint_json(err: *const flynnrel_error) -> *const c_char {
    if err.is_null() {
        return std::ptr::null();
    }
    // SAFETY: non-NULL and, by contract, from `err_out` and not yet freed.
    match unsafe { &(*err).hint } {
        Some(h) => h.as_ptr(),
        None => std::ptr::null(),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;
    use crate::error::{Error, Hint};

    #[test]
    fn every_status_has_its_table_name_and_unknown_ones_none() {
        let name = |s| unsafe { CStr::from_ptr(flynnrel_status_name(s)) }.to_str().unwrap();
        assert_eq!(name(0), "ok");
        for k in ErrorKind::ALL {
            assert_eq!(name(k.code()), k.name());
        }
        assert!(flynnrel_status_name(ErrorKind::ALL.len() as u32 + 1).is_null());
        assert!(flynnrel_status_name(u32::MAX).is_null());
    }

    #[test]
    fn the_hint_travels_as_json_and_the_message_stays_as_it_is() {
        let e = Error::new(ErrorKind::DowngradeRefused, "v1 is older than v2").with_hint(Hint::AllowDowngrade {
            version: "v1.0.0".into(),
        });
        let c = Box::into_raw(super::super::make_error(&e));
        let hint = unsafe { CStr::from_ptr(flynnrel_error_hint_json(c)) }.to_str().unwrap();
        assert_eq!(hint, r#"{"hint":"allow_downgrade","version":"v1.0.0"}"#);
        super::super::flynnrel_error_free(c);
        let c = Box::into_raw(super::super::make_error(&Error::new(ErrorKind::Io, "x")));
        assert!(flynnrel_error_hint_json(c).is_null());
        super::super::flynnrel_error_free(c);
        assert!(flynnrel_error_hint_json(std::ptr::null()).is_null());
    }
}
