"""benchmarks/rootless.py in a short version: every contender ran, as root and as a real
unprivileged user, and the figures are there (ratios are reported, never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import needs_root

pytestmark = needs_root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_rootless_benchmark_times_every_contender(tmp_path, module_no_leaks):
    report = tmp_path / "rootless.json"
    r = subprocess.run([sys.executable, "-I", os.path.join(ROOT, "benchmarks", "rootless.py"), "--rounds", "1",
                        "--runs", "5", "--json", str(report)], cwd="/", capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(report.read_text())
    who = ("root", "root, no cgroups", "rootless multi-id", "rootless single-id")
    assert set(figures["rows"]) == {f"{w} {mode}" for w in who for mode in ("prewarmed", "cold")}
    assert all(row["n"] == 5 and 0 < row["p50_ms"] <= row["p95_ms"] for row in figures["rows"].values())
    assert set(figures["targets"]) == {f"{w} / {base}, {mode}" for w in who[2:] for base in who[:2]
                                       for mode in ("prewarmed", "cold")}
    assert not [d for d in os.listdir("/tmp") if d.startswith("clab-bench-rootless-")]
