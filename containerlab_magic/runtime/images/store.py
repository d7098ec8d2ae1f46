"""The image store: built-in images made from the host, kept by fingerprint.

Layout: <data_root>/images/<name>/rootfs plus a `fingerprint` file.  A
built-in image is rebuilt when what it was made from changes (a new busybox
binary, new /etc/alternatives on the host), never per container.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field

from ..errors import NotFound, RuntimeFailure
from . import builtin


@dataclass(frozen=True)
class Image:
    name: str
    layers: tuple[str, ...]  # overlay lowerdirs, top first
    binds: tuple[str, ...] = ()  # host dirs bind-mounted read-only at the same path
    env: tuple[tuple[str, str], ...] = field(default=())


class ImageStore:
    BUILTIN = {"host": builtin.HostImage, "busybox": builtin.BusyboxImage}

    def __init__(self, data_root: str):
        self.root = os.path.join(data_root, "images")
        self._cache: dict[str, tuple[str, Image]] = {}

    def names(self) -> list[str]:
        return sorted(self.BUILTIN)

    def resolve(self, name: str) -> Image:
        kind = self.BUILTIN.get(name)
        if kind is None:
            raise NotFound(
                f"unknown image {name!r}: use one of {', '.join(self.names())} "
                "(see `containerlab images`)"
            )
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
