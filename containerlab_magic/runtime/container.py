"""A started container (or exec'd process) as its caller holds it: output, wait, explain.

`Container` reads the pipes (or pty) the shim passed over the socket (SCM_RIGHTS)
as the container writes them; `Result` says how it ended, keeping the exit
code and the kernel's OOM kills apart (as docker keeps ExitCode and OOMKilled).
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import struct
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from .errors import SpecError
from .plan.record import StepRecord
from .spec import ContainerSpec, format_size
from .state import proc_start_time, wait_for

if TYPE_CHECKING:
    from .engine import Engine

OutputCallback = Callable[[str, bytes], None]
STREAM_NAMES = {1: "stdout", 2: "stderr"}


@dataclass
class Result:
    """How a container (or an exec'd process) ended."""

    exit_code: int
    signal: int | None = None
    duration: float = 0.0
    timed_out: bool = False
    oom_kills: int = 0  # processes of the container the kernel killed for memory (OOM kills)
    error: str | None = None  # why the command could not be started
    usage: dict | None = None  # final cgroup usage, when there was a cgroup
    memory_limit: int | None = None
    stdout: bytes = b""  # output drained by wait() when nobody read it before
    stderr: bytes = b""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def oom_killed(self) -> bool:
        """PID 1 itself was killed for memory (docker's OOMKilled): SIGKILLed with OOM kills
        in its group.  A child killed for memory while PID 1 went on is `oom_kills` only."""
        return bool(self.oom_kills) and self.signal == signal.SIGKILL and not self.timed_out

    def describe(self) -> str:
        """One line for people: 'exit 137: killed, out of memory (limit 64 MiB)', or
        'exit 0; 1 process in the container was killed for memory (limit 32 MiB)'."""
        limit = f" (limit {format_size(self.memory_limit)})" if self.memory_limit else ""
        if self.error:
            return f"exit {self.exit_code}: {self.error}"
        if self.oom_killed:
            return f"exit {self.exit_code}: killed, out of memory{limit}"
        if self.oom_kills and not self.timed_out and not self.signal:
            n = self.oom_kills
            return (f"exit {self.exit_code}; {n} process{'es' if n > 1 else ''} in the container "
                    f"{'were' if n > 1 else 'was'} killed for memory{limit}")
        if self.timed_out:
            return f"exit {self.exit_code}: killed after the {self.duration:.1f} s timeout"
        if self.signal:
            name = signal.Signals(self.signal).name if self.signal in signal.Signals._value2member_map_ else self.signal
            return f"exit {self.exit_code}: killed by {name}"
        return f"exit {self.exit_code}"


def result_of(event: dict, spec: ContainerSpec | None) -> Result:
    """The Result an exit event from the shim describes (the Engine's, and the daemon's
    for a quick CLI run: shim/quick.py)."""
    error = event.get("error")
    text = None
    if error:
        command = (spec.command or spec.entrypoint or ("command",))[0] if spec else "command"
        if error.get("stage") != "exec":
            text = f"container setup failed at {error.get('stage')}: {error.get('message')}"
        elif event["exit_code"] == 127:
            text = f"{command}: command not found in the image (exit 127)"
        else:
            text = f"{command}: cannot run: {error.get('message')}"
    return Result(exit_code=event["exit_code"], signal=event.get("signal"), duration=event.get("duration", 0.0),
                  timed_out=event.get("timed_out", False), oom_kills=event.get("oom_kills", 0),
                  error=text, usage=event.get("usage"), memory_limit=spec.limits.memory if spec else None)


class Container:
    """A running container or exec'd process started by this engine."""

    def __init__(self, engine: "Engine", reply: dict, fds: list[int], spec: ContainerSpec | None,
                 on_output: OutputCallback | None = None):
        self.engine = engine
        self.id: str = reply["id"]
        self.exec_id: str | None = reply.get("exec_id")
        self.name: str = reply.get("name") or self.id[:12]
        self.pid: int = reply["pid"]
        self.spec = spec
        self.on_output = on_output
        self.tty = reply.get("streams") == "pty"
        self.notice: str | None = reply.get("notice")  # what the rung could not give (process-sandbox)
        self.stdin_fd: int | None = None
        self._readers: dict[int, str] = {}
        if reply.get("streams") == "pty":
            self._readers[fds[0]] = "stdout"
            self.stdin_fd = os.dup(fds[0])
        elif reply.get("streams") == "pipes":
            self._readers = {fds[0]: "stdout", fds[1]: "stderr"}
            if len(fds) > 2:
                self.stdin_fd = fds[2]
        self._result: Result | None = None
        self._lock = threading.Lock()
        self._plan = [StepRecord.from_json(r) for r in reply["plan"]] if "plan" in reply else None
        self._plan_started_ns = reply.get("plan_started_ns")
        self._explained: list[StepRecord] | None = None
        self.explain_total_us: int | None = None  # start of the plan to PID 1's execve, once explained

    def explain(self, timeout: float = 10.0) -> list[StepRecord]:
        """The steps of this start as they ran, the shim's then PID 1's (which it sends just
        before exec: this waits for that).  The shim's steps after clone overlap PID 1's
        first ones; PID 1's "wait" step is the time it waited for them.  Needs
        Engine.run(spec, explain=True)."""
        if self._plan is None:
            raise SpecError("this start was not explained: run it with Engine.run(spec, explain=True)")
        if self._explained is None:
            event = self.engine._client.event("explain", self.id, None, timeout)
            records = [StepRecord.from_json(r) for r in (event or {}).get("records", ())]
            exec_ns = (event or {}).get("exec_ns")
            self._explained = self._plan + records
            self.explain_total_us = ((exec_ns - self._plan_started_ns) // 1000 if exec_ns
                                     else sum(r.duration_us or 0 for r in self._explained))
        return self._explained

    def __repr__(self) -> str:
        return f"<Container {self.name} {self.id[:12]} pid={self.pid}>"

    def output(self, timeout: float | None = None) -> Iterator[tuple[str, bytes]]:
        """Yield (stream, data) as the container writes it, until its output closes."""
        with self._lock:
            readers, self._readers = self._readers, {}
        if not readers:
            return
        sel = selectors.DefaultSelector()
        for fd, name in readers.items():
            sel.register(fd, selectors.EVENT_READ, name)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while readers:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                for key, _ in sel.select(left):
                    try:
                        data = os.read(key.fd, 65536)
                    except OSError as e:  # a pty reports EIO once the other side is gone
                        if e.errno != errno.EIO:
                            raise
                        data = b""
                    if data:
                        yield key.data, data
                    else:
                        sel.unregister(key.fd)
                        os.close(key.fd)
                        del readers[key.fd]
        finally:
            for fd in readers:  # stopped early: hand the rest back
                sel.unregister(fd)
            with self._lock:
                self._readers.update(readers)
            sel.close()

    def wait(self, timeout: float | None = None) -> Result:
        """Drain output (to on_output, else into the result) and return how it ended."""
        out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        for stream, data in self.output(timeout):
            if self.on_output:
                self.on_output(stream, data)
            else:
                out[stream].append(data)
        event = self.engine._wait_exit(self.id, self.exec_id, timeout)
        if event is None:
            raise TimeoutError(f"container {self.name} still running after {timeout} s")
        if self._result is None:
            self._result = self.engine._result(event, self.spec)
        self._result.stdout += b"".join(out["stdout"])
        self._result.stderr += b"".join(out["stderr"])
        self.close_stdin()
        return self._result

    @property
    def done(self) -> bool:
        return self.engine._exit_event(self.id, self.exec_id) is not None

    def write(self, data: bytes) -> None:
        if self.stdin_fd is None:
            raise SpecError("this container has no stdin: start it with interactive=True or tty=True")
        os.write(self.stdin_fd, data)

    def resize(self, rows: int, columns: int) -> None:
        """Set the terminal size of a --tty container (its programs get SIGWINCH)."""
        if not self.tty or self.stdin_fd is None:
            raise SpecError("only a container started with tty=True has a terminal to resize")
        import fcntl
        import termios

        fcntl.ioctl(self.stdin_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def close_stdin(self) -> None:
        if self.stdin_fd is not None:
            os.close(self.stdin_fd)
            self.stdin_fd = None

    def stop(self, grace: float = 10.0) -> None:
        if self.exec_id:
            _signal_pid(self.pid, None, signal.SIGTERM)
            if not wait_for(lambda: self.done, grace):
                _signal_pid(self.pid, None, signal.SIGKILL)
        else:
            self.engine.stop(self.id, grace)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.exec_id:
            _signal_pid(self.pid, None, sig)
        else:
            self.engine.kill(self.id, sig)

    def close(self) -> None:
        with self._lock:
            readers, self._readers = self._readers, {}
        for fd in readers:
            os.close(fd)
        self.close_stdin()


def _signal_pid(pid: int, start: int | None, sig: int) -> bool:
    """Signal pid through a pidfd, checking its start time so a reused PID is never hit."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if start is not None and proc_start_time(pid) != start:
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)
