"""Keep Python's cyclic garbage collector off the scheduler's long-lived records.

A job of 100,000 tasks is a million long-lived objects. Every full collection walks all of
them, and CPython 3.11 runs a full collection each time the old generation grows by a
quarter, so a big job pays again and again for objects that cannot be garbage while it runs:
measured here, two thirds of the time of a 100k-task DAG went to the collector.

So, for a big job: no collection while its records are built (`gc_paused`), and then
`gc.freeze()` moves everything alive into the permanent generation, which collections skip,
until the last big job has finished (`hold_gc`). While held, full collections also come a
tenth as often (the third threshold, times 10): the job's own records churn through the old
generation (events, results) and each full pass walks them all, a sixth of a 100k-task job's
run time otherwise. Collection of new objects goes on as usual; cyclic garbage waits longer
for a full pass, and what already existed when the job started waits until the end —
delayed, never leaked. Pass `gc_hold_min_tasks=None` to `Scheduler` to leave the collector alone.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_holds = 0
_thresholds: tuple[int, int, int] | None = None  # the collector's own, while held
_FULL_PASSES_SLOWER = 10


@contextmanager
def gc_paused(pause: bool = True) -> Iterator[None]:
    """No automatic collection inside the block (if `pause`); restored afterwards."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class GcHold:
    """One holder of the freeze; `release()` once, and the last one out unfreezes."""

    __slots__ = ("_released",)

    def __init__(self) -> None:
        self._released = False

    def refresh(self) -> None:
        """Freeze what became alive since (a builder that keeps growing calls this)."""
        if not self._released:
            gc.freeze()

    def release(self) -> None:
        global _holds
        if self._released:
            return
        self._released = True
        _holds -= 1
        if _holds == 0:
            gc.unfreeze()
            _restore_thresholds()


def hold_gc() -> GcHold:
    """Freeze what is alive now (see the module docstring) until the hold is released."""
    global _holds, _thresholds
    _holds += 1
    if _thresholds is None:
        _thresholds = gc.get_threshold()
        young, middle, old = _thresholds
        gc.set_threshold(young, middle, old * _FULL_PASSES_SLOWER)
    gc.freeze()
    return GcHold()


def _restore_thresholds() -> None:
    global _thresholds
    if _thresholds is not None:
        gc.set_threshold(*_thresholds)
        _thresholds = None
