"""Which cgroup setup this host has, found once with statfs(2) on /sys/fs/cgroup.

Like youki and runc: if /sys/fs/cgroup is itself a cgroup2 filesystem the host
is *unified* (v2 only); if it is a tmpfs holding one v1 mount per controller
and a cgroup2 mount at `unified/` it is *hybrid* (controllers live in v1, so we
drive v1); a tmpfs without that is *legacy* v1.  Mount points come from
/proc/self/mountinfo (proc(5)), our own group from /proc/self/cgroup
(cgroups(7)).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from dataclasses import dataclass, field

CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_SUPER_MAGIC = 0x27E0EB
TMPFS_MAGIC = 0x01021994


def fs_magic(path: str) -> int | None:
    """f_type of statfs(2) on path, or None when the path is missing."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if libc.statfs(os.fsencode(path), buf) != 0:
        return None
    # f_type is the first field, a C long.
    return struct.unpack_from("l", buf.raw)[0] & 0xFFFFFFFF


@dataclass
class Mount:
    root: str  # the part of the hierarchy this mount shows ("/" unless bind-mounted)
    point: str
    fstype: str
    options: set[str]


@dataclass
class Setup:
    mode: str | None  # "unified", "hybrid", "legacy", or None: no cgroup filesystem
    unified_mount: str | None = None  # where cgroup2 is mounted (also in hybrid mode)
    v1_mounts: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    own_v2_path: str = "/"  # our group in the v2 hierarchy, from /proc/self/cgroup
    enabled: dict[str, bool] = field(default_factory=dict)  # /proc/cgroups: controller -> enabled


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return path.encode().decode("unicode_escape") if "\\" in path else path


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    found = []
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) < 5 or len(rest) < 3:
                continue
            found.append(Mount(_unescape(fields[3]), _unescape(fields[4]), rest[0], set(rest[2].split(","))))
    return found


def enabled_controllers() -> dict[str, bool]:
    result = {}
    try:
        with open("/proc/cgroups") as f:
            for line in f:
                if not line.startswith("#"):
                    name, _, _, on = line.split()
                    result[name] = on == "1"
    except OSError:
        pass
    return result


def own_v2_path() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip() or "/"
    return "/"


def detect(root: str = CGROUP_ROOT) -> Setup:
    magic = fs_magic(root)
    all_mounts = mounts()
    if magic == CGROUP2_SUPER_MAGIC:
        return Setup("unified", root, own_v2_path=own_v2_path(), enabled=enabled_controllers())
    if magic is None:
        return Setup(None)
    setup = Setup("legacy", enabled=enabled_controllers())
    for m in all_mounts:
        if m.fstype == "cgroup2" and m.point == os.path.join(root, "unified"):
            setup.mode, setup.unified_mount = "hybrid", m.point
            setup.own_v2_path = own_v2_path()
        elif m.fstype == "cgroup":
            for opt in m.options:
                # A mount under /sys/fs/cgroup wins over one elsewhere.
                if opt in setup.enabled and (opt not in setup.v1_mounts or m.point.startswith(root + "/")):
                    setup.v1_mounts[opt] = m.point
    if not setup.v1_mounts and magic != TMPFS_MAGIC:
        return Setup(None)
    return setup
