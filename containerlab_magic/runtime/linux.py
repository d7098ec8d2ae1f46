"""The few raw Linux syscalls Python lacks, through ctypes.

Each function is a thin typed wrapper that raises ``OSError`` with the real
errno and the path involved, so callers can say what failed
("mount proc on /proc: EPERM").  Man pages: unshare(2), setns(2), mount(2),
umount2(2), pivot_root(2), prctl(2), capset(2).
"""

from __future__ import annotations

import ctypes
import os
import platform

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Namespaces as data: flag, /proc/PID/ns name.  setns order matters for exec:
# user first (it grants the rest), mnt last (it changes what /proc means).
NAMESPACES = (
    ("user", CLONE_NEWUSER),
    ("ipc", CLONE_NEWIPC),
    ("uts", CLONE_NEWUTS),
    ("net", CLONE_NEWNET),
    ("pid", CLONE_NEWPID),
    ("cgroup", CLONE_NEWCGROUP),
    ("mnt", CLONE_NEWNS),
)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYS_CLONE = {"x86_64": 56, "aarch64": 220, "riscv64": 220, "ppc64le": 120, "s390x": 120}
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91, "riscv64": 91, "ppc64le": 184, "s390x": 185}
_MACHINE = platform.machine()

_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


def _check(result: int, what: str, path: str | None = None) -> None:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


# The GIL stays held across calls through PyDLL: needed around clone, where
# CPython's own fork hooks must run exactly as os.fork runs them.
_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ctypes.c_long
_api = ctypes.pythonapi
SIGCHLD = 17


def clone(flags: int) -> int:
    """fork(2) that also creates namespaces (clone(2) with CLONE_NEW* flags).

    With CLONE_NEWPID the child is PID 1 of its new namespace at once, which
    saves the second fork that unshare(2) would need.  Like os.fork, it runs
    CPython's before/after-fork hooks; it must be called from a
    single-threaded process (the shim).
    """
    nr = _SYS_CLONE.get(_MACHINE)
    if nr is None:
        raise OSError(38, f"clone: unsupported architecture {_MACHINE}")
    if _MACHINE == "s390x":  # s390 swaps the first two arguments
        args = (None, ctypes.c_ulong(flags | SIGCHLD))
    else:
        args = (ctypes.c_ulong(flags | SIGCHLD), None)
    _api.PyOS_BeforeFork()
    pid = _pylibc.syscall(nr, *args, None, None, None)
    if pid == 0:
        _api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
           f"mount {fstype or source} on {target}", target)


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}", target)


def pivot_root(new_root: str, put_old: str) -> None:
    nr = _SYS_PIVOT_ROOT.get(_MACHINE)
    if nr is None:
        raise OSError(38, f"pivot_root: unsupported architecture {_MACHINE}")
    _check(_libc.syscall(nr, _b(new_root), _b(put_old)), "pivot_root", new_root)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8
AT_EMPTY_PATH, AT_RECURSIVE = 0x1000, 0x8000
_SYS_RT_SIGACTION = {"x86_64": 13, "aarch64": 134, "riscv64": 134, "ppc64le": 173, "s390x": 174}


def default_all_signals() -> None:
    """Give every signal its default action, as a fresh process has.

    An ignored signal stays ignored across fork and execve(2) (signal(7)); whoever
    started us may have ignored some, including 32 and 33, which glibc reserves for
    itself and Python's signal module cannot reach.  So this uses rt_sigaction(2)
    directly, with a kernel `struct sigaction` of zeros (SIG_DFL, no flags, empty
    mask) and the kernel's 8-byte sigset size.  SIGKILL and SIGSTOP cannot change.
    """
    nr = _SYS_RT_SIGACTION.get(_MACHINE)
    if nr is None:
        return
    action = ctypes.create_string_buffer(64)  # handler, flags, restorer, mask: all zero
    for sig in range(1, 65):
        if sig not in (9, 19):
            _libc.syscall(nr, sig, action, None, 8)


_SYS_MOUNT_SETATTR = 442  # the same number on every architecture (new syscalls are unified)


def mount_setattr(fd: int, attr_set: int, recursive: bool = True) -> None:
    """mount_setattr(2) (Linux 5.12): add MOUNT_ATTR_* flags to the mount at `fd` (O_PATH),
    and with `recursive` to every mount below it; ENOSYS on older kernels."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(_libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", flags, ctypes.byref(attr), ctypes.sizeof(attr)),
           "mount_setattr")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


RESOLVE_NO_SYMLINKS = 0x04
_SYS_OPENAT2 = 437  # unified number on every architecture


def open_no_symlinks(path: str) -> int:
    """An O_PATH fd for `path`, refusing a symlink in any component (openat2(2), Linux 5.6;
    before it, O_NOFOLLOW guards the last component only).  ELOOP names the swap."""
    how = _OpenHow(os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS)
    fd = _libc.syscall(_SYS_OPENAT2, -100, _b(path), ctypes.byref(how), ctypes.sizeof(how))  # AT_FDCWD
    if fd >= 0:
        return fd
    if ctypes.get_errno() != 38:  # ENOSYS: an older kernel
        _check(-1, "open without following symlinks", path)
    return os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result = _libc.prctl(option, arg2, arg3, arg4, arg5)
    _check(result, f"prctl({option})")
    return result


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset(caps: int, inheritable: int | None = None) -> None:
    """Set effective and permitted sets of this thread to `caps` (a bitmask), and the
    inheritable set to `inheritable` (default: `caps` too)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    inheritable = caps if inheritable is None else inheritable
    for i in range(2):
        data[i].effective = data[i].permitted = (caps >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(_libc.syscall(_SYS_CAPSET[_MACHINE], ctypes.byref(header), ctypes.byref(data)), "capset")


def last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def read_line(fd: int) -> bytes:
    """A child's one-line report on a pipe: up to its newline, or what came before EOF."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data
