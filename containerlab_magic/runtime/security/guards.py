"""Test-only switches that turn one security guard off, so a test can show its attack works.

The escape suite (tests/security/) proves each guard by running its attack
twice: with the guard removed it must succeed, with the guard in place it must
fail.  `CONTAINERLAB_TEST_DISABLE_GUARD=name[,name...]` in the environment of
the engine (which passes CONTAINERLAB_* on to the shim) removes the named
guards.  Never set it outside tests: it exists only so that no test passes
for the wrong reason.  The names are GUARDS below; docs/security.md lists the
test of each.
"""

from __future__ import annotations

import os

GUARDS = {
    "shim-isolation": "the shim starts with python -I, in /, with a fixed environment (C1)",
    "devices-cgroup": "Docker's device allowlist in the devices cgroup (C2)",
    "nodev-binds": "bind mounts are nosuid,nodev (C2, M7)",
    "seccomp": "the default seccomp profile (H1)",
    "bind-setid": "no setuid/setgid/file-capability files made through a writable bind, as host root (M7)",
    "keyring": "each container joins its own session keyring (H2)",
    "exec-nondumpable": "an exec'd process's setup is not dumpable (H3)",
    "recursive-ro": "read-only binds are read-only in every submount (M1)",
    "readonly-hosts": "/etc/hosts and /etc/hostname are read-only binds (M4)",
    "host-filter": "lab bridges reach the host only through published ports (nftables) (M2)",
    "bind-nofollow": "a bind source is opened without following symlinks planted since the check (Low)",
    "peer-check": "the daemon socket serves root and its owner only (SO_PEERCRED) (Low)",
    "masked-paths": "Docker's masked /proc paths (/proc/interrupts, ...) (Low)",
    "inheritable-caps": "empty inheritable capability set (Low)",
    "sandbox-session": "a process-sandbox process may not leave its session (setsid refused), which ends with it",
    "sandbox-ptrace": "a process-sandbox process may not ptrace or read the memory of the user's other processes",
}


def disabled(name: str) -> bool:
    """True only when a test turned this guard off."""
    if name not in GUARDS:
        raise KeyError(f"no security guard named {name!r}")
    return name in os.environ.get("CONTAINERLAB_TEST_DISABLE_GUARD", "").split(",")
