//! The web host's download redirects (github.com) and the storage host that serves asset bytes
//! (objects.githubusercontent.com), with single byte ranges.

use std::time::UNIX_EPOCH;

use super::http::{Body, Request, Response, http_date};
use super::json::storage_url;
use super::routes::{Ctx, enc, etag_matches, segments, storage_base_url};
use super::store::{self};

pub(super) fn web_not_found() -> Response {
    Response::new(404, Body::Bytes(b"Not Found".to_vec())).header("content-type", "text/plain; charset=utf-8")
}

/// Answer a web request: release download URLs redirect to the storage host.
pub(crate) fn web(ctx: &Ctx, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return web_not_found();
    }
    let Some(segs) = segments(req.path()) else {
        return web_not_found();
    };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    if let [o, r, "raw", branch, path @ ..] = s.as_slice() {
        return web_raw(ctx, req, o, r, branch, path);
    }
    let (owner, name, tag, file) = match s.as_slice() {
        [o, r, "releases", "download", tag, file] => (*o, *r, Some(*tag), *file),
        [o, r, "releases", "latest", "download", file] => (*o, *r, None, *file),
        _ => return web_not_found(),
    };
    let Some(repo) = ctx.store.repo(owner, name) else {
        return web_not_found();
    };
    let Ok(all) = ctx.store.releases(&repo) else {
        return Response::new(500, Body::Bytes(b"Internal Server Error".to_vec()));
    };
    let rel = match tag {
        Some(t) => all.iter().find(|r| !r.draft && r.tag == t),
        None => store::latest(&all),
    };
    let Some(rel) = rel else {
        return web_not_found();
    };
    if !rel.assets.iter().any(|a| a.name == file) {
        return web_not_found();
    }
    let loc = storage_url(&storage_base_url(ctx.storage_addr, Some(req)), &repo, &rel.tag, file);
    Response::new(302, Body::Empty)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("location", loc)
}

/// `GET /<owner>/<repo>/raw/<branch>/<path>`: like github.com, a redirect to the raw storage
/// host (`raw.githubusercontent.com/<owner>/<repo>/<branch>/<path>`; here the storage listener's
/// `/raw/…`), for files under `<repo>/.branches/<branch>/` (the channel pointers).
fn web_raw(ctx: &Ctx, req: &Request, owner: &str, name: &str, branch: &str, path: &[&str]) -> Response {
    let Some(repo) = ctx.store.repo(owner, name) else {
        return web_not_found();
    };
    if ctx.store.branch_file(&repo, branch, path).is_none() {
        return web_not_found();
    }
    let mut loc = format!(
        "{}/raw/{}/{}/{}",
        storage_base_url(ctx.storage_addr, Some(req)),
        enc(&repo.owner),
        enc(&repo.name),
        enc(branch)
    );
    for p in path {
        loc.push('/');
        loc.push_str(&enc(p));
    }
    Response::new(302, Body::Empty)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("location", loc)
}

/// A parsed single `Range: bytes=...` request.
pub(super) enum RangeReq {
    /// No usable range: serve the whole file.
    Full,
    /// Serve `start..=end`.
    Part(u64, u64),
    /// The range cannot be satisfied (start beyond the end).
    Unsatisfiable,
}

/// Parse a `Range` header against a file of `size` bytes. Malformed or multi-range headers are
/// ignored (RFC 9110 §14.2 allows serving the full representation instead).
pub(super) fn parse_range(h: &str, size: u64) -> RangeReq {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeReq::Full;
        };
        if n == 0 || size == 0 {
            return RangeReq::Unsatisfiable;
        }
        return RangeReq::Part(size.saturating_sub(n), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeReq::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return RangeReq::Full,
        }
    };
    if start >= size {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Part(start, end.min(size - 1))
}

pub(super) fn storage_not_found() -> Response {
    Response::new(404, Body::Bytes(b"Not Found".to_vec())).header("content-type", "text/plain; charset=utf-8")
}

/// Serve asset bytes: `GET`/`HEAD /<owner>/<repo>/<tag>/<name>`, with single byte ranges.
pub(crate) fn storage(ctx: &Ctx, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return storage_not_found();
    }
    let Some(parts) = segments(req.path()) else {
        return storage_not_found();
    };
    let path = match parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["raw", o, r, branch, rest @ ..] if !rest.is_empty() => ctx
            .store
            .repo(o, r)
            .and_then(|repo| ctx.store.branch_file(&repo, branch, rest)),
        _ => ctx.store.storage_file(&parts),
    };
    let Some(path) = path else {
        return storage_not_found();
    };
    let Ok(file) = crate::fsutil::open_regular(&path) else {
        return storage_not_found();
    };
    // Size and mtime from the open handle, so headers and bytes describe the same file even if
    // it is replaced (renamed over) meanwhile.
    let Ok(meta) = file.metadata() else {
        return storage_not_found();
    };
    let size = meta.len();
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let nanos = mtime.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    // A cheap validator (no hashing per download) that changes whenever the file does.
    let etag = format!("\"{size:x}-{nanos:x}\"");
    let common = |r: Response| {
        r.header("content-type", "application/octet-stream")
            .header("accept-ranges", "bytes")
            .header("etag", etag.clone())
            .header("last-modified", http_date(mtime))
            .header("cache-control", "max-age=300")
    };
    if let Some(inm) = req.header("if-none-match") {
        if etag_matches(inm, &etag) {
            return common(Response::new(304, Body::Empty));
        }
    }
    // `If-Range` with a different validator means the client's partial copy is stale: send
    // the whole file rather than splicing bytes of two versions.
    let range_ok = match req.header("if-range") {
        Some(v) => v.trim() == etag || v.trim() == http_date(mtime),
        None => true,
    };
    let range = match req.header("range") {
        Some(h) if range_ok => parse_range(h, size),
        _ => RangeReq::Full,
    };
    match range {
        RangeReq::Full => common(Response::new(
            200,
            Body::File {
                file,
                offset: 0,
                len: size,
            },
        )),
        RangeReq::Part(start, end) => common(Response::new(
            206,
            Body::File {
                file,
                offset: start,
                len: end - start + 1,
            },
        ))
        .header("content-range", format!("bytes {start}-{end}/{size}")),
        RangeReq::Unsatisfiable => {
            common(Response::new(416, Body::Empty)).header("content-range", format!("bytes */{size}"))
        }
    }
}
