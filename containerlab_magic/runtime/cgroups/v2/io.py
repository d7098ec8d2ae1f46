"""v2 io controller: io.bfq.weight (1..1000, BFQ scheduler) or io.weight (1..10000, the
iocost model) sets the group's share of disk time; io.stat counts rbytes and wbytes per
device.  With neither weight file the weight can't be enforced.
Kernel doc: Documentation/admin-guide/cgroup-v2.rst, "IO".
"""

from __future__ import annotations

import os

from ...spec import Limits
from .. import fs
from ..base import Controller, Usage, conversion_io_weight


class Io(Controller):
    name = "io"
    limit_fields = ("blkio_weight",)
    files = ("io.bfq.weight", "io.weight", "io.stat")

    def check(self, limits: Limits, lab_dir: str) -> str | None:
        if limits.blkio_weight is not None and not any(
                os.path.exists(os.path.join(lab_dir, name)) for name in ("io.bfq.weight", "io.weight")):
            return ("--blkio-weight needs io.weight or io.bfq.weight, which this host lacks: load BFQ "
                    "(modprobe bfq) and select it for the disk, or drop --blkio-weight")
        return None

    def apply(self, group_dir: str, limits: Limits, initial: bool) -> list[str]:
        if limits.blkio_weight is None:
            return []
        bfq = os.path.join(group_dir, "io.bfq.weight")
        if os.path.exists(bfq):  # BFQ takes the blkio scale as it is, like runc
            fs.write(bfq, limits.blkio_weight)
        else:
            fs.write(os.path.join(group_dir, "io.weight"), f"default {conversion_io_weight(limits.blkio_weight)}")
        return []

    def read(self, group_dir: str, usage: Usage) -> None:
        text = fs.read_opt(os.path.join(group_dir, "io.stat"))
        if text is None:
            return
        usage.io_read_bytes = usage.io_write_bytes = 0
        for line in text.splitlines():  # "8:0 rbytes=4096 wbytes=0 rios=1 ..."
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                if key == "rbytes":
                    usage.io_read_bytes += int(value)
                elif key == "wbytes":
                    usage.io_write_bytes += int(value)
