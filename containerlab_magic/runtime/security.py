"""Privileges a container keeps: capabilities and no_new_privs.

capabilities(7): the bounding set caps what any later exec can gain; we drop
everything outside Docker's default 14 from it, then set the effective,
permitted and inheritable sets to those 14 (for root) and clear the ambient
set.  The bounding set only matters at execve(2), so the shim, which never
execs, drops it once for itself: every container it clones inherits the
reduced set yet keeps full effective capabilities for its own setup.  A non-root --user loses all capabilities at setuid(2), as with Docker.
PR_SET_NO_NEW_PRIVS (prctl(2)) stops setuid binaries from raising privileges.
"""

from __future__ import annotations

import os

from . import linux

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


def drop_bounding(keep_mask: int = DEFAULT_MASK) -> None:
    for cap in range(linux.last_cap() + 1):
        if not keep_mask & (1 << cap):
            linux.prctl(linux.PR_CAPBSET_DROP, cap)


def bounding_set() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return -1


def switch_user(uid: int, gid: int, groups: list[int]) -> None:
    """setgroups/setgid/setuid; for root, keep exactly the default capabilities."""
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    linux.capset(DEFAULT_MASK if uid == 0 else 0)


def no_new_privs() -> None:
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
