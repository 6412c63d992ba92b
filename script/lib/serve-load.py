#!/usr/bin/env python3
"""Load clients for script/bench-serve's hostile case (loopback only, bounded, stops by itself).

  serve-load.py hold  --from 127.0.0.2 --port P --count N --seconds S --ready FILE
      One client address opens N connections to 127.0.0.1:P, each sending half a request head,
      and holds them; a connection the server answers or closes is re-opened (at most
      --reopen-per-s a second). Writes FILE once the first pass is done; prints a JSON summary.

  serve-load.py fetch --first 127.0.0.3 --clients K --requests R --url URL --sha512 HEX
      K clients, each bound to its own address (127.0.0.3, .4, ...), download URL R times each
      (a fresh connection per hop, following the 302 to the storage host), checking the body's
      sha512. Prints a JSON summary: requests, ok, success rate, p50/p99 latency, error counts.
"""

import argparse
import hashlib
import http.client
import ipaddress
import json
import selectors
import signal
import socket
import sys
import threading
import time
import urllib.parse

HALF_HEAD = b"GET /flynn/flynn/v1.0.0/layers.tar.gz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: hold"


def loopback(addr):
    if not ipaddress.ip_address(addr).is_loopback:
        sys.exit(f"serve-load: {addr} is not a loopback address; this tool only runs on loopback")
    return addr


def hold(a):
    loopback(a.source)
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "connect_failed": 0, "answered_or_closed": 0, "answered_503": 0, "answered_408": 0}

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((a.source, 0))
            s.settimeout(2)
            s.connect(("127.0.0.1", a.port))
            s.sendall(HALF_HEAD)
            s.setblocking(False)
        except OSError:
            s.close()
            stats["connect_failed"] += 1
            return False
        sel.register(s, selectors.EVENT_READ)
        stats["opened"] += 1
        return True

    stop = threading.Event()
    # SIGTERM ends the hold early (the bench stops it once its clients are done) with a summary.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = time.monotonic() + a.seconds
    for _ in range(a.count):
        if time.monotonic() >= deadline or stop.is_set():
            break
        open_one()
    with open(a.ready, "w") as f:
        f.write(f"{len(sel.get_map())}\n")
    want = 0
    held_samples = []
    last_refill = time.monotonic()
    while time.monotonic() < deadline and not stop.is_set():
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 503") or data.startswith(b"HTTP/1.0 503"):
                stats["answered_503"] += 1
            elif data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.0 408"):
                stats["answered_408"] += 1
            stats["answered_or_closed"] += 1
            sel.unregister(s)
            s.close()
            want += 1
        now = time.monotonic()
        budget = int((now - last_refill) * a.reopen_per_s)
        if budget > 0:
            last_refill = now
            for _ in range(min(budget, want)):
                want -= 1
                open_one()
        held_samples.append(len(sel.get_map()))
    held_samples.sort()
    stats["held_at_end"] = len(sel.get_map())
    stats["held_median"] = held_samples[len(held_samples) // 2] if held_samples else 0
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    print(json.dumps(stats))


def get(url, source, timeout):
    """One GET from `source`: (status, headers, body)."""
    u = urllib.parse.urlsplit(url)
    host = "127.0.0.1" if u.hostname == "localhost" else u.hostname
    loopback(host)
    c = http.client.HTTPConnection(host, u.port, timeout=timeout, source_address=(source, 0))
    try:
        path = u.path + ("?" + u.query if u.query else "")
        c.request("GET", path, headers={"Host": u.netloc, "Connection": "close"})
        r = c.getresponse()
        body = r.read()
        return r.status, r.getheader("Location"), body
    finally:
        c.close()


def fetch(a):
    base = ipaddress.ip_address(loopback(a.first))
    results = []
    lock = threading.Lock()

    def client(i):
        source = str(base + i)
        loopback(source)
        for _ in range(a.requests):
            t0 = time.monotonic()
            try:
                status, location, _ = get(a.url, source, a.timeout)
                if status != 302 or not location:
                    raise RuntimeError(f"web answered {status}")
                status, _, body = get(location, source, a.timeout)
                if status != 200:
                    raise RuntimeError(f"storage answered {status}")
                if hashlib.sha512(body).hexdigest() != a.sha512:
                    raise RuntimeError("corrupt body")
                err = None
            except Exception as e:  # every failure is counted by its reason
                err = str(e) or type(e).__name__
            with lock:
                results.append((time.monotonic() - t0, err))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sorted(d for d, e in results if e is None)
    errors = {}
    for _, e in results:
        if e is not None:
            errors[e] = errors.get(e, 0) + 1

    def pct(p):
        if not ok:
            return None
        return round(ok[min(len(ok) - 1, int(p * len(ok)))] * 1000, 1)

    print(json.dumps({
        "requests": len(results),
        "ok": len(ok),
        "success_pct": round(100.0 * len(ok) / max(1, len(results)), 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": errors,
    }))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold")
    h.add_argument("--from", dest="source", required=True)
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--count", type=int, default=5000)
    h.add_argument("--seconds", type=float, required=True)
    h.add_argument("--reopen-per-s", type=int, default=200)
    h.add_argument("--ready", required=True)
    f = sub.add_parser("fetch")
    f.add_argument("--first", required=True)
    f.add_argument("--clients", type=int, default=8)
    f.add_argument("--requests", type=int, default=25)
    f.add_argument("--url", required=True)
    f.add_argument("--sha512", required=True)
    f.add_argument("--timeout", type=float, default=10)
    a = p.parse_args()
    if a.cmd == "hold":
        hold(a)
    else:
        fetch(a)


if __name__ == "__main__":
    main()
