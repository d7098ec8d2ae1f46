"""Where the lab keeps things.

State (one directory per container, the daemon socket) lives under a runtime
directory that a reboot clears; images live under a data directory.  Both can
be moved with environment variables, which tests use to stay out of each
other's way.
"""

from __future__ import annotations

import os


def state_root() -> str:
    env = os.environ.get("CONTAINERLAB_STATE")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/containerlab"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/containerlab-{os.getuid()}"
    return os.path.join(runtime_dir, "containerlab")


def data_root() -> str:
    env = os.environ.get("CONTAINERLAB_DATA")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/containerlab"
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "containerlab")


def private_io_root() -> str:
    """A 0700 directory of our own for data passed in and out of containers (--python
    --in/--out): what lies below it may be 0777 for a container's --user, yet other users
    of the host can neither read nor plant anything there."""
    path = os.path.join(state_root(), "io")
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path
