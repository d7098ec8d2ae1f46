"""`top NAME`: the processes of a container, read from /proc.

Every process of a container shares its PID namespace, so the processes are
those whose /proc/PID/ns/pid names the same namespace as the container's
PID 1 (see pid_namespaces(7)); exec'd processes are in it too.  PIDs are the
host's, as docker top shows them; user names come from the container's own
/etc/passwd (read through inroot.Root, never the host's), CPU time from the
utime and stime fields of /proc/PID/stat (proc(5)).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..runtime.errors import Conflict
from .inroot import Root

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Process:
    pid: int
    user: str
    cpu_seconds: float
    command: str


def _pid_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _users(pid: int) -> dict[int, str]:
    """uid -> name from the container's /etc/passwd ({} if it has none)."""
    try:
        with Root(f"/proc/{pid}/root", "the container") as root:
            parent = root.directory("/etc")
            try:
                fd = os.open("passwd", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            finally:
                os.close(parent)
            with open(fd, encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 20)
    except OSError:
        return {}
    users = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2].isdigit():
            users.setdefault(int(fields[2]), fields[0])
    return users


def _process(pid: str, users: dict[int, str]) -> Process | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/status") as f:
            uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    except (OSError, StopIteration, ValueError):
        return None  # ended while we looked
    comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
    fields = stat[stat.rindex(b")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    command = cmdline.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or f"[{comm}]"
    return Process(int(pid), users.get(uid, str(uid)), ticks / CLOCK_TICKS, command)


def top(engine, ref: str) -> list[Process]:
    """The container's processes, by PID."""
    state = engine.inspect(ref)
    if state.get("status") != "running":
        raise Conflict(f"container {ref} is {state.get('status')}: top needs a running container")
    pid = state["pid"]
    namespace = _pid_ns(pid)
    if namespace is None or namespace == _pid_ns("self"):
        raise Conflict(f"container {ref} has no PID namespace of its own to list")
    users = _users(pid)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _pid_ns(entry) == namespace:
            process = _process(entry, users)
            if process is not None:
                found.append(process)
    return sorted(found, key=lambda p: p.pid)
