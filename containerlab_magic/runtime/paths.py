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
