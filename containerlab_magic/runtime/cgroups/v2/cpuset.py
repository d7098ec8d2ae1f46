"""v2 cpuset controller: cpuset.cpus restricts the group to those CPUs (empty means the
parent's); unlike v1 a new group works at once, inheriting cpuset.cpus.effective and
cpuset.mems.effective.  Kernel doc: Documentation/admin-guide/cgroup-v2.rst, "Cpuset".
"""

from __future__ import annotations

import os

from ...spec import Limits
from .. import fs
from ..base import Controller


class Cpuset(Controller):
    name = "cpuset"
    limit_fields = ("cpuset_cpus",)
    files = ("cpuset.cpus", "cpuset.cpus.effective", "cpuset.mems.effective")

    def check(self, limits: Limits, lab_dir: str) -> str | None:
        if limits.cpuset_cpus is None:
            return None
        available = fs.read(os.path.join(lab_dir, "cpuset.cpus.effective")).strip()
        if not fs.parse_cpu_list(limits.cpuset_cpus) <= fs.parse_cpu_list(available):
            return f"--cpuset-cpus {limits.cpuset_cpus} names CPUs this host does not offer: use CPUs from {available}"
        return None

    def apply(self, group_dir: str, limits: Limits, initial: bool) -> list[str]:
        if limits.cpuset_cpus is not None:
            fs.write(os.path.join(group_dir, "cpuset.cpus"), limits.cpuset_cpus)
        return []
