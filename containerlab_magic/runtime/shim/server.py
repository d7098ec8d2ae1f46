"""The shim's server loop: sockets, messages and one selector.

Events come from one selector: client sockets, a pidfd per process (readable
when it exits), PID 1's error pipe while explain waits for its records,
detached output pipes, the port proxy, and timers (--timeout, deferred
cleanup, warm-ups).  One request's exception never ends the loop: a bug is
logged with its traceback (log.py) and answered with one line naming the log.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import time

from .. import child, protocol, rootless, sandbox, security
from ..errors import Conflict, ContainerError, SpecError
from ..images import ImageStore
from ..state import StateStore, proc_start_time
from .exits import Exits
from . import quick
from .procs import Proc, Spawner
from .spares import SparePool
from .start import Starter

MAX_SELECT = 3600.0  # seconds: longer waits are cut (select(2) rejects absurd timeouts)
FIRST_CONTACT = 10.0  # seconds a new daemon waits for the caller that started it, whatever its linger

try:
    from ..cgroups import open_manager
except ImportError:  # pragma: no cover - the cgroups layer is optional at import time
    open_manager = None  # type: ignore[assignment]


class Shim:
    def __init__(self, state_root: str, data_root: str, log, prewarm: bool = False):
        self.store = StateStore(state_root)
        self.images = ImageStore(data_root)
        self.log = log
        self.stage = os.path.join(state_root, "rootfs")
        os.makedirs(self.stage, exist_ok=True)
        self.selector = selectors.DefaultSelector()
        self.conns: set[socket.socket] = set()
        self.contacted = False  # a caller has connected (until then a daemon waits FIRST_CONTACT)
        self.procs: dict[int, Proc] = {}  # pid -> Proc
        self.listener: socket.socket | None = None
        self.daemon = False
        self.me = (os.getpid(), proc_start_time(os.getpid()))
        # CONTAINERLAB_CGROUPS=off: the named degraded mode (namespaces only), as on a
        # host with no writable cgroups; a container that asks for limits is refused.
        use_cgroups = open_manager is not None and os.environ.get("CONTAINERLAB_CGROUPS", "on") != "off"
        self.cgroups = open_manager() if use_cgroups else None
        # Not root: the rootless rung's user namespace (None as root, or where none can be made)
        self.userns = rootless.for_this_process()
        # ... or, where no namespace can be made, the process-sandbox rung (sandbox.py)
        self.sandbox = sandbox.for_this_process() if self.userns is None else None
        self.cgroup_mounts = child.cgroup_mounts(self.cgroups)  # what PID 1 shows at /sys/fs/cgroup
        self._network = None
        self.devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        self.last_event = time.monotonic()
        # Compile the default seccomp profile once, before any container: each PID 1 gets
        # it (and drops its own bounding set to its own capabilities) in security.apply.
        security.prepare()
        self.spawner = Spawner()
        self.exits = Exits(self)
        self.starter = Starter(self)
        self.spares = SparePool(self, prewarm)

    # ---------------------------------------------------------------- connections

    def add_conn(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        self.conns.add(conn)
        self.contacted = True
        self.selector.register(conn, selectors.EVENT_READ, ("conn", conn))

    def listen(self, path: str) -> None:
        self.daemon = True
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old_umask = os.umask(0o177)  # 0600 from the start: no moment where others may connect
        try:
            self.listener.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self.listener.listen(64)
        self.selector.register(self.listener, selectors.EVENT_READ, ("listen", None))

    def drop_conn(self, conn: socket.socket) -> None:
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        self.selector.unregister(conn)
        conn.close()
        for proc in list(self.procs.values()):
            if proc.conn is conn:
                proc.conn = None
                if not proc.persistent:
                    self.kill(proc)

    def send_event(self, proc: Proc, event: dict) -> None:
        if proc.conn is None:
            return
        self._answer(proc.conn, quick.with_final_line(proc, event))

    # ---------------------------------------------------------------- the loop

    def serve(self, linger: float = 2.0) -> None:
        """Run until nothing is left to serve (a daemon lingers `linger` s when idle, and
        waits at least FIRST_CONTACT s for the caller that started it, even with linger 0)."""
        idle_since, first = time.monotonic(), linger
        if self.daemon and not self.conns:
            first = max(linger, FIRST_CONTACT)
        try:
            while True:
                wait = linger if self.contacted else first
                if self.conns or self.procs or self.exits.deferred:
                    idle_since = time.monotonic()
                elif not self.daemon or time.monotonic() - idle_since >= wait:
                    break
                timeout = self._timeout(wait, idle_since)
                events = self.selector.select(timeout)
                self._guarded("housekeeping", lambda: self._on_events(events))
        finally:
            self.shutdown()

    def _timeout(self, linger: float, idle_since: float) -> float | None:
        now = time.monotonic()
        waits = [p.deadline - now for p in self.procs.values() if p.deadline and not p.timed_out]
        if self.daemon and not (self.conns or self.procs):
            waits.append(linger - (now - idle_since))
        if self.exits.deferred:  # due after a quiet spell, or right after the next reply
            waits.append(self.exits.deferred_due - now)
        warm_at = self.spares.warm_due()
        if warm_at is not None:
            waits.append(warm_at - now)
        return min(MAX_SELECT, max(0.0, min(waits))) if waits else None

    def _on_events(self, events) -> None:
        now = time.monotonic()
        if not events:
            if self.exits.deferred and now >= self.exits.deferred_due:
                self.exits.run_deferred()
                return
            warm_at = self.spares.warm_due()
            if warm_at is not None and now >= warm_at:
                self.spares.warm_next()
                return
        else:
            self.last_event = now
        for key, _ in events:
            self._guarded(f"event {key.data[0]}", lambda: self._dispatch(key))
        self._check_timeouts()
        if self.conns or self.daemon:
            self.spares.prepare_slot()

    def _guarded(self, what: str, action) -> None:
        """Run `action`; a bug in it is logged with its traceback, and the loop goes on."""
        try:
            action()
        except Exception as e:  # noqa: BLE001 - one container's trouble must not end the others
            self.log.exception(f"{what}: {type(e).__name__}: {e}")

    def _dispatch(self, key) -> None:
        kind, obj = key.data
        if kind == "conn":
            self._on_message(obj)
        elif kind == "proc":
            self.exits.on_exit(obj)
        elif kind == "pump":
            self.exits.on_output(key.fd, *obj)
        elif kind == "explain":
            self.exits.on_explain(obj)
        elif kind == "warm":
            self.spares.on_warm_exit(obj)
        elif kind == "proxy":
            self._network.proxy.pump()
        elif kind == "listen":
            conn, _ = self.listener.accept()
            if security.peer_allowed(conn):  # root or the daemon's own user (SO_PEERCRED)
                self.add_conn(conn)
            else:
                conn.close()

    def _check_timeouts(self) -> None:
        if self.sandbox is not None:  # orphans of sandboxed processes come back to us: reap them
            sandbox.reap_orphans(set(self.procs) | self.spawner.intermediates)
        now = time.monotonic()
        for proc in list(self.procs.values()):
            if proc.deadline and not proc.timed_out and now >= proc.deadline and proc.wait_status is None:
                proc.timed_out = True
                self.kill(proc)

    def kill(self, proc: Proc) -> None:
        # SIGKILL to PID 1 ends its whole PID namespace; the cgroup catches the rest.
        try:
            signal.pidfd_send_signal(proc.pidfd, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass  # ended already (or its pidfd is closed: reaped)
        if self.sandbox is not None:  # no PID namespace: its session is the container
            sandbox.kill_session(proc.pid)
        if proc.kind == "run" and proc.cgroup is not None:
            try:
                proc.cgroup.kill_all()
            except OSError as e:
                self.log.write(f"kill the cgroup of {proc.cid[:12]}: {e}")

    # ---------------------------------------------------------------- requests

    def _on_message(self, conn: socket.socket) -> None:
        received_ns = time.perf_counter_ns()
        try:
            message, fds = protocol.recv(conn)
        except ValueError as e:  # not one JSON object: say so, and serve the connection on
            self._answer(conn, {"req": None, "ok": False, "kind": "SpecError", "error": f"malformed request: {e}"})
            return
        except (ConnectionError, OSError):
            message, fds = None, []
        if message is None:
            self.drop_conn(conn)
            return
        op = message.get("op")
        reply: dict = {"req": message.get("req")}
        reply_fds: list[int] = []
        try:
            if op == "run":
                info, reply_fds = self.starter.run(message, conn, received_ns, fds)
                reply.update(info)
            elif op == "start":  # the OCI runtime's second step (oci/)
                reply.update(self.starter.start_held(message))
            elif op == "exec":
                info, reply_fds = self.starter.exec(message, conn, fds)
                reply.update(info)
            elif op == "cli-run":  # the CLI's quick path (quick.py)
                info, reply_fds = quick.run(self, message, conn, received_ns)
                reply.update(info)
            elif op == "hello":
                reply.update(pid=self.me[0], start=self.me[1], log=self.log.path,
                             cgroup=self.cgroups.version if self.cgroups else None)
            else:
                raise SpecError(f"unknown request {op!r}")
            reply["ok"] = True
        except ContainerError as e:
            reply.update(ok=False, error=str(e), kind=type(e).__name__)
        except Exception as e:  # noqa: BLE001 - a bug: log it, answer in one line, keep serving
            self.log.exception(f"request {op!r} failed")
            reply.update(ok=False, kind="RuntimeFailure",
                         error=f"internal error: {type(e).__name__}: {e} (the traceback is in {self.log.path})")
        finally:
            for fd in fds:
                os.close(fd)
        try:
            self._answer(conn, reply, reply_fds)
        finally:
            for fd in reply_fds:
                os.close(fd)
        if op in ("run", "cli-run"):
            # Its PID 1 is busy building its rootfs now: a good moment for old cleanup.
            self.exits.run_deferred()

    def _answer(self, conn: socket.socket, reply: dict, fds: list[int] = ()) -> None:
        try:
            protocol.send(conn, reply, fds)
        except OSError:
            self.drop_conn(conn)

    # ---------------------------------------------------------------- shared by the steps

    def track(self, proc: Proc, explain: bool = False, hold: bool = False) -> None:
        """Let PID 1 go on (if it waits; hold: not before `release`) and watch for its end
        (and its explain records)."""
        if proc.sync_fd >= 0 and not hold:
            try:
                os.write(proc.sync_fd, proc.go)
            except BrokenPipeError:
                pass  # PID 1 failed before its go (a mount, say): its exit event tells why
            os.close(proc.sync_fd)
            proc.sync_fd = -1
        self.procs[proc.pid] = proc
        self.selector.register(proc.pidfd, selectors.EVENT_READ, ("proc", proc))
        if explain:
            os.set_blocking(proc.error_fd, False)
            self.selector.register(proc.error_fd, selectors.EVENT_READ, ("explain", proc))

    def release(self, proc: Proc) -> None:
        """The OCI runtime's start: the go a held PID 1 waits for."""
        if proc.sync_fd < 0:
            raise Conflict("the container was started already")
        try:
            os.write(proc.sync_fd, proc.go)
        except BrokenPipeError:
            pass  # it died while held: its exit event tells
        os.close(proc.sync_fd)
        proc.sync_fd = -1

    def untrack(self, proc: Proc) -> None:
        if self.procs.pop(proc.pid, None) is not None:
            self.selector.unregister(proc.pidfd)
            try:
                self.selector.unregister(proc.error_fd)
            except (KeyError, ValueError):
                pass  # explain was not asked for

    def new_cgroup(self, cid: str, limits):
        if self.cgroups is None:
            return None
        self.store.note_cgroup(cid)  # first: a crash in between leaves gc a note to act on
        try:
            return self.cgroups.create(cid, limits)
        except BaseException:
            self.store.forget_cgroup(cid)
            raise

    def remove_cgroup(self, cid: str, cgroup) -> None:
        cgroup.remove()
        self.store.forget_cgroup(cid)

    def cgroup_lab_dirs(self) -> list[str]:
        if self.cgroups is None:
            return []
        return sorted(set(getattr(self.cgroups, "lab_dirs", {}).values())) or [getattr(self.cgroups, "lab", "")]

    @property
    def network(self):
        """The network layer, loaded on first use (pyroute2 costs ~150 ms to import)."""
        if self._network is None:
            from ..network import NetworkManager

            self._network = NetworkManager(self.store.root, self.userns)
            # published ports are served by this process: the proxy's epoll fd joins our loop
            self.selector.register(self._network.proxy.fileno(), selectors.EVENT_READ, ("proxy", None))
        return self._network

    def has_networks(self) -> bool:
        return self._network is not None or os.path.isdir(os.path.join(self.store.root, "networks"))

    # ---------------------------------------------------------------- the end

    def shutdown(self) -> None:
        """Kill what we own and wait for it: nothing outlives a private shim."""
        self._guarded("drop spares", self.spares.drop_all)
        for proc in list(self.procs.values()):
            if not proc.persistent:
                self.kill(proc)
        deadline = time.monotonic() + 10
        while any(not p.persistent for p in self.procs.values()) and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.2):
                if key.data[0] in ("proc", "pump", "explain"):
                    self._guarded("shutdown", lambda key=key: self._dispatch(key))
        if self._network is not None:
            self._network.close()
        self.exits.run_deferred()
        if self.cgroups is not None and not any(p.persistent for p in self.procs.values()):
            self.cgroups.release()  # the lab's parent groups, unless other engines' groups are in them
        self.exits.forget_kept()
