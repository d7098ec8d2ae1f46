"""Published ports of a container on a rootless bridge: a relay process of the shim's.

pasta (pasta.py) splices host ports into a container's own namespace, but it also
wants a tap device named after the host's external interface, and a pod whose only
link is lo has none ("External interface not usable").  A container on a bridge of the
user's own (userland.py) needs no tap at all: its address is reachable from inside its
user namespace.  So `-p HOST:CONTAINER` there is relayed by a child of the shim that

1. binds each HOST port on the host's loopback (the address asked for), while it is
   still in the host's (the pod's) network namespace: a socket keeps the namespace it
   was made in;
2. closes every other descriptor it inherited, asks to be killed with the shim
   (PR_SET_PDEATHSIG), and joins the container's user and network namespaces (the
   user owns the first, so setns(2) is allowed);
3. relays each connection (proxy.py, the root lab's own proxy) to CONTAINER on the
   container's loopback, from inside.

The shim tracks it like a pasta daemon and ends it with the container.  Nothing is
routed: each connection is accepted on the host and made anew inside.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal

from .. import linux
from ..errors import Conflict, SpecError


class Relay:
    """One container's relay process (Forwarder's interface: stop())."""

    def __init__(self, pid: int, pidfd: int):
        self.pid, self.pidfd = pid, pidfd

    @classmethod
    def start(cls, container_pid: int, ports) -> "Relay":
        from .proxy import PortProxy  # (before the fork: a forked child must not import)

        ns = [os.open(f"/proc/{container_pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind in ("user", "net")]
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the relay
                _relay(PortProxy, ports, ns, ready_w)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            for fd in ns:
                os.close(fd)
            os.close(ready_w)
        try:
            answer = linux.read_line(ready_r)
        finally:
            os.close(ready_r)
        relay = cls(pid, os.pidfd_open(pid))
        if answer.strip() != b"ready":
            relay.stop()
            why = answer.decode(errors="replace").strip() or "the relay died"
            published = ", ".join(f"{p.host_ip}:{p.host_port}" for p in ports)
            raise SpecError(f"cannot publish {published}: {why}")
        return relay

    def stop(self) -> None:
        """End the relay and reap it (it is the shim's child)."""
        if self.pidfd < 0:
            return
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self.pidfd)
        self.pidfd = -1


def _relay(proxy_class, ports, ns: list[int], ready_w: int) -> None:  # pragma: no cover - a child
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    try:
        proxy = proxy_class()
        for port in ports:  # bound here, in the host's network namespace
            proxy.publish("relay", port.protocol, port.host_ip, port.host_port, ("127.0.0.1", port.container_port))
        keep = {proxy.fileno(), ready_w, *ns, *(listener.sock.fileno() for listener in proxy.listeners)}
        for entry in os.listdir("/proc/self/fd"):
            fd = int(entry)
            if fd > 2 and fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
        null = os.open("/dev/null", os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        linux.setns(ns[0], linux.CLONE_NEWUSER)
        linux.setns(ns[1], linux.CLONE_NEWNET)
        for fd in ns:
            os.close(fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.write(ready_w, b"ready\n")
        os.close(ready_w)
    except Conflict as e:
        os.write(ready_w, f"{e}\n".encode())
        os._exit(1)
    except BaseException as e:  # noqa: BLE001
        with contextlib.suppress(OSError):
            os.write(ready_w, f"{type(e).__name__}: {e}\n".encode())
        os._exit(1)
    try:
        while True:
            select.select([proxy.fileno()], [], [], 60)
            proxy.pump()
    except BaseException:  # noqa: BLE001
        os._exit(1)
