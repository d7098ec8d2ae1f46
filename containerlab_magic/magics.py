"""The Jupyter face: %%container, %container and %cgroup.

    %load_ext containerlab_magic

    %%container --image busybox --memory 64M --cpus 0.5
    hostname; echo "I am PID $$"

A thin layer in jupysql's shape: argparse (the CLI's own run options) turns
the line into a ContainerSpec, the runtime's Engine runs it, display.py and
widgets.py render what comes back.  One private Engine per kernel: its shim
stops every container when the kernel exits, restarts, or the extension is
unloaded.

Output streams into the cell as the container writes it: the cell runs on
the kernel's main thread, blocked in the engine's select() on the container's
pipes, so the kernel's interrupt (SIGINT -> KeyboardInterrupt) lands right
there and stops the container (SIGTERM, SIGKILL after `stop_grace`).

Failures are one line: bad options raise IPython's UsageError; a container
that failed (non-zero exit, timeout, OOM kill, interrupt) raises CellFailed,
whose `_render_traceback_` is that line, so no Python traceback is shown.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Float, Int, Unicode

from . import cli
from . import display as show
from .runtime.errors import Conflict, ContainerError, NotFound, SpecError
from .runtime.paths import private_io_root

IO_DIR = "/run/containerlab-io"  # where a --python cell's --out value is written, bind-mounted from the host
MAX_PROGRAM = 120 * 1024  # one argv string may be at most 128 KiB (MAX_ARG_STRLEN)
MAX_OUT_JSON = 16 << 20


class CellFailed(Exception):
    """A container that ended badly: shown as its one line, never as a traceback."""

    def __init__(self, line: str, result=None):
        super().__init__(line)
        self.result = result

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{self}\x1b[0m"]


class MagicParser(cli.Parser):
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


def cell_parser() -> MagicParser:
    p = MagicParser(prog="%%container", description="Run the cell in a new container: a /bin/sh script, "
                    "or Python with --python. Options mirror `containerlab run`.")
    cli._add_run_options(p)
    p.set_defaults(net=None)  # None: take ContainerMagics.default_network
    p.add_argument("--python", action="store_true", help="the cell is Python, run by the image's python3")
    p.add_argument("--in", dest="inputs", metavar="NAMES",
                   help="comma-separated notebook variables passed into a --python cell (JSON values)")
    p.add_argument("--out", metavar="NAME", help="--python: bring the cell's variable NAME back (JSON); "
                   "shell: store the result object in NAME")
    p.add_argument("--stats", action="store_true", help="a footer: exit status, duration, peak memory, CPU time")
    return p


def line_parser() -> MagicParser:
    p = MagicParser(prog="%container", description="Manage this kernel's containers.")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=MagicParser)
    sub.required = True
    sp = sub.add_parser("ps", help="list containers (an HTML table)")
    sp.add_argument("-a", "--all", action="store_true", help="also show exited containers")
    sp = sub.add_parser("logs", help="output of a detached container")
    sp.add_argument("-f", "--follow", action="store_true", help="follow until it ends or the cell is interrupted")
    sp.add_argument("container")
    sp = sub.add_parser("exec", help="run a command in a running container")
    sp.add_argument("-e", "--env", action="append", default=[])
    sp.add_argument("-w", "--workdir")
    sp.add_argument("-u", "--user")
    sp.add_argument("container")
    sp.add_argument("command", nargs=argparse.REMAINDER)
    sp = sub.add_parser("stop", help="SIGTERM, then SIGKILL after a grace period")
    sp.add_argument("-t", "--time", type=float, default=10.0, help="grace period in seconds (default 10)")
    sp.add_argument("containers", nargs="+")
    sp = sub.add_parser("kill", help="send a signal (default KILL)")
    sp.add_argument("-s", "--signal", default="KILL")
    sp.add_argument("containers", nargs="+")
    sp = sub.add_parser("rm", help="remove containers")
    sp.add_argument("-f", "--force", action="store_true", help="kill running ones first")
    sp.add_argument("containers", nargs="+")
    sp = sub.add_parser("inspect", help="a container's state")
    sp.add_argument("container")
    sp = sub.add_parser("stats", help="usage of running containers")
    sp.add_argument("container", nargs="?")
    cli.add_network_parser(sub, MagicParser)
    for verb, text in (("images", "list images"), ("doctor", "what this host supports, and fixes"),
                       ("gc", "remove what crashes left behind"),
                       ("panel", "sliders whose values become the defaults of later cells")):
        sub.add_parser(verb, help=text)
    return p


def cgroup_parser() -> MagicParser:
    p = MagicParser(prog="%cgroup", description="A container's cgroup: usage against limits and the files "
                    "behind them; KEY=VALUE changes limits live; no NAME: the kernel's own cgroup.")
    p.add_argument("container", nargs="?")
    p.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                   help="memory=128M memory_swap=256M cpus=1 cpu_shares=512 cpuset_cpus=0 pids=64 blkio_weight=100; "
                        "and the link of a container on a network: net_rate=1mbit net_delay=50ms net_loss=1%%")
    p.add_argument("--watch", action="store_true", help="a live monitor until the container ends")
    return p


SETTING_KEYS = {"memory": "memory", "memory_swap": "memory_swap", "cpus": "cpus", "cpu_shares": "cpu_shares",
                "cpuset_cpus": "cpuset_cpus", "pids": "pids_limit", "pids_limit": "pids_limit",
                "blkio_weight": "blkio_weight"}
LINK_KEYS = ("net_rate", "net_delay", "net_loss")  # tc on the container's veth, not cgroups: the same verb


class StreamPrinter:
    """Container output -> the cell's stdout/stderr, decoded as it arrives, up to a byte cap.

    `\\r` is passed through untouched: JupyterLab and terminals both redraw the
    line.  Past the cap, output is counted but dropped, and close() says so in
    one line, so a flood cannot freeze the browser.
    """

    def __init__(self, cap: int):
        self.cap = cap
        self.written = 0
        self.dropped = 0
        self.decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ("stdout", "stderr")}
        self.last: str | None = None
        self.lock = threading.Lock()

    @staticmethod
    def _target(stream: str):
        return sys.stdout if stream == "stdout" else sys.stderr

    def __call__(self, stream: str, data: bytes) -> None:
        with self.lock:
            room = self.cap - self.written
            if len(data) > room:
                self.dropped += len(data) - max(room, 0)
                data = data[:max(room, 0)]
            if not data:
                return
            self.written += len(data)
            if self.last not in (None, stream):
                self._target(self.last).flush()  # keep stdout and stderr in the order they were written
            self.last = stream
            self._target(stream).write(self.decoders[stream].decode(data))

    def close(self) -> None:
        with self.lock:
            for stream, decoder in self.decoders.items():
                tail = decoder.decode(b"", final=True)
                if tail:
                    self._target(stream).write(tail)
            if self.dropped:
                sys.stderr.write(f"\n[containerlab: output cut at {show.format_size(self.cap)}; "
                                 f"{show.format_size(self.dropped)} more not shown. "
                                 "Raise %config ContainerMagics.output_limit]\n")
            sys.stdout.flush()
            sys.stderr.flush()


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

    # ------------------------------------------------------------ engine

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
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    # ------------------------------------------------------------ %%container

    @cell_magic("container")
    def container_cell(self, line: str, cell: str):
        """Run the cell in a new container. See %%container --help."""
        args = _parse(cell_parser(), line)
        if args is None:
            return None
        with _user_errors():
            spec, io_dir = self._spec(args, cell)
        try:
            if args.explain:
                return self._explain(spec)
            result = self._run(spec, args)
            if io_dir and args.out and result.ok:
                self.shell.user_ns[args.out] = _read_out(io_dir, args.out)
        finally:
            if io_dir:
                shutil.rmtree(io_dir, ignore_errors=True)
        if result is None:  # detached
            return None
        if args.out and not args.python:
            self.shell.user_ns[args.out] = result
        if not result.ok:
            raise CellFailed(result.describe(), result)
        return None

    def defaults(self) -> dict:
        """What a cell gets for each option it leaves out (traitlets, possibly set by the panel)."""
        return {"image": self.default_image, "memory": self.default_memory or None,
                "cpus": self.default_cpus, "pids_limit": self.default_pids_limit,
                "net": self.default_network, "timeout": self.default_timeout}

    def _spec(self, args: argparse.Namespace, cell: str):
        if args.interactive:
            raise SpecError("a cell has no stdin to keep open: drop -i (use --tty for a terminal)")
        if args.inputs and not args.python:
            raise SpecError("--in passes notebook variables to Python: add --python")
        for key, value in self.defaults().items():
            if getattr(args, key) is None:
                setattr(args, key, None if value is None else str(value) if key != "timeout" else value)
        io_dir = None
        if args.python:
            command = ["python3", "-c", self._python_program(cell, args.inputs, args.out)]
            if args.out:
                io_dir = tempfile.mkdtemp(prefix="containerlab-io-", dir=private_io_root())
                os.chmod(io_dir, 0o777)  # the cell may run as another user (-u); its parent is 0700
                args.volume = list(args.volume) + [f"{io_dir}:{IO_DIR}"]
        else:
            command = ["/bin/sh", "-c", cell]
        args.args = ["--", *command]
        try:
            return cli.spec_from_args(args), io_dir
        except BaseException:
            if io_dir:
                shutil.rmtree(io_dir, ignore_errors=True)
            raise

    def _python_program(self, cell: str, inputs: str | None, out: str | None) -> str:
        """The cell as a python3 -c program: inputs as JSON in, the --out value as JSON out.

        Only JSON crosses the boundary, both ways: unpickling anything the
        container made would let the sandbox run code in the kernel.
        """
        values = {}
        for name in filter(None, (n.strip() for n in (inputs or "").split(","))):
            if not name.isidentifier():
                raise SpecError(f"--in {name!r}: give Python variable names separated by commas")
            if name not in self.shell.user_ns:
                raise SpecError(f"--in {name}: no such variable in the notebook")
            values[name] = self.shell.user_ns[name]
        try:
            values_json = json.dumps(values)
        except (TypeError, ValueError) as e:
            raise SpecError(f"--in: {e}: pass JSON-compatible values (dict, list, str, numbers, bool, None)") from None
        if out is not None and not out.isidentifier():
            raise SpecError(f"--out {out!r}: give a Python variable name")
        lines = [
            "import json, sys",
            "ns = {'__name__': '__main__'}",
            f"ns.update(json.loads({values_json!r}))",
            f"exec(compile({cell!r}, '<cell>', 'exec'), ns)",
        ]
        if out:
            lines += [
                f"if {out!r} not in ns: sys.exit('--out {out}: the cell did not set {out}')",
                "try:",
                f"    text = json.dumps(ns[{out!r}])",
                "except (TypeError, ValueError) as e:",
                f"    sys.exit(f'--out {out}: {{e}}: only JSON-compatible values come back')",
                f"with open({IO_DIR + '/out.json'!r}, 'w') as f: f.write(text)",
            ]
        program = "\n".join(lines)
        if len(program.encode()) > MAX_PROGRAM:
            raise SpecError(f"the cell and its --in values are {len(program.encode()) // 1024} KiB, more than "
                            f"{MAX_PROGRAM // 1024} KiB: put large data in a file and mount it with -v")
        return program

    def _explain(self, spec) -> None:
        from .runtime import rootfs
        from .runtime.images import ImageStore

        with _user_errors():
            image = ImageStore(self.engine.data_root).resolve(spec.image)
        for i, step in enumerate(rootfs.explain(image, spec), 1):
            print(f"{i:3}. {step}")

    def _run(self, spec, args):
        printer = StreamPrinter(self.output_limit)
        with _user_errors():
            box = self.engine.run(spec, on_output=printer)
        if spec.detach:
            print(f"{box.name} started in the background ({box.id[:12]}): "
                  f"follow it with %container logs -f {box.name}")
            return None
        result, interrupted = self._follow(box, printer)
        cell = show.CellResult(result, box.name, box.id, spec.image,
                               {k: v for k, v in vars(spec.limits).items() if v is not None}, interrupted)
        self.last = cell
        self.shell.user_ns["_container"] = cell
        if args.stats:
            print(show.stats_footer(result) + (" · interrupted" if interrupted else ""))
        return cell

    def _follow(self, box, printer: StreamPrinter):
        """Stream until the process ends; an interrupt stops it (SIGTERM, SIGKILL after stop_grace)."""
        interrupted = False
        try:
            while True:
                try:
                    result = box.wait()
                    break
                except KeyboardInterrupt:
                    interrupted = True
                    self._stop_quietly(box)
        finally:
            printer.close()
        return result, interrupted

    def _stop_quietly(self, box) -> None:
        try:
            box.stop(grace=self.stop_grace)
        except KeyboardInterrupt:  # a second press: no more grace
            box.kill()
        except ContainerError:  # it ended on its own meanwhile
            pass

    # ------------------------------------------------------------ %container

    @line_magic("container")
    def container_line(self, line: str):
        """%container ps | logs NAME [-f] | exec NAME CMD | stop | kill | rm | inspect | images | doctor | gc
        | stats [NAME] | panel. See %container --help."""
        args = _parse(line_parser(), line)
        if args is None:
            return None
        with _user_errors():
            return getattr(self, "verb_" + args.verb)(args)

    def verb_ps(self, args):
        return show.ps_table(sorted((r for r in self.engine.ps(all=True) if args.all or r["status"] == "running"),
                                    key=lambda r: r.get("created", 0), reverse=True), cli.describe_status, cli.human_age)

    def verb_logs(self, args) -> None:
        printer = StreamPrinter(self.output_limit)
        try:
            for stream, data in self.engine.logs(args.container, follow=args.follow):
                printer(stream, data)
        except KeyboardInterrupt:
            printer.close()
            print(f"[stopped following {args.container}; it keeps running]")
            return
        printer.close()

    def verb_exec(self, args) -> None:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            raise SpecError("%container exec NAME CMD...: say what to run, e.g. %container exec web ps")
        printer = StreamPrinter(self.output_limit)
        box = self.engine.exec(args.container, command, env=dict(cli.parse_env(args.env)),
                               workdir=args.workdir, user=args.user, on_output=printer)
        result, interrupted = self._follow(box, printer)
        if interrupted:
            raise CellFailed(f"interrupted: {' '.join(command)} was stopped ({result.describe()})", result)
        if not result.ok:
            raise CellFailed(result.describe(), result)

    def verb_stop(self, args) -> None:
        for ref in args.containers:
            killed = self.engine.stop(ref, grace=args.time)
            print(f"{ref} stopped" + (" (needed SIGKILL)" if killed else ""))

    def verb_kill(self, args) -> None:
        name = args.signal.upper()
        try:
            sig = int(name) if name.isdigit() else signal.Signals(name if name.startswith("SIG") else "SIG" + name)
        except (KeyError, ValueError):
            raise SpecError(f"unknown signal {args.signal!r}: use a name like TERM, INT, KILL or a number") from None
        for ref in args.containers:
            self.engine.kill(ref, int(sig))
            print(f"{ref} sent {signal.Signals(int(sig)).name if int(sig) in signal.Signals._value2member_map_ else sig}")

    def verb_rm(self, args) -> None:
        for ref in args.containers:
            self.engine.rm(ref, force=args.force)
            print(f"{ref} removed")

    def verb_inspect(self, args):
        return show.Text(json.dumps(self.engine.inspect(args.container), indent=2))

    def verb_network(self, args):
        return show.Text(cli.network_verb(self.engine, args))

    def verb_images(self, args):
        return show.images_table(self.engine.images())

    def verb_doctor(self, args):
        from .runtime import doctor

        return show.Text(doctor.report())

    def verb_gc(self, args):
        removed = self.engine.gc()
        return show.Text("\n".join(f"removed {item}" for item in removed) or "nothing to clean up")

    def verb_stats(self, args):
        refs = [args.container] if args.container else [r["id"] for r in self.engine.ps()]
        table = show.Table(("NAME", "MEMORY", "PEAK", "LIMIT", "CPU TIME", "PIDS", "OOM KILLS", "NET I/O", "LINK"),
                           empty="no running containers")
        for ref in refs:
            u = self.engine.stats(ref)
            table.rows.append((u.get("name"), show.size(u.get("memory_bytes"), "-"),
                               show.size(u.get("memory_peak_bytes"), "-"), show.size(u.get("memory_limit")),
                               show.seconds_ns(u.get("cpu_usage_ns")),
                               f"{u.get('pids_current')} / {u.get('pids_limit') or 'unlimited'}", u.get("oom_kills"),
                               show.net_io(u), show.link_shape(u.get("net_shape")) if u.get("network") else "-"))
        return table

    def verb_panel(self, args):
        from .widgets import LimitsPanel

        return LimitsPanel(self)

    # ------------------------------------------------------------ %cgroup

    @line_magic("cgroup")
    def cgroup_line(self, line: str):
        """%cgroup [NAME] [memory=128M cpus=1 pids=64] [--watch]. See %cgroup --help."""
        args = _parse(cgroup_parser(), line)
        if args is None:
            return None
        with _user_errors():
            if args.container is None:
                if args.settings or args.watch:
                    raise SpecError("%cgroup: name the container, e.g. %cgroup web memory=128M")
                return kernel_cgroup_report(self.engine)
            if args.watch:
                from .widgets import Monitor

                monitor = Monitor(self.engine, args.container)
                self.monitors = [m for m in self.monitors if m.running] + [monitor]
                monitor.show()
                return None
            if args.settings:
                return self._update(args.container, args.settings)
            usage = self.engine.stats(args.container)
            files = self.engine._group(args.container, "%cgroup")[2].files()
            return show.cgroup_report(usage.get("name") or args.container, usage, files)

    def _update(self, ref: str, settings: list[str]):
        from .runtime.spec import Limits

        values, link = {}, {}
        for item in settings:
            key, sep, value = item.partition("=")
            key = key.replace("-", "_")
            if sep and key in LINK_KEYS:
                link[key] = value
                continue
            if not sep or key not in SETTING_KEYS:
                keys = sorted(set(SETTING_KEYS) - {"pids_limit"}) + list(LINK_KEYS)
                raise SpecError(f"%cgroup: {item!r} is not KEY=VALUE with KEY one of {', '.join(keys)}")
            values[SETTING_KEYS[key]] = value
        link_before = self.engine.network_usage(ref).get("net_shape") if link else None
        before, after = self.engine.update(ref, Limits.parse(**values) if values else None, **link)
        table = show.limits_change(ref, before, after)
        if link:
            table.rows.append(("link", show.link_shape(link_before),
                               show.link_shape(self.engine.network_usage(ref).get("net_shape"))))
        return table


def kernel_cgroup_report(engine):
    """The kernel's own cgroups (from /proc/self/cgroup) and the lab's subtree."""
    with open("/proc/self/cgroup") as f:
        mine = [line.strip().split(":", 2) for line in f if line.strip()]
    own = show.Table(("HIERARCHY", "CONTROLLERS", "PATH"), [tuple(m) for m in mine],
                     title="this kernel's own cgroup (/proc/self/cgroup)")
    mgr = engine.cgroups
    if mgr is None:
        from .runtime.cgroups import describe_host

        return show.Report([own, show.Text(f"no lab subtree: {describe_host().get('why_not')}")])
    info = mgr.describe()
    roots = info.get("root") or info.get("roots")
    lab = show.Table(("", ""), [("version", f"cgroup v{mgr.version} ({info.get('mode')})"), ("root", roots),
                                ("controllers", " ".join(sorted(info.get("controllers") or []))),
                                ("containers", len(mgr.list()))], title="the lab's subtree")
    return show.Report([own, lab])


def _read_out(io_dir: str, name: str):
    path = os.path.join(io_dir, "out.json")
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_OUT_JSON + 1)
    except FileNotFoundError:
        raise CellFailed(f"--out {name}: the cell wrote no value") from None
    if len(text) > MAX_OUT_JSON:
        raise CellFailed(f"--out {name}: the value is larger than {MAX_OUT_JSON >> 20} MiB of JSON")
    try:
        return json.loads(text)
    except ValueError as e:
        raise CellFailed(f"--out {name}: not JSON ({e})") from None


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
    magics = ContainerMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.configurables.append(magics)  # so %config ContainerMagics.x = ... reaches it
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython) -> None:
    magics = _loaded.pop(id(ipython), None)
    if magics is not None:
        magics.close()
        if magics in ipython.configurables:
            ipython.configurables.remove(magics)
        for kind in ("line", "cell"):
            for name in ("container", "cgroup"):
                ipython.magics_manager.magics[kind].pop(name, None)
