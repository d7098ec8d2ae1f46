"""The magics and widgets in a real JupyterLab, driven by Playwright in Debian's Chromium.

JupyterLab listens on 127.0.0.1 on a free port with a token, in a temporary
root; its kernels inherit CONTAINERLAB_STATE, so the leak check sees their
containers.  Playwright cannot download its own browser here: it drives
/usr/bin/chromium (apt-get install chromium).  A screenshot of the notebook
is kept in test-artifacts/jupyterlab.png.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import needs_root

CHROMIUM = "/usr/bin/chromium"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package)")
pytestmark = [
    needs_root, pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no {CHROMIUM}: apt-get install chromium"),
]

CELLS = [
    "%load_ext containerlab_magic",
    "%%container\nfor i in 1 2 3 4 5; do echo tick $i; sleep 1; done",
    "%container panel",
    "%%container --stats\necho limit check",
    "%%container --python\nimport time\nfor i in range(4):\n    print('py tick', i)\n    time.sleep(1)",
    "%%container --explain --dry-run --image busybox\ntrue",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, module_no_leaks):
    import nbformat

    root = tmp_path_factory.mktemp("lab-root")
    for language in ("en", "ko"):  # the course, as a learner opens it (a copy: its outputs change)
        shutil.copytree(os.path.join(ROOT, "notebooks", language), root / language)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(root / "lab.ipynb"))
    port, token = _free_port(), os.urandom(16).hex()
    home = tmp_path_factory.mktemp("lab-home")
    news = home / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)  # no "get notified about Jupyter news?" toast over the notebook
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    from containerlab_magic.kernel import install

    kernels = install(prefix=str(home / "prefix"))  # "Python 3 (container lab)", the course's kernel
    jupyter_path = os.path.dirname(os.path.dirname(kernels))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               JUPYTER_PATH=os.pathsep.join(filter(None, [jupyter_path, os.environ.get("JUPYTER_PATH")])),
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    log = open(home / "server.log", "w")  # noqa: SIM115 - open for the server's whole life, closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
         "--no-browser", "--allow-root", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(root))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {(home / 'server.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield url, token, root
    finally:
        server.terminate()  # shuts its kernels down, which stop their containers
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    with playwright_api.sync_playwright() as p:
        # Playwright gives the browser a fresh temporary --user-data-dir itself (and refuses one in args).
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser.new_context(viewport={"width": 1280, "height": 1000})
        browser.close()


def open_notebook(context, lab, path: str, kernel: str):
    url, token, _ = lab
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(f"{url}/lab/tree/{path}?reset&token={token}")  # (reset: a fresh workspace, this notebook alone)
    pg.wait_for_selector(".jp-Notebook .jp-Cell")
    pg.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    pg.get_by_text(f"{kernel} | Idle").wait_for()  # the kernel's session is connected
    return pg


@pytest.fixture(scope="module")
def page(browser, lab):
    pg = open_notebook(browser, lab, "lab.ipynb", "Python 3 (ipykernel)")
    yield pg
    os.makedirs(ARTIFACTS, exist_ok=True)
    pg.screenshot(path=os.path.join(ARTIFACTS, "jupyterlab.png"), full_page=True)
    pg.close()


def cell(pg, index: int):
    return pg.locator(".jp-Notebook .jp-Cell").nth(index)


def run(pg, index: int) -> None:
    cell(pg, index).locator(".jp-InputArea-editor").click()
    pg.keyboard.press("Shift+Enter")


def output_text(pg, index: int) -> str:
    return cell(pg, index).locator(".jp-OutputArea").inner_text()


def wait_for_output(pg, index: int, pattern: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = output_text(pg, index)
        if re.search(pattern, text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"cell {index} never showed {pattern!r}; it shows {output_text(pg, index)!r}")


def test_output_appears_while_the_cell_runs(page):
    for attempt in range(3):  # a keypress that lands while the kernel connection settles is dropped
        run(page, 0)
        try:
            page.wait_for_function("document.querySelectorAll('.jp-InputPrompt')[0].innerText.includes('[1]')",
                                   timeout=10_000)
            break
        except playwright_api.TimeoutError:
            if attempt == 2:
                raise
    run(page, 1)
    text = wait_for_output(page, 1, r"tick 2")
    assert "tick 5" not in text
    assert "[*]" in cell(page, 1).locator(".jp-InputPrompt").inner_text()  # still running
    wait_for_output(page, 1, r"tick 5")


def test_panel_slider_sets_the_next_cells_memory_limit(page):
    run(page, 2)
    panel = cell(page, 2)
    handle = panel.locator(".noUi-handle").first  # the memory slider
    handle.wait_for()
    assert "unlimited" in panel.locator(".widget-readout").first.inner_text()
    handle.focus()
    for _ in range(4):  # unlimited -> 16 -> 32 -> 64 -> 128 MiB
        page.keyboard.press("ArrowRight")
    page.wait_for_function("document.querySelectorAll('.jp-Cell')[2].innerText.includes('--memory 128M')")
    assert "128 MiB" in panel.locator(".widget-readout").first.inner_text()
    run(page, 3)
    text = wait_for_output(page, 3, r"exit 0 · ")
    assert "limit check" in text and "of 128 MiB" in text  # the cgroup's own figure, read as the container ended


def test_python_output_appears_while_the_cell_runs(page):
    """--python runs unbuffered: one print a second shows up a second at a time."""
    run(page, 4)
    text = wait_for_output(page, 4, r"py tick 1")
    assert "py tick 3" not in text
    assert "[*]" in cell(page, 4).locator(".jp-InputPrompt").inner_text()
    wait_for_output(page, 4, r"py tick 3")


def test_explain_is_a_table(page):
    run(page, 5)
    wait_for_output(page, 5, r"WHAT IT DOES")
    table = cell(page, 5).locator(".jp-OutputArea table.clab-table")
    assert table.count() == 1 and "not run: --dry-run" in output_text(page, 5)


COURSE = sorted(os.path.relpath(p, os.path.join(ROOT, "notebooks"))
                for p in glob.glob(os.path.join(ROOT, "notebooks", "*", "[0-9]*.ipynb")))


@pytest.mark.parametrize("notebook", COURSE)
def test_a_course_notebook_runs_in_jupyterlab(browser, lab, notebook):
    """Run All in the browser, as a learner would: every cell runs, no cell shows an error,
    widgets render; the notebook saved from the browser is checked too; a screenshot is kept."""
    _, _, root = lab
    pg = open_notebook(browser, lab, notebook, "Python 3 (container lab)")
    try:
        pg.get_by_role("menuitem", name="Run", exact=True).click()
        pg.get_by_text("Run All Cells", exact=True).click()
        pg.wait_for_function("document.querySelector('.jp-Notebook-ExecutionIndicator')"
                             ".getAttribute('data-status') === 'busy'", timeout=30_000)
        pg.wait_for_function("document.querySelector('.jp-Notebook-ExecutionIndicator')"
                             ".getAttribute('data-status') === 'idle' && "
                             "![...document.querySelectorAll('.jp-InputPrompt')].some(p => p.innerText.includes('*'))",
                             timeout=300_000, polling=500)
        # (stderr is no error: a lesson shows a service's complaints and the OOM killer's work on it;
        # an error is an "error" output, a traceback or a failed cell, looked for in the saved file)
        assert "Error displaying widget" not in pg.locator(".jp-Notebook").inner_text()
        pg.keyboard.press("Control+s")
        pg.wait_for_function("!document.querySelector('.jp-mod-dirty')", timeout=30_000)
        with open(root / notebook) as f:
            saved = json.load(f)
        code = [c for c in saved["cells"] if c["cell_type"] == "code"]
        assert all(c["execution_count"] for c in code), "a cell did not run"
        errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
        assert not errors, errors[0].get("evalue")
        widgets = [o for c in code for o in c["outputs"]
                   if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert pg.locator(".jupyter-widgets").count() >= len(widgets)  # each widget output rendered
        os.makedirs(ARTIFACTS, exist_ok=True)
        # the screenshot: the first output with a chart, a table or a widget (else the notebook's end)
        pg.evaluate("document.querySelector('.jp-WindowedPanel-outer').scrollTop = 0")
        rich = pg.locator(".jp-Cell:has(.jp-OutputArea-output svg), .jp-Cell:has(.jp-OutputArea-output table), "
                          ".jp-Cell:has(.jupyter-widgets)")
        if rich.count():
            rich.first.scroll_into_view_if_needed()
        pg.screenshot(path=os.path.join(ARTIFACTS, "course-" + notebook.replace("/", "-").replace(".ipynb", ".png")),
                      full_page=False)
    finally:
        pg.close()
        shut_down_kernels(lab)  # each notebook's kernel (and its shim) ends before the next opens


def shut_down_kernels(lab) -> None:
    url, token, _ = lab
    with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=10) as r:
        sessions = json.load(r)
    for session in sessions:
        if session.get("path", "").endswith(".ipynb") and session["path"] != "lab.ipynb":
            request = urllib.request.Request(f"{url}/api/sessions/{session['id']}?token={token}", method="DELETE")
            urllib.request.urlopen(request, timeout=30).read()
