"""Each container's own session keyring.

The kernel's key retention service (keyrings(7)) keeps a session keyring per
login session, inherited across fork and exec; a container started from a
root shell would otherwise share the host root's, and could read or use the
keys in it (keyctl(1) show @s).  PID 1 joins a new anonymous session keyring
(keyctl(2) KEYCTL_JOIN_SESSION_KEYRING with no name), as runc does, so the
container and everything it starts see only keys they make themselves; the
default seccomp profile also refuses keyctl, add_key and request_key.
"""

from __future__ import annotations

import ctypes
import os
import platform

KEYCTL_JOIN_SESSION_KEYRING = 1
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "ppc64le": 271, "s390x": 280}
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def join_new_session() -> int:
    """Replace this process's session keyring with a new, empty one; return its serial."""
    nr = _SYS_KEYCTL.get(platform.machine())
    if nr is None:
        raise OSError(38, f"keyctl: unsupported architecture {platform.machine()}")
    serial = _libc.syscall(nr, ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), None, None, None, None)
    if serial < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"keyctl(JOIN_SESSION_KEYRING): {os.strerror(err)}")
    return serial
