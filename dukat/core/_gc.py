"""Keep Python's cyclic garbage collector off the scheduler's long-lived records.

A job of 100,000 tasks is a million long-lived objects. Every full collection walks all of
them, and CPython 3.11 runs a full collection each time the old generation grows by a
quarter, so a big job pays again and again for objects that cannot be garbage while it runs:
measured here, two thirds of the time of a 100k-task DAG went to the collector.

So, for a big job: no collection while its records are built (`gc_paused`), and then
`gc.freeze()` moves everything alive into the permanent generation, which collections skip,
until the last big job has finished (`hold_gc`). Collection of new objects goes on as usual;
only cyclic garbage that already existed when the job started waits until then — delayed,
never leaked. Pass `gc_hold_min_tasks=None` to `Scheduler` to leave the collector alone.
An application that calls `gc.freeze()` itself should: the last hold's end unfreezes
everything (`gc.unfreeze()` has no finer grain), its own frozen objects too.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_holds = 0


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

    @property
    def released(self) -> bool:
        return self._released

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


def hold_gc() -> GcHold:
    """Freeze what is alive now (see the module docstring) until the hold is released."""
    global _holds
    _holds += 1
    gc.freeze()
    return GcHold()


def promote_new() -> None:
    """Move every object alive now to the old generation, unexamined.

    For a batch of long-lived records just built with the collector paused (a result per
    task): otherwise the young collections walk them all on their way there, and their
    number in the old generation brings on a full collection that walks everything else too.
    Cyclic garbage made before the call waits for the next full collection.
    """
    gc.freeze()
    if _holds == 0:
        gc.unfreeze()
