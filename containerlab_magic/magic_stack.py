"""`%%stack NAME` and `%stack up|ps|logs|down NAME`: stacks in a notebook.

The cell of `%%stack NAME` is a compose-style YAML document (stack.py): its
services start as the kernel's own containers (they end with the kernel),
the cell prints each step and shows the stack's containers.  While the
kernel runs, services with `restart: on-failure` are started again when
they fail (commands/stack_restart.py).  Log lines carry a coloured prefix
naming their service, as `docker compose logs` does.
"""

from __future__ import annotations

import argparse
import os

from . import commands, formats
from . import display as show
from .stack_face import colour_of, prefixed


def cell_parser(parser_class) -> argparse.ArgumentParser:
    p = parser_class(prog="%%stack", description="Start the services of the compose-style YAML cell as "
                     "one stack, dependencies first; %stack down NAME removes it.")
    p.add_argument("name", metavar="NAME", help="the stack's name: containers are NAME-SERVICE-1")
    p.add_argument("--logs", action="store_true", help="after starting, show what the services printed so far")
    return p


def line_parser(parser_class) -> argparse.ArgumentParser:
    p = parser_class(prog="%stack", description="A stack's containers (ps), output (logs [-f]) or removal (down).")
    p.add_argument("verb", choices=("ps", "logs", "down"))
    p.add_argument("name", metavar="NAME")
    p.add_argument("-f", "--follow", action="store_true", help="logs: keep following until interrupted")
    return p


def up(magics, args, cell: str):
    from . import stack as model

    document = model.load(cell, args.name, base_dir=os.getcwd())
    old = magics.restarters.pop(document.name, None)
    if old is not None:
        old.stop()
    commands.stack_up(magics.engine, document, on_event=print)
    magics.restarters[document.name] = commands.stack_restarter(magics.engine, document, on_event=print).start()
    if args.logs:
        show_logs(magics, document.name, follow=False)
    return show.Table.of(formats.ps_table(commands.stack_ps(magics.engine, document.name), command_width=40))


def show_logs(magics, name: str, follow: bool) -> None:
    import sys

    services: list[str] = []
    try:
        for service, stream, line in commands.stack_logs(magics.engine, name, follow=follow):
            if service not in services:
                services.append(service)
            width = max(len(s) for s in services)
            text = prefixed(service, line, width, colour_of(services, service)).decode(errors="replace")
            (sys.stdout if stream == "stdout" else sys.stderr).write(text)
    except KeyboardInterrupt:
        print(f"[stopped following stack {name}; it keeps running]")


def line(magics, args):
    if args.verb == "ps":
        return show.Table.of(formats.ps_table(commands.stack_ps(magics.engine, args.name), command_width=40))
    if args.verb == "logs":
        show_logs(magics, args.name, args.follow)
        return None
    restarter = magics.restarters.pop(args.name, None)
    if restarter is not None:
        restarter.stop()
    for item in commands.stack_down(magics.engine, args.name):
        print(f"removed {item}")
    return None
