"""The store of OCI images: blobs, unpacked layers, and names.

Layout under <data_root>/images/oci/:

    blobs/sha256/<hex>        manifests, configs and compressed layers (blobs.py)
    layers/<hex>/root         one layer unpacked, named by its diff_id: an overlay lowerdir
    layers/<hex>/layer.json   what unpacking it found (whiteouts, skipped devices, xattr kind)
    refs.json                 "127.0.0.1:5000/busybox:1.35" -> manifest digest
    tmp/                      downloads in progress (.part) and layers being unpacked
    locks/                    flock files (blobs.py)

A layer is unpacked once per diff_id and shared by every image and container
that has it.  Nothing is counted by hand: what is in use is what the names
reach (name -> manifest -> config and layers) plus the layers that a live
overlay mount anywhere on the machine has as a lowerdir (read from
/proc/*/mountinfo), and `prune` frees exactly the rest, under the exclusive
store lock so no pull is half-way.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass

from . import owners
from .blobs import Blobs, DigestMismatch, full_disk, hex_of
from .config import BadImage, ImageConfig, parse_config
from .layers import LayerError, LayerLimits, unpack
from .manifest import Manifest, parse_manifest


@dataclass(frozen=True)
class Record:
    digest: str  # of the manifest
    manifest: Manifest
    config_digest: str
    config: ImageConfig


class OciStore:
    def __init__(self, root: str, limits: LayerLimits = LayerLimits(), as_root: bool | None = None):
        self.root = root
        self.blobs = Blobs(root)
        self.limits = limits
        self.as_root = as_root  # None: decided per process by layers.host_mode()
        self.layers = os.path.join(root, "layers")
        os.makedirs(self.layers, 0o700, exist_ok=True)
        os.chmod(root, 0o711)  # the layers must be reachable by a container's users, not listable
        os.chmod(self.layers, 0o711)
        self.refs_path = os.path.join(root, "refs.json")

    # -- names -------------------------------------------------------------

    def refs(self) -> dict[str, str]:
        try:
            with open(self.refs_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def set_ref(self, name: str, digest: str | None) -> None:
        """Point a name at a manifest (None removes it); atomic, serialised by a lock."""
        with self.blobs.lock("refs"):
            refs = self.refs()
            if digest is None:
                refs.pop(name, None)
            else:
                refs[name] = digest
            fd, tmp = tempfile.mkstemp(prefix=".refs-", dir=self.root)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(refs, f, indent=1, sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(tmp, self.refs_path)
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise full_disk(e, self.root) from None

    def record(self, digest: str) -> Record:
        manifest = parse_manifest(self.blobs.read(digest))
        config_data = self.blobs.read(manifest.config.digest)
        config = parse_config(config_data)
        if len(config.diff_ids) != len(manifest.layers):
            raise BadImage(f"image {digest} has {len(manifest.layers)} layers but its config lists "
                           f"{len(config.diff_ids)} diff_ids")
        return Record(digest, manifest, manifest.config.digest, config)

    # -- layers ------------------------------------------------------------

    def layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.layers, hex_of(diff_id))

    def lowerdir(self, diff_id: str) -> str:
        return os.path.join(self.layer_dir(diff_id), "root")

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isfile(os.path.join(self.layer_dir(diff_id), "layer.json"))

    def unpack_layer(self, blob_digest: str, diff_id: str, source=None, verify=None) -> str:
        """Unpack a blob once; a second caller waits, then finds it done.

        By default the stored blob is read.  A pull passes `source`, the blob as it
        streams in, and `verify`, which checks and stores the blob once it has all
        arrived: the layer is renamed into place only after both digests match.
        """
        with self.blobs.lock("layer-" + hex_of(diff_id)):
            if self.has_layer(diff_id):
                return self.lowerdir(diff_id)
            work = tempfile.mkdtemp(prefix="layer-", dir=self.blobs.tmp)
            try:
                os.chmod(work, 0o755)
                os.mkdir(os.path.join(work, "root"), 0o755)
                if source is None:
                    with open(self.blobs.path(blob_digest), "rb") as blob:
                        report = unpack(blob, os.path.join(work, "root"), self.limits, self.as_root)
                else:
                    try:
                        report = unpack(source, os.path.join(work, "root"), self.limits, self.as_root)
                    except LayerError:
                        verify()  # a blob that is not the one asked for explains it better
                        raise
                    verify()
                if report.diff_id != diff_id:
                    raise DigestMismatch(f"layer {blob_digest} unpacks to {report.diff_id}, but the image config "
                                         f"says {diff_id}: refused")
                userns = owners.mapping() if report.owners else None
                if userns is not None:  # rootless multi-id: the files' own owners, as containers map them
                    owners.apply(os.path.join(work, "root"), report.owners, userns)
                    report.stripped_setid.clear()
                meta = {"diff_id": diff_id, "blob": blob_digest, "size": report.bytes, "entries": report.entries,
                        "whiteouts": report.whiteouts, "opaque_dirs": report.opaque_dirs,
                        "userxattr": report.userxattr, "skipped_devices": report.skipped_devices[:100],
                        "owners": "kept" if not report.owners or userns is not None else "the user's",
                        "stripped_setid": report.stripped_setid[:100]}
                with open(os.path.join(work, "layer.json"), "w") as f:
                    json.dump(meta, f)
                os.rename(work, self.layer_dir(diff_id))
            except OSError as e:
                _remove_quietly(work)
                raise full_disk(e, self.root) from None
            except BaseException:
                _remove_quietly(work)
                raise
        return self.lowerdir(diff_id)

    def layer_meta(self, diff_id: str) -> dict:
        with open(os.path.join(self.layer_dir(diff_id), "layer.json")) as f:
            return json.load(f)

    # -- what is used, what is freed ---------------------------------------

    def reachable(self) -> tuple[set[str], set[str]]:
        """(blob digests, layer diff_ids) reached from the names."""
        blobs, layers = set(), set()
        for digest in set(self.refs().values()):
            try:
                record = self.record(digest)
            except (OSError, BadImage):
                continue
            blobs |= {digest, record.config_digest} | {d.digest for d in record.manifest.layers}
            layers |= set(record.config.diff_ids)
        return blobs, layers

    def mounted_layers(self) -> set[str]:
        """Hex names of our layers that some overlay on the machine uses right now."""
        found, seen = set(), set()
        marker = self.layers + "/"
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                ns = os.readlink(f"/proc/{pid}/ns/mnt")
                if ns in seen:
                    continue
                seen.add(ns)
                with open(f"/proc/{pid}/mountinfo") as f:
                    text = f.read()
            except OSError:
                continue
            start = text.find(marker)
            while start != -1:
                found.add(text[start + len(marker): start + len(marker) + 64])
                start = text.find(marker, start + 1)
        return found

    def prune(self) -> dict:
        """Free every blob and layer that no name reaches and no mount uses; stale tmp too."""
        freed = {"blobs": 0, "layers": 0, "bytes": 0}
        with self.blobs.lock():
            blobs, layers = self.reachable()
            for digest in self.blobs.all() - blobs:
                freed["bytes"] += self.blobs.remove(digest)
                freed["blobs"] += 1
            keep = {hex_of(d) for d in layers} | self.mounted_layers()
            for name in os.listdir(self.layers):
                if name not in keep:
                    path = os.path.join(self.layers, name)
                    freed["bytes"] += _du(path)
                    owners.remove(path)  # (files of other mapped ids need the lab's user namespace)
                    freed["layers"] += 1
            for name in os.listdir(self.blobs.tmp):  # nobody writes while we hold the lock
                path = os.path.join(self.blobs.tmp, name)
                _remove_quietly(path) if os.path.isdir(path) else os.unlink(path)
        return freed


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        owners.remove(path)


def _du(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
