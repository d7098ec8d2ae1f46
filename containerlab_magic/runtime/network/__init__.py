"""Container networks: bridges, veth pairs, addresses, names, published ports, shaping.

    from containerlab_magic.runtime.network import NetworkManager
    nm = NetworkManager(state_root)
    nm.attach(cid, "web", pid, "bridge", ports=[PortMap(8080, 80)], hosts_file=path)

Importing this package is cheap: pyroute2 is imported inside the methods that
talk to the kernel.  See manager.py for the model and each module for its part.
"""

from .manager import DEFAULT_NETWORK, NetworkManager, parse_subnet
from .proxy import PortProxy
from .shaping import parse_shape

__all__ = ["DEFAULT_NETWORK", "NetworkManager", "PortProxy", "parse_shape", "parse_subnet"]
