"""Auth (Basic, Bearer tokens), login/logout, push, and redirects, against real registries.

skopeo reads back what the lab pushed (`skopeo inspect`, `skopeo copy` to an
OCI layout), so the push is checked by another implementation.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from conftest import needs_root, our_mounts
from containerlab_magic.runtime.images import ImageStore
from containerlab_magic.runtime.images.pull import pull
from containerlab_magic.runtime.images.push import login, logout, push
from containerlab_magic.runtime.images.registry import Registry, RegistryError
from images.fixtures import basic_registry, pushed, registry_processes, token_registry  # noqa: F401
from images.registry import PASSWORD, USER, no_proxy_env

pytestmark = needs_root


@pytest.fixture(scope="module", autouse=True)
def module_leaks():
    before_mounts, before_registries = our_mounts(), registry_processes()
    yield
    assert our_mounts() == before_mounts
    assert registry_processes() == before_registries, "a test registry was left running"


@pytest.fixture
def store(tmp_path):
    images = ImageStore(str(tmp_path / "data"))
    yield images
    if os.path.isdir(images.oci.blobs.tmp):
        assert os.listdir(images.oci.blobs.tmp) == []


@pytest.fixture(autouse=True)
def auth_file(tmp_path, monkeypatch):
    """Credentials of this test only: our file and docker's both under tmp_path."""
    path = tmp_path / "auth" / "auth.json"
    monkeypatch.setenv("CONTAINERLAB_AUTH_FILE", str(path))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return path


def test_basic_auth_without_credentials_says_to_log_in(store, basic_registry):
    with pytest.raises(RegistryError, match=rf"registry {basic_registry.host} wants a user name and password "
                                            rf"\(401\): run `containerlab-magic login {basic_registry.host}`"):
        pull(store.oci, f"{basic_registry.host}/busybox:1.35")


def test_login_checks_and_keeps_credentials_0600_then_logout(store, basic_registry, auth_file):
    with pytest.raises(RegistryError, match="refused user 'tester'"):
        login(basic_registry.host, USER, "wrong")
    assert not auth_file.exists()
    login(basic_registry.host, USER, PASSWORD)
    assert oct(os.stat(auth_file).st_mode & 0o777) == "0o600"
    entry = json.loads(auth_file.read_text())["auths"][basic_registry.host]
    assert base64.b64decode(entry["auth"]).decode() == f"{USER}:{PASSWORD}"
    pull(store.oci, f"{basic_registry.host}/busybox:1.35")
    logout(basic_registry.host)
    assert json.loads(auth_file.read_text())["auths"] == {}


def test_docker_config_json_is_read(store, basic_registry, tmp_path):
    os.makedirs(tmp_path / "docker")
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": token}}}))
    pull(store.oci, f"{basic_registry.host}/busybox:1.35")


def test_bearer_tokens_anonymous_pull_cached_per_scope(store, token_registry):
    registry, tokens = token_registry
    tokens.requests.clear()
    with Registry(registry.host) as reg:
        pull(store.oci, f"{registry.host}/busybox:1.35", registry=reg)
        pull(store.oci, f"{registry.host}/other:1", registry=reg)  # a second repository: a second token
        pull(store.oci, f"{registry.host}/busybox:1.35", registry=reg)  # cached
    assert [r["scopes"] for r in tokens.requests] == [["repository:busybox:pull"], ["repository:other:pull"]]
    assert all(r["user"] is None for r in tokens.requests)


def test_bearer_push_needs_credentials(store, token_registry, pushed):
    registry, tokens = token_registry
    pull(store.oci, pushed.ref("busybox:1.35"))
    with pytest.raises(RegistryError, match=f"registry {registry.host} refused anonymous access .*containerlab-magic login"):
        push(store.oci, pushed.ref("busybox:1.35"), f"{registry.host}/pushed:anon")
    login(registry.host, USER, PASSWORD)
    tokens.requests.clear()
    push(store.oci, pushed.ref("busybox:1.35"), f"{registry.host}/pushed:1")
    assert tokens.requests and all(r["user"] == USER for r in tokens.requests)
    out = _skopeo("inspect", f"docker://{registry.host}/pushed:1", "--creds", f"{USER}:{PASSWORD}")
    assert out["Digest"] == store.oci.refs()[pushed.ref("busybox:1.35")]


def _skopeo(*argv: str) -> dict:
    out = subprocess.run(["skopeo", *argv, "--tls-verify=false"], check=True, capture_output=True, text=True,
                         env=no_proxy_env())
    return json.loads(out.stdout)


def test_push_chunked_to_another_registry_reads_back_with_skopeo(store, pushed, basic_registry, tmp_path):
    pull(store.oci, pushed.ref("layered:3"))
    login(basic_registry.host, USER, PASSWORD)
    events = []
    dest, digest = push(store.oci, pushed.ref("layered:3"), f"{basic_registry.host}/team/layered:v1",
                        chunk=256 << 10, progress=lambda *e: events.append(e))
    assert digest == store.oci.refs()[pushed.ref("layered:3")]
    uploads = [e for e in events if e[3] == "uploading"]
    assert len(uploads) > 4  # the busybox layer alone is several 256 KiB chunks
    info = _skopeo("inspect", f"docker://{dest}", "--creds", f"{USER}:{PASSWORD}")
    assert info["Digest"] == digest and len(info["Layers"]) == 3
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--src-creds", f"{USER}:{PASSWORD}",
                    f"docker://{dest}", f"oci:{tmp_path}/layout:v1"], check=True, capture_output=True,
                   env=no_proxy_env())
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    # pushing again sends nothing: every blob is there
    events.clear()
    push(store.oci, f"{basic_registry.host}/team/layered:v1", progress=lambda *e: events.append(e))
    assert {e[3] for e in events} == {"exists"}


def test_push_mounts_blobs_across_repositories(store, pushed):
    pull(store.oci, pushed.ref("busybox:1.35"))
    events = []
    push(store.oci, pushed.ref("busybox:1.35"), pushed.ref("mounted/busybox:1.35"),
         progress=lambda *e: events.append(e))
    assert {e[3] for e in events} == {"mounted"}
    store2 = ImageStore(os.path.join(os.path.dirname(store.root), "second"))
    _, digest = pull(store2.oci, pushed.ref("mounted/busybox:1.35"))
    assert digest == store.oci.refs()[pushed.ref("busybox:1.35")]


class _Front:
    """A registry front on 127.0.0.1 that wants Basic auth and sends blob GETs to a storage
    server on another port (another origin), which records what headers it was sent."""

    def __init__(self, upstream: str):
        self.seen_by_storage: list[str | None] = []
        front, storage = self, self

        class Storage(BaseHTTPRequestHandler):
            def do_GET(self):
                storage.seen_by_storage.append(self.headers.get("Authorization"))
                _relay(self, httpx.get(f"http://{upstream}{self.path}", trust_env=False))

            def log_message(self, *a):
                pass

        class Front(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.headers.get("Authorization") != "Basic " + base64.b64encode(
                        f"{USER}:{PASSWORD}".encode()).decode():
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="front"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif "/blobs/" in self.path:
                    self.send_response(307)
                    self.send_header("Location", f"http://127.0.0.1:{front.storage.server_address[1]}{self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    _relay(self, httpx.get(f"http://{upstream}{self.path}", trust_env=False,
                                           headers={"Accept": self.headers.get("Accept", "")}))

            def log_message(self, *a):
                pass

        self.storage = ThreadingHTTPServer(("127.0.0.1", 0), Storage)
        self.front = ThreadingHTTPServer(("127.0.0.1", 0), Front)
        self.host = f"127.0.0.1:{self.front.server_address[1]}"
        for server in (self.storage, self.front):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self):
        for server in (self.storage, self.front):
            server.shutdown()
            server.server_close()


def _relay(handler, response: httpx.Response) -> None:
    handler.send_response(response.status_code)
    for key in ("Content-Type", "Docker-Content-Digest"):
        if key in response.headers:
            handler.send_header(key, response.headers[key])
    handler.send_header("Content-Length", str(len(response.content)))
    handler.end_headers()
    handler.wfile.write(response.content)


def test_a_redirect_to_another_host_gets_no_credentials(store, pushed):
    front = _Front(pushed.host)
    try:
        with Registry(front.host, credentials=(USER, PASSWORD)) as reg:
            pull(store.oci, f"{front.host}/busybox:1.35", registry=reg)
    finally:
        front.stop()
    assert front.seen_by_storage and front.seen_by_storage == [None] * len(front.seen_by_storage)
    assert store.resolve(f"{front.host}/busybox:1.35").layers


def test_403_says_which_access_is_forbidden(store):
    class Deny(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"errors": [{"code": "DENIED", "message": "requested access is denied"}]}).encode()
            self.send_response(200 if self.path == "/v2/" else 403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(RegistryError, match=rf"registry {host} forbids anonymous access to pull manifest "
                                                r"private:1 \(403\)"):
            pull(store.oci, f"{host}/private:1")
    finally:
        server.shutdown()
        server.server_close()
