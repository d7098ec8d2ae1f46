"""`containerlab-magic stack up|down|ps|logs`: the stack verbs for the shell.

The parser and the coloured, prefixed log lines are shared with the
`%stack` magics (magic_stack.py); the work is in commands/stack.py.
"""

from __future__ import annotations

import os
import re
import sys

from .parsers import PROG

COLOURS = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95)  # ANSI foreground colours, as compose cycles them


def add_parser(sub) -> None:
    p = sub.add_parser("stack", help="several containers from one compose-style YAML file")
    verbs = p.add_subparsers(dest="stack_verb", metavar="VERB", parser_class=type(p))
    verbs.required = True
    for verb, text in (("up", "start the stack's services (and its networks), dependencies first"),
                       ("down", "remove everything the stack made: its containers and its networks"),
                       ("ps", "the stack's containers"),
                       ("logs", "the output of every service, each line prefixed with its service")):
        q = verbs.add_parser(verb, help=text)
        q.add_argument("-p", "--project-name", dest="project", help="the stack's name (default: the file's "
                       "top-level name:, else its directory's name)")
        if verb == "up":
            q.add_argument("-d", "--detach", action="store_true",
                           help="start and return (restart: on-failure is only watched without -d)")
        if verb == "logs":
            q.add_argument("-f", "--follow", action="store_true", help="keep following new output")
        q.add_argument("file", nargs="?" if verb != "up" else None, metavar="FILE")


def prefixed(service: str, line: bytes, width: int, colour: int | None) -> bytes:
    """'web   | line' with the prefix in colour (None: plain)."""
    label = f"{service:<{width}} | "
    if colour is not None:
        label = f"\033[{colour}m{label}\033[0m"
    return label.encode() + line


def colour_of(services: list[str], service: str) -> int:
    return COLOURS[services.index(service) % len(COLOURS)] if service in services else COLOURS[0]


def name_from_path(path: str) -> str:
    """docker's default project name: the file's directory, lower case, other characters as '-'."""
    base = os.path.basename(os.path.dirname(os.path.abspath(path))) or "stack"
    return re.sub(r"[^a-z0-9.-]+", "-", base.lower()).strip("-.") or "stack"


def load_file(args):
    """The Stack of args.file (a missing or unreadable file is one line)."""
    from . import stack
    from .runtime.errors import SpecError

    try:
        with open(args.file) as f:
            text = f.read()
    except OSError as e:
        raise SpecError(f"cannot read {args.file}: {e.strerror}: give the path of a compose-style YAML file") from None
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        document = None  # load() reports it, with its line
    named = document.get("name") if isinstance(document, dict) else None
    return stack.load(text, args.project or named or name_from_path(args.file), os.path.dirname(
        os.path.abspath(args.file)))


def stack_name(args) -> str:
    from .runtime.errors import SpecError

    if args.project:
        return args.project
    if not args.file:
        raise SpecError(f"name the stack: `{PROG} stack {args.stack_verb} FILE` or -p NAME")
    return load_file(args).name


def cmd_stack(args) -> int:
    from . import commands, formats
    from .runtime.engine import Engine

    engine = Engine(daemon=True)
    try:
        if args.stack_verb == "up":
            stack = load_file(args)
            commands.stack_up(engine, stack, on_event=lambda text: print(text, flush=True))
            return 0 if args.detach else _follow(engine, stack)
        name = stack_name(args)
        if args.stack_verb == "down":
            for item in commands.stack_down(engine, name):
                print(f"removed {item}")
        elif args.stack_verb == "ps":
            print(formats.text_table(formats.ps_table(commands.stack_ps(engine, name))))
        else:
            _print_logs(commands.stack_logs(engine, name, follow=args.follow))
        return 0
    finally:
        engine.close()


def _print_logs(items, services: list[str] | None = None) -> None:
    services = list(services or [])
    colour = sys.stdout.isatty()
    for service, _stream, line in items:
        if service not in services:
            services.append(service)
        width = max(len(s) for s in services)
        sys.stdout.buffer.write(prefixed(service, line, width, colour_of(services, service) if colour else None))
        sys.stdout.buffer.flush()


def _follow(engine, stack) -> int:
    """up without -d: every service's output until they all end; Ctrl-C takes the stack down."""
    from .commands.stack import logs
    from .commands.stack_restart import Restarter

    restarter = Restarter(engine, stack, on_event=lambda text: print(text, flush=True)).start()
    try:
        _print_logs(logs(engine, stack.name, follow=True), stack.service_names)
    except KeyboardInterrupt:
        restarter.stop()
        print(f"\nstopping stack {stack.name}", file=sys.stderr)
        from .commands.stack import down

        down(engine, stack.name)
        return 130
    finally:
        restarter.stop()
    return 0
