#!/usr/bin/env python3
"""The token server of the registry test harness (script/lib/registry): plays ghcr.io's token
endpoint for Debian's docker-registry (distribution 2.8) configured with `auth: token:`.

    registry-token-server.py --dir DIR --issuer ISSUER --service SERVICE \
        --user USER --password-file FILE --ready-file FILE --log FILE

Listens on 127.0.0.1 on a free port and writes that port to --ready-file once it answers.

    GET /token?service=SERVICE&scope=repository:NAME:pull,push[&scope=...]

answers like ghcr.io: {"token": JWT, "access_token": JWT, "expires_in": 300, "issued_at": ...}.
  - anonymous (no Authorization header): `pull` only, and only for repositories outside the
    `private/` namespace; every other action asked for is left out of the token (the registry
    then answers 401 insufficient_scope, as ghcr.io does);
  - HTTP Basic USER:PASSWORD: pull and push on every repository;
  - wrong credentials: 401 with a JSON error; an unknown service or a malformed scope: 400.

Tokens are JWTs signed RS256 with DIR/key.pem (by `openssl dgst -sha256 -sign`, Python's
standard library has no RSA); DIR/cert.pem is the registry's `rootcertbundle`. The JWT header
names the key by `kid`, which distribution 2.8 (registry/auth/token) looks up among the
rootcertbundle's public keys by libtrust's key ID: the SHA-256 of the key's DER
SubjectPublicKeyInfo, first 30 bytes, base32 without padding, in groups of 4 joined by ':'.
Every request is logged to --log as one JSON line (method, path, account, granted access,
status) so a test can see who was given what.
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse

TOKEN_TTL = 300


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(key_pem: str) -> str:
    der = subprocess.run(
        ["openssl", "pkey", "-in", key_pem, "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(s[i : i + 4] for i in range(0, len(s), 4))


class Signer:
    def __init__(self, key_pem: str):
        self.key_pem = key_pem
        self.kid = libtrust_key_id(key_pem)

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key_pem],
            input=signing_input.encode("ascii"),
            check=True,
            capture_output=True,
        ).stdout
        return signing_input + "." + b64url(sig)


def parse_scope(scope: str):
    """repository:NAME:ACTIONS -> (type, name, [actions]); NAME may hold ':' (a port) only in
    theory, so the type is up to the first ':' and the actions after the last one."""
    first = scope.find(":")
    last = scope.rfind(":")
    if first <= 0 or last == first or last == len(scope) - 1:
        raise ValueError(f"malformed scope {scope!r}: want TYPE:NAME:ACTIONS")
    typ, name, actions = scope[:first], scope[first + 1 : last], scope[last + 1 :]
    return typ, name, [a for a in actions.split(",") if a]


def make_handler(args, signer, log_lock):
    with open(args.password_file, encoding="utf-8") as f:
        password = f.read().strip()
    expected = base64.b64encode(f"{args.user}:{password}".encode()).decode("ascii")

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "flynnrel-test-token-server"

        def log_message(self, fmt, *a):  # the JSON log below replaces stderr lines
            pass

        def record(self, status, account, access, error=None):
            entry = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "method": self.command,
                "path": self.path,
                "account": account,
                "access": access,
                "status": status,
            }
            if error:
                entry["error"] = error
            with log_lock, open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

        def reply(self, status, body, account="", access=None, error=None, extra=None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.record(status, account, access or [], error)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": f"no such endpoint {url.path}: use /token"}]})
                return
            query = urllib.parse.parse_qs(url.query)
            service = query.get("service", [""])[0]
            if service != args.service:
                msg = f"unknown service {service!r}: this token server issues tokens for {args.service!r}"
                self.reply(400, {"errors": [{"code": "DENIED", "message": msg}]}, error=msg)
                return

            account = ""
            authorized = False
            header = self.headers.get("Authorization", "")
            if header:
                scheme, _, value = header.partition(" ")
                if scheme.lower() != "basic" or not secrets.compare_digest(value.strip(), expected):
                    msg = "bad credentials: the token endpoint takes HTTP Basic REGISTRY_USER:REGISTRY_PASSWORD"
                    self.reply(
                        401,
                        {"errors": [{"code": "UNAUTHORIZED", "message": msg}]},
                        error=msg,
                        extra={"WWW-Authenticate": 'Basic realm="flynnrel-test-token-server"'},
                    )
                    return
                account, authorized = args.user, True

            access = []
            for scope in query.get("scope", []):
                for part in scope.split(" "):
                    if not part:
                        continue
                    try:
                        typ, name, actions = parse_scope(part)
                    except ValueError as e:
                        self.reply(400, {"errors": [{"code": "DENIED", "message": str(e)}]}, account, error=str(e))
                        return
                    if typ != "repository":
                        continue  # registry:catalog:* and the like are never granted
                    if authorized:
                        granted = [a for a in actions if a in ("pull", "push")]
                    elif name.startswith("private/"):
                        granted = []
                    else:
                        granted = [a for a in actions if a == "pull"]
                    if granted:
                        access.append({"type": "repository", "name": name, "actions": granted})

            now = int(time.time())
            claims = {
                "iss": args.issuer,
                "sub": account,
                "aud": service,
                "exp": now + TOKEN_TTL,
                "nbf": now - 1,
                "iat": now,
                "jti": secrets.token_hex(16),
                "access": access,
            }
            token = signer.sign(claims)
            issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            self.reply(
                200,
                {"token": token, "access_token": token, "expires_in": TOKEN_TTL, "issued_at": issued},
                account,
                access,
            )

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True, help="holds key.pem and cert.pem")
    p.add_argument("--issuer", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-file", required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()

    key = os.path.join(args.dir, "key.pem")
    if not os.path.isfile(key):
        sys.exit(f"registry-token-server: {key} is missing: script/lib/registry start writes it")
    signer = Signer(key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args, signer, threading.Lock()))
    server.daemon_threads = True
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{server.server_address[1]}\n")
    os.replace(tmp, args.ready_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
