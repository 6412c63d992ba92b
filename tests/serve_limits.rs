//! The release server under hostile load (issue 15): the per-client connection limit, the
//! request-head deadline, the idle timeout, clean shutdown with connections open, and refused
//! options. Clients bind their own loopback addresses (127.0.0.2, 127.0.0.3, ...) so one server
//! sees several client addresses. Deadlines are configured short; the only wall-time assertions
//! are generous upper bounds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use flynnrel::ErrorKind;
use flynnrel::serve::{self, ServeOptions, Server};

const ASSET: &str = "o/r/v1.0.0/a.bin";

fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in URL")
}

/// A connection to `port` on 127.0.0.1 from the client address `from`.
fn connect_from(from: &str, port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("local addr");
    sock.bind(&local.into()).expect("bind the client address");
    let dst = SocketAddr::from(([127, 0, 0, 1], port));
    sock.connect_timeout(&dst.into(), Duration::from_secs(5))
        .expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s
}

/// Everything the server sends until it closes (or 20 s pass: then the test fails).
fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            panic!("the server neither answered nor closed: {e}")
        }
        Err(_) => {} // a reset after the server closed
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A complete GET of the asset from `from`: (status line, body).
fn get_from(from: &str, port: u16) -> (String, String) {
    let mut s = connect_from(from, port);
    write!(
        s,
        "GET /{ASSET} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let out = read_all(&mut s);
    let status = out.lines().next().unwrap_or("").to_string();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn start(root: &Path, f: impl FnOnce(&mut ServeOptions)) -> Server {
    let mut o = ServeOptions::new(root);
    f(&mut o);
    serve::start(o).expect("start the server")
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    put(dir.path(), ASSET, b"0123456789");
    dir
}

#[test]
fn a_client_beyond_its_limit_is_refused_while_another_address_is_served() {
    let dir = fixture();
    let srv = start(dir.path(), |o| o.max_connections_per_ip = 4);
    let storage = port_of(&srv.storage_url());
    let api = port_of(&srv.api_url());
    // 127.0.0.2 holds 4 connections, each with half a request head.
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect_from("127.0.0.2", storage);
            s.write_all(b"GET /o/r/v1.0.0/a.bin HTTP/1.1\r\nHost: loc")
                .expect("half head");
            s
        })
        .collect();
    // Its fifth, on any listener, is answered 503 before its request is read, and closed.
    for port in [storage, api] {
        let mut s = connect_from("127.0.0.2", port);
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let out = read_all(&mut s);
        assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
        let lower = out.to_ascii_lowercase();
        assert!(lower.contains("\r\nretry-after: 1\r\n"), "{out}");
        assert!(lower.contains("\r\nconnection: close\r\n"), "{out}");
        assert!(out.contains("127.0.0.2") && out.contains("at most 4"), "{out}");
    }
    // Another address is served in full meanwhile.
    for from in ["127.0.0.3", "127.0.0.4"] {
        let (status, body) = get_from(from, storage);
        assert!(status.starts_with("HTTP/1.1 200 "), "{from}: {status}");
        assert_eq!(body, "0123456789");
    }
    // Once 127.0.0.2 closes its connections, it is served again (the server notices the closes
    // asynchronously: retry for a while).
    held.clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get_from("127.0.0.2", storage);
        if status.starts_with("HTTP/1.1 200 ") {
            assert_eq!(body, "0123456789");
            break;
        }
        assert!(status.starts_with("HTTP/1.1 503 "), "{status}");
        assert!(
            Instant::now() < deadline,
            "127.0.0.2 still refused after closing its connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_total_limit_refuses_every_address() {
    let dir = fixture();
    let srv = start(dir.path(), |o| {
        o.max_connections_per_ip = 2;
        o.max_connections = 2;
    });
    let storage = port_of(&srv.storage_url());
    let _a = connect_from("127.0.0.2", storage);
    let _b = connect_from("127.0.0.3", storage);
    // Wait until both are admitted (accepting is asynchronous), then a third address is refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = get_from("127.0.0.4", storage);
        if status.starts_with("HTTP/1.1 503 ") {
            break;
        }
        assert!(Instant::now() < deadline, "a third client was never refused: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = connect_from("127.0.0.5", storage);
    let out = read_all(&mut s);
    assert!(out.contains("maximum of 2 open connections"), "{out}");
}

#[test]
fn a_half_request_head_is_dropped_after_the_deadline_even_when_it_drips() {
    let dir = fixture();
    let srv = start(dir.path(), |o| o.header_timeout = Duration::from_millis(300));
    let storage = port_of(&srv.storage_url());

    // Half a head, then silence: closed without an answer once the deadline passes.
    let started = Instant::now();
    let mut s = connect_from("127.0.0.2", storage);
    s.write_all(b"GET /o/r/v1.0.0/a.bin HTTP/1.1\r\nHost: loc")
        .expect("half head");
    let out = read_all(&mut s);
    assert_eq!(out, "", "a half head must never be answered");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    // A head dripped one byte every 50 ms keeps the socket busy but never completes in time:
    // the deadline is for the whole head, not for each byte.
    let mut s = connect_from("127.0.0.2", storage);
    s.set_write_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let head = b"GET /o/r/v1.0.0/a.bin HTTP/1.1\r\nHost: localhost\r\nUser-Agent: drip\r\n\r\n";
    let started = Instant::now();
    for b in head.iter() {
        if s.write_all(&[*b]).is_err() {
            break; // the server closed it: the rest of the head does not matter
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = read_all(&mut s);
    assert_eq!(out, "", "a dripped head was answered");
    assert!(started.elapsed() < Duration::from_secs(20));

    // A connection that sends nothing is closed after the same deadline.
    let mut idle = connect_from("127.0.0.2", storage);
    assert_eq!(read_all(&mut idle), "");

    // And the server still answers a prompt client.
    let (status, body) = get_from("127.0.0.3", storage);
    assert!(status.starts_with("HTTP/1.1 200 "), "{status}");
    assert_eq!(body, "0123456789");
}

#[test]
fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Larger than what the socket buffers on both ends can absorb.
    put(dir.path(), ASSET, &vec![7u8; 64 << 20]);
    let srv = start(dir.path(), |o| {
        o.max_connections_per_ip = 1;
        o.idle_timeout = Duration::from_millis(500);
    });
    let storage = port_of(&srv.storage_url());
    let mut stalled = connect_from("127.0.0.2", storage);
    stalled
        .write_all(format!("GET /{ASSET} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .expect("send");
    // It holds 127.0.0.2's only place while it stalls; once the server gives up on it, the
    // address is admitted again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = connect_from("127.0.0.2", storage);
        s.write_all(format!("HEAD /{ASSET} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
            .expect("send");
        let out = read_all(&mut s);
        if out.starts_with("HTTP/1.1 200 ") {
            assert!(
                out.to_ascii_lowercase()
                    .contains(&format!("content-length: {}", 64 << 20)),
                "{out}"
            );
            break;
        }
        assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
        assert!(Instant::now() < deadline, "the stalled download was never closed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The stalled client gets fewer bytes than promised: the connection was cut.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match stalled.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < 64 << 20, "the stalled client got the whole file");
}

#[test]
fn shutdown_is_clean_with_connections_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    put(dir.path(), ASSET, &vec![1u8; 16 << 20]);
    let srv = start(dir.path(), |_| {});
    let storage = port_of(&srv.storage_url());
    let api = port_of(&srv.api_url());
    let mut idle = connect_from("127.0.0.2", api);
    let mut half = connect_from("127.0.0.2", storage);
    half.write_all(b"GET /o/r/v1.0.0/a.bin HTTP/1.1\r\nHo")
        .expect("half head");
    let mut downloading = connect_from("127.0.0.3", storage);
    downloading
        .write_all(format!("GET /{ASSET} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .expect("send");
    let mut first = [0u8; 12];
    downloading.read_exact(&mut first).expect("the download started");
    assert_eq!(&first, b"HTTP/1.1 200");

    let started = Instant::now();
    srv.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        started.elapsed()
    );
    // Every open connection ends (EOF or reset), none hangs; the download is cut short.
    assert_eq!(read_all(&mut idle), "");
    assert_eq!(read_all(&mut half), "");
    let rest = read_all(&mut downloading);
    assert!(rest.len() < 16 << 20, "the download completed after shutdown");
    // Nothing listens any more.
    for port in [storage, api] {
        let e = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(2));
        assert!(e.is_err(), "port {port} still accepts after shutdown");
    }
}

#[test]
fn useless_limits_are_refused_naming_the_option_and_nothing_listens() {
    let dir = fixture();
    // A port known to be free: the refused server must not take it.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    type Set = fn(&mut ServeOptions);
    let cases: [(Set, &str); 5] = [
        (|o| o.max_connections_per_ip = 0, "--max-connections-per-ip"),
        (|o| o.max_connections = 0, "--max-connections"),
        (
            |o| {
                o.max_connections = 10;
                o.max_connections_per_ip = 11;
            },
            "--max-connections-per-ip",
        ),
        (|o| o.header_timeout = Duration::ZERO, "--header-timeout"),
        (|o| o.idle_timeout = Duration::ZERO, "--idle-timeout"),
    ];
    for (set, name) in cases {
        let mut o = ServeOptions::new(dir.path());
        o.api_listen = addr;
        set(&mut o);
        let e = serve::start(o).expect_err(name);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(name), "{name}: {e}");
        std::net::TcpListener::bind(addr).expect("the port is still free");
    }
    // The defaults are the documented ones.
    let o = ServeOptions::new(dir.path());
    assert_eq!(o.max_connections_per_ip, serve::DEFAULT_MAX_CONNECTIONS_PER_IP);
    assert_eq!(o.max_connections, serve::DEFAULT_MAX_CONNECTIONS);
    assert_eq!(o.header_timeout, Duration::from_secs(10));
    assert_eq!(o.idle_timeout, Duration::from_secs(60));
}
