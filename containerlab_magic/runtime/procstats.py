"""Usage without a cgroup: what /proc says of a container's processes (proc(5)).

Where no cgroup holds a container (a rootless lab with none delegated, a process
sandbox), `stats` still answers, from the processes themselves: PID 1 and its
descendants (found through /proc/PID/stat's ppid field).  The figures are
approximations, and say so (`source`): memory is the sum of resident set sizes
(shared pages counted in each process; no page cache), CPU is user + system time
of the live processes (what ended is gone), and the limits shown are the rlimits
that stand in for the cgroup's (rootless.py).
"""

from __future__ import annotations

import os

from .cgroups.base import Usage

SOURCE = "processes (/proc; no cgroup: approximations)"
_TICK_NS = 10**9 // os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()


def tree(root: int) -> list[int]:
    """root and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields is not None and fields[0] not in (b"Z", b"X"):
                children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if _stat(pid) is None:
            continue
        found.append(pid)
        todo += children.get(pid, [])
    return found


def usage(root: int, spec_limits=None) -> Usage:
    pids = tree(root)
    rss = cpu = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is None:
            continue
        cpu += (int(fields[11]) + int(fields[12])) * _TICK_NS  # utime, stime
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            pass
    found = Usage(memory_bytes=rss, cpu_usage_ns=cpu, pids_current=len(pids))
    if spec_limits is not None:
        found.memory_limit = spec_limits.memory
        found.pids_limit = spec_limits.pids_limit
    return found


__all__ = ["SOURCE", "tree", "usage"]
