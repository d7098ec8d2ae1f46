"""Run Python as a real unprivileged user of this host (setpriv(1)), with the checkout.

The test user is `clabtest`: made with useradd(8) when missing (Debian's useradd
also gives it /etc/subuid and /etc/subgid ranges) and removed with its home at the
end of the session that made it (remove_created, from tests/conftest.py); a user
that was there before the session is left alone.  A second user for "cannot see each
other's containers" is `nobody`, which every Debian system has.  The user's
Python is /usr/bin/python3 (root's pyenv is not readable by others) with a copy
of the package in a directory the user can read.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile

from .run import CHECKOUT

TEST_USER = "clabtest"
SYSTEM_PYTHON = "/usr/bin/python3"


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "running as another user needs root (setpriv)"
    if not shutil.which("setpriv"):
        return "setpriv is missing (apt-get install util-linux)"
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} is missing (apt-get install python3)"
    return None


def sub_range(name: str, path: str = "/etc/subuid") -> tuple[int, int] | None:
    """The user's (start, count) in /etc/subuid (or /etc/subgid), if it has one."""
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] == name:
                    return int(parts[1]), min(int(parts[2]), 65536)
    except OSError:
        pass
    return None


CREATED: list[str] = []  # users this session made: remove_created takes them away again


SINGLE_ID_USER = "clabtest1"  # a second test user, without /etc/subuid ranges (single-id only)


def ensure_user(name: str = TEST_USER) -> pwd.struct_passwd:
    """The test user `name` (made when missing); SINGLE_ID_USER is made without /etc/subuid
    and /etc/subgid ranges (useradd -K SUB_UID_COUNT=0 ...)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        no_ranges = ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"] if name == SINGLE_ID_USER else []
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", *no_ranges, name], check=True)
        CREATED.append(name)
        return pwd.getpwnam(name)


def remove_created() -> list[str]:
    """Remove the users this session made, with their homes and /etc/subuid lines (userdel -r);
    their processes must have ended (the session's containers are gone by then)."""
    removed = []
    while CREATED:
        name = CREATED.pop()
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)
        try:
            pwd.getpwnam(name)
        except KeyError:
            removed.append(name)
    return removed


def package_copy() -> str:
    """A world-readable copy of containerlab_magic; the caller removes it (shutil.rmtree)."""
    top = tempfile.mkdtemp(prefix="clab-user-src-")
    os.chmod(top, 0o755)
    shutil.copytree(os.path.join(CHECKOUT, "containerlab_magic"), os.path.join(top, "containerlab_magic"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    # Its pure-Python dependency for networks (the system Python the user runs has none of
    # this Python's site-packages, which live under root's 0700 home here).
    import pyroute2

    shutil.copytree(os.path.dirname(pyroute2.__file__), os.path.join(top, "pyroute2"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for directory, dirs, files in os.walk(top):
        for name in dirs:
            os.chmod(os.path.join(directory, name), 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)
    return top


def run_as(uid: int, gid: int, source: str, code: str, env: dict | None = None, no_new_privs: bool = False,
           home: str = "/nonexistent", timeout: float = 60) -> subprocess.CompletedProcess:
    """python -c code as uid:gid, no supplementary groups, a clean environment."""
    base = {"PATH": "/usr/bin:/bin", "HOME": home, "PYTHONPATH": source, "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8"}
    argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    if no_new_privs:
        argv.append("--no-new-privs")
    argv += ["env", "-i", *(f"{k}={v}" for k, v in {**base, **(env or {})}.items()), SYSTEM_PYTHON, "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/")
