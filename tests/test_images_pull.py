"""Pull from a real registry (Debian's docker-registry on 127.0.0.1) into the store.

Images are built offline and pushed with skopeo (tests/images/fixtures.py):
OCI manifest, Docker v2s2, a 3-layer image with whiteouts, zstd layers, an
OCI index and a Docker list with two platforms.  Tampering is done on the
registry's own storage, so the bytes served really are wrong.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import needs_root, our_mounts
from containerlab_magic.runtime.errors import NotFound
from containerlab_magic.runtime.images import ImageStore
from containerlab_magic.runtime.images.blobs import DigestMismatch
from containerlab_magic.runtime.images.config import BadImage
from containerlab_magic.runtime.images.pull import pull
from containerlab_magic.runtime.images.registry import Registry, RegistryError
from images.fixtures import pushed, registry_processes  # noqa: F401  (fixtures)
from images.registry import no_proxy_env

pytestmark = needs_root


@pytest.fixture(scope="module", autouse=True)
def module_leaks():
    before_mounts, before_registries = our_mounts(), registry_processes()
    yield
    assert our_mounts() == before_mounts
    assert registry_processes() == before_registries, "a test registry was left running"


@pytest.fixture
def store(tmp_path):
    """A fresh store per test; after it, nothing half-written may remain in tmp/."""
    images = ImageStore(str(tmp_path))
    yield images
    if os.path.isdir(images.oci.blobs.tmp):
        assert os.listdir(images.oci.blobs.tmp) == [], "half-written files left in the store"


def layer_dirs(store) -> list[str]:
    return sorted(os.listdir(store.oci.layers))


def test_pull_oci_busybox_gives_layers_and_config(store, pushed):
    ref, digest = pull(store.oci, pushed.ref("busybox:1.35"))
    assert str(ref) == pushed.ref("busybox:1.35")
    image = store.resolve(pushed.ref("busybox:1.35"))
    assert image.digest == digest and len(image.layers) == 1
    assert os.path.isfile(os.path.join(image.layers[0], "bin/busybox"))
    config = image.config
    assert config.cmd == ("/bin/sh",) and ("GREETING", "hello from the image") in config.env
    assert (config.workdir, config.exposed_ports, config.stop_signal) == ("/data", ("8080/tcp",), "SIGINT")
    assert dict(image.env)["PATH"] == "/bin"
    for blob in store.oci.blobs.all():  # every stored blob hashes to its name
        with open(store.oci.blobs.path(blob), "rb") as f:
            assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == blob


def test_docker_v2s2_shares_the_unpacked_layer(store, pushed):
    pull(store.oci, pushed.ref("busybox:1.35"))
    events = []
    pull(store.oci, pushed.ref("busybox-v2s2:1.35"), progress=lambda *e: events.append(e))
    record = store.oci.record(store.oci.refs()[pushed.ref("busybox-v2s2:1.35")])
    assert record.manifest.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert len(layer_dirs(store)) == 1
    assert [e[3] for e in events] == ["waiting", "exists"]  # nothing downloaded again


def _merged(image, work: str) -> str:
    """`find` of the image's overlay (mounted in a private mount namespace), with modes."""
    script = (f"set -e; d=$(mktemp -d -p {work}); mkdir $d/u $d/w $d/m; "
              f"mount -t overlay overlay -o lowerdir={':'.join(image.layers)},upperdir=$d/u,workdir=$d/w $d/m; "
              f"cd $d/m/data && find . -printf '%p %m\\n' | sort; cd /; umount $d/m; rm -rf $d")
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, check=True).stdout


def test_three_layers_with_whiteouts_opaque_dirs_hard_links_and_setuid(store, pushed):
    pull(store.oci, pushed.ref("layered:3"))
    image = store.resolve(pushed.ref("layered:3"))
    assert len(image.layers) == 3
    assert os.path.isfile(os.path.join(image.layers[-1], "bin/busybox"))  # bottom last
    listing = _merged(image, store.oci.blobs.tmp).splitlines()
    # old.txt whited out (its hard link stays), dir opaque (a, b gone), keep whited out, setuid kept
    assert listing == [". 755", "./dir 755", "./dir/z 644", "./hard 644", "./suid 4755"]


@pytest.mark.parametrize("name", ["multi:latest", "multi-docker:latest"])
def test_an_index_resolves_to_this_platform(store, pushed, name):
    pull(store.oci, pushed.ref(name))
    image = store.resolve(pushed.ref(name))
    assert image.config.architecture == "amd64" and dict(image.env)["ARCH"] == "amd64"


def test_zstd_layers(store, pushed):
    pull(store.oci, pushed.ref("zstd:1"))
    image = store.resolve(pushed.ref("zstd:1"))
    with open(os.path.join(image.layers[0], "data/zstd.txt")) as f:
        assert f.read() == "squeezed\n"


def test_no_matching_platform_is_one_line_and_leaves_nothing(store, pushed):
    with pytest.raises(BadImage, match=r"no image for linux/amd64 in this index \(it has linux/arm64, linux/s390x\)"):
        pull(store.oci, pushed.ref("foreign:latest"))
    assert store.oci.refs() == {} and store.oci.blobs.all() == set()


def test_unknown_tag_says_manifest_unknown(store, pushed):
    with pytest.raises(RegistryError, match="not found on .*MANIFEST_UNKNOWN.*check the name and the tag"):
        pull(store.oci, pushed.ref("busybox:9.99"))
    with pytest.raises(NotFound, match="pull it first"):
        store.resolve(pushed.ref("busybox:9.99"))


def _registry_blob(pushed, digest: str) -> str:
    hexd = digest.split(":")[1]
    return glob.glob(f"{pushed.registry.dir}/data/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data")[0]


def _tamper(path: str) -> None:
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0xFF
        f.seek(0)
        f.write(data)


def test_a_tampered_layer_is_refused_and_nothing_kept(store, pushed):
    with Registry(pushed.host) as reg:
        data, _, _ = reg.manifest("victim-layer", "1")
    layer = json.loads(data)["layers"][0]["digest"]
    _tamper(_registry_blob(pushed, layer))
    with pytest.raises(DigestMismatch, match=f"blob {layer} .*refused, nothing kept"):
        pull(store.oci, pushed.ref("victim-layer:1"))
    assert store.oci.refs() == {} and layer not in store.oci.blobs.all() and layer_dirs(store) == []


def test_a_layer_longer_than_its_descriptor_is_refused(store, pushed):
    with Registry(pushed.host) as reg:
        data, _, _ = reg.manifest("victim-size", "1")
    layer = json.loads(data)["layers"][0]
    with open(_registry_blob(pushed, layer["digest"]), "ab") as f:
        f.write(b"\0" * 4096)
    with pytest.raises(DigestMismatch, match=f"blob {layer['digest']} is longer than its {layer['size']} bytes"):
        pull(store.oci, pushed.ref("victim-size:1"))
    assert store.oci.refs() == {} and store.oci.blobs.all() == set() and layer_dirs(store) == []


def test_a_tampered_manifest_is_refused(store, pushed):
    with Registry(pushed.host) as reg:
        _, _, digest = reg.manifest("victim-manifest", "1")
    _tamper(_registry_blob(pushed, digest))
    with pytest.raises(DigestMismatch, match=f"hashes to sha256:.*not {digest}: refused"):
        pull(store.oci, pushed.ref("victim-manifest:1"))
    assert store.oci.refs() == {} and store.oci.blobs.all() == set()


def test_an_interrupted_download_resumes_with_a_range_request(store, pushed):
    with Registry(pushed.host) as reg:
        data, _, _ = reg.manifest("busybox", "1.35")
    layer = json.loads(data)["layers"][0]
    with open(_registry_blob(pushed, layer["digest"]), "rb") as f:
        half = f.read(layer["size"] // 2)
    with open(store.oci.blobs.part(layer["digest"]), "wb") as f:
        f.write(half)
    ranges = []
    reg = Registry(pushed.host)
    reg.http.event_hooks["request"].append(lambda request: ranges.append(request.headers.get("range")))
    with reg:
        pull(store.oci, pushed.ref("busybox:1.35"), registry=reg)
    assert f"bytes={len(half)}-" in ranges
    assert store.resolve(pushed.ref("busybox:1.35")).layers


def test_two_pulls_of_one_image_at_once(store, pushed):
    errors = []

    def one():
        try:
            pull(store.oci, pushed.ref("layered:3"))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(layer_dirs(store)) == 3
    # and two processes, which is what two notebooks are
    code = ("import sys; from containerlab_magic.runtime.images import ImageStore; "
            "from containerlab_magic.runtime.images.pull import pull; "
            f"pull(ImageStore(sys.argv[1]).oci, {pushed.ref('zstd:1')!r})")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    procs = [subprocess.Popen([sys.executable, "-c", code, os.path.dirname(store.root)], env=env, cwd="/")
             for _ in range(2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    assert len(layer_dirs(store)) == 5


def test_rmi_and_prune_free_exactly_what_nothing_uses(store, pushed):
    pull(store.oci, pushed.ref("busybox:1.35"))
    pull(store.oci, pushed.ref("layered:3"))
    assert len(layer_dirs(store)) == 3
    store.oci.set_ref(pushed.ref("layered:3"), None)
    freed = store.oci.prune()
    assert (freed["layers"], freed["blobs"]) == (2, 4)  # 2 layers; 2 layer blobs, its config, its manifest
    assert len(layer_dirs(store)) == 1 and store.resolve(pushed.ref("busybox:1.35")).layers
    store.oci.set_ref(pushed.ref("busybox:1.35"), None)
    store.oci.prune()
    assert layer_dirs(store) == [] and store.oci.blobs.all() == set()


def test_prune_keeps_a_layer_a_live_overlay_uses(store, pushed):
    pull(store.oci, pushed.ref("busybox:1.35"))
    image = store.resolve(pushed.ref("busybox:1.35"))
    store.oci.set_ref(pushed.ref("busybox:1.35"), None)
    tmp = store.oci.blobs.tmp
    script = (f"set -e; d=$(mktemp -d -p {tmp}); mkdir $d/u $d/w $d/m; "
              f"mount -t overlay overlay -o lowerdir={image.layers[0]},upperdir=$d/u,workdir=$d/w $d/m; "
              "echo ready; read line; umount $d/m; rm -rf $d")
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        os.rename(tmp, tmp + ".held")  # prune empties tmp/; the holder's dir lives there
        os.mkdir(tmp, 0o700)
        freed = store.oci.prune()
        assert freed["layers"] == 0 and os.path.isdir(image.layers[0])
    finally:
        holder.communicate("done\n", timeout=10)
        os.rmdir(tmp)
        os.rename(tmp + ".held", tmp)
    assert store.oci.prune()["layers"] == 1 and layer_dirs(store) == []


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, pushed):
    data = tmp_path / "small"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(data)], check=True)
    try:
        store = ImageStore(str(data))
        with pytest.raises(Exception, match="the disk holding .* is full: free space"):
            pull(store.oci, pushed.ref("busybox:1.35"))
        assert os.listdir(store.oci.blobs.tmp) == [] and store.oci.refs() == {}
        assert store.oci.blobs.all() == set() and layer_dirs(store) == []
    finally:
        subprocess.run(["umount", str(data)], check=True)


def test_an_unknown_host_is_one_line(tmp_path):
    """In an empty network namespace (no packet leaves it) the name cannot resolve."""
    code = ("import sys; from containerlab_magic.runtime.images import ImageStore; "
            "from containerlab_magic.runtime.images.pull import pull\n"
            "try:\n pull(ImageStore(sys.argv[1]).oci, 'registry.example.invalid:5000/x:1')\n"
            "except Exception as e:\n print(type(e).__name__, e)")
    out = subprocess.run(["unshare", "-n", sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, env=dict(no_proxy_env(), PYTHONPATH=os.getcwd()), cwd="/", timeout=60)
    assert out.stdout.strip() == ("RegistryError unknown registry host 'registry.example.invalid:5000': the name "
                                  "does not resolve (check the image name, or set CONTAINERLAB_REGISTRY)"), out.stderr


@pytest.mark.parametrize("host,plain", [("registry.example.invalid", False), ("127.0.0.5:5000", True),
                                        ("localhost:5000", True), ("[::1]:5000", True), ("10.0.0.1:5000", False)])
def test_plain_http_only_for_loopback(host, plain, monkeypatch):
    monkeypatch.delenv("CONTAINERLAB_INSECURE_REGISTRIES", raising=False)
    with Registry(host) as reg:
        assert reg.plain_ok is plain
    monkeypatch.setenv("CONTAINERLAB_INSECURE_REGISTRIES", f"other:1,{host}")
    with Registry(host) as reg:
        assert reg.plain_ok


class _Flaky:
    """A front of the test registry that breaks off every big blob's first download half-way
    (Content-Length says all, half is sent, the connection closes), and honours Range."""

    def __init__(self, upstream: str):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import httpx

        self.ranges: list[str] = []
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
                r = httpx.get(f"http://{upstream}{self.path}", headers=headers, trust_env=False)
                broken = ("/blobs/" in self.path and "range" not in {k.lower() for k in headers}
                          and len(r.content) > 100_000)  # the busybox layer, not configs
                if "range" in {k.lower() for k in headers}:
                    flaky.ranges.append(self.headers["Range"])
                self.send_response(r.status_code)
                for key in ("Content-Type", "Docker-Content-Digest", "Content-Range"):
                    if key in r.headers:
                        self.send_header(key, r.headers[key])
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content[: len(r.content) // 2] if broken else r.content)
                if broken:
                    self.close_connection = True

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_download_that_breaks_off_resumes_within_the_pull(store, pushed):
    flaky = _Flaky(pushed.host)
    try:
        events = []
        pull(store.oci, f"{flaky.host}/layered:3", progress=lambda *e: events.append(e))
    finally:
        flaky.stop()
    assert len(flaky.ranges) == 1 and flaky.ranges[0].startswith("bytes=") and flaky.ranges[0] != "bytes=0-"
    assert len(store.resolve(f"{flaky.host}/layered:3").layers) == 3
    assert {e[3] for e in events} >= {"downloading", "unpacking", "done"}


def test_prune_waits_for_a_pull_in_progress(store, pushed):
    started, errors = threading.Event(), []

    def progress(digest, done, total, status):
        if status == "downloading":
            started.set()

    def pulling():
        try:
            pull(store.oci, pushed.ref("busybox:1.35"), progress=progress)
        except Exception as e:  # reported below
            errors.append(e)

    thread = threading.Thread(target=pulling)
    thread.start()
    assert started.wait(30)
    freed = store.oci.prune()  # blocks on the store lock until the pull has named its image
    named_when_pruned = pushed.ref("busybox:1.35") in store.oci.refs()
    thread.join(30)
    assert errors == [] and named_when_pruned and freed["layers"] == 0 and freed["blobs"] == 0
    assert store.resolve(pushed.ref("busybox:1.35")).layers
