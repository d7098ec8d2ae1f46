"""`stats`: usage against limits, with CPU % measured over a window.

CPU % needs two readings of the cgroup's CPU time: every container is read,
then read again `interval` seconds later, and the difference over the wall
time between the two is the share of one CPU used (100% = one CPU busy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

from ..runtime.errors import Conflict, NotFound


@dataclass
class StatsRow:
    id: str
    name: str
    cpu_percent: float | None
    usage: dict  # Engine.stats(): memory_bytes, memory_limit, pids_current, oom_kills, net_rx_bytes, ...


def _read(engine, refs: list[str]) -> dict[str, dict]:
    readings = {}
    for ref in refs:
        try:
            readings[ref] = engine.stats(ref)
        except (Conflict, NotFound):
            pass  # ended (or removed) meanwhile: it drops out of the table
    return readings


def stats(engine, refs: list[str] | None = None, interval: float = 1.0) -> Iterator[list[StatsRow]]:
    """A table's worth of rows every `interval` seconds, until none of the containers
    runs.  refs None: every running container (then, as they come and go)."""
    previous = _read(engine, refs if refs is not None else [r["id"] for r in engine.ps()])
    if refs is not None and not previous:
        for ref in refs:
            engine.stats(ref)  # raises the reason: no such container, not running, no cgroup
    while previous:
        time.sleep(interval)  # the measuring window, not a wait for an event
        current = _read(engine, refs if refs is not None else [r["id"] for r in engine.ps()])
        rows = []
        for ref, usage in current.items():
            before = previous.get(ref)
            cpu = None
            if before and usage.get("cpu_usage_ns") is not None and before.get("cpu_usage_ns") is not None:
                wall = usage["time"] - before["time"]
                cpu = 100.0 * (usage["cpu_usage_ns"] - before["cpu_usage_ns"]) / 1e9 / wall if wall > 0 else 0.0
            rows.append(StatsRow(usage["id"], usage.get("name") or usage["id"][:12], cpu, usage))
        yield rows
        previous = current
