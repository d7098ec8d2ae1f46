"""benchmarks/soak.py in CI's short version: 200 cycles of every option family, and
nothing grows (its own check: fds, threads, RSS of engine and shim, mounts, cgroups,
veths, state directories); `make reliability` runs the full 1000."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import needs_root

pytestmark = needs_root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_hundred_cycles_of_every_family_leave_nothing_growing(tmp_path, module_no_leaks):
    report = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, "-I", os.path.join(ROOT, "benchmarks", "soak.py"), "--cycles", "200",
                        "--every", "40", "--json", str(report)], cwd="/", capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    figures = json.loads(report.read_text())
    assert figures["failures"] == [], figures["failures"]
    assert figures["growth"] == [], r.stdout
    assert r.returncode == 0, r.stdout + r.stderr
    assert [s["cycle"] for s in figures["samples"]] == [40, 80, 120, 160, 200]
    last = figures["samples"][-1]
    # between cycles nothing of a container is left: no mount, group, veth or state of one
    assert (last["mounts"], last["cgroups"], last["links"], last["states"]) == (0, 0, 0, 0)
    assert not [d for d in os.listdir(os.path.dirname(os.environ.get("CONTAINERLAB_STATE", "/run/x")))
                if d.startswith("containerlab-soak-")]
