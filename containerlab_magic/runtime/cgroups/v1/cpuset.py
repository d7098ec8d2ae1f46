"""v1 cpuset controller: cpuset.cpus and cpuset.mems restrict the group to those CPUs and
memory nodes.  A new v1 cpuset starts with both empty and refuses tasks until they are
set, so every new group copies them from its parent first (what cgroup.clone_children
would do).  Kernel doc: Documentation/admin-guide/cgroup-v1/cpusets.rst.
"""

from __future__ import annotations

import os

from ...spec import Limits
from .. import fs
from ..base import Controller


class Cpuset(Controller):
    name = "cpuset"
    limit_fields = ("cpuset_cpus",)
    files = ("cpuset.cpus", "cpuset.mems", "cpuset.effective_cpus")

    def check(self, limits: Limits, lab_dir: str) -> str | None:
        if limits.cpuset_cpus is None:
            return None
        available = fs.read(os.path.join(lab_dir, "cpuset.cpus")).strip()
        if not fs.parse_cpu_list(limits.cpuset_cpus) <= fs.parse_cpu_list(available):
            return f"--cpuset-cpus {limits.cpuset_cpus} names CPUs this host does not offer: use CPUs from {available}"
        return None

    def setup(self, group_dir: str) -> None:
        parent = os.path.dirname(group_dir)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not fs.read(os.path.join(group_dir, name)).strip():
                fs.write(os.path.join(group_dir, name), fs.read(os.path.join(parent, name)).strip())

    def apply(self, group_dir: str, limits: Limits, initial: bool) -> list[str]:
        if limits.cpuset_cpus is not None:
            fs.write(os.path.join(group_dir, "cpuset.cpus"), limits.cpuset_cpus)
        return []
