"""The host probes behind the isolation ladder, each run in a forked child.

A probe tries one kernel operation the way a container start would do it and
reports success or the errno.  Each runs in its own forked child because what
it does cannot be undone in-process: unshare(2) of a user namespace is
permanent for the caller, a seccomp filter cannot be removed, setsid(2) moves
the process.  The child writes one JSON line to a pipe and `_exit`s; the parent
waits with a deadline.  Mechanisms: user_namespaces(7) (a new user namespace
grants a full capability set over the namespaces it owns once uid_map and
gid_map are written, after `deny` in /proc/PID/setgroups for an unprivileged
writer), newuidmap(1) with subuid(5), mount_namespaces(7), overlayfs's
`userxattr` option, pid_namespaces(7) (a fresh proc mount is refused while
the caller's /proc has masked paths: the kernel's mnt_too_revealing check),
netdevice(7) for bringing `lo` up, seccomp(2).

Forking is safe only from a single-threaded process: rungs.py calls these
from one, or from a fresh interpreter.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass

from . import linux
from .linux import (CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER,
                    CLONE_NEWUTS, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_REC)

CHILD_DEADLINE = 5.0  # seconds; a probe is a few syscalls, newuidmap the slowest (~5 ms)
HELPER_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    errno: int | None = None
    detail: str = ""


# ---- what runs in the child -------------------------------------------------------------


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def map_single() -> None:
    """unshare a user namespace and map our own uid and gid to 0 inside (one id each)."""
    uid, gid = os.getuid(), os.getgid()
    linux.unshare(CLONE_NEWUSER)
    _write("/proc/self/setgroups", "deny")  # required before an unprivileged gid_map write
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


def scratch_dir() -> str:
    """A directory to mount on inside our private mount namespace (nothing leaks out)."""
    return "/tmp" if os.path.isdir("/tmp") else "/"


def private_mounts() -> None:
    linux.unshare(CLONE_NEWNS)
    # Without this a mount under a shared host mount would propagate back to the host.
    linux.mount(None, "/", None, MS_REC | MS_PRIVATE)


def p_userns() -> str:
    linux.unshare(CLONE_NEWUSER)
    return ""


def p_map_single() -> str:
    map_single()
    return "uid " + open("/proc/self/uid_map").read().split()[1] + " is 0 inside"


def p_mount() -> str:
    map_single()
    linux.unshare(CLONE_NEWIPC)  # as cheap as it gets once the user namespace exists; tried all the same
    private_mounts()
    linux.mount("tmpfs", scratch_dir(), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
    return ""


def initial_userns() -> bool:
    """Are we in the host's user namespace?  Its uid_map is the identity over every id."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return True


def p_overlay(map_ids: bool, userxattr: bool) -> str:
    if map_ids:
        map_single()
    private_mounts()
    top = scratch_dir()
    linux.mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
    for part in ("lower", "upper", "work", "merged"):
        os.mkdir(os.path.join(top, part))
    options = f"lowerdir={top}/lower,upperdir={top}/upper,workdir={top}/work"
    if userxattr:
        options += ",userxattr"  # trusted.* xattrs are out of reach in a user namespace
    linux.mount("overlay", f"{top}/merged", "overlay", 0, options)
    with open(f"{top}/merged/written", "w") as f:  # an upper layer that takes writes
        f.write("x")
    return "the upper layer takes writes"


def _in_new_pid_ns(fn) -> None:
    """Run fn as PID 1 of the pid namespace unshared just before; raise its errno."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
            os._exit(0)
        except OSError as e:
            os._exit(min(e.errno or 1, 250))
        except BaseException:
            os._exit(251)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code:
        raise OSError(code, f"in the new PID namespace: {os.strerror(code)}")


def _mount_proc() -> None:
    linux.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def p_pidns() -> str:
    map_single()
    private_mounts()
    linux.unshare(CLONE_NEWPID)
    _in_new_pid_ns(_mount_proc)
    return ""


def p_uts() -> str:
    map_single()
    linux.unshare(CLONE_NEWUTS)
    socket.sethostname("probe")
    return ""


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sh22x"  # struct ifreq: name, then ifr_flags in the union (netdevice(7))


def lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack(IFREQ, fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def p_netns() -> str:
    map_single()
    linux.unshare(CLONE_NEWNET)
    lo_up()
    return ""


def p_root_namespaces() -> str:
    """Root's full set, without a user namespace: what a privileged start does."""
    linux.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWCGROUP)
    linux.mount(None, "/", None, MS_REC | MS_PRIVATE)
    _in_new_pid_ns(_mount_proc)
    return ""


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
BPF_RET_K, SECCOMP_RET_ALLOW = 0x06, 0x7FFF0000


def p_seccomp() -> str:
    """Install an allow-everything filter: proves a real one could be installed."""
    program = (_SockFilter * 1)(_SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    fprog = _SockFprog(1, program)
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    linux.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
    return ""


def p_sandbox() -> str:
    """What the process sandbox uses: its own session, rlimits, a private temporary dir."""
    os.setsid()
    for limit in (resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_CPU):
        resource.setrlimit(limit, resource.getrlimit(limit))  # lowering works the same way
    private = tempfile.mkdtemp(prefix="clab-probe-")
    os.rmdir(private)
    return ""


def p_map_multi(tool_uid: str, tool_gid: str, uid_range: tuple[int, int], gid_range: tuple[int, int]) -> str:
    """A child unshares a user namespace; we map it with the setuid newuidmap/newgidmap."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)  # so that our read ends (EOF) if the parent dies before it says go
        os.close(ready_r)
        try:
            linux.unshare(CLONE_NEWUSER)
        finally:
            os.write(ready_w, b"x")
            os.read(go_r, 1)
            os._exit(0)
    os.close(go_r)
    os.close(ready_w)
    try:
        os.read(ready_r, 1)
        for tool, own, (start, count) in ((tool_uid, os.getuid(), uid_range), (tool_gid, os.getgid(), gid_range)):
            argv = [tool, str(pid), "0", str(own), "1", "1", str(start), str(count)]
            run = subprocess.run(argv, capture_output=True, text=True, env={"PATH": HELPER_PATH}, cwd="/")
            if run.returncode:
                message = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
                name = os.path.basename(tool)
                raise OSError(errno.EPERM, message if message.startswith(name) else f"{name}: {message}")
        return f"0 -> {os.getuid()}, 1..{uid_range[1]} -> {uid_range[0]}.. (newuidmap)"
    finally:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)


# ---- the parent's side --------------------------------------------------------------------


def run_child(fn, *args) -> Outcome:
    """fork; the child runs fn(*args) and reports; the parent waits with a deadline."""
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError as e:  # EAGAIN: RLIMIT_NPROC or the pids controller says no more processes
        os.close(r)
        os.close(w)
        return Outcome(False, e.errno, f"fork: {e.strerror}")
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        try:
            report = {"ok": True, "detail": fn(*args) or ""}
        except OSError as e:
            report = {"ok": False, "errno": e.errno, "detail": e.strerror or str(e)}
        except BaseException as e:  # noqa: BLE001 - a probe's bug is a failed probe, not a crash
            report = {"ok": False, "detail": f"{type(e).__name__}: {e}"}
        os.write(w, json.dumps(report).encode()[:4000])
        os._exit(0)
    os.close(w)
    try:
        data = _read_until_eof(r, time.monotonic() + CHILD_DEADLINE)
    finally:
        os.close(r)
        _reap(pid)
    if not data:
        return Outcome(False, None, "the probe's child died without a report")
    report = json.loads(data)
    return Outcome(report["ok"], report.get("errno"), report.get("detail", ""))


def _read_until_eof(fd: int, deadline: float) -> bytes:
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b""
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reap(pid: int) -> None:
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done == 0:  # still running after the deadline (or about to exit): ours to end
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
