"""scripts/lab (`make lab`): what it serves, and that the user's JupyterLab options win.

Each test starts the real script on a free port of 127.0.0.1 with a private HOME
(the per-user working copy of notebooks/ and the Jupyter settings go there), waits
until the server answers, asks it what it serves (/api/contents lists the root
directory), then ends it by its PID (the script execs JupyterLab, so the PID is the
server's).  The script also installs the "Python 3 (container lab)" kernelspec into
this Python's prefix, as `make lab` does: the same file on every run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "scripts", "lab")

pytest.importorskip("jupyterlab", reason="pip install jupyterlab (the package's [jupyter] extra)")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(path: str) -> dict:
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, files in os.walk(path)
            for f in files} | {d: 0 for d, _, _ in os.walk(path)}


class Lab:
    """scripts/lab running with `args`, HOME at `home`; .get() asks it over HTTP."""

    def __init__(self, home, args: list[str], port: int, token: str, env: dict | None = None):
        self.port, self.token, self.log_path = port, token, home / "lab.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "XDG_"))}
        environ.update(HOME=str(home), PYTHON=sys.executable, PYTHONPATH=ROOT, **(env or {}))
        self.log = open(self.log_path, "w")  # noqa: SIM115 - the server's whole life, closed in stop()
        self.proc = subprocess.Popen([LAB, f"--IdentityProvider.token={token}", "--port-retries=0", *args],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=environ, cwd="/")

    def get(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        url = f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get("/api/status")
                return
            except (OSError, urllib.error.URLError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"scripts/lab did not answer on 127.0.0.1:{self.port}: "
                                         f"{self.log_path.read_text()[-3000:]}") from None
                time.sleep(0.2)

    def root_listing(self) -> set[str]:
        return {entry["name"] for entry in json.loads(self.get("/api/contents"))["content"]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def start_lab(tmp_path):
    labs = []

    def start(args: list[str], port: int, env: dict | None = None) -> Lab:
        lab = Lab(tmp_path / "home", args, port, os.urandom(16).hex(), env)
        labs.append(lab)
        lab.wait_ready()
        return lab

    (tmp_path / "home").mkdir()
    yield start
    for lab in labs:
        lab.stop()
        # ended by PID: nothing answers on its port any more
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", lab.port), timeout=2).close()


def test_serves_a_per_user_copy_of_the_notebooks_and_keeps_the_users_edits(start_lab, tmp_path):
    copy = tmp_path / "home" / "containerlab-notebooks"
    copy.mkdir()
    edited = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5, "edited": "by me"})
    (copy / "tour.ipynb").write_text(edited)
    checkout_before = _tree(os.path.join(ROOT, "notebooks"))
    port = _free_port()
    lab = start_lab([], port, env={"LAB_PORT": str(port)})

    # what the checkout ships (not hidden leftovers of other tools, such as .benchmarks)
    shipped = {n for n in os.listdir(os.path.join(ROOT, "notebooks")) if not n.startswith(("nbval-", "."))}
    assert shipped and shipped <= lab.root_listing() <= shipped | {".ipynb_checkpoints"}
    assert (copy / "tour.ipynb").read_text() == edited, "the user's edited notebook was overwritten"
    assert not any(name.startswith("nbval-") for name in os.listdir(copy))
    assert _tree(os.path.join(ROOT, "notebooks")) == checkout_before, "the lab wrote into the checkout"
    page = lab.get("/lab")
    assert '"news": {"disabled": true}' in page, "JupyterLab's news prompt is not turned off"
    assert json.loads(lab.get("/lab/api/update")).get("notification") is None


def test_the_users_options_win_over_the_scripts_defaults(start_lab, tmp_path):
    root = tmp_path / "elsewhere"
    root.mkdir()
    (root / "mine.txt").write_text("a root of my own\n")
    port, ignored = _free_port(), _free_port()
    lab = start_lab([f"--ServerApp.root_dir={root}", f"--port={port}"], port, env={"LAB_PORT": str(ignored)})
    assert lab.root_listing() == {"mine.txt"}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ignored), timeout=2).close()
    assert "root_dir only accepts one value" not in lab.log_path.read_text()
