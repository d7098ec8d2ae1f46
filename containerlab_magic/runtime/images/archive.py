"""save and load: images as files, in the two formats other tools read.

- OCI image layout (image-spec image-layout.md): `oci-layout`, `index.json`
  (one entry per name, `org.opencontainers.image.ref.name` = the tag and
  `io.containerd.image.name` = the whole name) and `blobs/sha256/...`, kept as
  they are in the store, so digests survive the round trip.
- docker-archive (`docker save`): `manifest.json` (`[{"Config", "RepoTags",
  "Layers"}]`), the config as `<id>.json` and each layer uncompressed as
  `<diff_id>/layer.tar`.  Load also reads skopeo's and older docker's
  archives, where `Layers` may name a symlink (the legacy `<id>/layer.tar`)
  that is followed inside the archive, never on disk.
Both are written as one tar (or read from a tar or a directory).  Loading
verifies every digest, as a pull does, and unpacks with the same unpacker.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile

from ..errors import SpecError
from .blobs import sha256_bytes
from .catalog import find
from .config import BadImage, parse_config
from .manifest import INDEXES, OCI_MANIFEST, media_type_of, parse_manifest, pick_platform
from .oci import OciStore
from .reference import parse

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
REF_NAME = "org.opencontainers.image.ref.name"
FULL_NAME = "io.containerd.image.name"


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, path: str | None = None) -> None:
    if path is not None:
        tar.add(path, arcname=name, recursive=False)
        return
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def save(store: OciStore, names: list[str], path: str, fmt: str = "docker-archive") -> str:
    """Write the named images to the tar `path` as docker-archive or oci; returns the path."""
    if fmt not in ("docker-archive", "oci"):
        raise SpecError(f"unknown archive format {fmt!r}: use docker-archive or oci")
    images = []
    for name in names:
        digest, refs, _ = find(store, name)
        images.append((digest, refs, store.record(digest)))
    fd, tmp = tempfile.mkstemp(prefix=".save-", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            (_save_oci if fmt == "oci" else _save_docker)(store, images, tar)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _save_oci(store, images, tar) -> None:
    written, index = set(), []
    for digest, refs, record in images:
        for desc in (record.manifest.config, *record.manifest.layers):
            if desc.digest not in written:
                _add(tar, f"blobs/sha256/{desc.digest[7:]}", path=store.blobs.path(desc.digest))
                written.add(desc.digest)
        if digest not in written:
            _add(tar, f"blobs/sha256/{digest[7:]}", path=store.blobs.path(digest))
            written.add(digest)
        size = os.path.getsize(store.blobs.path(digest))
        for ref in refs:
            parsed = parse(ref)
            index.append({"mediaType": record.manifest.media_type, "digest": digest, "size": size,
                          "annotations": {REF_NAME: parsed.tag or "latest", FULL_NAME: ref}})
    _add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    _add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": index}).encode())


def _save_docker(store, images, tar) -> None:
    manifest, written = [], set()
    for digest, refs, record in images:
        config_name = record.config_digest[7:] + ".json"
        if config_name not in written:
            _add(tar, config_name, store.blobs.read(record.config_digest))
            written.add(config_name)
        layers = []
        for desc, diff_id in zip(record.manifest.layers, record.config.diff_ids):
            name = f"{diff_id[7:]}/layer.tar"
            if name not in written:
                _add_layer(tar, name, store.blobs.path(desc.digest))
                written.add(name)
            layers.append(name)
        manifest.append({"Config": config_name, "RepoTags": [parse(r).familiar() for r in refs if parse(r).tag],
                         "Layers": layers})
    _add(tar, "manifest.json", json.dumps(manifest).encode())


def _add_layer(tar: tarfile.TarFile, name: str, blob_path: str) -> None:
    """docker-archive layers are uncompressed: inflate into a temp file first (tar needs the size)."""
    from .layers import decompressed

    with tempfile.TemporaryFile() as plain, open(blob_path, "rb") as blob:
        stream = decompressed(blob)
        while chunk := stream.read(1 << 20):
            plain.write(chunk)
        info = tarfile.TarInfo(name)
        info.size, info.mode = plain.tell(), 0o644
        plain.seek(0)
        tar.addfile(info, plain)


# -- load -------------------------------------------------------------------


class _Source:
    """Files of an archive by name, from a tar (symlinks followed inside it) or a directory."""

    def __init__(self, path: str):
        self.dir = path if os.path.isdir(path) else None
        self.tar = None if self.dir else tarfile.open(path, "r:*")

    def open(self, name: str):
        name = os.path.normpath(name.lstrip("/"))
        if name.startswith(".."):
            raise BadImage(f"the archive names a file outside itself: {name!r}")
        if self.dir:
            real = os.path.realpath(os.path.join(self.dir, name))
            if not real.startswith(os.path.realpath(self.dir) + os.sep):
                raise BadImage(f"the archive's {name!r} points outside it")
            if not os.path.isfile(real):
                raise BadImage(f"the archive has no {name!r}")
            return open(real, "rb")
        try:
            member = self.tar.getmember(name)
        except KeyError:
            raise BadImage(f"the archive has no {name!r}") from None
        f = self.tar.extractfile(member)  # follows a symlink to its target inside the archive
        if f is None:
            raise BadImage(f"the archive's {name!r} is not a file")
        return f

    def has(self, name: str) -> bool:
        try:
            self.open(name).close()
            return True
        except BadImage:
            return False

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def close(self):
        if self.tar:
            self.tar.close()


def load(store: OciStore, path: str, repository: str = "localhost/loaded") -> list[str]:
    """Load every image of a docker-archive or OCI layout (tar or directory); returns the names."""
    if not os.path.exists(path):
        raise SpecError(f"no archive at {path}: give a tar written by save, docker save or skopeo")
    try:
        source = _Source(path)
    except tarfile.TarError as e:
        raise BadImage(f"{path} is not a tar archive or a directory: {e}") from None
    try:
        with store.blobs.lock(shared=True):
            if source.has("manifest.json"):
                return _load_docker(store, source)
            if source.has("index.json"):
                return _load_oci(store, source, repository)
            raise BadImage(f"{path} has neither manifest.json (docker-archive) nor index.json (OCI layout)")
    finally:
        source.close()


def _copy_blob(store: OciStore, source: _Source, name: str, digest: str | None) -> tuple[str, int]:
    """Stream an archive member into the store, verified; returns (digest, size)."""
    fd, part = tempfile.mkstemp(suffix=".load", dir=store.blobs.tmp)
    sha, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, source.open(name) as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)
                sha.update(chunk)
                size += len(chunk)
        actual = "sha256:" + sha.hexdigest()
        if not store.blobs.has(actual):
            store.blobs.commit(part, digest or actual, size, hashed=(actual, size))
        else:
            os.unlink(part)
        return actual, size
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise


def _layer_type(store: OciStore, digest: str) -> str:
    with open(store.blobs.path(digest), "rb") as f:
        head = f.read(4)
    return LAYER_GZIP if head[:2] == b"\x1f\x8b" else LAYER_ZSTD if head == b"\x28\xb5\x2f\xfd" else LAYER_TAR


def _load_docker(store: OciStore, source: _Source) -> list[str]:
    names = []
    for item in json.loads(source.read("manifest.json")):
        config_data = source.read(item["Config"])
        config = parse_config(config_data)
        if len(config.diff_ids) != len(item["Layers"]):
            raise BadImage(f"{item['Config']} lists {len(config.diff_ids)} layers, manifest.json {len(item['Layers'])}")
        layers = []
        for name, diff_id in zip(item["Layers"], config.diff_ids):
            digest, size = _copy_blob(store, source, name, None)
            layers.append({"mediaType": _layer_type(store, digest), "digest": digest, "size": size})
        config_digest = store.blobs.put(config_data)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_data)},
                    "layers": layers}
        digest = store.blobs.put(json.dumps(manifest).encode())
        _unpack_all(store, digest)
        for tag in item.get("RepoTags") or []:
            ref = str(parse(tag))
            store.set_ref(ref, digest)
            names.append(ref)
    return names


def _load_oci(store: OciStore, source: _Source, repository: str) -> list[str]:
    names = []
    for entry in json.loads(source.read("index.json")).get("manifests", []):
        digest = entry["digest"]
        data = source.read(f"blobs/sha256/{digest[7:]}")
        if sha256_bytes(data) != digest:
            raise BadImage(f"the layout's blob {digest} has other content: refused")
        if media_type_of(data, entry.get("mediaType", "")) in INDEXES:
            digest = pick_platform(data).digest
            data = source.read(f"blobs/sha256/{digest[7:]}")
            if sha256_bytes(data) != digest:
                raise BadImage(f"the layout's blob {digest} has other content: refused")
        manifest = parse_manifest(data, entry.get("mediaType", ""))
        for desc in (manifest.config, *manifest.layers):
            if not store.blobs.has(desc.digest):
                _copy_blob(store, source, f"blobs/sha256/{desc.digest[7:]}", desc.digest)
        store.blobs.put(data, digest)
        _unpack_all(store, digest)
        annotations = entry.get("annotations") or {}
        name = annotations.get(FULL_NAME) or annotations.get(REF_NAME) or "latest"
        ref = str(parse(name if ("/" in name or ":" in name) else f"{repository}:{name}"))
        store.set_ref(ref, digest)
        names.append(ref)
    return names


def _unpack_all(store: OciStore, digest: str) -> None:
    record = store.record(digest)
    for desc, diff_id in zip(record.manifest.layers, record.config.diff_ids):
        store.unpack_layer(desc.digest, diff_id)

