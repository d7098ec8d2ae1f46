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

# Loaded on first use (PEP 562): `run` is on the path of every CLI call and needs
# only .containers, not cp's or top's or inspect's modules.
_WHERE = {
    "containers": ("PsRow", "check_grace", "check_image", "exec_", "exposed", "kill", "logs", "pause", "port", "ps", "rm",
                   "run", "stop", "unpause", "update", "wait"),
    "copy": ("CopyResult", "cp"),
    "explain": ("explain_run", "plan"),
    "inspection": ("inspect",),
    "usage": ("StatsRow", "stats"),
    "system": ("doctor", "gc", "images", "network_create", "network_inspect", "network_ls", "network_rm"),
    "processes": ("Process", "top"),
    "image_verbs": ("ImageLine", "commit", "export", "has_image", "history", "image_inspect", "image_prune",
               "image_list", "import_", "build", "read_containerfile", "parse_build_args", "load", "login", "logout", "pull", "push", "rmi", "save", "tag"),
    "stack": ("stack_down", "stack_logs", "stack_ps", "stack_up"),
    "stack_restart": ("stack_restarter",),
}
_STACK = {"stack_down": "down", "stack_logs": "logs", "stack_ps": "ps", "stack_restarter": "Restarter",
          "stack_up": "up"}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE)


def __getattr__(name: str):
    module = _MODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), _STACK.get(name, name))  # stack_up -> stack.up
    globals()[name] = value  # once found, a plain attribute
    return value


def __dir__() -> list[str]:
    return __all__
