"""The CLI's image verbs: pull, push, login, logout, tag, images, rmi, image ..., history,
save, load, import, export, commit, build.

Parsing is in parsers.py, the work in commands/image_verbs.py;
this module renders text.  Pull and push show a line per layer: on a terminal
the lines are rewritten in place (ANSI cursor-up), otherwise a plain line is
printed when a layer changes status (never per chunk: the store's callback
fires per 64 KiB from its worker threads, so the renderer is locked and
redraws at most every 100 ms).
"""

from __future__ import annotations

import json
import sys
import threading
import time

from . import parsers
from .parsers import PROG
from .runtime.errors import ContainerError, SpecError


class LayerProgress:
    """progress(layer_digest, done, total, status) from worker threads -> a line per layer."""

    INTERVAL = 0.1

    def __init__(self, stream=None, tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.lock = threading.Lock()
        self.layers: dict[str, tuple[int, int, str]] = {}
        self.drawn = 0  # lines on screen (tty)
        self.last = 0.0

    def __call__(self, digest: str, done: int, total: int, status: str) -> None:
        with self.lock:
            before = self.layers.get(digest)
            self.layers[digest] = (done, total, status)
            if self.tty:
                now = time.monotonic()
                if before is None or before[2] != status or now - self.last >= self.INTERVAL:
                    self._redraw()
                    self.last = now
            elif before is None or before[2] != status:
                self.stream.write(self._line(digest) + "\n")
                self.stream.flush()

    def _line(self, digest: str) -> str:
        from .formats import size

        done, total, status = self.layers[digest]
        short = digest.split(":")[-1][:12]
        if status in ("downloading", "uploading") and total:
            width = 30
            filled = int(width * min(done, total) / total)
            return f"{short}: {status:<11} [{'=' * filled}{' ' * (width - filled)}] {size(done)} / {size(total)}"
        return f"{short}: {status}"

    def _redraw(self) -> None:
        out = "\033[F" * self.drawn if self.drawn else ""
        out += "".join("\033[2K" + self._line(d) + "\n" for d in self.layers)
        self.drawn = len(self.layers)
        self.stream.write(out)
        self.stream.flush()

    def finish(self) -> None:
        with self.lock:
            if self.tty and self.layers:
                self._redraw()


def _engine():
    from .cli import _engine as engine

    return engine()


def pull_with_progress(engine, ref: str, quiet: bool = False) -> str:
    """Pull, showing each layer; the digest line as docker prints it."""
    from . import commands

    progress = None if quiet else LayerProgress()
    name, digest = commands.pull(engine, ref, progress=progress)
    if progress:
        progress.finish()
        print(f"Digest: {digest}", file=sys.stderr)
        print(f"Status: pulled {name}", file=sys.stderr)
    return name


def cmd_pull(args) -> int:
    print(pull_with_progress(_engine(), args.image, args.quiet))
    return 0


def cmd_push(args) -> int:
    from . import commands

    progress = None if args.quiet else LayerProgress()
    name, digest = commands.push(_engine(), args.image, args.target, progress=progress)
    if progress:
        progress.finish()
    print(f"{name}: digest: {digest}")
    return 0


def cmd_login(args) -> int:
    from . import commands

    if not args.password_stdin:
        raise SpecError(f"login: give the password on stdin: `echo $PW | {PROG} login -u USER --password-stdin "
                        f"{args.server}` (it is never taken as an argument)")
    password = sys.stdin.read().rstrip("\r\n")
    path = commands.login(args.server, args.username, password)
    print(f"Login Succeeded (credentials kept in {path})")
    return 0


def cmd_logout(args) -> int:
    from . import commands

    commands.logout(args.server)
    print(f"Removing login credentials for {args.server}")
    return 0


def cmd_tag(args) -> int:
    from . import commands

    commands.tag(_engine(), args.source, args.target)
    return 0


def cmd_images(args) -> int:
    from . import commands, formats

    print(formats.text_table(formats.image_lines_table(commands.image_list(_engine()))))
    return 0


def cmd_rmi(args) -> int:
    from . import commands, formats

    engine, status = _engine(), 0
    for name in args.images:  # as docker: each tried, failures reported
        try:
            freed = commands.rmi(engine, name, force=args.force)
            for ref in freed.get("untagged", ()):
                print(f"Untagged: {ref}")
            print(formats.freed_line(freed))
        except ContainerError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            status = e.exit_code
    return status


def cmd_image_prune(args) -> int:
    from . import commands, formats

    print(formats.freed_line(commands.image_prune(_engine())))
    return 0


def cmd_image_inspect(args) -> int:
    from . import commands

    engine, documents, status = _engine(), [], 0
    for name in args.images:
        try:
            documents.append(commands.image_inspect(engine, name))
        except ContainerError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            status = e.exit_code
    if documents or not status:
        print(json.dumps(documents, indent=2))
    return status


def cmd_history(args) -> int:
    from . import commands, formats

    print(formats.text_table(formats.history_table(commands.history(_engine(), args.image))))
    return 0


def cmd_save(args) -> int:
    from . import commands

    commands.save(_engine(), args.images, args.output, args.format)
    return 0


def cmd_load(args) -> int:
    from . import commands

    for name in commands.load(_engine(), args.input):
        print(f"Loaded image: {name}")
    return 0


def cmd_import(args) -> int:
    from . import commands

    changes = parsers.parse_changes(args.change) if args.change else None
    _, digest = commands.import_(_engine(), args.file, args.image, changes)
    print(digest)
    return 0


def cmd_export(args) -> int:
    from . import commands

    commands.export(_engine(), args.container, args.output)
    return 0


def cmd_commit(args) -> int:
    from . import commands

    _, digest = commands.commit(_engine(), args.container, args.image, change_lines=args.change,
                                comment=args.message)
    print(digest)
    return 0


def cmd_build(args) -> int:
    from . import commands

    text, where = commands.read_containerfile(args.context, args.file)

    def say(line: str) -> None:
        print(line, flush=True)

    def on_output(stream: str, data: bytes) -> None:
        target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        target.write(data)
        target.flush()

    commands.build(_engine(), args.context, text, args.tag, build_args=commands.parse_build_args(args.build_arg),
                   say=say, on_output=on_output, limits=parsers.build_limits(args), network=args.network,
                   where=where)
    return 0


VERBS = {
    "pull": cmd_pull, "push": cmd_push, "login": cmd_login, "logout": cmd_logout, "tag": cmd_tag,
    "images": cmd_images, "image_ls": cmd_images, "rmi": cmd_rmi, "image_prune": cmd_image_prune,
    "image_inspect": cmd_image_inspect, "history": cmd_history, "image_history": cmd_history, "save": cmd_save,
    "load": cmd_load, "import": cmd_import, "export": cmd_export, "commit": cmd_commit,
    "build": cmd_build,
}
