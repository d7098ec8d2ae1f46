"""Bind mounts of host paths, made safe: no symlink swaps, nodev, nosuid, read-only all the way down.

A bind mount (mount(2) MS_BIND) shows a host directory inside the container:
whatever the container does there happens to the host's files.  So each bind
source is opened without following symlinks and mounted through its fd, and
the bind, with every mount below it, is made nosuid and nodev (and read-only
for :ro) with mount_setattr(2) AT_RECURSIVE, or one remount per submount on
kernels before 5.12.  These are rootfs steps (rootfs.plan); the escape tests
are tests/security/test_escape_mounts.py and test_escape_devices.py.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from . import linux
from .linux import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT
from .security import guards


@dataclass(frozen=True)
class BindSource:
    """A bind of a host path, opened first without following any symlink, then mounted
    through its fd (/proc/self/fd/N): the path was resolved when the spec was checked
    (spec.Mount.parse), and a symlink planted since (by a container that can write
    there) must not redirect the bind to, say, the host's /etc."""

    source: str
    target: str
    flags: int = MS_BIND | MS_REC

    def run(self, root: str) -> None:
        from .rootfs import resolve

        if guards.disabled("bind-nofollow"):
            return linux.mount(self.source, resolve(root, self.target), None, self.flags)
        fd = linux.open_no_symlinks(self.source)
        try:
            linux.mount(f"/proc/self/fd/{fd}", resolve(root, self.target), None, self.flags)
        finally:
            os.close(fd)

    def __str__(self) -> str:
        return f"mount bind {self.source} on {self.target} (opened without following symlinks)"


@dataclass(frozen=True)
class SecureBind:
    """Make a bind mount nosuid,nodev (and read-only), keeping the source's own flags,
    on the bind and on every mount below it.

    A bind is the host's filesystem: a device node made in it (CAP_MKNOD) would open
    a host device, a setuid file would stay setuid for the host's users.  MS_REMOUNT
    applies to one mount only, so a submount of a read-only bind stayed writable:
    mount_setattr(2) with AT_RECURSIVE sets the flags on the whole tree at once; a
    kernel before 5.12 gets one remount per submount, as runc does.
    """

    target: str
    read_only: bool = False

    @property
    def attrs(self) -> int:
        attrs = 0 if guards.disabled("nodev-binds") else linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV
        return attrs | (linux.MOUNT_ATTR_RDONLY if self.read_only else 0)

    def run(self, root: str) -> None:
        from .rootfs import resolve

        target, attrs = resolve(root, self.target), self.attrs
        if not attrs:
            return
        recursive = not guards.disabled("recursive-ro")
        fd = os.open(target, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            linux.mount_setattr(fd, attrs, recursive)
            return
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
        finally:
            os.close(fd)
        for path in _mounts_below(target) if recursive else [target]:
            flags = _ATTR_TO_MS[attrs] | flags_of(path)
            linux.mount(None, path, None, MS_REMOUNT | MS_BIND | flags)

    def __str__(self) -> str:
        what = ",".join(n for n, bit in (("ro", 1), ("nosuid", 2), ("nodev", 4)) if self.attrs & bit)
        return f"make {self.target} and its submounts {what}" if what else f"leave {self.target} as it is"


_ATTR_TO_MS = {a: sum(ms for bit, ms in ((1, MS_RDONLY), (2, MS_NOSUID), (4, MS_NODEV)) if a & bit) for a in range(8)}


def flags_of(path: str) -> int:
    """The MS_* flags a mount has now (a bind remount would otherwise clear noexec and the rest)."""
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in ((os.ST_RDONLY, MS_RDONLY), (os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                                 (os.ST_NOEXEC, MS_NOEXEC)) if f & st)


def _mounts_below(target: str) -> list[str]:
    """`target` and each mount point under it, from /proc/self/mountinfo (proc(5)), outermost first."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            if point == target or point.startswith(target.rstrip("/") + "/"):
                found.append(point)
    return sorted(set(found), key=len)
