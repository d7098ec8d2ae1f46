"""Test hooks: fail, or die, at a named point of a start or another verb.

`CONTAINERLAB_FAIL_AT_STEP=POINT` raises a one-line RuntimeFailure there;
`CONTAINERLAB_FAIL_AT_STEP=kill:POINT` makes the process that reaches it
SIGKILL itself there, as a crash or an OOM kill would.  The points are every
start-plan step's kind (plan/steps.py; the shim), `exec` (the shim, after the
exec'd process was forked), `rm` (the caller, after the container was killed,
before its state is removed), `network-rm` (the caller, after the bridge went,
before its filter and record) and `commit` (after the layer was stored, before
the image is written).  tests/test_faults.py checks that after each, either
the thing works or nothing of it is left once `gc` (or the same verb again)
ran.  Unset in normal use: one environment lookup per point.
"""

from __future__ import annotations

import os
import signal

from .errors import RuntimeFailure

ENV = "CONTAINERLAB_FAIL_AT_STEP"


def point(name: str, wanted: str | None = None) -> None:
    """Fail or die here if the hook names this point (wanted: the hook's value, read once
    by a caller that passes many points)."""
    wanted = os.environ.get(ENV) if wanted is None else wanted
    if not wanted:
        return
    if wanted == name:
        raise RuntimeFailure(f"failing at step {name!r} as {ENV} asks (a test hook)")
    if wanted == "kill:" + name:
        os.kill(os.getpid(), signal.SIGKILL)
