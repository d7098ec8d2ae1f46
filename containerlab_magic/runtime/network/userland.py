"""Bridge networks without root: the user's own user + network namespace, held by one process.

Root makes a network's bridge in the host's network namespace.  A user cannot
(CAP_NET_ADMIN there is root's), so a rootless lab makes the bridges in a network
namespace of its own instead, as rootless podman does:

- the *holder* is a process of the user's in a new user namespace (mapped as the
  containers' are: 0 -> the user, and with /etc/subuid ranges 1.. -> them) and a new
  network namespace that namespace owns.  It brings lo up and then sleeps (it is
  `sleep`, exec'd under the name containerlab-magic-network); holder.json in the
  network state names it by pid and start time.  It lives while the user has
  networks, and `network rm` of the last one (or `gc` with none left) ends it.
- a container on such a network joins the holder's user namespace (setns(2), in a
  first child that then clones PID 1, shim/procs.py) instead of making its own, so
  its network namespace is owned by the holder's user namespace too;
- the network layer's netlink socket lives in the holder's network namespace: a
  short-lived child joins the holder's namespaces, opens it and passes it back
  (SCM_RIGHTS).  The user, as the owner of that user namespace, has CAP_NET_ADMIN in
  it: bridges and veth pairs are made there with the same code as root's.

Containers of one user reach each other by address and by name; nothing routes out of
the holder's namespace (it has no link but lo and the user's bridges), and the host is
not reachable from it.  Published ports (-p) go through pasta into the container's own
namespace, as for a container without a network (pasta.py).  Another user's holder is
another namespace: users cannot see each other's networks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time

from .. import linux
from ..errors import HostUnsupported, RuntimeFailure

HOLDER_FILE = "holder.json"
HOLDER_NAME = "containerlab-magic-network"
SLEEP = "/bin/sleep"
NETLINK_ROUTE = 0


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, None if gone or a zombie (it holds nothing then)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == b"Z" else int(fields[19])


class Holder:
    """The user's network namespace holder (see the module doc)."""

    def __init__(self, pid: int, start: int):
        self.pid, self.start = pid, start

    # ---------------------------------------------------------------- finding, making, ending

    @classmethod
    def find(cls, state_dir: str) -> "Holder | None":
        try:
            with open(os.path.join(state_dir, HOLDER_FILE)) as f:
                record = json.load(f)
            holder = cls(int(record["pid"]), int(record["start"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return holder if holder.alive() else None

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start

    @classmethod
    def ensure(cls, state_dir: str, userns) -> "Holder":
        """The running holder, or a new one (call with the network state locked)."""
        found = cls.find(state_dir)
        if found is not None:
            return found
        if userns is None or not userns.net:
            raise HostUnsupported("bridge networks need a network namespace of the user's own, and this host "
                                  "allows none (see `containerlab-magic doctor`): use --net none or --net host")
        holder = cls._spawn(userns)
        path = os.path.join(state_dir, HOLDER_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump({"pid": holder.pid, "start": holder.start}, f)
        os.rename(path + ".tmp", path)
        return holder

    @classmethod
    def _spawn(cls, userns) -> "Holder":
        """fork; the child starts a session and forks the holder (so no caller's exit ends
        it), which unshares, is mapped, brings lo up and execs sleep."""
        from ..child import _loopback_up  # (imported here: a forked child must not import)

        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        mapped_r, mapped_w = os.pipe2(os.O_CLOEXEC)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            middle = os.fork()
            if middle == 0:  # pragma: no cover - runs in the child
                _middle(userns, report_w, mapped_r, _loopback_up)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(report_w)
        os.close(mapped_r)
        try:
            os.waitpid(middle, 0)
            pid = int(_read_line(report_r) or 0)
            if not pid:
                raise RuntimeFailure("cannot make the network namespace for bridge networks: the holder failed "
                                     "before it could unshare (see `containerlab-magic doctor`)")
            try:
                if userns.multi:
                    userns.map_from_parent(pid)
                os.write(mapped_w, b"x")
                ready = _read_line(report_r)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise
            if ready != "ready":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise RuntimeFailure(f"cannot make the network namespace for bridge networks: {ready or 'it died'}")
        finally:
            os.close(report_r)
            os.close(mapped_w)
        deadline = time.monotonic() + 5
        while True:  # until it is sleep (its start time is fixed from fork on; wait for the exec)
            start = _start_time(pid)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    exec_done = f.read().startswith(HOLDER_NAME.encode())
            except OSError:
                exec_done = False
            if start is not None and exec_done:
                return cls(pid, start)
            if start is None or time.monotonic() > deadline:
                raise RuntimeFailure("the network namespace holder did not start")
            time.sleep(0.002)

    def stop(self) -> None:
        """End the holder (its bridges and veth ends go with its namespace)."""
        if not self.alive():
            return
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return
        try:
            if self.alive():  # (the pidfd names this process now: no reuse after the check)
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)  # ours when a subreaper (a shim) inherited it
        deadline = time.monotonic() + 5
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.005)

    # ---------------------------------------------------------------- using it

    def netlink_socket(self) -> int:
        """A NETLINK_ROUTE socket in the holder's network namespace (its fd, ours to close):
        made by a child that joined the holder's namespaces, passed back with SCM_RIGHTS."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = [os.open(f"/proc/{self.pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind in ("user", "net")]
        try:
            if not self.alive():
                raise RuntimeFailure("the network namespace holder is gone: try again")
            old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
            try:
                child = os.fork()
                if child == 0:  # pragma: no cover - runs in the child
                    _open_inside(fds, theirs.fileno())
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
            theirs.close()
            try:
                _, got, _, _ = socket.recv_fds(ours, 256, 1)
            finally:
                os.waitpid(child, 0)
            if not got:
                raise RuntimeFailure("cannot open a netlink socket in the user's network namespace")
            return got[0]
        finally:
            for fd in fds:
                os.close(fd)
            ours.close()
            if theirs.fileno() >= 0:
                theirs.close()


def _read_line(fd: int) -> str:
    return linux.read_line(fd).decode(errors="replace").strip()


def _middle(userns, report_w: int, mapped_r: int, loopback_up) -> None:  # pragma: no cover - a child
    try:
        os.setsid()
        holder = os.fork()
        if holder:
            os._exit(0)
        _holder(userns, report_w, mapped_r, loopback_up)
    except BaseException:  # noqa: BLE001
        pass
    os._exit(1)


def _holder(userns, report_w: int, mapped_r: int, loopback_up) -> None:  # pragma: no cover - the holder
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    try:
        linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNET)
    except OSError:
        os._exit(1)
    os.write(report_w, f"{os.getpid()}\n".encode())
    if not os.read(mapped_r, 1):  # the caller mapped us (multi-id) or let us map ourselves
        os._exit(1)
    try:
        if not userns.multi:
            userns.map_self()
        loopback_up()
    except OSError as e:
        os.write(report_w, f"{e.strerror or e}\n".encode())
        os._exit(1)
    os.write(report_w, b"ready\n")
    null = os.open("/dev/null", os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.closerange(3, 1 << 16)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    os.chdir("/")
    os.execve(SLEEP, [HOLDER_NAME, "infinity"], {"PATH": "/usr/bin:/bin"})


def _open_inside(fds: list[int], reply: int) -> None:  # pragma: no cover - a child
    try:
        linux.setns(fds[0], linux.CLONE_NEWUSER)
        linux.setns(fds[1], linux.CLONE_NEWNET)
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        socket.send_fds(socket.socket(fileno=reply), [b"x"], [sock.fileno()])
        os._exit(0)
    except BaseException:  # noqa: BLE001
        os._exit(1)


class HolderSocket:
    """netlink.HostSocket's counterpart for a rootless lab: an IPRoute whose socket lives in
    the holder's network namespace (made on first use: the holder is started then)."""

    def __init__(self, state_dir: str, userns=None):
        self.state_dir, self._userns = state_dir, userns
        self._ipr = None
        self._holder: Holder | None = None

    def holder(self) -> Holder:
        """The running holder (started if need be, under its own lock)."""
        import fcntl

        if self._holder is not None and self._holder.alive():
            return self._holder
        if self._userns is None:
            from ..rootless import for_this_process

            self._userns = for_this_process()
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.state_dir, "holder.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._holder = Holder.ensure(self.state_dir, self._userns)
        finally:
            os.close(fd)
        return self._holder

    def running(self) -> Holder | None:
        """The holder if one runs (never starts one)."""
        return Holder.find(self.state_dir)

    @contextlib.contextmanager
    def __call__(self):
        from pyroute2 import IPRoute

        holder = self.holder()
        ipr = IPRoute(fileno=holder.netlink_socket())
        try:
            yield ipr
        finally:
            ipr.close()

    def stop_holder(self) -> None:
        holder = self.running()
        if holder is not None:
            holder.stop()
        self._holder = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.state_dir, HOLDER_FILE))

    def close(self) -> None:
        pass
