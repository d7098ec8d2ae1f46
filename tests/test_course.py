"""The course (notebooks/en, notebooks/ko) runs top to bottom under nbval, and its graders grade.

nbval runs with --nbval-lax: every cell must run without an error (a failed
container, a wrong assertion, a UsageError all fail it); the outputs of the
saved notebooks are what a learner sees first, not a pasted answer to match
(every figure in them is measured again on each run).  Both languages run:
their code cells are the same (scripts/course_notebooks.py writes both from
one source) and so must their results be.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest
from conftest import needs_root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "en", "*.ipynb")) +
                   glob.glob(os.path.join(ROOT, "notebooks", "ko", "*.ipynb")))


def test_both_languages_have_the_same_code_cells():
    english = sorted(os.path.basename(p) for p in NOTEBOOKS if "/en/" in p)
    korean = sorted(os.path.basename(p) for p in NOTEBOOKS if "/ko/" in p)
    assert english and english == korean
    for name in english:
        def code(language):
            with open(os.path.join(ROOT, "notebooks", language, name)) as f:
                nb = json.load(f)
            assert nb["metadata"]["kernelspec"]["display_name"] == "Python 3 (container lab)"
            return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]

        assert code("en") == code("ko"), name


def test_the_notebooks_are_what_the_lessons_build(tmp_path):
    """notebooks/ is scripts/course_lessons.py written out (no hand edits that the next build loses)."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import course_notebooks
        from course_lessons import LESSONS
    finally:
        sys.path.pop(0)
    for lesson, cells in LESSONS.items():
        for language in ("en", "ko"):
            built = course_notebooks.build(lesson, cells, language)
            with open(os.path.join(ROOT, "notebooks", language, f"{lesson}.ipynb")) as f:
                saved = json.load(f)
            assert ["".join(c["source"]) for c in saved["cells"]] == [c.source for c in built.cells], (lesson, language)
            assert ([c.get("metadata", {}).get("tags", []) for c in saved["cells"]]
                    == [c.metadata.get("tags", []) for c in built.cells]), (lesson, language)


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: os.path.relpath(p, os.path.join(ROOT, "notebooks")))
def test_notebook_runs_under_nbval(notebook, module_no_leaks):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", "--nbval-cell-timeout", "120", notebook],
                          cwd=os.path.dirname(notebook), capture_output=True, text=True, timeout=600, check=False,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


@needs_root
def test_check_container_says_what_is_right_and_what_is_missing(engine, no_leaks):
    from containerlab_magic.course import check_container
    from containerlab_magic.runtime import ContainerSpec, Limits

    engine.run(ContainerSpec(["sleep", "30"], image="busybox", name="graded", hostname="lab", detach=True,
                             limits=Limits(memory=64 << 20))).close()
    try:
        good = check_container("graded", image="busybox", hostname="lab", running=True, memory="64M", engine=engine)
        assert good.passed and "✗" not in repr(good)
        bad = check_container("graded", image="host", hostname="web", memory="32M", pids_limit=10, engine=engine)
        assert not bad.passed
        assert "✗ image is 'busybox', want 'host'" in repr(bad)
        assert "✗ hostname is 'lab', want 'web'" in repr(bad)
        assert "✗ memory limit is 64 MiB, want 32 MiB (--memory 32M)" in repr(bad)
        assert "✗ pids limit is none, want 10 (--pids-limit 10)" in repr(bad)
        assert "<li" in bad._repr_html_()
    finally:
        engine.rm("graded", force=True)
    gone = check_container("graded", engine=engine)
    assert not gone.passed and "there is no container named graded" in repr(gone)


def test_check_output_and_value():
    from containerlab_magic.course import check_output, check_value

    report = check_output(b"hello\nworld\n", "hello", "moon")
    assert [ok for ok, _ in report.points] == [True, False] and "'moon' is missing" in repr(report)
    assert check_value(3, 3, "x").passed and not check_value(2, 3, "x").passed
