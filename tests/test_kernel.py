"""The magics in a real Jupyter kernel, driven through jupyter_client.

The kernel is the one `containerlab-magic install-kernel` installs (into a
temporary prefix), so these tests also check that kernelspec: it starts with
the extension loaded.  It inherits this session's CONTAINERLAB_STATE, so the
leak checks of conftest see its containers.  The tour notebook runs under
nbval here too, inside the same leak check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import foreign_pid_ns_processes, leaks, needs_root, snapshot, wait_for_container_process, state_dirs

pytestmark = [needs_root, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory):
    from containerlab_magic.kernel import install

    prefix = tmp_path_factory.mktemp("kernel-prefix")
    path = install(prefix=str(prefix))
    return [os.path.dirname(path)]


@pytest.fixture
def kernel(kernel_dirs, no_leaks):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="containerlab", kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
    km.start_kernel(env=dict(os.environ), cwd=ROOT)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=False)


def execute(kc, code: str, timeout: float = 60, on_message=None):
    """Run code; return (reply content, [(arrival time, iopub message)])."""
    msg_id = kc.execute(code)
    messages = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append((time.monotonic(), msg))
        if on_message:
            on_message(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    return reply["content"], messages


def streams(messages, name=None) -> str:
    return "".join(m["content"]["text"] for _, m in messages
                   if m["msg_type"] == "stream" and (name is None or m["content"]["name"] == name))


def test_kernelspec_loads_the_extension(kernel):
    km, kc = kernel
    assert km.kernel_spec.display_name == "Python 3 (container lab)"
    reply, messages = execute(kc, "%%container --image busybox\necho hello from $(hostname)")
    assert reply["status"] == "ok"
    assert streams(messages, "stdout").startswith("hello from ")


def test_output_streams_before_the_container_ends(kernel):
    _, kc = kernel
    start = time.monotonic()
    reply, messages = execute(kc, "%%container\necho first; sleep 2; echo second >&2")
    assert reply["status"] == "ok"
    arrivals = {m["content"]["name"]: (t, m["content"]["text"]) for t, m in messages if m["msg_type"] == "stream"}
    first_at, first = arrivals["stdout"]
    second_at, second = arrivals["stderr"]
    assert first == "first\n" and second == "second\n"
    assert first_at - start < 1.5 and second_at - first_at > 1.5


def test_load_ext_in_the_lab_kernel_is_silent(kernel):
    """The kernel loaded the magics at start; a notebook's own %load_ext (written for any kernel)
    says nothing.  (Run a second time, IPython says it is loaded, as for any extension.)"""
    _, kc = kernel
    reply, messages = execute(kc, "%load_ext containerlab_magic")
    assert reply["status"] == "ok" and streams(messages) == ""
    reply, messages = execute(kc, "from containerlab_magic.magics import ContainerMagics\n"
                                  "print(sum(isinstance(c, ContainerMagics) for c in get_ipython().configurables))")
    assert streams(messages) == "1\n"


def test_python_output_streams_in_order(kernel):
    """--python runs unbuffered: each print arrives as it is made, and a print before a
    traceback arrives before it."""
    _, kc = kernel
    reply, messages = execute(kc, "%%container --python\nimport time\nfor i in range(3):\n"
                                  "    print('tick', i)\n    time.sleep(0.5)")
    assert reply["status"] == "ok"
    ticks = [t for t, m in messages if m["msg_type"] == "stream" and "tick" in m["content"]["text"]]
    assert len(ticks) == 3 and ticks[-1] - ticks[0] > 0.8, ticks  # one message per print, as printed
    reply, messages = execute(kc, "%%container --python\nprint('before')\n1 / 0")
    assert reply["status"] == "error" and reply["traceback"] == ["\x1b[0;31mexit 1\x1b[0m"]
    shown = [(m["content"]["name"], m["content"]["text"]) for _, m in messages if m["msg_type"] == "stream"]
    text = "".join(t for _, t in shown)
    assert text.index("before") < text.index("Traceback"), shown
    assert 'File "<cell>", line 2, in <module>' in text and "<string>" not in text


def test_interrupt_ends_the_container_within_a_second(kernel):
    km, kc = kernel
    before = snapshot()
    timing = {}

    def on_message(msg):
        if msg["msg_type"] == "stream" and "started" in msg["content"]["text"] and "interrupt" not in timing:
            wait_for_container_process("sleep")  # interrupt the cell while its container sleeps
            timing["interrupt"] = time.monotonic()
            km.interrupt_kernel()

    reply, messages = execute(kc, "%%container --name sleeper\necho started; sleep 60", on_message=on_message)
    ended = time.monotonic()
    assert reply["status"] == "error" and reply["ename"] == "CellFailed"
    assert len(reply["traceback"]) == 1 and "interrupted: container sleeper was stopped (" in reply["traceback"][0]
    assert ended - timing["interrupt"] < 1.0
    gone_by = timing["interrupt"] + 1.0
    while foreign_pid_ns_processes() - before["processes"] and time.monotonic() < gone_by:
        time.sleep(0.02)
    assert not foreign_pid_ns_processes() - before["processes"], "the container outlived the interrupt by 1 s"
    left = leaks(before)  # and its cgroup and state go too
    left.pop("shims", None)  # the kernel's own shim, started by this cell; the fixture checks it goes
    assert not left, f"left behind: {left}"
    reply, messages = execute(kc, "print(6 * 7)")  # the kernel keeps working
    assert streams(messages) == "42\n"


def test_failing_cell_shows_one_line_and_no_traceback(kernel):
    _, kc = kernel
    reply, messages = execute(kc, "%%container --memory 16M --python\nx = bytearray(64 << 20)")
    assert reply["status"] == "error"
    errors = [m["content"] for _, m in messages if m["msg_type"] == "error"]
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1
    assert "exit 137: killed, out of memory (limit 16 MiB, peak" in errors[0]["traceback"][0]
    assert "Traceback" not in streams(messages)
    reply, messages = execute(kc, "%%container --memory lots\ntrue")
    assert reply["status"] == "error"
    assert not [m for _, m in messages if m["msg_type"] == "error"]  # a UsageError is shown as one stderr line
    assert streams(messages, "stderr").strip() == (
        "UsageError: invalid --memory 'lots': write a number of bytes with an optional unit k, M, G or T, "
        "for example 64M, 1.5G or 512k")


@pytest.mark.parametrize("now", [False, True], ids=["restart", "restart-now"])
def test_kernel_restart_removes_every_container(kernel, now):
    km, kc = kernel
    for name in ("bg1", "bg2"):
        reply, _ = execute(kc, f"%%container --detach --name {name}\nsleep 300")
        assert reply["status"] == "ok"
    reply, _ = execute(kc, "%%container --detach --name bg3 --python\nimport time\ntime.sleep(300)")
    assert reply["status"] == "ok"
    _, messages = execute(kc, "from containerlab_magic.magics import _loaded\n"
                              "print(*(f.path for m in _loaded.values() for f in m._folders.values()))")
    folder = streams(messages).strip()
    assert os.path.isfile(os.path.join(folder, "cell.py"))  # the detached cell's folder, in use
    assert len(state_dirs()) >= 3
    km.restart_kernel(now=now)
    kc.wait_for_ready(timeout=60)
    deadline = time.monotonic() + 10
    while state_dirs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not state_dirs()
    reply, _ = execute(kc, "%container ps")  # the new kernel has the extension and no containers
    assert reply["status"] == "ok"
    # its folder went with the kernel's exit, or (killed: no atexit) with the next --python cell
    assert now or not os.path.exists(folder)
    reply, _ = execute(kc, "%%container --python\npass")
    assert reply["status"] == "ok" and not os.path.exists(folder)


def test_a_restart_with_ten_containers_ends_the_kernels_and_keeps_the_daemons(kernel):
    """Seven containers of the kernel (detached and not) end with it; three the CLI's daemon
    owns outlive it, as documented; the new kernel's ps shows exactly those."""
    km, kc = kernel
    from test_cli import cli

    for n in range(3):
        assert cli("run", "-d", "--name", f"daemon-{n}", "busybox", "sleep", "300").returncode == 0
    try:
        for n in range(6):
            reply, _ = execute(kc, f"%%container --detach --name kernel-{n}\nsleep 300")
            assert reply["status"] == "ok"
        kc.execute("%%container --name kernel-fg\nsleep 300")  # a foreground cell, still running
        deadline = time.monotonic() + 10
        while len(state_dirs()) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(state_dirs()) == 10
        km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=60)
        from containerlab_magic.runtime import Engine

        names = lambda: {c["name"] for c in Engine(prewarm=False).ps(all=True)}  # noqa: E731 - the truth on disk
        deadline = time.monotonic() + 10
        while names() != {"daemon-0", "daemon-1", "daemon-2"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert names() == {"daemon-0", "daemon-1", "daemon-2"}
        _, messages = execute(kc, "%container ps -a")
        shown = " ".join(str(m["content"].get("data", {})) + m["content"].get("text", "") for _, m in messages)
        assert all(f"daemon-{n}" in shown for n in range(3)) and "kernel-" not in shown
    finally:
        for n in range(3):
            cli("rm", "-f", f"daemon-{n}")


def test_tour_notebook_under_nbval(module_no_leaks):
    notebook = os.path.join(ROOT, "notebooks", "tour.ipynb")
    sanitize = os.path.join(ROOT, "notebooks", "nbval-sanitize.cfg")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                           "--nbval-current-env", "--nbval-sanitize-with", sanitize, notebook],
                          cwd=os.path.join(ROOT, "notebooks"), capture_output=True, text=True, timeout=600, check=False,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
