"""Images: what a container's root filesystem is made from.

An `Image` is a list of read-only layer directories (overlayfs lowerdirs,
top first) plus read-only bind mounts of host directories.  Built-in images
(`host`, `busybox`) are made once into the data directory and reused; OCI
images are pulled from a registry (registry.py, pull.py), their layers
unpacked safely once per diff_id (layers.py) into a content-addressed store
(blobs.py, oci.py).  Each container adds its own writable layer on top (see
rootfs.py).
"""

from __future__ import annotations

from .config import ImageConfig
from .store import Image, ImageStore

__all__ = ["Image", "ImageConfig", "ImageStore"]
