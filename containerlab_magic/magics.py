"""The Jupyter face: %%container, %container and %cgroup.

    %load_ext containerlab_magic

    %%container --image busybox --memory 64M --cpus 0.5
    hostname; echo "I am PID $$"

A thin layer in jupysql's shape: the shared parsers (parsers.py, the same
run flags and verbs as `containerlab-magic`, without the terminal-only -t and
-i) turn the line into arguments, the commands layer (commands/) runs the
verb over the runtime's Engine and returns data, and display.py and
widgets.py render it as HTML.  One private Engine per kernel: its shim stops
every container when the kernel exits, restarts, or the extension is
unloaded.

Output streams into the cell as the container writes it (cell_output.py);
the kernel's interrupt stops the cell's container.  Failures are one line:
bad options raise IPython's UsageError; a container that failed (non-zero
exit, timeout, OOM kill, interrupt) raises CellFailed, whose
`_render_traceback_` is that line, so no Python traceback is shown.
"""

from __future__ import annotations

import argparse
import atexit
import shlex
import sys
import threading

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display
from traitlets import Float, Int, Unicode

from . import commands, magic_cgroup, parsers
from . import display as show
from .cell_output import CellFailed, StreamPrinter, follow
from .magic_verbs import VERBS
from .python_cell import COMMAND as PYTHON_COMMAND
from .python_cell import CellFolder, OutValueError, inputs_json
from .runtime.errors import Conflict, ContainerError, NotFound, SpecError

__all__ = ["CellFailed", "ContainerMagics", "load_ipython_extension", "unload_ipython_extension"]


class MagicParser(parsers.Parser):
    """argparse whose errors become UsageError and whose --help just prints."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None):  # type: ignore[override]
        if status:
            raise UsageError(message or f"{self.prog}: bad arguments")
        raise _HelpShown()


class _HelpShown(Exception):
    pass


def _parse(parser: argparse.ArgumentParser, line: str) -> argparse.Namespace | None:
    try:
        return parser.parse_args(shlex.split(line))
    except ValueError as e:  # shlex: unbalanced quotes
        raise UsageError(f"{parser.prog}: {e} in {line!r}") from None
    except _HelpShown:
        return None


CELL_HELP = {
    "--explain": "after the cell, a table of the steps that started its container, with their times",
    "--detach": "run in the background: the cell returns at once (see %%container logs -f NAME)",
    "--net": "none, bridge, a network name, container:NAME or host (default: ContainerMagics.default_network)",
}


def cell_parser() -> MagicParser:
    p = MagicParser(prog="%%container", description="Run the cell in a new container: a /bin/sh script, "
                    "or Python with --python. Options are those of `containerlab-magic run`.")
    p.add_argument("--image", help="image to run (default: ContainerMagics.default_image, 'host')")
    parsers.add_run_options(p, tty=False)
    p.set_defaults(net=None, workdir=None)  # net None: take ContainerMagics.default_network
    for flag, text in CELL_HELP.items():  # where a cell differs from `containerlab-magic run`
        p._option_string_actions[flag].help = text
    if "--dry-run" not in p._option_string_actions:
        p.add_argument("--dry-run", action="store_true", help="with --explain: the plan, without running it")
    p.add_argument("--python", action="store_true", help="the cell is Python, run by the image's python3")
    p.add_argument("--in", dest="inputs", metavar="NAMES",
                   help="comma-separated notebook variables passed into a --python cell (JSON values)")
    p.add_argument("--out", metavar="NAME", help="--python: bring the cell's variable NAME back (JSON); "
                   "shell: store the result object in NAME")
    p.add_argument("--stats", action="store_true", help="a footer: exit status, duration, peak memory, CPU time")
    return p


def line_parser() -> MagicParser:
    p = MagicParser(prog="%container", description="Manage this kernel's containers: the verbs of "
                    "`containerlab-magic`, as tables.")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=MagicParser)
    sub.required = True
    parsers.add_verbs(sub, MagicParser, tty=False)
    sub.add_parser("panel", help="sliders whose values become the defaults of later cells")
    return p


def cgroup_parser() -> MagicParser:
    p = MagicParser(prog="%cgroup", description="A container's cgroup: usage against limits and the files "
                    "behind them; KEY=VALUE changes limits live; no NAME: the kernel's own cgroup.")
    p.add_argument("container", nargs="?")
    p.add_argument("settings", nargs="*", metavar="KEY=VALUE", help=magic_cgroup.SETTINGS_HELP)
    p.add_argument("--watch", action="store_true", help="a live monitor until the container ends")
    return p


@magics_class
class ContainerMagics(Magics):
    """%%container, %container and %cgroup. Defaults are configurable, e.g.
    `%config ContainerMagics.default_image = "busybox"`; an explicit option in a cell wins."""

    default_image = Unicode("host", help="image of cells that give no --image").tag(config=True)
    default_memory = Unicode("", help="memory limit of cells that give no --memory, e.g. '128M'; '' none"
                             ).tag(config=True)
    default_cpus = Float(None, allow_none=True, help="CPU limit of cells that give no --cpus").tag(config=True)
    default_pids_limit = Int(None, allow_none=True, help="process limit of cells that give no --pids-limit"
                             ).tag(config=True)
    default_network = Unicode("none", help="network of cells that give no --net: none or bridge").tag(config=True)
    default_timeout = Float(None, allow_none=True, help="seconds before a cell's container is killed"
                            ).tag(config=True)
    output_limit = Int(4 << 20, help="bytes of output a cell shows before the rest is cut").tag(config=True)
    stop_grace = Float(0.5, help="seconds between SIGTERM and SIGKILL when a cell is interrupted").tag(config=True)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self._engine = None
        self._engine_lock = threading.Lock()
        self.last = None  # the last cell's CellResult
        self.monitors: list = []
        self._folders: dict[str, CellFolder] = {}  # detached --python cells' folders, by container id
        self.restarters: dict = {}  # restart: on-failure watchers of %%stack stacks, by stack name
        atexit.register(self._remove_folders)  # the kernel exits: its shim ends their containers

    @property
    def engine(self):
        """This kernel's private Engine, started on first use."""
        with self._engine_lock:
            if self._engine is None:
                from .runtime.engine import Engine

                self._engine = Engine()
            return self._engine

    def close(self) -> None:
        """Stop every container of this kernel (unload, tests)."""
        for monitor in self.monitors:
            monitor.stop()
        for name, restarter in list(self.restarters.items()):
            restarter.stop()
            try:  # its networks outlive the engine's containers: take the whole stack down
                commands.stack_down(self._engine, name) if self._engine is not None else None
            except ContainerError:
                pass  # already down
        self.restarters.clear()
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        self._remove_folders()  # their containers stopped with the engine
        atexit.unregister(self._remove_folders)

    def _remove_folders(self) -> None:
        for folder in self._folders.values():
            folder.remove()
        self._folders.clear()

    # ------------------------------------------------------------ %%container

    @cell_magic("container")
    def container_cell(self, line: str, cell: str):
        """Run the cell in a new container. See %%container --help.
        `%%container build -t NAME [CONTEXT]`: the cell is a Containerfile."""
        if line.split()[:1] == ["build"]:
            return self._build_cell(line, cell)
        args = _parse(cell_parser(), line)
        if args is None:
            return None
        self._sweep_folders()
        with _user_errors():
            spec, folder = self._spec(args, cell)
        try:
            if args.explain and args.dry_run:
                return self._plan(spec, args.dry_run)
            box, result = self._run(spec, args)
            if folder is not None and spec.detach:  # the container still reads its cell: keep it till it ends
                self._folders[box.id], folder = folder, None
            if args.explain:
                display(show.ExplainTable(commands.explain_run(box),
                                          title=f"{box.name}: the steps that started it"))
            if result is None:  # detached
                return None
            if folder is not None and args.out and result.ok:
                try:
                    self.shell.user_ns[args.out] = folder.read_out()
                except OutValueError as e:
                    raise CellFailed(str(e), result) from None
        finally:
            if folder is not None:
                folder.remove()
        if args.out and not args.python:
            self.shell.user_ns[args.out] = result
        if not result.ok:
            raise CellFailed(result.describe(), result)
        return None

    def _build_cell(self, line: str, cell: str):
        from .magic_images import verb_build

        p = MagicParser(prog="%%container build", description="Build an image: the cell is the Containerfile, "
                                                              "CONTEXT (default: this folder) has COPY's sources.")
        parsers._build(p, tty=False)
        args = _parse(p, line.split(None, 1)[1] if len(line.split()) > 1 else "")
        if args is None:
            return None
        args.file = None
        with _user_errors():
            return verb_build(self, args, text=cell)

    def defaults(self) -> dict:
        """What a cell gets for each option it leaves out (traitlets, possibly set by the panel)."""
        return {"image": self.default_image, "memory": self.default_memory or None,
                "cpus": self.default_cpus, "pids_limit": self.default_pids_limit,
                "net": self.default_network, "timeout": self.default_timeout}

    def _spec(self, args: argparse.Namespace, cell: str):
        if args.inputs and not args.python:
            raise SpecError("--in passes notebook variables to Python: add --python")
        if args.out and args.python and args.detach:
            raise SpecError("--out is set when the cell ends, and a --detach cell returns at once: drop one of them")
        if args.dry_run and not args.explain:
            raise SpecError("--dry-run shows the plan without running it: add --explain")
        for key, value in self.defaults().items():
            if getattr(args, key) is None:
                setattr(args, key, None if value is None else str(value) if key != "timeout" else value)
        folder = None
        if args.python:
            folder = CellFolder(cell, inputs_json(args.inputs, self.shell.user_ns), args.out,
                                other_user=args.user is not None)
            args.volume = list(args.volume) + [folder.volume]
        command = list(PYTHON_COMMAND) if args.python else ["/bin/sh", "-c", cell]
        try:
            return parsers.run_spec(args, args.image, command), folder
        except BaseException:
            if folder is not None:
                folder.remove()
            raise

    def _sweep_folders(self) -> None:
        """Remove the cell folders of detached --python cells whose container has ended."""
        for cid, folder in list(self._folders.items()):
            try:
                ended = self.engine.inspect(cid).get("status") not in ("running", "exiting", "created")
            except ContainerError:
                ended = True
            if ended:
                folder.remove()
                del self._folders[cid]

    def _plan(self, spec, asked: bool):
        """The steps that would start the container, without running it."""
        with _user_errors():
            steps = commands.plan(self.engine, spec)
        return show.ExplainTable(steps, title="the plan (not run: --dry-run)")

    def _run(self, spec, args):
        """Start the container; for a foreground one, stream it to the end. (box, CellResult or None)."""
        printer = StreamPrinter(self.output_limit)
        timed = {"explain": True} if args.explain else {}  # the runtime times a start only when asked
        with _user_errors():
            box = commands.run(self.engine, spec, on_output=printer, **timed)
        if box.notice:  # every cell says what the rung could not give it
            print(f"[{box.notice}]", file=sys.stderr)
        if spec.detach:
            print(f"{box.name} started in the background ({box.id[:12]}): "
                  f"follow it with %container logs -f {box.name}")
            return box, None
        result, interrupted = follow(box, printer, self.stop_grace)
        cell = show.CellResult(result, box.name, box.id, spec.image,
                               {k: v for k, v in vars(spec.limits).items() if v is not None}, interrupted)
        self.last = cell
        self.shell.user_ns["_container"] = cell
        if args.stats:
            print(show.stats_footer(cell) + (" · interrupted" if interrupted else ""))
        elif cell.ok and cell.memory_kills:  # the command succeeded, but not everything in it did
            print(f"[{cell.describe()}]", file=sys.stderr)
        return box, cell

    # ------------------------------------------------------------ %container, %cgroup

    @line_magic("container")
    def container_line(self, line: str):
        """%container ps | logs | exec | stop | kill | rm | wait | inspect | stats | top | update | pause |
        unpause | cp | port | network | images | doctor | gc | panel. See %container --help."""
        args = _parse(line_parser(), line)
        if args is None:
            return None
        self._sweep_folders()
        with _user_errors():
            return VERBS[args.verb](self, args)

    @line_magic("cgroup")
    def cgroup_line(self, line: str):
        """%cgroup [NAME] [memory=128M cpus=1 pids=64] [--watch]. See %cgroup --help."""
        args = _parse(cgroup_parser(), line)
        if args is None:
            return None
        self._sweep_folders()
        with _user_errors():
            if args.container is None:
                if args.settings or args.watch:
                    raise SpecError("%cgroup: name the container, e.g. %cgroup web memory=128M")
                return magic_cgroup.kernel_report(self.engine)
            if args.watch:
                from .widgets import Monitor

                monitor = Monitor(self.engine, args.container)
                self.monitors = [m for m in self.monitors if m.running] + [monitor]
                monitor.show()
                return None
            if args.settings:
                return magic_cgroup.update(self.engine, args.container, args.settings)
            return magic_cgroup.report(self.engine, args.container)


    @cell_magic("stack")
    def stack_cell(self, line: str, cell: str):
        """%%stack NAME: the cell is a compose-style YAML document; its services start as one stack."""
        from . import magic_stack

        args = _parse(magic_stack.cell_parser(MagicParser), line)
        if args is None:
            return None
        with _user_errors():
            return magic_stack.up(self, args, cell)

    @line_magic("stack")
    def stack_line(self, line: str):
        """%stack ps|logs [-f]|down NAME."""
        from . import magic_stack

        args = _parse(magic_stack.line_parser(MagicParser), line)
        if args is None:
            return None
        with _user_errors():
            return magic_stack.line(self, args)


class _user_errors:
    """Runtime errors at the edge: bad input is a UsageError, the rest a CellFailed; both one line."""

    def __enter__(self):
        return self

    def __exit__(self, etype, value, tb):
        if etype is not None and issubclass(etype, (SpecError, NotFound, Conflict)):
            raise UsageError(str(value)) from None
        if etype is not None and issubclass(etype, ContainerError):
            raise CellFailed(str(value)) from None
        return False


# `%%container?` shows every option (a cell magic with an empty body never runs,
# so `%%container --help` needs some body); `%cgroup?` likewise.
ContainerMagics.container_cell.__doc__ = cell_parser().format_help()
ContainerMagics.cgroup_line.__doc__ = cgroup_parser().format_help()

# ---------------------------------------------------------------- extension

_loaded: dict[int, ContainerMagics] = {}


def load_ipython_extension(ipython) -> None:
    """Register the magics once per shell: loading again (the lab's kernel already did, or
    %load_ext twice under different names) changes nothing and says nothing."""
    if id(ipython) in _loaded:
        return
    magics = ContainerMagics(shell=ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)  # so %config ContainerMagics.x = ... reaches it
    _loaded[id(ipython)] = magics
    from .runtime import rungs

    line = rungs.notice()  # (one line, and only when not root: which rung this kernel got)
    if line:
        print(line)


def unload_ipython_extension(ipython) -> None:
    magics = _loaded.pop(id(ipython), None)
    if magics is not None:
        magics.close()
        ipython.configurables[:] = [c for c in ipython.configurables if c is not magics]
        for kind in ("line", "cell"):
            for name in ("container", "cgroup", "stack"):
                ipython.magics_manager.magics[kind].pop(name, None)
        ipython.magics_manager.registry.pop(type(magics).__name__, None)
