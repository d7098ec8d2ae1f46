"""v1 cpu and cpuacct controllers.  cpu: CFS bandwidth control gives the group
cpu.cfs_quota_us of CPU time every cpu.cfs_period_us (quota/period = CPUs), and
cpu.shares its relative weight when CPUs are contended; cpu.stat counts periods and
throttling.  cpuacct: CPU time the group used, in ns (cpuacct.usage, _user, _sys).
Kernel doc: Documentation/scheduler/sched-bwc.rst, admin-guide/cgroup-v1/cpuacct.rst.
"""

from __future__ import annotations

import os

from ...spec import Limits
from .. import fs
from ..base import CFS_PERIOD_US, Controller, Usage


class Cpu(Controller):
    name = "cpu"
    limit_fields = ("cpus", "cpu_shares")
    files = ("cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares", "cpu.stat")

    def check(self, limits: Limits, lab_dir: str) -> str | None:
        if limits.cpus is not None and not os.path.exists(os.path.join(lab_dir, "cpu.cfs_quota_us")):
            return "--cpus needs CFS bandwidth control (cpu.cfs_quota_us), which this kernel lacks (CONFIG_CFS_BANDWIDTH)"
        return None

    def apply(self, group_dir: str, limits: Limits, initial: bool) -> list[str]:
        if limits.cpus is not None:
            fs.write(os.path.join(group_dir, "cpu.cfs_period_us"), CFS_PERIOD_US)
            quota = max(1000, round(limits.cpus * CFS_PERIOD_US))  # the kernel's minimum is 1 ms
            fs.write(os.path.join(group_dir, "cpu.cfs_quota_us"), quota)
        if limits.cpu_shares is not None:
            fs.write(os.path.join(group_dir, "cpu.shares"), limits.cpu_shares)
        return []

    def read(self, group_dir: str, usage: Usage) -> None:
        stat = fs.read_keyed(os.path.join(group_dir, "cpu.stat"))
        usage.nr_periods = stat.get("nr_periods")
        usage.nr_throttled = stat.get("nr_throttled")
        usage.throttled_ns = stat.get("throttled_time")  # ns in v1


class CpuAcct(Controller):
    name = "cpuacct"
    files = ("cpuacct.usage", "cpuacct.usage_user", "cpuacct.usage_sys", "cpuacct.stat")

    def read(self, group_dir: str, usage: Usage) -> None:
        usage.cpu_usage_ns = fs.read_int(os.path.join(group_dir, "cpuacct.usage"))
        usage.cpu_user_ns = fs.read_int(os.path.join(group_dir, "cpuacct.usage_user"))
        usage.cpu_system_ns = fs.read_int(os.path.join(group_dir, "cpuacct.usage_sys"))
        if usage.cpu_user_ns is None:  # older kernels: only clock ticks in cpuacct.stat
            ticks = fs.read_keyed(os.path.join(group_dir, "cpuacct.stat"))
            ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
            if "user" in ticks:
                usage.cpu_user_ns = ticks["user"] * ns_per_tick
                usage.cpu_system_ns = ticks.get("system", 0) * ns_per_tick
