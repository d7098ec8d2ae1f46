"""What the steps of one start share: the request, the host, and what each step made.

A step reads what earlier steps left here (the id, the state directory, the
cgroup, PID 1) and adds its own; its undo reads the same fields.  A spare made
ahead of need (shim/spares.py) ran some steps already: `ahead(kind)` tells a
step that its work is done and only the claim's part is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StartContext:
    shim: object  # the shim server: store, cgroups, network, spawner, selector, log
    spec: object  # the validated ContainerSpec (a plain one while making a spare)
    cid: str
    name: str | None  # None while making a spare: it has no name until claimed
    image: object = None  # the resolved image (images.store.Image)
    spare: object = None  # the Spare whose first steps ran ahead, if one is claimed
    making_spare: bool = False  # running the first steps ahead of need (no name, no limits)
    warm_key: tuple | None = None  # a warm spare being made: (image, network)
    explain: bool = False  # PID 1 sends its step timings back before exec
    security: object = None  # security.Policy for PID 1, compiled before any step ran
    conn: object = None  # the client to tell the container's exit
    netns_pid: int | None = None  # --net container:NAME: the partner's PID 1
    hostname: str = ""
    tty_size: tuple | None = None  # --tty: the caller's terminal (rows, columns), set before go
    state_dir: str = ""
    cgroup: object = None
    proc: object = None  # shim.procs.Proc of PID 1
    stdio: object = None  # shim.stdio.Stdio
    setup: object = None  # child.Setup handed to PID 1
    net_info: dict | None = None
    go: dict = field(default_factory=dict)  # what the shim tells PID 1 at its sync pipe
    hold: bool = False  # OCI create: PID 1 waits for a later `start` request for its go
    given_stdio: tuple = ()  # the caller's own stdin, stdout, stderr for the container (OCI runtime)

    def ahead(self, kind: str) -> bool:
        """Did the claimed spare run this step already?"""
        return self.spare is not None and kind in self.spare.done
