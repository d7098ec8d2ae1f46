"""benchmarks/attacks.py runs end to end in a small mode: every attack reaches its
steady state while the bystanders start, and nothing is left behind.

The figures themselves (a bystander's start latency under each attack) are never
asserted: they are for the README's Reliability section (`make reliability`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import needs_root

pytestmark = needs_root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "attacks.py")


def test_every_attack_is_under_way_while_the_bystanders_start(tmp_path, module_no_leaks):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import attacks
    finally:
        sys.path.pop(0)
    report = tmp_path / "attacks.json"
    r = subprocess.run([sys.executable, "-I", SCRIPT, "--runs", "2", "--json", str(report)], cwd="/",
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(report.read_text())
    assert [row["attack"] for row in figures["rows"]] == [name for name, *_ in attacks.ATTACKS]
    for row in figures["rows"]:
        # an attacker that ended before the bystanders were timed measured nothing
        assert row["under_attack"], f"{row['attack']}: the attacker had ended"
        for side in ("same shim", "other shim"):
            cell = row[side]
            assert cell["n"] == 2 and 0 < cell["p50_ms"] <= cell["p95_ms"] <= cell["worst_ms"], (row, side)
    assert figures["left"] == []
    assert "worst bystander start:" in r.stdout
    assert not [d for d in os.listdir("/var/tmp") if d.startswith("containerlab-attacks-")]
