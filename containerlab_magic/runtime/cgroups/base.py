"""The one cgroup interface both drivers implement, and the usage figures they report.

A `CgroupManager` owns the lab's subtree (`containerlab/`) in the host's
hierarchy; `create` makes one group per container under it and applies its
limits, and the returned `Cgroup` is the handle for the container's life:
add processes, read usage, change limits, freeze, kill everything, remove.
The model is youki's libcgroups (`CgroupManager`: add_task, apply, stats,
freeze, remove, get_all_pids).
"""

from __future__ import annotations

import dataclasses
import errno
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..errors import HostUnsupported
from ..spec import Limits
from . import fs

# How a user spells each limit, for messages.
FLAGS = {
    "memory": "--memory",
    "memory_swap": "--memory-swap",
    "cpus": "--cpus",
    "cpu_shares": "--cpu-shares",
    "cpuset_cpus": "--cpuset-cpus",
    "pids_limit": "--pids-limit",
    "blkio_weight": "--blkio-weight",
}

CFS_PERIOD_US = 100_000  # like docker and runc: --cpus 0.5 is 50 ms every 100 ms


@dataclass
class Usage:
    """What a group uses now; None where this host does not tell."""

    memory_bytes: int | None = None  # memory charged to the group now (incl. page cache)
    memory_peak_bytes: int | None = None
    memory_limit: int | None = None  # None: unlimited
    cpu_usage_ns: int | None = None
    cpu_user_ns: int | None = None
    cpu_system_ns: int | None = None
    nr_periods: int | None = None  # CFS bandwidth periods that had runnable tasks
    nr_throttled: int | None = None  # ... of which the group hit its quota
    throttled_ns: int | None = None
    pids_current: int | None = None
    pids_limit: int | None = None  # None: unlimited
    oom_kills: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class Controller(ABC):
    """One kernel controller as a driver sees it: which limits it enforces, how, and what it reports."""

    name: str = ""  # kernel name, e.g. "memory"
    limit_fields: tuple[str, ...] = ()  # Limits fields it enforces
    files: tuple[str, ...] = ()  # files shown by Cgroup.files(), when present

    def check(self, limits: Limits, lab_dir: str) -> str | None:
        """Why these limits can't be enforced though the controller is there (a file is absent), or None."""
        return None

    def setup(self, group_dir: str) -> None:
        """Prepare a fresh group before limits and processes (v1 cpuset needs this)."""

    def apply(self, group_dir: str, limits: Limits, initial: bool) -> list[str]:
        """Write the non-None fields this controller owns; return notes on what was not exact."""
        return []

    def read(self, group_dir: str, usage: Usage) -> None:
        """Fill the usage fields this controller knows."""


def conversion_cpu_weight(shares: int) -> int:
    """cpu.shares (2..262144) -> cpu.weight (1..10000), as runc converts."""
    return 1 + ((shares - 2) * 9999) // 262142


def conversion_io_weight(blkio_weight: int) -> int:
    """blkio.weight (10..1000) -> io.weight (1..10000), as runc converts."""
    return 1 + ((blkio_weight - 10) * 9999) // 990


class Cgroup(ABC):
    """One container's group (in every v1 hierarchy, or the one v2 directory)."""

    container_id: str
    procs_files: list[str]  # cgroup.procs paths: a forked child joins by writing "0" to each
    notes: list[str]  # limits applied only approximately (e.g. swap not accountable), one line each

    def add(self, pid: int) -> None:
        for path in self.procs_files:
            fs.write(path, pid)

    @abstractmethod
    def update(self, limits: Limits) -> None: ...

    @abstractmethod
    def stats(self) -> Usage: ...

    def oom_killed(self) -> bool:
        return bool(self.stats().oom_kills)

    @abstractmethod
    def freeze(self) -> None: ...

    @abstractmethod
    def thaw(self) -> None: ...

    @property
    @abstractmethod
    def frozen(self) -> bool: ...

    @abstractmethod
    def pids(self) -> list[int]: ...

    @abstractmethod
    def kill_all(self) -> None: ...

    def allow_all_devices(self) -> None:
        """--privileged: lift the device allowlist (security/devices.py) for this group."""

    @abstractmethod
    def remove(self) -> None: ...

    @abstractmethod
    def files(self) -> dict[str, str]: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.container_id}>"


class CgroupManager(ABC):
    """The lab's subtree in one cgroup version; detection happened before it was made."""

    version: int
    controllers: dict[str, Controller]  # usable here: name -> controller
    limit_controllers: dict[str, str]  # Limits field -> controller name it needs

    @abstractmethod
    def describe(self) -> dict: ...

    @abstractmethod
    def why_missing(self, controller: str) -> str:
        """One line: why `controller` is not usable here and how to fix it."""

    @abstractmethod
    def lab_dir_for(self, controller: str) -> str: ...

    def missing_for(self, limits: Limits) -> str | None:
        for field_name, flag in FLAGS.items():
            if getattr(limits, field_name) is None:
                continue
            name = self.limit_controllers[field_name]
            ctrl = self.controllers.get(name)
            if ctrl is None:
                return f"{flag} needs the cgroup {name} controller, which {self.why_missing(name)}"
            reason = ctrl.check(limits, self.lab_dir_for(name))
            if reason:
                return reason
        return None

    def require(self, limits: Limits) -> None:
        reason = self.missing_for(limits)
        if reason:
            raise HostUnsupported(reason)

    @abstractmethod
    def create(self, container_id: str, limits: Limits) -> Cgroup: ...

    @abstractmethod
    def open(self, container_id: str) -> Cgroup | None: ...

    @abstractmethod
    def list(self) -> list[str]: ...

    def release(self) -> list[str]:
        """Remove the lab's own parent groups if they hold no container group (an engine's
        last act): an idle lab leaves nothing in the host's hierarchy.  Groups of other
        engines keep them (rmdir refuses a group with children); an engine that finds
        its parent gone makes it again (`_lab_again`).  Returns what was removed."""
        removed = []
        for lab in sorted({self.lab_dir_for(name) for name in self.controllers}):
            try:
                os.rmdir(lab)
                removed.append(lab)
            except OSError:
                pass
        return removed

    def _mkdir_in_lab(self, path: str) -> bool:
        """fs.mkdir of a container's group, making its parent again if another engine
        released it meanwhile; False if the group already existed."""
        try:
            return fs.mkdir(path)
        except fs.CgroupFileError as err:
            if err.errno != errno.ENOENT:
                raise
        self._lab_again(os.path.dirname(path))
        return fs.mkdir(path)

    @abstractmethod
    def _lab_again(self, lab: str) -> None:
        """Make the lab's parent group `lab` again, set up as at start."""
