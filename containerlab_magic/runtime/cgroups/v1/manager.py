"""cgroup v1 driver: one hierarchy per controller (or a few co-mounted), each mounted
under /sys/fs/cgroup/<name>.  A container's group is the same relative path,
containerlab/<id>, made in every hierarchy we use; a process joins it by writing its PID
to each hierarchy's cgroup.procs.  Kernel doc: Documentation/admin-guide/cgroup-v1/cgroups.rst.
"""

from __future__ import annotations

import os
import signal

from ...errors import Conflict, HostUnsupported, SpecError
from ...spec import Limits
from .. import fs
from ..base import Cgroup, CgroupManager, Controller, Usage
from . import devices, freezer
from .blkio import Blkio
from .cpu import Cpu, CpuAcct
from .cpuset import Cpuset
from .devices import Devices
from .freezer import Freezer
from .memory import Memory
from .pids import Pids

LAB = "containerlab"
CONTROLLERS: tuple[Controller, ...] = (Memory(), Cpu(), CpuAcct(), Cpuset(), Pids(), Blkio(), Freezer(), Devices())
LIMIT_CONTROLLERS = {"memory": "memory", "memory_swap": "memory", "cpus": "cpu", "cpu_shares": "cpu",
                     "cpuset_cpus": "cpuset", "pids_limit": "pids", "blkio_weight": "blkio"}


class V1Manager(CgroupManager):
    version = 1
    limit_controllers = LIMIT_CONTROLLERS

    def __init__(self, mode: str, mounts: dict[str, str], enabled: dict[str, bool], unified_mount: str | None,
                 bases: dict[str, str] | None = None):
        """bases: controller -> the group the lab's own `containerlab` goes under (a group
        root made and gave to this user); None: the hierarchy's root (as root)."""
        self.mode = mode
        self.unified_mount = unified_mount
        self.enabled = enabled
        self.mounts = mounts  # every v1 controller mount, usable or not
        self.problems: dict[str, str] = {}  # controller -> why it is unusable
        self.lab_dirs: dict[str, str] = {}  # usable controller -> <mount>/containerlab
        self.controllers = {}
        if bases is not None:  # a co-mounted controller (cpuacct with cpu) shares its partner's group
            bases = dict(bases)
            for name, mount in mounts.items():
                partner = next((c for c in list(bases) if mounts.get(c) == mount), None)
                if name not in bases and partner is not None:
                    bases[name] = bases[partner]
        for ctrl in CONTROLLERS:
            if ctrl.name not in mounts:
                continue
            if bases is not None and ctrl.name not in bases:
                self.problems[ctrl.name] = f"is not delegated to uid {os.geteuid()} (no group of its own)"
                continue
            lab = os.path.join(bases[ctrl.name] if bases is not None else mounts[ctrl.name], LAB)
            try:
                fs.mkdir(lab)
                ctrl.setup(lab)
            except fs.CgroupFileError as err:
                self.problems[ctrl.name] = f"is not writable here ({err})"
                continue
            if not os.access(lab, os.W_OK):  # made by root before: there, yet not ours to write
                self.problems[ctrl.name] = f"is not writable here ({lab} belongs to uid {os.stat(lab).st_uid})"
                continue
            self.lab_dirs[ctrl.name] = lab
            self.controllers[ctrl.name] = ctrl

    @property
    def writable(self) -> bool:
        return bool(self.controllers)

    def lab_dir_for(self, controller: str) -> str:
        return self.lab_dirs[controller]

    def why_missing(self, controller: str) -> str:
        if controller in self.problems:
            return self.problems[controller]
        if controller not in self.enabled:
            return "this kernel lacks (rebuild it with the controller enabled)"
        if not self.enabled[controller]:
            return f"is disabled: boot with cgroup_enable={controller}"
        return (f"is not mounted: mount it with `mkdir -p /sys/fs/cgroup/{controller} && "
                f"mount -t cgroup -o {controller} cgroup /sys/fs/cgroup/{controller}`")

    def describe(self) -> dict:
        wanted = [c.name for c in CONTROLLERS]
        notes = []
        if "memory" in self.lab_dirs and not os.path.exists(
                os.path.join(self.lab_dirs["memory"], "memory.memsw.limit_in_bytes")):
            notes.append("swap is not accounted (boot with swapaccount=1): --memory can't stop swapping")
        if self.mode == "hybrid":
            notes.append(f"hybrid host: cgroup2 at {self.unified_mount} has no controllers, so v1 is used")
        return {
            "version": 1,
            "mode": self.mode,
            "roots": sorted(set(self.lab_dirs.values())),
            "controllers": sorted(self.controllers),
            "missing": {name: self.why_missing(name) for name in wanted if name not in self.controllers},
            "writable": self.writable,
            "why_not": None if self.writable else "no cgroup v1 hierarchy is writable",
            "notes": notes,
        }

    def _dirs(self, container_id: str) -> dict[str, str]:
        return {name: os.path.join(lab, container_id) for name, lab in self.lab_dirs.items()}

    def create(self, container_id: str, limits: Limits) -> V1Cgroup:
        fs_name = os.path.basename(container_id)
        if fs_name != container_id or container_id in ("", ".", ".."):
            raise SpecError(f"invalid container id for a cgroup: {container_id!r}")
        self.require(limits)
        group = V1Cgroup(container_id, self._dirs(container_id), self)
        made: list[str] = []
        try:
            for path in group.unique_dirs:
                if not self._mkdir_in_lab(path):
                    raise Conflict(f"cgroup {path} already exists: remove the old container or run `containerlab-magic gc`")
                made.append(path)
            for name, path in group.dirs.items():
                self.controllers[name].setup(path)
            group.update(limits, initial=True)
        except BaseException:
            for path in reversed(made):
                fs.rmdir(path)
            raise
        return group

    def _lab_again(self, lab: str) -> None:
        fs.mkdir(lab)
        for name, ctrl in self.controllers.items():
            if self.lab_dirs[name] == lab:
                ctrl.setup(lab)

    def open(self, container_id: str) -> V1Cgroup | None:
        dirs = self._dirs(container_id)
        if not any(os.path.isdir(d) for d in dirs.values()):
            return None
        return V1Cgroup(container_id, dirs, self)

    def list(self) -> list[str]:
        ids: set[str] = set()
        for lab in set(self.lab_dirs.values()):
            try:
                ids.update(e.name for e in os.scandir(lab) if e.is_dir())
            except FileNotFoundError:
                pass
        return sorted(ids)


class V1Cgroup(Cgroup):
    def __init__(self, container_id: str, dirs: dict[str, str], manager: V1Manager):
        self.container_id = container_id
        self.manager = manager
        self.dirs = dirs  # controller -> group dir (co-mounted controllers share one)
        self.unique_dirs = list(dict.fromkeys(dirs.values()))
        self.procs_files = [os.path.join(d, "cgroup.procs") for d in self.unique_dirs]
        self.notes: list[str] = []
        # Where to list processes: freezer (kill_all's view), else any hierarchy.
        self._procs_dir = dirs.get("freezer") or dirs.get("pids") or self.unique_dirs[0]

    def update(self, limits: Limits, initial: bool = False) -> None:
        if not initial:
            self.manager.require(limits)
        for name, path in self.dirs.items():
            self.notes += self.manager.controllers[name].apply(path, limits, initial)

    def stats(self) -> Usage:
        usage = Usage()
        for name, path in self.dirs.items():
            self.manager.controllers[name].read(path, usage)
        return usage

    def _need_freezer(self) -> str:
        if "freezer" not in self.dirs:
            raise HostUnsupported(f"pause needs the cgroup freezer controller, which "
                                  f"{self.manager.why_missing('freezer')}")
        return self.dirs["freezer"]

    def freeze(self) -> None:
        freezer.freeze(self._need_freezer())

    def thaw(self) -> None:
        freezer.thaw(self._need_freezer())

    @property
    def frozen(self) -> bool:
        return "freezer" in self.dirs and freezer.state(self.dirs["freezer"]) != "THAWED"

    def pids(self) -> list[int]:
        return fs.procs(os.path.join(self._procs_dir, "cgroup.procs"))

    def kill_all(self) -> None:
        """Freeze (so nothing forks), SIGKILL everything, thaw (so the kills land), wait until empty."""
        has_freezer = "freezer" in self.dirs and os.path.isdir(self.dirs["freezer"])
        procs_file = os.path.join(self._procs_dir, "cgroup.procs")
        # Without a freezer a forking process may need several rounds; frozen, one is enough.
        for _ in range(100):
            if has_freezer:
                freezer.freeze(self.dirs["freezer"])
            pids = fs.procs(procs_file)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if has_freezer:
                freezer.thaw(self.dirs["freezer"])
            if not pids or fs.poll(lambda: not fs.procs(procs_file), 0.5 if has_freezer else 0.05):
                return
        fs.wait_until(lambda: not fs.procs(procs_file), 5.0, "every process to exit", self._procs_dir)

    def allow_all_devices(self) -> None:
        if "devices" in self.dirs:
            devices.allow_all(self.dirs["devices"])

    def remove(self) -> None:
        for path in reversed(self.unique_dirs):
            fs.rmdir(path)

    def files(self) -> dict[str, str]:
        result = {"cgroup.procs": fs.read_opt(self.procs_files[0]) or ""}
        for name, path in self.dirs.items():
            for file_name in self.manager.controllers[name].files:
                text = fs.read_opt(os.path.join(path, file_name))
                if text is not None:
                    result[file_name] = text
        return result
