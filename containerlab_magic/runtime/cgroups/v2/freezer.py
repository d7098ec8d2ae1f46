"""v2 freezer and kill: writing 1 to cgroup.freeze stops every task of the group, 0 lets
them run; cgroup.events says `frozen 1` once all are stopped.  Writing 1 to cgroup.kill
(5.14+) SIGKILLs every process of the group and its descendants atomically, so a
double-forked daemon can't escape; cgroup.events says `populated 0` once they are gone.
Kernel doc: Documentation/admin-guide/cgroup-v2.rst, "Core Interface Files".
"""

from __future__ import annotations

import os
import signal

from .. import fs


def events(group_dir: str) -> dict[str, int]:
    return fs.read_keyed(os.path.join(group_dir, "cgroup.events"))


def freeze(group_dir: str) -> None:
    fs.write(os.path.join(group_dir, "cgroup.freeze"), 1)
    fs.wait_until(lambda: events(group_dir).get("frozen") == 1, 5.0, "frozen 1", group_dir)


def thaw(group_dir: str) -> None:
    fs.write(os.path.join(group_dir, "cgroup.freeze"), 0)
    fs.wait_until(lambda: events(group_dir).get("frozen") == 0, 5.0, "frozen 0", group_dir)


def kill_all(group_dir: str) -> None:
    kill_file = os.path.join(group_dir, "cgroup.kill")
    if os.path.exists(kill_file):
        fs.write(kill_file, 1)
    else:  # before 5.14: freeze so nothing forks, kill, thaw so the kills are delivered
        freeze(group_dir)
        for pid in fs.procs(os.path.join(group_dir, "cgroup.procs")):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        thaw(group_dir)
    fs.wait_until(lambda: events(group_dir).get("populated", 0) == 0, 5.0, "populated 0", group_dir)
