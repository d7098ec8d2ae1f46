"""The image store: built-in images made from the host, and OCI images.

Built-in (`host`, `busybox`): <data_root>/images/<name>/rootfs plus a
`fingerprint` file.  A built-in image is rebuilt when what it was made from
changes (a new busybox binary, new /etc/alternatives on the host), never per
container.

Every other name is an OCI image reference (`127.0.0.1:5000/busybox:1.35`),
looked up in <data_root>/images/oci (oci.py): pulled, loaded or pushed
images, their layers unpacked once and shared as overlay lowerdirs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field

from ..errors import NotFound, RuntimeFailure
from . import builtin
from .config import BadImage, ImageConfig
from .layers import LayerLimits
from .reference import parse


@dataclass(frozen=True)
class Image:
    name: str
    layers: tuple[str, ...]  # overlay lowerdirs, top first
    binds: tuple[str, ...] = ()  # host dirs bind-mounted read-only at the same path
    env: tuple[tuple[str, str], ...] = field(default=())
    # OCI images only: what the image asks of a run (Entrypoint, Cmd, Env, ...), which the
    # core applies where the spec leaves a default; the manifest digest; the image id
    # (config digest); and whether its whiteouts are user.* xattrs (mount with userxattr).
    config: ImageConfig | None = None
    digest: str = ""
    id: str = ""
    userxattr: bool = False


# mount(2) copies its options in one 4096-byte page; leave room for upperdir and workdir.
MAX_LOWERDIR = 3600


ROOTFS = "rootfs:"  # "rootfs:/abs/dir": a directory as the one read-only layer (an OCI bundle's root, oci/)


def _rootfs_image(name: str) -> Image:
    path = name[len(ROOTFS):]
    if not os.path.isabs(path) or os.path.normpath(path) == "/" or not os.path.isdir(path):
        raise NotFound(f"image {name}: the root filesystem must be an absolute directory, not /")
    return Image(name, (os.path.normpath(path),))


class ImageStore:
    BUILTIN = {"host": builtin.HostImage, "busybox": builtin.BusyboxImage}

    def __init__(self, data_root: str, limits: LayerLimits = LayerLimits()):
        self.root = os.path.join(data_root, "images")
        self.limits = limits
        self._cache: dict[str, tuple[str, Image]] = {}
        self._oci = None

    @property
    def oci(self):
        """The OCI store, made on first use (a lab with only built-ins never creates it)."""
        if self._oci is None:
            from .oci import OciStore
            self._oci = OciStore(os.path.join(self.root, "oci"), self.limits)
        return self._oci

    def names(self) -> list[str]:
        """The built-in images, then every name in the OCI store (as people type them)."""
        pulled = []
        if os.path.isdir(os.path.join(self.root, "oci")):
            pulled = sorted(parse(ref).familiar() for ref in self.oci.refs())
        return sorted(self.BUILTIN) + pulled

    def resolve(self, name: str) -> Image:
        if name.startswith(ROOTFS):
            return _rootfs_image(name)
        kind = self.BUILTIN.get(name)
        if kind is None:
            return self._resolve_oci(name)
        recipe = kind()
        fingerprint = recipe.fingerprint()  # raises with the fix when a source is missing
        cached = self._cache.get(name)
        if cached and cached[0] == fingerprint:
            return cached[1]
        rootfs = self._ensure(name, recipe, fingerprint)
        image = Image(name, (rootfs,), recipe.binds())
        self._cache[name] = (fingerprint, image)
        return image

    def _ensure(self, name: str, recipe, fingerprint: str) -> str:
        image_dir = os.path.join(self.root, name)
        rootfs = os.path.join(image_dir, "rootfs")
        stamp = os.path.join(image_dir, "fingerprint")
        try:
            with open(stamp) as f:
                if f.read() == fingerprint and os.path.isdir(rootfs):
                    return rootfs
        except FileNotFoundError:
            pass
        # 0700: an image's own directories (its /tmp is 1777) must not be reachable, and so
        # not writable, by other users of the host: whatever is there, every container sees.
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        # Build beside, then swap in with renames, so a reader never sees half an image.
        build = tempfile.mkdtemp(prefix=f".{name}-", dir=self.root)
        try:
            os.chmod(build, 0o755)
            recipe.build(os.path.join(build, "rootfs"))
            with open(os.path.join(build, "fingerprint"), "w") as f:
                f.write(fingerprint)
            old = None
            if os.path.exists(image_dir):
                old = tempfile.mkdtemp(prefix=f".{name}-old-", dir=self.root)
                os.rename(image_dir, os.path.join(old, "image"))
            os.rename(build, image_dir)
            if old:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as e:
            shutil.rmtree(build, ignore_errors=True)
            raise RuntimeFailure(f"could not build image {name!r} in {self.root}: {e}") from e
        return rootfs

    def _resolve_oci(self, name: str) -> Image:
        ref = parse(name)
        digest = self.oci.refs().get(str(ref)) if os.path.isdir(os.path.join(self.root, "oci")) else None
        if digest is None:
            raise NotFound(f"unknown image {name!r}: it is not one of {', '.join(sorted(self.BUILTIN))} and not in the "
                           f"store: pull it first (`containerlab-magic pull {name}`)")
        cached = self._cache.get(str(ref))
        if cached and cached[0] == digest and all(os.path.isdir(d) for d in cached[1].layers):
            return cached[1]
        image = self._oci_image(name, digest)
        self._cache[str(ref)] = (digest, image)
        return image

    def _oci_image(self, name: str, digest: str) -> Image:
        record = self.oci.record(digest)
        lowers = []
        with self.oci.blobs.lock(shared=True):  # unpack what a load or a prune left packed
            for desc, diff_id in zip(record.manifest.layers, record.config.diff_ids):
                lowers.append(self.oci.unpack_layer(desc.digest, diff_id))
        if len(":".join(lowers)) > MAX_LOWERDIR:
            fit = MAX_LOWERDIR // (len(lowers[0]) + 1)
            raise BadImage(f"image {name} has {len(lowers)} layers, but a mount(2) option page holds only about "
                           f"{fit} lowerdirs of this length: squash the image, or move the store to a shorter "
                           "path with CONTAINERLAB_DATA")
        userxattr = any(self.oci.layer_meta(d).get("userxattr") for d in record.config.diff_ids)
        if not lowers:  # overlay needs a lowerdir: an image of no layers is an empty directory
            empty = os.path.join(self.oci.layers, "empty")
            os.makedirs(empty, 0o755, exist_ok=True)
            lowers.append(empty)
        return Image(name, tuple(reversed(lowers)), (), record.config.env, record.config, digest,
                     record.config_digest, userxattr)
