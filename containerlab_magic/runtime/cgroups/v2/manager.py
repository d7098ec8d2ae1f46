"""cgroup v2 driver: one unified hierarchy; a container's group is one directory,
<base>/containerlab/<id>, whose limits live in the controllers' files and which a process
joins by writing its PID to the one cgroup.procs.  subtree.py finds <base>.
Kernel doc: Documentation/admin-guide/cgroup-v2.rst.
"""

from __future__ import annotations

import os

from ...errors import Conflict, SpecError
from ...spec import Limits
from .. import fs
from ..base import Cgroup, CgroupManager, Controller, Usage
from . import devices, freezer
from .cpu import Cpu, read_cpu_stat
from .cpuset import Cpuset
from .io import Io
from .memory import Memory
from .pids import Pids
from .subtree import Subtree

CONTROLLERS: tuple[Controller, ...] = (Memory(), Cpu(), Cpuset(), Pids(), Io())
LIMIT_CONTROLLERS = {"memory": "memory", "memory_swap": "memory", "cpus": "cpu", "cpu_shares": "cpu",
                     "cpuset_cpus": "cpuset", "pids_limit": "pids", "blkio_weight": "io"}
CORE_FILES = ("cgroup.procs", "cgroup.events", "cgroup.freeze", "cpu.stat")


class V2Manager(CgroupManager):
    version = 2
    limit_controllers = LIMIT_CONTROLLERS

    def __init__(self, mode: str, mount: str, subtree: Subtree):
        assert subtree.lab is not None
        self.mode = mode
        self.mount = mount
        self.subtree = subtree
        self.lab = subtree.lab
        self.controllers = {c.name: c for c in CONTROLLERS if c.name in subtree.controllers}

    def lab_dir_for(self, controller: str) -> str:
        return self.lab

    def why_missing(self, controller: str) -> str:
        return self.subtree.problems.get(controller, f"is not available under {self.lab}")

    def describe(self) -> dict:
        notes = list(self.subtree.notes)
        if not os.path.exists(os.path.join(self.lab, "cgroup.kill")):
            notes.append("no cgroup.kill (kernel < 5.14): kill_all freezes, kills and thaws instead")
        if "memory" in self.controllers and not os.path.exists(os.path.join(self.lab, "memory.swap.max")):
            notes.append("swap is not accounted (boot with swapaccount=1): --memory can't stop swapping")
        return {
            "version": 2,
            "mode": self.mode,
            "roots": [self.lab],
            "base": self.subtree.base,
            "how": self.subtree.how,
            "controllers": sorted(self.controllers),
            "missing": {c.name: self.why_missing(c.name) for c in CONTROLLERS if c.name not in self.controllers},
            "writable": True,
            "why_not": None,
            "notes": notes,
        }

    def create(self, container_id: str, limits: Limits) -> V2Cgroup:
        if os.path.basename(container_id) != container_id or container_id in ("", ".", ".."):
            raise SpecError(f"invalid container id for a cgroup: {container_id!r}")
        self.require(limits)
        group = V2Cgroup(container_id, os.path.join(self.lab, container_id), self)
        if not self._mkdir_in_lab(group.dir):
            raise Conflict(f"cgroup {group.dir} already exists: remove the old container or run `containerlab-magic gc`")
        try:
            devices.limit(group.dir)
            group.update(limits, initial=True)
        except BaseException:
            fs.rmdir(group.dir)
            raise
        return group

    def _lab_again(self, lab: str) -> None:
        fs.mkdir(lab)
        for name in sorted(self.controllers):
            fs.write(os.path.join(lab, "cgroup.subtree_control"), f"+{name}")

    def open(self, container_id: str) -> V2Cgroup | None:
        path = os.path.join(self.lab, container_id)
        return V2Cgroup(container_id, path, self) if os.path.isdir(path) else None

    def list(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.lab) if e.is_dir())
        except FileNotFoundError:
            return []


class V2Cgroup(Cgroup):
    def __init__(self, container_id: str, path: str, manager: V2Manager):
        self.container_id = container_id
        self.dir = path
        self.manager = manager
        self.procs_files = [os.path.join(path, "cgroup.procs")]
        self.notes: list[str] = []

    def update(self, limits: Limits, initial: bool = False) -> None:
        if not initial:
            self.manager.require(limits)
        for ctrl in self.manager.controllers.values():
            self.notes += ctrl.apply(self.dir, limits, initial)

    def stats(self) -> Usage:
        usage = Usage()
        read_cpu_stat(self.dir, usage)
        for ctrl in self.manager.controllers.values():
            ctrl.read(self.dir, usage)
        return usage

    def freeze(self) -> None:
        freezer.freeze(self.dir)

    def thaw(self) -> None:
        freezer.thaw(self.dir)

    @property
    def frozen(self) -> bool:
        return freezer.events(self.dir).get("frozen") == 1

    def pids(self) -> list[int]:
        return fs.procs(self.procs_files[0])

    def kill_all(self) -> None:
        if os.path.isdir(self.dir):
            freezer.kill_all(self.dir)

    def allow_all_devices(self) -> None:
        devices.detach(self.dir)

    def remove(self) -> None:
        fs.rmdir(self.dir)

    def files(self) -> dict[str, str]:
        result = {}
        names = CORE_FILES + tuple(f for c in self.manager.controllers.values() for f in c.files)
        for name in dict.fromkeys(names):
            text = fs.read_opt(os.path.join(self.dir, name))
            if text is not None:
                result[name] = text
        return result
