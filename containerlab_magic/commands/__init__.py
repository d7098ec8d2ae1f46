"""The commands layer: one function per verb, over the Engine, returning data.

Both faces call these and render what comes back: the CLI (cli.py) as text
and exit codes, the magics (magics.py) as HTML.  Nothing here prints, and
nothing here parses command lines (parsers.py does, for both faces).

    from containerlab_magic import commands
    from containerlab_magic.runtime import Engine

    engine = Engine(daemon=True)
    rows = commands.ps(engine, all=True, filters=parsers.parse_filters(["label=course=net101"]))

Every verb takes the Engine first.  Bad input raises SpecError (one line for
the user, exit 125 in the CLI, UsageError in a notebook); a missing container
NotFound; a container in the wrong state Conflict.
"""

from __future__ import annotations

from .containers import (PsRow, check_image, exec_, kill, logs, pause, port, ps, rm, run, stop, unpause, update,
                         wait)
from .copy import CopyResult, cp
from .explain import Step, explain_run, plan
from .inspect import inspect
from .stats import StatsRow, stats
from .system import doctor, gc, images, network_create, network_inspect, network_ls, network_rm
from .top import Process, top

__all__ = [
    "PsRow", "check_image", "exec_", "kill", "logs", "pause", "port", "ps", "rm", "run", "stop", "unpause",
    "update", "wait", "CopyResult", "cp", "Step", "explain_run", "plan", "inspect", "StatsRow", "stats",
    "doctor", "gc", "images", "network_create", "network_inspect", "network_ls", "network_rm", "Process", "top",
]
