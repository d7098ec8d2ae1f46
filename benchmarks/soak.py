"""Soak: thousands of start/stop cycles mixing every option family, and nothing may grow.

    python benchmarks/soak.py [--cycles 1000] [--every 50] [--json PATH]

Each cycle starts a container through one Engine (as a notebook kernel holds one)
with the next of twelve option families in turn: plain, limits (memory, CPUs,
pids), a writable bind, a bridge network, a published port (fetched through the
shim's proxy), exec into a detached container, detach then stop, pause and
unpause, a live limit update, an OOM kill, a --timeout, and kill.  Every
`--every` cycles it samples the engine's process (fds, threads, RSS), its shim's
(the same), and what the lab holds on the host for this state root: mounts,
cgroup directories, veths, state directories (warm spares are the shim's stock,
not counted), once the last cycle's deferred cleanup is done.  It prints the samples, the starts per second, and exits 1 if
anything grew beyond noise, which here means: every count at the end no higher
than its highest of the first two samples (spares and lazily opened files
settle in the first cycles), and each RSS less than 10 MiB above its first
sample.  Needs root.  Leaves nothing: its state root is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from containerlab_magic.runtime.engine import Engine
from containerlab_magic.runtime.spec import ContainerSpec, Limits, Mount, PortMap

MiB = 1 << 20
RSS_SLACK = 10 * MiB
NET = "soaknet"


def busybox(*command: str, **fields) -> ContainerSpec:
    return ContainerSpec(tuple(command), image="busybox", **fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cycles:
    """The twelve option families; each starts (at least) one container and ends it."""

    def __init__(self, engine: Engine, scratch: str):
        self.engine, self.scratch = engine, scratch
        self.families = [self.plain, self.limits, self.bind, self.bridge, self.port, self.exec, self.stop,
                         self.pause, self.update, self.oom, self.timeout, self.kill]

    def ok(self, spec: ContainerSpec, code: int = 0):
        result = self.engine.run(spec).wait(timeout=60)
        if result.exit_code != code:
            raise RuntimeError(f"{spec.command}: {result.describe()}")
        return result

    def detached(self, *command: str, **fields) -> str:
        return self.engine.run(busybox(*command, detach=True, **fields)).id

    def plain(self):
        self.ok(busybox("true"))

    def limits(self):
        self.ok(busybox("true", limits=Limits(memory=64 * MiB, cpus=0.5, pids_limit=64)))

    def bind(self):
        self.ok(busybox("sh", "-c", "echo x > /data/f && cat /data/f >/dev/null && rm /data/f",
                        mounts=(Mount(self.scratch, "/data"),)))

    def bridge(self):
        self.ok(busybox("true", network=NET))

    def port(self):
        port = free_port()
        cid = self.detached("httpd", "-f", "-p", "80", "-h", "/etc", network=NET,
                            ports=(PortMap(port, 80),))
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=2) as r:
                        r.read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            self.engine.rm(cid, force=True)

    def exec(self):
        cid = self.detached("sleep", "30")
        try:
            result = self.engine.exec(cid, ["echo", "hi"]).wait(timeout=30)
            if result.exit_code != 0:
                raise RuntimeError(f"exec: {result.describe()}")
        finally:
            self.engine.rm(cid, force=True)

    def stop(self):
        cid = self.detached("sleep", "30", init=True)  # (--init forwards SIGTERM: stop is quick)
        self.engine.stop(cid, grace=2)
        self.engine.rm(cid)

    def pause(self):
        cid = self.detached("sleep", "30", limits=Limits(pids_limit=64))
        try:
            self.engine.pause(cid)
            self.engine.unpause(cid)
        finally:
            self.engine.rm(cid, force=True)

    def update(self):
        cid = self.detached("sleep", "30", limits=Limits(memory=64 * MiB))
        try:
            self.engine.update(cid, Limits(memory=96 * MiB))
        finally:
            self.engine.rm(cid, force=True)

    def oom(self):
        result = self.ok(busybox("sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a)",
                                 limits=Limits(memory=16 * MiB)), code=137)
        if not result.oom_killed:
            raise RuntimeError(f"expected an OOM kill: {result.describe()}")

    def timeout(self):
        result = self.ok(busybox("sleep", "10", timeout=0.2), code=137)
        if not result.timed_out:
            raise RuntimeError(f"expected a timeout: {result.describe()}")

    def kill(self):
        cid = self.detached("sleep", "30")
        self.engine.kill(cid)
        self.engine.wait(cid, timeout=10)
        self.engine.rm(cid)


# ---------------------------------------------------------------- sampling

def process(pid: int | None) -> dict:
    if not pid:
        return {"fds": 0, "threads": 0, "rss": 0}
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": len(os.listdir(f"/proc/{pid}/task")), "rss": rss}


def spares(state: str) -> set[str]:
    found = set()
    root = os.path.join(state, "containers")
    for cid in os.listdir(root) if os.path.isdir(root) else ():
        try:
            with open(os.path.join(root, cid, "state.json")) as f:
                if json.load(f).get("status") == "spare":
                    found.add(cid)
        except (OSError, ValueError):
            pass
    return found


def host(state: str) -> dict:
    from containerlab_magic.runtime.network.state import NetworkState

    stock = spares(state)
    with open("/proc/self/mountinfo") as f:
        mounts = sum(1 for line in f if state in line and not any(cid in line for cid in stock))
    groups = 0
    for controller in os.listdir("/sys/fs/cgroup"):
        lab = os.path.join("/sys/fs/cgroup", controller, "containerlab")
        for _root, dirs, _files in os.walk(lab):
            groups += sum(1 for d in dirs if len(d) == 64 and d not in stock
                          and os.path.isdir(os.path.join(state, "containers", d)))
    links = sum(1 for alias in NetworkState(state).links().values()
                if ":ctr:" in alias and not any(cid in alias for cid in stock))
    root = os.path.join(state, "containers")
    states = len(set(os.listdir(root)) - stock) if os.path.isdir(root) else 0
    return {"mounts": mounts, "cgroups": groups, "links": links, "states": states}


def settled(state: str, timeout: float = 3.0) -> dict:
    """The host's counts once the last cycle's cleanup is done: the shim removes a
    container's cgroup and state when it is idle for 50 ms (exits.py), so a sample taken
    at once may still see the last one.  What is still there after `timeout` stays."""
    deadline = time.monotonic() + timeout
    while True:
        counts = host(state)
        if not any(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def sample(engine: Engine, cycle: int, started: float) -> dict:
    counts = settled(engine.state_root)
    me, shim = process(os.getpid()), process(engine.shim_pid)
    return {"cycle": cycle, "seconds": round(time.monotonic() - started, 1),
            "engine_fds": me["fds"], "engine_threads": me["threads"], "engine_rss": me["rss"],
            "shim_fds": shim["fds"], "shim_threads": shim["threads"], "shim_rss": shim["rss"], **counts}


COUNTS = ("engine_fds", "engine_threads", "shim_fds", "shim_threads", "mounts", "cgroups", "links", "states")


def growth(samples: list[dict]) -> list[str]:
    """What grew beyond noise (see the module docstring)."""
    if len(samples) < 3:
        return []
    first, last = samples[:2], samples[-1]
    grew = [f"{k} {max(s[k] for s in first)} -> {last[k]}" for k in COUNTS if last[k] > max(s[k] for s in first)]
    for k in ("engine_rss", "shim_rss"):
        if last[k] - samples[0][k] >= RSS_SLACK:
            grew.append(f"{k} {samples[0][k] / MiB:.1f} -> {last[k] / MiB:.1f} MiB")
    return grew


def table(samples: list[dict]) -> str:
    head = ["cycle", "s", "eng fds", "thr", "RSS MiB", "shim fds", "thr", "RSS MiB", "mounts", "cgroups", "links",
            "states"]
    rows = [[s["cycle"], s["seconds"], s["engine_fds"], s["engine_threads"], f"{s['engine_rss'] / MiB:.1f}",
             s["shim_fds"], s["shim_threads"], f"{s['shim_rss'] / MiB:.1f}", s["mounts"], s["cgroups"], s["links"],
             s["states"]] for s in samples]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  " + "  ".join(str(v).rjust(w) for v, w in zip(r, widths)) for r in [head, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000, help="start/stop cycles (default 1000)")
    parser.add_argument("--every", type=int, default=50, help="sample after every N cycles (default 50)")
    parser.add_argument("--json", metavar="PATH", help="also write the samples as JSON")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.every < 1:
        parser.error("--cycles and --every must be at least 1")
    if os.geteuid() != 0:
        print("soak.py needs root (namespaces, mounts, cgroups)", file=sys.stderr)
        return 2
    from containerlab_magic.runtime.paths import state_root

    parent = os.path.dirname(state_root())
    os.makedirs(parent, exist_ok=True)
    state = tempfile.mkdtemp(prefix="containerlab-soak-", dir=parent)
    scratch = tempfile.mkdtemp(prefix="containerlab-soak-bind-")
    engine = Engine(state_dir=state)
    samples, failures = [], []
    started = time.monotonic()
    print(f"soak: {args.cycles} start/stop cycles of 12 option families, sampled every {args.every}; "
          f"state {state}", flush=True)
    try:
        engine.networks().create(NET)
        cycles = Cycles(engine, scratch)
        for i in range(1, args.cycles + 1):
            family = cycles.families[(i - 1) % len(cycles.families)]
            try:
                family()
            except Exception as e:  # noqa: BLE001 - counted and shown; the soak goes on
                failures.append(f"cycle {i} ({family.__name__}): {type(e).__name__}: {e}")
            if i % args.every == 0 or i == args.cycles:
                samples.append(sample(engine, i, started))
        elapsed = time.monotonic() - started
    finally:
        try:
            engine.networks().remove(NET)
        except Exception as e:  # noqa: BLE001
            failures.append(f"network rm: {e}")
        engine.close()
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    print(table(samples))
    grew = growth(samples)
    print(f"\n{args.cycles} cycles in {elapsed:.1f} s: {args.cycles / elapsed:.1f} starts/s held (mixed families; "
          f"some cycles start and stop more than one process)")
    print(f"failures: {len(failures)}" + "".join(f"\n  {f}" for f in failures[:10]))
    print("growth beyond noise: " + ("; ".join(grew) if grew else "none"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cycles": args.cycles, "seconds": elapsed, "samples": samples, "growth": grew,
                       "failures": failures}, f, indent=1)
    return 1 if grew or failures else 0


if __name__ == "__main__":
    sys.exit(main())
