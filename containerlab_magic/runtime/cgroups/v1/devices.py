"""v1 devices controller: which device nodes the group's processes may open or mknod.

Each group keeps a list of (type, major:minor, access) entries: writing "a" to
devices.deny empties it (nothing allowed), and each line written to
devices.allow adds one back.  open(2) or mknod(2) of a device outside the list
fails with EPERM, whatever the file's mode or where its node lives.  A group can
never allow more than its parent.  The policy (Docker's allowlist) is
security/devices.py.  Kernel doc: Documentation/admin-guide/cgroup-v1/devices.rst.
"""

from __future__ import annotations

import os

from ...security import devices, guards
from .. import fs
from ..base import Controller

LAB = "containerlab"


class Devices(Controller):
    name = "devices"
    files = ("devices.list",)

    def setup(self, group_dir: str) -> None:
        # The lab's own group keeps everything: a --privileged container below it gets "a".
        if os.path.basename(group_dir) == LAB or guards.disabled("devices-cgroup"):
            return
        fs.write(os.path.join(group_dir, "devices.deny"), "a")
        for rule in devices.ALLOWED:
            fs.write(os.path.join(group_dir, "devices.allow"), rule.v1())


def allow_all(group_dir: str) -> None:
    """--privileged: every device, as on the host."""
    fs.write(os.path.join(group_dir, "devices.allow"), "a")
