"""Where the lab may make its groups in the v2 hierarchy, and getting controllers there.

cgroup v2 is one tree.  A group's cgroup.controllers lists what its parent enabled for
it in cgroup.subtree_control; a group can enable for its children only what it has.
The *no-internal-processes rule*: a non-root group that has processes can't enable
controllers for children, so controllers live only where the leaves are.  We use:

1. the root of the cgroup2 mount when we may write it (root on the host, or root in a
   container that has its own cgroup namespace and a writable mount); else
2. our own group (from /proc/self/cgroup), when it was delegated to us (a systemd user
   service or scope with Delegate=yes makes it ours to write).

In either, when controllers must be enabled and the group holds processes, the only
process we move is the calling one (the engine's shim), into a leaf `engine/` beside
`containerlab/`; a group holding anyone else's processes is left alone and the
controllers are reported missing with that reason.
Kernel doc: Documentation/admin-guide/cgroup-v2.rst, "Top-down Constraint",
"No Internal Process Constraint", "Delegation".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import fs

LAB = "containerlab"
ENGINE_LEAF = "engine"
WANTED = ("memory", "cpu", "cpuset", "pids", "io")


@dataclass
class Subtree:
    base: str | None = None  # the group that holds containerlab/
    lab: str | None = None  # base/containerlab: every container's group is made here
    how: str = ""  # why this base was chosen
    controllers: set[str] = field(default_factory=set)  # enabled for container groups
    problems: dict[str, str] = field(default_factory=dict)  # controller -> why it is not usable
    notes: list[str] = field(default_factory=list)
    why_not: str | None = None  # when there is no writable base at all


def _writable(group: str) -> bool:
    return all(os.access(os.path.join(group, name), os.W_OK)
               for name in ("cgroup.procs", "cgroup.subtree_control")) and os.access(group, os.W_OK)


def find_base(mount: str, own_path: str) -> tuple[str | None, str]:
    if _writable(mount):
        return mount, f"the cgroup2 root {mount} is writable"
    own = os.path.normpath(mount + "/" + own_path)
    if own != mount and _writable(own):
        return own, f"this process's own group {own} is delegated to us"
    return None, (f"neither the cgroup2 root {mount} nor this process's group {own} is writable: run as root, "
                  "or start Jupyter in a delegated group: `systemd-run --user --scope -p Delegate=yes jupyter lab`")


def _enabled(group: str) -> set[str]:
    return set(fs.read(os.path.join(group, "cgroup.subtree_control")).split())


def _offered(group: str) -> set[str]:
    return set(fs.read(os.path.join(group, "cgroup.controllers")).split())


def _enable(group: str, names: set[str], problems: dict[str, str]) -> None:
    for name in sorted(names - _enabled(group)):
        try:
            fs.write(os.path.join(group, "cgroup.subtree_control"), f"+{name}")
        except fs.CgroupFileError as err:
            problems[name] = f"could not be enabled ({err})"


def _clear_internal_processes(base: str, sub: Subtree) -> bool:
    """Make `base` free of processes so it may enable controllers; True when it is."""
    inside = fs.procs(os.path.join(base, "cgroup.procs"))
    if not inside:
        return True
    others = [pid for pid in inside if pid != os.getpid()]
    if others:
        shown = ", ".join(map(str, others[:5])) + (" ..." if len(others) > 5 else "")
        reason = (f"can't be enabled under {base}: it holds processes we did not start ({shown}) and cgroup v2 "
                  "allows controllers only in groups without processes; move them into a leaf group "
                  f"(e.g. mkdir {base}/init and write each PID to its cgroup.procs) or start Jupyter in its own "
                  "delegated scope")
        for name in WANTED:
            sub.problems.setdefault(name, reason)
        return False
    leaf = os.path.join(base, ENGINE_LEAF)
    fs.mkdir(leaf)
    fs.write(os.path.join(leaf, "cgroup.procs"), os.getpid())
    sub.notes.append(f"moved this process ({os.getpid()}) into {leaf} (no-internal-processes rule)")
    return True


def prepare(mount: str, own_path: str) -> Subtree:
    base, how = find_base(mount, own_path)
    if base is None:
        return Subtree(why_not=how)
    sub = Subtree(base=base, how=how, lab=os.path.join(base, LAB))
    offered = _offered(base)
    for name in WANTED:
        if name not in offered:
            sub.problems[name] = (f"is not delegated to {base}: enable it in {os.path.dirname(base)}/"
                                  "cgroup.subtree_control (for systemd: Delegate=yes)")
    wanted = offered & set(WANTED)
    # The real root (no cgroup.type file) is exempt from the no-internal-processes rule.
    is_real_root = not os.path.exists(os.path.join(base, "cgroup.type"))
    if wanted - _enabled(base) and (is_real_root or _clear_internal_processes(base, sub)):
        _enable(base, wanted, sub.problems)
    try:
        fs.mkdir(sub.lab)
    except fs.CgroupFileError as err:
        return Subtree(why_not=str(err))
    _enable(sub.lab, _offered(sub.lab) & set(WANTED), sub.problems)
    sub.controllers = _enabled(sub.lab) & set(WANTED)
    return sub
