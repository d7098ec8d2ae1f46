"""Module fixtures: registries with the test images pushed by skopeo.

Import the fixtures into a test module (`from images.fixtures import ...`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import pytest

from . import build
from .registry import PASSWORD, USER, Registry, TokenServer, missing_tools
from .tarballs import entry, tar_bytes


@dataclass
class Pushed:
    registry: Registry
    layouts: str  # the OCI layouts the images came from

    @property
    def host(self) -> str:
        return self.registry.host

    def ref(self, name: str) -> str:
        return f"{self.host}/{name}"


def _need_tools() -> None:
    missing = missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: apt-get install docker-registry umoci skopeo apache2-utils")


def _hand_made(path: str) -> None:
    """zstd, a two-platform index, an index without this platform, and the victims of tampering."""
    layout = build.Layout(path)
    base = build.busybox_tar()
    zstd = layout.image([(base, build.OCI_LAYER_ZSTD),
                         (tar_bytes([entry("data/zstd.txt", data=b"squeezed\n")]), build.OCI_LAYER_ZSTD)])
    layout.tag("zstd", zstd)
    amd64 = layout.image([(base, build.OCI_LAYER_GZIP)], "amd64", {"Cmd": ["/bin/sh"], "Env": ["ARCH=amd64"]})
    arm64 = layout.image([(base, build.OCI_LAYER_GZIP)], "arm64", {"Cmd": ["/bin/sh"], "Env": ["ARCH=arm64"]})
    s390x = layout.image([(base, build.OCI_LAYER_GZIP)], "s390x", {"Cmd": ["/bin/sh"]})
    layout.tag("multi", layout.multi({"arm64": arm64, "amd64": amd64}))
    layout.tag("foreign", layout.multi({"arm64": arm64, "s390x": s390x}))
    for name in ("victim-layer", "victim-manifest", "victim-size"):
        layout.tag(name, layout.image([(tar_bytes([entry(f"{name}.txt", data=os.urandom(4096))]),
                                        build.OCI_LAYER_GZIP)]))


@pytest.fixture(scope="module")
def pushed():
    """A no-auth registry holding every test image."""
    _need_tools()
    layouts = tempfile.mkdtemp(prefix="clab-layouts-")
    registry = Registry("none")
    try:
        umoci = os.path.join(layouts, "umoci")
        build.umoci_busybox(umoci, layouts)
        hand = os.path.join(layouts, "hand")
        _hand_made(hand)
        dest = f"docker://{registry.host}"
        build.copy(f"oci:{umoci}:busybox", f"{dest}/busybox:1.35")
        build.copy(f"oci:{umoci}:busybox", f"{dest}/busybox-v2s2:1.35", "--format", "v2s2")
        build.copy(f"oci:{umoci}:layered", f"{dest}/layered:3")
        build.copy(f"oci:{hand}:zstd", f"{dest}/zstd:1")
        build.copy(f"oci:{hand}:multi", f"{dest}/multi:latest", "--all")
        build.copy(f"oci:{hand}:multi", f"{dest}/multi-docker:latest", "--all", "--format", "v2s2")
        build.copy(f"oci:{hand}:foreign", f"{dest}/foreign:latest", "--all")
        for name in ("victim-layer", "victim-manifest", "victim-size"):
            build.copy(f"oci:{hand}:{name}", f"{dest}/{name}:1")
        yield Pushed(registry, layouts)
    finally:
        registry.stop()
        shutil.rmtree(layouts, ignore_errors=True)


@pytest.fixture(scope="module")
def basic_registry(pushed):
    """An htpasswd registry holding busybox:1.35 (user tester, password s3cret)."""
    registry = Registry("htpasswd")
    try:
        build.copy(f"oci:{pushed.layouts}/umoci:busybox", f"docker://{registry.host}/busybox:1.35",
                   "--dest-creds", f"{USER}:{PASSWORD}")
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def token_registry(pushed):
    """A registry behind Bearer tokens from a token server on a thread; (registry, token server)."""
    try:
        import cryptography  # noqa: F401
        import jwt  # noqa: F401
    except ImportError:
        pytest.skip("the token tests need PyJWT and cryptography (pip install pyjwt cryptography)")
    tokens = TokenServer()
    registry = None
    try:
        registry = Registry("token", realm=tokens.realm, cert=tokens.cert_path)
        for name in ("busybox:1.35", "other:1"):
            build.copy(f"oci:{pushed.layouts}/umoci:busybox", f"docker://{registry.host}/{name}",
                       "--dest-creds", f"{USER}:{PASSWORD}")
        yield registry, tokens
    finally:
        if registry:
            registry.stop()
        tokens.stop()


def registry_processes() -> set[int]:
    """docker-registry processes whose config lies in a test registry dir."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if cmd.startswith(b"docker-registry\0serve") and b"clab-registry-" in cmd:
            found.add(int(pid))
    return found
