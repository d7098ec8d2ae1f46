"""A dry run of the start plan: the same steps' descriptions, nothing run.

The shim's steps describe themselves against a context with no id, no cgroup
and no PID 1 yet; PID 1's steps are listed from the same rootfs plan and in
the order child.py runs (and marks) them.
"""

from __future__ import annotations

from .. import child, rootfs, rootless, security
from .build import build
from .context import StartContext
from .executor import dry_run
from .record import CONTAINER, StepRecord


class _DryHost:
    """What the steps' descriptions read from the shim, for a dry run in the Engine."""

    def __init__(self, store, cgroups) -> None:
        self.store, self.cgroups = store, cgroups
        self.userns = rootless.for_this_process()

    def cgroup_lab_dirs(self) -> list[str]:
        if self.cgroups is None:
            return []
        return sorted(set(getattr(self.cgroups, "lab_dirs", {}).values())) or [getattr(self.cgroups, "lab", "")]


def dry_plan(spec, image, store, cgroups) -> list[StepRecord]:
    name = spec.name or "<a free name>"
    ctx = StartContext(_DryHost(store, cgroups), spec, "<new id>", name, image,
                       hostname=spec.hostname or name[:63].replace("_", "-").replace(".", "-"))
    records = dry_run(build(spec, cgroups=cgroups is not None, rootless=ctx.shim.userns is not None), ctx)
    return records + [StepRecord(kind, text, None, CONTAINER)
                      for kind, text in _pid1_steps(spec, image, store, cgroups, ctx, ctx.shim.userns)]


def _pid1_steps(spec, image, store, cgroups, ctx, userns=None) -> list[tuple[str, str]]:
    steps = [("signals", "default signal handlers, empty signal mask; close inherited fds")]
    if userns is not None and spec.on_bridge:
        steps.append(("userns", "joined the user namespace of the lab's network (userland.py): "
                      + userns.describe().removeprefix("user namespace: ")))
    elif userns is not None:
        steps.append(("userns", userns.describe()))
    if spec.network.startswith("container:"):
        steps.append(("join network", f"setns(2) into the network namespace of {spec.network[10:]}"))
    steps.append(("mount namespace", "make every mount a slave (MS_REC|MS_SLAVE on /): nothing propagates back"))
    steps.append(("rootfs", rootfs.describe_root(image, rootfs.storage_budget(spec.limits.storage_size),
                                                 userns is not None)))
    steps += [("mount", str(step)) for step in rootfs.plan(image, spec, store.dir("<new id>"), userns)]
    steps.append(("pivot_root", "pivot_root(2) into the overlay, detach the old root"))
    if spec.tty:
        steps.append(("console", "open a pty in the container's own /dev/pts, send its master to the shim"))
    if spec.network != "host":
        steps.append(("loopback", "bring lo up (SIOCSIFFLAGS)"))
    steps.append(("bounding", security.describe_bounding_for(spec)))
    if cgroups is not None or spec.network != "none" and spec.network != "host":
        steps.append(("wait", "wait for the shim's go on the sync pipe (cgroup, network)"))
    if spec.on_bridge:
        steps.append(("eth0", "eth0 up with its address and default route (ioctls)"))
    if child.run_flags_for(spec, userns) & child.linux.CLONE_NEWUTS:
        steps.append(("hostname", f"sethostname {ctx.hostname}"))
    mounts = child.cgroup_mounts(cgroups) if cgroups is not None else ()
    steps.append(("cgroupns", "unshare(CLONE_NEWCGROUP)" + (", mount /sys/fs/cgroup read-only" if mounts else "")))
    steps.append(("workdir", f"chdir {spec.workdir}"))
    steps.append(("user", f"user {spec.user or 'root'}"))
    steps += security.describe_steps(spec)
    if spec.init:
        steps.append(("init", f"PID 1 stays as init: forks the command, which execs {' '.join(spec.command)}; "
                              "forwards signals, reaps"))
    else:
        steps.append(("exec", f"execve {' '.join(spec.command)}"))
    return steps
