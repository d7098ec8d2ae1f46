"""benchmarks/images.py runs end to end in a small mode and reports every row.

Checks the shape of what it prints and writes, never the timings themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import needs_root
from images.fixtures import registry_processes
from images.registry import missing_tools

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = needs_root


def test_the_images_benchmark_reports_every_row(tmp_path):
    if missing_tools():
        pytest.skip(f"needs {', '.join(missing_tools())}")
    before = registry_processes()
    out = tmp_path / "images.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "images.py"), "--rounds", "1", "--mib", "3",
                        "--json", str(out)], capture_output=True, text=True, timeout=240, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr[-2000:]
    for label in ("lab pull, cold store", "skopeo copy to an OCI layout", "skopeo copy, then tar -xzf",
                  "lab pull, every layer present", "cold / skopeo =", "first run", "build of 5 steps",
                  "every step cached"):
        assert label in r.stdout
    figures = json.loads(out.read_text())
    assert figures["lab_cold_s"] > 0 and figures["skopeo_s"] > 0 and figures["lab_warm_s"] > 0
    assert "first_run_s" in figures, figures.get("first_run_error")
    assert figures["build_cached_s"] > 0 and figures["build_cold_s"] > 0
    assert registry_processes() == before
