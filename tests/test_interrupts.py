"""Ctrl-C at random points (seeded) of run, exec, logs -f and %cgroup --watch: the engine
and the IPython shell stay usable, and nothing leaks once what was started is removed.

The interrupt is a real SIGINT to this process from a timer thread, turned into
KeyboardInterrupt by a handler that is armed only inside the interrupted call, so a
late signal never reaches pytest itself.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time

import pytest

from conftest import ipython_shell, needs_root
from containerlab_magic.runtime import ContainerSpec, Engine
from containerlab_magic.runtime.errors import ContainerError

pytestmark = needs_root

POINTS = [random.Random(seed).uniform(0, 0.03) for seed in range(8)]  # seconds into the call
SEEN: dict[str, int] = {"interrupted": 0, "finished first": 0}


@contextlib.contextmanager
def interrupted_after(delay: float, must: bool = True):
    """must: the call outlasts the delay, so the interrupt has to land inside it (else the
    test would pass without interrupting anything)."""
    armed = [True]

    def handler(signum, frame):
        if armed[0]:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        yield
        SEEN["finished first"] += 1
        assert not must, f"the call ended before the interrupt at {delay * 1000:.1f} ms"
    except KeyboardInterrupt:
        SEEN["interrupted"] += 1
    finally:
        armed[0] = False
        timer.cancel()
        timer.join()
        time.sleep(0.001)  # (a signal sent just before the join is handled here, disarmed)
        signal.signal(signal.SIGINT, old)


@pytest.fixture(scope="module")
def engine(module_no_leaks):
    with Engine() as e:
        e.start()
        yield e
    print(f"\ninterrupts: {SEEN}")


def clear(engine: Engine) -> None:
    for c in engine.ps(all=True):
        with contextlib.suppress(ContainerError):
            engine.rm(c["id"], force=True)


def still_works(engine: Engine) -> None:
    assert engine.run(ContainerSpec(("echo", "ok"), image="busybox")).wait(30).exit_code == 0


@pytest.mark.parametrize("delay", POINTS)
def test_ctrl_c_during_run(engine, no_leaks, delay):
    with interrupted_after(delay):
        engine.run(ContainerSpec(("sleep", "0.2"), image="busybox", network="bridge")).wait(30)
    clear(engine)
    still_works(engine)


@pytest.mark.parametrize("delay", POINTS)
def test_ctrl_c_during_exec(engine, no_leaks, delay):
    box = engine.run(ContainerSpec(("sleep", "30"), image="busybox", detach=True, name="exec-target"))
    with interrupted_after(delay):
        engine.exec("exec-target", ["sh", "-c", "echo a; sleep 0.2; echo b"]).wait(30)
    assert engine.exec("exec-target", ["true"]).wait(30).exit_code == 0  # the container serves on
    engine.rm(box.id, force=True)
    clear(engine)
    still_works(engine)


@pytest.mark.parametrize("delay", POINTS)
def test_ctrl_c_during_logs_follow(engine, no_leaks, delay):
    engine.run(ContainerSpec(("sh", "-c", "while :; do echo line; sleep 0.01; done"), image="busybox",
                             detach=True, name="chatty"))
    with interrupted_after(delay + 0.05):
        for _ in engine.logs("chatty", follow=True, poll=0.01):
            pass
    assert any(data for _, data in engine.logs("chatty"))  # logs still read
    clear(engine)
    still_works(engine)


@pytest.fixture(scope="module")
def shell(engine):
    """The IPython shell with the extension, its engine started before any test's snapshot."""
    shell = ipython_shell()
    shell.run_line_magic("load_ext", "containerlab_magic")
    shell.magics_manager.registry["ContainerMagics"].engine.start()
    yield shell
    shell.run_line_magic("unload_ext", "containerlab_magic")  # its engine (and shim) go with it


@pytest.mark.parametrize("delay", POINTS)
def test_ctrl_c_during_cgroup_watch(shell, no_leaks, delay):
    engine = shell.magics_manager.registry["ContainerMagics"].engine
    engine.run(ContainerSpec(("sleep", "30"), image="busybox", detach=True, name="watched"))
    with interrupted_after(delay / 3, must=False):  # (the magic returns in ms: it may finish first)
        shell.run_line_magic("cgroup", "watched --watch")
    clear(engine)  # the container ends: every monitor of it stops on its own
    deadline = time.monotonic() + 5
    while any(t.name.startswith("containerlab-monitor-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a monitor thread outlived its container"
        time.sleep(0.02)
    shell.run_line_magic("container", "ps")  # the shell still serves the lab
    still_works(engine)
