"""`run --explain`: the steps that start a container, as the runtime reports them.

The runtime core builds every container from a start plan of typed steps:
Engine.plan(spec) lists them before running (a dry run), Container.explain()
after a run started with explain=True, each a StepRecord of step,
description, duration_us and side (shim or container).
"""

from __future__ import annotations

from ..formats import steps_of


def plan(engine, spec) -> list:
    """The steps that would start `spec`, without running anything."""
    from .containers import check_image

    check_image(engine, spec.image)
    return steps_of(engine.plan(spec))


def explain_run(box) -> list:
    """The steps that started a container (run with explain=True), timed."""
    return steps_of(box.explain())
