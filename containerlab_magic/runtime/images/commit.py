"""commit: a directory of changes (a container's overlay upper layer) becomes a new image layer.

The reverse of layers.py: overlay's whiteouts go back to OCI's (a char device
0/0 NAME -> an empty `.wh.NAME`; a directory with the `overlay.opaque` xattr
-> its `.wh..wh..opq`), hard links stay hard links, devices are left out
(as when unpacking), and `security.capability` travels as a PAX xattr.  The
tar is reproducible (sorted names, no user or group names, gzip with no
timestamp), so the same changes give the same digest.  The new layer is
stored, unpacked by the same safe unpacker (which checks its diff_id), and
a config and manifest are written on top of the parent's: the building
block of `commit` (and of each RUN step of a later `build`).
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import hashlib
import json
import os
import stat
import tarfile
import tempfile

from .. import faults
from .blobs import full_disk
from .catalog import find
from .manifest import OCI_MANIFEST
from .oci import OciStore
from .reference import Reference, parse

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


class _Hashing:
    """A write-only file that hashes and counts what passes through to `raw`."""

    def __init__(self, raw):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self):
        self.raw.flush()


def _opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        with contextlib.suppress(OSError):
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
    return False


def _info(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    info.uname = info.gname = ""
    return info


def _entries(root: str):
    """(tar name, path, lstat) of every entry below root, parents first, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        names = sorted(dirnames + [f for f in filenames])
        for name in names:
            path = os.path.join(dirpath, name)
            arc = name if rel == "." else f"{rel}/{name}"
            yield arc, path, os.lstat(path)


def write_layer(source: str, out) -> tuple[str, str, int]:
    """Tar+gzip `source` into the binary file `out`; returns (digest, diff_id, size)."""
    packed = _Hashing(out)
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=6) as gz:
        plain = _Hashing(gz)
        with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            links: dict[tuple[int, int], str] = {}
            for arc, path, st in _entries(source):
                _add(tar, arc, path, st, links)
    return "sha256:" + packed.sha.hexdigest(), "sha256:" + plain.sha.hexdigest(), packed.size


def _add(tar: tarfile.TarFile, arc: str, path: str, st: os.stat_result, links: dict) -> None:
    mode = st.st_mode
    if stat.S_ISCHR(mode) and st.st_rdev == 0:  # overlay's whiteout
        parent, _, base = arc.rpartition("/")
        info = _info((parent + "/" if parent else "") + ".wh." + base, st, tarfile.REGTYPE)
        info.mode = 0
        tar.addfile(info)
    elif stat.S_ISDIR(mode):
        tar.addfile(_info(arc, st, tarfile.DIRTYPE))
        if _opaque(path):
            marker = _info(arc + "/.wh..wh..opq", st, tarfile.REGTYPE)
            marker.mode = 0
            tar.addfile(marker)
    elif stat.S_ISLNK(mode):
        info = _info(arc, st, tarfile.SYMTYPE)
        info.linkname = os.readlink(path)
        tar.addfile(info)
    elif stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            info = _info(arc, st, tarfile.LNKTYPE)
            info.linkname = links[key]
            tar.addfile(info)
            return
        links[key] = arc
        info = _info(arc, st, tarfile.REGTYPE)
        info.size = st.st_size
        with contextlib.suppress(OSError):
            info.pax_headers = {"SCHILY.xattr.security.capability":
                                os.getxattr(path, "security.capability").decode("latin-1")}
        with open(path, "rb") as f:
            tar.addfile(info, f)
    elif stat.S_ISFIFO(mode):
        tar.addfile(_info(arc, st, tarfile.FIFOTYPE))
    # other devices are left out, as the unpacker leaves them out


def store_layer(store: OciStore, source: str) -> tuple[dict, str]:
    """`source` (overlay-style changes) as a stored, unpacked gzip layer: (descriptor, diff_id).
    The caller holds the store lock shared."""
    fd, tmp = tempfile.mkstemp(suffix=".layer", dir=store.blobs.tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, diff_id, size = write_layer(source, out)
            out.flush()
        store.blobs.commit(tmp, digest, size, hashed=(digest, size))
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise full_disk(e, store.root) from None
    store.unpack_layer(digest, diff_id)
    return {"mediaType": LAYER_GZIP, "digest": digest, "size": size}, diff_id


def write_image(store: OciStore, doc: dict, layers: list[dict]) -> str:
    """A config document and its layers' descriptors as stored blobs; the manifest digest."""
    config = json.dumps(doc, sort_keys=True).encode()
    config_digest = store.blobs.put(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                           "layers": layers}).encode()
    return store.blobs.put(manifest)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def image_docs(store: OciStore, name: str | None) -> tuple[dict, list[dict]]:
    """(config document, layer descriptors) of a stored image; a fresh scratch one for None."""
    if not name:
        return ({"architecture": _arch(), "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}},
                [])
    digest, _, _ = find(store, name)
    manifest = json.loads(store.blobs.read(digest))
    return json.loads(store.blobs.read(manifest["config"]["digest"])), list(manifest["layers"])


def commit(store: OciStore, source: str, name: str, parent: str | None = None, created_by: str = "",
           comment: str = "", changes: dict | None = None) -> tuple[Reference, str]:
    """A new image `name`: `parent`'s layers (none for scratch) plus `source` as a layer.

    `changes` updates the image config (docker's keys: Env, Cmd, Entrypoint,
    WorkingDir, User, ExposedPorts, StopSignal, Labels).  Returns (ref, manifest digest).
    """
    ref = parse(name)
    with store.blobs.lock(shared=True):
        doc, layers = image_docs(store, parent)
        desc, diff_id = store_layer(store, source)
        faults.point("commit")  # (a test hook)
        layers.append(desc)
        stamp = now()
        doc["created"] = stamp
        doc.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
        doc.setdefault("history", []).append({"created": stamp, "created_by": created_by, "comment": comment})
        doc["config"] = dict(doc.get("config") or {}, **(changes or {}))
        manifest_digest = write_image(store, doc, layers)
        store.set_ref(str(ref), manifest_digest)
    return ref, manifest_digest


def _arch() -> str:
    from .manifest import this_platform
    return this_platform()[1]


def import_tarball(store: OciStore, path: str, name: str, changes: dict | None = None) -> tuple[Reference, str]:
    """docker import: a filesystem tarball (plain, gzip or zstd) as a one-layer image."""
    from .layers import HashingReader, decompressed

    if not os.path.isfile(path):
        from ..errors import SpecError
        raise SpecError(f"no tarball at {path}: give a tar of a root filesystem (plain, .gz or .zst)")
    with open(path, "rb") as f:  # the diff_id, before the unpacker checks it
        plain = HashingReader(decompressed(f))
        plain.drain()
    diff_id = "sha256:" + plain.sha.hexdigest()
    ref = parse(name)
    with store.blobs.lock(shared=True):
        fd, tmp = tempfile.mkstemp(suffix=".import", dir=store.blobs.tmp)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as f:
                hashed = _Hashing(out)
                while chunk := f.read(1 << 20):
                    hashed.write(chunk)
            digest = "sha256:" + hashed.sha.hexdigest()
            store.blobs.commit(tmp, digest, hashed.size, hashed=(digest, hashed.size))
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise full_disk(e, store.root) from None
        store.unpack_layer(digest, diff_id)
        with open(store.blobs.path(digest), "rb") as f:
            head = f.read(4)
        media = LAYER_GZIP if head[:2] == b"\x1f\x8b" else (
            "application/vnd.oci.image.layer.v1.tar+zstd" if head == b"\x28\xb5\x2f\xfd"
            else "application/vnd.oci.image.layer.v1.tar")
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        doc = {"architecture": _arch(), "os": "linux", "created": now, "config": dict(changes or {}),
               "rootfs": {"type": "layers", "diff_ids": [diff_id]},
               "history": [{"created": now, "created_by": f"import {os.path.basename(path)}"}]}
        config = json.dumps(doc, sort_keys=True).encode()
        config_digest = store.blobs.put(config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                               "layers": [{"mediaType": media, "digest": digest, "size": hashed.size}]}).encode()
        manifest_digest = store.blobs.put(manifest)
        store.set_ref(str(ref), manifest_digest)
    return ref, manifest_digest
