"""v2 pids controller: the same files as v1 (pids.max, pids.current), so the
same code.  Kernel doc: Documentation/admin-guide/cgroup-v2.rst, "PID".
"""

from __future__ import annotations

from ..v1.pids import Pids

__all__ = ["Pids"]
