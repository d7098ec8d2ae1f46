"""The shim: one single-threaded process that forks, watches and reaps containers.

Why a separate process: a Jupyter kernel is multi-threaded, and forking a
multi-threaded Python process can deadlock in the child; exec'ing a fresh
Python per container would cost ~100 ms.  So each Engine starts (or, from the
CLI, connects to) one shim.  It is exec'd once, stays single-threaded, and
forks each container from a small, quiet address space, so start latency does
not grow with the caller's memory.

Two modes:
- private (`--fd N`): serves one Engine over a socketpair.  When the Engine's
  end closes (the kernel died or shut down) it kills every container it
  started, cleans up and exits.
- daemon (`--daemon`): listens on <state_root>/shim.sock for CLI calls, one
  process for many containers (a tiny containerd).  Containers run with
  --detach there outlive the CLI call; the daemon exits when it has neither
  containers nor clients.

Events come from one selector: client sockets, a pidfd per process
(pidfd_open(2): readable when it exits), detached output pipes (written to
the container's log with docker's 8-byte stream framing), the port proxy,
and timers for --timeout.  Each container's PID 1 is cloned by the shim
directly (child.py); exec'd processes are forked through an intermediate, and
the shim, a child subreaper (prctl(2)), inherits and reaps them.

The hot path is kept short by doing work at other times: the next
container's state folder and cgroup are made ahead (Spare), and with prewarm
a warm PID 1 for each of the last kinds of container run, with its veth pair
already in the bridge for a network, when the shim is quiet; cleanup of an
ended container waits for the next reply or a quiet moment (_defer).  Only what the caller may
rely on at once -- its exit event, its network address and ports released,
its name free -- happens before the exit event is sent.
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import json
import os
import random
import secrets
import selectors
import signal
import socket
import struct
import sys
import time
import traceback

from . import child, linux, protocol, rootfs, security
from .errors import (
    Conflict,
    ContainerError,
    HostUnsupported,
    NotFound,
    RuntimeFailure,
    SpecError,
)
from .images import ImageStore
from .spec import ContainerSpec, Limits
from .state import StateStore, alive, proc_start_time

try:
    from .cgroups import open_manager
except ImportError:  # pragma: no cover - the cgroups layer is optional at import time
    open_manager = None  # type: ignore[assignment]

STDOUT, STDERR = 1, 2
WARM_WHEN_QUIET = 0.005  # seconds without events before a spare's PID 1 is started
WARM_AFTER_START = 0.05  # ...and since the last container started, unless it has ended
MAX_WARM = 2  # kinds of container kept warm at once (the most recently run ones)
ADJECTIVES = ("brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
              "merry", "nimble", "proud", "quick", "quiet", "sharp", "swift", "tidy", "vivid", "witty")
NOUNS = ("turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "dijkstra", "liskov",
         "hamilton", "cerf", "kay", "backus", "mccarthy", "wirth", "perlman", "shannon", "noether", "curie",
         "babbage")


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
        self.wait_status: int | None = None
        self.error: dict | None = None
        self.duration = 0.0
        self.sync_fd = -1
        self.go = b"{}\n"  # what the shim tells PID 1 at its sync pipe (child._wait_for_go)


class Spare:
    """A container made ahead of need: state folder, cgroup, maybe a warm PID 1
    (then `key` says what it fits: image and network) with its veth plugged."""

    def __init__(self, cid: str, cgroup):
        self.cid, self.cgroup = cid, cgroup
        self.warm: Proc | None = None
        self.key: tuple[str, str] | None = None
        self.network: str | None = None  # its veth's network (NetworkManager.reserve_spare)
        self.pipes: tuple[int, ...] = ()  # the warm PID 1's stdout, stderr readers; stdin writer


class Shim:
    def __init__(self, state_root: str, data_root: str, prewarm: bool = False):
        self.store = StateStore(state_root)
        self.images = ImageStore(data_root)
        self.stage = os.path.join(state_root, "rootfs")
        os.makedirs(self.stage, exist_ok=True)
        self.selector = selectors.DefaultSelector()
        self.conns: set[socket.socket] = set()
        self.procs: dict[int, Proc] = {}  # pid -> Proc
        self.listener: socket.socket | None = None
        self.daemon = False
        self.me = (os.getpid(), proc_start_time(os.getpid()))
        # CONTAINERLAB_CGROUPS=off: the named degraded mode (namespaces only), as on a
        # host with no writable cgroups; a container that asks for limits is refused.
        use_cgroups = open_manager is not None and os.environ.get("CONTAINERLAB_CGROUPS", "on") != "off"
        self.cgroups = open_manager() if use_cgroups else None
        self.cgroup_mounts = _cgroup_mounts(self.cgroups)
        self._network = None
        self.devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        self.kept: set[tuple[str, str]] = set()  # exited detached containers of our clients
        self.intermediates: set[int] = set()  # first children of exec, exiting after they forked
        self.deferred: list = []  # cleanup to do when idle (see _run_deferred)
        self.deferred_due = 0.0
        self.spare: Spare | None = None  # a cold slot: state folder and cgroup
        self.spare_failed = False
        self.prewarm = prewarm
        self.warm: dict[tuple[str, str], Spare] = {}  # warm spares by what they fit
        self.wanted: list[tuple[str, str]] = []  # kinds run lately, newest first (at most MAX_WARM)
        self.warm_broken: set[tuple[str, str]] = set()
        self.lost_networks: dict[tuple[str, str], int] = {}  # warm-ups that failed making their veth
        self.last_event = time.monotonic()
        security.prepare()  # compile the default seccomp profile once, before any container
        self.bounding_dropped = False  # each container drops to its own set (security.apply)

    # ---------------------------------------------------------------- plumbing

    def add_conn(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        self.conns.add(conn)
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

    def serve(self, linger: float = 2.0) -> None:
        """Run until nothing is left to serve (a daemon lingers `linger` s when idle)."""
        idle_since = time.monotonic()
        try:
            while True:
                if self.conns or self.procs or self.deferred:
                    idle_since = time.monotonic()
                elif not self.daemon or time.monotonic() - idle_since >= linger:
                    break
                timeout = self._next_timeout()
                if self.daemon and not (self.conns or self.procs):
                    timeout = max(0.0, linger - (time.monotonic() - idle_since))
                if self.deferred:  # due after a quiet spell, or right after the next reply
                    wait = max(0.0, self.deferred_due - time.monotonic())
                    timeout = wait if timeout is None else min(timeout, wait)
                warm_at = self._warm_due()
                if warm_at is not None:
                    wait = max(0.0, warm_at - time.monotonic())
                    timeout = wait if timeout is None else min(timeout, wait)
                events = self.selector.select(timeout)
                now = time.monotonic()
                if not events:
                    if self.deferred and now >= self.deferred_due:
                        self._run_deferred()
                        continue
                    warm_at = self._warm_due()
                    if warm_at is not None and now >= warm_at:
                        self._warm_spare()
                        continue
                else:
                    self.last_event = now
                for key, _ in events:
                    try:
                        self._dispatch(key)
                    except Exception:  # noqa: BLE001 - one container's trouble must not end the others
                        traceback.print_exc()
                self._check_timeouts()
                if self.conns and self.spare is None:
                    self.prepare_spare()
        finally:
            self.shutdown()

    def _dispatch(self, key) -> None:
        kind, obj = key.data
        if kind == "conn":
            self._on_message(obj)
        elif kind == "proc":
            self._on_exit(obj)
        elif kind == "pump":
            self._on_output(key.fd, *obj)
        elif kind == "warm":
            self._on_warm_exit(obj)
        elif kind == "proxy":
            self._network.proxy.pump()
        elif kind == "listen":
            conn, _ = self.listener.accept()
            if security.peer_allowed(conn):
                self.add_conn(conn)
            else:
                conn.close()

    def _next_timeout(self) -> float | None:
        deadlines = [p.deadline for p in self.procs.values() if p.deadline and not p.timed_out]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for proc in list(self.procs.values()):
            if proc.deadline and not proc.timed_out and now >= proc.deadline and proc.wait_status is None:
                proc.timed_out = True
                self._kill(proc)

    def _kill(self, proc: Proc) -> None:
        # SIGKILL to PID 1 ends its whole PID namespace; the cgroup catches the rest.
        try:
            signal.pidfd_send_signal(proc.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.kind == "run" and proc.cgroup is not None:
            try:
                proc.cgroup.kill_all()
            except OSError:
                pass

    def _on_message(self, conn: socket.socket) -> None:
        try:
            message, fds = protocol.recv(conn)
        except (ConnectionError, OSError):
            message, fds = None, []
        if message is None:
            self._drop_conn(conn)
            return
        op = message.get("op")
        reply: dict = {"req": message.get("req")}
        reply_fds: list[int] = []
        try:
            if op == "run":
                info, reply_fds = self.run(message, conn, fds)
                reply.update(info)
            elif op == "exec":
                info, reply_fds = self.exec(message, conn, fds)
                reply.update(info)
            elif op == "hello":
                reply.update(pid=self.me[0], start=self.me[1],
                             cgroup=self.cgroups.version if self.cgroups else None)
            else:
                raise SpecError(f"unknown request {op!r}")
            reply["ok"] = True
        except ContainerError as e:
            reply.update(ok=False, error=str(e), kind=type(e).__name__)
        except Exception as e:  # noqa: BLE001 - a bug: report it, keep serving others
            reply.update(ok=False, error=f"internal error: {type(e).__name__}: {e}", kind="RuntimeFailure")
        finally:
            for fd in fds:
                os.close(fd)
        try:
            protocol.send(conn, reply, reply_fds)
        except OSError:
            self._drop_conn(conn)
        finally:
            for fd in reply_fds:
                os.close(fd)
        if op == "run":
            # Its PID 1 is busy building its rootfs now: a good moment for old cleanup.
            self._run_deferred()

    def _drop_conn(self, conn: socket.socket) -> None:
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        self.selector.unregister(conn)
        conn.close()
        for proc in list(self.procs.values()):
            if proc.conn is conn:
                proc.conn = None
                if not proc.persistent:
                    self._kill(proc)

    def _send_event(self, proc: Proc, event: dict) -> None:
        if proc.conn is None:
            return
        try:
            protocol.send(proc.conn, event)
        except OSError:
            self._drop_conn(proc.conn)

    # ---------------------------------------------------------------- run

    def run(self, message: dict, conn, fds: list[int]) -> tuple[dict, list[int]]:
        spec = ContainerSpec.from_json(message["spec"])
        image = self.images.resolve(spec.image)
        netns_pid = self._network_target(spec)
        if spec.limits.any_cgroup_limit:
            if self.cgroups is None:
                why = ("cgroups are turned off (CONTAINERLAB_CGROUPS=off): unset it"
                       if os.environ.get("CONTAINERLAB_CGROUPS") == "off" else
                       "no writable cgroup hierarchy was found: run as root or in a delegated cgroup "
                       "(see `containerlab doctor`)")
                raise HostUnsupported(f"resource limits need cgroups, and {why}; or run without limits")
            reason = self.cgroups.missing_for(spec.limits)
            if reason:
                raise HostUnsupported(reason)
        name = spec.name or self._free_name()
        key = self._warm_key(spec)
        if key is not None:
            # Prewarm for the next runs what this one was, if a warm PID 1 could have
            # served it (one that cannot would only be made and killed: a wasted
            # namespace, and a dying network namespace holds up the next bridge attach).
            self._want(key)
            spare = self.warm.pop(key, None)
            if spare is not None:
                started = self._run_warm(spec, name, conn, spare)
                if started is not None:
                    return started
        undo: list = []
        opened: list[int] = []
        try:
            cid, state_dir, cgroup = self._take_slot(name, spec, undo)
            if cgroup is not None and spec.privileged:
                cgroup.allow_all_devices()
            hostname = self._write_identity(state_dir, spec, name)
            stdio, reply_fds, pumps = self._stdio(spec, opened)
            setup = child.Setup(
                command=spec.command, env=spec.environment, env_explicit=frozenset(k for k, _ in spec.env),
                workdir=spec.workdir, user=spec.user, hostname=hostname, image=image,
                steps=rootfs.plan(image, spec, state_dir), stage=self.stage,
                storage_size=spec.limits.storage_size, stdio=stdio, console_fd=opened[-1] if spec.tty else -1,
                procs_files=tuple(cgroup.procs_files) if cgroup else (), netns_pid=netns_pid,
                host_network=spec.network == "host", bounding_dropped=self.bounding_dropped,
                cgroup_mounts=self.cgroup_mounts if cgroup is not None else (), security=security.policy_for(spec))
            needs_network = spec.on_bridge
            proc = self._spawn("run", cid, setup, conn, opened, sync=bool(cgroup or needs_network or netns_pid))
            undo.append(lambda: self._abort(proc))
            proc.cgroup = cgroup
            if cgroup is not None:
                cgroup.add(proc.pid)  # while PID 1 builds its rootfs; it waits for us before exec
            if spec.tty:
                reply_fds.append(self._receive_console(setup.console_fd, opened, proc))
            proc.persistent = bool(self.daemon and spec.detach)
            if spec.timeout:
                proc.deadline = proc.started + spec.timeout
            if needs_network or netns_pid is not None:
                self._attach_network(proc, spec, name, state_dir)
                undo.append(lambda: self.network.detach(cid))
                if spec.on_bridge and (spec.net_rate or spec.net_delay or spec.net_loss):
                    self.network.shape(cid, spec.net_rate, spec.net_delay, spec.net_loss)
            if pumps:
                self._pump_to_log(proc, state_dir, pumps)
                opened[:] = [fd for fd in opened if fd not in proc.pumps]
            proc.state = self._state(cid, name, spec, proc, hostname)
            # Before the reply: whoever learns of the container may look it up at once.
            # (PID 1 is still building its rootfs meanwhile, so this costs no start time.)
            self.store.write(cid, proc.state)
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except Exception:  # noqa: BLE001 - best effort, keep undoing
                    pass
            raise
        finally:
            for fd in opened:
                if fd not in reply_fds:
                    os.close(fd)
        self._track(proc)
        return {"id": cid, "name": name, "pid": proc.pid, "hostname": hostname,
                "streams": "pty" if spec.tty else ("none" if spec.detach else "pipes")}, reply_fds

    # A container's state folder and cgroup take ~1 ms to make (cgroup v1 has a
    # directory per controller), and its PID 1 another few to clone and to mount its
    # rootfs.  So while idle the shim makes the next container ahead of need: a cold
    # slot (state folder and cgroup) and, with prewarm on, warm spares: PID 1 itself
    # with its namespaces and rootfs, waiting at its sync pipe before anything of the
    # user's runs, and for a bridge network its veth pair plugged in.  One warm spare
    # is kept for each of the last MAX_WARM kinds of container run (image and
    # network; no binds, no tty, no shaping).  A new container of such a kind only
    # claims it: a name, its limits, an address, then "go" with its command, env,
    # hostname and eth0's settings.

    def prepare_spare(self) -> None:
        if self.spare is not None or self.spare_failed:
            return
        cid = secrets.token_hex(32)
        try:
            self.store.create_spare(cid, {"shim_pid": self.me[0], "shim_start": self.me[1],
                                          "cgroup": self.cgroups is not None})
            cgroup = self._new_cgroup(cid, Limits())
        except (OSError, ContainerError) as e:
            self.store.remove(cid)
            self.spare_failed = True
            print(f"containerlab shim: cannot prepare containers ahead ({e}); making each on demand",
                  file=sys.stderr)
            return
        self.spare = Spare(cid, cgroup)

    @staticmethod
    def _warm_key(spec: ContainerSpec) -> tuple[str, str] | None:
        """What a warm PID 1 for this spec is (image, network), or None if none could serve it:
        a warm one has the image's plain rootfs and its own network namespace."""
        if spec.mounts or spec.read_only or spec.tty or spec.limits.storage_size is not None:
            return None
        if security.policy_for(spec) is not security.default_policy():  # a warm one has the default
            return None
        if spec.network == "none":
            return spec.image, "none"
        if spec.on_bridge and not (spec.net_rate or spec.net_delay or spec.net_loss):
            return spec.image, spec.network
        return None

    def _want(self, key: tuple[str, str]) -> None:
        if key in self.wanted:
            self.wanted.remove(key)
        self.wanted.insert(0, key)
        for old in self.wanted[MAX_WARM:]:
            spare = self.warm.pop(old, None)
            if spare is not None:
                self._defer(lambda spare=spare: self._discard(spare))
        del self.wanted[MAX_WARM:]

    def _next_warm(self) -> tuple[str, str] | None:
        for key in self.wanted:
            if key not in self.warm and key not in self.warm_broken:
                return key
        return None

    def _warm_due(self) -> float | None:
        """When to warm a spare, if one is wanted: once the shim is quiet, and not while
        a container that just started still runs.  A warm-up keeps the loop busy for a
        few milliseconds (clone, bookkeeping); a short command ending meanwhile would
        have its exit noticed that much later."""
        if not (self.prewarm and self.conns and self._next_warm() is not None):
            return None
        due = self.last_event + WARM_WHEN_QUIET
        for proc in self.procs.values():
            if proc.kind == "run" and proc.wait_status is None:
                due = max(due, proc.started + WARM_AFTER_START)
        return due

    def _warm_spare(self) -> None:
        """Start a spare's PID 1 now that the shim is quiet (back-to-back runs leave no
        quiet moment: there it would only compete for the CPU with the running one)."""
        key = self._next_warm()
        self.prepare_spare()
        spare, self.spare = self.spare, None
        if spare is None:  # no slot can be made: prepare_spare said why
            self.warm_broken.add(key)
            return
        try:
            self._warm_up(spare, key)
        except (OSError, ContainerError) as e:
            self._discard(spare)
            if isinstance(e, NotFound):  # its network was removed: warm it again once it is used again
                self.wanted.remove(key)
                return
            self.warm_broken.add(key)
            print(f"containerlab shim: cannot prewarm {key[0]} on --net {key[1]} ({e}); starting cold",
                  file=sys.stderr)
        else:
            self.warm[key] = spare

    def _warm_up(self, spare: Spare, key: tuple[str, str]) -> None:
        """Clone the spare's PID 1.  It moves itself into its cgroup and, for a network,
        makes its veth pair itself: both wait on the kernel (an RCU grace period on v1,
        rtnl), and the shim's loop must not, or a running container's exit would wait
        to be noticed."""
        image_name, network = key
        image = self.images.resolve(image_name)
        state_dir = self.store.dir(spare.cid)
        for name in ("hostname", "hosts"):  # bind-mounted now, written at claim
            open(os.path.join(state_dir, name), "w").close()
        plain = ContainerSpec(("true",), image=image_name)
        route_socket = None
        opened: list[int] = []
        theirs: list[int] = []
        try:
            plug = None
            if network != "none":
                spare.network = network
                veth, bridge_index, mtu, alias = self.network.reserve_spare(spare.cid, network)
                route_socket = netlink().host_route_socket()
                plug = (route_socket.fileno(), veth, bridge_index, mtu, alias)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            opened += [out_r, out_w]
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            opened += [err_r, err_w]
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            opened += [in_r, in_w]
            setup = child.Setup(
                command=(), env={}, workdir="/", user=None, hostname="", image=image,
                steps=rootfs.plan(image, plain, state_dir), stage=self.stage, stdio=(in_r, out_w, err_w),
                bounding_dropped=self.bounding_dropped, shim_pid=self.me[0],
                procs_files=tuple(spare.cgroup.procs_files) if spare.cgroup is not None else (),
                join_cgroup=True, plug=plug,
                cgroup_mounts=self.cgroup_mounts if spare.cgroup is not None else ())
            theirs += [out_w, err_w, in_r]
            proc = self._spawn("run", spare.cid, setup, None, theirs, sync=True)
        except BaseException:
            for fd in set(opened) | set(theirs):
                os.close(fd)
            self._cool_down(spare)
            raise
        finally:
            if route_socket is not None:
                route_socket.close()
        for fd in theirs:  # the child's ends (and what _spawn added: its error and sync pipes)
            os.close(fd)
        proc.cgroup = spare.cgroup
        spare.warm, spare.key, spare.pipes = proc, key, (out_r, err_r, in_w)
        self.selector.register(proc.pidfd, selectors.EVENT_READ, ("warm", spare))
        try:
            self.store.write(spare.cid, {"id": spare.cid, "status": "spare", "shim_pid": self.me[0],
                                         "shim_start": self.me[1], "cgroup": spare.cgroup is not None,
                                         "pid": proc.pid, "pid_start": proc_start_time(proc.pid)})
        except BaseException:
            self._cool_down(spare)
            raise

    def _cool_down(self, spare: Spare) -> None:
        """End a warm PID 1 that will not be used (shutdown, or it failed)."""
        proc, spare.warm = spare.warm, None
        if proc is not None:
            try:
                self.selector.unregister(proc.pidfd)
            except KeyError:
                pass
            self._abort(proc)
        for fd in spare.pipes:
            os.close(fd)
        spare.pipes = ()
        if spare.network is not None:
            spare.network = None
            try:  # the veth pair goes with the dead PID 1's namespace: only the record is left
                self.network.forget_spare(spare.cid)
            except Exception as e:  # noqa: BLE001 - gc removes what a record leaves
                print(f"containerlab shim: network: {e}", file=sys.stderr)

    def _discard(self, spare: Spare) -> None:
        """A spare that will not be used: its PID 1, cgroup and folder go."""
        self._cool_down(spare)
        if spare.cgroup is not None:
            self._remove_cgroup(spare.cid, spare.cgroup)
        self.store.remove(spare.cid)

    def _on_warm_exit(self, spare: Spare) -> None:
        """A warm PID 1 died before it was used: its setup failed.  Go cold for that kind."""
        proc = spare.warm
        proc.wait_status = self._waitpid(proc.pid)
        error = _read_error(proc.error_fd)
        lost = self.lost_networks.get(spare.key, 0)
        if error.get("stage") == "network" and spare.key in self.wanted and lost < 3:
            # Its network was likely removed while its veth was being made
            # (NetworkManager.remove): warm that kind again once it is used again.
            self.lost_networks[spare.key] = lost + 1
            self.wanted.remove(spare.key)
        else:
            self.warm_broken.add(spare.key)
            print(f"containerlab shim: prewarmed {spare.key[0]} container failed at {error.get('stage')}: "
                  f"{error.get('message')}; starting cold from now on", file=sys.stderr)
        if self.warm.get(spare.key) is spare:
            del self.warm[spare.key]
        self._discard(spare)

    def _drop_spares(self) -> None:
        spares = list(self.warm.values())
        self.warm.clear()
        if self.spare is not None:
            spares.append(self.spare)
            self.spare = None
        for spare in spares:
            try:
                self._discard(spare)
            except (OSError, ContainerError) as e:
                print(f"containerlab shim: cleanup: {e}", file=sys.stderr)

    def _run_warm(self, spec: ContainerSpec, name: str, conn, spare: Spare) -> tuple[dict, list[int]] | None:
        """Start the container from a warm spare; None if the spare turned out unusable
        (its network was removed meanwhile), and the container is to start cold."""
        cid, proc = spare.cid, spare.warm
        try:
            self.store.claim(cid, name)
        except Conflict:
            self.warm[spare.key] = spare  # a taken name is the caller's mistake: keep the spare
            raise
        state_dir = self.store.dir(cid)
        hostname = self._write_identity(state_dir, spec, name)
        if spare.network is not None:
            try:
                info = self.network.claim_spare(cid, name, proc.pid, spec.ports, os.path.join(state_dir, "hosts"))
            except BaseException:
                self.store.release(cid, name)
                self.warm[spare.key] = spare  # a port in use is the caller's mistake too
                raise
            if info is None:  # unplugged by `network rm`: the run goes cold, the spare goes
                self.store.release(cid, name)
                self._defer(lambda: self._discard(spare))
                return None
            spare.network = None  # a member now: detached like any other container
            proc.network = True
            proc.state["ip"] = info["ip"]
            net = {"ip": info["ip"], "prefixlen": info["prefixlen"], "mac": info["mac"],
                   "gateway": None if info["internal"] else info["gateway"]}
        else:
            net = None
        out_r, err_r, in_w = spare.pipes
        reply_fds: list[int] = []
        try:
            if spare.cgroup is not None and spec.limits.any_cgroup_limit:
                spare.cgroup.update(spec.limits, initial=True)
            proc.conn, proc.started = conn, time.monotonic()
            proc.persistent = bool(self.daemon and spec.detach)
            if spec.timeout:
                proc.deadline = proc.started + spec.timeout
            interactive = spec.interactive and not spec.detach
            proc.go = json.dumps({
                "command": list(spec.command), "env": spec.environment,
                "env_explicit": [k for k, _ in spec.env], "workdir": spec.workdir, "user": spec.user,
                "hostname": hostname, "stdin": "pipe" if interactive else "null", "net": net}).encode() + b"\n"
            proc.state = self._state(cid, name, spec, proc, hostname)
            self.store.write(cid, proc.state)
            if spec.detach:  # opens the log before it takes a pipe: a failure leaves them to _discard
                self._pump_to_log(proc, state_dir, [(out_r, STDOUT), (err_r, STDERR)])
        except BaseException:
            self.store.release(cid, name)
            if proc.network:
                proc.network = False
                try:
                    self.network.detach(cid)
                except Exception as e:  # noqa: BLE001 - gc retries
                    print(f"containerlab shim: network detach: {e}", file=sys.stderr)
            self._discard(spare)
            raise
        # Nothing below can fail: the pipes are handed out.
        spare.pipes = ()
        if not spec.detach:
            reply_fds = [out_r, err_r]
        if interactive:
            reply_fds.append(in_w)
        else:
            os.close(in_w)
        self.selector.unregister(proc.pidfd)  # from warm to running
        self._track(proc)
        return {"id": cid, "name": name, "pid": proc.pid, "hostname": hostname,
                "streams": "none" if spec.detach else "pipes"}, reply_fds

    def _new_cgroup(self, cid: str, limits: Limits):
        if self.cgroups is None:
            return None
        self.store.note_cgroup(cid)  # first: a crash in between leaves gc a note to act on
        try:
            return self.cgroups.create(cid, limits)
        except BaseException:
            self.store.forget_cgroup(cid)
            raise

    def _remove_cgroup(self, cid: str, cgroup) -> None:
        cgroup.remove()
        self.store.forget_cgroup(cid)

    def _take_slot(self, name: str, spec: ContainerSpec, undo: list):
        """(id, state dir, cgroup) for a new container: the cold slot if there is one."""
        spare, self.spare = self.spare, None
        if spare is None:
            cid = secrets.token_hex(32)
            state_dir = self.store.create(cid, name, {"shim_pid": self.me[0], "shim_start": self.me[1],
                                                     "cgroup": self.cgroups is not None})
            undo.append(lambda: self.store.remove(cid, name))
            cgroup = self._new_cgroup(cid, spec.limits)
            if cgroup is not None:
                undo.append(lambda: self._remove_cgroup(cid, cgroup))
            return cid, state_dir, cgroup
        cid, cgroup = spare.cid, spare.cgroup
        try:
            self.store.claim(cid, name)
        except Conflict:
            self.spare = spare  # a taken name is the caller's mistake: keep the spare
            raise
        undo.append(lambda: self.store.remove(cid, name))
        if cgroup is not None:
            undo.append(lambda: self._remove_cgroup(cid, cgroup))
            if spec.limits.any_cgroup_limit:
                cgroup.update(spec.limits, initial=True)
        return cid, self.store.dir(cid), cgroup

    def _write_identity(self, state_dir: str, spec: ContainerSpec, name: str) -> str:
        """The files PID 1 bind-mounts as /etc/hostname and /etc/hosts (written in place)."""
        hostname = spec.hostname or name[:63].replace("_", "-").replace(".", "-")
        with open(os.path.join(state_dir, "hostname"), "w") as f:
            f.write(hostname + "\n")
        with open(os.path.join(state_dir, "hosts"), "w") as f:
            f.write(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n")
        return hostname

    def _pump_to_log(self, proc: Proc, state_dir: str, pumps: list[tuple[int, int]]) -> None:
        proc.log_fd = os.open(os.path.join(state_dir, "log"),
                              os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        for fd, stream in pumps:
            os.set_blocking(fd, False)
            proc.pumps[fd] = stream
            self.selector.register(fd, selectors.EVENT_READ, ("pump", (proc, stream)))

    def _state(self, cid: str, name: str, spec: ContainerSpec, proc: Proc, hostname: str) -> dict:
        return {
            "id": cid, "name": name, "image": spec.image, "command": list(spec.command),
            "created": time.time(), "status": "running", "pid": proc.pid,
            "shim_pid": self.me[0], "shim_start": self.me[1],
            "persistent": proc.persistent, "detach": spec.detach, "cgroup": proc.cgroup is not None,
            "hostname": hostname, "spec": spec.to_json(), "ip": proc.state.get("ip"),
            "network": spec.network,
            "ports": [f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}" for p in spec.ports],
            "pid_start": proc_start_time(proc.pid),
        }

    def _stdio(self, spec: ContainerSpec, opened: list[int]):
        """(container stdin, stdout, stderr), fds for the client, fds to pump into the log."""
        if spec.tty:  # the container opens its own pty and sends the master (child._open_console)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            opened += [ours.detach(), theirs.detach()]
            return (self.devnull, self.devnull, self.devnull), [], []
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        opened += [out_r, out_w, err_r, err_w]
        stdin = self.devnull
        reply_fds: list[int] = []
        if spec.interactive and not spec.detach:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            opened += [in_r, in_w]
            stdin = in_r
            reply_fds.append(in_w)
        if spec.detach:
            return (stdin, out_w, err_w), reply_fds, [(out_r, STDOUT), (err_r, STDERR)]
        return (stdin, out_w, err_w), [out_r, err_r] + reply_fds, []

    def _spawn(self, kind: str, cid: str, setup: child.Setup, conn, opened: list[int],
               sync: bool = False, exec_id: str | None = None) -> Proc:
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        opened.append(err_w)
        sync_w = -1
        if sync:
            sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
            opened.append(sync_r)
            setup.sync_fd = sync_r
        setup.error_fd = err_w
        try:
            pid = self._clone_container(setup) if kind == "run" else self._fork_exec(setup, opened, err_r)
        except BaseException:
            os.close(err_r)
            if sync_w >= 0:
                os.close(sync_w)
            raise
        proc = Proc(kind, cid, pid, err_r, conn, exec_id=exec_id)
        proc.sync_fd = sync_w
        return proc

    def _clone_container(self, setup: child.Setup) -> int:
        pid = linux.clone(child.run_flags(setup))
        if pid == 0:  # pragma: no cover - runs in the container's PID 1
            try:
                child.start_container(setup)
            finally:
                os._exit(child.EXIT_RUNTIME)
        return pid

    def _fork_exec(self, setup: child.Setup, opened: list[int], err_r: int) -> int:
        pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
        opened += [pid_r, pid_w]
        setup.pid_fd = pid_w
        first = os.fork()
        if first == 0:  # pragma: no cover - runs in the child
            try:
                child.start_exec(setup)
            finally:
                os._exit(child.EXIT_RUNTIME)
        os.close(pid_w)
        opened.remove(pid_w)
        data = b""
        while not data.endswith(b"\n"):  # not EOF: the first child's exit is reaped later
            chunk = os.read(pid_r, 32)
            if not chunk:
                break
            data += chunk
        self.intermediates.add(first)
        if not data:  # the first child failed before it could fork
            self._reap_intermediates(block=True)
            os.close(setup.error_fd)
            opened.remove(setup.error_fd)
            error = _read_error(err_r)
            raise RuntimeFailure(f"cannot exec: {error.get('stage')}: {error.get('message')}")
        return int(data)

    def _receive_console(self, theirs: int, opened: list[int], proc: Proc) -> int:
        """The pty master the container opened in its own /dev/pts."""
        ours = opened[opened.index(theirs) - 1]
        os.close(theirs)  # only the child's copy must stay open, so its death means EOF
        opened.remove(theirs)
        with socket.socket(fileno=os.dup(ours)) as sock:
            _, fds, _, _ = socket.recv_fds(sock, 16, 1)
        if not fds:
            proc_error = _read_error(proc.error_fd)
            raise RuntimeFailure(f"cannot give the container a terminal: {proc_error.get('message', 'it exited')}")
        return fds[0]

    def _reap_intermediates(self, block: bool = False) -> None:
        for pid in list(self.intermediates):
            try:
                done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.intermediates.discard(pid)

    def _waitpid(self, pid: int) -> int:
        """Reap PID 1 (re-parented to us once its first-child parent has exited)."""
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            self._reap_intermediates(block=True)
            return os.waitpid(pid, 0)[1]

    def _abort(self, proc: Proc) -> None:
        """Kill a PID 1 that will not run (unless it has ended), reap it, close its fds."""
        if proc.wait_status is None:
            signal.pidfd_send_signal(proc.pidfd, signal.SIGKILL)
            self._waitpid(proc.pid)
        os.close(proc.pidfd)
        os.close(proc.error_fd)
        if proc.sync_fd >= 0:
            os.close(proc.sync_fd)

    def _track(self, proc: Proc) -> None:
        if proc.sync_fd >= 0:
            try:
                os.write(proc.sync_fd, proc.go)
            except BrokenPipeError:
                pass  # PID 1 failed in its setup meanwhile: its error pipe says why, its exit is reported
            os.close(proc.sync_fd)
            proc.sync_fd = -1
        self.procs[proc.pid] = proc
        self.selector.register(proc.pidfd, selectors.EVENT_READ, ("proc", proc))

    def _free_name(self) -> str:
        for attempt in range(50):
            name = f"{random.choice(ADJECTIVES)}_{random.choice(NOUNS)}"
            if attempt > 10:
                name += f"_{random.randrange(100)}"
            if not os.path.lexists(os.path.join(self.store.names, name)):
                return name
        return "c" + secrets.token_hex(6)

    # ---------------------------------------------------------------- network

    @property
    def network(self):
        """The network layer, loaded on first use (pyroute2 costs ~150 ms to import)."""
        if self._network is None:
            from .network import NetworkManager

            self._network = NetworkManager(self.store.root)
            # published ports are served by this process: the proxy's epoll fd joins our loop
            self.selector.register(self._network.proxy.fileno(), selectors.EVENT_READ, ("proxy", None))
        return self._network

    def _network_target(self, spec: ContainerSpec) -> int | None:
        if not spec.network.startswith("container:"):
            return None
        ref = spec.network.split(":", 1)[1]
        state = self.store.read(self.store.resolve(ref))
        if not state or state.get("status") != "running" or not alive(state.get("pid"), state.get("pid_start")):
            raise SpecError(f"--net container:{ref}: that container is not running; start it first")
        return state["pid"]

    def _attach_network(self, proc: Proc, spec: ContainerSpec, name: str, state_dir: str) -> None:
        hosts_file = os.path.join(state_dir, "hosts")
        if spec.on_bridge:
            info = self.network.attach(proc.cid, name, proc.pid, spec.network, ports=spec.ports,
                                       hosts_file=hosts_file, configure_inside=False)
            proc.network = True
            # PID 1 sets eth0's address and route itself once told (child._configure_eth0)
            proc.go = json.dumps({"net": {"ip": info["ip"], "prefixlen": info["prefixlen"],
                                          "gateway": None if info["internal"] else info["gateway"]}}).encode() + b"\n"
        else:  # container:NAME shares the target's namespace: only names to keep current
            target = self.store.resolve(spec.network.split(":", 1)[1])
            info = self.network.join(proc.cid, target, name, hosts_file) if self._has_networks() else {}
            proc.network = bool(info)
        proc.state["ip"] = info.get("ip")

    def _has_networks(self) -> bool:
        return self._network is not None or os.path.isdir(os.path.join(self.store.root, "networks"))

    # ---------------------------------------------------------------- exec

    def exec(self, message: dict, conn, fds: list[int]) -> tuple[dict, list[int]]:
        cid = self.store.resolve(message["container"])
        state = self.store.read(cid)
        if not state or state.get("status") != "running" or not alive(state.get("pid"), state.get("pid_start")):
            raise SpecError(f"container {message['container']} is not running: start a new one, "
                            "or see its output with `containerlab logs`")
        spec = ContainerSpec.from_json(state["spec"])
        env = spec.environment
        if message.get("tty"):
            env["TERM"] = "xterm"
        env.update(message.get("env") or {})
        command = message.get("command") or []
        if not command:
            raise SpecError("exec needs a command, e.g. `containerlab exec NAME sh`")
        cgroup = self.cgroups.open(cid) if (self.cgroups and state.get("cgroup")) else None
        exec_spec = ContainerSpec(command=tuple(command), tty=bool(message.get("tty")),
                                  interactive=bool(message.get("interactive")))
        opened: list[int] = []
        reply_fds: list[int] = []
        try:
            stdio, reply_fds, _ = self._stdio(exec_spec, opened)
            setup = child.Setup(
                command=tuple(command), env=env, env_explicit=frozenset(message.get("env") or ()),
                workdir=message.get("workdir") or spec.workdir, user=message.get("user") or spec.user,
                stdio=stdio, console_fd=opened[-1] if exec_spec.tty else -1, join_pid=state["pid"],
                procs_files=tuple(cgroup.procs_files) if cgroup else (), bounding_dropped=self.bounding_dropped,
                security=security.policy_for(spec))
            exec_id = secrets.token_hex(8)
            proc = self._spawn("exec", cid, setup, conn, opened, exec_id=exec_id)
            if exec_spec.tty:
                try:
                    reply_fds.append(self._receive_console(setup.console_fd, opened, proc))
                except BaseException:
                    self._abort(proc)
                    raise
        finally:
            for fd in opened:
                if fd not in reply_fds:
                    os.close(fd)
        self._track(proc)
        return {"id": cid, "exec_id": exec_id, "pid": proc.pid,
                "streams": "pty" if exec_spec.tty else "pipes"}, reply_fds

    # ---------------------------------------------------------------- exits and output

    def _on_output(self, fd: int, proc: Proc, stream: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if data:
            os.write(proc.log_fd, struct.pack(">BxxxI", stream, len(data)) + data)
            return
        self.selector.unregister(fd)
        os.close(fd)
        del proc.pumps[fd]
        self._maybe_finish(proc)

    def _on_exit(self, proc: Proc) -> None:
        self.selector.unregister(proc.pidfd)
        status = self._waitpid(proc.pid)
        self._reap_intermediates()
        proc.duration = time.monotonic() - proc.started
        proc.wait_status = status
        os.close(proc.pidfd)
        proc.error = _read_error(proc.error_fd) or None
        os.close(proc.error_fd)
        self._maybe_finish(proc)

    def _maybe_finish(self, proc: Proc) -> None:
        if proc.wait_status is None or proc.pumps:
            return
        del self.procs[proc.pid]
        if proc.log_fd >= 0:
            os.close(proc.log_fd)
        status = proc.wait_status
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = 128 + sig if sig else os.WEXITSTATUS(status)
        result = {"event": "exit", "id": proc.cid, "exec_id": proc.exec_id, "exit_code": code,
                  "signal": sig, "timed_out": proc.timed_out, "duration": proc.duration,
                  "oom_killed": False, "error": proc.error}
        if proc.kind == "run" and proc.cgroup is not None:
            try:
                usage = vars(proc.cgroup.stats())
                result.update(usage=usage, oom_killed=bool(usage.get("oom_kills")))
            except (OSError, ContainerError):
                pass
        if proc.kind == "run" and proc.network:
            # Before the event: once told, the caller may remove the network or reuse the port.
            # The veth pair goes with the network namespace (deleting it here measured slower).
            try:
                self.network.detach(proc.cid, exited=True)
            except Exception as e:  # noqa: BLE001 - gc retries; never leave the state half-written
                print(f"containerlab shim: network detach: {e}", file=sys.stderr)
            proc.network = False
        # The caller learns the end first; the bookkeeping below finishes before this
        # shim reads its next request, so the caller never sees it half done.
        self._send_event(proc, result)
        if proc.kind == "run":
            self._cleanup(proc, result)

    def _cleanup(self, proc: Proc, result: dict) -> None:
        """After PID 1 is gone: free the cgroup and network, settle the state."""
        for p in list(self.procs.values()):  # execs die with the PID namespace
            if p.cid == proc.cid:
                self._kill(p)
        if proc.cgroup is not None:
            self._defer(lambda: self._free_cgroup(proc))
        if proc.network:
            try:
                self.network.detach(proc.cid)
            except Exception:  # noqa: BLE001 - gc retries; never leave the state half-written
                pass
        if proc.state.get("detach") and (proc.persistent or proc.conn is not None):
            if not proc.persistent:
                self.kept.add((proc.cid, proc.state.get("name")))
            proc.state.update(status="exited", finished=time.time(), timed_out=proc.timed_out,
                              exit_code=result["exit_code"], oom_killed=result["oom_killed"], error=proc.error)
            if os.path.isdir(self.store.dir(proc.cid)):  # unless someone removed it meanwhile
                self.store.write(proc.cid, proc.state)
        else:
            self.store.release(proc.cid, proc.state.get("name"))  # the name is free at once
            self._defer(lambda: self.store.remove(proc.cid))

    def _free_cgroup(self, proc: Proc) -> None:
        try:
            if proc.cgroup.pids():
                proc.cgroup.kill_all()
            self._remove_cgroup(proc.cid, proc.cgroup)
        except (OSError, ContainerError):
            pass  # gc retries: the ledger still names it

    def _defer(self, action) -> None:
        if not self.deferred:
            self.deferred_due = time.monotonic() + 0.05
        self.deferred.append(action)

    def _run_deferred(self) -> None:
        """Cleanup left for idle moments (removing a cgroup and a state folder takes
        ~0.5 ms, which would otherwise delay the next request)."""
        while self.deferred:
            try:
                self.deferred.pop(0)()
            except Exception as e:  # noqa: BLE001 - cleanup must not stop the shim; gc retries
                print(f"containerlab shim: cleanup: {e}", file=sys.stderr)

    def shutdown(self) -> None:
        """Kill what we own and wait for it: nothing outlives a private shim."""
        self._drop_spares()
        for proc in list(self.procs.values()):
            if not proc.persistent:
                self._kill(proc)
        deadline = time.monotonic() + 10
        while any(not p.persistent for p in self.procs.values()) and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.2):
                kind, obj = key.data
                if kind == "proc":
                    self._on_exit(obj)
                elif kind == "pump":
                    self._on_output(key.fd, *obj)
        if self._network is not None:
            self._network.close()
        self._run_deferred()
        if self.cgroups is not None and not any(p.persistent for p in self.procs.values()):
            self.cgroups.release()  # the lab's parent groups, unless other engines' groups are in them
        for cid, name in self.kept:  # their engine is gone, and they went with it
            if not self.daemon or (self.store.read(cid) or {}).get("shim_pid") == self.me[0]:
                self.store.remove(cid, name)


def netlink():
    """The network layer's kernel side (loaded on first use, like Shim.network)."""
    from .network import netlink as module

    return module


def _cgroup_mounts(manager) -> tuple[tuple[str, str | None, str], ...]:
    """What a container mounts at /sys/fs/cgroup: cgroup2, or each v1 hierarchy the lab uses."""
    if manager is None:
        return ()
    if manager.version == 2:
        return (("cgroup2", None, ""),)
    hierarchies: dict[str, list[str]] = {}
    for controller in getattr(manager, "lab_dirs", {}):
        hierarchies.setdefault(manager.mounts[controller], []).append(controller)
    return tuple(("cgroup", ",".join(sorted(ctrls)), os.path.basename(mount))
                 for mount, ctrls in sorted(hierarchies.items()))


def _read_error(fd: int) -> dict:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    if not data:
        return {}
    try:
        return json.loads(data)
    except ValueError:
        return {"stage": "unknown", "message": data.decode(errors="replace")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="containerlab-shim")
    parser.add_argument("--fd", type=int, help="serve one engine on this socket")
    parser.add_argument("--daemon", action="store_true", help="listen on <state>/shim.sock")
    parser.add_argument("--state", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--prewarm", action="store_true", help="keep the next container's PID 1 ready")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the client, which stops its container
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.daemon:
        os.makedirs(args.state, exist_ok=True)
        lock = os.open(os.path.join(args.state, "shim.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("busy", flush=True)  # another daemon serves this state root
            return 0
        if os.fork():  # the caller waits for us: leave, and let the daemon be adopted
            os._exit(0)
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)  # not inherited across fork: set it here
    shim = Shim(args.state, args.data, prewarm=args.prewarm)
    # Every object so far lives as long as the shim: keep the collector off them, so a
    # cloned child does not dirty (and copy) their pages when it collects.
    gc.freeze()
    if args.daemon:
        shim.listen(os.path.join(args.state, "shim.sock"))
        print("ready", flush=True)
        sys.stdout = open(os.devnull, "w")
        os.dup2(shim.devnull, 1)
    else:
        shim.add_conn(socket.socket(fileno=args.fd))
    try:
        shim.serve()
    finally:
        if shim.listener is not None:
            try:
                os.unlink(os.path.join(args.state, "shim.sock"))
            except FileNotFoundError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
