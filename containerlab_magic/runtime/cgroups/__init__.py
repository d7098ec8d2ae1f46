"""Resource limits and usage with Linux control groups (cgroups(7)).

A cgroup is a directory in a special filesystem; the kernel's *controllers* (memory,
cpu, pids, ...) limit and count what the processes listed in its cgroup.procs use.
v1 mounts one hierarchy per controller under /sys/fs/cgroup/<controller>; v2 has one
unified tree with every controller.  Both drivers put every container's group under
the lab's own subtree, `containerlab/<id>`, never beside the host's groups; the
`containerlab` parents go when the last engine using them ends (CgroupManager.release).

    from containerlab_magic.runtime.cgroups import open_manager
    mgr = open_manager()                    # detect once; None: no writable cgroups
    cg = mgr.create("c1", Limits(memory=64 << 20, cpus=0.5))
    cg.add(pid); cg.stats(); cg.kill_all(); cg.remove()

Kernel docs: Documentation/admin-guide/cgroup-v1/ and cgroup-v2.rst.
"""

from __future__ import annotations

import os

from .base import Cgroup, CgroupManager, Usage
from .detect import CGROUP_ROOT, detect
from .fs import CgroupFileError

__all__ = ["Cgroup", "CgroupFileError", "CgroupManager", "Usage", "describe_host", "open_manager"]


def _open(root: str) -> tuple[CgroupManager | None, dict]:
    setup = detect(root)
    if setup.mode is None:
        return None, _no_manager(setup.mode, f"no cgroup filesystem is mounted at {root}: "
                                 f"mount one with `mount -t cgroup2 none {root}`")
    if setup.mode == "unified":
        from .v2 import V2Manager
        from .v2.subtree import prepare

        subtree = prepare(root, setup.own_v2_path)
        if subtree.lab is None:
            return None, _no_manager(setup.mode, subtree.why_not)
        mgr: CgroupManager = V2Manager(setup.mode, root, subtree)
        return mgr, mgr.describe()
    from .v1 import V1Manager

    bases = None
    if os.geteuid() != 0:  # groups root made and gave to this user (delegation.py), if any
        from ..delegation import probe

        access = probe(root)
        bases = dict(zip(access.controllers, access.dirs)) if access.ok and access.version == 1 else {}
    v1 = V1Manager(setup.mode, setup.v1_mounts, setup.enabled, setup.unified_mount, bases)
    if not v1.writable:
        problems = "; ".join(f"{k} {v}" for k, v in v1.problems.items()) or "no controller is mounted"
        return None, _no_manager(setup.mode, f"no cgroup v1 hierarchy is writable ({problems}): run as root")
    return v1, v1.describe()


def _no_manager(mode: str | None, why: str | None) -> dict:
    version = {"unified": 2, "hybrid": 1, "legacy": 1}.get(mode or "")
    return {"version": version, "mode": mode, "roots": [], "controllers": [], "missing": {},
            "writable": False, "why_not": why, "notes": []}


_cache: dict[str, tuple[CgroupManager | None, dict]] = {}


def open_manager(root: str = CGROUP_ROOT) -> CgroupManager | None:
    """The manager for this host's cgroups, detected once per process; None when none is writable."""
    if root not in _cache:
        _cache[root] = _open(root)
    return _cache[root][0]


def describe_host(root: str = CGROUP_ROOT) -> dict:
    """What `containerlab-magic doctor` shows: mgr.describe(), or why there is no manager."""
    open_manager(root)
    mgr, description = _cache[root]
    return mgr.describe() if mgr else description
