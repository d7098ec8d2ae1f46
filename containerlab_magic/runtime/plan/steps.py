"""The shim's steps of a container start, one small class each.

Each step has `run(ctx)`, `undo(ctx)` and `describe(ctx)`: one line naming
the real thing it touched (the name's link, the cgroup's directories, PID 1's
clone flags and host pid, the veth).  Steps a spare ran ahead of need
(`ctx.ahead(kind)`) do only the claim's part and say so.  What PID 1 does
after clone (rootfs, mounts, hostname, security, exec) is in child.py; it
times its own steps (record.Timeline).
"""

from __future__ import annotations

import json
import os
import time

from .. import linux
from ..spec import format_size
from ..state import Status

AHEAD = " (made ahead of need)"
FLAG_NAMES = (("CLONE_NEWUSER", linux.CLONE_NEWUSER), ("CLONE_NEWNS", linux.CLONE_NEWNS), ("CLONE_NEWUTS", linux.CLONE_NEWUTS),
              ("CLONE_NEWIPC", linux.CLONE_NEWIPC), ("CLONE_NEWNET", linux.CLONE_NEWNET),
              ("CLONE_NEWPID", linux.CLONE_NEWPID), ("CLONE_NEWCGROUP", linux.CLONE_NEWCGROUP))


def flag_names(flags: int) -> str:
    return "|".join(name for name, bit in FLAG_NAMES if flags & bit) or "no new namespaces"


class SpareGone(Exception):
    """The claimed spare cannot serve (its network was removed): start cold instead."""


class ClaimName:
    kind = "name"

    def run(self, ctx) -> None:
        ctx.shim.store.claim(ctx.cid, ctx.name)

    def undo(self, ctx) -> None:
        ctx.shim.store.release(ctx.cid, ctx.name)

    def describe(self, ctx) -> str:
        return f"claim the name {ctx.name}: link {ctx.shim.store.names}/{ctx.name} -> {ctx.cid[:12]}"


class StateDir:
    kind = "state"

    def run(self, ctx) -> None:
        store, me = ctx.shim.store, ctx.shim.me
        if ctx.ahead(self.kind):
            ctx.state_dir = store.dir(ctx.cid)
            return
        owner = {"shim_pid": me[0], "shim_start": me[1], "cgroup": ctx.shim.cgroups is not None}
        if ctx.making_spare:
            ctx.state_dir = store.create_spare(ctx.cid, owner)
        else:
            ctx.state_dir = store.make(ctx.cid, {"id": ctx.cid, "name": ctx.name, "status": Status.CREATING,
                                                 **owner})

    def undo(self, ctx) -> None:
        ctx.shim.store.remove(ctx.cid, ctx.name)

    def describe(self, ctx) -> str:
        return f"state directory {ctx.state_dir or ctx.shim.store.dir('<new id>')}" + (
            AHEAD if ctx.ahead(self.kind) else "")


class Identity:
    """The files PID 1 bind-mounts as /etc/hostname and /etc/hosts (written in place:
    a warm PID 1 mounted them before its name was known)."""

    kind = "identity"

    def run(self, ctx) -> None:
        with open(os.path.join(ctx.state_dir, "hostname"), "w") as f:
            f.write(ctx.hostname + "\n")
        with open(os.path.join(ctx.state_dir, "hosts"), "w") as f:
            f.write(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{ctx.hostname}\n")

    def undo(self, ctx) -> None:
        pass  # the files go with the state directory

    def describe(self, ctx) -> str:
        return f"write hostname {ctx.hostname} and hosts in {ctx.state_dir or 'the state directory'}"


class Cgroup:
    kind = "cgroup"

    def run(self, ctx) -> None:
        limits = ctx.spec.limits
        if ctx.ahead(self.kind):
            ctx.cgroup = ctx.spare.cgroup
            if limits.any_cgroup_limit:
                ctx.cgroup.update(limits, initial=True)
        else:
            ctx.cgroup = ctx.shim.new_cgroup(ctx.cid, limits)
        if ctx.spec.privileged and ctx.cgroup is not None:  # (undone with the group itself)
            ctx.cgroup.allow_all_devices()

    def undo(self, ctx) -> None:
        if ctx.cgroup is not None:
            if ctx.cgroup.pids():
                ctx.cgroup.kill_all()
            ctx.shim.remove_cgroup(ctx.cid, ctx.cgroup)

    def describe(self, ctx) -> str:
        dirs = (sorted({os.path.dirname(p) for p in ctx.cgroup.procs_files}) if ctx.cgroup is not None
                else [f"{d}/<new id>" for d in ctx.shim.cgroup_lab_dirs()])
        limits = describe_limits(ctx.spec.limits) or "no limits"
        devices = "every device (--privileged)" if ctx.spec.privileged else "Docker's device allowlist"
        return f"cgroup {', '.join(dirs)}: {limits}; {devices}" + (AHEAD if ctx.ahead(self.kind) else "")


def describe_limits(limits) -> str:
    parts = []
    if limits.memory is not None:
        parts.append(f"memory {format_size(limits.memory)}")
    if limits.cpus is not None:
        parts.append(f"cpus {limits.cpus:g}")
    if limits.pids_limit is not None:
        parts.append(f"pids {limits.pids_limit}")
    for name in ("memory_swap", "cpu_shares", "cpuset_cpus", "blkio_weight"):
        if getattr(limits, name) is not None:
            parts.append(f"{name.replace('_', '-')} {getattr(limits, name)}")
    return ", ".join(parts)


class ClonePid1:
    """clone(2) PID 1 with its new namespaces (child.py runs in it), or take a warm one."""

    kind = "clone"

    def run(self, ctx) -> None:
        if ctx.ahead(self.kind):
            ctx.shim.spares.claim_warm(ctx)
        elif ctx.making_spare:
            ctx.shim.spares.clone_warm(ctx)
        else:
            try:
                ctx.shim.starter.clone_pid1(ctx)
            except PermissionError as e:
                if os.geteuid() == 0:
                    raise
                from ..errors import HostUnsupported

                raise HostUnsupported(
                    f"uid {os.geteuid()} may not make a container's namespaces here ({e.strerror}): this host "
                    "allows no user namespace (a seccomp profile or sysctl forbids it), and the process-sandbox "
                    "rung is not in this version; `containerlab-magic doctor` names what is missing and the fix, "
                    "or run the lab as root") from None

    def ended_ns(self, ctx) -> int:
        """A new PID 1 times its own steps from the clone(2) call on (record.Timeline)."""
        return ctx.setup.clone_ns if ctx.setup is not None and not ctx.ahead(self.kind) else 0

    def undo(self, ctx) -> None:
        if ctx.ahead(self.kind) or ctx.making_spare:
            ctx.shim.spares.cool_down(ctx.spare)
        elif ctx.proc is not None:
            ctx.shim.spawner.abort(ctx.proc)
        if ctx.stdio is not None:
            ctx.stdio.close_all()

    def describe(self, ctx) -> str:
        from .. import child

        flags = flag_names(child.run_flags_for(ctx.spec, ctx.shim.userns))
        pid = f"host pid {ctx.proc.pid}" if ctx.proc is not None else "a new process"
        if ctx.ahead(self.kind):
            mapped = f"; {ctx.shim.userns.describe()}" if ctx.shim.userns is not None else ""
            return f"claim the warm PID 1 ({pid}), cloned ahead with {flags}, its rootfs mounted{mapped}"
        if ctx.shim.userns is not None and ctx.spec.on_bridge:
            return (f"fork a child that joins the user namespace of the lab's network (setns), which does "
                    f"clone({flags}): PID 1 is {pid}")
        return f"clone({flags}): PID 1 is {pid}"


class JoinCgroup:
    kind = "join"

    def run(self, ctx) -> None:
        if not ctx.ahead("clone"):  # a warm PID 1 joined its cgroup itself
            ctx.cgroup.add(ctx.proc.pid)  # while PID 1 builds its rootfs; it waits for go before exec

    def undo(self, ctx) -> None:
        pass  # PID 1 dies with the clone step's undo; the group then is empty

    def describe(self, ctx) -> str:
        files = ", ".join(ctx.cgroup.procs_files) if ctx.cgroup is not None else "cgroup.procs"
        pid = ctx.proc.pid if ctx.proc is not None else "PID 1"
        if ctx.ahead("clone"):
            return f"PID 1 wrote itself into {files} when it was cloned ahead"
        return f"write {pid} to {files}"


class Console:
    """--tty: PID 1 opens a pty in its own devpts and sends the master back (SCM_RIGHTS)."""

    kind = "console"

    def run(self, ctx) -> None:
        ctx.stdio.receive_console(ctx.proc)
        if ctx.tty_size:  # before go: the command's first `stty size` sees the caller's size
            import fcntl
            import struct
            import termios

            rows, columns = ctx.tty_size
            fcntl.ioctl(ctx.stdio.client[-1], termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def undo(self, ctx) -> None:
        pass  # the received master is in ctx.stdio.client: closed by the clone step's undo

    def describe(self, ctx) -> str:
        return "receive the pty master PID 1 opened in its own /dev/pts (SCM_RIGHTS)"


class Network:
    """A veth pair into the network's bridge, an address, /etc/hosts names, published ports;
    or, for --net container:NAME, the partner's namespace (joined by PID 1 at clone)."""

    kind = "network"

    def run(self, ctx) -> None:
        spec, network, proc = ctx.spec, ctx.shim.network, ctx.proc
        hosts_file = os.path.join(ctx.state_dir, "hosts")
        if spec.on_bridge and ctx.ahead("clone"):
            info = network.claim_spare(ctx.cid, ctx.name, proc.pid, spec.ports, hosts_file)
            if info is None:  # unplugged by `network rm` meanwhile
                raise SpareGone(f"the warm spare's network {spec.network} was removed")
            ctx.spare.network = None  # a member now: detached like any other container
        elif spec.on_bridge:
            info = network.attach(ctx.cid, ctx.name, proc.pid, spec.network, ports=spec.ports,
                                  hosts_file=hosts_file, configure_inside=False)
        else:
            target = ctx.shim.store.resolve(spec.network.split(":", 1)[1])
            info = network.join(ctx.cid, target, ctx.name, hosts_file) if ctx.shim.has_networks() else {}
        proc.network = bool(info)
        ctx.net_info = info
        if spec.on_bridge:  # PID 1 sets eth0's address and route itself (child._configure_eth0)
            ctx.go["net"] = {"ip": info["ip"], "prefixlen": info["prefixlen"],
                             "gateway": None if info["internal"] else info["gateway"]}
            if ctx.ahead("clone"):
                ctx.go["net"]["mac"] = info["mac"]

    def undo(self, ctx) -> None:
        if ctx.proc is not None and ctx.proc.network:
            ctx.proc.network = False
            ctx.shim.network.detach(ctx.cid)

    def describe(self, ctx) -> str:
        spec, info = ctx.spec, ctx.net_info
        if not spec.on_bridge:
            partner = spec.network.split(":", 1)[1]
            return f"share the network namespace of container {partner} (PID 1 joined it with setns(2))"
        if info is None:
            return f"veth pair into network {spec.network}'s bridge, an address, /etc/hosts names"
        ports = ", ".join(f"{p['host_ip']}:{p['host_port']}->{p['container_port']}/{p['protocol']}"
                          for p in info.get("ports", ()))
        how = "plugged ahead, " if ctx.ahead("clone") else ""
        gateway = "no route out" if info["internal"] else f"default via {info['gateway']}"
        return (f"veth {info.get('veth')} in bridge {info.get('bridge')} ({how}network {info['network']}): "
                f"eth0 {info['ip']}/{info['prefixlen']}, {gateway}" + (f"; ports {ports}" if ports else ""))


class Shaping:
    kind = "shaping"

    def run(self, ctx) -> None:
        spec = ctx.spec
        ctx.shim.network.shape(ctx.cid, spec.net_rate, spec.net_delay, spec.net_loss)

    def undo(self, ctx) -> None:
        pass  # the qdisc goes with the veth (network step's undo)

    def describe(self, ctx) -> str:
        spec = ctx.spec
        veth = (ctx.net_info or {}).get("veth", "the host end of the veth")
        what = ", ".join(f"{k} {v}" for k, v in (("rate", spec.net_rate), ("delay", spec.net_delay),
                                                  ("loss", spec.net_loss)) if v)
        return f"tc qdisc on {veth}: {what}"


class Ports:
    """-p in a rootless lab: without a bridge, pasta splices host ports into PID 1's own
    network namespace (network/pasta.py); on a bridge of the user's own, a relay process
    relays them from inside its namespaces (network/relay.py).  Ended with the container."""

    kind = "ports"

    def run(self, ctx) -> None:
        if ctx.spec.on_bridge:
            from ..network.relay import Relay

            ctx.proc.forwarder = Relay.start(ctx.proc.pid, ctx.spec.ports)
            return
        from ..network.pasta import Forwarder

        ctx.proc.forwarder = Forwarder.start(ctx.proc.pid, ctx.spec.ports, ctx.state_dir)

    def undo(self, ctx) -> None:
        if ctx.proc is not None and ctx.proc.forwarder is not None:
            ctx.proc.forwarder.stop()
            ctx.proc.forwarder = None

    def describe(self, ctx) -> str:
        ports = ", ".join(f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}" for p in ctx.spec.ports)
        if ctx.spec.on_bridge:
            return f"relay: {ports}, accepted on the host, connected from inside the container's namespaces"
        return f"pasta: {ports} into PID 1's network namespace (its loopback; no route out)"


class Log:
    """--detach: the shim reads the output pipes into the log (docker's 8-byte framing)."""

    kind = "log"

    def run(self, ctx) -> None:
        from ..shim.exits import log_limit

        limit = log_limit()  # (a bad CONTAINERLAB_LOG_SIZE is one line, before the pipes are taken)
        ctx.shim.exits.pump_to_log(ctx.proc, ctx.state_dir, ctx.stdio.take_pumps(), limit)

    def undo(self, ctx) -> None:
        ctx.shim.exits.stop_pumps(ctx.proc)

    def describe(self, ctx) -> str:
        return (f"stdout and stderr into {os.path.join(ctx.state_dir or '<state dir>', 'log')} "
                f"(rotated to log.1 past CONTAINERLAB_LOG_SIZE)")


class StateFile:
    kind = "state-file"

    def run(self, ctx) -> None:
        # Before the reply: whoever learns of the container may look it up at once.
        ctx.proc.state = ctx.shim.starter.state_of(ctx)
        ctx.shim.store.write(ctx.cid, ctx.proc.state)

    def undo(self, ctx) -> None:
        pass  # goes with the state directory

    def describe(self, ctx) -> str:
        pid = ctx.proc.pid if ctx.proc is not None else "PID 1"
        return f"write {os.path.join(ctx.state_dir or '<state dir>', 'state.json')}: running, pid {pid}"


class Go:
    """Tell PID 1 to go on: one JSON line on its sync pipe (a warm one learns its command here)."""

    kind = "go"

    def run(self, ctx) -> None:
        proc, spec = ctx.proc, ctx.spec
        proc.conn, proc.persistent = ctx.conn, bool(ctx.shim.daemon and spec.detach)
        if ctx.ahead("clone"):
            proc.started = time.monotonic()
        if spec.timeout:
            proc.deadline = proc.started + spec.timeout
        if ctx.go.get("explain"):
            ctx.go["go_ns"] = time.perf_counter_ns()
        proc.go = (json.dumps(ctx.go) + "\n").encode()
        ctx.shim.track(proc, explain=ctx.explain, hold=ctx.hold)

    def ended_ns(self, ctx) -> int:
        """A warm PID 1 times its steps from the go on (record.Timeline.restart)."""
        return ctx.go.get("go_ns", 0)

    def undo(self, ctx) -> None:
        ctx.shim.untrack(ctx.proc)

    def describe(self, ctx) -> str:
        if ctx.proc is not None and not ctx.proc.synced:
            return "watch PID 1's pidfd (it waits for no go: no cgroup, no network to wait for)"
        return "tell PID 1 to go on (one JSON line on its sync pipe); watch its pidfd"
