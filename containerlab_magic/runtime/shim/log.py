"""The shim's log: where an internal error keeps its full traceback.

The daemon logs to <state_root>/shim.log (its stderr, opened by the Engine);
a private shim to <state_root>/logs/shim-<pid>.log, removed at a clean exit if
nothing was written.  Both are 0600.  The user sees one line naming the path.
"""

from __future__ import annotations

import os
import sys
import time
import traceback


class ShimLog:
    def __init__(self, path: str, private: bool) -> None:
        self.path = path
        self.private = private
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        self.file = os.fdopen(fd, "a", buffering=1)
        if not private:  # the daemon's stderr is this log too (the Engine opened it so)
            sys.stderr = self.file

    def write(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.file.write(f"{stamp} containerlab shim {os.getpid()}: {message}\n")

    def exception(self, message: str) -> None:
        """`message` and the traceback of the exception being handled."""
        self.write(message + "\n" + traceback.format_exc().rstrip())

    def close(self) -> None:
        empty = self.file.tell() == 0
        self.file.close()
        if self.private and empty:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
