"""The shim's log: where an internal error keeps its full traceback.

The daemon logs to <state_root>/shim.log (its stderr, opened by the Engine);
a private shim to <state_root>/logs/shim-<pid>.log, made only when there is
something to say (so a shim that dies leaves no empty file).  Both are 0600.
The user sees one line naming the path.
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
        self.file = None
        if not private:  # the daemon's stderr is this log too (the Engine opened it so)
            sys.stderr = self._open()

    def _open(self):
        if self.file is None:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, 0o600)
            self.file = os.fdopen(fd, "a", buffering=1)
        return self.file

    def write(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._open().write(f"{stamp} containerlab shim {os.getpid()}: {message}\n")

    def exception(self, message: str) -> None:
        """`message` and the traceback of the exception being handled."""
        self.write(message + "\n" + traceback.format_exc().rstrip())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
