"""Requests that start processes: run (through the start plan) and exec.

`run` builds the plan for the spec (plan/build.py), takes a spare made ahead
of need if one fits (shim/spares.py: its first steps are done), and runs the
plan with the one executor; on failure the executor has undone exactly what
ran.  If a warm spare turns out unusable (its network was removed), the run
starts again cold.
"""

from __future__ import annotations

import os
import random
import secrets
import time

from .. import child, faults, rootfs, rootless, sandbox, security
from ..errors import Conflict, HostUnsupported, RuntimeFailure, SpecError
from ..image_config import apply as apply_image_config
from ..plan.build import build
from ..plan.context import StartContext
from ..plan.executor import Executor
from ..plan.record import SHIM, StepRecord
from ..plan.steps import SpareGone
from ..spec import ContainerSpec
from ..state import Status, alive, proc_start_time
from .stdio import Stdio

ADJECTIVES = ("brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
              "merry", "nimble", "proud", "quick", "quiet", "sharp", "swift", "tidy", "vivid", "witty")
NOUNS = ("turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "dijkstra", "liskov",
         "hamilton", "cerf", "kay", "backus", "mccarthy", "wirth", "perlman", "shannon", "noether", "curie",
         "babbage")


class Starter:
    def __init__(self, shim) -> None:
        self.shim = shim

    # ---------------------------------------------------------------- run

    def run(self, message: dict, conn, received_ns: int = 0, fds: list[int] = ()) -> tuple[dict, list[int]]:
        """fds: with "stdio": "given", the caller's stdin, stdout and stderr for the container;
        "hold": PID 1 waits for a `start` request (the OCI runtime's create)."""
        shim = self.shim
        hold, given = bool(message.get("hold")), message.get("stdio") == "given"
        if given and len(fds) != 3:
            raise SpecError('"stdio": "given" needs the three streams sent with the request')
        spec = ContainerSpec.from_json(message["spec"])
        explain = bool(message.get("explain"))
        image = shim.images.resolve(spec.image)
        spec = apply_image_config(spec, image)  # the one place the image's config fills the spec
        self._check_rootless_network(spec)
        netns_pid = self._network_target(spec)
        self._check_limits(spec)
        if shim.sandbox is not None:
            refused = sandbox.refusal(spec, image.name)
            if refused:
                raise HostUnsupported(refused)
        policy = security.policy_for(spec, sandboxed=shim.sandbox is not None)  # (compiled here, before any step)
        name = spec.name or self._free_name()
        # (a warm PID 1 has no rlimits: a run that needs them, without a cgroup, starts cold)
        rlimited = shim.cgroups is None and spec.limits.any_cgroup_limit
        plain = shim.sandbox is None and not rlimited and not hold and not given
        key = shim.spares.key_for(spec, policy, image.digest) if plain else None
        if key is not None:
            shim.spares.want(key)
        while True:
            spare = shim.spares.take(key)
            ctx = StartContext(shim, spec, spare.cid if spare else secrets.token_hex(32), name, image,
                               spare=spare, explain=explain, conn=conn, netns_pid=netns_pid, security=policy,
                               tty_size=_tty_size(message.get("tty_size")), hold=hold,
                               given_stdio=tuple(fds) if given else (),
                               hostname=spec.hostname or name[:63].replace("_", "-").replace(".", "-"))
            executor = Executor(build(spec, cgroups=shim.cgroups is not None, rootless=shim.userns is not None),
                                ctx, shim.log, record=explain)
            request = StepRecord("request", f"the request over the socket: spec, image {spec.image} "
                                 f"({len(image.layers)} layer{'s' if len(image.layers) != 1 else ''})",
                                 None, SHIM) if explain else None
            try:
                # (sent_ns: the caller's clock reading as it sent; CLOCK_MONOTONIC is one per host)
                executor.run(min(message.get("sent_ns") or received_ns, received_ns), request)
            except BaseException as e:
                if spare is not None:
                    if executor.failed_at == "name":  # the name was taken
                        shim.spares.put_back(spare)  # the caller's mistake: keep the spare
                    else:
                        shim.spares.discard(spare)  # what the undone steps did not reach
                if isinstance(e, SpareGone):
                    key = None  # start cold
                    continue
                raise
            break
        reply_fds = ctx.stdio.take_client()
        ctx.stdio.close_all()
        reply = {"id": ctx.cid, "name": name, "pid": ctx.proc.pid, "hostname": ctx.hostname,
                 "streams": "pty" if spec.tty else ("none" if spec.detach else "pipes")}
        if shim.sandbox is not None:
            reply["notice"] = sandbox.NOTICE
        if explain:
            reply.update(plan=[r.to_json() for r in executor.records], plan_started_ns=executor.started_ns)
        return reply, reply_fds

    def start_held(self, message: dict) -> dict:
        """`start` of a container made with hold: its PID 1 gets its go; running from now."""
        shim = self.shim
        cid = shim.store.resolve(message["container"])
        proc = next((p for p in shim.procs.values() if p.cid == cid and p.kind == "run"), None)
        state = shim.store.read(cid) or {}
        if proc is None or state.get("status") != Status.CREATED:
            raise Conflict(f"cannot start container {message['container']}: it is {state.get('status', 'gone')}, "
                           "not created")
        shim.release(proc)
        state["status"] = Status.RUNNING
        shim.store.write(cid, state)
        return {"id": cid, "pid": proc.pid}

    def _check_limits(self, spec: ContainerSpec) -> None:
        if not spec.limits.any_cgroup_limit:
            return
        cgroups = self.shim.cgroups
        rootless_ = self.shim.userns is not None or self.shim.sandbox is not None
        if cgroups is None and rootless_ and os.environ.get("CONTAINERLAB_CGROUPS") != "off":
            rootless.rlimits_for(spec.limits)  # (refuses what has no rlimit, in one line)
            return
        if cgroups is None:
            why = ("cgroups are turned off (CONTAINERLAB_CGROUPS=off): unset it"
                   if os.environ.get("CONTAINERLAB_CGROUPS") == "off" else
                   "no writable cgroup hierarchy was found: run as root or in a delegated cgroup "
                   "(see `containerlab-magic doctor`)")
            raise HostUnsupported(f"resource limits need cgroups, and {why}; or run without limits")
        reason = cgroups.missing_for(spec.limits)
        if reason:
            raise HostUnsupported(reason)

    def _sandbox_tmp(self, state_dir: str) -> str:
        """The process sandbox's private TMPDIR (0700, goes with the state directory)."""
        if self.shim.sandbox is None:
            return ""
        path = os.path.join(state_dir, "tmp")
        os.makedirs(path, 0o700, exist_ok=True)
        return path

    def _rlimits(self, spec: ContainerSpec, cgroup) -> tuple:
        if cgroup is not None or (self.shim.userns is None and self.shim.sandbox is None) \
                or not spec.limits.any_cgroup_limit:
            return ()
        return rootless.rlimits_for(spec.limits)

    def _check_rootless_network(self, spec: ContainerSpec) -> None:
        if spec.ports and not spec.on_bridge:  # (rootless, on a bridge: the relay, network/relay.py)
            if os.geteuid() == 0 or self.shim.sandbox is not None:
                raise SpecError("publishing ports (-p) needs a network: add --net bridge (or a network you created)"
                                if os.geteuid() == 0 else "-p needs a network namespace of its own, and this host "
                                "allows none (process-sandbox rung): the command's ports are the host's already")
            if self.shim.userns is not None and not self.shim.userns.net:
                raise HostUnsupported("-p needs a network namespace of its own, and this host allows a user none "
                                      "(see `containerlab-magic doctor`): the command's ports are the host's already")
            from ..network.pasta import binary

            binary()  # (one line when pasta is missing)
        if os.geteuid() == 0:
            return
        if spec.on_bridge and (self.shim.userns is None or not self.shim.userns.net):
            raise HostUnsupported(f"--net {spec.network}: bridge networks need a network namespace of the user's "
                                  "own, and this host allows none (see `containerlab-magic doctor`): use --net "
                                  "none or --net host")
        if spec.on_bridge and (spec.net_rate or spec.net_delay or spec.net_loss):
            from ..network.manager import require_root

            require_root("--net-rate, --net-delay and --net-loss (tc on both ends of the link)")
        if spec.network.startswith("container:"):
            raise HostUnsupported(
                f"--net {spec.network}: joining another container's network needs root on this host (each "
                f"rootless container has a user namespace of its own, which may not enter another's); "
                "run both commands in one container, or run the lab as root")

    def _network_target(self, spec: ContainerSpec) -> int | None:
        if not spec.network.startswith("container:"):
            return None
        ref = spec.network.split(":", 1)[1]
        store = self.shim.store
        state = store.read(store.resolve(ref))
        if not state or state.get("status") != Status.RUNNING or not alive(state.get("pid"), state.get("pid_start")):
            raise SpecError(f"--net container:{ref}: that container is not running; start it first")
        return state["pid"]

    def _free_name(self) -> str:
        for attempt in range(50):
            name = f"{random.choice(ADJECTIVES)}_{random.choice(NOUNS)}"
            if attempt > 10:
                name += f"_{random.randrange(100)}"
            if not os.path.lexists(os.path.join(self.shim.store.names, name)):
                return name
        return "c" + secrets.token_hex(6)

    # ---------------------------------------------------------------- the clone step's work

    def clone_pid1(self, ctx) -> None:
        """Clone a new PID 1 for ctx.spec: its stdio, its setup, the clone itself."""
        shim, spec = self.shim, ctx.spec
        ctx.stdio = Stdio.given(ctx.given_stdio) if ctx.given_stdio else Stdio.make(spec, shim.devnull)
        ctx.setup = child.Setup(
            command=spec.command, env=spec.environment, env_explicit=frozenset(k for k, _ in spec.env),
            workdir=spec.workdir, user=spec.user, hostname=ctx.hostname, image=ctx.image,
            ulimits=spec.ulimits, group_add=spec.group_add,
            holder_pid=shim.network.holder_pid() if shim.userns is not None and spec.on_bridge else None,
            steps=rootfs.plan(ctx.image, spec, ctx.state_dir, shim.userns), stage=shim.stage,
            storage_size=rootfs.storage_budget(spec.limits.storage_size), stdio=ctx.stdio.container,
            console_fd=ctx.stdio.console_theirs, netns_pid=ctx.netns_pid, host_network=spec.network == "host",
            init=spec.init, explain=ctx.explain, security=ctx.security, userns=shim.userns,
            rlimits=self._rlimits(spec, ctx.cgroup), sandbox=shim.sandbox, tmpdir=self._sandbox_tmp(ctx.state_dir),
            cgroup_mounts=shim.cgroup_mounts if ctx.cgroup is not None else ())
        sync = bool(ctx.cgroup is not None or spec.on_bridge or ctx.netns_pid or ctx.hold)
        ctx.proc = shim.spawner.spawn("run", ctx.cid, ctx.setup, ctx.conn, sync=sync)
        ctx.proc.cgroup = ctx.cgroup
        ctx.stdio.close_child_ends()

    def state_of(self, ctx) -> dict:
        spec, proc, me = ctx.spec, ctx.proc, self.shim.me
        return {
            "id": ctx.cid, "name": ctx.name, "image": spec.image, "command": list(spec.command),
            "created": time.time(), "status": Status.CREATED if ctx.hold else Status.RUNNING, "pid": proc.pid,
            "shim_pid": me[0], "shim_start": me[1],
            "persistent": bool(self.shim.daemon and spec.detach), "detach": spec.detach,
            "cgroup": ctx.cgroup is not None, "hostname": ctx.hostname, "spec": spec.to_json(),
            "ip": (ctx.net_info or {}).get("ip"), "network": spec.network, "labels": dict(spec.labels),
            "auto_remove": spec.auto_remove, "sandbox": self.shim.sandbox is not None,
            "ports": [f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}" for p in spec.ports],
            "pid_start": proc_start_time(proc.pid),
        }

    # ---------------------------------------------------------------- exec

    def _wait_until_set_up(self, cid: str, ref: str, timeout: float = 10.0) -> None:
        """An exec joins PID 1's namespaces (setns(2)): not before PID 1 has finished making
        them.  `run` replies while PID 1 still builds its root, and until pivot_root its
        mount namespace holds a copy of the host's mounts: an exec joining then would run
        on the host's filesystem.  So wait until PID 1 has exec'd (a container another shim
        started is past that: its run's reply went elsewhere first)."""
        for proc in self.shim.procs.values():
            if proc.cid == cid and proc.kind == "run":
                if not proc.wait_for_exec(timeout):
                    raise RuntimeFailure(f"container {ref} is still setting up after {timeout:g} s: "
                                         "try the exec again")
                return

    def exec(self, message: dict, conn, fds: list[int] | tuple = ()) -> tuple[dict, list[int]]:
        """fds: with "stdio": "given", the caller's stdin, stdout and stderr (the OCI
        runtime's exec: the process writes where its caller's streams go)."""
        shim = self.shim
        given = message.get("stdio") == "given"
        if given and (len(fds) != 3 or message.get("tty")):
            raise SpecError('"stdio": "given" needs the three streams sent with the request, and no tty')
        cid = shim.store.resolve(message["container"])
        state = shim.store.read(cid)
        if not state or state.get("status") != Status.RUNNING or not alive(state.get("pid"), state.get("pid_start")):
            raise SpecError(f"container {message['container']} is not running: start a new one, "
                            "or see its output with `containerlab-magic logs`")
        spec = ContainerSpec.from_json(state["spec"])
        env = spec.environment
        if message.get("tty"):
            env["TERM"] = "xterm"
        env.update(message.get("env") or {})
        command = message.get("command") or []
        if not command:
            raise SpecError("exec needs a command, e.g. `containerlab-magic exec NAME sh`")
        self._wait_until_set_up(cid, message["container"])
        cgroup = shim.cgroups.open(cid) if (shim.cgroups and state.get("cgroup")) else None
        exec_spec = ContainerSpec(command=tuple(command), tty=bool(message.get("tty")),
                                  interactive=bool(message.get("interactive")))
        stdio = Stdio.given(tuple(fds)) if given else Stdio.make(exec_spec, shim.devnull)
        proc = None
        try:
            setup = child.Setup(
                command=tuple(command), env=env, env_explicit=frozenset(message.get("env") or ()),
                workdir=message.get("workdir") or spec.workdir, user=message.get("user") or spec.user,
                ulimits=spec.ulimits if message.get("ulimits") is None else _exec_ulimits(message["ulimits"]),
                group_add=spec.group_add if message.get("group_add") is None else _exec_groups(message["group_add"]),
                stdio=stdio.container, console_fd=stdio.console_theirs, join_pid=state["pid"],
                procs_files=tuple(cgroup.procs_files) if cgroup else (), security=security.policy_for(spec),
                userns=shim.userns, rlimits=self._rlimits(spec, cgroup), sandbox=shim.sandbox,
                tmpdir=self._sandbox_tmp(shim.store.dir(cid)),
                image=shim.images.resolve(spec.image) if shim.sandbox is not None else None)
            exec_id = secrets.token_hex(8)
            proc = shim.spawner.spawn("exec", cid, setup, conn, exec_id=exec_id)
            proc.persistent = bool(message.get("detach") and shim.daemon)  # outlives its caller
            faults.point("exec")  # (a test hook)
            stdio.close_child_ends()
            if exec_spec.tty:
                stdio.receive_console(proc)
                size = _tty_size(message.get("tty_size"))
                if size:
                    _set_size(stdio.client[-1], size)
            shim.track(proc)
        except BaseException:
            if proc is not None:
                shim.spawner.abort(proc)
            stdio.close_all()
            raise
        reply_fds = stdio.take_client()
        stdio.close_all()
        return {"id": cid, "exec_id": exec_id, "pid": proc.pid,
                "streams": "pty" if exec_spec.tty else "pipes"}, reply_fds


def _exec_ulimits(value) -> tuple:
    """An exec's own rlimits (the OCI runtime's process.rlimits), checked as --ulimit."""
    from ..spec import check_ulimit

    if not isinstance(value, list):
        raise SpecError("ulimits: a list of [name, soft, hard]")
    return tuple(check_ulimit(tuple(u) if isinstance(u, list) else u) for u in value)


def _exec_groups(value) -> tuple:
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise SpecError("group_add: a list of GIDs or group names")
    return ContainerSpec(("true",), group_add=value).group_add  # (validated as --group-add)


def _set_size(master: int, size: tuple[int, int]) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))


def _tty_size(value) -> tuple[int, int] | None:
    """The caller's terminal size from a run request, if it gave a sane one."""
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int and 0 < v < 65536 for v in value):
        return value[0], value[1]
    return None
