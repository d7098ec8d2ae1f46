"""Where one Engine start-to-exit goes: timestamps from the engine, the shim and the container's children.

`ProfiledEngine` is an Engine whose shim is this file run as a script: it
wraps the shim's steps (and, in the forked children, unshare, the rootfs
mounts, pivot_root, privileges, exec) with marks, then runs the real shim.
Each mark is one line "pid monotonic_ns name" appended to a file; CLOCK_MONOTONIC
is the same clock in every process, so the engine's marks line up with the
children's.  Nothing in the runtime is changed: the wrapping is monkeypatching
in the profiled shim only.  Marks cost a few microseconds each (about 60 per run).

`analyse(path, runs)` turns the marks into per-phase medians:
start offset from the moment engine.run() was called, and duration.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import defaultdict

MARK_FD = 250
SPAWN = "shim: spawn PID 1"
PID1_START = "pid1: start"
EXECVE = "pid1: execve"
ON_EXIT = "shim: on exit (total)"
SEND_EVENT = "shim: send exit event"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from containerlab_magic.runtime.engine import Engine


def _mark(name: str) -> None:
    os.write(MARK_FD, f"{os.getpid()} {time.monotonic_ns()} {name}\n".encode())


def _timed(name: str, fn):
    def wrapper(*args, **kwargs):
        _mark(name + ">")
        try:
            return fn(*args, **kwargs)
        finally:
            _mark(name + "<")
    wrapper.__wrapped__ = fn
    return wrapper


def _entry(name: str, fn):
    """For functions that never return (they exec or _exit): mark the entry only."""
    def wrapper(*args, **kwargs):
        _mark(name)
        return fn(*args, **kwargs)
    return wrapper


SKIPPED: list[str] = []  # what the runtime in this tree does not have (it is being changed)


def _patch(obj, attr: str, name: str, entry_only: bool = False) -> None:
    fn = getattr(obj, attr, None)
    if fn is None:
        SKIPPED.append(f"{getattr(obj, '__name__', obj)}.{attr}")
        return
    setattr(obj, attr, (_entry if entry_only else _timed)(name, fn))


def instrument() -> None:
    """Wrap the shim's and the children's steps with marks (in the profiled shim process).

    Tolerant of the runtime changing under it: a missing function is skipped
    (and named in the marks file), never an error.
    """
    from containerlab_magic.runtime import child, linux, protocol, rootfs, security
    from containerlab_magic.runtime.plan import steps as plan_steps
    from containerlab_magic.runtime.shim import exits, procs, server, start, stdio
    from containerlab_magic.runtime.cgroups import base as cgroup_base
    from containerlab_magic.runtime.cgroups import open_manager
    from containerlab_magic.runtime.cgroups.v1 import manager as v1
    from containerlab_magic.runtime.cgroups.v2 import manager as v2
    from containerlab_magic.runtime.images import ImageStore
    from containerlab_magic.runtime.spec import ContainerSpec
    from containerlab_magic.runtime.state import StateStore

    # shim, per request
    _patch(server.Shim, "_on_message", "shim: handle request (total)")
    ContainerSpec.from_json = staticmethod(_timed("shim: parse spec", ContainerSpec.from_json))
    shim_steps = [
        (ImageStore, "resolve", "shim: resolve image"),
        (StateStore, "make", "shim: state dir create"),
        (StateStore, "write", "shim: state.json write"),
        (StateStore, "remove", "shim: state dir remove"),
        (stdio.Stdio, "make", "shim: pipes"),
        (start.rootfs, "plan", "shim: rootfs plan"),
        (procs.Spawner, "spawn", SPAWN),
        (linux, "clone", "shim: clone(2) PID 1 with its namespaces"),
        (plan_steps.Network, "run", "shim: network attach"),
        (start, "proc_start_time", "shim: read /proc/PID/stat"),
        (server.Shim, "track", "shim: track (pidfd, release PID 1)"),
        (exits.Exits, "on_exit", ON_EXIT),
        (exits.Exits, "_cleanup", "shim: cleanup (total)"),
        (server.Shim, "send_event", SEND_EVENT),
        (protocol, "send", "shim: socket send (sum)"),
        (cgroup_base.Cgroup, "oom_killed", "shim: cgroup oom_killed (a stats read)"),
        (cgroup_base.Cgroup, "add", "shim: cgroup add PID 1"),
    ]
    for obj, attr, name in shim_steps:
        _patch(obj, attr, name)
    if open_manager() is not None:
        _patch(type(open_manager()), "create", "shim: cgroup create")
    for cls in (v1.V1Cgroup, v2.V2Cgroup):
        for verb, label in (("stats", "shim: cgroup stats (sum)"),
                            ("kill_all", "shim: cgroup kill_all"), ("remove", "shim: cgroup remove")):
            if verb in vars(cls):
                _patch(cls, verb, label)
    try:
        from containerlab_magic.runtime.network import NetworkManager

        _patch(NetworkManager, "detach", "shim: network detach")
    except ImportError:
        pass

    # the forked children (marks carry their own pids)
    child_steps = [
        (child, "start_container", "pid1: cloned, running", True),
        (child, "_pid1", PID1_START, True),
        (rootfs, "mount_root", "pid1: overlay root (tmpfs + overlay)", False),
        (rootfs, "execute", "pid1: rootfs steps (total)", False),
        (rootfs, "pivot", "pid1: pivot_root + detach old root", False),
        (child.socket, "sethostname", "pid1: sethostname", False),
        (child, "_loopback_up", "pid1: lo up", False),
        (child, "_lookup_user", "pid1: user lookup", False),
        (security, "drop_bounding", "pid1: drop bounding caps", False),
        (security, "no_new_privs", "pid1: no_new_privs", False),
        (security, "switch_user", "pid1: capset/setuid", False),
        (security.keyring, "join_new_session", "pid1: own session keyring", False),
        (security.seccomp, "load", "pid1: seccomp load (prctl)", False),
    ]
    for obj, attr, name, entry_only in child_steps:
        _patch(obj, attr, name, entry_only)
    for step in ("Mount", "Remount", "ReadOnly", "MakeTarget", "Device", "Symlink"):
        if hasattr(rootfs, step):
            _patch(getattr(rootfs, step), "run", f"pid1: step {step} (sum)")
    # by the role of the process that calls them (see ROLES)
    _patch(linux, "unshare", "any: unshare")
    _patch(linux, "mount", "any: mount (sum)")
    real_fork = os.fork

    def fork() -> int:
        _mark("any: fork>")
        pid = real_fork()
        _mark("forked child runs" if pid == 0 else "any: fork<")
        return pid

    os.fork = fork
    real_closerange = os.closerange

    def closerange(low: int, high: int) -> None:  # keep the marks fd open until exec
        _mark("pid1: closerange>")
        if low <= MARK_FD < high:
            real_closerange(low, MARK_FD)
            real_closerange(MARK_FD + 1, high)
        else:
            real_closerange(low, high)
        _mark("pid1: closerange<")

    os.closerange = closerange
    _patch(os, "execvpe", EXECVE, entry_only=True)


def shim_main(argv: list[str]) -> int:
    marks = argv[argv.index("--marks") + 1]
    rest = argv[:argv.index("--marks")] + argv[argv.index("--marks") + 2:]
    fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.dup2(fd, MARK_FD, inheritable=False)
    os.close(fd)
    instrument()
    with open(marks + ".skipped", "w") as f:
        f.write("".join(name + "\n" for name in SKIPPED))
    from containerlab_magic.runtime.shim.main import main

    return main(rest)


class ProfiledEngine(Engine):
    """An Engine whose shim writes marks to `marks`; it marks its own run() and wait() too."""

    def __init__(self, marks: str, **kwargs):
        super().__init__(**kwargs)
        self.marks = marks
        self._fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _shim_command(self, *extra: str) -> list[str]:
        return [sys.executable, os.path.abspath(__file__), "--marks", self.marks, "--state", self.state_root,
                "--data", self.data_root, *extra]

    def mark(self, name: str) -> None:
        os.write(self._fd, f"{os.getpid()} {time.monotonic_ns()} {name}\n".encode())

    def close(self) -> None:
        super().close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def profiled_run(engine: ProfiledEngine, spec) -> None:
    engine.mark("engine: run() call>")
    box = engine.run(spec)
    engine.mark("engine: run() call<")
    result = box.wait()
    engine.mark("engine: wait() returned")
    if result.exit_code != 0:
        raise RuntimeError(f"profiled run failed: {result.describe()}")


ROLES = {"shim: handle request (total)": "shim", "pid1: cloned, running": "pid1", PID1_START: "pid1"}

# Waypoints of one run, in the order they happen, and what lies between them.
REQUEST = "shim: handle request (total)"
SEGMENTS = (
    ("engine: run() call>", REQUEST + ">", "engine -> shim: request on the socket"),
    (REQUEST + ">", SPAWN + ">", "shim: parse, image, state dir, cgroup create, plan"),
    (SPAWN + ">", SPAWN + "<", "shim: fork/clone until PID 1's pid is known"),
    (SPAWN + "<", REQUEST + "<", "shim: cgroup add, state.json, pidfd, reply with the pipes"),
    (REQUEST + "<", "engine: run() call<", "shim reply -> engine run() returns"),
    (SPAWN + ">", PID1_START, "spawn started -> PID 1 running Python"),
    (PID1_START, EXECVE, "PID 1: overlay, mounts, pivot_root, hostname, lo, caps"),
    (EXECVE, ON_EXIT + ">", "execve, /bin/true, exit, shim woken by pidfd"),
    (ON_EXIT + ">", SEND_EVENT + "<", "shim: reap, usage, send the exit event"),
    (SEND_EVENT + "<", "engine: wait() returned", "exit event -> engine wait() returns"),
    ("engine: run() call>", "engine: wait() returned", "total (profiled)"),
)


def analyse(path: str) -> tuple[list[dict], list[dict]]:
    """(phases, segments): per phase the median start offset from engine.run() and median
    duration (ms), sorted by start; per segment of SEGMENTS the median length."""
    with open(path) as f:
        marks = [(int(p), int(t), n) for p, t, n in (line.rstrip("\n").split(" ", 2) for line in f)]
    marks.sort(key=lambda m: m[1])
    runs: list[list[tuple[int, int, str]]] = []
    for m in marks:
        if m[2] == "engine: run() call>":
            runs.append([])
        if runs:
            runs[-1].append(m)
    starts: dict[str, list[float]] = defaultdict(list)
    durations: dict[str, list[float]] = defaultdict(list)
    lengths: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        t0 = run[0][1]
        roles = {pid: ROLES[name.rstrip("<>")] for pid, _, name in run if name.rstrip("<>") in ROLES}
        open_: dict[tuple[int, str], list[int]] = defaultdict(list)
        per_run_start: dict[str, float] = {}
        per_run_sum: dict[str, float] = defaultdict(float)
        points: dict[str, int] = {}
        for pid, t, name in run:
            if name.startswith("any: "):
                name = f"{roles.get(pid, '?')}: {name[5:]}"
            if not name.endswith("<"):
                points.setdefault(name, t)
            if name.endswith(">"):
                open_[(pid, name[:-1])].append(t)
            elif name.endswith("<"):
                if open_[(pid, name[:-1])]:  # an end whose start was in an earlier run is not ours
                    begin = open_[(pid, name[:-1])].pop()
                    points.setdefault(name, t)
                    per_run_start.setdefault(name[:-1], (begin - t0) / 1e6)
                    per_run_sum[name[:-1]] += (t - begin) / 1e6
            else:
                per_run_start.setdefault(name, (t - t0) / 1e6)
        for name, start in per_run_start.items():
            starts[name].append(start)
            if name in per_run_sum:
                durations[name].append(per_run_sum[name])
        for a, b, label in SEGMENTS:
            if a in points and b in points and points[b] >= points[a]:
                lengths[label].append((points[b] - points[a]) / 1e6)
    phases = [{"phase": name, "start_ms": round(statistics.median(starts[name]), 3),
               "duration_ms": round(statistics.median(durations[name]), 3) if durations.get(name) else None,
               "runs": len(starts[name])}
              for name in starts]
    phases.sort(key=lambda r: r["start_ms"])
    segments = [{"segment": label, "ms": round(statistics.median(lengths[label]), 3), "runs": len(lengths[label])}
                for _, _, label in SEGMENTS if lengths.get(label)]
    return phases, segments


if __name__ == "__main__":
    sys.exit(shim_main(sys.argv[1:]))
