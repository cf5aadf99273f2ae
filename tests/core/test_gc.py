"""dukat.core._gc: a big job's records are frozen, and full passes slowed, only while held."""

from __future__ import annotations

import gc

from dukat.core._gc import hold_gc


def test_a_hold_freezes_slows_full_passes_and_the_last_release_undoes_both() -> None:
    before = gc.get_threshold()
    first, second = hold_gc(), hold_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (before[0], before[1], before[2] * 10)
    first.release()
    first.release()  # once counts
    assert gc.get_threshold() == (before[0], before[1], before[2] * 10)  # one still holds
    second.release()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
