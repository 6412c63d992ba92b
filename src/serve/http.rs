//! What the release server's engines share: the parsed request the route handlers see, the
//! response they build, and small helpers. Two engines carry requests to the handlers:
//!
//! - [`super::engine`], the product engine: hyper's HTTP/1.1 on a tokio runtime, event-driven, so
//!   an idle or half-sent connection costs a socket rather than a thread; with a deadline for the
//!   request head, an idle timeout, and limits on connections per client address and in total.
//! - `super::legacy` (feature `serve-faults`, tests only): the thread-per-connection engine on
//!   `std::net`, which owns its sockets so the test hook can write raw bytes and close.
//!
//! Requests in flight are counted across all listeners; beyond the limit the server answers `503`
//! instead of queueing.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// One parsed request.
pub(crate) struct Request {
    /// The method as sent (`GET`, `HEAD`, ...).
    pub method: String,
    /// Path and query, as sent (absolute-form targets are reduced to this).
    pub target: String,
    /// Header names lowercased, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    /// The client's address.
    pub peer: SocketAddr,
}

impl Request {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query part of the target (after `?`), empty when absent.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

/// A response body.
pub(crate) enum Body {
    /// No body (`Content-Length: 0`).
    Empty,
    /// An in-memory body (JSON documents, short messages).
    Bytes(Vec<u8>),
    /// `len` bytes of an open file starting at `offset`, streamed.
    File { file: File, offset: u64, len: u64 },
}

impl Body {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// A normal response. `Date`, `Content-Length` and `Connection` are added when it is written.
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    /// A response with a body and no headers yet.
    pub fn new(status: u16, body: Body) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// Add a header (names are written as given; we use lowercase like HTTP/2 GitHub does).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Requests in flight across listeners, with the limit beyond which we answer `503`.
#[derive(Clone)]
pub(crate) struct InFlight {
    pub count: Arc<AtomicUsize>,
    pub max: usize,
}

/// The answer when the server is saturated.
pub(crate) fn unavailable() -> Response {
    Response::new(503, Body::Bytes(b"{\"message\":\"Service Unavailable\"}".to_vec()))
        .header("content-type", "application/json; charset=utf-8")
        .header("retry-after", "1")
}

/// Lock a mutex, ignoring poisoning: a panicking request thread must not take the server down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reduce an absolute-form target (`http://host/path`) to origin-form; reject anything else that
/// does not start with `/`.
pub(crate) fn origin_form(target: &str) -> Option<String> {
    if target.starts_with('/') {
        return Some(target.to_string());
    }
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => Some(rest[i..].to_string()),
        Some(i) => Some(format!("/{}", &rest[i..])),
        None => Some("/".to_string()),
    }
}

/// An IMF-fixdate (`Tue, 19 Jul 2022 04:40:21 GMT`), as `Date` and `Last-Modified` use.
pub(crate) fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t.max(UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn http_date_matches_known_values() {
        let t = UNIX_EPOCH + Duration::from_secs(1_658_205_621);
        assert_eq!(http_date(t), "Tue, 19 Jul 2022 04:40:21 GMT");
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn absolute_form_targets_are_reduced() {
        assert_eq!(origin_form("/a?b").as_deref(), Some("/a?b"));
        assert_eq!(origin_form("http://h:1/a/b").as_deref(), Some("/a/b"));
        assert_eq!(origin_form("http://h:1").as_deref(), Some("/"));
        assert_eq!(origin_form("*"), None);
    }
}
