"""Which device nodes a container may use: Docker's allowlist, as data.

A device node is only a name for a (type, major, minor) triple: whoever can
mknod(2) one (CAP_MKNOD) on a filesystem mounted without nodev can open the
host's disks or /dev/kvm through it.  The devices controller (cgroup v1,
devices.allow/devices.deny) or a BPF_PROG_TYPE_CGROUP_DEVICE program (cgroup
v2) checks every open and mknod of a device against a list: everything is
denied, then these few harmless character devices are allowed (read, write
and mknod), as in Docker's default: null, zero, full, random, urandom, tty,
console, ptmx and the container's own ptys.  --privileged allows all.
Kernel doc: Documentation/admin-guide/cgroup-v1/devices.rst.
"""

from __future__ import annotations

from dataclasses import dataclass

WILDCARD = -1


@dataclass(frozen=True)
class Rule:
    kind: str  # "c" (character), "b" (block) or "a" (all)
    major: int = WILDCARD
    minor: int = WILDCARD
    access: str = "rwm"  # read, write, mknod

    def v1(self) -> str:
        """The line devices.allow / devices.deny takes: 'c 1:3 rwm'."""
        if self.kind == "a":
            return "a"
        number = lambda n: "*" if n == WILDCARD else str(n)  # noqa: E731
        return f"{self.kind} {number(self.major)}:{number(self.minor)} {self.access}"


ALLOWED = (
    Rule("c", 1, 3),  # null
    Rule("c", 1, 5),  # zero
    Rule("c", 1, 7),  # full
    Rule("c", 1, 8),  # random
    Rule("c", 1, 9),  # urandom
    Rule("c", 5, 0),  # tty
    Rule("c", 5, 1),  # console
    Rule("c", 5, 2),  # ptmx
    Rule("c", 136, WILDCARD),  # the container's own /dev/pts/N
)
