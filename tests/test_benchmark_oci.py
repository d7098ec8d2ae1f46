"""benchmarks/oci.py in a short version: ours, runc and crun each ran a bundle as whole
processes and the figures are there (ratios are reported, never asserted); nothing is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import needs_root

pytestmark = needs_root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_oci_benchmark_times_ours_beside_runc_and_crun(tmp_path, module_no_leaks):
    report = tmp_path / "oci.json"
    r = subprocess.run([sys.executable, "-I", os.path.join(ROOT, "benchmarks", "oci.py"), "--rounds", "1",
                        "--runs", "4", "--json", str(report)], cwd="/", capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(report.read_text())
    ours = [f"containerlab-magic-runtime run ({kind} shim)" for kind in ("warm", "cold")]
    assert set(ours + ["runc run"]) <= set(figures["rows"]), figures  # runc and ours always run here
    assert set(figures["rows"]) | set(figures["unavailable"]) >= {"crun run"}, "crun neither ran nor said why"
    assert all(row["n"] == 4 and 0 < row["p50_ms"] <= row["p95_ms"] for row in figures["rows"].values())
    assert f"{ours[0]} / runc run" in figures["ratios"] and figures["ratios"]["the runtime's imports, ms"] > 0
    assert not [d for d in os.listdir("/tmp") if d.startswith(("clab-bench-oci-", "containerlab-bench-venv-"))]
