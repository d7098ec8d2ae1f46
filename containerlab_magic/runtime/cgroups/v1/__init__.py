"""cgroup v1 driver (legacy and hybrid hosts): see manager.py."""

from .manager import V1Cgroup, V1Manager

__all__ = ["V1Cgroup", "V1Manager"]
