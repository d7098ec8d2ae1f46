"""Test images, built offline and pushed with skopeo.

- busybox: a rootfs from the host's static /bin/busybox, packed by umoci
  (unpack -> copy -> repack, never `umoci insert`: see the notes).
- layered: busybox + two hand-made layers added with `umoci raw add-layer`:
  files, a hard link and a setuid file, then whiteouts and an opaque dir.
- zstd, multi-platform index: written as OCI layouts here (neither umoci nor
  skopeo 1.9 makes them), then pushed with `skopeo copy [--all]`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess

from .tarballs import entry, tar_bytes

OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def sh(*argv: str) -> str:
    from .registry import no_proxy_env
    return subprocess.run(argv, check=True, capture_output=True, text=True, cwd="/", env=no_proxy_env()).stdout


def busybox_rootfs(root: str) -> None:
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev", "data"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    subprocess.run(["cp", "/bin/busybox", os.path.join(root, "bin/busybox")], check=True)
    for applet in sh("/bin/busybox", "--list").split():
        if applet != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", applet))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    with open(os.path.join(root, "etc/group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")


def umoci_busybox(layout: str, work: str) -> None:
    """`layout:busybox` (1 layer) and `layout:layered` (3 layers) with umoci."""
    image = f"{layout}:busybox"
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", image)
    bundle = os.path.join(work, "bundle")
    sh("umoci", "unpack", "--image", image, bundle)
    busybox_rootfs(os.path.join(bundle, "rootfs"))
    sh("umoci", "repack", "--image", image, bundle)
    sh("rm", "-rf", bundle)
    sh("umoci", "config", "--image", image, "--config.cmd", "/bin/sh", "--config.env", "PATH=/bin",
       "--config.env", "GREETING=hello from the image", "--config.workingdir", "/data",
       "--config.exposedports", "8080/tcp", "--config.stopsignal", "SIGINT", "--os", "linux",
       "--architecture", "amd64")
    layer2 = tar_bytes([entry("data/", "dir"), entry("data/old.txt", data=b"old\n"),
                        entry("data/dir/a", data=b"a\n"), entry("data/dir/b", data=b"b\n"),
                        entry("data/keep/k", data=b"k\n"), entry("data/hard", "hardlink", link="data/old.txt"),
                        entry("data/suid", data=b"#!/bin/sh\n", mode=0o4755)])
    layer3 = tar_bytes([entry("data/", "dir"), entry("data/.wh.old.txt", mode=0),
                        entry("data/dir/.wh..wh..opq", mode=0), entry("data/dir/", "dir"),
                        entry("data/dir/z", data=b"z\n"), entry("data/.wh.keep", mode=0)])
    tag = "busybox"
    for i, layer in enumerate((layer2, layer3), 2):
        path = os.path.join(work, f"layer{i}.tar")
        with open(path, "wb") as f:
            f.write(layer)
        sh("umoci", "raw", "add-layer", "--image", f"{layout}:{tag}", "--tag", "layered",
           "--history.created_by", f"hand-made layer {i}", path)
        tag = "layered"
    sh("umoci", "gc", "--layout", layout)


class Layout:
    """An OCI image layout written by hand (image-spec image-layout.md)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.index: list[dict] = []

    def blob(self, data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.path, "blobs", "sha256", digest[7:]), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(self, layers: list[tuple[bytes, str]], arch: str = "amd64", config: dict | None = None) -> dict:
        """layers: (uncompressed tar, layer media type), bottom first; returns the manifest descriptor."""
        descs, diff_ids = [], []
        for raw, media_type in layers:
            diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
            packed = raw
            if media_type == OCI_LAYER_GZIP:
                packed = gzip.compress(raw, compresslevel=1)
            elif media_type == OCI_LAYER_ZSTD:
                import zstandard
                packed = zstandard.ZstdCompressor().compress(raw)
            descs.append(self.blob(packed, media_type))
        doc = {"architecture": arch, "os": "linux", "config": config or {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
               "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        cfg = self.blob(json.dumps(doc).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": cfg, "layers": descs}
        return self.blob(json.dumps(manifest).encode(), manifest["mediaType"])

    def tag(self, name: str, desc: dict) -> None:
        self.index.append(dict(desc, annotations={"org.opencontainers.image.ref.name": name}))
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.index}, f)

    def multi(self, platforms: dict[str, dict]) -> dict:
        manifests = [dict(desc, platform={"os": "linux", "architecture": arch}) for arch, desc in platforms.items()]
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
        return self.blob(json.dumps(index).encode(), index["mediaType"])


def busybox_tar() -> bytes:
    """The busybox rootfs as one uncompressed layer (for hand-made layouts)."""
    import io
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        busybox_rootfs(tmp)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(tmp, arcname=".")
        return buf.getvalue()


def copy(src: str, dest: str, *extra: str) -> None:
    """skopeo copy to a plain-HTTP loopback registry (creds as --dest-creds in extra)."""
    sh("skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra, src, dest)
