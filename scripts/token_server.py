#!/usr/bin/env python3
"""A bearer-token server for tests: the other half of a Docker Distribution registry configured
with `auth: token:`, as Docker Hub, GHCR, Harbor and the cloud registries authenticate.

    TOKEN_SERVER_PASSWORD=P python3 scripts/token_server.py --user U --ca-out CA.pem \\
        [--port 0] [--service nnsign-test] [--issuer nnsign-test-issuer] [--log FILE] \\
        [--until-stdin-closes]

At start it makes a test CA and a signing certificate that CA issued (P-256, in memory; only
the CA's certificate is written, to --ca-out, for the registry's `rootcertbundle`), binds
127.0.0.1 (--port, 0 for a free one), and prints `listening 127.0.0.1:PORT` on stdout.

`GET /token?service=S&scope=repository:NAME:ACTIONS` (the Docker token spec; `scope` may
repeat) answers `{"token": JWT, "access_token": JWT, "expires_in": 300, "issued_at": ...}`:
- with HTTP Basic credentials equal to --user and $TOKEN_SERVER_PASSWORD, the token grants the
  asked `pull`/`push` actions on each asked repository, and nothing else;
- with no credentials, an anonymous token granting nothing (as Docker Hub answers for a private
  repository), so the registry is what refuses;
- with other credentials, 401 and a Docker-style error body;
- for a service other than --service, 400.

The JWT is what Distribution 2.8's token access controller (registry/auth/token/token.go)
accepts: ES256, its signature the raw 64-byte r||s of JWS (not DER), its header's `x5c` the
signing certificate (base64 DER) that must chain to a certificate in `rootcertbundle`; claims
`iss` (= the registry's `issuer`), `aud` (= its `service`), `sub`, `exp`, `nbf`, `iat`, `jti`,
and `access: [{type, name, actions}]`.

Each request is appended to --log as one JSON line: path, service, scopes, user (or null),
outcome ("issued", "anonymous", "refused", "bad-request") and what was granted, so a test can
tell that the registry's clients really went through here. --until-stdin-closes makes the
server exit when its standard input closes, so it cannot outlive the test that started it.
"""
import argparse
import base64
import datetime
import hmac
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

TOKEN_LIFETIME = 300
# The registry's only actions on a repository (`*` is its admin wildcard, never granted here).
ACTIONS = ("pull", "push")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_keys(ca_out):
    """A CA (written to ca_out as PEM) and a signing key with its certificate from that CA."""
    now = datetime.datetime.now(datetime.timezone.utc)
    # Go's x509 checks validity dates: a margin for a clock that differs by a little.
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)

    def cert(subject, key, issuer, issuer_key, ca):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=ca,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = cert("nnsign test token CA", ca_key, "nnsign test token CA", ca_key, True)
    signing_key = ec.generate_private_key(ec.SECP256R1())
    signing_cert = cert("nnsign test token signer", signing_key, "nnsign test token CA", ca_key, False)
    tmp = ca_out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, ca_out)
    return signing_key, signing_cert


def sign_jwt(key, cert, claims):
    header = {
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()],
    }
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def parse_scope(scope):
    """`repository:NAME:a,b` -> ("repository", NAME, [a, b]), else None."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and kind and name):
        return None
    return kind, name, [a for a in actions.split(",") if a]


def grant(scopes):
    access = []
    for scope in scopes:
        parsed = parse_scope(scope)
        if parsed is None or parsed[0] != "repository":
            continue
        kind, name, asked = parsed
        actions = [a for a in ACTIONS if a in asked]
        if actions:
            access.append({"type": kind, "name": name, "actions": actions})
    return access


class Handler(BaseHTTPRequestHandler):
    server_version = "nnsign-test-token-server"

    def log_message(self, format, *args):
        # The request log below is the record; stderr stays quiet.
        pass

    def record(self, entry):
        if self.server.log_path:
            with self.server.log_lock, open(self.server.log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def credentials(self):
        """(user, password) from the Authorization header, None if absent or not Basic."""
        value = self.headers.get("Authorization", "")
        scheme, _, encoded = value.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return ("", "")
        return (user, password) if sep else ("", "")

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        service = query.get("service", [None])[0]
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        entry = {"path": url.path, "service": service, "scopes": scopes, "user": None}
        if url.path != "/token":
            entry["outcome"] = "bad-request"
            self.record(entry)
            return self.answer(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
        if service != self.server.service:
            entry["outcome"] = "bad-request"
            self.record(entry)
            return self.answer(
                400,
                {"errors": [{"code": "UNSUPPORTED", "message": f"unknown service {service!r}"}]},
            )
        given = self.credentials()
        cfg = self.server
        if given is None and "Authorization" not in self.headers:
            entry["outcome"], access, subject = "anonymous", [], ""
        elif (
            given is not None
            and hmac.compare_digest(given[0].encode(), cfg.user.encode())
            and hmac.compare_digest(given[1].encode(), cfg.password.encode())
        ):
            entry["user"], entry["outcome"] = given[0], "issued"
            access, subject = grant(scopes), given[0]
        else:
            entry["user"], entry["outcome"] = given[0] if given else None, "refused"
            self.record(entry)
            # Distribution's own token server (contrib/token-server) answers so.
            return self.answer(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "incorrect username or password"}]},
                [("WWW-Authenticate", f'Basic realm="{cfg.service}"')],
            )
        now = int(time.time())
        claims = {
            "iss": cfg.issuer,
            "sub": subject,
            "aud": cfg.service,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = sign_jwt(cfg.signing_key, cfg.signing_cert, claims)
        entry["granted"] = access
        self.record(entry)
        issued_at = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat()
        self.answer(
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME,
                "issued_at": issued_at.replace("+00:00", "Z"),
            },
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--user", required=True)
    p.add_argument("--ca-out", required=True, help="where the CA's certificate is written (PEM)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--service", default="nnsign-test")
    p.add_argument("--issuer", default="nnsign-test-issuer")
    p.add_argument("--log", help="append one JSON line per request here")
    p.add_argument("--until-stdin-closes", action="store_true")
    args = p.parse_args()
    password = os.environ.get("TOKEN_SERVER_PASSWORD")
    if password is None:
        sys.exit("token_server.py: set TOKEN_SERVER_PASSWORD (not an argument: ps shows those)")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.user, server.password = args.user, password
    server.service, server.issuer = args.service, args.issuer
    server.log_path, server.log_lock = args.log, threading.Lock()
    server.signing_key, server.signing_cert = make_keys(args.ca_out)
    if args.until_stdin_closes:

        def watch():
            while sys.stdin.buffer.read(4096):
                pass
            os._exit(0)

        threading.Thread(target=watch, daemon=True).start()
    print(f"listening 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
