"""What runs between fork and exec: the container's side of starting up.

The shim clones each container's PID 1 with its new namespaces in one call
(clone(2) with CLONE_NEW* flags; namespaces(7)).  An exec'd process instead
joins a running container: a forked child setns(2)es into its namespaces and
forks again, because a PID namespace applies to children only; it reports
the grandchild's host PID and exits, and the shim, a child subreaper
(prctl(2) PR_SET_CHILD_SUBREAPER), inherits and reaps it.

PID 1 builds the root filesystem (rootfs.py), sets the hostname and brings up
loopback while the shim moves it into its cgroup and wires its network; then
it waits for the shim's go on a sync pipe, unshares its cgroup namespace,
drops privileges (security/) and execs the command.  Nothing the user
wrote runs before it is inside its cgroup.  Any failure before exec is
written as one JSON line to a close-on-exec pipe; EOF on that pipe means
exec succeeded.

Nothing here may return into the shim's loop: every path ends in exec or
os._exit.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import json
import os
import signal
import socket
import struct
import termios
from dataclasses import dataclass, field

from . import init, linux, rootfs, security  # (imported now: after pivot_root nothing more can be)
from .plan.record import Timeline

EXIT_RUNTIME, EXIT_CANNOT_RUN, EXIT_NOT_FOUND = 125, 126, 127
RUN_NAMESPACES = (linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
                  | linux.CLONE_NEWNET | linux.CLONE_NEWPID | linux.CLONE_NEWCGROUP)

SIOCSIFFLAGS = 0x8914
IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40


@dataclass
class Setup:
    """Everything PID 1 needs, computed by the shim before fork."""

    command: tuple[str, ...]
    env: dict[str, str]
    workdir: str
    user: str | None
    env_explicit: frozenset[str] = frozenset()
    hostname: str | None = None
    image: object = None
    steps: list = field(default_factory=list)
    stage: str | None = None
    storage_size: int | None = None
    stdio: tuple[int, int, int] = (0, 1, 2)
    console_fd: int = -1  # --tty: socket to send the pty master back on
    procs_files: tuple[str, ...] = ()
    error_fd: int = -1
    pid_fd: int = -1
    sync_fd: int = -1
    join_pid: int | None = None  # exec: join this container's namespaces
    netns_pid: int | None = None  # --net container:NAME: join its network namespace
    host_network: bool = False
    cgroup_mounts: tuple = ()  # (fstype, options, dir) to show under /sys/fs/cgroup
    shim_pid: int = 0  # set for a warm PID 1: it dies with the shim until claimed
    join_cgroup: bool = False  # PID 1 moves itself into procs_files (a warm one: see shim/spares.py)
    plug: tuple | None = None  # (host netlink socket fd, veth, bridge index, MTU, alias): make its veth pair
    init: bool = False  # --init: PID 1 stays as a reaper that forwards signals (init.py)
    explain: bool = False  # time each step and send the records before exec (plan/record.py)
    clone_ns: int = 0  # perf_counter_ns when the shim called clone (explain's first step counts from it)
    security: object = None  # a security.Policy, compiled by the shim (None: the default one)
    bounding_dropped: bool = False  # set by PID 1 once it dropped its bounding set (before the go)
    userns: object = None  # a rootless.UserNs: clone a user namespace too, and map our ids in it
    rlimits: tuple = ()  # (resource, value, text): limits without a cgroup (rootless.rlimits_for)
    sandbox: object = None  # a sandbox.Sandbox: no namespaces, a plain process (sandbox.py)
    tmpdir: str = ""  # the sandbox's private TMPDIR and working directory
    map_fd: int = -1  # multi-id: one byte here once the shim has mapped our ids (newuidmap)
    holder_pid: int | None = None  # rootless bridge: clone inside this process's user namespace (userland.py)
    ulimits: tuple = ()  # (name, soft, hard): --ulimit, set before privileges drop (-1: unlimited)
    group_add: tuple = ()  # --group-add: supplementary groups, GIDs or names of the image's /etc/group


# Signals whose disposition the shim (Python) changed: SIGINT and SIGPIPE, SIGXFSZ
# ignored, SIGTERM handled.  An ignored signal stays ignored across execve(2).
RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP)


def reset_signals(blocked=()) -> None:
    """First thing in a child: default handlers, then a mask of only `blocked`.  The
    shim blocks every signal around clone/fork (shim/procs.py), so none can run its
    handler here.  PID 1 keeps the signals an --init forwards blocked until exec: a
    PID namespace's init drops a signal it neither handles nor blocks
    (pid_namespaces(7)), and a `stop` right after `run` must reach the command."""
    for sig in RESET_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _fail(error_fd: int, stage: str, exc: BaseException, code: int = EXIT_RUNTIME) -> None:
    err = getattr(exc, "errno", None)
    message = str(exc) if not isinstance(exc, OSError) else (exc.strerror or str(exc))
    try:
        os.write(error_fd, json.dumps({"stage": stage, "errno": err, "message": message}).encode())
    except OSError:
        pass
    os._exit(code)


def run_flags(setup: Setup) -> int:
    """Namespaces a new container's PID 1 is cloned with.

    The cgroup namespace comes later, from PID 1 itself, once the shim has moved
    it into its cgroup: that group is then the root of what it sees.
    """
    own_net = not setup.host_network and setup.netns_pid is None
    if setup.sandbox is not None:
        return 0
    if setup.userns is not None:
        flags = setup.userns.clone_flags(own_net)
        return flags & ~linux.CLONE_NEWUSER if setup.holder_pid else flags  # (joined: the holder's)
    flags = RUN_NAMESPACES & ~linux.CLONE_NEWCGROUP
    return flags if own_net else flags & ~linux.CLONE_NEWNET


def run_flags_for(spec, userns=None) -> int:
    """run_flags for a ContainerSpec (what explain names)."""
    own_net = not (spec.network == "host" or spec.network.startswith("container:"))
    if userns is not None:  # (on a bridge: the network's user namespace is joined, none made)
        flags = userns.clone_flags(own_net)
        return flags & ~linux.CLONE_NEWUSER if spec.on_bridge else flags
    flags = RUN_NAMESPACES & ~linux.CLONE_NEWCGROUP
    return flags if own_net else flags & ~linux.CLONE_NEWNET


def cgroup_mounts(manager) -> tuple[tuple[str, str | None, str], ...]:
    """What a container mounts at /sys/fs/cgroup: cgroup2, or each v1 hierarchy the lab uses."""
    if manager is None:
        return ()
    if manager.version == 2:
        return (("cgroup2", None, ""),)
    hierarchies: dict[str, list[str]] = {}
    for controller in getattr(manager, "lab_dirs", {}):
        hierarchies.setdefault(manager.mounts[controller], []).append(controller)
    return tuple(("cgroup", ",".join(sorted(ctrls)), os.path.basename(mount))
                 for mount, ctrls in sorted(hierarchies.items()))


def start_container(setup: Setup) -> None:
    """In PID 1 of a new container, just cloned by the shim: never returns."""
    reset_signals(init.FORWARDED)
    gc.disable()  # a few milliseconds to exec: collecting would only copy the shim's pages
    stage = "setup"
    tl = Timeline(setup.explain, setup.clone_ns)
    try:
        _keep_only(setup)
        tl.mark("signals", "default signal handlers, empty signal mask; close inherited fds")
        if setup.sandbox is not None:
            _sandboxed(setup, tl)
        if setup.userns is not None and setup.holder_pid:
            tl.mark("userns", "joined the user namespace of the lab's network (userland.py): "
                    + setup.userns.describe().removeprefix("user namespace: "))
        elif setup.userns is not None:
            stage = "user namespace"
            if setup.userns.multi:
                if os.read(setup.map_fd, 1) != b"x":
                    raise OSError(errno.ECANCELED, "the shim could not map the container's ids")
                os.close(setup.map_fd)
            else:
                setup.userns.map_self()
            tl.mark("userns", setup.userns.describe())
        if not setup.host_network and setup.netns_pid is None:
            _hold_ipv6_conf()  # eth0 will ignore router advertisements (_configure_eth0)
        if setup.shim_pid:  # warm: nobody would ever claim us if the shim died
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            if not _alive(setup.shim_pid):  # it died before the line above took hold
                os._exit(EXIT_RUNTIME)
        if setup.join_cgroup:
            stage = "join cgroup"
            for path in setup.procs_files:
                with open(path, "w") as f:
                    f.write("0")
            tl.mark("join", "write 0 to " + ", ".join(setup.procs_files))
        if setup.plug is not None:
            stage = "network"
            from .network import netlink

            netlink.plug_from_inside(*setup.plug)
            os.close(setup.plug[0])
        if setup.netns_pid is not None:  # --net container:NAME joins its partner's network
            stage = "join network"
            with open(f"/proc/{setup.netns_pid}/ns/net") as f:
                linux.setns(f.fileno(), linux.CLONE_NEWNET)
            tl.mark("join network", f"setns(2) into /proc/{setup.netns_pid}/ns/net")
        stage = "mount namespace"
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
        tl.mark("mount namespace", "make every mount a slave (MS_REC|MS_SLAVE on /): nothing propagates back")
        _pid1(setup, tl)
    except BaseException as e:  # noqa: BLE001 - report and leave, whatever it was
        _fail(setup.error_fd, stage, e)
    os._exit(EXIT_RUNTIME)


def _keep_only(setup: Setup) -> None:
    """Close every fd inherited from the shim but our own.

    The shim holds other containers' pipes, and the write end of our own sync
    pipe: kept open here, a shim that died before saying go would leave us
    waiting on a pipe that never reaches EOF.
    """
    plug_fd = setup.plug[0] if setup.plug is not None else -1
    keep = sorted({fd for fd in (*setup.stdio, setup.error_fd, setup.sync_fd, setup.console_fd, setup.pid_fd,
                                 plug_fd, setup.map_fd) if fd >= 0})
    low = 3
    for fd in keep:
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


def _alive(pid: int) -> bool:
    """Running, not a zombie (/proc is still the host's at this point)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def start_exec(setup: Setup) -> None:
    """In the shim's child for exec: join the container, fork into its PID namespace."""
    reset_signals()
    stage = "join cgroup"
    try:
        security.not_dumpable()  # before setns: the container must not read our memory (runc's order)
        _keep_only(setup)
        for path in setup.procs_files:
            with open(path, "w") as f:
                f.write("0")
        stage = "join namespaces"
        if setup.sandbox is None:
            _join(setup.join_pid, setup.userns is not None)
        pid = os.fork()
        if pid:
            os.write(setup.pid_fd, b"%d\n" % pid)
            os._exit(0)
        os.close(setup.pid_fd)
        if setup.sandbox is not None:
            _sandboxed(setup, Timeline(False))
        _pid1(setup, Timeline(False))
    except BaseException as e:  # noqa: BLE001
        _fail(setup.error_fd, stage, e)
    os._exit(EXIT_RUNTIME)


def _join(pid: int, userns: bool = False) -> None:
    """setns(2) into every namespace of a running container (for exec); a rootless one's
    user namespace first: its owner (us) has every capability in it, and so may join the
    namespaces it owns.  A namespace the container shares with us joins as a no-op."""
    fds = []
    try:
        for name, flag in linux.NAMESPACES:
            if name == "user" and not userns:
                continue
            fds.append((os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag))
        for fd, flag in fds:
            linux.setns(fd, flag)
    finally:
        for fd, _ in fds:
            os.close(fd)


def _pid1(setup: Setup, tl: Timeline) -> None:
    stage = "setup"
    try:
        os.setsid()
        for target, fd in enumerate(setup.stdio):
            os.dup2(fd, target)
        if setup.console_fd >= 0 and setup.join_pid is not None:
            stage = "terminal"
            _open_console(setup.console_fd)
        if setup.join_pid is None:
            at = ["rootfs"]
            try:
                _build_container(setup, tl, at)
            finally:
                stage = at[0]
        stage = "workdir"
        os.makedirs(setup.workdir, exist_ok=True)
        os.chdir(setup.workdir)
        tl.mark("workdir", f"chdir {setup.workdir}")
        stage = "user"
        uid, gid, groups, home = _lookup_user(setup.user)
        if setup.userns is not None:
            setup.userns.check_user(uid, gid, setup.user)
            if not setup.userns.multi:
                groups = None  # setgroups(2) is denied in a single-id namespace
        if setup.group_add:
            if groups is None:
                raise OSError(errno.EPERM, "--group-add needs setgroups(2), which a single-id user namespace "
                                           "denies: give this user /etc/subuid and /etc/subgid ranges (the "
                                           "multi-id rung), or drop --group-add")
            groups = groups + [_group_id(g) for g in setup.group_add if _group_id(g) not in groups]
        env = dict(setup.env)
        if home and setup.user is not None and "HOME" not in setup.env_explicit:
            env["HOME"] = home
        tl.mark("user", f"user {setup.user or 'root'}: uid {uid}, gid {gid}"
                + (f", groups {groups}" if setup.group_add else ""))
        if setup.ulimits:
            stage = "ulimits"
            set_ulimits(setup.ulimits)
            tl.mark("ulimits", "setrlimit " + ", ".join(f"{n}={s}:{h}" for n, s, h in setup.ulimits))
        stage = "privileges"
        # keyring, capabilities, no_new_privs, seccomp last (each a step of explain)
        security.apply(setup.security, uid, gid, groups, tl.mark if tl.enabled else None,
                       bounding_dropped=setup.bounding_dropped)
        os.closerange(3, setup.error_fd)  # error_fd is close-on-exec: it closes at exec
        os.closerange(setup.error_fd + 1, 1 << 20)
        if setup.rlimits:
            stage = "rlimits"
            from .rootless import set_rlimits

            set_rlimits(setup.rlimits)
            tl.mark("rlimits", "setrlimit " + ", ".join(text for _, _, text in setup.rlimits)
                    + " (no cgroup: approximations)")
        if setup.init:
            stage = "init"
            init.start_init(setup, env, tl)  # returns in the command's process only
        tl.mark("exec", f"execve {' '.join(setup.command)}")
        tl.send(setup.error_fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())  # the command starts with an empty mask
    except BaseException as e:  # noqa: BLE001
        _fail(setup.error_fd, stage, e)
    try:
        os.execvpe(setup.command[0], list(setup.command), env)
    except OSError as e:
        code = EXIT_NOT_FOUND if e.errno in (errno.ENOENT, errno.ENOTDIR) else EXIT_CANNOT_RUN
        _fail(setup.error_fd, "exec", e, code)
    except BaseException as e:  # noqa: BLE001
        _fail(setup.error_fd, "exec", e)


def _sandboxed(setup: Setup, tl: Timeline) -> None:
    """The process-sandbox rung (sandbox.py): a session of its own, a private TMPDIR, the
    image's programs first on PATH, rlimits, no_new_privs and seccomp; then exec."""
    from . import sandbox
    from .security import capabilities, keyring, seccomp

    stage = "setup"
    try:
        os.setsid()
        for target, fd in enumerate(setup.stdio):
            os.dup2(fd, target)
        if setup.console_fd >= 0:
            stage = "terminal"
            _open_console(setup.console_fd)
        stage = "sandbox"
        env = dict(setup.env, TMPDIR=setup.tmpdir)
        root = setup.image.layers[0] if setup.image is not None and setup.image.layers else ""
        env["PATH"] = sandbox.image_path(root, env.get("PATH", "/usr/bin:/bin"))
        os.chdir(setup.tmpdir)
        tl.mark("sandbox", f"setsid, TMPDIR and working directory {setup.tmpdir}, PATH from the image first")
        if setup.ulimits:
            stage = "ulimits"
            set_ulimits(setup.ulimits)
        if setup.rlimits:
            stage = "rlimits"
            from .rootless import set_rlimits

            set_rlimits(setup.rlimits)
            tl.mark("rlimits", "setrlimit " + ", ".join(text for _, _, text in setup.rlimits)
                    + " (no cgroup: approximations)")
        stage = "privileges"
        policy = setup.security
        if policy.keyring:
            try:
                keyring.join_new_session()
            except PermissionError:
                pass  # keyctl is refused here (the pod's seccomp): to the command as well
        capabilities.no_new_privs()
        if policy.seccomp is not None:
            seccomp.load(policy.seccomp)
        tl.mark("seccomp", "no_new_privs; the default seccomp profile less setsid and ptrace (sandbox.BLOCKED)")
        os.closerange(3, setup.error_fd)
        os.closerange(setup.error_fd + 1, 1 << 20)
        tl.mark("exec", f"execve {' '.join(setup.command)}")
        tl.send(setup.error_fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
    except BaseException as e:  # noqa: BLE001
        _fail(setup.error_fd, stage, e)
    try:
        os.execvpe(setup.command[0], list(setup.command), env)
    except OSError as e:
        _fail(setup.error_fd, "exec", e, EXIT_NOT_FOUND if e.errno in (errno.ENOENT, errno.ENOTDIR) else EXIT_CANNOT_RUN)
    except BaseException as e:  # noqa: BLE001
        _fail(setup.error_fd, "exec", e)
    os._exit(EXIT_RUNTIME)


def _build_container(setup: Setup, tl: Timeline, at: list[str]) -> None:
    """A new container's own view: rootfs, mounts, pivot_root, loopback, then the shim's
    go, hostname and cgroup namespace.  Meanwhile the shim moves us into our cgroup
    and wires the network (cgroup v1 migration waits for an RCU grace period, so
    overlapping saves milliseconds).  at[0] names the stage reached, for an error."""
    root = rootfs.mount_root(setup.image, setup.stage, setup.storage_size, userxattr=setup.userns is not None)
    tl.mark("rootfs", rootfs.describe_root(setup.image, setup.storage_size, setup.userns is not None))
    rootfs.execute(setup.steps, root, tl)
    rootfs.pivot(root)
    tl.mark("pivot_root", "pivot_root(2) into the overlay, detach the old root")
    if setup.console_fd >= 0:
        at[0] = "terminal"
        _open_console(setup.console_fd)
        tl.mark("console", "open a pty in the container's own /dev/pts, send its master to the shim")
    if run_flags(setup) & linux.CLONE_NEWNET:
        _loopback_up()
        tl.mark("loopback", "bring lo up (SIOCSIFFLAGS)")
    at[0] = "privileges"
    _drop_bounding_early(setup, tl)
    if setup.sync_fd >= 0:
        at[0] = "cgroup and network"
        _wait_for_go(setup, tl)
    at[0] = "hostname"
    if run_flags(setup) & linux.CLONE_NEWUTS:
        socket.sethostname(setup.hostname)
        tl.mark("hostname", f"sethostname {setup.hostname}")
    linux.unshare(linux.CLONE_NEWCGROUP)
    if setup.cgroup_mounts:
        _mount_cgroupfs(setup.cgroup_mounts)
    tl.mark("cgroupns", "unshare(CLONE_NEWCGROUP)" + (", mount /sys/fs/cgroup read-only" if setup.cgroup_mounts
                                                       else ""))


def _drop_bounding_early(setup: Setup, tl: Timeline) -> None:
    """Only execve(2) reads the bounding set (capabilities(7)), so PID 1 drops it before it
    waits for the shim's go: the ~27 prctl calls then overlap the shim's cgroup and network
    steps (a warm PID 1 makes them ahead of need) instead of delaying the exec."""
    policy = setup.security or security.default_policy()
    security.drop_bounding(policy.caps)
    setup.bounding_dropped = True
    tl.mark("bounding", security.describe_bounding(policy.caps))


def _wait_for_go(setup: Setup, tl: Timeline) -> None:
    """Block until the shim says go: one JSON line, which may carry the run's own
    settings (a warm container learns its command only now; see shim/spares.py)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(setup.sync_fd, 65536)
        if not chunk:
            raise OSError(errno.ECANCELED, "the shim could not place the container in its cgroup or network")
        data += chunk
    os.close(setup.sync_fd)
    if setup.shim_pid:
        linux.prctl(linux.PR_SET_PDEATHSIG, 0)  # claimed: from now on a container like any other
    go = json.loads(data)
    if go.get("explain"):
        tl.restart(go.get("go_ns", 0))  # a warm PID 1: what ran before its claim is no part of this start
    else:
        tl.mark("wait", "wait for the shim's go on the sync pipe (cgroup, network)")
    for key in ("command", "workdir", "user", "hostname", "init", "ulimits", "group_add"):
        if key in go:
            setattr(setup, key, tuple(go[key]) if key in ("command", "ulimits", "group_add") else go[key])
    if "env" in go:
        setup.env, setup.env_explicit = go["env"], frozenset(go["env_explicit"])
    if go.get("net"):
        _configure_eth0(**go["net"])
        net = go["net"]
        tl.mark("eth0", f"eth0 {net['ip']}/{net['prefixlen']} up" + (f", default via {net['gateway']}"
                                                                     if net.get("gateway") else ""))
    if go.get("stdin") == "null":
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.close(null)


def _mount_cgroupfs(mounts: tuple[tuple[str, str | None, str], ...]) -> None:
    """/sys/fs/cgroup, read-only, as this container's cgroup namespace sees it.

    Mounted after unshare(CLONE_NEWCGROUP), each hierarchy's root is the
    container's own group (cgroup_namespaces(7)): `cat
    /sys/fs/cgroup/memory/memory.limit_in_bytes` shows the container's limit.
    A hierarchy that will not mount is left out: this is a view for people, the
    limits hold either way.
    """
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    if mounts[0][0] == "cgroup2":
        linux.mount("cgroup2", "/sys/fs/cgroup", "cgroup2", flags | linux.MS_RDONLY)
        return
    linux.mount("tmpfs", "/sys/fs/cgroup", "tmpfs", flags, "mode=755,size=16k")
    for fstype, options, name in mounts:
        path = "/sys/fs/cgroup/" + name
        os.mkdir(path, 0o555)
        try:
            linux.mount("cgroup", path, fstype, flags | linux.MS_RDONLY, options)
        except OSError:
            os.rmdir(path)
    linux.mount(None, "/sys/fs/cgroup", None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | flags)


TIOCGPTN, TIOCSPTLCK = 0x80045430, 0x40045431  # asm-generic ioctls (x86_64, arm64, riscv64)


def _open_console(console_fd: int) -> None:
    """A terminal from the container's own devpts (pts(4)), its master sent to the shim.

    A pty opened by the shim would belong to the host's /dev/pts: inside, `tty`
    could not name it.  So, like runc's console socket, PID 1 opens /dev/ptmx
    in its own /dev, makes the slave its controlling terminal and stdio, and
    passes the master back over a Unix socket (SCM_RIGHTS).
    """
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with socket.socket(fileno=console_fd) as sock:
        socket.send_fds(sock, [b"pty"], [master])
    os.close(master)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    os.close(slave)


SIOCGIFFLAGS, SIOCSIFADDR, SIOCSIFNETMASK, SIOCADDRT = 0x8913, 0x8916, 0x891C, 0x890B
RTF_UP, RTF_GATEWAY = 0x1, 0x2
SIOCSIFHWADDR, ARPHRD_ETHER = 0x8924, 1


def _sockaddr_in(address: str) -> bytes:
    return struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(address))


def _configure_eth0(ip: str, prefixlen: int, gateway: str | None, mac: str | None = None) -> None:
    """MAC, address, netmask, up, default route: netdevice(7) and route ioctls from inside.

    The shim made the veth pair (pyroute2) with eth0 already in our namespace;
    setting it up here costs a few syscalls instead of the shim entering our
    namespace for netlink round trips.  A spare's eth0 was made before its
    address was known: its MAC (derived from the address) is set here too.
    """
    _refuse_router_ads("eth0")
    mask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if mac:
            hwaddr = bytes.fromhex(mac.replace(":", ""))
            fcntl.ioctl(s.fileno(), SIOCSIFHWADDR, struct.pack("16sH14s8x", b"eth0", ARPHRD_ETHER, hwaddr))
        fcntl.ioctl(s.fileno(), SIOCSIFADDR, struct.pack("16s16s8x", b"eth0", _sockaddr_in(ip)))
        fcntl.ioctl(s.fileno(), SIOCSIFNETMASK, struct.pack("16s16s8x", b"eth0", _sockaddr_in(mask)))
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH22x", b"eth0", 0)))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"eth0", flags | IFF_UP))
        if gateway:  # struct rtentry (route(8)'s ioctl): dst 0/0 via gateway, device chosen by the kernel
            any_ = _sockaddr_in("0.0.0.0")
            rtentry = struct.pack("L16s16s16sHhLPhPLLH0L", 0, any_, _sockaddr_in(gateway), any_,
                                  RTF_UP | RTF_GATEWAY, 0, 0, 0, 0, 0, 0, 0, 0)
            fcntl.ioctl(s.fileno(), SIOCADDRT, rtentry)


_ipv6_conf: list[int] = []  # /proc/sys/net/ipv6/conf of our own network namespace


def _hold_ipv6_conf() -> None:
    """Keep /proc/sys/net/ipv6/conf open while /proc/sys is still writable (the rootfs
    makes it read-only): a sysctl under /proc/sys/net acts on the opener's namespace,
    so eth0's can be set through it once eth0 exists."""
    try:
        _ipv6_conf.append(os.open("/proc/sys/net/ipv6/conf", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except FileNotFoundError:
        pass  # IPv6 is off on this host


def _refuse_router_ads(ifname: str) -> None:
    """No addresses or routes from router advertisements (ipv6(7) accept_ra, autoconf): another
    container of the bridge (CAP_NET_RAW) could otherwise make itself our IPv6 router."""
    for key in ("accept_ra", "autoconf") if _ipv6_conf else ():
        try:
            fd = os.open(f"{ifname}/{key}", os.O_WRONLY | os.O_CLOEXEC, dir_fd=_ipv6_conf[0])
        except OSError as e:
            if e.errno != errno.EROFS:
                raise
            return  # a pod's read-only /proc (no PID namespace: ours is the pod's), on a rootless
            # bridge whose other members are the same user's containers: their default stands
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH22x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING)
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, ifreq)


def _lookup_user(user: str | None) -> tuple[int, int, list[int], str | None]:
    """UID[:GID] or name[:group] against the container's /etc/passwd and /etc/group."""
    if user is None:
        return 0, 0, [], None
    name, _, group = user.partition(":")
    passwd = _read_db("/etc/passwd")
    entry = next((e for e in passwd if e[0] == name or (name.isdigit() and e[2] == name)), None)
    if entry is None and not name.isdigit():
        raise OSError(errno.ENOENT, f"no user {name!r} in the image's /etc/passwd: give a numeric UID")
    uid = int(name) if entry is None else int(entry[2])
    gid = int(entry[3]) if entry is not None else 0
    home = entry[5] if entry is not None and len(entry) > 5 else None
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            grp = next((e for e in _read_db("/etc/group") if e[0] == group), None)
            if grp is None:
                raise OSError(errno.ENOENT, f"no group {group!r} in the image's /etc/group: give a numeric GID")
            gid = int(grp[2])
    return uid, gid, [gid], home


def _group_id(group: str) -> int:
    """A --group-add entry: a GID, or a group name of the image's /etc/group."""
    if group.isdigit():
        return int(group)
    entry = next((e for e in _read_db("/etc/group") if e[0] == group and len(e) > 2), None)
    if entry is None:
        raise OSError(errno.ENOENT, f"--group-add {group}: no such group in the image's /etc/group: give a GID")
    return int(entry[2])


def set_ulimits(ulimits) -> None:
    """--ulimit (and an OCI process's rlimits): soft and hard, while PID 1 still has its
    capabilities (raising a hard limit needs CAP_SYS_RESOURCE)."""
    import resource

    for name, soft, hard in ulimits:
        number = getattr(resource, f"RLIMIT_{name.upper()}")
        values = tuple(resource.RLIM_INFINITY if v == -1 else v for v in (soft, hard))
        try:
            resource.setrlimit(number, values)
        except (ValueError, PermissionError):
            current = resource.getrlimit(number)[1]
            most = "unlimited" if current == resource.RLIM_INFINITY else str(current)
            raise OSError(errno.EPERM, f"--ulimit {name}={soft}:{hard}: the hard limit here is {most}, and raising "
                                       "it needs CAP_SYS_RESOURCE on the host (root): ask for at most that") from None


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []
