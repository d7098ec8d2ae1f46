"""Images: what a container's root filesystem is made from.

An `Image` is a list of read-only layer directories (overlayfs lowerdirs,
top first) plus read-only bind mounts of host directories.  Built-in images
(`host`, `busybox`) are made once into the data directory and reused; each
container adds its own writable layer on top (see rootfs.py).
"""

from __future__ import annotations

from .store import Image, ImageStore

__all__ = ["Image", "ImageStore"]
