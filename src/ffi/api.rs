//! The exported functions. Each one checks its pointers, parses its JSON options, calls the core
//! and writes its JSON result; nothing else.

use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;

use serde::Deserialize;

use super::{
    CProgress, arg_str, flynnrel_error, flynnrel_progress_cb, flynnrel_status, guard, opt_str, out_ptr, parse_options,
    put_json,
};
use crate::error::{Error, ErrorKind};
use crate::host::receipt::InstallSource;
use crate::model::version::Version;
use crate::ops::request::{self, ClientSpec, InstallRequest, UpdateRequest};
use crate::remote::ghrelease::Client;
use crate::remote::ghrelease::options::DEFAULT_REPOSITORY;

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library's version (`"0.1.0"`), a static string: do not free it. Equal to the header's
/// `FLYNNREL_VERSION`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// The status code of `err` (0 when `err` is NULL).
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_error_code(err: *const flynnrel_error) -> flynnrel_status {
    if err.is_null() {
        return 0;
    }
    // SAFETY: non-NULL and, by contract, from `err_out` and not yet freed.
    unsafe { (*err).code }
}

/// The message of `err`, owned by `err` (valid until `flynnrel_error_free`). An empty string when
/// `err` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_error_message(err: *const flynnrel_error) -> *const c_char {
    if err.is_null() {
        return c"".as_ptr();
    }
    // SAFETY: non-NULL and, by contract, from `err_out` and not yet freed.
    unsafe { (*err).message.as_ptr() }
}

/// Frees an error object. `flynnrel_error_free(NULL)` does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_error_free(err: *mut flynnrel_error) {
    if !err.is_null() {
        // SAFETY: from Box::into_raw in `guard`, freed once by contract.
        drop(unsafe { Box::from_raw(err) });
    }
}

/// Frees a string returned by this library. `flynnrel_string_free(NULL)` does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: from CString::into_raw in `put_json`, freed once by contract.
        drop(unsafe { std::ffi::CString::from_raw(s) });
    }
}

/// Parses a version. On success `*json_out` receives
/// `{"version": "...", "scheme": "flynn_date"|"dotted_date"|"semver", "prerelease": bool}`.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_version_parse(
    version: *const c_char,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let s = arg_str(version, "version")?;
        out_ptr(json_out, "json_out")?;
        let v = Version::parse(s)?;
        put_json(
            json_out,
            &serde_json::json!({"version": v.as_str(), "scheme": v.scheme(), "prerelease": v.is_prerelease()}),
        )
    })
}

/// Compares two versions of the same scheme: `*result_out` is -1, 0 or 1.
/// `FLYNNREL_STATUS_VERSION_MISMATCH` across schemes. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_version_compare(
    a: *const c_char,
    b: *const c_char,
    result_out: *mut c_int,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let a = Version::parse(arg_str(a, "a")?)?;
        let b = Version::parse(arg_str(b, "b")?)?;
        out_ptr(result_out, "result_out")?;
        let r = a.compare(&b)? as c_int;
        // SAFETY: checked non-NULL above.
        unsafe { *result_out = r };
        Ok(())
    })
}

/// Loads the receipt of `config_dir`. `*json_out` receives the receipt, or for a legacy install
/// without one `{"source":"tuf","repository":"<tuf_repository>",...,"legacy":true}`
/// (`tuf_repository` may be NULL for Flynn's default). A corrupt receipt is
/// `FLYNNREL_STATUS_INVALID_RECEIPT`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_receipt_load(
    config_dir: *const c_char,
    tuf_repository: *const c_char,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let dir = PathBuf::from(arg_str(config_dir, "config_dir")?);
        let tuf = opt_str(tuf_repository, "tuf_repository")?.unwrap_or(crate::ops::update::DEFAULT_TUF_REPOSITORY);
        out_ptr(json_out, "json_out")?;
        let (r, legacy) = match InstallSource::load(&dir)? {
            Some(r) => (r, false),
            None => (InstallSource::legacy_tuf(tuf), true),
        };
        let mut v = serde_json::to_value(&r)
            .map_err(|e| Error::new(ErrorKind::InvalidData, format!("cannot encode the receipt: {e}")))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("legacy".into(), serde_json::Value::Bool(legacy));
        }
        put_json(json_out, &v)
    })
}

/// Writes `receipt_json` as the receipt of `config_dir`, atomically (unknown fields kept; a
/// `legacy` field is dropped), under the config-dir lock and with the rules of every receipt
/// edit: `highest_seen_version` never goes down (`DOWNGRADE_REFUSED`), a pinned public key is
/// not changed or removed (`SIGNATURE_INVALID`: rotating the pin is `flynnrel source set
/// --pin-public-key`), `LOCKED` while another install or update runs. Safe to call concurrently.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_receipt_save(
    config_dir: *const c_char,
    receipt_json: *const c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let dir = PathBuf::from(arg_str(config_dir, "config_dir")?);
        let text = arg_str(receipt_json, "receipt_json")?;
        let mut r = InstallSource::from_json(text.as_bytes())
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("invalid receipt JSON: {e}")))?;
        r.extra.remove("legacy");
        crate::ops::source::receipt_replace(&dir, r).map(|_| ())
    })
}

/// A GitHub Releases client. Create with `flynnrel_client_new`, free with `flynnrel_client_free`.
/// Thread-safe: one client may be used from several threads at once.
pub struct flynnrel_client {
    client: Client,
}

/// Creates a client from `options_json` (NULL = defaults):
/// `{"repository": "flynn/flynn", "api_url": "https://api.github.com", "web_url":
/// "https://github.com", "token": null, "token_from_env": true, "timeout_secs": 60,
/// "connect_timeout_secs": 15, "retries": 4, "retry_delay_ms": 500}`. On success `*client_out`
/// receives the client. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_client_new(
    options_json: *const c_char,
    client_out: *mut *mut flynnrel_client,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let spec: ClientSpec = parse_options(options_json, "options_json")?;
        out_ptr(client_out, "client_out")?;
        let boxed = Box::new(flynnrel_client { client: spec.client()? });
        // SAFETY: checked non-NULL above.
        unsafe { *client_out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Frees a client. `flynnrel_client_free(NULL)` does nothing. Must not race with calls using it.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_client_free(client: *mut flynnrel_client) {
    if !client.is_null() {
        // SAFETY: from Box::into_raw in flynnrel_client_new, freed once by contract.
        drop(unsafe { Box::from_raw(client) });
    }
}

fn client_ref<'a>(p: *const flynnrel_client) -> Result<&'a flynnrel_client, Error> {
    if p.is_null() {
        return Err(Error::new(ErrorKind::NullArgument, "argument client must not be NULL"));
    }
    // SAFETY: non-NULL and, by contract, a live client from flynnrel_client_new.
    Ok(unsafe { &*p })
}

/// The release GitHub marks latest, as GitHub's JSON (`*json_out`). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_client_latest_release(
    client: *const flynnrel_client,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let c = client_ref(client)?;
        out_ptr(json_out, "json_out")?;
        put_json(json_out, &c.client.latest_release()?)
    })
}

/// The release tagged `tag` (`FLYNNREL_STATUS_NOT_FOUND` if none). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_client_release_by_tag(
    client: *const flynnrel_client,
    tag: *const c_char,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let c = client_ref(client)?;
        let tag = arg_str(tag, "tag")?;
        out_ptr(json_out, "json_out")?;
        put_json(json_out, &c.client.release_by_tag(tag)?)
    })
}

/// Every non-draft release (all pages), as a JSON array. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_client_releases(
    client: *const flynnrel_client,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let c = client_ref(client)?;
        out_ptr(json_out, "json_out")?;
        put_json(json_out, &c.client.releases()?)
    })
}

/// The one shape of the request-taking calls: decode the caller's JSON as the core's request
/// type `R` (unknown fields refused), let `adjust` force what the call implies, run `op` with the
/// caller's progress callback, and hand the outcome back as JSON.
#[allow(clippy::too_many_arguments)]
fn run_request<R: serde::de::DeserializeOwned, O: serde::Serialize>(
    client: *const flynnrel_client,
    options_json: *const c_char,
    progress: flynnrel_progress_cb,
    user: *mut c_void,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
    adjust: impl FnOnce(&mut R),
    op: impl FnOnce(&Client, &R, crate::remote::fetch::Progress<'_>) -> crate::Result<O>,
) -> flynnrel_status {
    guard(err_out, || {
        let c = client_ref(client)?;
        let mut req: R = parse_options(options_json, "options_json")?;
        out_ptr(json_out, "json_out")?;
        adjust(&mut req);
        let p = CProgress::new(progress, user);
        let mut cb = move |ph: &str, d: u64, t: u64| p.call(ph, d, t);
        put_json(json_out, &op(&c.client, &req, &mut cb)?)
    })
}

/// Checks for an update without changing anything. `options_json` as for `flynnrel_client_update`
/// (`check` is forced on). `*json_out` receives `{"status": "up_to_date"|"available"|"tuf", ...}`
/// with `current` and `target`. The client supplies the token, timeouts and defaults; the
/// repository and API base come from the receipt. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_client_check_for_update(
    client: *const flynnrel_client,
    options_json: *const c_char,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    let check = |r: &mut UpdateRequest| r.check = true;
    run_request(
        client,
        options_json,
        None,
        std::ptr::null_mut(),
        json_out,
        err_out,
        check,
        request::update,
    )
}

/// Checks for or applies an update. `options_json`: `{"root", "bin_dir", "config_dir",
/// "layer_dir", "check": false, "force": false, "version": null, "source": null|"github"|"tuf",
/// "allow_downgrade": false, "public_key": null, "repository": null, "api_url": null,
/// "tuf_repository": null, "smoke_timeout_secs": 30}`. `*json_out` receives the outcome with
/// `status` `up_to_date`, `available`, `updated` (with `from`, `to`, `files`) or `tuf` (the caller
/// runs its TUF updater). `progress` may be NULL; it is called from this call's threads. Not safe
/// to run twice at once on the same host (the second fails with `FLYNNREL_STATUS_LOCKED`).
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_client_update(
    client: *const flynnrel_client,
    options_json: *const c_char,
    progress: flynnrel_progress_cb,
    user: *mut c_void,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    run_request(
        client,
        options_json,
        progress,
        user,
        json_out,
        err_out,
        |_: &mut UpdateRequest| (),
        request::update,
    )
}

/// Downloads, verifies and lays out a release, and (unless `"no_receipt": true`) writes the
/// receipt. `options_json` is an install request (docs/c-abi.md#requests-and-outcomes):
/// `{"root", "bin_dir", "config_dir", "layer_dir", "version": "v…" | "channel":
/// "stable"|"nightly", "public_key": null, "no_receipt": false, "report_sha512": true,
/// "max_binary_bytes": null}`. `*json_out` receives the report (`version`, `files` with sha512
/// and kind, `skipped_layers`, `already_installed`). Nothing changes on error or cancel.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_client_install(
    client: *const flynnrel_client,
    options_json: *const c_char,
    progress: flynnrel_progress_cb,
    user: *mut c_void,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    run_request(
        client,
        options_json,
        progress,
        user,
        json_out,
        err_out,
        |_: &mut InstallRequest| (),
        request::install,
    )
}

/// Downloads one asset of release `tag` into `dest_dir/<asset>`, verified against the release's
/// `checksums.sha512` (and GitHub's digest). `*json_out` receives `{"path", "sha512", "size"}`.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_client_download_asset(
    client: *const flynnrel_client,
    tag: *const c_char,
    asset: *const c_char,
    dest_dir: *const c_char,
    progress: flynnrel_progress_cb,
    user: *mut c_void,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let c = client_ref(client)?;
        let tag = arg_str(tag, "tag")?;
        let name = arg_str(asset, "asset")?;
        let dest = PathBuf::from(arg_str(dest_dir, "dest_dir")?);
        out_ptr(json_out, "json_out")?;
        let p = CProgress::new(progress, user);
        let mut cb = move |ph: &str, d: u64, t: u64| p.call(ph, d, t);
        let (path, sha512, size) = crate::ops::install::download_asset(&c.client, tag, name, &dest, &mut cb)?;
        put_json(
            json_out,
            &serde_json::json!({"path": path, "sha512": sha512, "size": size}),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageJson {
    version: String,
    repository: Option<String>,
    build_dir: Option<PathBuf>,
    layer_cache: Option<PathBuf>,
    out_dir: Option<PathBuf>,
    helper: Option<PathBuf>,
    sign_key: Option<PathBuf>,
    sign_password: Option<String>,
    public_key: Option<String>,
    threads: Option<usize>,
    level: Option<i32>,
    layers: Option<String>,
    layers_url_template: Option<String>,
}

/// Packages a build tree (docs/release-assets.md#packaging). `options_json`: `{"version": "v…", "repository":
/// "flynn/flynn", "build_dir": "build", "layer_cache": "/var/lib/flynn/layer-cache", "out_dir":
/// "release-artifacts", "helper": null (this
/// process is not flynnrel: give the helper binary's path), "sign_key": null,
/// "sign_password": null, "public_key": null, "threads": 0, "level": 6, "layers": null (or
/// "oci://REGISTRY/NAMESPACE/NAME"), "layers_url_template": null (or "https://…/{id}.squashfs")}`
/// (docs/layers.md). `*json_out` receives the report. Nothing changes on error or cancel (pushed
/// registry blobs stay).
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_package(
    options_json: *const c_char,
    progress: flynnrel_progress_cb,
    user: *mut c_void,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let j: PackageJson = serde_json::from_str(arg_str(options_json, "options_json")?)
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("invalid JSON in options_json: {e}")))?;
        out_ptr(json_out, "json_out")?;
        let mut o = crate::ops::package::PackageOptions::new(
            j.version,
            j.repository.unwrap_or_else(|| DEFAULT_REPOSITORY.into()),
        );
        if let Some(b) = j.build_dir {
            o.build_dir = b;
        }
        if let Some(l) = j.layer_cache {
            o.layer_cache = l;
        }
        if let Some(d) = j.out_dir {
            o.out_dir = d;
        }
        o.helper = j.helper;
        o.sign_key = j.sign_key;
        o.sign_password = j.sign_password;
        o.public_key = j.public_key;
        o.threads = j.threads.unwrap_or(0);
        o.level = j.level.unwrap_or(crate::model::gz::DEFAULT_LEVEL);
        o.layers_registry = j.layers;
        o.layers_url_template = j.layers_url_template;
        let p = CProgress::new(progress, user);
        let mut cb = move |ph: &str, d: u64, t: u64| p.call(ph, d, t);
        put_json(json_out, &crate::ops::package::package(&o, &mut cb)?)
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyJson {
    public_key: Option<String>,
    repository: Option<String>,
    version: Option<String>,
}

/// Verifies a release folder (`options_json` may be NULL or `{"public_key", "repository",
/// "version"}`). `*json_out` receives `{"dir", "assets", "signature_checked"}`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn flynnrel_verify(
    dir: *const c_char,
    options_json: *const c_char,
    json_out: *mut *mut c_char,
    err_out: *mut *mut flynnrel_error,
) -> flynnrel_status {
    guard(err_out, || {
        let dir = PathBuf::from(arg_str(dir, "dir")?);
        let j: VerifyJson = parse_options(options_json, "options_json")?;
        out_ptr(json_out, "json_out")?;
        let key = j
            .public_key
            .as_deref()
            .map(crate::model::signature::TrustedKey::parse)
            .transpose()?;
        let repo = j.repository.unwrap_or_else(|| DEFAULT_REPOSITORY.into());
        put_json(
            json_out,
            &crate::ops::verify::verify_dir(&dir, key.as_ref(), Some(&repo), j.version.as_deref())?,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::{CStr, CString};

    fn take(p: *mut c_char) -> String {
        let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
        flynnrel_string_free(p);
        s
    }

    #[test]
    fn errors_come_back_through_err_out_and_outputs_stay_untouched() {
        let mut out: *mut c_char = std::ptr::null_mut();
        let mut err: *mut flynnrel_error = std::ptr::null_mut();
        let bad = CString::new("not-a-version").unwrap();
        let st = flynnrel_version_parse(bad.as_ptr(), &mut out, &mut err);
        assert_eq!(st, ErrorKind::InvalidData.code());
        assert!(out.is_null());
        assert_eq!(flynnrel_error_code(err), st);
        let msg = unsafe { CStr::from_ptr(flynnrel_error_message(err)) }.to_str().unwrap();
        assert!(msg.contains("not-a-version"));
        flynnrel_error_free(err);
        let st = flynnrel_version_parse(std::ptr::null(), &mut out, std::ptr::null_mut());
        assert_eq!(st, super::super::FLYNNREL_STATUS_NULL_ARGUMENT);
        let good = CString::new("v20170116.0p1").unwrap();
        assert_eq!(flynnrel_version_parse(good.as_ptr(), &mut out, std::ptr::null_mut()), 0);
        assert!(take(out).contains("\"flynn_date\""));
    }

    #[test]
    fn compare_and_mismatch() {
        let a = CString::new("v2024.01.27.10").unwrap();
        let b = CString::new("v2024.01.27.9").unwrap();
        let c = CString::new("v1.2.3").unwrap();
        let mut r: c_int = 99;
        assert_eq!(
            flynnrel_version_compare(a.as_ptr(), b.as_ptr(), &mut r, std::ptr::null_mut()),
            0
        );
        assert_eq!(r, 1);
        let mut r2: c_int = 99;
        assert_eq!(
            flynnrel_version_compare(a.as_ptr(), c.as_ptr(), &mut r2, std::ptr::null_mut()),
            ErrorKind::VersionMismatch.code()
        );
        assert_eq!(r2, 99, "out-param untouched on error");
    }

    #[test]
    fn status_constants_match_error_codes() {
        use super::super::*;
        let pairs = [
            (FLYNNREL_STATUS_INVALID_ARGUMENT, ErrorKind::InvalidArgument),
            (FLYNNREL_STATUS_IO, ErrorKind::Io),
            (FLYNNREL_STATUS_NETWORK, ErrorKind::Network),
            (FLYNNREL_STATUS_NOT_FOUND, ErrorKind::NotFound),
            (FLYNNREL_STATUS_RATE_LIMITED, ErrorKind::RateLimited),
            (FLYNNREL_STATUS_INVALID_DATA, ErrorKind::InvalidData),
            (FLYNNREL_STATUS_CHECKSUM_MISMATCH, ErrorKind::ChecksumMismatch),
            (FLYNNREL_STATUS_SIGNATURE_INVALID, ErrorKind::SignatureInvalid),
            (FLYNNREL_STATUS_TOO_LARGE, ErrorKind::TooLarge),
            (FLYNNREL_STATUS_VERSION_MISMATCH, ErrorKind::VersionMismatch),
            (FLYNNREL_STATUS_INVALID_RECEIPT, ErrorKind::InvalidReceipt),
            (FLYNNREL_STATUS_DOWNGRADE_REFUSED, ErrorKind::DowngradeRefused),
            (FLYNNREL_STATUS_LOCKED, ErrorKind::Locked),
            (FLYNNREL_STATUS_CANCELLED, ErrorKind::Cancelled),
            (FLYNNREL_STATUS_SMOKE_TEST_FAILED, ErrorKind::SmokeTestFailed),
            (FLYNNREL_STATUS_INSECURE_URL, ErrorKind::InsecureUrl),
            (FLYNNREL_STATUS_HTTP_STATUS, ErrorKind::HttpStatus),
            (FLYNNREL_STATUS_TUF_SOURCE, ErrorKind::TufSource),
            (FLYNNREL_STATUS_PANIC, ErrorKind::Panic),
            (FLYNNREL_STATUS_NULL_ARGUMENT, ErrorKind::NullArgument),
            (FLYNNREL_STATUS_UNSUPPORTED, ErrorKind::Unsupported),
            (
                FLYNNREL_STATUS_CHANNEL_POINTER_EXPIRED,
                ErrorKind::ChannelPointerExpired,
            ),
            (
                FLYNNREL_STATUS_CHANNEL_POINTER_REPLAYED,
                ErrorKind::ChannelPointerReplayed,
            ),
        ];
        assert_eq!(pairs.len(), ErrorKind::ALL.len());
        for (c, k) in pairs {
            assert_eq!(c, k.code(), "{k:?}");
        }
    }

    #[test]
    fn client_options_are_validated() {
        let mut cl: *mut flynnrel_client = std::ptr::null_mut();
        let mut err: *mut flynnrel_error = std::ptr::null_mut();
        let bad = CString::new(r#"{"repository": "x", "nope": 1}"#).unwrap();
        assert_eq!(
            flynnrel_client_new(bad.as_ptr(), &mut cl, &mut err),
            ErrorKind::InvalidArgument.code()
        );
        assert!(cl.is_null());
        flynnrel_error_free(err);
        assert_eq!(flynnrel_client_new(std::ptr::null(), &mut cl, std::ptr::null_mut()), 0);
        assert!(!cl.is_null());
        flynnrel_client_free(cl);
        flynnrel_client_free(std::ptr::null_mut());
    }
}
