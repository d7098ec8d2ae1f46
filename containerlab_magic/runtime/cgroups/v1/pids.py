"""v1 pids controller: pids.max caps how many tasks (processes and threads) the group may
hold; fork(2) and clone(2) fail with EAGAIN beyond it.  pids.current counts them.
Kernel doc: Documentation/admin-guide/cgroup-v1/pids.rst.
"""

from __future__ import annotations

import os

from ...spec import Limits
from .. import fs
from ..base import Controller, Usage


DEFAULT_PIDS_LIMIT = 1024


def default_pids_limit() -> str:
    """Without --pids-limit a container still gets 1024 tasks (a fork bomb stays in its group;
    Docker's default is no limit): CONTAINERLAB_DEFAULT_PIDS_LIMIT=N changes it, 0 lifts it."""
    value = os.environ.get("CONTAINERLAB_DEFAULT_PIDS_LIMIT", str(DEFAULT_PIDS_LIMIT))
    return "max" if value.strip() in ("0", "max") else str(int(value))


class Pids(Controller):
    name = "pids"
    limit_fields = ("pids_limit",)
    files = ("pids.max", "pids.current")

    def apply(self, group_dir: str, limits: Limits, initial: bool) -> list[str]:
        if limits.pids_limit is not None:
            fs.write(os.path.join(group_dir, "pids.max"), limits.pids_limit)
        elif initial:
            fs.write(os.path.join(group_dir, "pids.max"), default_pids_limit())
        return []

    def read(self, group_dir: str, usage: Usage) -> None:
        usage.pids_current = fs.read_int(os.path.join(group_dir, "pids.current"))
        usage.pids_limit = fs.read_int(os.path.join(group_dir, "pids.max"))
