"""The start plan: typed steps (run / undo / describe) and one executor.

record.py   StepRecord (what explain shows) and PID 1's Timeline
context.py  StartContext: what the steps of one start share
steps.py    the shim's steps, one small class each
build.py    which steps a spec takes (and which a spare runs ahead)
executor.py the one loop: run in order, time each, undo in reverse on failure
"""

from .record import StepRecord

__all__ = ["StepRecord"]
