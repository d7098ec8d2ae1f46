"""Engine: the one entry point of the runtime core.

    from containerlab_magic.runtime import Engine, ContainerSpec

    with Engine() as engine:
        box = engine.run(ContainerSpec(["sh", "-c", "echo hi; sleep 1; echo bye"], image="busybox"))
        for stream, data in box.output():      # as the container writes it
            print(stream, data)
        result = box.wait()                    # exit code, signal, duration, timed out, OOM

An Engine owns one shim process (see shim.py) that forks the containers.  It
may be called from any thread: requests are serialised by a lock, and one
reader thread routes the shim's replies and exit events.  Verbs that only
need the state directory (ps, logs, stop, kill, rm, wait, gc) work on every
container of the state root, whichever engine started it.

`Engine()` is private: its containers end when the engine closes or its
process dies (a Jupyter kernel).  `Engine(daemon=True)` talks to the shared
daemon shim instead, whose --detach containers outlive the caller (the CLI).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from . import protocol
from .security import guards
from .errors import Conflict, ContainerError, HostUnsupported, NotFound, RuntimeFailure, SpecError
from .paths import data_root, state_root
from .spec import ContainerSpec, Limits, format_size
from .state import StateStore, alive, proc_start_time, wait_for

OutputCallback = Callable[[str, bytes], None]
STREAM_NAMES = {1: "stdout", 2: "stderr"}
ERRORS = {cls.__name__: cls for cls in (SpecError, NotFound, Conflict, RuntimeFailure, HostUnsupported)}


@dataclass
class Result:
    """How a container (or an exec'd process) ended."""

    exit_code: int
    signal: int | None = None
    duration: float = 0.0
    timed_out: bool = False
    oom_killed: bool = False
    error: str | None = None  # why the command could not be started
    usage: dict | None = None  # final cgroup usage, when there was a cgroup
    memory_limit: int | None = None
    stdout: bytes = b""  # output drained by wait() when nobody read it before
    stderr: bytes = b""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        """One line for people: 'exit 137: killed, out of memory (limit 64 MiB)'."""
        if self.error:
            return f"exit {self.exit_code}: {self.error}"
        if self.oom_killed:
            limit = f" (limit {format_size(self.memory_limit)})" if self.memory_limit else ""
            return f"exit {self.exit_code}: killed, out of memory{limit}"
        if self.timed_out:
            return f"exit {self.exit_code}: killed after the {self.duration:.1f} s timeout"
        if self.signal:
            name = signal.Signals(self.signal).name if self.signal in signal.Signals._value2member_map_ else self.signal
            return f"exit {self.exit_code}: killed by {name}"
        return f"exit {self.exit_code}"


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


class Engine:
    def __init__(self, *, daemon: bool = False, state_dir: str | None = None, data_dir: str | None = None,
                 prewarm: bool | None = None):
        """prewarm: keep the next container's PID 1 ready (namespaces made, rootfs mounted,
        waiting for its command), so the next similar run starts in a fraction of the time.
        Default: on for a private engine, off for the CLI's daemon; CONTAINERLAB_PREWARM=0
        turns it off."""
        self.state_root = state_dir or state_root()
        self.data_root = data_dir or data_root()
        self.store = StateStore(self.state_root)
        self.daemon = daemon
        if prewarm is None:
            prewarm = not daemon and os.environ.get("CONTAINERLAB_PREWARM", "1") != "0"
        self.prewarm = prewarm
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, tuple[dict, list[int]]] = {}
        self._exits: dict[tuple[str, str | None], dict] = {}
        self._next_req = 0
        self._closed = False
        self._reading = False  # a thread is reading the socket (see _await)
        self._shim_proc: subprocess.Popen | None = None
        self._cgroups = None
        self._start_lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.shim_pid: int | None = None

    def start(self) -> "Engine":
        """Start (or connect to) the shim. run and exec do this on first use."""
        with self._start_lock:
            if self.sock is None:
                if self._closed:
                    raise RuntimeFailure("the engine is closed: start a new Engine")
                self.sock = self._connect_daemon() if self.daemon else self._start_private()
                self.shim_pid = self._request({"op": "hello"})[0]["pid"]
        return self

    # ------------------------------------------------------------ shim plumbing

    def _shim_command(self, *extra: str) -> list[str]:
        if guards.disabled("shim-isolation"):  # the escape suite's "before" (tests/security)
            return [sys.executable, "-m", "containerlab_magic.runtime.shim", "--state", self.state_root,
                    "--data", self.data_root, *extra]
        return [sys.executable, "-I", "-c", SHIM_BOOT, PACKAGE_ROOT, "--state", self.state_root,
                "--data", self.data_root, *extra]

    def _start_private(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            extra = ("--prewarm",) if self.prewarm else ()
            self._shim_proc = subprocess.Popen(
                self._shim_command("--fd", str(theirs.fileno()), *extra), pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
                env=_shim_env(), cwd=_shim_cwd())
        return ours

    def _connect_daemon(self) -> socket.socket:
        path = os.path.join(self.state_root, "shim.sock")
        for attempt in range(20):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                sock.connect(path)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            # The daemon outlives this process: it must not hold our stdout/stderr open.
            log_fd = os.open(os.path.join(self.state_root, "shim.log"),
                             os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            os.fchmod(log_fd, 0o600)  # one made before, world-readable
            with os.fdopen(log_fd, "ab") as log:
                proc = subprocess.Popen(self._shim_command("--daemon"), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                                        env=_shim_env(), cwd=_shim_cwd())
            proc.stdout.readline()  # "ready" (or "busy": another one won the race)
            proc.stdout.close()
            proc.wait()
            time.sleep(0.01 * attempt)
        raise RuntimeFailure(f"cannot reach the containerlab daemon at {path}: see `containerlab doctor`")

    # Replies and exit events are read by whichever thread is waiting for one
    # (leader/follower): the waiter reads the socket itself unless another thread
    # already does, and hands on what is not its own.  No reader thread means no
    # thread hand-off on the hot path (about 1 ms a message on a busy 2-core host).

    def _dispatch(self, message: dict | None, fds: list[int]) -> None:
        """Under self._cond: file one message from the shim where its waiter looks."""
        if message is None:
            self._closed = True
        elif message.get("event") == "exit":
            self._exits[(message["id"], message.get("exec_id"))] = message
        else:
            self._replies[message["req"]] = (message, fds)

    def _await(self, ready: Callable[[], bool], timeout: float | None = None, block: bool = True) -> bool:
        """Until ready() (checked under self._cond) holds, the shim is gone, or time is up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                while True:
                    if ready():
                        return True
                    if self._closed:
                        return False
                    left = None if deadline is None else deadline - time.monotonic()
                    if (left is not None and left <= 0) and block:
                        return False
                    if not self._reading:
                        self._reading = True
                        break
                    if not block:
                        return False
                    self._cond.wait(left)
            message, fds, got = None, [], False
            try:
                if not block:
                    left = 0.0
                if left is None or select.select([self.sock], [], [], left)[0]:
                    message, fds = protocol.recv(self.sock)
                    got = True
            except OSError:
                got = True  # the socket is gone: message None closes the engine
            finally:
                with self._cond:
                    self._reading = False
                    if got:
                        self._dispatch(message, fds)
                    self._cond.notify_all()
            if not block and not got:
                with self._cond:
                    return ready()

    def _request(self, message: dict, fds: list[int] = ()) -> tuple[dict, list[int]]:
        if self.sock is None and message.get("op") != "hello":
            self.start()
        with self._send_lock:
            self._next_req += 1
            req = message["req"] = self._next_req
            if self._closed:
                raise RuntimeFailure("the engine is closed (its shim is gone): start a new Engine")
            try:
                protocol.send(self.sock, message, fds)
            except OSError as e:
                raise RuntimeFailure(f"the engine's shim is gone ({e}): start a new Engine") from None
        if not self._await(lambda: req in self._replies):
            raise RuntimeFailure("the engine's shim exited unexpectedly: start a new Engine")
        with self._cond:
            reply, reply_fds = self._replies.pop(req)
        if not reply.get("ok"):
            for fd in reply_fds:
                os.close(fd)
            raise ERRORS.get(reply.get("kind"), RuntimeFailure)(reply.get("error"))
        return reply, reply_fds

    def _exit_event(self, cid: str, exec_id: str | None) -> dict | None:
        """The exit event if it has come (reading what the shim sent so far, without blocking)."""
        key = (cid, exec_id)
        if self.sock is not None:
            self._await(lambda: key in self._exits, block=False)
        with self._cond:
            return self._exits.get(key)

    def _wait_exit(self, cid: str, exec_id: str | None, timeout: float | None) -> dict | None:
        key = (cid, exec_id)
        self._await(lambda: key in self._exits, timeout)
        with self._cond:
            if key in self._exits:
                return self._exits.pop(key)
            if self._closed:
                return {"exit_code": 125, "error": "the engine's shim exited; the container was stopped"}
            return None

    def _result(self, event: dict, spec: ContainerSpec | None) -> Result:
        error = event.get("error")
        text = None
        if error:
            if error.get("stage") == "exec":
                if event["exit_code"] == 127:
                    text = f"{spec.command[0] if spec else 'command'}: command not found in the image (exit 127)"
                else:
                    text = f"{spec.command[0] if spec else 'command'}: cannot run: {error.get('message')}"
            else:
                text = f"container setup failed at {error.get('stage')}: {error.get('message')}"
        return Result(exit_code=event["exit_code"], signal=event.get("signal"), duration=event.get("duration", 0.0),
                      timed_out=event.get("timed_out", False), oom_killed=event.get("oom_killed", False),
                      error=text, usage=event.get("usage"),
                      memory_limit=spec.limits.memory if spec else None)

    # ------------------------------------------------------------ verbs

    def run(self, spec: ContainerSpec, on_output: OutputCallback | None = None) -> Container:
        """Start a container; its output can be read as it arrives (see Container)."""
        reply, fds = self._request({"op": "run", "spec": spec.to_json()})
        return Container(self, reply, fds, spec, on_output)

    def exec(self, ref: str, command: list[str], *, env: dict | None = None, workdir: str | None = None,
             user: str | None = None, tty: bool = False, interactive: bool = False,
             on_output: OutputCallback | None = None) -> Container:
        """Run another process in a running container: all its namespaces, cgroup and root."""
        reply, fds = self._request({"op": "exec", "container": ref, "command": list(command), "env": env or {},
                                    "workdir": workdir, "user": user, "tty": tty, "interactive": interactive})
        state = self.store.read(reply["id"]) or {}
        reply["name"] = state.get("name")
        return Container(self, reply, fds, ContainerSpec(tuple(command)), on_output)

    def inspect(self, ref: str) -> dict:
        cid = self.store.resolve(ref)
        state = self.store.read(cid)
        if state is None:
            raise NotFound(f"no such container: {ref}")
        return _settle(state)

    def ps(self, all: bool = False) -> list[dict]:
        rows = [_settle(s) for s in self.store.all()]
        for row in rows:
            row["paused"] = row["status"] == "running" and self._paused(row["id"])
        return [r for r in rows if all or r["status"] == "running"]

    def logs(self, ref: str, follow: bool = False, poll: float = 0.05) -> Iterator[tuple[str, bytes]]:
        """Output of a detached container: (stream, data) in the order the shim read it.

        stdout and stderr are separate pipes, so two writes to different streams
        within microseconds may swap (as with docker); each stream keeps its order."""
        cid = self.store.resolve(ref)
        path = os.path.join(self.store.dir(cid), "log")
        if not os.path.exists(path):
            state = self.store.read(cid) or {}
            if not state.get("detach"):
                raise SpecError(f"container {ref} runs in the foreground: its output goes to whoever started it")
            if not follow:
                return
            wait_for(lambda: os.path.exists(path) or not self._running(cid), 5)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return
        with f:
            buffer = b""
            while True:
                chunk = f.read(65536)
                if chunk:
                    buffer += chunk
                    while len(buffer) >= 8:
                        stream, size = struct.unpack(">BxxxI", buffer[:8])
                        if len(buffer) < 8 + size:
                            break
                        yield STREAM_NAMES.get(stream, "stdout"), buffer[8:8 + size]
                        buffer = buffer[8 + size:]
                    continue
                if not follow:
                    return
                if not self._running(cid):
                    follow = False  # one more read picks up what was written before the end
                    continue
                time.sleep(poll)

    def _running(self, cid: str) -> bool:
        """Running, or ended but its shim has not yet drained its output and recorded the end."""
        state = self.store.read(cid)
        return bool(state) and _settle(state)["status"] in ("running", "exiting")

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        """Block until the container ends; its exit code (None if it was removed as it ended)."""
        cid = self.store.resolve(ref)

        def ended() -> bool:
            state = self.store.read(cid)
            return state is None or _settle(state)["status"] in ("exited", "dead")

        if not wait_for(ended, timeout if timeout is not None else 1e9, 0.01):
            raise TimeoutError(f"container {ref} still running after {timeout} s")
        state = self.store.read(cid)
        return _settle(state).get("exit_code") if state else None

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> None:
        cid = self.store.resolve(ref)
        state = self.store.read(cid) or {}
        if _settle(state)["status"] != "running":
            raise Conflict(f"container {ref} is not running")
        _signal_pid(state["pid"], state.get("pid_start"), sig)
        if sig == signal.SIGKILL:
            self._kill_group(cid, state)
        self._thaw_if_paused(cid)

    def _thaw_if_paused(self, cid: str) -> None:
        """A frozen process cannot act on a signal: let it run so it can end."""
        if self._paused(cid):
            try:
                self.unpause(cid)
            except ContainerError:
                pass

    def stop(self, ref: str, grace: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after `grace` seconds. True if it needed SIGKILL."""
        cid = self.store.resolve(ref)
        state = self.store.read(cid) or {}
        if _settle(state)["status"] != "running":
            return False
        pid, start = state["pid"], state.get("pid_start")
        _signal_pid(pid, start, signal.SIGTERM)
        self._thaw_if_paused(cid)
        if wait_for(lambda: not alive(pid, start), grace, 0.01):
            self._settled(cid)
            return False
        _signal_pid(pid, start, signal.SIGKILL)
        self._kill_group(cid, state)
        wait_for(lambda: not alive(pid, start), 10, 0.01)
        self._settled(cid)
        return True

    def _settled(self, cid: str, timeout: float = 10.0) -> None:
        """Wait until the owning shim has recorded the end (or, if it is gone, clean up ourselves)."""
        def done() -> bool:
            state = self.store.read(cid)
            return state is None or state.get("status") != "running"

        if not wait_for(done, timeout, 0.005):
            state = self.store.read(cid)
            if state and not alive(state.get("shim_pid"), state.get("shim_start")):
                self._reap_orphan(cid, state)

    def _kill_group(self, cid: str, state: dict) -> None:
        """SIGKILL everything in the container's cgroup (its owner may remove it meanwhile)."""
        if state.get("cgroup") and self.cgroups is not None:
            group = self.cgroups.open(cid)
            try:
                if group is not None:
                    group.kill_all()
            except (OSError, ContainerError):
                # the owning shim removes the group as soon as PID 1 is gone: only a
                # group whose container still runs is a real failure
                if alive(state.get("pid"), state.get("pid_start")):
                    raise

    def rm(self, ref: str, force: bool = False) -> None:
        cid = self.store.resolve(ref)
        state = self.store.read(cid) or {}
        status = _settle(state)["status"]
        if status == "running":
            if not force:
                raise Conflict(f"container {ref} is running: stop it first, or use rm -f")
            self.kill(cid)
        if status in ("running", "exiting"):
            self._settled(cid)  # its shim records the end (and drains its log) first
        self.store.remove(cid, state.get("name"))

    # ------------------------------------------------------------ limits and usage (cgroups)

    def _group(self, ref: str, verb: str):
        cid = self.store.resolve(ref)
        state = _settle(self.store.read(cid) or {})
        if state.get("status") != "running":
            raise Conflict(f"container {ref} is not running: {verb} needs a running container")
        group = self.cgroups.open(cid) if (state.get("cgroup") and self.cgroups is not None) else None
        if group is None:
            raise HostUnsupported(f"container {ref} has no cgroup: {verb} needs cgroups (see `containerlab doctor`)")
        return cid, state, group

    def stats(self, ref: str) -> dict:
        """Usage now against the limits: memory (now, peak, limit), CPU time, throttling, pids, OOM kills, I/O."""
        cid, state, group = self._group(ref, "stats")
        usage = vars(group.stats()).copy()
        limits = self.limits(cid)
        usage.update(id=cid, name=state.get("name"), time=time.time(), cpus_limit=limits.cpus,
                     paused=self._paused(cid), cgroup_version=self.cgroups.version)
        if usage.get("memory_limit") is None and limits.memory:
            usage["memory_limit"] = limits.memory
        usage.update(self._network_usage(cid, state))
        return usage

    def network_usage(self, ref: str) -> dict:
        """Network, address, eth0's bytes and shaping of a container ({} if on none or host)."""
        cid = self.store.resolve(ref)
        return self._network_usage(cid, self.store.read(cid) or {})

    def _network_usage(self, cid: str, state: dict) -> dict:
        """Bytes through eth0 and its shaping, for a container on a bridge network (or
        sharing one's namespace).  The counters are the host end's, read from sysfs:
        what the host end sends, the container receives."""
        network = state.get("network") or "none"
        if network in ("none", "host") or not os.path.isdir(os.path.join(self.state_root, "networks")):
            return {}
        from .network.state import NetworkState

        with NetworkState(self.state_root).locked() as st:
            record = st["containers"].get(cid)
            if record and record.get("joined"):
                record = st["containers"].get(record["joined"])
            record = dict(record) if record else None
        if not record or not record.get("veth"):
            return {}
        usage = {"network": record["network"], "ip": record["ip"], "net_shape": record.get("shape")}
        for ours, theirs in (("net_rx_bytes", "tx_bytes"), ("net_tx_bytes", "rx_bytes")):
            try:
                with open(f"/sys/class/net/{record['veth']}/statistics/{theirs}") as f:
                    usage[ours] = int(f.read())
            except (OSError, ValueError):
                usage[ours] = None
        return usage

    def sample(self, ref: str, interval: float = 0.5) -> Iterator[dict]:
        """Stats every `interval` seconds, with CPU % since the previous sample, until it ends."""
        previous = None
        while True:
            try:
                current = self.stats(ref)
            except (Conflict, NotFound):
                return
            if previous is not None and current.get("cpu_usage_ns") is not None:
                wall = current["time"] - previous["time"]
                used = current["cpu_usage_ns"] - (previous.get("cpu_usage_ns") or 0)
                current["cpu_percent"] = 100.0 * used / 1e9 / wall if wall > 0 else 0.0
            else:
                current["cpu_percent"] = None
            yield current
            previous = current
            time.sleep(interval)

    def limits(self, ref: str) -> Limits:
        """The container's limits now: its spec, with live updates applied."""
        cid = self.store.resolve(ref)
        state = self.store.read(cid) or {}
        spec = ContainerSpec.from_json(state["spec"]) if state.get("spec") else None
        current = dataclasses.asdict(spec.limits) if spec else {}
        try:
            with open(os.path.join(self.store.dir(cid), "limits.json")) as f:
                current.update(json.load(f))
        except FileNotFoundError:
            pass
        return Limits(**current)

    def update(self, ref: str, limits: Limits | None = None, *, net_rate: str | None = None,
               net_delay: str | None = None, net_loss: str | None = None) -> tuple[Limits, Limits]:
        """Change limits of a running container; returns (before, after)."""
        before = self.limits(ref)
        after = before
        if limits is not None and limits.any_cgroup_limit:
            cid, state, group = self._group(ref, "update")
            changed = {k: v for k, v in dataclasses.asdict(limits).items() if v is not None}
            merged = dataclasses.asdict(before)
            merged.update(changed)
            if "memory" in changed and "memory_swap" not in changed and before.memory_swap is None:
                merged["memory_swap"] = None  # swap stays disabled at the new memory limit
            after = Limits(**merged)  # validates the combination
            group.update(limits)
            with open(os.path.join(self.store.dir(cid), "limits.json.tmp"), "w") as f:
                json.dump(dataclasses.asdict(after), f)
            os.rename(os.path.join(self.store.dir(cid), "limits.json.tmp"),
                      os.path.join(self.store.dir(cid), "limits.json"))
        if net_rate or net_delay or net_loss:
            cid = self.store.resolve(ref)
            from .network import NetworkManager

            nm = NetworkManager(self.state_root)
            try:
                nm.shape(cid, net_rate, net_delay, net_loss, keep=True)  # what is not given stays
            finally:
                nm.close()
        return before, after

    def pause(self, ref: str) -> None:
        """Freeze every process of the container (the freezer cgroup)."""
        cid, _, group = self._group(ref, "pause")
        group.freeze()
        open(os.path.join(self.store.dir(cid), "paused"), "w").close()

    def unpause(self, ref: str) -> None:
        cid, _, group = self._group(ref, "unpause")
        group.thaw()
        try:
            os.unlink(os.path.join(self.store.dir(cid), "paused"))
        except FileNotFoundError:
            pass

    def _paused(self, cid: str) -> bool:
        return os.path.exists(os.path.join(self.store.dir(cid), "paused"))

    # ------------------------------------------------------------ networks

    def networks(self):
        """The network layer (create, remove, list, inspect) for this state root."""
        from .network import NetworkManager

        return NetworkManager(self.state_root)

    @property
    def cgroups(self):
        if self._cgroups is None:
            try:
                from .cgroups import open_manager
            except ImportError:
                return None
            self._cgroups = open_manager() or False
        return self._cgroups or None

    def gc(self) -> list[str]:
        """Remove what crashes left behind: orphaned containers, their cgroups, stale names."""
        removed = []
        for state in list(self.store.all(spares=True)):
            if state.get("status") in ("running", "spare", "creating") and not alive(state.get("shim_pid"),
                                                                                      state.get("shim_start")):
                self._reap_orphan(state["id"], state)
                what = "spare slot" if state["status"] == "spare" else f"container {state.get('name')}"
                removed.append(f"{what} ({state['id'][:12]})")
        for cid in self.store.ids():
            if self.store.read(cid) is None and not self._young(cid):
                self.store.remove(cid)
                removed.append(f"state directory {cid[:12]}")
        for path in self.store.unfinished():  # its maker died before renaming it into place
            try:
                with open(os.path.join(path, "state.json")) as f:
                    owner = json.load(f)
            except (OSError, ValueError):
                owner = {}
            try:
                orphaned = not alive(owner.get("shim_pid"), owner.get("shim_start"))
                if orphaned or time.time() - os.stat(path).st_mtime > 30:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(f"unfinished state directory {os.path.basename(path)[5:17]}")
            except FileNotFoundError:
                pass
        known = set(self.store.ids())
        for cid in self.store.cgroups():  # only groups this state root made
            if cid in known:
                continue
            group = self.cgroups.open(cid) if self.cgroups is not None else None
            if group is not None:
                group.kill_all()
                group.remove()
                removed.append(f"cgroup {cid[:12]}")
            self.store.forget_cgroup(cid)
        try:
            from .network import NetworkManager
        except ImportError:
            NetworkManager = None
        if NetworkManager is not None and os.path.isdir(os.path.join(self.state_root, "networks")):
            NetworkManager(self.state_root).gc(set(self.store.ids()))
        for name in os.listdir(self.store.names):
            link = os.path.join(self.store.names, name)
            if not os.path.isdir(self.store.dir(os.readlink(link))):
                os.unlink(link)
                removed.append(f"name {name}")
        if self.cgroups is not None:
            self.cgroups.release()  # the lab's parent groups, if no engine has a group in them
        return removed

    def _young(self, cid: str) -> bool:
        """A state dir being created right now has no state.json yet."""
        try:
            return time.time() - os.stat(self.store.dir(cid)).st_mtime < 30
        except FileNotFoundError:
            return False

    def _reap_orphan(self, cid: str, state: dict) -> None:
        if alive(state.get("pid"), state.get("pid_start")):
            _signal_pid(state["pid"], state.get("pid_start"), signal.SIGKILL)
            wait_for(lambda: not alive(state["pid"], state.get("pid_start")), 10, 0.01)
        if state.get("cgroup") and self.cgroups is not None:
            group = self.cgroups.open(cid)
            if group is not None:
                group.kill_all()
                group.remove()
            self.store.forget_cgroup(cid)
        self.store.remove(cid, state.get("name"))

    def images(self) -> list[dict]:
        from .images import ImageStore

        store = ImageStore(self.data_root)
        rows = []
        for name in store.names():
            try:
                image = store.resolve(name)
                rows.append({"name": name, "layers": list(image.layers), "binds": list(image.binds), "ok": True})
            except ContainerError as e:
                rows.append({"name": name, "ok": False, "error": str(e)})
        return rows

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Stop every container this engine owns and end its shim."""
        with self._start_lock:
            self._closed = True
        if self.sock is None:
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.sock = None
        if self._shim_proc is not None:
            try:
                self._shim_proc.wait(30)
            except subprocess.TimeoutExpired:
                self._shim_proc.kill()
                self._shim_proc.wait()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _settle(state: dict) -> dict:
    """A state as the world is now: a 'running' container whose PID is gone is 'dead'."""
    state = dict(state)
    if state.get("status") == "running" and not alive(state.get("pid"), state.get("pid_start")):
        state["status"] = "exiting" if alive(state.get("shim_pid"), state.get("shim_start")) else "dead"
    return state


# The shim runs as root and outlives the caller: it must import nothing the caller (or a
# container with the caller's directory bound in) can plant.  So it starts isolated
# (`python -I`: no PYTHON* variables, no user site, no script or current directory on
# sys.path), in /, with a fixed environment, and finds this package at the one path
# given: placed after the standard library, so no file there can shadow a stdlib module.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIM_BOOT = ("import sys; root = sys.argv.pop(1); "
             "sys.path.insert(next((i for i, p in enumerate(sys.path) if p.endswith(('site-packages', "
             "'dist-packages'))), len(sys.path)), root); "
             "from containerlab_magic.runtime.shim import main; sys.exit(main())")
SHIM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _shim_cwd() -> str | None:
    return None if guards.disabled("shim-isolation") else "/"


def _shim_env() -> dict:
    """The shim's whole environment: a fixed PATH and locale, and our own CONTAINERLAB_* switches."""
    if guards.disabled("shim-isolation"):
        return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
    env = {"PATH": SHIM_PATH, "LANG": "C.UTF-8"}
    env.update((k, v) for k, v in os.environ.items() if k.startswith("CONTAINERLAB_"))
    return env
