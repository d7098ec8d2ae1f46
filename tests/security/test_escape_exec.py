"""H3: the process `exec` forks is not dumpable while it joins the container.

Until its execve(2), that process is a copy of the shim (its memory holds other
containers' specs and environments).  Once it has dropped to the container's
capabilities, a process of the container with the same uid and capabilities
could read its memory through /proc/PID/mem or ptrace it; PR_SET_DUMPABLE 0,
set before setns(2) as runc does, closes that window (execve resets it).  The
window is microseconds long and no container can hold it open, so this is
tested as the property itself, in a real exec path up to setns, not as a race.
"""

from __future__ import annotations

import ctypes
import os

from escape import VAR, escape_checks  # noqa: F401 - escape_checks: autouse

from containerlab_magic.runtime import child, linux

PR_GET_DUMPABLE = 3


def _dumpable_when_joining(monkeypatch, off: bool) -> int:
    """Fork, run child.start_exec up to its first setns, report PR_GET_DUMPABLE there."""
    if off:
        monkeypatch.setenv(VAR, "exec-nondumpable")
    else:
        monkeypatch.delenv(VAR, raising=False)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        libc = ctypes.CDLL(None)

        def setns(fd: int, nstype: int = 0) -> None:
            os.write(write, b"%d" % libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
            os._exit(0)

        linux.setns = setns  # stop at the first setns, before joining anything
        child.start_exec(child.Setup(command=("true",), env={}, workdir="/", user=None, join_pid=os.getppid(),
                                     error_fd=write, stdio=(0, 1, 2), pid_fd=write))
        os._exit(1)
    os.close(write)
    os.waitpid(pid, 0)
    answer = os.read(read, 16)
    os.close(read)
    return int(answer) if answer.isdigit() else -1


def test_the_exec_child_is_not_dumpable_before_it_joins(monkeypatch):
    assert _dumpable_when_joining(monkeypatch, off=True) == 1
    assert _dumpable_when_joining(monkeypatch, off=False) == 0
