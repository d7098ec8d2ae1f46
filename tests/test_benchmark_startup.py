"""benchmarks/startup.py runs end to end in its small mode and reports every row.

Checks the shape of what it prints and writes (every contender present, with
figures or an explicit "unavailable" reason), never the timings themselves.
The engine's own rows (and the CLI's) must have figures, and the bridge section must
run: a skipped section is a failure, with the benchmark's reason.  Nothing may be
left behind: state roots, veths, cgroups, mounts, processes or temp dirs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import needs_root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "startup.py")

OURS = ("engine: run().wait()", "engine, prewarm off (cold)", "cli: containerlab-magic run (whole process)",
        "  the same, this Python's site-packages", "  python -c pass (the venv)", "floor: fork+unshare+exec")
STARTUP_ROWS = ("engine: run().wait()", "engine, prewarm off (cold)", "cli: containerlab-magic run (whole process)",
                "  the same, this Python's site-packages", "  python -c pass (the venv)", "  python -c pass (this Python)",
                "crun run (via nsenter)", "nsenter alone (crun's wrapper)", "runc run",
                "bwrap --unshare-all", "unshare + chroot", "floor: fork+unshare+exec")
MEMORY_ROWS = ("engine, memory held", "engine, memory freed", "engine started while holding, memory held",
               "engine started while holding, memory freed", "floor, memory held")


def _has_figures(row: dict) -> bool:
    return "unavailable" in row or (row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"] and row["n"] > 0)


def _links_of(state_dir: str, pid: int) -> set[str]:
    """Links and named netns benchmark process `pid` made: its state root's (their alias
    carries the root's tag) and its ip(8) runs' (named after the PID).  Other runs on
    this host add and remove their own links meanwhile: those are not compared."""
    from containerlab_magic.runtime.network.state import NetworkState

    own = (f"cbh{pid}"[:15], f"cbc{pid}"[:15])
    found = set(NetworkState(state_dir).links()) | {name for name in own if os.path.exists(f"/sys/class/net/{name}")}
    if os.path.exists(f"/run/netns/clabbench{pid}"):
        found.add(f"netns clabbench{pid}")
    return found


def _bench_cgroups(pid: int) -> set[str]:
    """Groups benchmark process `pid` made: runc's and crun's bench-RUNTIME-PID under
    /containerlab, its cgroup section's startup-bench-PID-N."""
    names = (f"bench-runc-{pid}", f"bench-crun-{pid}", f"startup-bench-{pid}-")
    found = set()
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        found |= {os.path.join(dirpath, d) for d in dirnames if d.startswith(names)}
        if dirpath != "/sys/fs/cgroup":  # below a hierarchy, only the lab's subtree
            dirnames[:] = [d for d in dirnames if d == "containerlab" or os.path.basename(dirpath) == "containerlab"]
    return found


def _naming(paths: list[str]) -> dict:
    """Processes and mounts that name one of `paths`, and those of `paths` that still exist."""
    marks = [p.encode() for p in paths]
    procs = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if any(m in f.read() for m in marks):
                    procs.add(int(pid))
        except OSError:
            pass
    with open("/proc/self/mountinfo", "rb") as f:
        mounts = [line for line in f if any(m in line for m in marks)]
    return {k: v for k, v in {"processes": procs, "mounts": mounts,
                              "dirs": [p for p in paths if os.path.exists(p)]}.items() if v}


def _bench_roots() -> set[str]:
    """The benchmark makes its state root beside the lab's (see startup.main)."""
    from containerlab_magic.runtime.paths import state_root

    parent = os.path.dirname(state_root())
    return {n for n in os.listdir(parent) if n.startswith("containerlab-bench-")} if os.path.isdir(parent) else set()


@needs_root
@pytest.mark.slow
def test_startup_benchmark_quick(tmp_path, module_no_leaks):
    roots_before = _bench_roots()
    report = tmp_path / "startup.json"
    proc = subprocess.Popen([sys.executable, SCRIPT, "--runs", "5", "--quick", "--json", str(report)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own child, by its PID
        stdout, stderr = proc.communicate()
        pytest.fail(f"the benchmark took over 240 s: {stdout[-2000:]}{stderr[-2000:]}")
    assert proc.returncode == 0, stdout + stderr
    out = stdout
    for row in STARTUP_ROWS + MEMORY_ROWS:
        assert f"  {row}" in out, f"row {row!r} missing from:\n{out}"
    for heading in ("startup:", "targets (ratios of p50):", "cgroups:", "network:", "profile:", "memory:"):
        assert heading in out
    assert "section failed" not in out, out
    assert "shared rootfs unchanged: yes" in out, out

    data = json.loads(report.read_text())
    assert set(STARTUP_ROWS) <= set(data["startup"])
    assert all(_has_figures(r) for r in data["startup"].values()), data["startup"]
    assert data["startup"]["engine: run().wait()"].get("ratio") == 1.0
    for row in OURS:  # another tool may be missing here; our own rows may not
        assert "unavailable" not in data["startup"][row], (row, data["startup"][row])
    assert set(MEMORY_ROWS) <= set(data["memory"]["rows"])
    labels = [t["label"] for t in data["targets"]]
    assert {"engine / crun", "engine / floor", "cli / crun (whole processes)"} <= set(labels)
    assert all(isinstance(t["met"], bool) or t["value"] is None for t in data["targets"])
    cgroups = data["cgroups"]
    assert "skipped" in cgroups or all(_has_figures(r) for r in cgroups["rows"].values())
    bridge = data["bridge"]
    assert "skipped" not in bridge, f"the bridge section did not run: {bridge['skipped']}"
    assert {"engine --net none", "engine --net bridge", "ip netns + veth + exec + del"} <= set(bridge["rows"])
    for row in ("engine --net none", "engine --net bridge"):
        assert "unavailable" not in bridge["rows"][row], (row, bridge["rows"][row])
    assert "bridge adds" in out
    phases = {p["phase"] for p in data["profile"]["phases"]}
    assert {"shim: spawn PID 1", "pid1: execve", "engine: wait() returned"} <= phases
    assert data["rootfs_unchanged"] is True
    # the benchmark cleans up after itself: its state root, its veths and bridge
    assert _bench_roots() == roots_before
    assert not _links_of(data["state_dir"], proc.pid), _links_of(data["state_dir"], proc.pid)
    assert not _bench_cgroups(proc.pid), _bench_cgroups(proc.pid)
    left = _naming([data["state_dir"], data["work_dir"]])
    assert not left, f"left behind by the benchmark: {left}"
    assert "could not remove" not in out, out[-800:]
