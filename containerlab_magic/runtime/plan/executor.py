"""One loop that runs a start plan: each step in order, timed, undone in reverse on failure.

This is bubblewrap's shape (a list of typed setup steps, one executor) with an
undo per step: whatever failed, exactly the steps that ran are undone, newest
first, and nothing is left behind.  It is the only undo mechanism of a start.

Test hook (faults.py): CONTAINERLAB_FAIL_AT_STEP=<step kind> makes the step of
that kind fail after it ran, so tests can check that every step before it, and
it, are undone; `kill:<step kind>` makes the shim die there instead (gc's case).
"""

from __future__ import annotations

import os
import time
from typing import Protocol

from .. import faults
from .record import SHIM, StepRecord

FAIL_AT_ENV = faults.ENV


class Step(Protocol):
    kind: str

    def run(self, ctx) -> None: ...

    def undo(self, ctx) -> None: ...

    def describe(self, ctx) -> str: ...


class Executor:
    """Runs steps against one context; `records` says what ran and how long it took."""

    def __init__(self, steps: list, ctx, log=None, record: bool = True) -> None:
        self.steps = steps
        self.ctx = ctx
        self.log = log  # where an undo that failed is told (the shim's log)
        self.record = record  # describe each step as it ran (explain); off, the hot path skips it
        self.done: list = []
        self.records: list[StepRecord] = []
        self.started_ns = 0
        self.failed_at: str | None = None  # the kind of the step that failed

    def run(self, since_ns: int = 0, before: StepRecord | None = None) -> None:
        """Run every step.  since_ns and before: when the request came, and a record for
        the work before the plan (reading the request), so the records cover it too."""
        fail_at = os.environ.get(FAIL_AT_ENV)  # the test hook: None in normal use
        last = time.perf_counter_ns()
        self.started_ns = since_ns or last
        if before is not None and self.record:
            self.records.append(StepRecord(before.step, before.description, (last - self.started_ns) // 1000,
                                           before.side))
        try:
            for step in self.steps:
                self.done.append(step)
                step.run(self.ctx)
                if fail_at:
                    faults.point(step.kind, fail_at)
                # A step that hands on to another process (clone) ends where that one's
                # timing begins, so the two never count the same time twice.
                if self.record:
                    now = getattr(step, "ended_ns", lambda ctx: 0)(self.ctx) or time.perf_counter_ns()
                    self.records.append(StepRecord(step.kind, step.describe(self.ctx), (now - last) // 1000, SHIM))
                    last = now
        except BaseException:
            self.failed_at = self.done[-1].kind if self.done else None
            self.undo()
            raise

    def undo(self) -> None:
        """Undo what ran, newest first; one failed undo does not stop the others."""
        while self.done:
            step = self.done.pop()
            try:
                step.undo(self.ctx)
            except Exception as e:  # noqa: BLE001 - keep undoing; gc removes what stays
                if self.log is not None:
                    self.log.exception(f"undo of step {step.kind}: {e}")


def dry_run(steps: list, ctx) -> list[StepRecord]:
    """What the plan would do, without doing it."""
    return [StepRecord(step.kind, step.describe(ctx), None, SHIM) for step in steps]
