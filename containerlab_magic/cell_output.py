"""A container's output in a cell, and how a cell that ran a container ends.

The cell runs on the kernel's main thread, blocked in the engine's select()
on the container's pipes (see select(2)): each chunk is decoded and written
to the cell's stdout or stderr as it arrives, so output streams.  The
kernel's interrupt (SIGINT, which Python raises as KeyboardInterrupt on the
main thread) lands in that select() and stops the container: SIGTERM, then
SIGKILL after a grace period (see signal(7)).

A container that ended badly raises CellFailed, whose `_render_traceback_`
is its one line: IPython shows that line instead of a Python traceback.
"""

from __future__ import annotations

import codecs
import sys
import threading

from .formats import size
from .runtime.errors import ContainerError


class CellFailed(Exception):
    """A container that ended badly: shown as its one line, never as a traceback."""

    def __init__(self, line: str, result=None):
        super().__init__(line)
        self.result = result

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{self}\x1b[0m"]


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
                sys.stderr.write(f"\n[containerlab: output cut at {size(self.cap)}; "
                                 f"{size(self.dropped)} more not shown. "
                                 "Raise %config ContainerMagics.output_limit]\n")
            sys.stdout.flush()
            sys.stderr.flush()


def follow(box, printer: StreamPrinter, grace: float):
    """Stream until the process ends; an interrupt stops it (SIGTERM, SIGKILL after `grace`).

    (Result, interrupted)."""
    interrupted = False
    try:
        while True:
            try:
                result = box.wait()
                break
            except KeyboardInterrupt:
                interrupted = True
                _stop_quietly(box, grace)
    finally:
        printer.close()
    return result, interrupted


def _stop_quietly(box, grace: float) -> None:
    try:
        box.stop(grace=grace)
    except KeyboardInterrupt:  # a second press: no more grace
        box.kill()
    except ContainerError:  # it ended on its own meanwhile
        pass
