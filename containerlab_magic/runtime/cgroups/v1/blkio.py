"""v1 blkio controller: blkio.weight (CFQ) or blkio.bfq.weight (BFQ) sets the group's
share of disk time when the device's I/O scheduler is proportional; with none of them the
file is absent and the weight can't be enforced.  blkio.throttle.io_service_bytes counts
bytes read and written per device, whatever the scheduler.
Kernel doc: Documentation/admin-guide/cgroup-v1/blkio-controller.rst.
"""

from __future__ import annotations

import os

from ...spec import Limits
from .. import fs
from ..base import Controller, Usage

WEIGHT_FILES = ("blkio.weight", "blkio.bfq.weight")


def weight_file(group_dir: str) -> str | None:
    for name in WEIGHT_FILES:
        if os.path.exists(os.path.join(group_dir, name)):
            return name
    return None


class Blkio(Controller):
    name = "blkio"
    limit_fields = ("blkio_weight",)
    files = WEIGHT_FILES + ("blkio.throttle.io_service_bytes",)

    def check(self, limits: Limits, lab_dir: str) -> str | None:
        if limits.blkio_weight is not None and weight_file(lab_dir) is None:
            return ("--blkio-weight needs a proportional I/O scheduler (blkio.weight or blkio.bfq.weight), "
                    "which this host lacks: load BFQ (modprobe bfq) and select it for the disk, or drop --blkio-weight")
        return None

    def apply(self, group_dir: str, limits: Limits, initial: bool) -> list[str]:
        if limits.blkio_weight is not None:
            fs.write(os.path.join(group_dir, weight_file(group_dir) or WEIGHT_FILES[0]), limits.blkio_weight)
        return []

    def read(self, group_dir: str, usage: Usage) -> None:
        text = fs.read_opt(os.path.join(group_dir, "blkio.throttle.io_service_bytes"))
        if text is None:
            return
        usage.io_read_bytes = usage.io_write_bytes = 0
        for line in text.splitlines():
            parts = line.split()  # "8:0 Read 4096"; the last line is "Total N"
            if len(parts) == 3 and parts[1] == "Read":
                usage.io_read_bytes += int(parts[2])
            elif len(parts) == 3 and parts[1] == "Write":
                usage.io_write_bytes += int(parts[2])
