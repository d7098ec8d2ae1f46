"""What explain shows: one record per step of a container's start, as it ran.

A record names the real thing the step touched (the cgroup's path, the veth's
name, the clone flags, the hostname actually set), how long it took in
microseconds (None in a dry run) and which side ran it: the shim, or the
container's PID 1 between clone(2) and execve(2).

PID 1 cannot return records to the shim by any shared memory: it writes them,
when explain was asked for (and only then), as one JSON line to its
close-on-exec error pipe just before execve (see `Timeline`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

SHIM, CONTAINER = "shim", "container"
EXPLAIN_TAG = b'{"explain":'  # how PID 1's records line starts on its error pipe


@dataclass(frozen=True)
class StepRecord:
    step: str  # short kind: "name", "state", "cgroup", "clone", "network", ...
    description: str  # one line naming the real thing it touched
    duration_us: int | None  # None in a dry run
    side: str  # "shim" or "container"

    def to_json(self) -> list:
        return [self.step, self.description, self.duration_us, self.side]

    @classmethod
    def from_json(cls, data: list) -> "StepRecord":
        return cls(*data)


def accounted_us(records: list[StepRecord]) -> int:
    """The time the records account for, without counting overlap twice: a new PID 1
    times its steps from the clone(2) call on, while the shim's steps after clone run
    beside them (PID 1's "wait" step covers them); a warm one runs after the shim's go."""
    warm = any(r.step == "clone" and r.description.startswith("claim the warm") for r in records)
    total, overlapping = 0, False
    for r in records:
        if r.side == CONTAINER or not overlapping:
            total += r.duration_us or 0
        if r.side == SHIM and r.step == "clone" and not warm:
            overlapping = True  # the shim's steps from here on overlap PID 1's
    return total


class Timeline:
    """PID 1's own timings: `mark(step, description)` closes the step that ran since
    the previous mark.  Disabled (explain not asked for), every call is a no-op."""

    __slots__ = ("enabled", "records", "last")

    def __init__(self, enabled: bool, since_ns: int = 0) -> None:
        """since_ns: when the shim called clone (CLOCK_MONOTONIC), so the first step
        counts the time until this process ran too."""
        self.enabled = enabled
        self.records: list[list] = []
        self.last = (since_ns or time.perf_counter_ns()) if enabled else 0

    def restart(self, since_ns: int) -> None:
        """Time from since_ns (a warm PID 1 learns only at its go that explain was asked,
        and its first step counts from the go, its wake-up included)."""
        self.enabled = True
        self.last = since_ns or time.perf_counter_ns()

    def mark(self, step: str, description: str) -> None:
        if self.enabled:
            now = time.perf_counter_ns()
            self.records.append([step, description, (now - self.last) // 1000, CONTAINER])
            self.last = now

    def send(self, fd: int) -> None:
        """One line on PID 1's error pipe: the records and when exec began (CLOCK_MONOTONIC ns,
        the clock perf_counter_ns reads on Linux, so the shim can compare it with its own)."""
        if self.enabled:
            line = json.dumps({"explain": self.records, "exec_ns": time.perf_counter_ns()}) + "\n"
            os.write(fd, line.encode())


def split_error_pipe(data: bytes) -> tuple[dict | None, bytes]:
    """PID 1's error pipe holds an explain line (if asked for), then an error (if any)."""
    if not data.startswith(EXPLAIN_TAG):
        return None, data
    line, _, rest = data.partition(b"\n")
    try:
        return json.loads(line), rest
    except ValueError:
        return None, rest
