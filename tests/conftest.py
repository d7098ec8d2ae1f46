"""Shared fixtures: a private state root per test session and leak checks.

The runtime tests need root (namespaces, mounts, cgroups): CI runs as root.
Every test that starts containers asks for `no_leaks`, which records what the
kernel holds before the test and fails if anything new is left after it:
container state directories, cgroups of our containers, processes in other
PID namespaces, mounts under the lab's directories, shim processes.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time

import pytest

_SESSION = tempfile.mkdtemp(prefix="clab-test-")
os.environ.setdefault("CONTAINERLAB_STATE", os.path.join(_SESSION, "state"))
# Images are built once and reused by every test module (and by later runs).
os.environ.setdefault("CONTAINERLAB_DATA", "/var/tmp/containerlab-test-data")
# The CLI's daemon shim waits 60 s for the next command by default; the leak checks
# give a lingering daemon 8 s to end, so the tests' daemons linger as they used to.
os.environ.setdefault("CONTAINERLAB_DAEMON_LINGER", "2")
STATE = os.environ["CONTAINERLAB_STATE"]
DATA = os.environ["CONTAINERLAB_DATA"]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, mounts and cgroups")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _pid_ns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _ours(pid: str) -> bool:
    """A container of this session: its overlay's upper layer lies under our state root."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            return STATE in f.read()
    except OSError:
        return False


def foreign_pid_ns_processes() -> set[tuple[int, str]]:
    """Processes in a PID namespace other than ours whose root is one of our containers.

    (Other tools on the machine, such as the benchmark's runc and bwrap, make PID
    namespaces too; only ours count.)
    """
    mine = _pid_ns("self")
    warm = _warm_pids()
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) not in warm:
            ns = _pid_ns(pid)
            if ns and ns != mine and _ours(pid):
                found.add((int(pid), ns))
    return found


def wait_for_container_process(command: str, timeout: float = 10) -> int:
    """The PID of a process named `command` in one of our containers, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, _ in foreign_pid_ns_processes():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == command:
                        return pid
            except OSError:
                pass  # ended meanwhile
        time.sleep(0.02)
    raise AssertionError(f"no {command} process in a container after {timeout} s")


def _warm_pids() -> set[int]:
    """PID 1s that live shims keep ready for their next container (a spare's state says so)."""
    pids = set()
    root = os.path.join(STATE, "containers")
    for cid in os.listdir(root) if os.path.isdir(root) else ():
        try:
            with open(os.path.join(root, cid, "state.json")) as f:
                state = json.load(f)
        except (OSError, ValueError):
            continue
        if state.get("status") == "spare" and state.get("pid"):
            pids.add(state["pid"])
    return pids


def our_cgroups() -> set[str]:
    """Cgroups this session's state root made and has not removed (its ledger: the shim
    notes a group before it makes it and forgets it after removing it), less the spare
    slot a live shim keeps ready.  Groups of other state roots are not ours to judge."""
    try:
        return {cid for cid in os.listdir(os.path.join(STATE, "cgroups")) if not _spare(cid)}
    except FileNotFoundError:
        return set()


def _spare(cid: str) -> bool:
    try:
        with open(os.path.join(STATE, "containers", cid, "state.json")) as f:
            return '"status": "spare"' in f.read()
    except OSError:
        return False


def spare_links() -> set[str]:
    """Host ends of veth pairs that live shims keep plugged for their warm spares."""
    try:
        with open(os.path.join(STATE, "networks", "state.json")) as f:
            spares = json.load(f).get("spares", {})
    except (OSError, ValueError):
        return set()
    return {spare["veth"] for cid, spare in spares.items() if _spare(cid)}


def our_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if STATE in line or DATA in line]


def shims() -> set[int]:
    """Shim processes of this session.  A PID 1 cloned from its shim carries the shim's command
    line until it execs (a warm spare's, or one the shim is making right now): it is not one."""
    parents = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if b"containerlab_magic.runtime.shim" in cmd and STATE.encode() in cmd:
                parents[int(pid)] = ppid
    return {pid for pid, ppid in parents.items() if ppid not in parents} - _warm_pids()


def state_dirs() -> set[str]:
    """Container state folders, less the one slot a live shim prepares ahead of need."""
    root = os.path.join(STATE, "containers")
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return set()
    found = set()
    for name in names:
        try:
            with open(os.path.join(root, name, "state.json")) as f:
                if '"status": "spare"' in f.read():
                    continue
        except OSError:
            pass
        found.add(name)
    return found


def snapshot() -> dict:
    return {"processes": foreign_pid_ns_processes(), "cgroups": our_cgroups(), "state": state_dirs(),
            "shims": shims()}


def leaks(before: dict, timeout: float = 8.0) -> dict:
    """What is new since `before`, after giving cleanup (and lingering daemons) a moment."""
    deadline = time.monotonic() + timeout
    while True:
        now = snapshot()
        new = {k: now[k] - before[k] for k in now}
        new["mounts"] = our_mounts()
        if not any(new.values()) or time.monotonic() > deadline:
            return {k: v for k, v in new.items() if v}
        time.sleep(0.1)


def explain(left: dict) -> str:
    """The leftovers, with what each leftover process is."""
    pids = {p for p, _ in left.get("processes", ())} | set(left.get("shims", ()))
    return f"{left} {[_describe(pid) for pid in sorted(pids)]}"


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")[:120]
        return (f"{pid}: state {fields['State'].strip()}, ppid {fields['PPid'].strip()}, "
                f"nspid {fields.get('NSpid', '').strip()}, {cmd}")
    except OSError:
        return f"{pid}: gone"


@pytest.fixture
def no_leaks():
    before = snapshot()
    yield
    left = leaks(before)
    assert not left, f"left behind: {explain(left)}"


@pytest.fixture(scope="module")
def module_no_leaks():
    before = snapshot()
    yield
    left = leaks(before)
    assert not left, f"left behind by the module: {explain(left)}"


@pytest.fixture(scope="module")
def engine(module_no_leaks):
    from containerlab_magic.runtime import Engine

    with Engine() as e:
        e.start()  # before any test's leak snapshot: the shim is the module's, not a test's
        yield e


_PASSED = []


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        _PASSED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """The session's state root goes with it, and first what it made on the host: shims
    still serving an engine nobody closed (each cleans up on SIGTERM), then the
    networks (the default one stays until removed, as docker's does).

    With CONTAINERLAB_REQUIRE_PASSES=1 (make test, make test-fast) a session in which
    no test passed fails: everything skipped (not root, say) is no success."""
    import shutil
    import signal

    if os.environ.get("CONTAINERLAB_REQUIRE_PASSES") == "1" and exitstatus == 0 and not _PASSED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nno test passed (all skipped or deselected): CONTAINERLAB_REQUIRE_PASSES=1 counts that "
              "as a failure; run as root on a host with the tools scripts/setup installs")

    users = sys.modules.get("pod.users")  # test users this session made go with it
    if users is not None:
        users.remove_created()
    if STATE != os.path.join(_SESSION, "state"):  # a state root given from outside is not ours to end
        shutil.rmtree(_SESSION, ignore_errors=True)
        return
    for pid in shims():  # ours: their command line names this session's state root
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while shims() and time.monotonic() < deadline:
        time.sleep(0.05)
    if os.path.isdir(os.path.join(STATE, "networks")):
        from containerlab_magic.runtime.network import NetworkManager

        manager = NetworkManager(STATE)
        try:
            manager.gc(set())
            for network in manager.list():
                manager.remove(network["name"])
        finally:
            manager.close()
    if not our_mounts():
        shutil.rmtree(_SESSION, ignore_errors=True)


def ipython_shell():
    """The test process's one IPython shell (IPython's testing app is a singleton: its
    start_ipython() returns None once another module has started it)."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    return start_ipython() or get_ipython()
