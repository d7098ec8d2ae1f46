"""The escape suite's tools: an engine with chosen guards turned off, and a run helper.

Every test here is an attack from inside a container that must fail.  Each one
first runs the same attack with the guard that stops it removed (`lab(off=...)`
sets CONTAINERLAB_TEST_DISABLE_GUARD for one engine and its shim; see
runtime/security/guards.py) and checks that it then succeeds, so no test
passes for the wrong reason.  Where two guards stop one attack (the devices
cgroup and nodev binds both stop a host device node), each is tested with the
other removed.  Attacks are harmless to the host: device nodes are only
opened for reading, nothing is written outside the test's own directories.
"""

from __future__ import annotations

import contextlib
import os

import pytest

VAR = "CONTAINERLAB_TEST_DISABLE_GUARD"


@contextlib.contextmanager
def lab(off: tuple[str, ...] = ()):
    """An engine (and shim) with exactly these guards removed."""
    from containerlab_magic.runtime import Engine
    from containerlab_magic.runtime.security import guards

    for name in off:
        assert name in guards.GUARDS, name
    old = os.environ.pop(VAR, None)
    if off:
        os.environ[VAR] = ",".join(off)
    engine = Engine(prewarm=False)
    try:
        engine.start()
    finally:  # the shim took its copy of the environment at start
        os.environ.pop(VAR, None)
        if old is not None:
            os.environ[VAR] = old
    with engine:
        yield engine


def run(engine, command: list[str], image: str = "busybox", **spec_fields):
    """Run to completion; the Result (exit_code, stdout, stderr)."""
    from containerlab_magic.runtime import ContainerSpec

    result = engine.run(ContainerSpec(tuple(command), image=image, **spec_fields)).wait(timeout=60)
    assert result.error is None, result.error
    return result


def attack(command: list[str], off: tuple[str, ...] = (), **spec_fields):
    with lab(off) as engine:
        return run(engine, command, **spec_fields)


@pytest.fixture(autouse=True)
def escape_checks(no_leaks):
    """Root only (namespaces, cgroups); nothing may be left behind by any attack."""
    if os.geteuid() != 0:
        pytest.skip("needs root: namespaces, mounts and cgroups")
    yield
