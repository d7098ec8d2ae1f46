"""Processes the shim starts: clone(2) a container's PID 1, fork an exec, reap them.

Signals are blocked around clone and fork: the child starts with them blocked,
resets every handler to its default (child.reset_signals) and only then
unblocks them, so the shim's handlers (SIGTERM exits the shim) never run in a
container.  An exec'd process is forked through an intermediate (a PID
namespace applies to children only); the shim, a child subreaper (prctl(2)),
inherits and reaps the grandchild.  Each process is watched by a pidfd
(pidfd_open(2)): readable when it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import time

from .. import child, linux
from ..errors import RuntimeFailure
from ..plan.record import split_error_pipe


class Proc:
    """A process this shim forked: a container's PID 1 (kind 'run') or an exec."""

    def __init__(self, kind: str, cid: str, pid: int, error_fd: int, conn, *, exec_id: str | None = None):
        self.kind, self.cid, self.pid, self.error_fd, self.conn = kind, cid, pid, error_fd, conn
        self.exec_id = exec_id
        self.pidfd = os.pidfd_open(pid)
        self.started = time.monotonic()
        self.deadline: float | None = None
        self.timed_out = False
        self.persistent = False
        self.cgroup = None
        self.network = False
        self.state: dict = {}
        self.pumps: dict[int, int] = {}  # fd -> stream (detached output)
        self.log_fd = -1
        self.log_path, self.log_size, self.log_limit = "", 0, 0  # a detached container's log (exits.py)
        self.wait_status: int | None = None
        self.error: dict | None = None
        self.duration = 0.0
        self.sync_fd = -1
        self.synced = False  # PID 1 waits for a go on its sync pipe
        self.go = b"{}\n"  # what the shim tells PID 1 at its sync pipe (child._wait_for_go)
        self.error_data = b""  # read from error_fd before exit (explain's records come first)
        self.explain: dict | None = None  # the plan's shim records and start time, when asked
        self.execed = False  # PID 1 has exec'd its command: its namespaces are finished
        self.quick = None  # (spec, name) of a run the CLI's quick path started (quick.py)
        self.forwarder = None  # a rootless container's pasta (network/pasta.py), ended with it

    def wait_for_exec(self, timeout: float) -> bool:
        """Until PID 1 has exec'd its command (or died): its close-on-exec error pipe then
        reaches EOF, which poll(2) reports as POLLHUP; what it wrote stays unread.  True
        if it did within `timeout` seconds."""
        if self.execed:
            return True
        poller = select.poll()
        poller.register(self.error_fd, select.POLLHUP)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                   for _, ev in poller.poll(left * 1000)):
                self.execed = True
                return True

    def read_error(self) -> dict:
        """What PID 1 wrote on its error pipe before exit (called once it has exited)."""
        self.error_data += _drain(self.error_fd)
        _, rest = split_error_pipe(self.error_data)
        if not rest:
            return {}
        try:
            return json.loads(rest)
        except ValueError:
            return {"stage": "unknown", "message": rest.decode(errors="replace")}


def _drain(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data


class Spawner:
    """Clones PID 1s and forks execs; reaps what it started."""

    def __init__(self) -> None:
        self.intermediates: set[int] = set()  # first children of exec, exiting after they forked

    def spawn(self, kind: str, cid: str, setup: child.Setup, conn, *, sync: bool = False,
              exec_id: str | None = None) -> Proc:
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        sync_r = sync_w = -1
        if sync:
            sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
            setup.sync_fd = sync_r
        setup.error_fd = err_w
        try:
            pid = self._clone(setup) if kind == "run" else self._fork_exec(setup, err_r)
        except BaseException:
            for fd in (err_r, sync_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in (setup.error_fd, sync_r):  # the child's ends (a failed exec closed its own)
                if fd >= 0:
                    os.close(fd)
            setup.error_fd = -1
        proc = Proc(kind, cid, pid, err_r, conn, exec_id=exec_id)
        proc.sync_fd, proc.synced = sync_w, sync
        return proc

    def _clone(self, setup: child.Setup) -> int:
        if setup.holder_pid:
            return self._clone_joined(setup)
        multi = setup.userns is not None and setup.userns.multi
        map_w = -1
        if multi:  # PID 1 waits until newuidmap has mapped its namespace from out here
            setup.map_fd, map_w = os.pipe2(os.O_CLOEXEC)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            setup.clone_ns = time.perf_counter_ns()
            pid = linux.clone(child.run_flags(setup))
            if pid == 0:  # pragma: no cover - runs in the container's PID 1
                try:
                    child.start_container(setup)
                finally:
                    os._exit(child.EXIT_RUNTIME)
        except BaseException:
            if multi:
                os.close(setup.map_fd)
                os.close(map_w)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if multi:
            os.close(setup.map_fd)
            setup.map_fd = -1
            try:
                setup.userns.map_from_parent(pid)
                os.write(map_w, b"x")
            except BaseException:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise
            finally:
                os.close(map_w)
        return pid

    def _clone_joined(self, setup: child.Setup) -> int:
        """Rootless, on a bridge: PID 1 is cloned by a first child that joined the user
        namespace of the lab's network (network/userland.py), so every namespace it makes
        is owned by that one (its veth can be moved in).  The ids are mapped already.  The
        first child exits at once; PID 1 is then ours (we are a subreaper)."""
        userns_fd = os.open(f"/proc/{setup.holder_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            setup.clone_ns = time.perf_counter_ns()
            first = os.fork()
            if first == 0:  # pragma: no cover - runs in the first child
                try:
                    linux.setns(userns_fd, linux.CLONE_NEWUSER)
                    pid = linux.clone(child.run_flags(setup))
                    if pid == 0:  # PID 1
                        try:
                            child.start_container(setup)
                        finally:
                            os._exit(child.EXIT_RUNTIME)
                    os.write(pid_w, f"{pid}\n".encode())
                    os._exit(0)
                except BaseException as e:  # noqa: BLE001
                    with contextlib.suppress(OSError):
                        os.write(setup.error_fd, json.dumps({"stage": "user namespace", "errno": getattr(
                            e, "errno", None), "message": f"cannot join the network's user namespace: {e}"}).encode())
                    os._exit(child.EXIT_RUNTIME)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            os.close(userns_fd)
            os.close(pid_w)
        try:
            os.waitpid(first, 0)
            data = linux.read_line(pid_r)
        finally:
            os.close(pid_r)
        if not data:
            raise RuntimeFailure("cannot start the container in the network's user namespace (is the network's "
                                 "namespace holder gone? try again)")
        return int(data)

    def _fork_exec(self, setup: child.Setup, err_r: int) -> int:
        pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
        setup.pid_fd = pid_w
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            first = os.fork()
            if first == 0:  # pragma: no cover - runs in the child
                try:
                    child.start_exec(setup)
                finally:
                    os._exit(child.EXIT_RUNTIME)
        except BaseException:
            os.close(pid_r)
            os.close(pid_w)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(pid_w)
        try:
            data = linux.read_line(pid_r)  # not EOF: the first child's exit is reaped later
        finally:
            os.close(pid_r)
        self.intermediates.add(first)
        if not data:  # the first child failed before it could fork
            self.reap_intermediates(block=True)
            os.close(setup.error_fd)
            setup.error_fd = -1
            error = json.loads(_drain(err_r) or b"{}")
            raise RuntimeFailure(f"cannot exec: {error.get('stage')}: {error.get('message')}")
        return int(data)

    def abort(self, proc: Proc) -> None:
        """Kill a PID 1 that will not run (unless it has ended), reap it, close its fds."""
        if proc.wait_status is None:
            signal.pidfd_send_signal(proc.pidfd, signal.SIGKILL)
            proc.wait_status = self.waitpid(proc.pid)
        for fd in (proc.pidfd, proc.error_fd, proc.sync_fd):
            if fd >= 0:
                os.close(fd)
        proc.pidfd = proc.error_fd = proc.sync_fd = -1

    def reap_intermediates(self, block: bool = False) -> None:
        for pid in list(self.intermediates):
            try:
                done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.intermediates.discard(pid)

    def waitpid(self, pid: int) -> int:
        """Reap a process (an exec's is re-parented to us once its first-child parent has exited)."""
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            self.reap_intermediates(block=True)
            return os.waitpid(pid, 0)[1]
