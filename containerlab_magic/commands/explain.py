"""`run --explain`: the steps that start a container, as the runtime reports them.

The runtime core builds every container from a start plan of typed steps
(Engine.plan(spec) before running, Container.explain() after, each a record
of step, description, duration_us and side).  Until the Engine offers them,
`plan` falls back to the rootfs module's description of the same sequence,
without timings.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..formats import steps_of


@dataclass(frozen=True)
class Step:
    """The shape of the runtime's StepRecord, for the fallback."""

    step: str
    description: str
    duration_us: int | None = None
    side: str = ""


def plan(engine, spec) -> list:
    """The steps that would start `spec`, without running anything."""
    from .containers import check_image

    check_image(engine, spec.image)
    if hasattr(engine, "plan"):
        return steps_of(engine.plan(spec))
    from ..runtime import rootfs
    from ..runtime.images import ImageStore

    image = ImageStore(engine.data_root).resolve(spec.image)
    return [Step(str(i), line) for i, line in enumerate(rootfs.explain(image, spec), 1)]


def explain_run(box) -> list | None:
    """The steps that started a container, timed; None if this runtime cannot tell."""
    explain = getattr(box, "explain", None)
    return steps_of(explain()) if explain is not None else None
