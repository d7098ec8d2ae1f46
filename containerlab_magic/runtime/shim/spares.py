"""Containers made ahead of need: the first steps of the start plan, run early.

A container's state folder and cgroup take ~1 ms to make (cgroup v1 has a
directory per controller), and its PID 1 another few to clone and to mount its
rootfs.  So while idle the shim runs the first steps of the plan ahead of
need (plan/build.py `ahead`): a cold slot (state folder and cgroup) and, with
prewarm on, warm spares: PID 1 itself with its namespaces and rootfs, waiting
at its sync pipe before anything of the user's runs, and for a bridge network
its veth pair plugged in (by PID 1 itself: the shim's loop must not wait on
rtnl).  One warm spare is kept for each of the last MAX_WARM kinds of
container run (image and network; no binds, no tty, no shaping).  A new
container of such a kind runs the same plan; the steps the spare did are
skipped (`StartContext.ahead`): a name, its limits, an address, then "go" with
its command, env, hostname and eth0's settings.
"""

from __future__ import annotations

import os
import secrets
import selectors

from .. import child, rootfs, security
from ..errors import ContainerError, NotFound
from ..plan.build import ahead
from ..plan.context import StartContext
from ..plan.executor import Executor
from ..plan.steps import ClonePid1
from ..spec import ContainerSpec
from ..state import Status, proc_start_time
from .stdio import Stdio

WARM_WHEN_QUIET = 0.005  # seconds without events before a spare's PID 1 is started
WARM_AFTER_START = 0.05  # ...and since the last container started, unless it has ended
MAX_WARM = 2  # kinds of container kept warm at once (the most recently run ones)


class Spare:
    """A container made ahead of need; `done` names the plan's steps it ran."""

    def __init__(self, cid: str, cgroup, done: set[str]):
        self.cid, self.cgroup, self.done = cid, cgroup, done
        self.warm = None  # its PID 1 (procs.Proc), when warm
        self.key: tuple[str, str] | None = None  # what a warm one fits: (image, network)
        self.network: str | None = None  # its veth's network (NetworkManager.reserve_spare)
        self.pipes: tuple[int, ...] = ()  # the warm PID 1's stdout, stderr readers; stdin writer


class SparePool:
    def __init__(self, shim, prewarm: bool) -> None:
        self.shim = shim
        self.prewarm = prewarm
        self.slot: Spare | None = None  # a cold slot: state folder and cgroup
        self.slot_failed = False
        self.warm: dict[tuple[str, str], Spare] = {}  # warm spares by what they fit
        self.wanted: list[tuple[str, str]] = []  # kinds run lately, newest first (at most MAX_WARM)
        self.broken: set[tuple[str, str]] = set()
        self.lost_networks: dict[tuple[str, str], int] = {}  # warm-ups that failed making their veth

    @staticmethod
    def key_for(spec: ContainerSpec, policy, digest: str = "") -> tuple[str, str] | None:
        """What a warm PID 1 for this spec is (image, network), or None if none could serve it:
        a warm one has the image's plain rootfs, its own network namespace and the default
        security policy (security.policy_for).  (Prewarming a kind no warm PID 1 can serve
        would only make and kill namespaces.)  A stored image is keyed NAME@DIGEST: a re-pull
        that moves the tag must not get the old layers."""
        if spec.mounts or spec.read_only or spec.tty or spec.limits.storage_size is not None:
            return None
        if not security.is_default(policy):  # other capabilities, seccomp or --privileged
            return None
        image = f"{spec.image}@{digest}" if digest else spec.image
        if spec.network == "none":
            return image, "none"
        if spec.on_bridge and not (spec.net_rate or spec.net_delay or spec.net_loss) and os.geteuid() == 0:
            return image, spec.network  # (rootless: PID 1 joins the network's user namespace at clone)
        return None

    def want(self, key: tuple[str, str]) -> None:
        if key in self.wanted:
            self.wanted.remove(key)
        self.wanted.insert(0, key)
        for old in self.wanted[MAX_WARM:]:
            spare = self.warm.pop(old, None)
            if spare is not None:
                self.shim.exits.defer(lambda spare=spare: self.discard(spare))
        del self.wanted[MAX_WARM:]

    def take(self, key: tuple[str, str] | None) -> Spare | None:
        """A warm spare of that kind, else the cold slot, else None."""
        spare = self.warm.pop(key, None) if key is not None else None
        if spare is None:
            spare, self.slot = self.slot, None
        return spare

    def put_back(self, spare: Spare) -> None:
        if spare.warm is not None:
            self.warm[spare.key] = spare
        elif self.slot is None:
            self.slot = spare
        else:
            self.discard(spare)

    # ---------------------------------------------------------------- making them

    def prepare_slot(self) -> None:
        if self.slot is not None or self.slot_failed:
            return
        shim = self.shim
        ctx = StartContext(shim, ContainerSpec(("true",)), secrets.token_hex(32), None, making_spare=True)
        try:
            Executor(ahead(cgroups=shim.cgroups is not None, warm=False), ctx, shim.log, record=False).run()
        except (OSError, ContainerError) as e:
            self.slot_failed = True
            shim.log.write(f"cannot prepare containers ahead ({e}); making each on demand")
            return
        self.slot = Spare(ctx.cid, ctx.cgroup, {"state", "cgroup"} if shim.cgroups is not None else {"state"})

    def _next_warm(self) -> tuple[str, str] | None:
        for key in self.wanted:
            if key not in self.warm and key not in self.broken:
                return key
        return None

    def warm_due(self) -> float | None:
        """When to warm a spare, if one is wanted: once the shim is quiet, and not while
        a container that just started still runs (a warm-up keeps the loop busy for a few
        milliseconds; a short command ending meanwhile would be noticed that much later)."""
        shim = self.shim
        # A private shim with no engine left is about to end; an idle daemon is waiting
        # for the CLI's next command, which a warm spare serves.
        if not (self.prewarm and (shim.conns or shim.daemon) and self._next_warm() is not None):
            return None
        due = shim.last_event + WARM_WHEN_QUIET
        for proc in shim.procs.values():
            if proc.kind == "run" and proc.wait_status is None:
                due = max(due, proc.started + WARM_AFTER_START)
        return due

    def warm_next(self) -> None:
        """Run the clone step for the cold slot now that the shim is quiet."""
        key = self._next_warm()
        self.prepare_slot()
        spare, self.slot = self.slot, None
        if spare is None:  # no slot can be made: prepare_slot said why
            self.broken.add(key)
            return
        keyed, network = key
        image_name, _, digest = keyed.rpartition("@sha256:") if "@sha256:" in keyed else (keyed, "", "")
        shim = self.shim
        ctx = StartContext(shim, ContainerSpec(("true",), image=image_name), spare.cid, None, spare=spare,
                           making_spare=True, warm_key=key)
        ctx.state_dir, ctx.cgroup = shim.store.dir(spare.cid), spare.cgroup
        try:
            ctx.image = shim.images.resolve(image_name)
            if digest and ctx.image.digest != "sha256:" + digest:  # the name moved since: not that image
                raise NotFound(f"{image_name} is no longer {digest[:12]}")
            Executor([ClonePid1()], ctx, shim.log, record=False).run()  # the plan's clone step, ahead
        except (OSError, ContainerError) as e:
            self.discard(spare)
            if isinstance(e, NotFound):  # its network was removed: warm it again once it is used again
                self.wanted.remove(key)
                return
            self.broken.add(key)
            shim.log.write(f"cannot prewarm {image_name} on --net {network} ({e}); starting cold")
            return
        spare.warm, spare.key, spare.pipes = ctx.proc, key, tuple(ctx.stdio.take_client())
        spare.done = spare.done | {"clone"}
        self.warm[key] = spare

    def clone_warm(self, ctx) -> None:
        """The clone step, ahead: PID 1 moves itself into its cgroup and, for a network,
        makes its veth pair itself (both wait on the kernel: an RCU grace period on v1,
        rtnl), so the shim's loop never waits and a running container's exit is noticed
        at once."""
        shim, spare = self.shim, ctx.spare
        _, network = ctx.warm_key
        for name in ("hostname", "hosts"):  # bind-mounted now, written at claim
            open(os.path.join(ctx.state_dir, name), "w").close()
        ctx.stdio = Stdio.pipes_for_warm()
        route_socket, plug = None, None
        try:
            if network != "none":
                spare.network = network
                veth, bridge_index, mtu, alias = shim.network.reserve_spare(spare.cid, network)
                from ..network import netlink

                route_socket = netlink.host_route_socket()
                plug = (route_socket.fileno(), veth, bridge_index, mtu, alias)
            ctx.setup = child.Setup(
                command=(), env={}, workdir="/", user=None, hostname="", image=ctx.image,
                steps=rootfs.plan(ctx.image, ctx.spec, ctx.state_dir, shim.userns), stage=shim.stage,
                storage_size=rootfs.storage_budget(None), stdio=ctx.stdio.container, shim_pid=shim.me[0],
                procs_files=tuple(spare.cgroup.procs_files) if spare.cgroup is not None else (),
                join_cgroup=True, plug=plug, security=security.default_policy(), userns=shim.userns,
                cgroup_mounts=shim.cgroup_mounts if spare.cgroup is not None else ())
            ctx.proc = spare.warm = shim.spawner.spawn("run", spare.cid, ctx.setup, None, sync=True)
        finally:
            if route_socket is not None:
                route_socket.close()
            ctx.stdio.close_child_ends()
        ctx.proc.cgroup = spare.cgroup
        shim.selector.register(ctx.proc.pidfd, selectors.EVENT_READ, ("warm", spare))
        shim.store.write(spare.cid, {"id": spare.cid, "status": Status.SPARE, "shim_pid": shim.me[0],
                                     "shim_start": shim.me[1], "cgroup": spare.cgroup is not None,
                                     "pid": ctx.proc.pid, "pid_start": proc_start_time(ctx.proc.pid)})

    def claim_warm(self, ctx) -> None:
        """The clone step of a claim: take the warm PID 1 and its pipes; tell it at go
        what it is to run (it learns its command only now)."""
        spare, spec = ctx.spare, ctx.spec
        ctx.proc = spare.warm
        self.shim.selector.unregister(ctx.proc.pidfd)  # from warm to running (Go tracks it)
        ctx.stdio = Stdio.from_spare(spare.pipes, spec)
        spare.pipes = ()
        interactive = spec.interactive and not spec.detach
        ctx.go.update(command=list(spec.command), env=spec.environment, env_explicit=[k for k, _ in spec.env],
                      workdir=spec.workdir, user=spec.user, hostname=ctx.hostname,
                      stdin="pipe" if interactive else "null", explain=ctx.explain, init=spec.init,
                      ulimits=[list(u) for u in spec.ulimits], group_add=list(spec.group_add))

    # ---------------------------------------------------------------- ending them

    def cool_down(self, spare: Spare) -> None:
        """End a warm PID 1 that will not be used (shutdown, failure, or a failed claim)."""
        proc, spare.warm = spare.warm, None
        if proc is not None:
            try:
                self.shim.selector.unregister(proc.pidfd)
            except (KeyError, ValueError):
                pass
            self.shim.spawner.abort(proc)
        for fd in spare.pipes:
            os.close(fd)
        spare.pipes = ()
        if spare.network is not None:
            spare.network = None
            try:  # the veth pair goes with the dead PID 1's namespace: only the record is left
                self.shim.network.forget_spare(spare.cid)
            except Exception:  # noqa: BLE001 - gc removes what a record leaves
                self.shim.log.exception("forget a spare's network record")

    def discard(self, spare: Spare) -> None:
        """A spare that will not be used: its PID 1, cgroup and folder go (idempotent)."""
        self.cool_down(spare)
        if spare.cgroup is not None and any(os.path.exists(p) for p in spare.cgroup.procs_files):
            if spare.cgroup.pids():  # (a failed claim's undo may have removed it already)
                spare.cgroup.kill_all()
            self.shim.remove_cgroup(spare.cid, spare.cgroup)
        self.shim.store.remove(spare.cid)

    def on_warm_exit(self, spare: Spare) -> None:
        """A warm PID 1 died before it was used: its setup failed.  Go cold for that kind."""
        proc = spare.warm
        proc.wait_status = self.shim.spawner.waitpid(proc.pid)
        error = proc.read_error()
        lost = self.lost_networks.get(spare.key, 0)
        if error.get("stage") == "network" and spare.key in self.wanted and lost < 3:
            # Its network was likely removed while its veth was being made
            # (NetworkManager.remove): warm that kind again once it is used again.
            self.lost_networks[spare.key] = lost + 1
            self.wanted.remove(spare.key)
        else:
            self.broken.add(spare.key)
            self.shim.log.write(f"prewarmed {spare.key[0]} container failed at {error.get('stage')}: "
                                f"{error.get('message')}; starting cold from now on")
        if self.warm.get(spare.key) is spare:
            del self.warm[spare.key]
        self.discard(spare)

    def drop_all(self) -> None:
        spares = list(self.warm.values())
        self.warm.clear()
        if self.slot is not None:
            spares.append(self.slot)
            self.slot = None
        for spare in spares:
            try:
                self.discard(spare)
            except (OSError, ContainerError):
                self.shim.log.exception("cleanup of a spare")
