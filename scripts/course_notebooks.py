"""Write the course's notebooks, English and Korean, from one list of cells each.

One source for both languages keeps their code cells identical: only the
markdown differs.  Run `python3 scripts/course_notebooks.py` after editing a
lesson here, then `--execute` to save them with fresh outputs (needs root and
the kernel "Python 3 (container lab)": `containerlab-magic install-kernel --user`).
"""

from __future__ import annotations

import os
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from course_lessons import LESSONS, tags_for  # noqa: E402

ROOT = os.path.join(os.path.dirname(HERE), "notebooks")
KERNELSPEC = {"display_name": "Python 3 (container lab)", "language": "python", "name": "containerlab"}


def build(lesson: str, cells: list, language: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    for cell in cells:
        if cell[0] == "md":
            text = cell[1] if language == "en" else cell[2]
            nb.cells.append(nbformat.v4.new_markdown_cell(text.strip("\n")))
        else:  # ("code", source): tagged by course_lessons.tags_for (what the rootless rungs cannot run)
            code = nbformat.v4.new_code_cell(cell[1].strip("\n"))
            tags = list(cell[2]) if len(cell) > 2 else tags_for(lesson, cell[1])
            if tags:
                code.metadata["tags"] = tags
            nb.cells.append(code)
    for index, c in enumerate(nb.cells):
        c["id"] = f"{lesson[:2]}-{index:02d}"
    return nb


def run(nb, cwd: str) -> None:
    """Execute in a fresh "Python 3 (container lab)" kernel of this checkout (installed in a temporary
    prefix, as tests/test_kernel.py does), so outputs are this code's, not an older install's."""
    import tempfile

    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    from containerlab_magic.kernel import install

    with tempfile.TemporaryDirectory() as prefix:
        kernels = os.path.dirname(install(prefix=prefix))
        km = KernelManager(kernel_name="containerlab", kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels]))
        NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": cwd}}).execute()


def main(argv: list[str]) -> int:
    execute = "--execute" in argv
    wanted = [a for a in argv if not a.startswith("--")]
    for lesson, cells in LESSONS.items():
        if wanted and not any(lesson.startswith(w) for w in wanted):
            continue
        for language in ("en", "ko"):
            nb = build(lesson, cells, language)
            path = os.path.join(ROOT, language, f"{lesson}.ipynb")
            if execute:
                run(nb, os.path.dirname(path))
            nbformat.write(nb, path)
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
