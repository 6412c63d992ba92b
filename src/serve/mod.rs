//! A GitHub-compatible release server over a folder (`flynnrel serve DIR`).
//!
//! It is both a product feature, a mirror for air-gapped clusters, and the test double for every
//! test layer, so it reproduces the real GitHub REST API as clients observe it. The folder layout
//! is `DIR/<owner>/<repo>/<tag>/<asset files>` (hidden files are not assets), with optional
//! per-release metadata in `DIR/<owner>/<repo>/<tag>/.release.json`:
//!
//! ```json
//! {"name": "...", "body": "...", "draft": false, "prerelease": false,
//!  "created_at": "2024-01-27T12:00:00Z", "published_at": "2024-01-27T12:05:00Z",
//!  "make_latest": true, "target_commitish": "master", "discussion_url": "https://..."}
//! ```
//!
//! Every key is optional; unknown keys are an error (reported as a `500` naming the file).
//! Defaults: `name` = the tag, `body` = null, `created_at` = the tag directory's mtime,
//! `published_at` = `created_at` (null for drafts), `target_commitish` = `master`.
//!
//! Three listeners on three ports play api.github.com, github.com and
//! objects.githubusercontent.com; the storage host is named `localhost` when it listens on
//! 127.0.0.1, so asset bytes come from another host name than the API, as on GitHub. Besides
//! releases and assets, the API answers `GET /repos/{owner}/{repo}` (a repository object
//! consistent with its releases) and `GET /rate_limit` (the server's own counting). The folder is re-scanned on every request, so files may be
//! added or tampered with while the server runs; asset hashes are cached on (path, size, mtime).
//!
//! The server is event-driven (hyper on tokio, see `engine.rs`): a deadline for each request
//! head, an idle timeout, and limits on open connections per client address and in total keep
//! one client from denying service to the others ([`ServeOptions::max_connections_per_ip`] and
//! friends). Tests that need raw-socket fault injection ([`Interceptor`], feature
//! `serve-faults`) get the thread-per-connection engine of `legacy.rs` instead.

mod download;
mod engine;
mod http;
mod json;
#[cfg(feature = "serve-faults")]
mod legacy;
mod routes;
mod store;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use http::lock;

/// Requests in flight (all listeners) beyond which the server answers `503`.
const MAX_IN_FLIGHT: usize = 512;

/// Which of the three listeners a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Listener {
    /// The REST API (like `api.github.com`).
    Api,
    /// The web host's download redirects (like `github.com`).
    Web,
    /// The storage host serving asset bytes (like `objects.githubusercontent.com`).
    Storage,
}

/// A request as the [`Interceptor`] sees it: every header, verbatim.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The listener it arrived on.
    pub listener: Listener,
    /// The method (`GET`, `HEAD`, ...).
    pub method: String,
    /// Path and query, as sent.
    pub url: String,
    /// All headers, names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
}

impl RequestInfo {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A test hook (feature `serve-faults`, tests only): return `Some(raw)` to answer the request
/// with these raw bytes (status line, headers and body, written verbatim to the socket, after
/// which the connection is closed) instead of the normal response; `None` serves normally. This
/// lets test code inject 5xx, truncated bodies, endless bodies, slow drips, tampered bytes,
/// rate-limit 403/429, redirect loops. Setting one runs the server on the thread-per-connection
/// engine, the only one that lets a hook write to the socket.
#[cfg(feature = "serve-faults")]
pub type Interceptor = Arc<dyn Fn(&RequestInfo) -> Option<Box<dyn std::io::Read + Send>> + Send + Sync>;

/// One request as logged: the `Authorization` value is replaced by `"<redacted>"` so tests can
/// see that a token was sent without the log ever holding it. Sizes are bounded: the URL is cut
/// to [`LOGGED_URL_BYTES`], each header value to [`LOGGED_VALUE_BYTES`], and only the first value
/// of each logged header is kept.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// The listener it arrived on.
    pub listener: Listener,
    /// The method.
    pub method: String,
    /// Path and query, as sent.
    pub url: String,
    /// The logged headers (`accept`, `user-agent`, `range`, `if-range`, `if-none-match`,
    /// `x-github-api-version`, and `authorization` redacted), names lowercased.
    pub headers: Vec<(String, String)>,
    /// The response status; 0 when the interceptor answered.
    pub status: u16,
    /// Whether the interceptor answered.
    pub intercepted: bool,
}

impl LoggedRequest {
    /// The first logged header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The longest URL a [`LoggedRequest`] keeps (longer ones are cut, marked with `…`).
pub const LOGGED_URL_BYTES: usize = 2048;
/// The longest header value a [`LoggedRequest`] keeps.
pub const LOGGED_VALUE_BYTES: usize = 512;

/// `s` cut to at most `max` bytes on a char boundary, marked with `…` when cut.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Headers copied into [`LoggedRequest::headers`].
const LOGGED_HEADERS: [&str; 6] = [
    "accept",
    "user-agent",
    "range",
    "if-range",
    "if-none-match",
    "x-github-api-version",
];

/// The per-request log callback of [`ServeOptions::log`].
pub type LogFn = Box<dyn Fn(&LoggedRequest) + Send + Sync>;

/// Default of [`ServeOptions::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;
/// Default of [`ServeOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// Default of [`ServeOptions::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ServeOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How to run the server.
pub struct ServeOptions {
    /// The release folder.
    pub root: PathBuf,
    /// Where the API listens.
    pub api_listen: SocketAddr,
    /// Where the web host (download redirects) listens.
    pub web_listen: SocketAddr,
    /// Where the storage host (asset bytes) listens.
    pub storage_listen: SocketAddr,
    /// GitHub's primary rate limit per hour (default 5000).
    pub rate_limit: u32,
    /// Open connections one client address (IPv6: one /64) may hold, over all three listeners
    /// (default [`DEFAULT_MAX_CONNECTIONS_PER_IP`]). A connection beyond it is answered `503`
    /// with `retry-after: 1` before its request is read, and closed.
    pub max_connections_per_ip: usize,
    /// Open connections in all, all clients and listeners (default [`DEFAULT_MAX_CONNECTIONS`]);
    /// beyond it, the same `503` and close.
    pub max_connections: usize,
    /// The whole head of a request must arrive within this, counted from when the server starts
    /// waiting for it; it also ends a keep-alive connection idle that long between requests
    /// (default [`DEFAULT_HEADER_TIMEOUT`]).
    pub header_timeout: Duration,
    /// A connection on which no byte moves for this long while no handler runs (a client that
    /// stopped reading a download) is closed (default [`DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// The test hook (see [`Interceptor`]).
    #[cfg(feature = "serve-faults")]
    pub interceptor: Option<Interceptor>,
    /// Run the thread-per-connection engine even without an interceptor (the reference
    /// `script/bench-serve` measures against); its limits are its own, not the ones above.
    #[cfg(feature = "serve-faults")]
    pub thread_per_connection: bool,
    /// Called once per request (e.g. the CLI's `--request-log` file).
    pub log: Option<LogFn>,
    /// How many of the latest requests [`Server::requests`] keeps in memory; 0 (the default)
    /// keeps none, so a long-running server's memory does not grow with its traffic.
    pub keep_requests: usize,
}

impl ServeOptions {
    /// Options serving `root` with every listener on `127.0.0.1:0` (a free port).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        ServeOptions {
            root: root.into(),
            api_listen: any,
            web_listen: any,
            storage_listen: any,
            rate_limit: 5000,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            #[cfg(feature = "serve-faults")]
            interceptor: None,
            #[cfg(feature = "serve-faults")]
            thread_per_connection: false,
            log: None,
            keep_requests: 0,
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ServeOptions");
        d.field("root", &self.root)
            .field("api_listen", &self.api_listen)
            .field("web_listen", &self.web_listen)
            .field("storage_listen", &self.storage_listen)
            .field("rate_limit", &self.rate_limit)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout);
        #[cfg(feature = "serve-faults")]
        d.field("interceptor", &self.interceptor.is_some())
            .field("thread_per_connection", &self.thread_per_connection);
        d.field("log", &self.log.is_some())
            .field("keep_requests", &self.keep_requests)
            .finish()
    }
}

/// Shared by the three listeners' handlers.
struct State {
    ctx: routes::Ctx,
    #[cfg(feature = "serve-faults")]
    interceptor: Option<Interceptor>,
    log: Option<LogFn>,
    keep_requests: usize,
    requests: Mutex<VecDeque<LoggedRequest>>,
}

impl State {
    fn record(&self, info: &RequestInfo, status: u16, intercepted: bool) {
        if self.log.is_none() && self.keep_requests == 0 {
            return;
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for (n, v) in &info.headers {
            if headers.iter().any(|(seen, _)| seen == n) {
                continue;
            }
            if n == "authorization" {
                headers.push((n.clone(), "<redacted>".to_string()));
            } else if LOGGED_HEADERS.contains(&n.as_str()) {
                headers.push((n.clone(), bounded(v, LOGGED_VALUE_BYTES)));
            }
        }
        let entry = LoggedRequest {
            listener: info.listener,
            method: bounded(&info.method, LOGGED_VALUE_BYTES),
            url: bounded(&info.url, LOGGED_URL_BYTES),
            headers,
            status,
            intercepted,
        };
        if let Some(log) = &self.log {
            log(&entry);
        }
        if self.keep_requests > 0 {
            let mut kept = lock(&self.requests);
            if kept.len() == self.keep_requests {
                kept.pop_front();
            }
            kept.push_back(entry);
        }
    }
}

/// A running server. Dropping it (or [`Server::shutdown`]) stops all three listeners.
pub struct Server {
    state: Arc<State>,
    engine: Option<engine::Engine>,
    #[cfg(feature = "serve-faults")]
    listeners: Vec<legacy::HttpListener>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("api", &self.api_url())
            .field("web", &self.web_url())
            .field("storage", &self.storage_url())
            .finish()
    }
}

fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot listen on {addr} ({what}): {e} (choose another address or port)"),
        )
        .with_source(e)
    })
}

/// Start serving `opts.root`. Fails with [`ErrorKind::Io`] naming the folder when it is missing
/// or not a directory, or naming the address when a listener cannot bind.
pub fn start(opts: ServeOptions) -> Result<Server> {
    check_limits(&opts)?;
    let meta = std::fs::metadata(&opts.root).map_err(|e| Error::io("serve release folder", &opts.root, e))?;
    if !meta.is_dir() {
        return Err(Error::io(
            "serve release folder",
            &opts.root,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    // Canonical, so containment checks compare like with like (symlinked tmp dirs, `..`).
    let root = std::fs::canonicalize(&opts.root).map_err(|e| Error::io("serve release folder", &opts.root, e))?;
    let api = bind(opts.api_listen, "API")?;
    let web = bind(opts.web_listen, "web")?;
    let storage = bind(opts.storage_listen, "storage")?;
    let addr = |l: &TcpListener, a: SocketAddr| {
        l.local_addr()
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot listen on {a}: {e}")))
    };
    let ctx = routes::Ctx::new(
        store::Store::new(root),
        addr(&api, opts.api_listen)?,
        addr(&web, opts.web_listen)?,
        addr(&storage, opts.storage_listen)?,
        opts.rate_limit,
    );
    #[cfg(feature = "serve-faults")]
    let legacy = opts.interceptor.is_some() || opts.thread_per_connection;
    let state = Arc::new(State {
        ctx,
        #[cfg(feature = "serve-faults")]
        interceptor: opts.interceptor,
        log: opts.log,
        keep_requests: opts.keep_requests,
        requests: Mutex::new(VecDeque::new()),
    });
    let in_flight = http::InFlight {
        count: Arc::new(AtomicUsize::new(0)),
        max: MAX_IN_FLIGHT,
    };
    let listeners = [(api, Listener::Api), (web, Listener::Web), (storage, Listener::Storage)];
    #[cfg(feature = "serve-faults")]
    if legacy {
        let mut started = Vec::new();
        for (l, kind) in listeners {
            let local = l.local_addr().ok();
            let h = legacy::spawn(l, legacy_handler(state.clone(), kind), in_flight.clone()).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot start the {kind:?} listener on {local:?}: {e}"),
                )
            })?;
            started.push(h);
        }
        return Ok(Server {
            state,
            engine: None,
            listeners: started,
        });
    }
    let limits = engine::Limits {
        per_ip: opts.max_connections_per_ip,
        total: opts.max_connections,
        header_timeout: opts.header_timeout,
        idle_timeout: opts.idle_timeout,
    };
    let handlers = listeners
        .into_iter()
        .map(|(l, kind)| (l, handler(state.clone(), kind)))
        .collect();
    let engine = engine::Engine::start(handlers, limits, in_flight)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the release server: {e}")).with_source(e))?;
    Ok(Server {
        state,
        engine: Some(engine),
        #[cfg(feature = "serve-faults")]
        listeners: Vec::new(),
    })
}

/// Refuse limits that would make the server useless (naming the option to change).
fn check_limits(opts: &ServeOptions) -> Result<()> {
    let bad = |what: &str, why: &str| Err(Error::new(ErrorKind::InvalidArgument, format!("serve: {what} {why}")));
    if opts.max_connections_per_ip == 0 {
        return bad(
            "max_connections_per_ip (--max-connections-per-ip)",
            "must be at least 1",
        );
    }
    if opts.max_connections == 0 {
        return bad("max_connections (--max-connections)", "must be at least 1");
    }
    if opts.max_connections_per_ip > opts.max_connections {
        return bad(
            "max_connections_per_ip (--max-connections-per-ip)",
            "must not exceed max_connections (--max-connections)",
        );
    }
    if opts.header_timeout.is_zero() {
        return bad("header_timeout (--header-timeout)", "must be more than 0 seconds");
    }
    if opts.idle_timeout.is_zero() {
        return bad("idle_timeout (--idle-timeout)", "must be more than 0 seconds");
    }
    Ok(())
}

/// The request as the interceptor and the log see it.
fn request_info(kind: Listener, req: &http::Request) -> RequestInfo {
    RequestInfo {
        listener: kind,
        method: req.method.clone(),
        url: req.target.clone(),
        headers: req.headers.clone(),
    }
}

/// Answer one request with the routes of listener `kind`, and log it.
fn answer(state: &State, kind: Listener, req: &http::Request, info: &RequestInfo) -> http::Response {
    let resp = match kind {
        Listener::Api => routes::api(&state.ctx, req),
        Listener::Web => download::web(&state.ctx, req),
        Listener::Storage => download::storage(&state.ctx, req),
    };
    state.record(info, resp.status, false);
    resp
}

fn handler(state: Arc<State>, kind: Listener) -> engine::Handler {
    Arc::new(move |req: &http::Request| answer(&state, kind, req, &request_info(kind, req)))
}

#[cfg(feature = "serve-faults")]
fn legacy_handler(state: Arc<State>, kind: Listener) -> legacy::Handler {
    Arc::new(move |req: &http::Request| {
        let info = request_info(kind, req);
        if let Some(ic) = &state.interceptor {
            if let Some(raw) = ic(&info) {
                state.record(&info, 0, true);
                return legacy::Reply::Raw(raw);
            }
        }
        legacy::Reply::Normal(answer(&state, kind, req, &info))
    })
}

impl Server {
    /// The API base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn api_url(&self) -> String {
        routes::base_url(self.state.ctx.api_addr, None)
    }

    /// The web base URL (the `--web-url` clients use for `browser_download_url`s).
    pub fn web_url(&self) -> String {
        routes::base_url(self.state.ctx.web_addr, None)
    }

    /// The storage base URL the API and web hosts redirect to. A storage listener on 127.0.0.1
    /// is named `localhost`, so the bytes come from another host name than the API, as on GitHub.
    pub fn storage_url(&self) -> String {
        routes::storage_base_url(self.state.ctx.storage_addr, None)
    }

    /// The latest [`ServeOptions::keep_requests`] requests, all listeners, in the order they were
    /// answered (empty unless that option asked for them).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state.requests).iter().cloned().collect()
    }

    /// Forget the logged requests.
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }

    /// Stop all listeners, close open connections and join the accept threads.
    pub fn shutdown(self) {
        drop(self);
    }

    /// Block forever (the CLI's foreground mode; the process ends by signal).
    pub fn wait(&self) {
        loop {
            std::thread::park();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The engine's runtime closes every listener and connection as it shuts down.
        drop(self.engine.take());
        #[cfg(feature = "serve-faults")]
        for l in &mut self.listeners {
            l.stop();
        }
    }
}
