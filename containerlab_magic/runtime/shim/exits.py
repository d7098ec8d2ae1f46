"""What the shim does when a process ends or writes: output into logs, exit events,
cleanup.

Only what the caller may rely on at once -- its exit event, its network
address and ports released, its name free -- happens before the exit event is
sent.  Removing a cgroup and a state folder (~0.5 ms) waits for the next reply
or a quiet moment (`defer`), so it never delays the next container's start.
"""

from __future__ import annotations

import os
import selectors
import signal
import struct
import time

from ..errors import ContainerError, SpecError
from ..plan.record import split_error_pipe
from ..state import Status

DEFER_FOR = 0.05  # seconds of quiet before deferred cleanup runs
LOG_SIZE = 16 << 20  # bytes a detached container's log holds before it rotates (CONTAINERLAB_LOG_SIZE)


def log_limit() -> int:
    """CONTAINERLAB_LOG_SIZE (e.g. 16M; at least 64K): where a log rotates to log.1."""
    from ..spec import parse_size

    text = os.environ.get("CONTAINERLAB_LOG_SIZE", "").strip()
    if not text:
        return LOG_SIZE
    try:
        size = parse_size(text, "CONTAINERLAB_LOG_SIZE")
    except ContainerError:
        size = -1
    if size < 64 << 10:
        raise SpecError(f"invalid CONTAINERLAB_LOG_SIZE={text!r}: give a size of at least 64K, e.g. 16M "
                        "(a detached container's log rotates to log.1 past it)")
    return size


class Exits:
    def __init__(self, shim) -> None:
        self.shim = shim
        self.deferred: list = []  # cleanup to do when idle (see run_deferred)
        self.deferred_due = 0.0
        self.kept: set[tuple[str, str]] = set()  # exited detached containers of our clients

    # ---------------------------------------------------------------- output

    def pump_to_log(self, proc, state_dir: str, pumps: list[tuple[int, int]], limit: int = LOG_SIZE) -> None:
        proc.log_path, proc.log_limit = os.path.join(state_dir, "log"), limit
        proc.log_fd = os.open(proc.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        proc.log_size = os.fstat(proc.log_fd).st_size
        for fd, stream in pumps:
            os.set_blocking(fd, False)
            proc.pumps[fd] = stream
            self.shim.selector.register(fd, selectors.EVENT_READ, ("pump", (proc, stream)))

    def stop_pumps(self, proc) -> None:
        for fd in list(proc.pumps):
            self.shim.selector.unregister(fd)
            os.close(fd)
        proc.pumps.clear()
        if proc.log_fd >= 0:
            os.close(proc.log_fd)
            proc.log_fd = -1

    def on_output(self, fd: int, proc, stream: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if data:
            frame = struct.pack(">BxxxI", stream, len(data)) + data
            if proc.log_size and proc.log_size + len(frame) > proc.log_limit:
                self._rotate(proc)
            os.write(proc.log_fd, frame)
            proc.log_size += len(frame)
            return
        self.shim.selector.unregister(fd)
        os.close(fd)
        del proc.pumps[fd]
        self.maybe_finish(proc)

    def _rotate(self, proc) -> None:
        """log -> log.1 (replacing the older one), and a new log: a container that floods its
        output holds at most two logs of the limit on the host.  Frames never straddle two
        files; a reader following the old file finishes it, then opens the new (Engine.logs)."""
        os.replace(proc.log_path, proc.log_path + ".1")
        fd = os.open(proc.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.close(proc.log_fd)
        proc.log_fd, proc.log_size = fd, 0

    # ---------------------------------------------------------------- explain

    def on_explain(self, proc) -> None:
        """PID 1's error pipe is readable: its explain line (sent just before exec), or EOF."""
        try:
            chunk = os.read(proc.error_fd, 65536)
        except BlockingIOError:
            return
        proc.error_data += chunk
        if chunk and b"\n" not in proc.error_data:
            return  # the rest of the line is on its way
        self.send_explain(proc)

    def send_explain(self, proc) -> None:
        try:
            self.shim.selector.unregister(proc.error_fd)
        except (KeyError, ValueError):
            return  # sent already
        explain, _ = split_error_pipe(proc.error_data)
        explain = explain or {"explain": [], "exec_ns": None}
        self.shim.send_event(proc, {"event": "explain", "id": proc.cid, "records": explain["explain"],
                                    "exec_ns": explain["exec_ns"]})

    # ---------------------------------------------------------------- exits

    def on_exit(self, proc) -> None:
        shim = self.shim
        shim.selector.unregister(proc.pidfd)
        status = shim.spawner.waitpid(proc.pid)
        shim.spawner.reap_intermediates()
        proc.duration = time.monotonic() - proc.started
        proc.wait_status = status
        os.close(proc.pidfd)
        proc.pidfd = -1
        os.set_blocking(proc.error_fd, True)  # it has exited: EOF comes at once
        self.send_explain(proc)
        proc.error = proc.read_error() or None
        os.close(proc.error_fd)
        proc.error_fd = -1
        if proc.forwarder is not None:
            proc.forwarder.stop()
            proc.forwarder = None
        if shim.sandbox is not None:
            self._end_sandbox(proc)
        self.maybe_finish(proc)

    def _end_sandbox(self, proc) -> None:
        """No PID namespace ends what a sandboxed PID 1 left: end its session (and its execs')."""
        from .. import sandbox

        shim = self.shim
        tracked = set(shim.procs) | shim.spawner.intermediates
        sessions = [proc.pid] if proc.kind == "run" else []
        if proc.kind == "run":
            sessions += [p.pid for p in shim.procs.values() if p.cid == proc.cid and p.kind == "exec"]
        for sid in sessions or [proc.pid]:
            sandbox.end_session(sid, tracked)

    def maybe_finish(self, proc) -> None:
        if proc.wait_status is None or proc.pumps:
            return
        shim = self.shim
        del shim.procs[proc.pid]
        if proc.log_fd >= 0:
            os.close(proc.log_fd)
            proc.log_fd = -1
        status = proc.wait_status
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = 128 + sig if sig else os.WEXITSTATUS(status)
        result = {"event": "exit", "id": proc.cid, "exec_id": proc.exec_id, "exit_code": code,
                  "signal": sig, "timed_out": proc.timed_out, "duration": proc.duration,
                  "oom_kills": 0, "oom_killed": False, "error": proc.error}
        if proc.kind == "run" and proc.cgroup is not None:
            try:
                usage = vars(proc.cgroup.stats())
                kills = int(usage.get("oom_kills") or 0)
                # As docker keeps ExitCode and OOMKilled apart: PID 1 itself died of it only
                # if it was SIGKILLed (the OOM killer's signal) while the group had OOM kills.
                result.update(usage=usage, oom_kills=kills, oom_killed=bool(kills) and sig == signal.SIGKILL
                              and not proc.timed_out)
            except (OSError, ContainerError) as e:
                shim.log.write(f"final usage of {proc.cid[:12]}: {e}")
        if proc.kind == "run" and proc.network:
            # Before the event: once told, the caller may remove the network or reuse the port.
            # The veth pair goes with the network namespace (deleting it here measured slower).
            try:
                shim.network.detach(proc.cid, exited=True)
            except Exception:  # noqa: BLE001 - gc retries; never leave the state half-written
                shim.log.exception("network detach")
            proc.network = False
        # The caller learns the end first; the bookkeeping below finishes before this
        # shim reads its next request, so the caller never sees it half done.
        shim.send_event(proc, result)
        if proc.kind == "run":
            self._cleanup(proc, result)

    def _cleanup(self, proc, result: dict) -> None:
        """After PID 1 is gone: free the cgroup, settle the state."""
        shim = self.shim
        for p in list(shim.procs.values()):  # execs die with the PID namespace
            if p.cid == proc.cid:
                shim.kill(p)
        if proc.cgroup is not None:
            self.defer(lambda: self._free_cgroup(proc))
        spec = proc.state.get("spec") or {}
        keep = proc.state.get("detach") and not spec.get("auto_remove")
        if keep and (proc.persistent or proc.conn is not None):
            if not proc.persistent:
                self.kept.add((proc.cid, proc.state.get("name")))
            proc.state.update(status=Status.EXITED, finished=time.time(), timed_out=proc.timed_out,
                              exit_code=result["exit_code"], oom_killed=result["oom_killed"],
                              oom_kills=result["oom_kills"], error=proc.error)
            if os.path.isdir(shim.store.dir(proc.cid)):  # unless someone removed it meanwhile
                shim.store.write(proc.cid, proc.state)
        else:  # a foreground container, or --rm: gone with its end
            shim.store.release(proc.cid, proc.state.get("name"))  # the name is free at once
            self.defer(lambda: shim.store.remove(proc.cid))

    def _free_cgroup(self, proc) -> None:
        try:
            if proc.cgroup.pids():
                proc.cgroup.kill_all()
            self.shim.remove_cgroup(proc.cid, proc.cgroup)
        except (OSError, ContainerError) as e:
            self.shim.log.write(f"remove the cgroup of {proc.cid[:12]} (gc retries): {e}")

    # ---------------------------------------------------------------- deferred work

    def defer(self, action) -> None:
        if not self.deferred:
            self.deferred_due = time.monotonic() + DEFER_FOR
        self.deferred.append(action)

    def run_deferred(self) -> None:
        """Cleanup left for idle moments."""
        while self.deferred:
            try:
                self.deferred.pop(0)()
            except Exception:  # noqa: BLE001 - cleanup must not stop the shim; gc retries
                self.shim.log.exception("deferred cleanup")
        self._prune_kept()

    def _prune_kept(self) -> None:
        """Forget kept containers someone removed meanwhile (rm): the record stays small."""
        self.kept = {(cid, name) for cid, name in self.kept if os.path.isdir(self.shim.store.dir(cid))}

    def forget_kept(self) -> None:
        """Our engine is gone, and its exited detached containers go with it."""
        store = self.shim.store
        for cid, name in self.kept:
            if not self.shim.daemon or (store.read(cid) or {}).get("shim_pid") == self.shim.me[0]:
                store.remove(cid, name)
