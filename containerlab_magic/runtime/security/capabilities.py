"""Capabilities a container keeps, and no_new_privs.

capabilities(7): the bounding set caps what any later exec can gain; PID 1
drops everything outside the container's set from it (Docker's default 14,
changed by --cap-add/--cap-drop, all for --privileged), then sets the
effective and permitted sets to that set (for root), and clears the
inheritable and ambient sets, so nothing passes through an exec that the
bounding set would not also allow.  A non-root --user loses all capabilities
at setuid(2), as with Docker.  PR_SET_NO_NEW_PRIVS (prctl(2)) stops setuid
binaries from raising privileges.
"""

from __future__ import annotations

import os

from .. import linux
from ..errors import SpecError

CAPABILITY_NUMBERS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
    "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
    "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
    "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
    "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

# Docker's default set (moby oci/caps/defaults.go).
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")
DEFAULT_MASK = sum(1 << CAPABILITY_NUMBERS[c] for c in DEFAULT_CAPS)


def _name(text: str, flag: str) -> str:
    name = text.upper().removeprefix("CAP_")
    if name != "ALL" and name not in CAPABILITY_NUMBERS:
        raise SpecError(f"unknown capability {text!r} in {flag}: use a name from capabilities(7) such as "
                        "NET_ADMIN or CAP_SYS_PTRACE, or ALL")
    return name


def resolve(cap_add: tuple[str, ...], cap_drop: tuple[str, ...], privileged: bool) -> int:
    """Docker's rules: start from the default 14 (all if privileged), add, then drop; ALL in either."""
    adds = {_name(c, "--cap-add") for c in cap_add}
    drops = {_name(c, "--cap-drop") for c in cap_drop}
    every = (1 << (max(CAPABILITY_NUMBERS.values()) + 1)) - 1
    mask = every if privileged or "ALL" in adds else DEFAULT_MASK
    mask |= sum(1 << CAPABILITY_NUMBERS[c] for c in adds - {"ALL"})
    if "ALL" in drops:
        mask = sum(1 << CAPABILITY_NUMBERS[c] for c in adds - {"ALL"})
    mask &= ~sum(1 << CAPABILITY_NUMBERS[c] for c in drops - {"ALL"})
    return mask


def names(mask: int) -> frozenset[str]:
    """'CAP_CHOWN', ... as seccomp profiles name them."""
    return frozenset("CAP_" + n for n, bit in CAPABILITY_NUMBERS.items() if mask & (1 << bit))


_LAST_CAP: list[int] = []


def last_cap() -> int:
    """The highest capability this kernel knows; read once (in the shim), not in every container."""
    if not _LAST_CAP:
        _LAST_CAP.append(linux.last_cap())
    return _LAST_CAP[0]


def drop_bounding(keep_mask: int = DEFAULT_MASK) -> None:
    for cap in range(last_cap() + 1):
        if not keep_mask & (1 << cap):
            linux.prctl(linux.PR_CAPBSET_DROP, cap)


def bounding_set() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return -1


def switch_user(uid: int, gid: int, groups: list[int] | None, caps: int = DEFAULT_MASK,
                inheritable: int = 0) -> None:
    """setgroups/setgid/setuid; for root, keep exactly `caps`; inheritable and ambient empty.
    groups None: leave them (a single-id user namespace denies setgroups(2); it has none)."""
    if groups is not None:
        os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    kept = caps if uid == 0 else 0
    linux.capset(kept, inheritable & kept)


def no_new_privs() -> None:
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
