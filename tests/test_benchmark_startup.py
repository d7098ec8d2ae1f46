"""benchmarks/startup.py runs end to end in its small mode and reports every row.

Checks the shape of what it prints and writes (every contender present, with
figures or an explicit "unavailable" reason), never the timings themselves.
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

STARTUP_ROWS = ("engine: run().wait()", "engine, prewarm off (cold)", "crun run (via nsenter)", "nsenter alone (crun's wrapper)", "runc run",
                "bwrap --unshare-all", "unshare + chroot", "floor: fork+unshare+exec")
MEMORY_ROWS = ("engine, memory held", "engine, memory freed", "engine started while holding, memory held",
               "engine started while holding, memory freed", "floor, memory held")


def _has_figures(row: dict) -> bool:
    return "unavailable" in row or (row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"] and row["n"] > 0)


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def _bench_roots() -> set[str]:
    """The benchmark makes its state root beside the lab's (see startup.main)."""
    from containerlab_magic.runtime.paths import state_root

    parent = os.path.dirname(state_root())
    return {n for n in os.listdir(parent) if n.startswith("containerlab-bench-")} if os.path.isdir(parent) else set()


@needs_root
@pytest.mark.slow
def test_startup_benchmark_quick(tmp_path, module_no_leaks):
    links_before, roots_before = _links(), _bench_roots()
    report = tmp_path / "startup.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--runs", "5", "--quick", "--json", str(report)],
                          check=False, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
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
    assert "unavailable" not in data["startup"]["floor: fork+unshare+exec"]
    assert set(MEMORY_ROWS) <= set(data["memory"]["rows"])
    labels = [t["label"] for t in data["targets"]]
    assert {"engine / crun", "engine / floor"} <= set(labels)
    assert all(isinstance(t["met"], bool) or t["value"] is None for t in data["targets"])
    cgroups = data["cgroups"]
    assert "skipped" in cgroups or all(_has_figures(r) for r in cgroups["rows"].values())
    bridge = data["bridge"]
    if "skipped" in bridge:
        assert "skipped: bridge networking not wired" in out
    else:
        assert {"engine --net none", "engine --net bridge", "ip netns + veth + exec + del"} <= set(bridge["rows"])
        assert "bridge adds" in out
    phases = {p["phase"] for p in data["profile"]["phases"]}
    assert {"shim: spawn PID 1", "pid1: execve", "engine: wait() returned"} <= phases
    assert data["rootfs_unchanged"] is True
    # the benchmark cleans up after itself: its state root, its veths and bridge
    assert _bench_roots() == roots_before
    assert _links() == links_before, _links() ^ links_before
