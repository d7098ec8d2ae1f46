"""v2 memory controller: memory.max caps the group's memory; at the cap the kernel
reclaims and then OOM-kills inside the group, counting it as oom_kill in memory.events.
memory.swap.max caps swap on its own (not memory plus swap as in v1), so --memory-swap M
becomes swap.max = M - memory.  memory.current and memory.peak (5.19+) are usage now and
at most.  Kernel doc: Documentation/admin-guide/cgroup-v2.rst, "Memory".
"""

from __future__ import annotations

import os

from ...spec import Limits
from .. import fs
from ..base import Controller, Usage


class Memory(Controller):
    name = "memory"
    limit_fields = ("memory", "memory_swap")
    files = ("memory.max", "memory.swap.max", "memory.current", "memory.peak", "memory.swap.current",
             "memory.events")

    def check(self, limits: Limits, lab_dir: str) -> str | None:
        if limits.memory_swap not in (None, -1) and not os.path.exists(os.path.join(lab_dir, "memory.swap.max")):
            return ("--memory-swap needs swap accounting (memory.swap.max), which this kernel lacks: "
                    "boot it with swapaccount=1, or drop --memory-swap")
        return None

    def apply(self, group_dir: str, limits: Limits, initial: bool) -> list[str]:
        if limits.memory is not None:
            fs.write(os.path.join(group_dir, "memory.max"), limits.memory)
        swap_file = os.path.join(group_dir, "memory.swap.max")
        if limits.memory_swap == -1:
            swap: int | str | None = "max"
        elif limits.memory_swap is not None:
            memory = limits.memory if limits.memory is not None else fs.read_int(os.path.join(group_dir, "memory.max"))
            swap = limits.memory_swap - (memory or 0)
        elif initial and limits.memory is not None:
            swap = 0  # swap disabled at the memory limit, like docker
        else:
            swap = None  # update of memory only: swap.max is separate, the allowance stays
        if swap is None:
            return []
        if not os.path.exists(swap_file):
            return ["swap is not limited (the kernel does not account swap: boot with swapaccount=1)"]
        fs.write(swap_file, swap)
        return []

    def read(self, group_dir: str, usage: Usage) -> None:
        usage.memory_bytes = fs.read_int(os.path.join(group_dir, "memory.current"))
        usage.memory_peak_bytes = fs.read_int(os.path.join(group_dir, "memory.peak"))
        usage.memory_limit = fs.read_int(os.path.join(group_dir, "memory.max"))
        events = fs.read_keyed(os.path.join(group_dir, "memory.events"))
        usage.oom_kills = events.get("oom_kill")
