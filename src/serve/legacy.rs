//! The thread-per-connection engine on `std::net` (feature `serve-faults`: tests only).
//!
//! Kept for the tests' fault injection only ([`super::Interceptor`]: raw bytes, slow drips,
//! truncated bodies, then a close): the product engine ([`super::engine`], hyper on tokio) never
//! lets a handler write to the socket, and a hook that can must not ship in the CLI binary. It is
//! also the reference `script/bench-serve` measures the product engine against: one thread per
//! connection, so one client holding thousands of half-sent request heads denies service to
//! everyone (see `examples/serve-legacy.rs`).
//!
//! It is hand-written rather than built on `tiny_http` because the test hook must write raw bytes
//! to the socket and then *close the connection* (so a client sees a truncated body as truncated
//! instead of waiting forever), and `tiny_http` 0.12 keeps the socket open for the next request
//! with no public way to close it. Owning the socket also lets us send `Content-Length` for large
//! files (no forced chunking) and stream files with `io::copy` in bounded memory.
//!
//! Model: one accept thread per listener, one thread per connection (keep-alive requests on a
//! connection are answered in order, as HTTP/1.1 requires). Requests in flight are counted across
//! all listeners; beyond the limit the server answers `503` instead of queueing.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::http::{Body, InFlight, Request, Response, http_date, lock, origin_form, unavailable};

/// Longest request line or header line accepted (GitHub's own limit is in this range).
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 128;
/// Most bytes of header lines in one request head (each line is also bounded by [`MAX_LINE`]).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Request bodies up to this size are read and dropped so the connection can be reused; larger
/// (or chunked) bodies make us close the connection after answering instead.
const MAX_DISCARD_BODY: u64 = 1024 * 1024;
/// An idle keep-alive connection is closed after this long, reclaiming its thread.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that stops reading for this long is dropped, so a stuck peer cannot pin a thread.
const WRITE_TIMEOUT: Duration = Duration::from_secs(300);
/// Open connections (threads) per listener; beyond this, new connections get `503` and a close.
const MAX_CONNECTIONS: usize = 4096;
/// How long shutdown waits for connection threads to notice their closed sockets.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What a handler answers with.
pub(crate) enum Reply {
    /// A normal HTTP response.
    Normal(Response),
    /// Raw bytes written verbatim, after which the connection is closed (the test hook).
    Raw(Box<dyn Read + Send>),
}

/// The function that answers requests on one listener.
pub(crate) type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// State shared by the accept thread and the connection threads of one listener.
struct Shared {
    stop: AtomicBool,
    /// Clones of every open connection's socket, so shutdown can unblock their threads.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    /// Number of live connection threads, with a condvar so shutdown can wait for them.
    live: Mutex<usize>,
    live_cv: Condvar,
}

/// A running listener. Stopping it (explicitly or on drop) closes every connection.
pub(crate) struct HttpListener {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// Start serving `listener` with `handler` on a new accept thread.
pub(crate) fn spawn(listener: TcpListener, handler: Handler, in_flight: InFlight) -> io::Result<HttpListener> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        conns: Mutex::new(HashMap::new()),
        next_conn: AtomicU64::new(1),
        live: Mutex::new(0),
        live_cv: Condvar::new(),
    });
    let s = shared.clone();
    let accept = std::thread::Builder::new()
        .name(format!("serve-accept-{}", addr.port()))
        .spawn(move || accept_loop(listener, s, handler, in_flight))?;
    Ok(HttpListener {
        addr,
        shared,
        accept: Some(accept),
    })
}

impl HttpListener {
    /// Stop accepting, close every open connection, and join the accept thread. Connection
    /// threads get a short grace period to notice their closed sockets.
    pub fn stop(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // `accept` has no timeout: a throwaway connection wakes it so it can see `stop`.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(2));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for (_, s) in lock(&self.shared.conns).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        let mut live = lock(&self.shared.live);
        while *live > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            live = match self.shared.live_cv.wait_timeout(live, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, handler: Handler, in_flight: InFlight) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(_) => {
                // EMFILE and friends: back off briefly instead of spinning.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        {
            let mut live = lock(&shared.live);
            if *live >= MAX_CONNECTIONS {
                drop(live);
                let mut s = stream;
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = write_response(&mut s, false, unavailable(), true);
                continue;
            }
            *live += 1;
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).insert(id, clone);
        }
        let s = shared.clone();
        let h = handler.clone();
        let f = in_flight.clone();
        let spawned = std::thread::Builder::new().name("serve-conn".into()).spawn(move || {
            let _guard = ConnGuard { shared: s.clone(), id };
            serve_connection(stream, &h, &f);
        });
        if spawned.is_err() {
            // The guard was never created: undo the bookkeeping here.
            lock(&shared.conns).remove(&id);
            *lock(&shared.live) -= 1;
            shared.live_cv.notify_all();
        }
    }
}

/// Unregisters a connection when its thread ends, even by panic.
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock(&self.shared.conns).remove(&self.id);
        let mut live = lock(&self.shared.live);
        *live = live.saturating_sub(1);
        self.shared.live_cv.notify_all();
    }
}

/// Decrements the in-flight count when a request is done, even by panic.
struct InFlightGuard<'a>(&'a AtomicUsize);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a request could not be read.
enum ReadError {
    /// The peer closed or the socket failed: just drop the connection.
    Gone,
    /// The request is malformed: answer with this status and close.
    Bad(u16),
}

fn serve_connection(stream: TcpStream, handler: &Handler, in_flight: &InFlight) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(peer) = stream.peer_addr() else { return };
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let (req, http10) = match read_request(&mut reader, peer) {
            Ok(Some(r)) => r,
            Ok(None) | Err(ReadError::Gone) => break,
            Err(ReadError::Bad(status)) => {
                let resp = Response::new(status, Body::Empty);
                let _ = write_response(&mut writer, false, resp, true);
                break;
            }
        };
        let conn_hdr = req.header("connection").unwrap_or("").to_ascii_lowercase();
        let mut close = if http10 {
            !conn_hdr.contains("keep-alive")
        } else {
            conn_hdr.contains("close")
        };
        match discard_body(&mut reader, &req) {
            Ok(true) => {}
            Ok(false) => close = true,
            Err(status) => {
                let resp = Response::new(status, Body::Empty);
                let _ = write_response(&mut writer, false, resp, true);
                break;
            }
        }
        let n = in_flight.count.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = InFlightGuard(&in_flight.count);
        let reply = if n > in_flight.max {
            Reply::Normal(unavailable())
        } else {
            handler(&req)
        };
        match reply {
            Reply::Raw(mut raw) => {
                // Unbuffered: each piece the hook produces goes out at once, so a test can drip
                // bytes slowly or stream forever.
                let _ = io::copy(&mut raw, &mut writer);
                let _ = writer.shutdown(Shutdown::Both);
                break;
            }
            Reply::Normal(resp) => {
                let head = req.method.eq_ignore_ascii_case("HEAD");
                if write_response(&mut writer, head, resp, close).is_err() || close {
                    let _ = writer.shutdown(Shutdown::Both);
                    break;
                }
            }
        }
    }
}

/// Read one line (without CRLF), bounded by [`MAX_LINE`]. `Ok(None)` at a clean EOF.
fn read_line(reader: &mut BufReader<TcpStream>) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut buf)
        .map_err(|_| ReadError::Gone)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        // Either the line is too long or the peer closed mid-line.
        return Err(if n as u64 >= MAX_LINE {
            ReadError::Bad(431)
        } else {
            ReadError::Gone
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map(Some).map_err(|_| ReadError::Bad(400))
}

/// Read a request head. Returns the request and whether it was HTTP/1.0.
fn read_request(reader: &mut BufReader<TcpStream>, peer: SocketAddr) -> Result<Option<(Request, bool)>, ReadError> {
    // RFC 9112 §2.2: ignore empty lines before the request line.
    let line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Bad(505)),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ReadError::Bad(400));
    }
    let target = origin_form(target).ok_or(ReadError::Bad(400))?;
    let mut headers = Vec::new();
    let mut head_bytes = 0;
    loop {
        let Some(l) = read_line(reader)? else {
            return Err(ReadError::Gone);
        };
        if l.is_empty() {
            break;
        }
        head_bytes += l.len();
        if headers.len() >= MAX_HEADERS || head_bytes > MAX_HEAD_BYTES {
            return Err(ReadError::Bad(431));
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(ReadError::Bad(400));
        };
        if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
            return Err(ReadError::Bad(400));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some((
        Request {
            method: method.to_string(),
            target,
            headers,
            peer,
        },
        http10,
    )))
}

/// Consume a small request body so the connection stays usable. `Ok(false)`: the body was not
/// consumed (chunked or large), so the connection must be closed after the response.
fn discard_body(reader: &mut BufReader<TcpStream>, req: &Request) -> Result<bool, u16> {
    if req.header("transfer-encoding").is_some() {
        return Ok(false);
    }
    let Some(cl) = req.header("content-length") else {
        return Ok(true);
    };
    let n: u64 = cl.trim().parse().map_err(|_| 400u16)?;
    if n > MAX_DISCARD_BODY {
        return Ok(false);
    }
    match io::copy(&mut reader.by_ref().take(n), &mut io::sink()) {
        Ok(copied) if copied == n => Ok(true),
        _ => Ok(false),
    }
}

/// Write a response. `head_only` suppresses the body (for `HEAD`), keeping `Content-Length`.
fn write_response(w: &mut TcpStream, head_only: bool, resp: Response, close: bool) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, w);
    write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status))?;
    write!(out, "date: {}\r\n", http_date(SystemTime::now()))?;
    for (n, v) in &resp.headers {
        // Header values come from our own code and file names; strip CR/LF defensively so a
        // strange file name can never split the response.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        write!(out, "{n}: {v}\r\n")?;
    }
    let no_body = resp.status == 304 || resp.status == 204 || resp.status < 200;
    if !no_body {
        write!(out, "content-length: {}\r\n", resp.body.len())?;
    }
    if close {
        out.write_all(b"connection: close\r\n")?;
    }
    out.write_all(b"\r\n")?;
    if !no_body && !head_only {
        match resp.body {
            Body::Empty => {}
            Body::Bytes(b) => out.write_all(&b)?,
            Body::File { mut file, offset, len } => {
                file.seek(SeekFrom::Start(offset))?;
                let copied = io::copy(&mut file.take(len), &mut out)?;
                if copied != len {
                    // The file shrank under us: we cannot honour Content-Length, so fail the
                    // write and let the caller close the connection (the client sees truncation).
                    out.flush()?;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while serving",
                    ));
                }
            }
        }
    }
    out.flush()
}

/// The reason phrase for the statuses we send.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
