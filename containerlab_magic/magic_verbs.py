"""`%container VERB`: the commands layer's verbs, rendered for a notebook.

Each function takes the ContainerMagics (for its Engine and output settings)
and the parsed arguments (parsers.add_verbs, without the tty flags), calls
the one function of `commands` for the verb, and returns what the cell shows:
an HTML table where the answer is tabular (ps, stats, top, images, port,
network ls), preformatted text otherwise (inspect's JSON, doctor).  Verbs
that act (stop, kill, rm, ...) print one line per container.  The CLI renders
the same data as text (cli.py); nothing here imports it.
"""

from __future__ import annotations

import json
import signal

from IPython.display import display

from . import commands, formats, parsers
from . import display as show
from .cell_output import CellFailed, StreamPrinter, follow
from .runtime.errors import ContainerError


def verb_ps(magics, args):
    rows = commands.ps(magics.engine, all=args.all, filters=parsers.parse_filters(args.filter))
    if args.quiet:
        return show.Text("\n".join(row.id[:12] for row in rows))
    return show.Table.of(formats.ps_table(rows, command_width=40))


def verb_logs(magics, args) -> None:
    printer = StreamPrinter(magics.output_limit)
    try:
        for stream, data in commands.logs(magics.engine, args.container, follow=args.follow):
            printer(stream, data)
    except KeyboardInterrupt:
        print(f"[stopped following {args.container}; it keeps running]")
    finally:
        printer.close()


def verb_exec(magics, args) -> None:
    from .runtime.spec import parse_env

    printer = StreamPrinter(magics.output_limit)
    box = commands.exec_(magics.engine, args.container, args.command, env=dict(parse_env(args.env)),
                         workdir=args.workdir, user=args.user, on_output=printer)
    result, interrupted = follow(box, printer, magics.stop_grace)
    if interrupted:
        raise CellFailed(f"interrupted: {' '.join(box.spec.command)} was stopped ({result.describe()})", result)
    if not result.ok:
        raise CellFailed(result.describe(), result)


def _each(refs: list[str], act) -> tuple[list, list]:
    """Act on every container named, as docker does: one that fails does not stop the others.
    (What each act returned, the errors.)"""
    done, failed = [], []
    for ref in refs:
        try:
            done.append(act(ref))
        except ContainerError as e:
            failed.append(e)
    return done, failed


def _finish(failed: list, shown=None):
    """The failures raised together, one line, after showing what did work; else what to show."""
    if failed:
        if shown is not None:
            display(shown)
        raise type(failed[0])("; ".join(str(e) for e in failed))
    return shown


def verb_stop(magics, args) -> None:
    def stop(ref):
        killed = commands.stop(magics.engine, ref, grace=args.time)
        print(f"{ref} stopped" + (" (needed SIGKILL)" if killed else ""))

    _finish(_each(args.containers, stop)[1])


def verb_kill(magics, args) -> None:
    number = parsers.parse_signal(args.signal)  # refused before any container is touched

    def kill(ref):
        commands.kill(magics.engine, ref, number)
        print(f"{ref} sent {_signal_name(number)}")

    _finish(_each(args.containers, kill)[1])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal: no name of its own
        return f"signal {number}"


def verb_rm(magics, args) -> None:
    def rm(ref):
        commands.rm(magics.engine, ref, force=args.force)
        print(f"{ref} removed")

    _finish(_each(args.containers, rm)[1])


def verb_wait(magics, args):
    def wait(ref):
        code = commands.wait(magics.engine, ref)
        return ref, "removed as it ended" if code is None else str(code)

    rows, failed = _each(args.containers, wait)
    return _finish(failed, show.Table(("CONTAINER", "EXIT CODE"), rows) if rows else None)


def verb_inspect(magics, args):
    documents, failed = _each(args.containers, lambda ref: commands.inspect(magics.engine, ref))
    return _finish(failed, show.Text(json.dumps(documents, indent=2)) if documents else None)


def verb_stats(magics, args):
    """One table (like `stats --no-stream`): CPU % is measured over half a second."""
    rows = next(commands.stats(magics.engine, args.containers or None, interval=0.5), [])
    return show.Table.of(formats.stats_table(rows))


def verb_top(magics, args):
    return show.Table.of(formats.top_table(commands.top(magics.engine, args.container)),
                         title=f"processes of {args.container}")


def verb_update(magics, args):
    limits = parsers.limits_from_args(args)

    def update(ref):
        before, after = commands.update(magics.engine, ref, limits, net_rate=args.net_rate,
                                        net_delay=args.net_delay, net_loss=args.net_loss)
        return show.limits_change(ref, before, after)

    tables, failed = _each(args.containers, update)
    return _finish(failed, (tables[0] if len(tables) == 1 else show.Report(tables)) if tables else None)


def verb_pause(magics, args) -> None:
    def pause(ref):
        commands.pause(magics.engine, ref)
        print(f"{ref} paused")

    _finish(_each(args.containers, pause)[1])


def verb_unpause(magics, args) -> None:
    def unpause(ref):
        commands.unpause(magics.engine, ref)
        print(f"{ref} unpaused")

    _finish(_each(args.containers, unpause)[1])


def verb_cp(magics, args) -> None:
    result = commands.cp(magics.engine, args.source, args.destination)
    copied = [f"{n} {what}" for n, what in ((result.files, "file(s)"), (result.directories, "folder(s)"),
                                              (result.links, "link(s)")) if n]
    line = f"copied {', '.join(copied) or 'nothing'} ({show.size(result.bytes)})"
    if result.skipped:
        line += f"; skipped {result.skipped} device(s), socket(s) or FIFO(s)"
    print(line)


def verb_port(magics, args):
    table = show.Table(("CONTAINER PORT", "HOST ADDRESS"), empty=f"{args.container} publishes no ports")
    for line in formats.port_lines(commands.port(magics.engine, args.container)):
        inside, _, outside = line.partition(" -> ")
        table.rows.append((inside, outside))
    return table


def verb_network(magics, args):
    engine = magics.engine
    if args.net_verb == "create":
        return show.Text(commands.network_create(engine, args.name, subnet=args.subnet,
                                                 internal=args.internal)["name"])
    if args.net_verb == "ls":
        return show.Table.of(formats.networks_table(commands.network_ls(engine)))
    if args.net_verb == "inspect":
        return show.Text(json.dumps(commands.network_inspect(engine, args.name), indent=2))
    for name in args.names:
        commands.network_rm(engine, name)
    return show.Text("\n".join(f"{name} removed" for name in args.names))


def verb_images(magics, args):
    return show.Table.of(formats.images_table(commands.images(magics.engine)))


def verb_doctor(magics, args):
    return show.Text(commands.doctor())


def verb_gc(magics, args):
    removed = commands.gc(magics.engine)
    return show.Text("\n".join(f"removed {item}" for item in removed) or "nothing to clean up")


def verb_panel(magics, args):
    from .widgets import LimitsPanel

    return LimitsPanel(magics)


VERBS = {name[len("verb_"):]: fn for name, fn in globals().items() if name.startswith("verb_")}
# the image verbs (pull, push, images with the layer chart, history, build, ...): magic_images.py
VERBS.update(__import__(f"{__package__}.magic_images", fromlist=["VERBS"]).VERBS)
