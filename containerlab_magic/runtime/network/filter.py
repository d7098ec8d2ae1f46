"""The host's input filter for lab bridges: a container reaches the host only through its ports.

A container on a lab bridge has the host as its gateway, and the host answers
on every address it has: a service listening on 0.0.0.0 (a database, a
Jupyter server, sshd) would be open to every container, even on an --internal
network.  So the lab keeps one nftables table of its own (nft(8), family inet,
so IPv4 and IPv6), `containerlab`, with an input chain that looks only at
packets arriving on lab bridges (the set `bridges`) and lets through:

- replies to connections the host opened (the port proxy's upstream side),
- ping (echo requests: a lab pings its gateway, and the host's other addresses
  answer as a router would),
- a port published on that network's gateway address for a container of that
  network (the set `published`: bridge . address . protocol . port),

and drops the rest.  Traffic not from a lab bridge is never touched.  The table
is made with the first lab network and deleted with the last; its sets change
as networks and published ports come and go.  Nothing here routes or NATs.

Router advertisements (ipv6(7) sysctls accept_ra, autoconf): a container with
CAP_NET_RAW could announce itself as an IPv6 router to its bridge; the bridge
(netlink.create_bridge) and each container's eth0 (child._refuse_router_ads)
ignore them.
"""

from __future__ import annotations

import shutil
import subprocess

from ..errors import HostUnsupported, RuntimeFailure
from ..security import guards

TABLE = "inet containerlab"
SETUP = f"""
add table {TABLE}
add set {TABLE} bridges {{ type ifname; }}
add set {TABLE} published {{ type ifname . ipv4_addr . inet_proto . inet_service; }}
add chain {TABLE} input {{ type filter hook input priority filter - 1; policy accept; }}
flush chain {TABLE} input
add rule {TABLE} input iifname != @bridges accept
add rule {TABLE} input ct state established,related accept
add rule {TABLE} input icmp type echo-request accept
add rule {TABLE} input iifname . ip daddr . meta l4proto . th dport @published accept
add rule {TABLE} input counter drop
"""


def _nft(script: str, what: str, check: bool = True) -> subprocess.CompletedProcess:
    binary = shutil.which("nft") or "/usr/sbin/nft"
    try:
        done = subprocess.run([binary, "-f", "-"], input=script, capture_output=True, text=True, cwd="/",
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=30)
    except FileNotFoundError:
        raise HostUnsupported("lab networks need nftables to keep containers off the host's services: "
                              "install the nftables package") from None
    if check and done.returncode != 0:
        raise RuntimeFailure(f"{what}: nft said: {done.stderr.strip().splitlines()[-1] if done.stderr else '?'}")
    return done


def add_bridge(bridge: str) -> None:
    """The table (made or repaired, atomically) and `bridge` among the filtered bridges."""
    if guards.disabled("host-filter"):
        return
    _nft(SETUP + f"add element {TABLE} bridges {{ {bridge} }}\n", f"filtering lab bridge {bridge}")


def remove_bridge(bridge: str) -> None:
    """Forget `bridge`; delete the table once no lab bridge (of any state root) is left."""
    _nft(f"delete element {TABLE} bridges {{ {bridge} }}\n", "unfiltering a lab bridge", check=False)
    listing = _nft(f"list set {TABLE} bridges\n", "listing lab bridges", check=False)
    if listing.returncode == 0 and "elements" not in listing.stdout:
        _nft(f"delete table {TABLE}\n", "removing the lab's filter table", check=False)


def _element(bridge: str, address: str, protocol: str, port: int) -> str:
    return f"{{ {bridge} . {address} . {protocol} . {port} }}"


_opened: dict[str, list[str]] = {}  # owner (container id) -> its elements, in this process (as its proxy)


def open_port(owner: str, bridge: str, address: str, protocol: str, port: int) -> None:
    """Let containers of `bridge` reach the host's `address`:`port`, published for `owner`."""
    element = _element(bridge, address, protocol, port)
    _nft(f"add element {TABLE} published {element}\n", f"opening {address}:{port}/{protocol} to bridge {bridge}")
    _opened.setdefault(owner, []).append(element)


def close_ports(owner: str) -> None:
    """Close what open_port opened for `owner` (its listeners are gone)."""
    for element in _opened.pop(owner, ()):
        _nft(f"delete element {TABLE} published {element}\n", "closing a published port", check=False)


def describe() -> str | None:
    """The table as nft shows it, or None when there is none (for doctor and tests)."""
    listing = _nft(f"list table {TABLE}\n", "listing the lab's filter", check=False)
    return listing.stdout if listing.returncode == 0 else None

