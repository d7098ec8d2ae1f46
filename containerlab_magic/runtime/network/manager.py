"""NetworkManager: the verbs of container networking (create, attach, detach, gc...).

A *network* is a Linux bridge on the host with an address from its subnet
(the gateway).  Attaching a container plugs one end of a veth pair into the
bridge and creates the other end as ``eth0`` inside the container's network
namespace, with the next free address of the subnet and a default route via
the gateway (none on ``--internal`` networks).  Nothing is ever routed beyond
the host: our bridges have forwarding turned off and nothing masquerades.

Every verb is a short list of steps; each step that changes the kernel pushes
its undo, and a failure runs the undos in reverse, so bad input leaves nothing
behind.  See netlink.py for the kernel side, state.py for persistence,
proxy.py for published ports, hosts.py for names and shaping.py for tc.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import time
from typing import Callable, Iterable

from .. import faults
from ..errors import Conflict, HostUnsupported, NotFound, RuntimeFailure, SpecError
from ..spec import PortMap, parse_name
from . import filter as host_filter
from . import hosts, netlink, shaping, userland
from .netlink import off_event_loop
from .proxy import PortProxy
from .state import ALIAS_PREFIX, NetworkState, host_lock

DEFAULT_NETWORK = "bridge"
SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")  # default networks are /24s of this
RESERVED_NAMES = ("none", "host")


class _Undo:
    """A stack of undo actions, run in reverse unless `commit()` is called."""

    def __init__(self) -> None:
        self.actions: list[Callable[[], object]] = []

    def push(self, action: Callable[[], object]) -> None:
        self.actions.append(action)

    def commit(self) -> None:
        self.actions.clear()

    def __enter__(self) -> "_Undo":
        return self

    def __exit__(self, *exc) -> None:
        for action in reversed(self.actions):
            with contextlib.suppress(Exception):
                action()


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        hint = ""
        with contextlib.suppress(ValueError):
            hint = f" (did you mean {ipaddress.ip_network(text, strict=False)}?)"
        raise SpecError(f"invalid subnet {text!r}: {exc}{hint}; write a CIDR like 10.213.5.0/24") from None
    if net.version != 4:
        raise SpecError(f"subnet {text} is IPv6: networks are IPv4 for now, e.g. 10.213.5.0/24")
    if not 8 <= net.prefixlen <= 29:
        raise SpecError(f"subnet {text} has prefix /{net.prefixlen}: use /8 to /29, e.g. 10.213.5.0/24")
    if not net.is_private or net.is_loopback or net.is_link_local:
        raise SpecError(f"subnet {text} is not a private range: use one of 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16")
    return net


def mac_for(ip: str) -> str:
    """A locally administered MAC derived from the address: a reused address
    keeps its MAC, so neighbours' ARP caches stay right."""
    return "02:4c:" + ":".join(f"{int(octet):02x}" for octet in ip.split("."))


def require_root(what: str) -> None:
    """What needs root's network namespace (a link shaped from the host's side, a
    container:NAME partner): one line for anyone else, before anything is made."""
    if os.geteuid() != 0:
        raise HostUnsupported(
            f"{what} needs root on this host (it works on the container's network namespace from the host's "
            f"side), and this lab runs as uid {os.geteuid()}: drop it, or run the lab as root")


class NetworkManager:
    """Networks and container attachments under STATE_ROOT/networks/ (see module doc)."""

    def __init__(self, state_root: str, userns=None) -> None:
        self.state = NetworkState(state_root)
        self._proxy: PortProxy | None = None
        # Rootless: the bridges live in the user's own network namespace (userland.py),
        # published ports go through pasta, and the host's filter is not ours to touch.
        self.rootless = os.geteuid() != 0
        self._host = userland.HolderSocket(self.state.dir, userns) if self.rootless else netlink.HostSocket()

    def holder_pid(self) -> int | None:
        """Rootless: the pid whose user namespace a container on a bridge joins (started if need be)."""
        return self._host.holder().pid if self.rootless else None

    def close(self) -> None:
        """Close the published ports and the netlink socket this process holds."""
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        self._host.close()

    @property
    def proxy(self) -> PortProxy:
        """This process's published ports: register `proxy.fileno()` in your
        selector and call `proxy.pump()` when it is readable."""
        if self._proxy is None:
            self._proxy = PortProxy()
        return self._proxy

    # Networks ---------------------------------------------------------------

    @off_event_loop
    def create(self, name: str, subnet: str | None = None, internal: bool = False) -> dict:
        parse_name(name, "network name")
        if name in RESERVED_NAMES or name.startswith("container:"):
            raise SpecError(f"{name!r} is a network mode, not a name: choose another network name")
        wanted = parse_subnet(subnet) if subnet else None
        with host_lock(), self.state.locked() as st:
            if name in st["networks"]:
                raise Conflict(f"network {name} already exists: use it, or remove it first with `network rm {name}`")
            self._create_locked(st, name, wanted, internal)
            return self._describe(st, name)

    def _create_locked(self, st: dict, name: str, wanted: ipaddress.IPv4Network | None, internal: bool) -> dict:
        with self._host() as ipr:
            taken = self._taken_subnets(ipr, st)
            if wanted is None:
                net = self._free_subnet(taken)
            else:
                net = wanted
                for other, what in taken:
                    if net.overlaps(other):
                        raise Conflict(
                            f"subnet {net} overlaps {other} ({what}): choose a free one, "
                            f"e.g. --subnet {self._free_subnet(taken)}"
                        )
            bridge = self._free_bridge_name(ipr, name)
            gateway = str(next(net.hosts()))
            try:
                netlink.create_bridge(ipr, bridge, self.state.bridge_alias(name), gateway, net.prefixlen)
                if not self.rootless:
                    host_filter.add_bridge(bridge)  # containers reach the host only through published ports
            except Exception as exc:
                with contextlib.suppress(Exception):
                    netlink.delete_link(ipr, bridge)
                if not self.rootless:
                    with contextlib.suppress(Exception):
                        host_filter.remove_bridge(bridge)
                raise netlink.failure(f"creating bridge {bridge} for network {name}", exc) from None
        record = {"name": name, "subnet": str(net), "gateway": gateway, "bridge": bridge,
                  "internal": bool(internal), "created": time.time()}
        st["networks"][name] = record
        return record

    def _taken_subnets(self, ipr, st: dict) -> list[tuple[ipaddress.IPv4Network, str]]:
        taken = [(ipaddress.ip_network(other["subnet"]), f"network {other['name']}")
                 for other in st["networks"].values()]  # first: the clearest name for a clash
        for dst, plen, dev in netlink.host_routes(ipr):
            taken.append((ipaddress.ip_network(f"{dst}/{plen}", strict=False), f"the host route via {dev}"))
        for addr, plen, dev in netlink.host_addresses(ipr):
            taken.append((ipaddress.ip_network(f"{addr}/{plen}", strict=False), f"the address of {dev}"))
        return taken

    @staticmethod
    def _free_subnet(taken: list) -> ipaddress.IPv4Network:
        for candidate in SUBNET_POOL.subnets(new_prefix=24):
            if not any(candidate.overlaps(other) for other, _ in taken):
                return candidate
        raise Conflict(f"no free /24 left in {SUBNET_POOL}: remove unused networks or give --subnet")

    def _free_bridge_name(self, ipr, name: str) -> str:
        for candidate in self.state.bridge_names(name):
            if netlink.link_index(ipr, candidate) is None:
                return candidate
        raise Conflict(f"interface names for network {name} are taken on this host: choose another network name")

    def _ensure_bridge(self, ipr, record: dict) -> tuple[int, int]:
        """(index, MTU) of the network's bridge, re-created if the host lost it (a reboot)."""
        # the common case, without a netlink round trip (/sys shows the host's namespace: root only)
        found = None if self.rootless else netlink.sysfs_link(record["bridge"])
        if found is not None and found[2] == self.state.bridge_alias(record["name"]):
            return found[0], found[1]
        try:
            link = ipr.link("get", ifname=record["bridge"])[0]
        except Exception as exc:
            if netlink.errno_of(exc) != errno.ENODEV:
                raise netlink.failure(f"looking up bridge {record['bridge']}", exc) from None
            net = ipaddress.ip_network(record["subnet"])
            index = netlink.create_bridge(ipr, record["bridge"], self.state.bridge_alias(record["name"]),
                                          record["gateway"], net.prefixlen)
            if not self.rootless:
                host_filter.add_bridge(record["bridge"])
            return index, ipr.get_links(index)[0].get_attr("IFLA_MTU")
        if link.get_attr("IFLA_IFALIAS") != self.state.bridge_alias(record["name"]):
            raise RuntimeFailure(f"interface {record['bridge']} exists but is not network {record['name']}'s bridge")
        return link["index"], link.get_attr("IFLA_MTU")

    @off_event_loop
    def remove(self, name: str) -> None:
        with self.state.locked() as st:
            record = self._network(st, name)
            users = sorted(c["name"] for c in st["containers"].values() if c["network"] == name)
            if users:
                raise Conflict(f"network {name} is in use by {', '.join(users)}: stop or remove them first")
            with self._host() as ipr:
                index = netlink.link_index(ipr, record["bridge"])
                if index is not None:
                    alias = ipr.get_links(index)[0].get_attr("IFLA_IFALIAS")
                    if alias == self.state.bridge_alias(name):
                        netlink.delete_link(ipr, record["bridge"])
                faults.point("network-rm")  # (a test hook)
                if not self.rootless:
                    host_filter.remove_bridge(record["bridge"])
            # Spares made ahead by a shim (which will start those containers cold instead).
            # After the bridge: a spare's PID 1 may be making its veth right now, and
            # rtnl orders that before the bridge went (the veth is found and deleted
            # here) or after it (its master is gone, so the kernel refuses it).
            for spare_id in [s for s, spare in st["spares"].items() if spare["network"] == name]:
                self._unplug_locked(st, spare_id)
            del st["networks"][name]
            self._maybe_stop_holder(st)

    def _maybe_stop_holder(self, st: dict) -> None:
        """Rootless: with no network and no member left, end the user's namespace holder."""
        if self.rootless and not st["networks"] and not st["containers"] and not st["spares"]:
            self._host.stop_holder()

    def list(self) -> list[dict]:
        with self.state.locked() as st:
            return [self._describe(st, name) for name in sorted(st["networks"])]

    def inspect(self, name: str) -> dict:
        with self.state.locked() as st:
            self._network(st, name)
            return self._describe(st, name)

    def attachment(self, container_id: str) -> dict | None:
        """What `attach` returned for this container (with its ports), or None."""
        with self.state.locked() as st:
            record = st["containers"].get(container_id)
            return dict(record) if record else None

    @staticmethod
    def _network(st: dict, name: str) -> dict:
        try:
            return st["networks"][name]
        except KeyError:
            raise NotFound(
                f"no network named {name}: create it with `containerlab-magic network create {name}` "
                f"or use --net {DEFAULT_NETWORK}"
            ) from None

    @staticmethod
    def _describe(st: dict, name: str) -> dict:
        described = dict(st["networks"][name])
        described["containers"] = {
            cid: {key: c.get(key) for key in ("name", "ip", "mac", "ports", "joined", "shape")}
            for cid, c in sorted(st["containers"].items()) if c["network"] == name
        }
        return described

    # Containers -------------------------------------------------------------

    @off_event_loop
    def attach(self, container_id: str, container_name: str, pid: int, network: str,
               ports: Iterable[PortMap] = (), hosts_file: str | None = None,
               configure_inside: bool = True) -> dict:
        """Give the container (PID 1 = `pid`, in its own netns) an eth0 on `network`.

        configure_inside=False leaves eth0 down and bare: the caller's PID 1 then sets
        the returned address, prefix and gateway itself (a few ioctls inside, instead of
        entering its namespace from here for four netlink round trips)."""
        ports = tuple(ports)
        if network in RESERVED_NAMES or network.startswith("container:"):
            raise SpecError(f"--net {network} needs no attach: only bridge networks are attached")
        self._check_ports(ports)
        lock = host_lock() if network == DEFAULT_NETWORK else contextlib.nullcontext()
        with lock, self.state.locked() as st, _Undo() as undo:
            if container_id in st["containers"]:
                raise Conflict(f"container {container_name} is already attached to a network")
            if network not in st["networks"] and network == DEFAULT_NETWORK:
                self._create_locked(st, network, None, False)
                self.state.write(st)  # the default network stays even if this attach fails: it is meant to exist
            net = self._network(st, network)
            ip = self._free_address(st, net)
            veth = self.state.veth_name(container_id)
            self._publish(undo, container_id, ports, ip)  # before the veth: a port in use fails cheaply
            with self._host() as ipr:
                bridge_index, mtu = self._ensure_bridge(ipr, net)
                self._plug(ipr, undo, pid, veth, container_id, bridge_index, mtu, mac_for(ip))
            if configure_inside:
                self._configure_inside(pid, ip, net)
            self._publish(undo, container_id, ports, ip, net["gateway"], net["bridge"])
            info = self._add_member(st, container_id, container_name, net, ip, veth, pid, ports, hosts_file)
            undo.commit()
            return info

    def _publish(self, undo: _Undo, container_id: str, ports: tuple[PortMap, ...], ip: str,
                 gateway: str | None = None, bridge: str | None = None) -> None:
        """Listen for the container's published ports: on their loopback address, or (with
        `gateway`) on the bridge's, which lets other containers of that bridge reach the
        port too (the host filter opens it to that bridge only)."""
        if self.rootless:
            return  # pasta publishes them (plan step Ports), into the container's own namespace
        undo.push(lambda: self.proxy.unpublish(container_id))
        undo.push(lambda: host_filter.close_ports(container_id))
        for port in ports:  # (host_ip is loopback: _check_ports)
            self.proxy.publish(container_id, port.protocol, gateway or port.host_ip, port.host_port,
                               (ip, port.container_port))
            if gateway and bridge:
                host_filter.open_port(container_id, bridge, gateway, port.protocol, port.host_port)

    def _add_member(self, st: dict, container_id: str, container_name: str, net: dict, ip: str, veth: str,
                    pid: int, ports: tuple[PortMap, ...], hosts_file: str | None) -> dict:
        record = {"name": container_name, "network": net["name"], "ip": ip, "mac": mac_for(ip),
                  "gateway": net["gateway"], "veth": veth, "pid": pid,
                  "netns": netlink.netns_inode(pid), "hosts_file": hosts_file,
                  "ports": [_port_json(p) for p in ports], "joined": None, "shape": None}
        st["containers"][container_id] = record
        self._refresh_hosts(st, net["name"])
        return {"ip": ip, "gateway": net["gateway"], "network": net["name"], "mac": record["mac"],
                "prefixlen": ipaddress.ip_network(net["subnet"]).prefixlen,
                "internal": bool(net["internal"]), "ports": record["ports"], "veth": veth,
                "bridge": net["bridge"]}

    # Spares -----------------------------------------------------------------
    # A shim keeps containers ready ahead of need (Shim._warm_up).  For one on a
    # network the veth pair is made beforehand too, by the spare's PID 1 itself: the
    # pair is the slow part of an attach (it waits for rtnl, which a dying namespace
    # holds), and made ahead it costs nobody's start time.  A spare has no address
    # and no name, so it is no member of the network: `network inspect` does not
    # list it, and `network rm` unplugs it rather than waiting for it (the shim then
    # finds it gone at claim, and starts that container cold).

    @off_event_loop
    def reserve_spare(self, spare_id: str, network: str) -> tuple[str, int, int, str]:
        """Note a spare to be plugged into `network`; returns what its PID 1 needs to make
        its veth pair itself (netlink.plug_from_inside): veth name, bridge index, MTU, alias."""
        with self.state.locked() as st:
            if spare_id in st["spares"] or spare_id in st["containers"]:
                raise Conflict(f"spare {spare_id[:12]} is already plugged")
            net = self._network(st, network)
            with self._host() as ipr:
                bridge_index, mtu = self._ensure_bridge(ipr, net)
            veth = self.state.veth_name(spare_id)
            st["spares"][spare_id] = {"network": network, "bridge": net["bridge"], "veth": veth}
            return veth, bridge_index, mtu, self.state.veth_alias(spare_id)

    @off_event_loop
    def claim_spare(self, spare_id: str, container_name: str, pid: int, ports: Iterable[PortMap] = (),
                    hosts_file: str | None = None) -> dict | None:
        """Make a reserved spare a member: an address, its name, its ports.  Returns what
        `attach` does (PID 1 then sets eth0's MAC too), or None if the spare was
        unplugged meanwhile (`network rm`): start the container cold then.  (If its
        PID 1 is still making the veth pair, the container's start waits for it.)"""
        ports = tuple(ports)
        self._check_ports(ports)
        with self.state.locked() as st, _Undo() as undo:
            spare = st["spares"].get(spare_id)
            if spare is None:
                return None
            net = st["networks"].get(spare["network"])
            if net is None or net["bridge"] != spare["bridge"]:
                self._unplug_locked(st, spare_id)
                return None
            ip = self._free_address(st, net)
            self._publish(undo, spare_id, ports, ip)
            self._publish(undo, spare_id, ports, ip, net["gateway"], net["bridge"])
            del st["spares"][spare_id]
            info = self._add_member(st, spare_id, container_name, net, ip, spare["veth"], pid, ports, hosts_file)
            undo.commit()
            return info

    def forget_spare(self, spare_id: str) -> None:
        """Drop the record of a spare whose PID 1 is dead (its veth goes with its netns)."""
        if not os.path.isdir(self.state.dir):  # the state root was removed: nothing to forget
            return
        with self.state.locked() as st:
            st["spares"].pop(spare_id, None)

    def _unplug_locked(self, st: dict, spare_id: str) -> None:
        spare = st["spares"].pop(spare_id, None)
        if spare is not None:
            self._delete_veth(spare["veth"])

    @staticmethod
    def _check_ports(ports: tuple[PortMap, ...]) -> None:
        seen = set()
        for port in ports:
            if not ipaddress.ip_address(port.host_ip).is_loopback:
                raise SpecError(
                    f"publishing on {port.host_ip} would expose the container beyond this machine: "
                    f"publish on loopback, e.g. -p 127.0.0.1:{port.host_port}:{port.container_port}"
                )
            key = (port.host_ip, port.host_port, port.protocol)
            if key in seen:
                raise SpecError(f"host port {port.host_port}/{port.protocol} is published twice: give each -p its own host port")
            seen.add(key)

    @staticmethod
    def _free_address(st: dict, net: dict) -> str:
        used = {c["ip"] for c in st["containers"].values() if c["network"] == net["name"] and c.get("ip")}
        used.add(net["gateway"])
        for host in ipaddress.ip_network(net["subnet"]).hosts():
            if str(host) not in used:
                return str(host)
        raise Conflict(f"network {net['name']} ({net['subnet']}) has no free address left: remove a container "
                       "or create a network with a larger --subnet")

    def _plug(self, ipr, undo: _Undo, pid: int, veth: str, container_id: str, bridge_index: int,
              mtu: int, mac: str | None = None) -> None:
        """The veth pair: host end `veth` up on the bridge, peer born as eth0 in the container."""
        nsfd = netlink.open_netns(pid)
        try:
            if os.fstat(nsfd).st_ino == netlink.own_netns_inode():
                raise RuntimeFailure(f"process {pid} shares the host's network namespace: it cannot be attached")
            try:
                peer = {"ifname": "eth0", "net_ns_fd": nsfd, "mtu": mtu}
                if mac is not None:
                    peer["address"] = mac
                ipr.link("add", ifname=veth, kind="veth", mtu=mtu, master=bridge_index, state="up", peer=peer)
            except Exception as exc:
                raise netlink.failure(f"creating veth pair {veth} / eth0 in process {pid}'s namespace", exc) from None
        finally:
            os.close(nsfd)
        undo.push(lambda: self._delete_veth(veth))
        if not self.rootless and netlink.sysfs_set_alias(veth, self.state.veth_alias(container_id)):
            return
        try:
            ipr.link("set", ifname=veth, ifalias=self.state.veth_alias(container_id))
        except Exception as exc:
            raise netlink.failure(f"labelling {veth}", exc) from None

    @staticmethod
    def _configure_inside(pid: int, ip: str, net: dict) -> None:
        prefixlen = ipaddress.ip_network(net["subnet"]).prefixlen
        with netlink.inside(pid, "eth0") as (ns, eth0):
            try:
                ns.link("set", index=netlink.LOOPBACK_INDEX, state="up")
                ns.addr("add", index=eth0, address=ip, prefixlen=prefixlen)
                ns.link("set", index=eth0, state="up")
                if not net["internal"]:
                    ns.route("add", dst="0.0.0.0/0", gateway=net["gateway"], oif=eth0)
            except Exception as exc:
                raise netlink.failure(f"configuring eth0 ({ip}/{prefixlen}) in process {pid}'s namespace", exc) from None

    def _delete_veth(self, veth: str) -> None:  # gone already if its netns died
        with self._host() as ipr:
            netlink.delete_link(ipr, veth)

    @off_event_loop
    def loopback(self, pid: int) -> None:
        """Bring `lo` up in PID's namespace: all that `--net none` needs."""
        with netlink.inside(pid) as (ns, _):
            ns.link("set", index=netlink.LOOPBACK_INDEX, state="up")

    def join(self, container_id: str, target_container_id: str, container_name: str | None = None,
             hosts_file: str | None = None) -> dict:
        """Bookkeeping for `--net container:NAME` (the caller setns()es into the
        target's namespace itself): the joiner's name resolves to the target's
        address on the network, and its hosts file is kept current too.
        Returns the target's attachment, or {} if the target is on `none`."""
        with self.state.locked() as st:
            target = st["containers"].get(target_container_id)
            if target is None:
                return {}
            if target.get("joined"):
                target_container_id, target = target["joined"], st["containers"][target["joined"]]
            if container_id in st["containers"]:
                raise Conflict(f"container {container_name or container_id} is already attached to a network")
            st["containers"][container_id] = {
                "name": container_name or container_id, "network": target["network"], "ip": target["ip"],
                "mac": target["mac"], "gateway": target["gateway"], "veth": None, "pid": None, "netns": target["netns"],
                "hosts_file": hosts_file, "ports": [], "joined": target_container_id, "shape": None}
            self._refresh_hosts(st, target["network"])
            return {"ip": target["ip"], "gateway": target["gateway"], "network": target["network"],
                    "mac": target["mac"], "joined": target_container_id}

    @off_event_loop
    def detach(self, container_id: str, exited: bool = False) -> None:
        """Undo attach/join; idempotent, and fine when the netns is already gone.

        exited: PID 1 has exited, so its network namespace is going away and the
        kernel unregisters the veth pair with it; deleting it here would wait for
        that (~10 ms of RCU) for nothing.  Only the bookkeeping is done then
        (address, ports, names), unless a container:NAME partner keeps the
        namespace alive.  gc removes a labelled link that outlives its record.
        """
        with self.state.locked() as st:
            self._detach_locked(st, container_id, exited)

    def _detach_locked(self, st: dict, container_id: str, exited: bool = False) -> None:
        if self._proxy is not None:
            self._proxy.unpublish(container_id)
        if not self.rootless:
            host_filter.close_ports(container_id)
        record = st["containers"].pop(container_id, None)
        if record is None:
            return
        if record.get("hosts_file"):
            hosts.rewrite(record["hosts_file"], "")
        if not record.get("joined"):
            # partners that shared this namespace lose its eth0 with it
            partners = False
            for cid, other in list(st["containers"].items()):
                if other.get("joined") == container_id:
                    partners = True
                    if other.get("hosts_file"):
                        hosts.rewrite(other["hosts_file"], "")
                    del st["containers"][cid]
            if record.get("veth") and (partners or not exited):
                self._delete_veth(record["veth"])
        self._refresh_hosts(st, record["network"])

    def _refresh_hosts(self, st: dict, network: str) -> None:
        members = [c for c in st["containers"].values() if c["network"] == network]
        entries = sorted({(c["ip"], c["name"]) for c in members}, key=lambda e: (ipaddress.ip_address(e[0]), e[1]))
        block = hosts.render_block(network, entries)
        for member in members:
            if member.get("hosts_file"):
                hosts.rewrite(member["hosts_file"], block)

    @off_event_loop
    def shape(self, container_id: str, rate: str | None = None, delay: str | None = None,
              loss: str | None = None, keep: bool = False) -> dict:
        """Set (or with all None, clear) rate, delay and loss on the container's link.
        keep=True (a live update) keeps what is set and not given anew."""
        wanted = shaping.parse_shape(rate, delay, loss)
        require_root("--net-rate, --net-delay and --net-loss (tc on both ends of the link)")
        with self.state.locked() as st:
            record = st["containers"].get(container_id)
            if record is None:
                raise NotFound(f"container {container_id} is not on a network: shaping needs --net bridge or a named network")
            if record.get("joined"):
                container_id, record = record["joined"], st["containers"][record["joined"]]
            if keep and record.get("shape"):
                now = shaping.Shape(**record["shape"])
                wanted = shaping.Shape(
                    wanted.rate_bps if rate else now.rate_bps, wanted.delay_us if delay else now.delay_us,
                    wanted.loss_pct if loss else now.loss_pct)
            pid = record["pid"]
            try:
                alive = netlink.netns_inode(pid) == record["netns"]
            except OSError:
                alive = False
            if not alive:
                raise NotFound(f"container {record['name']} has exited: its network is gone")
            with self._host() as ipr:
                index = netlink.link_index(ipr, record["veth"])
                mtu = ipr.get_links(index)[0].get_attr("IFLA_MTU")
                # what the container receives: rate only (delay once per round trip is enough)
                shaping.apply(ipr, index, shaping.Shape(rate_bps=wanted.rate_bps), mtu, with_netem=False)
            with netlink.inside(pid, "eth0") as (ns, eth0):
                shaping.apply(ns, eth0, wanted, mtu, with_netem=True)
            record["shape"] = None if wanted.empty else wanted.to_json()
            return {"rate": rate, "delay": delay, "loss": loss}

    @off_event_loop
    def gc(self, live_container_ids: set[str]) -> dict:
        """Remove attachments of containers not in the set, and any link of this
        state root that no record explains (a crash between two steps)."""
        removed = {"containers": [], "links": []}
        with self.state.locked() as st:
            for cid in [cid for cid in st["containers"] if cid not in live_container_ids]:
                self._detach_locked(st, cid)
                removed["containers"].append(cid)
            if self._proxy is not None:  # listeners this process holds for the dead
                for owner in {p["owner"] for p in self._proxy.published()} - set(live_container_ids):
                    self._proxy.unpublish(owner)
                    host_filter.close_ports(owner)
                    removed["containers"].append(owner)
            for spare_id in [s for s in st["spares"] if s not in live_container_ids]:
                self._unplug_locked(st, spare_id)
                removed["containers"].append(spare_id)
            known_veths = {c["veth"] for c in st["containers"].values() if c.get("veth")}
            known_veths |= {spare["veth"] for spare in st["spares"].values()}
            known_bridges = {n["bridge"] for n in st["networks"].values()}
            if self.rootless and self._host.running() is None:
                return removed  # no holder: no link of ours anywhere
            with self._host() as ipr:
                for ifname, _ in netlink.links_with_alias_prefix(ipr, f"{ALIAS_PREFIX}:{self.state.tag}:"):
                    if ifname not in known_veths and ifname not in known_bridges:
                        netlink.delete_link(ipr, ifname)
                        removed["links"].append(ifname)
            self._maybe_stop_holder(st)
        return removed


def _port_json(port: PortMap) -> dict:
    return {"host_ip": port.host_ip, "host_port": port.host_port,
            "container_port": port.container_port, "protocol": port.protocol}
