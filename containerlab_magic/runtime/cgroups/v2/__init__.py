"""cgroup v2 driver (unified hosts): see manager.py and subtree.py."""

from .manager import V2Cgroup, V2Manager

__all__ = ["V2Cgroup", "V2Manager"]
