"""Low: the lab's state on the host is not other host users' to read or to drive."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile

import pytest

from escape import VAR, escape_checks  # noqa: F401 - escape_checks: autouse

from containerlab_magic.runtime import ContainerSpec, Engine

NOBODY = 65534


def _as_nobody(action) -> str:
    """Run action() in a child that dropped to uid/gid 65534; its one-word answer."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            answer = action()
        except OSError as e:
            answer = f"errno{e.errno}"
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    answer = os.read(read, 100).decode()
    os.close(read)
    return answer


@pytest.fixture
def open_dir():
    """A directory every user may walk through (pytest's own tmp dirs are root's only)."""
    path = tempfile.mkdtemp(prefix="clab-sec-", dir="/var/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_state_files_are_the_owners_only(open_dir):
    tmp_path = open_dir
    with Engine(state_dir=os.path.join(tmp_path, "state"), prewarm=False) as engine:
        box = engine.run(ContainerSpec(("sleep", "30"), image="busybox", env={"TOKEN": "secret"}, detach=True))
        try:
            state = os.path.join(engine.state_root, "containers", box.id, "state.json")
            assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(os.path.join(engine.state_root, "names")).st_mode) == 0o700
            os.chmod(engine.state_root, 0o755)  # let nobody walk to the state file (its folder is 0700
            os.chmod(os.path.dirname(state), 0o755)  # too): the file's own mode must hold
            assert _as_nobody(lambda: os.stat(state) and "stat") == "stat"
            assert _as_nobody(lambda: open(state).read()[:0] or "read") == "errno13"  # EACCES
        finally:
            engine.kill(box.id)
            engine.wait(box.id, 10)
            engine.rm(box.id, force=True)


def _connect_and_listen(path: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.connect(path)
        sock.settimeout(1.0)
        try:
            return "closed" if sock.recv(100) == b"" else "answered"
        except TimeoutError:
            return "served"  # the daemon kept us: it would act on our requests


def _daemon_socket(tmp_path, monkeypatch, off: str | None) -> str:
    state = os.path.join(tmp_path, "state-" + (off or "on"))
    if off:
        monkeypatch.setenv(VAR, off)
    engine = Engine(daemon=True, state_dir=str(state))
    try:
        engine.start()
        monkeypatch.delenv(VAR, raising=False)
        path = os.path.join(engine.state_root, "shim.sock")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        os.chmod(path, 0o666)  # as if its mode had been lost: the peer check alone must hold
        os.chmod(state, 0o755)
        return _as_nobody(lambda: _connect_and_listen(path))
    finally:
        engine.close()


def test_the_daemon_serves_only_root_and_its_owner(open_dir, monkeypatch):
    assert _daemon_socket(open_dir, monkeypatch, "peer-check") == "served"
    assert _daemon_socket(open_dir, monkeypatch, None) == "closed"
