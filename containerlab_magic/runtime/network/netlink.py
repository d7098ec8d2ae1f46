"""Kernel primitives of the network layer, through pyroute2 (rtnetlink).

A *bridge* is a software switch (``ip-link(8)`` type ``bridge``); a *veth
pair* is a virtual cable whose two ends can live in different network
namespaces (``veth(4)``).  One end is plugged into the bridge on the host, the
other is created directly inside the container's namespace as ``eth0``.

To configure a container's namespace we open a netlink socket *inside* it:
``setns(2)`` this thread into ``/proc/PID/ns/net``, create the socket (a
socket stays bound to the namespace it was created in), and ``setns`` back.
That costs microseconds, where pyroute2's own ``netns=`` forks a helper.

pyroute2's synchronous ``IPRoute`` runs its own asyncio loop on the calling
thread; it cannot run where a loop is already running (a notebook cell).
`off_event_loop` moves such a call to a worker thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import socket
import struct
import sys
import threading
from typing import Iterator

from ..errors import RuntimeFailure

CLONE_NEWNET = 0x40000000
IFF_UP = 0x1
WORKER_NAME = "containerlab-network"
_libc = ctypes.CDLL(None, use_errno=True)


def off_event_loop(method):
    """Run `method` on a worker thread if this thread runs an asyncio loop."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        asyncio = sys.modules.get("asyncio")  # never imported: no loop can be running
        if asyncio is None or asyncio._get_running_loop() is None:
            return method(*args, **kwargs)
        box: dict = {}

        def run() -> None:
            try:
                box["value"] = method(*args, **kwargs)
            except BaseException as exc:  # re-raised on the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=run, name=WORKER_NAME)
        worker.start()
        worker.join()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    return wrapper


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET) failed: {os.strerror(err)}")


def netns_inode(pid: int) -> int:
    """The inode number naming PID's network namespace (raises OSError if gone)."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def own_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


class HostSocket:
    """An IPRoute in the host's namespace, kept open for the thread that made it.

    Opening one costs about a millisecond (a socket and an event loop), a
    tenth of an attach; the shim's single thread reuses it.  Another thread
    (the worker of `off_event_loop`) gets a fresh one, closed after use.
    """

    def __init__(self) -> None:
        self._ipr = None
        self._thread: int | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[object]:
        from pyroute2 import IPRoute

        if self._thread == threading.get_ident():
            yield self._ipr
            return
        if self._thread is None and threading.current_thread().name != WORKER_NAME:
            self._ipr, self._thread = IPRoute(), threading.get_ident()
            yield self._ipr
            return
        ipr = IPRoute()
        try:
            yield ipr
        finally:
            ipr.close()

    def close(self) -> None:
        if self._ipr is not None and self._thread == threading.get_ident():
            self._ipr.close()
            self._ipr = self._thread = None


LOOPBACK_INDEX = 1  # lo is the first device of every network namespace


@contextlib.contextmanager
def inside(pid: int, ifname: str = "lo") -> Iterator[tuple[object, int | None]]:
    """(IPRoute whose socket lives in /proc/PID/ns/net, index of `ifname` there)."""
    from pyroute2 import IPRoute

    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.fstat(target).st_ino == os.fstat(own).st_ino:
            raise RuntimeFailure(
                f"process {pid} shares the host's network namespace: start it with its own "
                "(CLONE_NEWNET) before attaching it to a network"
            )
        _setns(target)
        try:
            ipr = IPRoute()
            found = ipr.link_lookup(ifname=ifname)  # pyroute2 opens its socket lazily: open it here
        finally:
            _setns(own)  # if this fails the thread is lost: let it raise
    finally:
        os.close(target)
        os.close(own)
    try:
        yield ipr, (found[0] if found else None)
    finally:
        ipr.close()


def open_netns(pid: int) -> int:
    return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def errno_of(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    return getattr(exc, "errno", None)


def failure(what: str, exc: BaseException) -> RuntimeFailure:
    code = errno_of(exc)
    reason = os.strerror(code) if code else str(exc)
    return RuntimeFailure(f"{what} failed: {reason}")


def link_index(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def delete_link(ipr, ifname: str) -> bool:
    """Delete a link by name; False if it was already gone."""
    index = link_index(ipr, ifname)
    if index is None:
        return False
    try:
        ipr.link("del", index=index)
    except Exception as exc:
        if errno_of(exc) == errno.ENODEV:
            return False
        raise failure(f"deleting interface {ifname}", exc) from None
    return True


def links_with_alias_prefix(ipr, prefix: str) -> list[tuple[str, str]]:
    """(ifname, alias) of every link whose alias starts with `prefix`."""
    found = []
    for link in ipr.get_links():
        alias = link.get_attr("IFLA_IFALIAS") or ""
        if alias.startswith(prefix):
            found.append((link.get_attr("IFLA_IFNAME"), alias))
    return found


def set_device_sysctl(family: str, ifname: str, key: str, value: str) -> None:
    """Write a per-device sysctl of one of *our* interfaces (it dies with it)."""
    path = f"/proc/sys/net/{family}/conf/{ifname}/{key}"
    try:
        with open(path, "w") as f:
            f.write(value)
    except FileNotFoundError:
        pass  # e.g. IPv6 disabled on this host: nothing to turn off


def create_bridge(ipr, ifname: str, alias: str, gateway: str, prefixlen: int) -> int:
    ipr.link("add", ifname=ifname, kind="bridge")
    index = link_index(ipr, ifname)
    # Safety: a packet that arrives on this bridge is never routed further
    # (per-device forwarding is checked on the ingress device), whatever the
    # host's global ip_forward says now.
    set_device_sysctl("ipv4", ifname, "forwarding", "0")
    set_device_sysctl("ipv6", ifname, "forwarding", "0")
    set_device_sysctl("ipv6", ifname, "accept_ra", "0")  # a container is no router of the host's
    set_device_sysctl("ipv6", ifname, "autoconf", "0")
    ipr.link("set", index=index, ifalias=alias)
    ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
    ipr.link("set", index=index, state="up")
    return index


def host_routes(ipr) -> list[tuple[str, int, str]]:
    """(destination, prefixlen, device) of every IPv4 route of the main table but the default."""
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    routes = []
    for route in ipr.get_routes(family=2):
        if route.get_attr("RTA_TABLE") not in (254, None):
            continue
        dst = route.get_attr("RTA_DST")
        if dst is None or route["dst_len"] == 0:
            continue
        routes.append((dst, route["dst_len"], names.get(route.get_attr("RTA_OIF"), "?")))
    return routes


def host_addresses(ipr) -> list[tuple[str, int, str]]:
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    return [(a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS"), a["prefixlen"], names.get(a["index"], "?"))
            for a in ipr.get_addr(family=2)]


# sysfs (sysfs-class-net) answers the two questions asked on every attach -- does
# the bridge exist, and label this veth -- in microseconds; a netlink round trip
# through pyroute2's sync API costs a millisecond or more.  Netlink stays the way
# to create and change links.

def sysfs_link(name: str) -> tuple[int, int, str] | None:
    """(ifindex, MTU, alias) of a host link from /sys/class/net, or None if absent."""
    base = f"/sys/class/net/{name}"
    try:
        with open(f"{base}/ifindex") as f:
            index = int(f.read())
        with open(f"{base}/mtu") as f:
            mtu = int(f.read())
        with open(f"{base}/ifalias") as f:
            alias = f.read().strip()
    except (OSError, ValueError):
        return None
    return index, mtu, alias


def sysfs_set_alias(name: str, alias: str) -> bool:
    try:
        with open(f"/sys/class/net/{name}/ifalias", "w") as f:
            f.write(alias)
        return True
    except OSError:
        return False


def sysfs_master(name: str) -> str | None:
    """The bridge a host link is plugged into, or None (absent, or in no bridge)."""
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{name}/master"))
    except OSError:
        return None


def host_route_socket() -> socket.socket:
    """A bare NETLINK_ROUTE socket in this (the host's) namespace, for `plug_from_inside`."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


def plug_from_inside(sock_fd: int, veth: str, bridge_index: int, mtu: int, alias: str) -> None:
    """Make a veth pair from a new container's PID 1: `veth` up in the host's bridge
    `bridge_index`, its peer born as eth0 (down, bare) in the caller's namespace.

    `sock_fd` is a NETLINK_ROUTE socket the shim opened in the host's namespace
    (a socket acts in the namespace it was made in); PID 1 is still root there.
    The shim's loop is spared the wait for rtnl, which a dying namespace can hold
    for several milliseconds.  pyroute2 encodes the messages; IPRoute itself,
    with its event loop, is not needed for two requests.
    """
    from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
    from pyroute2.netlink.rtnl import RTM_NEWLINK
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    def request(flags: int, attrs: list, up: bool = False) -> None:
        msg = ifinfmsg()
        msg["family"] = socket.AF_UNSPEC
        if up:
            msg["flags"] = msg["change"] = IFF_UP
        msg["attrs"] = attrs
        msg["header"]["type"] = RTM_NEWLINK
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = 1
        msg.encode()
        os.write(sock_fd, msg.data)
        reply = os.read(sock_fd, 65536)
        code = -struct.unpack_from("i", reply, 16)[0]  # struct nlmsgerr after the 16-byte header
        if code:
            raise OSError(code, f"{os.strerror(code)} (making veth {veth})")

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        peer = {"attrs": [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", own), ("IFLA_MTU", mtu)]}
        request(NLM_F_CREATE | NLM_F_EXCL, [
            ("IFLA_IFNAME", veth), ("IFLA_MTU", mtu), ("IFLA_MASTER", bridge_index),
            ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"),
                                         ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}),
        ], up=True)
    finally:
        os.close(own)
    request(0, [("IFLA_IFNAME", veth), ("IFLA_IFALIAS", alias)])  # gc knows our links by their alias
