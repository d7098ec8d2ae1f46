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

import os
import signal
import struct
import time
from typing import Iterator

from . import faults
from .cleanup import CleanupVerbs
from .container import STREAM_NAMES, Container, OutputCallback, Result, _signal_pid, result_of
from .errors import Conflict, ContainerError, NotFound, SpecError
from .paths import data_root, state_root
from .plan.record import StepRecord
from .resources import ResourceVerbs
from .shim.client import ShimClient
from .spec import ContainerSpec
from .state import StateStore, Status, alive, settle, wait_for

__all__ = ["Engine", "Container", "Result"]


class Engine(ResourceVerbs, CleanupVerbs):
    def __init__(self, *, daemon: bool = False, state_dir: str | None = None, data_dir: str | None = None,
                 prewarm: bool | None = None):
        """prewarm: keep the next container's PID 1 ready (namespaces made, rootfs mounted,
        waiting for its command), so the next similar run starts in a fraction of the time.
        Default: on (for the daemon: when this engine is the one that starts it);
        CONTAINERLAB_PREWARM=0 turns it off."""
        self.state_root = state_dir or state_root()
        self.data_root = data_dir or data_root()
        self.store = StateStore(self.state_root)
        self.daemon = daemon
        if prewarm is None:
            prewarm = os.environ.get("CONTAINERLAB_PREWARM", "1") != "0"
        self.prewarm = prewarm
        self._client = ShimClient(self.state_root, self.data_root, daemon=daemon, prewarm=prewarm,
                                  command=self._shim_command)
        self._cgroups = None
        self._reaped = False  # orphans of dead shims were reaped (before this engine's first request)

    def _shim_command(self, *extra: str) -> list[str]:
        return self._client.command(*extra)

    def start(self) -> "Engine":
        """Start (or connect to) the shim. run and exec do this on first use."""
        self._client.start()
        return self

    @property
    def sock(self):
        return self._client.sock

    @property
    def shim_pid(self) -> int | None:
        return self._client.shim_pid

    @property
    def shim_log(self) -> str | None:
        """The shim's log, where an internal error keeps its traceback."""
        return self._client.log_path

    def _request(self, message: dict, fds: tuple[int, ...] = ()) -> tuple[dict, list[int]]:
        if not self._reaped:
            self._reaped = True
            if not self.daemon:  # (the CLI's calls stay quick: `gc` is its verb)
                self.reap_orphans()
        return self._client.request(message, list(fds))

    def _exit_event(self, cid: str, exec_id: str | None) -> dict | None:
        """The exit event if it has come (reading what the shim sent so far, without blocking)."""
        return self._client.event("exit", cid, exec_id, block=False, keep=True)

    def _wait_exit(self, cid: str, exec_id: str | None, timeout: float | None) -> dict | None:
        event = self._client.event("exit", cid, exec_id, timeout)
        if event is None and self._client.closed:
            return {"exit_code": 125, "error": "the engine's shim exited; the container was stopped"}
        return event

    def _result(self, event: dict, spec: ContainerSpec | None) -> Result:
        return result_of(event, spec)

    # ------------------------------------------------------------ verbs

    def run(self, spec: ContainerSpec, on_output: OutputCallback | None = None, *,
            explain: bool = False, tty_size: tuple[int, int] | None = None) -> Container:
        """Start a container; its output can be read as it arrives (see Container).
        explain=True: Container.explain() returns the steps as they ran, timed.
        tty_size: (rows, columns) of a --tty container's terminal from its start."""
        message = {"op": "run", "spec": spec.to_json()}
        if tty_size and spec.tty:
            message["tty_size"] = [int(tty_size[0]), int(tty_size[1])]
        if explain:
            message.update(explain=True, sent_ns=time.perf_counter_ns())
        reply, fds = self._request(message)
        return Container(self, reply, fds, spec, on_output)

    def create(self, spec: ContainerSpec, stdio: tuple[int, int, int] | None,
               tty_size: tuple[int, int] | None = None) -> tuple[dict, int]:
        """The OCI runtime's create: made, PID 1 waiting for start_created, with `stdio` (the
        caller's own fds) as its streams; or, with stdio None and spec.tty, a pty whose master
        is returned (for the caller's console socket).  Returns (the reply: id, name, pid;
        the master or -1)."""
        message = {"op": "run", "spec": spec.to_json(), "hold": True}
        if stdio is not None:
            message["stdio"] = "given"
        if tty_size:
            message["tty_size"] = [int(tty_size[0]), int(tty_size[1])]
        reply, fds = self._request(message, stdio or ())
        master = fds.pop() if spec.tty and stdio is None and fds else -1
        for fd in fds:
            os.close(fd)
        return reply, master

    def start_created(self, ref: str) -> dict:
        """The OCI runtime's start: a created container's PID 1 gets its go."""
        reply, _ = self._request({"op": "start", "container": ref})
        return reply

    def wait_exit(self, cid: str, timeout: float | None = None) -> dict | None:
        """The exit event of a container this engine started (create/start), once it has come."""
        return self._wait_exit(cid, None, timeout)

    def plan(self, spec: ContainerSpec) -> list[StepRecord]:
        """The steps a start of `spec` takes, without running anything (a dry run)."""
        from .images import ImageStore
        from .plan.dry import dry_plan

        from .image_config import apply

        image = ImageStore(self.data_root).resolve(spec.image)
        return dry_plan(apply(spec, image), image, self.store, self.cgroups)

    def exec(self, ref: str, command: list[str], *, env: dict | None = None, workdir: str | None = None,
             user: str | None = None, tty: bool = False, interactive: bool = False,
             on_output: OutputCallback | None = None) -> Container:
        """Run another process in a running container: all its namespaces, cgroup and root."""
        reply, fds = self._request({"op": "exec", "container": ref, "command": list(command), "env": env or {},
                                    "workdir": workdir, "user": user, "tty": tty, "interactive": interactive})
        state = self.store.read(reply["id"]) or {}
        reply["name"] = state.get("name")
        return Container(self, reply, fds, ContainerSpec(tuple(command)), on_output)

    def exec_given(self, ref: str, command: list[str], stdio: tuple[int, int, int] | None, *,
                   env: dict | None = None, workdir: str | None = None, user: str | None = None,
                   detach: bool = False, ulimits: tuple | None = None, group_add: tuple | None = None,
                   tty_size: tuple[int, int] | None = None) -> tuple[dict, int]:
        """The OCI runtime's exec: `stdio` (the caller's own fds) are the process's streams;
        or, stdio None, a pty whose master is returned (for the caller's console socket).
        Returns (the reply: id, exec_id, pid; the master or -1); the exit comes as
        wait_exec's event (detach: it outlives this engine's connection, as a detached
        container does)."""
        message = {"op": "exec", "container": ref, "command": list(command), "env": env or {}, "workdir": workdir,
                   "user": user, "detach": detach, "tty": stdio is None,
                   "ulimits": None if ulimits is None else [list(u) for u in ulimits],
                   "group_add": None if group_add is None else list(group_add)}
        if stdio is not None:
            message["stdio"] = "given"
        if tty_size:
            message["tty_size"] = [int(tty_size[0]), int(tty_size[1])]
        reply, fds = self._request(message, stdio or ())
        master = fds.pop() if stdio is None and fds else -1
        for fd in fds:
            os.close(fd)
        return reply, master

    def wait_exec(self, cid: str, exec_id: str, timeout: float | None = None) -> dict | None:
        return self._wait_exit(cid, exec_id, timeout)

    def inspect(self, ref: str) -> dict:
        cid = self.store.resolve(ref)
        state = self.store.read(cid)
        if state is None:
            raise NotFound(f"no such container: {ref}")
        return settle(state)

    def ps(self, all: bool = False) -> list[dict]:
        rows = [settle(s) for s in self.store.all()]
        for row in rows:
            row["paused"] = row["status"] == Status.RUNNING and self._paused(row["id"])
        return [r for r in rows if all or r["status"] == Status.RUNNING]

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
        current = _open(path)
        if current is None:
            return
        older = _open(path + ".1")  # (opened second: if log rotated in between, it is the same file)
        if older is not None and os.fstat(older.fileno()).st_ino == os.fstat(current.fileno()).st_ino:
            older.close()
            older = None
        if older is not None:
            with older:
                yield from _frames(older)
        while current is not None:
            reading = {"on": follow}  # turned off to read to the end of this file, then stop
            rotated, inode = False, os.fstat(current.fileno()).st_ino
            with current:
                for item in _frames(current, lambda: reading["on"]):
                    if item is not None:
                        yield item
                    elif _rotated(current, path):  # at the end of what is written so far
                        rotated, reading["on"] = True, False  # the rest of this file, then the new one
                    elif not self._running(cid):
                        reading["on"] = False  # one more read picks up what came before the end
                    else:
                        time.sleep(poll)
            current = _next_log(path, inode) if rotated else None

    def _running(self, cid: str) -> bool:
        """Running, or ended but its shim has not yet drained its output and recorded the end."""
        state = self.store.read(cid)
        return bool(state) and settle(state)["status"] in (Status.RUNNING, Status.EXITING)

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        """Block until the container ends; its exit code (None if it was removed as it ended)."""
        cid = self.store.resolve(ref)

        def ended() -> bool:
            state = self.store.read(cid)
            return state is None or settle(state)["status"] in (Status.EXITED, Status.DEAD)

        if not wait_for(ended, timeout if timeout is not None else 1e9, 0.01):
            raise TimeoutError(f"container {ref} still running after {timeout} s")
        state = self.store.read(cid)
        return settle(state).get("exit_code") if state else None

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> None:
        if isinstance(sig, bool) or not isinstance(sig, int) or not 1 <= int(sig) <= signal.SIGRTMAX:
            raise SpecError(f"invalid signal {sig!r}: give a number from 1 to {int(signal.SIGRTMAX)} "
                            "or a name like TERM or KILL")
        cid = self.store.resolve(ref)
        state = self.store.read(cid) or {}
        if settle(state)["status"] not in (Status.RUNNING, Status.CREATED):
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
                pass  # it ended meanwhile (not running: nothing to thaw)

    def stop(self, ref: str, grace: float = 10.0) -> bool:
        """SIGTERM (or the image's StopSignal), then SIGKILL after `grace` seconds. True if it needed SIGKILL."""
        from .image_config import stop_signal

        cid = self.store.resolve(ref)
        state = self.store.read(cid) or {}
        if settle(state)["status"] != Status.RUNNING:
            return False
        pid, start = state["pid"], state.get("pid_start")
        _signal_pid(pid, start, stop_signal(state.get("spec") or {}))
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
            return state is None or state.get("status") != Status.RUNNING

        if not wait_for(done, timeout, 0.005):
            state = self.store.read(cid)
            if state and not alive(state.get("shim_pid"), state.get("shim_start")):
                self._reap_orphan(cid, state)

    def _kill_group(self, cid: str, state: dict) -> None:
        """SIGKILL everything in the container's cgroup (its owner may remove it meanwhile),
        or, in a process sandbox, its session."""
        if state.get("sandbox") and state.get("pid") and alive(state.get("pid"), state.get("pid_start")):
            from .sandbox import kill_session

            kill_session(state["pid"])
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
        status = settle(state)["status"]
        if status in (Status.RUNNING, Status.CREATED):
            if not force:
                raise Conflict(f"container {ref} is {status}: stop it first, or use rm -f")
            self.kill(cid)
        if status in (Status.RUNNING, Status.CREATED, Status.EXITING):
            self._settled(cid)  # its shim records the end (and drains its log) first
        state = self.store.read(cid)
        faults.point("rm")  # (a test hook)
        if state and settle(state)["status"] == Status.DEAD:
            self._reap_orphan(cid, state)  # nobody owns it: its cgroup and network are ours to free
        self.store.remove(cid, (state or {}).get("name"))

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
        self._client.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open(path: str):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _next_log(path: str, done: int):
    """After a rotation: log.1 if it is not the file just read (the shim rotated twice
    meanwhile: read that one first), else the new log.  Three rotations behind, a whole
    file is lost, as with docker's rotated logs."""
    older = _open(path + ".1")
    if older is not None and os.fstat(older.fileno()).st_ino != done:
        return older
    if older is not None:
        older.close()
    return _open(path)


def _rotated(f, path: str) -> bool:
    """Has the shim renamed this log to log.1 and begun a new one (exits.Exits._rotate)?"""
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False  # (the container is being removed)


def _frames(f, follow=lambda: False):
    """(stream, data) of each whole frame (docker's 8-byte header) read from f; with
    follow() true, None at each end of what is written so far, then it reads on."""
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
        if not follow():
            return
        yield None
