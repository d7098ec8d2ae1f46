"""Content-addressed blobs: a file's name is the sha256 of its bytes.

Layout (as an OCI image layout's blobs/): `<root>/blobs/sha256/<hex>`.  A blob
is written to a temporary `<hex>.part` beside the store, fsync'd, hashed, and
only then renamed into place (rename(2) is atomic within a filesystem), so a
reader sees a whole verified blob or none.  A `.part` left by an interrupted
download is resumed from where it stopped.

Locks are flock(2) on small files: every writer (pull, load) holds the store
lock shared, garbage collection holds it exclusive, so gc never frees what a
running pull has written but not yet tagged; a per-key lock keeps two pulls
from downloading or unpacking the same thing twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile

from ..errors import ContainerError
from .reference import DIGEST


class DigestMismatch(ContainerError):
    """Bytes whose sha256 is not the digest that named them: refused, never stored."""


class StoreFull(ContainerError):
    """The disk under the store is full."""


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    if not DIGEST.match(digest or ""):
        raise DigestMismatch(f"unsupported or malformed digest {digest!r}: only sha256 is accepted")
    return digest[len("sha256:"):]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def full_disk(e: OSError, where: str) -> ContainerError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"the disk holding {where} is full: free space (`containerlab-magic image prune`) "
                         "or move the store with CONTAINERLAB_DATA")
    return ContainerError(f"could not write to {where}: {e.strerror or e}")


class Blobs:
    def __init__(self, root: str):
        self.root = root
        self.dir = os.path.join(root, "blobs", "sha256")
        self.tmp = os.path.join(root, "tmp")
        self.locks = os.path.join(root, "locks")
        for d in (self.dir, self.tmp, self.locks):
            os.makedirs(d, 0o700, exist_ok=True)

    def path(self, digest: str) -> str:
        return os.path.join(self.dir, hex_of(digest))

    def has(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def read(self, digest: str) -> bytes:
        with open(self.path(digest), "rb") as f:
            return f.read()

    def part(self, digest: str) -> str:
        return os.path.join(self.tmp, hex_of(digest) + ".part")

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store bytes (a manifest, a config); checks them against `digest` when given."""
        actual = sha256_bytes(data)
        if digest and actual != digest:
            raise DigestMismatch(f"content for {digest} hashes to {actual}: refused")
        if self.has(actual):
            return actual
        fd, part = tempfile.mkstemp(prefix=hex_of(actual)[:16] + "-", suffix=".put", dir=self.tmp)
        try:  # a name of its own: two writers of one small blob must not share a temp file
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            _unlink(part)
            raise full_disk(e, self.root) from None
        self.commit(part, actual)
        return actual

    def commit(self, part: str, digest: str, size: int | None = None, hashed: tuple[str, int] | None = None) -> None:
        """Verify a finished `.part` and rename it into place; a bad one is deleted.

        `hashed` is (digest, length) when the writer hashed the bytes as it wrote them.
        """
        if hashed:
            actual, length = hashed
        else:
            sha = hashlib.sha256()
            length = 0
            with open(part, "rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
                    length += len(chunk)
            actual = "sha256:" + sha.hexdigest()
        if actual != digest or (size is not None and length != size):
            _unlink(part)
            raise DigestMismatch(f"blob {digest} arrived as {length} bytes hashing to {actual}"
                                 f"{'' if size is None else f' (expected {size} bytes)'}: refused, nothing kept")
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.rename(part, self.path(digest))
        fsync_dir(self.dir)

    def all(self) -> set[str]:
        return {"sha256:" + name for name in os.listdir(self.dir) if len(name) == 64}

    def remove(self, digest: str) -> int:
        path = self.path(digest)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
            return size
        except FileNotFoundError:
            return 0

    # -- locks -------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str = "store", shared: bool = False):
        """flock on locks/<name>.lock: shared for writers, exclusive for gc and per-key work."""
        fd = os.open(os.path.join(self.locks, name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
