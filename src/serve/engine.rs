//! The product engine of the release server: hyper's HTTP/1.1 on a tokio runtime.
//!
//! Event-driven, so an idle or half-sent connection costs a socket and a few KiB, not a thread,
//! and one client cannot exhaust the server by holding connections open:
//!
//! - **Request-head deadline**: the whole head of each request must arrive within
//!   [`Limits::header_timeout`] from when the server starts waiting for it (hyper's
//!   `header_read_timeout`); a client that sends half a head and stops (or drips it) is closed
//!   without an answer. The same clock ends a keep-alive connection that stays idle that long
//!   between requests.
//! - **Idle timeout**: a connection on which no byte moves in either direction for
//!   [`Limits::idle_timeout`] while no handler runs (a client that stopped reading its download)
//!   is closed.
//! - **Connections per client address**: at most [`Limits::per_ip`] open connections per client
//!   address (IPv6: per /64), counted over all three listeners, and at most [`Limits::total`] in
//!   all. A connection beyond either limit is answered `503` with `retry-after: 1` and
//!   `connection: close` before its request is read, and closed; when more than
//!   [`MAX_REFUSING`] such answers are pending it is closed at once instead.
//!
//! Route handlers do blocking file I/O, so they run on tokio's blocking pool (at most
//! [`BLOCKING_THREADS`] threads); file bodies are streamed in [`CHUNK`]-sized reads, so memory per
//! download is bounded whatever the file's size. Shutdown drops every task, closing every
//! listener and connection, and waits at most [`SHUTDOWN_GRACE`] for blocking handlers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io::{self, Seek, SeekFrom};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::http::{Body, InFlight, Request, Response, http_date, lock, origin_form, unavailable};

/// The function that answers requests on one listener (runs on the blocking pool).
pub(crate) type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 128;
/// Most bytes of one request head; a longer head is answered `431`.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Bytes read from a file per body chunk.
const CHUNK: usize = 128 * 1024;
/// Threads of the blocking pool the route handlers and file reads run on.
pub(crate) const BLOCKING_THREADS: usize = 64;
/// Refusal answers (`503` to a connection beyond a limit) pending at once; beyond this a refused
/// connection is closed without an answer, so refusing costs nothing that can pile up.
pub(crate) const MAX_REFUSING: usize = 256;
/// How long a refusal waits for its `503` to be written and the client's bytes to drain.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// How long shutdown waits for blocking handlers to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The connection limits (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub per_ip: usize,
    pub total: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Open connections per client address and in total, shared by the three listeners.
struct Admission {
    limits: Limits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    refusing: AtomicUsize,
}

/// The key a client is counted under: its address, IPv4-mapped IPv6 as IPv4, IPv6 by /64 (one
/// host usually holds a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerClient,
    Total,
}

impl Admission {
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refusal> {
        let key = client_key(peer);
        let mut g = lock(&self.open);
        if g.0 >= self.limits.total {
            return Err(Refusal::Total);
        }
        let n = g.1.entry(key).or_insert(0);
        if *n >= self.limits.per_ip {
            return Err(Refusal::PerClient);
        }
        *n += 1;
        g.0 += 1;
        Ok(Permit {
            admission: self.clone(),
            key,
        })
    }
}

/// One admitted connection; dropping it frees its place.
struct Permit {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut g = lock(&self.admission.open);
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.key);
            }
        }
    }
}

/// A running engine: its runtime owns every listener and connection.
pub(crate) struct Engine {
    rt: Option<tokio::runtime::Runtime>,
}

impl Engine {
    /// Serve each listener with its handler until dropped.
    pub(crate) fn start(
        listeners: Vec<(std::net::TcpListener, Handler)>,
        limits: Limits,
        in_flight: InFlight,
    ) -> io::Result<Engine> {
        raise_open_files_limit(limits.total);
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name("flynnrel-serve")
            .enable_io()
            .enable_time()
            .build()?;
        let admission = Arc::new(Admission {
            limits,
            open: Mutex::new((0, HashMap::new())),
            refusing: AtomicUsize::new(0),
        });
        for (l, handler) in listeners {
            l.set_nonblocking(true)?;
            let l = {
                let _g = rt.enter();
                TcpListener::from_std(l)?
            };
            rt.spawn(accept_loop(l, handler, admission.clone(), in_flight.clone()));
        }
        Ok(Engine { rt: Some(rt) })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Dropping the tasks closes every listener and connection. Waiting is not allowed
            // inside another runtime; there the blocking handlers finish on their own.
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(SHUTDOWN_GRACE);
            }
        }
    }
}

/// Raise the soft limit on open files towards the hard limit, so the connection cap (not the
/// process's default of often 1024 descriptors) is what bounds the server.
fn raise_open_files_limit(total: usize) {
    let want = (total as libc::rlim_t).saturating_add(1024);
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < want {
            rl.rlim_cur = want.min(rl.rlim_max);
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

async fn accept_loop(listener: TcpListener, handler: Handler, admission: Arc<Admission>, in_flight: InFlight) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        match admission.admit(peer.ip()) {
            Ok(permit) => {
                tokio::spawn(connection(
                    stream,
                    peer,
                    handler.clone(),
                    admission.limits,
                    in_flight.clone(),
                    permit,
                ));
            }
            Err(why) => refuse(stream, peer, why, &admission),
        }
    }
}

/// The bytes of the `503` a refused connection gets.
fn refusal_bytes(peer: SocketAddr, why: Refusal, limits: &Limits) -> Vec<u8> {
    let message = match why {
        Refusal::PerClient => format!(
            "too many open connections from {} (at most {} per client address); close some and retry",
            peer.ip(),
            limits.per_ip
        ),
        Refusal::Total => format!(
            "the server holds its maximum of {} open connections; retry later",
            limits.total
        ),
    };
    let body = serde_json::json!({ "message": message }).to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ndate: {}\r\ncontent-type: application/json; charset=utf-8\r\n\
         retry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        http_date(std::time::SystemTime::now()),
        body.len()
    )
    .into_bytes()
}

/// Answer a connection beyond a limit with `503` and close it, bounded in time and in number.
fn refuse(stream: TcpStream, peer: SocketAddr, why: Refusal, admission: &Arc<Admission>) {
    if admission.refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
        admission.refusing.fetch_sub(1, Ordering::SeqCst);
        drop(stream);
        return;
    }
    let bytes = refusal_bytes(peer, why, &admission.limits);
    let admission = admission.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_LINGER, async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = stream;
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
            let _ = stream.shutdown().await;
            // Drain what the client sent so closing does not reset the connection before it
            // has read the answer.
            let mut buf = [0u8; 4096];
            let mut drained = 0usize;
            while drained < 64 * 1024 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        })
        .await;
        admission.refusing.fetch_sub(1, Ordering::SeqCst);
    });
}

/// When bytes last moved on a connection, and whether a handler is running on it.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    handling: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The socket, noting every byte that moves.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                this.activity.touch();
            }
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                this.activity.touch();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Resolves when the connection has been idle (no byte moved, no handler running) for `idle`.
async fn idle_watchdog(activity: Arc<Activity>, idle: Duration) {
    loop {
        let deadline = activity.last() + idle;
        if Instant::now() >= deadline && activity.handling.load(Ordering::SeqCst) == 0 {
            return;
        }
        let wake = if Instant::now() >= deadline {
            Instant::now() + idle
        } else {
            deadline
        };
        tokio::time::sleep_until(wake.into()).await;
    }
}

/// Serve one connection until it ends, the idle watchdog fires, or the runtime shuts down.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Handler,
    limits: Limits,
    in_flight: InFlight,
    _permit: Permit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity {
        epoch: Instant::now(),
        last_ms: AtomicU64::new(0),
        handling: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let act = activity.clone();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        respond(req, peer, handler.clone(), in_flight.clone(), act.clone())
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A client may send its request and shut down its sending side while it waits.
        .half_close(true)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(io, svc);
    let watchdog = idle_watchdog(activity, limits.idle_timeout);
    let mut conn = pin!(conn);
    let mut watchdog = pin!(watchdog);
    poll_fn(|cx| {
        if conn.as_mut().poll(cx).is_ready() || watchdog.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Counts a request in flight until its response body is done (or dropped).
struct RequestGuard(Arc<AtomicUsize>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks a handler as running on the connection (the idle watchdog waits for it).
struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

/// The request as the route handlers see it, or the status to refuse it with.
fn convert(req: &hyper::Request<Incoming>, peer: SocketAddr) -> Result<Request, u16> {
    let method = req.method().as_str();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(400);
    }
    let uri = req.uri();
    let target = if uri.scheme().is_some() {
        // Absolute form: keep the path and query.
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        origin_form(&format!("http://h{pq}"))
    } else {
        origin_form(&uri.to_string())
    }
    .ok_or(400u16)?;
    let mut headers = Vec::with_capacity(req.headers().len());
    for (name, value) in req.headers() {
        let v = std::str::from_utf8(value.as_bytes()).map_err(|_| 400u16)?;
        headers.push((name.as_str().to_string(), v.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        target,
        headers,
        peer,
    })
}

async fn respond(
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
    handler: Handler,
    in_flight: InFlight,
    activity: Arc<Activity>,
) -> Result<hyper::Response<OutBody>, Infallible> {
    let head = req.method() == Method::HEAD;
    let parsed = match convert(&req, peer) {
        Ok(r) => r,
        Err(status) => return Ok(to_hyper(Response::new(status, Body::Empty), head, None)),
    };
    drop(req);
    let n = in_flight.count.fetch_add(1, Ordering::SeqCst) + 1;
    let guard = RequestGuard(in_flight.count.clone());
    if n > in_flight.max {
        return Ok(to_hyper(unavailable(), head, Some(guard)));
    }
    activity.handling.fetch_add(1, Ordering::SeqCst);
    let handling = Handling(activity);
    let answered = tokio::task::spawn_blocking(move || {
        let mut resp = handler(&parsed);
        if let Body::File { file, offset, .. } = &mut resp.body {
            if let Err(e) = file.seek(SeekFrom::Start(*offset)) {
                resp = Response::new(500, Body::Bytes(format!("cannot read the file: {e}").into_bytes()));
            }
        }
        resp
    })
    .await;
    drop(handling);
    let resp = answered.unwrap_or_else(|_| Response::new(500, Body::Bytes(b"Internal Server Error".to_vec())));
    Ok(to_hyper(resp, head, Some(guard)))
}

/// A route handler's response as hyper's: `Content-Length` always (also for `HEAD`), no body for
/// `HEAD`, `1xx`, `204` and `304`.
fn to_hyper(resp: Response, head: bool, guard: Option<RequestGuard>) -> hyper::Response<OutBody> {
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let no_body = resp.status == 304 || resp.status == 204 || resp.status < 200;
    let len = resp.body.len();
    let body = if no_body || head {
        OutBody::empty(guard)
    } else {
        match resp.body {
            Body::Empty => OutBody::empty(guard),
            Body::Bytes(b) => OutBody {
                kind: Kind::Bytes(Some(Bytes::from(b))),
                remaining: len,
                _guard: guard,
            },
            Body::File { file, len, .. } => OutBody {
                kind: Kind::File {
                    file: tokio::fs::File::from_std(file),
                    buf: vec![0; CHUNK.min(len as usize)],
                },
                remaining: len,
                _guard: guard,
            },
        }
    };
    let mut out = hyper::Response::new(body);
    *out.status_mut() = status;
    let h = out.headers_mut();
    for (n, v) in &resp.headers {
        // Header values come from our own code and file names; drop control characters
        // defensively so a strange file name can never split or break the response.
        let v: Vec<u8> = v.bytes().filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)).collect();
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_bytes(&v)) {
            h.append(n, v);
        }
    }
    if !no_body {
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    out
}

enum Kind {
    Empty,
    Bytes(Option<Bytes>),
    File { file: tokio::fs::File, buf: Vec<u8> },
}

/// A response body: nothing, bytes in memory, or a file streamed chunk by chunk.
pub(crate) struct OutBody {
    kind: Kind,
    remaining: u64,
    _guard: Option<RequestGuard>,
}

impl OutBody {
    fn empty(guard: Option<RequestGuard>) -> OutBody {
        OutBody {
            kind: Kind::Empty,
            remaining: 0,
            _guard: guard,
        }
    }
}

impl hyper::body::Body for OutBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Bytes(b) => {
                this.remaining = 0;
                Poll::Ready(b.take().map(|b| Ok(Frame::data(b))))
            }
            Kind::File { file, buf } => {
                if this.remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = (this.remaining.min(buf.len() as u64)) as usize;
                let mut rb = ReadBuf::new(&mut buf[..want]);
                match Pin::new(file).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) => {
                        let got = rb.filled();
                        if got.is_empty() {
                            // The file shrank under us: Content-Length cannot be honoured, so
                            // the connection is cut and the client sees a truncated body.
                            return Poll::Ready(Some(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shrank while serving",
                            ))));
                        }
                        this.remaining -= got.len() as u64;
                        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(got)))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Bytes(b) => b.is_none(),
            Kind::File { .. } => self.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_address_and_ipv6_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("v6");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().expect("mapped");
        assert_eq!(client_key(mapped), "127.0.0.2".parse::<IpAddr>().expect("v4"));
    }

    #[test]
    fn admission_counts_per_client_and_in_total_and_frees_on_drop() {
        let limits = Limits {
            per_ip: 2,
            total: 3,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        let adm = Arc::new(Admission {
            limits,
            open: Mutex::new((0, HashMap::new())),
            refusing: AtomicUsize::new(0),
        });
        let x: IpAddr = "127.0.0.2".parse().expect("ip");
        let y: IpAddr = "127.0.0.3".parse().expect("ip");
        let p1 = adm.admit(x).expect("first");
        let _p2 = adm.admit(x).expect("second");
        assert_eq!(adm.admit(x).err(), Some(Refusal::PerClient));
        let _p3 = adm.admit(y).expect("other client");
        assert_eq!(adm.admit(y).err(), Some(Refusal::Total));
        drop(p1);
        let _p4 = adm.admit(x).expect("a freed place is reused");
        assert_eq!(lock(&adm.open).0, 3);
    }
}
