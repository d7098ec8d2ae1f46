"""`containerlab-magic`: the lab's verbs from a shell, in docker's grammar.

    containerlab-magic run [OPTIONS] IMAGE [COMMAND] [ARG...]
    containerlab-magic ps [-a] [--filter label=K=V] | logs [-f] NAME | exec NAME CMD... | top NAME
    containerlab-magic stop NAME | kill [-s SIGNAL] NAME | rm [-f] NAME | wait NAME | inspect NAME
    containerlab-magic stats [--no-stream] [NAME...] | update NAME --memory 128M | pause NAME | unpause NAME
    containerlab-magic cp NAME:PATH HOSTPATH | cp HOSTPATH NAME:PATH | port NAME
    containerlab-magic network create|ls|inspect|rm | images | doctor | gc
    containerlab-magic pull REF | push NAME | login -u USER --password-stdin HOST | logout HOST | tag SRC DST
    containerlab-magic rmi NAME | image prune|inspect|ls|history | history NAME | save -o F NAME | load -i F
    containerlab-magic import FILE NAME | export -o F NAME | commit NAME IMAGE | build -t NAME CONTEXT
    containerlab-magic stack up [-d] FILE | down FILE | ps FILE | logs [-f] FILE
    python -m containerlab_magic ...     (the same)

As with docker, the first word after run's options is always the image (see
`images`); the rest is the command and its arguments, taken as written.

Exit status follows docker: the command's own status; 128+N when it was
killed by signal N; 125 when the runtime failed or the input was wrong (one
line on stderr saying what to change); 126 when the command cannot be run;
127 when it is not found.

This module only parses (parsers.py), calls the commands layer (commands/)
and renders text (formats.py).  It is on the path of every `run`, so it
imports what a verb needs only when that verb runs.
"""

from __future__ import annotations

import os
import signal
import sys

from . import parsers
from .parsers import EXIT_USAGE, PROG, Parser
from .runtime.errors import ContainerError, SpecError

__all__ = ["main", "build_parser", "EXIT_USAGE", "Parser"]


def build_parser(verb: str | None = None) -> Parser:
    """The CLI's parser; with `verb`, only that verb's part (the rest is never used)."""
    parser = Parser(prog=PROG, description="Isolated, fast containers from the host and busybox images.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    sub.required = True
    if verb in (None, "run"):
        _add_run(sub)
    if verb != "run":
        parsers.add_verbs(sub, Parser, only=verb)
    if verb in (None, "stack"):
        from .stack_face import add_parser

        add_parser(sub)
    if verb in (None, "install-kernel"):
        p = sub.add_parser("install-kernel", help='a Jupyter kernel "Python 3 (container lab)" with the magics loaded')
        p.add_argument("--user", action="store_true", help="for this user only (default: system-wide)")
        p.add_argument("--prefix", help="install under this prefix, e.g. sys.prefix of a virtualenv")
        p.add_argument("--name", default="containerlab", help="kernelspec name (default containerlab)")
    return parser


def _add_run(sub) -> None:
    import argparse

    p = sub.add_parser("run", help="run a command in a new container",
                       usage=f"{PROG} run [OPTIONS] IMAGE [COMMAND] [ARG...]",
                       description="Run COMMAND in a new container from IMAGE (host or busybox; see `images`). "
                                   "A foreground container is removed when it exits; -d keeps it (until rm) "
                                   "unless --rm is given.")
    parsers.add_run_options(p)
    p.add_argument("--dry-run", action="store_true", help="with --explain: print the plan without running it")
    p.add_argument("image", nargs="?", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def _verb_of(argv: list[str]) -> str | None:
    """The verb a command line names, if it is one (else the whole parser reports)."""
    first = argv[0] if argv else None
    return first if first in VERBS or first in ("network", "image", "stack") else None


def main(argv: list[str] | None = None) -> int:
    """The command line (sys.argv when argv is None: the process's entry point)."""
    if argv is None:
        try:
            return _verb(sys.argv[1:])
        finally:
            # The process ends next: its collector need not visit every object again on
            # the way out (the interpreter's last collection costs ~10 ms of a ~70 ms run).
            import gc

            gc.freeze()
    return _verb(argv)


def _verb(argv: list[str]) -> int:
    if argv[:1] == ["runtime"]:  # the OCI runtime's command line (oci/cli.py), as its own script
        from .oci.cli import main as runtime_main

        return runtime_main(argv[1:])
    args = build_parser(_verb_of(argv)).parse_args(argv)
    verb = {"network": lambda: "network_" + args.net_verb,
            "image": lambda: "image_" + args.image_verb}.get(args.verb, lambda: args.verb)()
    if verb == "stack":
        from .stack_face import cmd_stack

        VERBS[verb] = cmd_stack
    try:
        return VERBS[verb](args)
    except ContainerError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _engine():
    """The CLI's engine: the shared daemon shim, connected only when a verb needs it."""
    from .runtime.engine import Engine

    return Engine(daemon=True)


def _write(stream: str, data: bytes) -> None:
    target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
    target.write(data)
    target.flush()


def _each(args, action) -> int:
    """Apply action to every named container, printing each name done; a failure is
    reported and the rest still tried (docker's rule); the status is the last failure's."""
    status = 0
    for ref in args.containers:
        try:
            action(ref)
            print(ref)
        except ContainerError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            status = e.exit_code
    return status


# ---------------------------------------------------------------- run and exec


def image_and_command(args) -> tuple[str, list[str]]:
    """run's positionals: IMAGE, then COMMAND [ARG...] exactly as typed."""
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not args.image or args.image == "--":
        raise SpecError(f"no image given: write `{PROG} run [OPTIONS] IMAGE COMMAND`, e.g. "
                        f"`{PROG} run busybox echo hi` (see `{PROG} images`)")
    return args.image, command


def cmd_run(args) -> int:
    from . import commands

    if args.dry_run and not args.explain:
        raise SpecError("--dry-run goes with --explain: it prints the plan without running it")
    image, command = image_and_command(args)
    spec = parsers.run_spec(args, image, command)
    engine = _engine()
    if args.explain and args.dry_run:
        print(explain_text(commands.plan(engine, spec)))
        return 0
    if spec.network == "host":
        print(f"{PROG}: warning: --net host shares the host's network with the container", file=sys.stderr)
    try:
        size = os.get_terminal_size() if spec.tty and sys.stdout.isatty() else None
        box = commands.run(engine, spec, on_pull=_announce_pull, explain=args.explain,
                           tty_size=size and (size.lines, size.columns))
        if box.notice:
            print(f"{PROG}: warning: {box.notice}", file=sys.stderr)
        if spec.detach:
            print(box.id)
            return 0
        code = attach(box, spec.tty or spec.interactive)
        if args.explain:
            print(explain_text(commands.explain_run(box)), file=sys.stderr)
        return code
    finally:
        engine.close()


def _announce_pull(name: str):
    """docker's line before it pulls a missing image; the pull's progress renderer."""
    from .cli_images import LayerProgress

    print(f"Unable to find image '{name}' locally", file=sys.stderr)
    return LayerProgress()


def explain_text(steps) -> str:
    """The start steps as a table (formats.explain_table), with the total when they ran."""
    from . import formats

    text = formats.text_table(formats.explain_table(steps))
    total = formats.explain_total(steps)
    return text if total is None else f"{text}\ntotal {formats.micros(total)} µs"


def attach(box, with_stdin: bool) -> int:
    """Stream a container's output; Ctrl-C stops it (a second one kills it)."""
    restore = _raw_terminal() if box.tty and sys.stdin.isatty() else None
    if box.tty and sys.stdout.isatty():
        size = os.get_terminal_size()
        box.resize(size.lines, size.columns)
    pump = _StdinPump(box) if with_stdin and box.stdin_fd is not None else None
    interrupted = False
    sigint = signal.getsignal(signal.SIGINT)  # replaced after the first Ctrl-C: put back on the way out
    try:
        while True:
            try:
                for stream, data in box.output():
                    _write(stream, data)
                result = box.wait()
                break
            except KeyboardInterrupt:
                if interrupted:
                    box.kill()
                else:
                    interrupted = True
                    print(f"\n{PROG}: stopping {box.name} (Ctrl-C again to kill)", file=sys.stderr)
                    signal.signal(signal.SIGINT, lambda *_: box.kill())
                    box.stop(grace=3)
    finally:
        signal.signal(signal.SIGINT, sigint)
        if restore:
            restore()
        if pump:
            pump.cancel()
    if result.error:
        print(f"{PROG}: {result.error}", file=sys.stderr)
    elif result.timed_out or result.oom_killed:
        print(f"{PROG}: {box.name}: {result.describe()}", file=sys.stderr)
    return 130 if interrupted and result.signal else result.exit_code


class _StdinPump:
    """Copies the terminal's input into the container until either side closes."""

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


def _raw_terminal():
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def cmd_exec(args) -> int:
    from . import commands
    from .runtime.spec import parse_env

    engine = _engine()
    try:
        box = commands.exec_(engine, args.container, args.command, env=dict(parse_env(args.env)),
                             workdir=args.workdir, user=args.user, tty=args.tty, interactive=args.interactive)
        return attach(box, args.tty or args.interactive)
    finally:
        engine.close()


# ---------------------------------------------------------------- the other verbs


def cmd_ps(args) -> int:
    from . import commands, formats

    rows = commands.ps(_engine(), all=args.all, filters=parsers.parse_filters(args.filter))
    if args.quiet:
        for row in rows:
            print(row.id[:12])
    else:
        print(formats.text_table(formats.ps_table(rows)))
    return 0


def cmd_logs(args) -> int:
    from . import commands

    for stream, data in commands.logs(_engine(), args.container, follow=args.follow):
        _write(stream, data)
    return 0


def cmd_stop(args) -> int:
    from . import commands

    commands.check_grace(args.time)  # once, before any container is touched
    engine = _engine()
    return _each(args, lambda ref: commands.stop(engine, ref, grace=args.time))


def cmd_kill(args) -> int:
    from . import commands

    parsers.parse_signal(args.signal)  # a bad signal is refused before any container is touched
    engine = _engine()
    return _each(args, lambda ref: commands.kill(engine, ref, args.signal))


def cmd_rm(args) -> int:
    from . import commands

    engine = _engine()
    return _each(args, lambda ref: commands.rm(engine, ref, force=args.force))


def cmd_wait(args) -> int:
    from . import commands

    engine = _engine()
    status = 0
    for ref in args.containers:
        try:
            code = commands.wait(engine, ref)
            print("" if code is None else code, flush=True)
        except ContainerError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            status = e.exit_code
    return status


def cmd_inspect(args) -> int:
    import json

    from . import commands

    engine = _engine()
    documents, status = [], 0
    for ref in args.containers:  # as docker: the ones found are printed, the others reported
        try:
            documents.append(commands.inspect(engine, ref))
        except ContainerError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            status = e.exit_code
    if documents or not status:
        print(json.dumps(documents, indent=2))
    return status


def cmd_top(args) -> int:
    from . import commands, formats

    print(formats.text_table(formats.top_table(commands.top(_engine(), args.container))))
    return 0


def cmd_stats(args) -> int:
    from . import commands, formats

    shown = False
    for rows in commands.stats(_engine(), args.containers or None, interval=0.5 if args.no_stream else 1.0):
        if shown and sys.stdout.isatty():
            print("\033[H\033[J", end="")
        print(formats.text_table(formats.stats_table(rows)), flush=True)
        shown = True
        if args.no_stream:
            break
    if not shown:
        print(formats.text_table(formats.stats_table([])))
    return 0


def cmd_update(args) -> int:
    from . import commands

    limits = parsers.limits_from_args(args)
    if not limits.any_cgroup_limit and not (args.net_rate or args.net_delay or args.net_loss):
        raise SpecError("nothing to update: give --memory, --cpus, --pids-limit, --net-rate, ...")
    engine = _engine()
    return _each(args, lambda ref: commands.update(engine, ref, limits, net_rate=args.net_rate,
                                                   net_delay=args.net_delay, net_loss=args.net_loss))


def cmd_pause(args) -> int:
    from . import commands

    engine = _engine()
    return _each(args, lambda ref: (commands.pause if args.verb == "pause" else commands.unpause)(engine, ref))


def cmd_cp(args) -> int:
    from . import commands

    result = commands.cp(_engine(), args.source, args.destination)
    if result.skipped:
        print(f"{PROG}: skipped {result.skipped} device(s), socket(s) or FIFO(s)", file=sys.stderr)
    return 0


def cmd_port(args) -> int:
    from . import commands, formats

    engine = _engine()
    for line in formats.port_lines(commands.port(engine, args.container)):
        print(line)
    for port in commands.exposed(engine, args.container):
        print(f"{port} (exposed by the image, not published: add -p HOST:{port.split('/')[0]})")
    return 0


def cmd_network_create(args) -> int:
    from . import commands

    print(commands.network_create(_engine(), args.name, subnet=args.subnet, internal=args.internal)["name"])
    return 0


def cmd_network_ls(args) -> int:
    from . import commands, formats

    print(formats.text_table(formats.networks_table(commands.network_ls(_engine()))))
    return 0


def cmd_network_inspect(args) -> int:
    import json

    from . import commands

    print(json.dumps(commands.network_inspect(_engine(), args.name), indent=2))
    return 0


def cmd_network_rm(args) -> int:
    from . import commands

    engine = _engine()
    for name in args.names:
        commands.network_rm(engine, name)
        print(name)
    return 0


def cmd_gc(args) -> int:
    from . import commands

    removed = commands.gc(_engine())
    for item in removed:
        print(f"removed {item}")
    if not removed:
        print("nothing to clean up")
    return 0


def cmd_doctor(args) -> int:
    from . import commands

    print(commands.doctor())
    return 0


def cmd_install_kernel(args) -> int:
    from .kernel import install

    print(f"installed kernel {args.name!r} in {install(user=args.user, prefix=args.prefix, name=args.name)}")
    return 0


VERBS = {
    "run": cmd_run, "ps": cmd_ps, "logs": cmd_logs, "exec": cmd_exec, "stop": cmd_stop, "kill": cmd_kill,
    "rm": cmd_rm, "wait": cmd_wait, "inspect": cmd_inspect, "top": cmd_top, "gc": cmd_gc, "doctor": cmd_doctor,
    "stats": cmd_stats, "update": cmd_update, "pause": cmd_pause, "unpause": cmd_pause,
    "cp": cmd_cp, "port": cmd_port, "network_create": cmd_network_create, "network_ls": cmd_network_ls,
    "network_inspect": cmd_network_inspect, "network_rm": cmd_network_rm, "install-kernel": cmd_install_kernel,
}


def _image_verb(verb: str):
    def call(args) -> int:
        from .cli_images import VERBS as IMAGE_VERBS

        return IMAGE_VERBS[verb](args)
    return call


VERBS.update({verb: _image_verb(verb) for verb in (
    "pull", "push", "login", "logout", "tag", "images", "image_ls", "rmi", "image_prune", "image_inspect",
    "history", "image_history", "save", "load", "import", "export", "commit", "build")})


if __name__ == "__main__":
    sys.exit(main())
