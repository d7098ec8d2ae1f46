"""`containerlab`: the runtime's verbs from a shell, docker-style.

    containerlab run [OPTIONS] [IMAGE] [--] [CMD...]
    containerlab ps [-a] | logs [-f] NAME | exec NAME CMD... | stop NAME | kill NAME
    containerlab rm [-f] NAME | wait NAME | gc | doctor | images
    containerlab stats [NAME...] | update NAME --memory 128M | pause NAME | unpause NAME
    containerlab network create|ls|inspect|rm

IMAGE may be left out (it defaults to `host`): the first word after the
options is taken as the image when it names one, and as the command
otherwise; `--` ends the options and starts the command.

Exit status follows docker: the command's own status; 128+N when it was
killed by signal N; 125 when the runtime failed or the input was wrong; 126
when the command cannot be run; 127 when it is not found.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from .runtime.errors import ContainerError, SpecError
from .runtime.spec import ContainerSpec, Limits, Mount, PortMap, parse_env

EXIT_USAGE = 125


class Parser(argparse.ArgumentParser):
    """argparse that reports bad input in one line with docker's status 125."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", help="image to run (default: host)")
    p.add_argument("--name", help="container name (default: a generated one)")
    p.add_argument("--hostname", help="hostname inside (default: the name)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    p.add_argument("-w", "--workdir", default="/", help="working directory inside")
    p.add_argument("-u", "--user", help="UID[:GID] or a user name of the image")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]", help="bind mount")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CTR[/udp]",
                   help="publish a container port on the host's loopback")
    p.add_argument("--net", "--network", dest="net", default="none",
                   help="none (default), bridge, a network name, container:NAME or host")
    p.add_argument("--read-only", action="store_true", help="make the root filesystem read-only")
    p.add_argument("--timeout", type=float, help="kill the container after this many seconds")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background; print its id")
    p.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("--memory", "-m", help="memory limit, e.g. 64M")
    p.add_argument("--memory-swap", help="memory+swap limit (-1: unlimited swap)")
    p.add_argument("--cpus", help="CPU limit, e.g. 0.5")
    p.add_argument("--cpu-shares", help="relative CPU weight (default 1024)")
    p.add_argument("--cpuset-cpus", help="CPUs allowed, e.g. 0-1")
    p.add_argument("--pids-limit", help="most processes at once")
    p.add_argument("--blkio-weight", help="relative I/O weight 10-1000")
    p.add_argument("--storage-size", help="size of the writable layer and /tmp, e.g. 100M")
    p.add_argument("--net-rate", help="shape eth0's rate, e.g. 1mbit (needs --net bridge)")
    p.add_argument("--net-delay", help="add latency on eth0, e.g. 50ms")
    p.add_argument("--net-loss", help="drop packets on eth0, e.g. 1%%")
    p.add_argument("--explain", action="store_true", help="print the setup steps instead of running")


def build_parser() -> Parser:
    parser = Parser(prog="containerlab", description="Isolated, fast containers from the host and busybox images.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("run", help="run a command in a new container")
    _add_run_options(p)
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="[IMAGE] [--] CMD")

    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also show exited containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")

    p = sub.add_parser("logs", help="output of a detached container")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("container")

    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)

    p = sub.add_parser("stop", help="SIGTERM, then SIGKILL after a grace period")
    p.add_argument("-t", "--time", type=float, default=10.0, help="grace period in seconds (default 10)")
    p.add_argument("containers", nargs="+")

    p = sub.add_parser("kill", help="send a signal (default SIGKILL)")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")

    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill running ones first")
    p.add_argument("containers", nargs="+")

    p = sub.add_parser("wait", help="wait for containers to end; print their exit codes")
    p.add_argument("containers", nargs="+")

    p = sub.add_parser("inspect", help="a container's state as JSON")
    p.add_argument("container")

    p = sub.add_parser("stats", help="live usage against limits (like docker stats)")
    p.add_argument("--no-stream", action="store_true", help="print once and exit")
    p.add_argument("containers", nargs="*")

    p = sub.add_parser("update", help="change limits of a running container")
    for flag in ("--memory", "--memory-swap", "--cpus", "--cpu-shares", "--cpuset-cpus", "--pids-limit",
                 "--blkio-weight", "--net-rate", "--net-delay", "--net-loss"):
        p.add_argument(flag)
    p.add_argument("containers", nargs="+")

    for verb, text in (("pause", "freeze every process of a container"), ("unpause", "thaw a paused container")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("containers", nargs="+")

    add_network_parser(sub, Parser)

    sub.add_parser("gc", help="remove what crashes left behind")
    sub.add_parser("doctor", help="what this host supports, and fixes")
    sub.add_parser("images", help="list images")
    p = sub.add_parser("install-kernel", help='a Jupyter kernel "Python 3 (container lab)" with the magics loaded')
    p.add_argument("--user", action="store_true", help="for this user only (default: system-wide)")
    p.add_argument("--prefix", help="install under this prefix, e.g. sys.prefix of a virtualenv")
    p.add_argument("--name", default="containerlab", help="kernelspec name (default containerlab)")
    return parser


def add_network_parser(sub, parser_class) -> None:
    """`network create|ls|inspect|rm`: shared by the CLI and %container."""
    p = sub.add_parser("network", help="create, list, inspect and remove networks")
    netsub = p.add_subparsers(dest="net_verb", metavar="VERB", parser_class=parser_class)
    netsub.required = True
    q = netsub.add_parser("create", help="a bridge network with its own subnet")
    q.add_argument("--subnet", help="CIDR, e.g. 10.214.0.0/24 (default: a free /24)")
    q.add_argument("--internal", action="store_true", help="no route beyond the bridge")
    q.add_argument("name")
    netsub.add_parser("ls", help="list networks")
    q = netsub.add_parser("inspect", help="a network's containers and addresses")
    q.add_argument("name")
    q = netsub.add_parser("rm", help="remove networks")
    q.add_argument("names", nargs="+")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return VERBS[args.verb](args)
    except ContainerError as e:
        print(f"containerlab: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _engine():
    """The CLI's engine: the shared daemon shim, connected only when a verb needs it."""
    from .runtime.engine import Engine

    return Engine(daemon=True)


def spec_from_args(args: argparse.Namespace) -> ContainerSpec:
    """Options as typed by a user -> a validated ContainerSpec (raises SpecError)."""
    words = list(args.args)
    image = args.image
    if words and words[0] == "--":
        words = words[1:]
    elif image is None and words and _is_image(words[0]):
        image = words.pop(0)
        if words and words[0] == "--":
            words = words[1:]
    if not words:
        raise SpecError("no command given: say what to run, e.g. `containerlab run busybox echo hi`")
    limits = Limits.parse(memory=args.memory, memory_swap=args.memory_swap, cpus=args.cpus,
                          cpu_shares=args.cpu_shares, cpuset_cpus=args.cpuset_cpus, pids_limit=args.pids_limit,
                          blkio_weight=args.blkio_weight, storage_size=args.storage_size)
    return ContainerSpec(
        command=tuple(words), image=image or "host", name=args.name, hostname=args.hostname,
        env=parse_env(args.env), workdir=args.workdir, user=args.user,
        mounts=tuple(Mount.parse(v) for v in args.volume), read_only=args.read_only, timeout=args.timeout,
        detach=args.detach, tty=args.tty, interactive=args.interactive, limits=limits, network=args.net,
        ports=tuple(PortMap.parse(p) for p in args.publish), net_rate=args.net_rate, net_delay=args.net_delay,
        net_loss=args.net_loss)


def _is_image(word: str) -> bool:
    from .runtime.images import ImageStore

    return word in ImageStore.BUILTIN


def cmd_run(args) -> int:
    spec = spec_from_args(args)
    if args.explain:
        from .runtime import rootfs
        from .runtime.images import ImageStore
        from .runtime.paths import data_root

        image = ImageStore(data_root()).resolve(spec.image)
        for i, line in enumerate(rootfs.explain(image, spec), 1):
            print(f"{i:3}. {line}")
        return 0
    if spec.network == "host":
        print("containerlab: warning: --net host shares the host's network with the container", file=sys.stderr)
    engine = _engine()
    try:
        box = engine.run(spec)
        if spec.detach:
            print(box.id)
            return 0
        return _attach(engine, box, spec.tty or spec.interactive)
    finally:
        engine.close()


def _attach(engine, box, with_stdin: bool) -> int:
    """Stream a container's output; Ctrl-C stops it (a second one kills it)."""
    from .runtime.engine import Container

    assert isinstance(box, Container)
    restore = _raw_terminal() if box.tty and sys.stdin.isatty() else None
    if box.tty and sys.stdout.isatty():
        size = os.get_terminal_size()
        box.resize(size.lines, size.columns)
    pump = _stdin_pump(box) if with_stdin and box.stdin_fd is not None else None
    interrupted = False
    try:
        while True:
            try:
                for stream, data in box.output():
                    target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
                    target.write(data)
                    target.flush()
                result = box.wait()
                break
            except KeyboardInterrupt:
                if interrupted:
                    box.kill()
                else:
                    interrupted = True
                    print(f"\ncontainerlab: stopping {box.name} (Ctrl-C again to kill)", file=sys.stderr)
                    signal.signal(signal.SIGINT, lambda *_: box.kill())
                    box.stop(grace=3)
    finally:
        if restore:
            restore()
        if pump:
            pump.cancel()
    if result.error:
        print(f"containerlab: {result.error}", file=sys.stderr)
    elif result.timed_out or result.oom_killed:
        print(f"containerlab: {box.name}: {result.describe()}", file=sys.stderr)
    return 130 if interrupted and result.signal else result.exit_code


class _StdinPump:
    def __init__(self, box):
        import threading

        self.box = box
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        fd = sys.stdin.fileno()
        while not self.stop:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data or self.box.stdin_fd is None:
                break
            try:
                self.box.write(data)
            except OSError:
                break
        if not self.box.tty:
            try:
                self.box.close_stdin()
            except OSError:
                pass

    def cancel(self) -> None:
        self.stop = True


def _stdin_pump(box):
    return _StdinPump(box)


def _raw_terminal():
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def cmd_ps(args) -> int:
    rows = [r for r in _engine().ps(all=True) if args.all or r["status"] == "running"]
    rows.sort(key=lambda r: r.get("created", 0), reverse=True)
    if args.quiet:
        for row in rows:
            print(row["id"][:12])
        return 0
    table = [("CONTAINER ID", "NAME", "IMAGE", "COMMAND", "STATUS", "PORTS", "AGE")]
    now = time.time()
    for row in rows:
        command = " ".join(row.get("command", []))
        if len(command) > 30:
            command = command[:27] + "..."
        table.append((row["id"][:12], row.get("name", ""), row.get("image", ""), command,
                      describe_status(row, now), ", ".join(row.get("ports") or []),
                      human_age(now - row.get("created", now))))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def describe_status(row: dict, now: float | None = None) -> str:
    now = now or time.time()
    status = row.get("status")
    if status == "exited":
        ago = human_age(now - row.get("finished", now))
        extra = ", timed out" if row.get("timed_out") else (", out of memory" if row.get("oom_killed") else "")
        return f"exited ({row.get('exit_code')}{extra}) {ago} ago"
    if status == "running":
        return "running (paused)" if row.get("paused") else "running"
    return status or "unknown"


def human_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cmd_logs(args) -> int:
    engine = _engine()
    for stream, data in engine.logs(args.container, follow=args.follow):
        target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        target.write(data)
        target.flush()
    return 0


def cmd_exec(args) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    env = dict(parse_env(args.env))
    engine = _engine()
    try:
        box = engine.exec(args.container, command, env=env, workdir=args.workdir, user=args.user,
                          tty=args.tty, interactive=args.interactive)
        return _attach(engine, box, args.tty or args.interactive)
    finally:
        engine.close()


def cmd_stop(args) -> int:
    engine = _engine()
    for ref in args.containers:
        engine.stop(ref, grace=args.time)
        print(ref)
    return 0


def cmd_kill(args) -> int:
    name = args.signal.upper()
    try:
        sig = int(name) if name.isdigit() else signal.Signals(name if name.startswith("SIG") else "SIG" + name)
    except (KeyError, ValueError):
        raise SpecError(f"unknown signal {args.signal!r}: use a name like TERM, INT, KILL or a number") from None
    engine = _engine()
    for ref in args.containers:
        engine.kill(ref, int(sig))
        print(ref)
    return 0


def cmd_rm(args) -> int:
    engine = _engine()
    status = 0
    for ref in args.containers:
        try:
            engine.rm(ref, force=args.force)
            print(ref)
        except ContainerError as e:
            print(f"containerlab: {e}", file=sys.stderr)
            status = e.exit_code
    return status


def cmd_wait(args) -> int:
    engine = _engine()
    for ref in args.containers:
        code = engine.wait(ref)
        print("" if code is None else code)
    return 0


def cmd_inspect(args) -> int:
    import json

    print(json.dumps(_engine().inspect(args.container), indent=2))
    return 0


def cmd_stats(args) -> int:
    from . import display as show
    from .runtime.spec import format_size

    engine = _engine()
    refs = args.containers or [r["id"] for r in engine.ps()]
    samplers = {ref: engine.sample(ref, interval=1.0) for ref in refs}
    first = True
    while samplers:
        rows = [("NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PEAK", "PIDS", "OOM", "NET I/O", "BLOCK I/O",
                 "LINK")]
        for ref, sampler in list(samplers.items()):
            s = next(sampler, None)
            if s is None:
                del samplers[ref]
                continue
            if first and args.no_stream:
                s = next(sampler, s)  # CPU % needs two samples
            mem, limit = s.get("memory_bytes") or 0, s.get("memory_limit")
            rows.append((
                s["name"] + (" (paused)" if s.get("paused") else ""),
                "--" if s.get("cpu_percent") is None else f"{s['cpu_percent']:.1f}%",
                f"{format_size(mem)} / {format_size(limit) if limit else 'unlimited'}",
                f"{100 * mem / limit:.1f}%" if limit else "--",
                format_size(s.get("memory_peak_bytes") or 0),
                f"{s.get('pids_current') or 0}" + (f" / {s['pids_limit']}" if s.get("pids_limit") else ""),
                str(s.get("oom_kills") or 0),
                show.net_io(s),
                f"{format_size(s.get('io_read_bytes') or 0)} / {format_size(s.get('io_write_bytes') or 0)}",
                show.link_shape(s.get("net_shape")) if s.get("network") else "--",
            ))
        if not args.no_stream and not first:
            print("\033[H\033[J", end="")
        _print_table(rows)
        first = False
        if args.no_stream:
            break
    return 0


def _format_table(rows) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _print_table(rows) -> None:
    print(_format_table(rows), flush=True)


def cmd_update(args) -> int:
    limits = Limits.parse(memory=args.memory, memory_swap=args.memory_swap, cpus=args.cpus,
                          cpu_shares=args.cpu_shares, cpuset_cpus=args.cpuset_cpus, pids_limit=args.pids_limit,
                          blkio_weight=args.blkio_weight)
    if not limits.any_cgroup_limit and not (args.net_rate or args.net_delay or args.net_loss):
        raise SpecError("nothing to update: give --memory, --cpus, --pids-limit, --net-rate, ...")
    engine = _engine()
    for ref in args.containers:
        engine.update(ref, limits, net_rate=args.net_rate, net_delay=args.net_delay, net_loss=args.net_loss)
        print(ref)
    return 0


def cmd_pause(args) -> int:
    engine = _engine()
    for ref in args.containers:
        (engine.pause if args.verb == "pause" else engine.unpause)(ref)
        print(ref)
    return 0


def cmd_network(args) -> int:
    print(network_verb(_engine(), args))
    return 0


def network_verb(engine, args) -> str:
    """Carry out `network ...` (parsed by add_network_parser); the text to show."""
    import json

    networks = engine.networks()
    try:
        if args.net_verb == "create":
            return networks.create(args.name, subnet=args.subnet, internal=args.internal)["name"]
        if args.net_verb == "ls":
            rows = [("NAME", "SUBNET", "GATEWAY", "BRIDGE", "INTERNAL", "CONTAINERS")]
            for net in networks.list():
                rows.append((net["name"], net["subnet"], net["gateway"], net["bridge"],
                             "yes" if net.get("internal") else "no", str(len(net.get("containers") or ()))))
            return _format_table(rows)
        if args.net_verb == "inspect":
            return json.dumps(networks.inspect(args.name), indent=2)
        for name in args.names:
            networks.remove(name)
        return "\n".join(args.names)
    finally:
        networks.close()


def cmd_gc(args) -> int:
    removed = _engine().gc()
    for item in removed:
        print(f"removed {item}")
    if not removed:
        print("nothing to clean up")
    return 0


def cmd_doctor(args) -> int:
    from .runtime import doctor

    print(doctor.report())
    return 0


def cmd_images(args) -> int:
    for row in _engine().images():
        if row["ok"]:
            where = row["layers"][0] + (f" + host {' '.join(row['binds'])} (read-only)" if row["binds"] else "")
            print(f"{row['name']:10} {where}")
        else:
            print(f"{row['name']:10} unavailable: {row['error']}")
    return 0


def cmd_install_kernel(args) -> int:
    from .kernel import install

    print(f"installed kernel {args.name!r} in {install(user=args.user, prefix=args.prefix, name=args.name)}")
    return 0


VERBS = {
    "run": cmd_run, "ps": cmd_ps, "logs": cmd_logs, "exec": cmd_exec, "stop": cmd_stop, "kill": cmd_kill,
    "rm": cmd_rm, "wait": cmd_wait, "inspect": cmd_inspect, "gc": cmd_gc, "doctor": cmd_doctor,
    "images": cmd_images, "stats": cmd_stats, "update": cmd_update, "pause": cmd_pause, "unpause": cmd_pause,
    "network": cmd_network, "install-kernel": cmd_install_kernel,
}

if __name__ == "__main__":
    sys.exit(main())
