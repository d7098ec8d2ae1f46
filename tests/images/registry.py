"""A real registry on 127.0.0.1 for the tests: Debian's docker-registry (distribution 2.8).

Three modes: no auth, htpasswd (Basic), and token (Bearer) with a token
server run here on a thread: RS256 JWTs signed by a self-signed certificate
the registry trusts (distribution docs/spec/auth/jwt.md), made with PyJWT and
cryptography.  Each registry is a child process stopped by its PID.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx

USER, PASSWORD = "tester", "s3cret"
SERVICE, ISSUER = "clab-registry", "clab-issuer"


def no_proxy_env() -> dict:
    """The environment without proxies: test traffic stays on 127.0.0.1."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_tools() -> list[str]:
    return [t for t in ("docker-registry", "umoci", "skopeo", "htpasswd") if not shutil.which(t)]


class Registry:
    """`docker-registry serve` on a free loopback port, with its own storage."""

    def __init__(self, auth: str = "none", realm: str = "", cert: str = ""):
        self.dir = tempfile.mkdtemp(prefix=f"clab-registry-{auth}-")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        lines = ["version: 0.1", "log: {level: warn}", "storage:",
                 f"  filesystem: {{rootdirectory: {self.dir}/data}}", "  delete: {enabled: true}",
                 f"http: {{addr: '{self.host}', secret: clab-test}}"]
        if auth == "htpasswd":
            subprocess.run(["htpasswd", "-Bbc", f"{self.dir}/htpasswd", USER, PASSWORD], check=True,
                           capture_output=True)
            lines += ["auth:", f"  htpasswd: {{realm: clab, path: {self.dir}/htpasswd}}"]
        elif auth == "token":
            lines += ["auth:", f"  token: {{realm: '{realm}', service: {SERVICE}, issuer: {ISSUER}, "
                               f"rootcertbundle: {cert}}}"]
        with open(f"{self.dir}/config.yml", "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(f"{self.dir}/registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", f"{self.dir}/config.yml"], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd="/", start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://{self.host}/v2/", timeout=1, trust_env=False)
                break
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    with open(self.log.name) as f:
                        log = f.read()[-500:]
                    self.stop()
                    raise RuntimeError(f"docker-registry did not start: {log}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class TokenServer:
    """Docker's token protocol: GET ?service=&scope= -> {"token": JWT}; Basic creds grant push."""

    def __init__(self):
        import jwt  # noqa: F401  (checked by the fixture: skip token tests without it)
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.dir = tempfile.mkdtemp(prefix="clab-token-")
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clab-token-issuer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2)).sign(self.key, hashes.SHA256()))
        self.cert_path = os.path.join(self.dir, "cert.pem")
        with open(self.cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.answer(self)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.http.server_address[1]}/token"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, handler) -> None:
        import jwt

        query = parse_qs(urlparse(handler.path).query)
        creds = handler.headers.get("Authorization", "")
        user = None
        if creds.startswith("Basic "):
            name, _, password = base64.b64decode(creds[6:]).decode().partition(":")
            if (name, password) != (USER, PASSWORD):
                handler.send_response(401)
                handler.end_headers()
                return
            user = name
        access = []
        for scope in query.get("scope", []):
            kind, repo, actions = scope.split(":")
            allowed = [a for a in actions.split(",") if a == "pull" or user]
            access.append({"type": kind, "name": repo, "actions": allowed})
        self.requests.append({"user": user, "scopes": query.get("scope", [])})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": query.get("service", [""])[0], "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": [self.x5c]})
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)
