"""The runtime core: containers from namespaces, cgroups and overlays.

Nothing here imports IPython or ipywidgets.  Names are loaded lazily so that
the shim, which imports this package, starts quickly.
"""

from __future__ import annotations

__all__ = ["Engine", "Container", "Result", "ContainerSpec", "Limits", "Mount", "PortMap", "ContainerError",
           "StepRecord", "Status"]

_WHERE = {
    "Engine": "engine", "Container": "container", "Result": "container",
    "StepRecord": "plan.record", "Status": "state",
    "ContainerSpec": "spec", "Limits": "spec", "Mount": "spec", "PortMap": "spec",
    "ContainerError": "errors",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        module = importlib.import_module(f".{_WHERE[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(name)
