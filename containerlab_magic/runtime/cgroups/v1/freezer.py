"""v1 freezer controller: writing FROZEN to freezer.state stops every task of the group
(they can't run, fork or exit) and THAWED lets them go on.  The state passes through
FREEZING until each task is caught, so we write and poll until it reads FROZEN, as runc
does.  A frozen group is what lets kill_all reach every process: none can fork a
replacement between our read of cgroup.procs and the SIGKILLs.
Kernel doc: Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst.
"""

from __future__ import annotations

import os
import time

from ...errors import RuntimeFailure
from .. import fs
from ..base import Controller


class Freezer(Controller):
    name = "freezer"
    files = ("freezer.state",)


def state(group_dir: str) -> str:
    return fs.read(os.path.join(group_dir, "freezer.state")).strip()


def freeze(group_dir: str, timeout: float = 5.0) -> None:
    path = os.path.join(group_dir, "freezer.state")
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        fs.write(path, "FROZEN")
        if state(group_dir) == "FROZEN":
            return
        if time.monotonic() > deadline:
            fs.write(path, "THAWED")
            raise RuntimeFailure(f"could not freeze {group_dir}: a task stayed in FREEZING for {timeout:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def thaw(group_dir: str) -> None:
    fs.write(os.path.join(group_dir, "freezer.state"), "THAWED")
    fs.wait_until(lambda: state(group_dir) == "THAWED", 5.0, "THAWED", group_dir)
