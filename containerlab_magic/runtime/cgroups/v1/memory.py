"""v1 memory controller: memory.limit_in_bytes caps the group's memory; at the cap the kernel
reclaims, then its OOM killer kills a process inside the group (and counts it in
memory.oom_control's oom_kill).  memory.memsw.limit_in_bytes caps memory plus swap; it
exists only when the kernel accounts swap (CONFIG_MEMCG_SWAP, swapaccount=1) and must
never be below memory.limit_in_bytes, so the two are written in the order that keeps
that true.  Kernel doc: Documentation/admin-guide/cgroup-v1/memory.rst.
"""

from __future__ import annotations

import errno
import os

from ...spec import Limits, format_size
from .. import fs
from ..base import Controller, Usage

UNLIMITED = float("inf")


class Memory(Controller):
    name = "memory"
    limit_fields = ("memory", "memory_swap")
    files = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.usage_in_bytes",
             "memory.max_usage_in_bytes", "memory.failcnt", "memory.oom_control")

    def check(self, limits: Limits, lab_dir: str) -> str | None:
        has_memsw = os.path.exists(os.path.join(lab_dir, "memory.memsw.limit_in_bytes"))
        if limits.memory_swap not in (None, -1) and not has_memsw:
            return ("--memory-swap needs swap accounting (memory.memsw.limit_in_bytes), which this kernel "
                    "lacks: boot it with swapaccount=1, or drop --memory-swap")
        return None

    def apply(self, group_dir: str, limits: Limits, initial: bool) -> list[str]:
        if limits.memory is None and limits.memory_swap is None:
            return []
        mem_file = os.path.join(group_dir, "memory.limit_in_bytes")
        memsw_file = os.path.join(group_dir, "memory.memsw.limit_in_bytes")
        old_mem = fs.read_int(mem_file)
        mem = limits.memory if limits.memory is not None else old_mem
        if not os.path.exists(memsw_file):
            if limits.memory is not None:
                _write_memory(mem_file, mem)
            # Without swap accounting, swappiness 0 keeps the group's reclaim off swap.
            fs.write(os.path.join(group_dir, "memory.swappiness"), 0)
            return [("swap is not limited (the kernel does not account swap: boot with swapaccount=1); "
                     "memory.swappiness is 0 so this group avoids swapping")]
        old_memsw = fs.read_int(memsw_file)
        if limits.memory_swap == -1:
            memsw = None  # unlimited
        elif limits.memory_swap is not None:
            memsw = limits.memory_swap
        elif initial:
            memsw = mem  # swap disabled: memory + swap may not exceed memory
        elif old_memsw is None or old_mem is None:
            memsw = None
        else:
            memsw = mem + (old_memsw - old_mem)  # keep the swap allowance the group had
        new, old = (UNLIMITED if memsw is None else memsw), (UNLIMITED if old_memsw is None else old_memsw)
        # memsw >= mem at every moment: raise memsw first when it grows, lower mem first when it shrinks.
        if new >= old:
            fs.write(memsw_file, -1 if memsw is None else memsw)
            _write_memory(mem_file, mem)
        else:
            _write_memory(mem_file, mem)
            fs.write(memsw_file, memsw)
        return []

    def read(self, group_dir: str, usage: Usage) -> None:
        usage.memory_bytes = fs.read_int(os.path.join(group_dir, "memory.usage_in_bytes"))
        usage.memory_peak_bytes = fs.read_int(os.path.join(group_dir, "memory.max_usage_in_bytes"))
        usage.memory_limit = fs.read_int(os.path.join(group_dir, "memory.limit_in_bytes"))
        oom = fs.read_keyed(os.path.join(group_dir, "memory.oom_control"))
        usage.oom_kills = oom.get("oom_kill")  # kernel 4.13+


def _write_memory(path: str, value: int | None) -> None:
    if value is None:
        fs.write(path, -1)
        return
    try:
        fs.write(path, value)
    except fs.CgroupFileError as err:
        if err.errno == errno.EBUSY:  # the group uses more than that and the kernel could not reclaim it
            usage = fs.read_int(os.path.join(os.path.dirname(path), "memory.usage_in_bytes")) or 0
            hint = f"the group already uses {format_size(usage)}, more than {format_size(value)}"
            raise fs.CgroupFileError("write", path, OSError(err.errno, ""), str(value), hint) from None
        raise
