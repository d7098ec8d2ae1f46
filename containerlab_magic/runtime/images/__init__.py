"""Images: what a container's root filesystem is made from.

An `Image` is a list of read-only layer directories (overlayfs lowerdirs,
top first) plus read-only bind mounts of host directories, and for OCI
images the image's config (`Image.config`: Entrypoint, Cmd, Env, WorkingDir,
User, ExposedPorts, StopSignal) for the core to apply.  Built-in images
(`host`, `busybox`) are made once into the data directory; every other name
is an OCI reference looked up in the store.  Each container adds its own
writable layer on top (see rootfs.py).

    store.py      ImageStore.resolve(name) -> Image (built-in or OCI)
    builtin.py    the host and busybox recipes
    reference.py  name[:tag][@digest], normalised as docker does
    blobs.py      content-addressed blobs, verified before they are kept; flock locks
    oci.py        the OCI store: names, unpacked layers, prune
    layers.py     the safe layer unpacker (whiteouts to overlay's format)
    manifest.py   manifests and indexes, this machine's platform
    config.py     the image config
    auth.py       credentials (0600 file, docker's config.json read) and challenges
    registry.py   the distribution API client (httpx)
    pull.py push.py   pull (parallel, resumable, verified), push, login, logout
    catalog.py    tag, rmi, images, inspect, history
    archive.py    save and load (docker-archive, OCI layout)
    commit.py     a directory of changes -> a layer -> an image; import of a tarball
"""

from __future__ import annotations

from .config import ImageConfig
from .store import Image, ImageStore

__all__ = ["Image", "ImageConfig", "ImageStore"]
