"""v2 cpu controller: cpu.max "QUOTA PERIOD" gives the group QUOTA us of CPU time every
PERIOD us (CFS bandwidth control), cpu.weight (1..10000, default 100) its share when
CPUs are contended.  cpu.stat reports usage_usec, user_usec, system_usec in every group,
and nr_periods, nr_throttled, throttled_usec when the controller is enabled.
Kernel doc: Documentation/admin-guide/cgroup-v2.rst, "CPU"; scheduler/sched-bwc.rst.
"""

from __future__ import annotations

import os

from ...spec import Limits
from .. import fs
from ..base import CFS_PERIOD_US, Controller, Usage, conversion_cpu_weight


class Cpu(Controller):
    name = "cpu"
    limit_fields = ("cpus", "cpu_shares")
    files = ("cpu.max", "cpu.weight", "cpu.stat")

    def check(self, limits: Limits, lab_dir: str) -> str | None:
        if limits.cpus is not None and not os.path.exists(os.path.join(lab_dir, "cpu.max")):
            return "--cpus needs CFS bandwidth control (cpu.max), which this kernel lacks (CONFIG_CFS_BANDWIDTH)"
        return None

    def apply(self, group_dir: str, limits: Limits, initial: bool) -> list[str]:
        if limits.cpus is not None:
            quota = max(1000, round(limits.cpus * CFS_PERIOD_US))  # the kernel's minimum is 1 ms
            fs.write(os.path.join(group_dir, "cpu.max"), f"{quota} {CFS_PERIOD_US}")
        if limits.cpu_shares is not None:
            fs.write(os.path.join(group_dir, "cpu.weight"), conversion_cpu_weight(limits.cpu_shares))
        return []


def read_cpu_stat(group_dir: str, usage: Usage) -> None:
    """cpu.stat exists without the cpu controller too (the usage part), so every group reads it."""
    stat = fs.read_keyed(os.path.join(group_dir, "cpu.stat"))
    usec = {key: stat.get(key) for key in ("usage_usec", "user_usec", "system_usec", "throttled_usec")}
    ns = {key: (None if value is None else value * 1000) for key, value in usec.items()}
    usage.cpu_usage_ns, usage.cpu_user_ns, usage.cpu_system_ns = ns["usage_usec"], ns["user_usec"], ns["system_usec"]
    usage.throttled_ns = ns["throttled_usec"]
    usage.nr_periods = stat.get("nr_periods")
    usage.nr_throttled = stat.get("nr_throttled")
