"""Stopping: drain (start nothing new, let running attempts end within a grace, then cancel
them) and close (cancel every job, wait for the slots within a grace, stop them).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable

from dukat.core._endings import Endings
from dukat.core._requests import CancelRequest
from dukat.core._runs import JobRun
from dukat.core._slots import Slots, nothing_to_pick
from dukat.core._task_states import RUNNING
from dukat.core.clock import Clock
from dukat.errors import ValidationError

__all__ = ["close", "drain"]


async def drain(
    slots: Slots,
    endings: Endings,
    jobs: Iterable[JobRun],
    clock: Clock,
    grace: float,
    before_cancel: Callable[[], object] | None,
) -> int:
    """See `Scheduler.drain`: how many running attempts it cancelled."""
    if not isinstance(grace, int | float) or not grace >= 0 or not math.isfinite(grace):
        raise ValidationError(f"grace must be a finite number of seconds >= 0, not {grace!r}")
    slots.draining = True
    slots.pick = nothing_to_pick
    slots.retire_idle()  # idle slots end now; busy ones after their attempt
    busy = slots.busy()
    if busy:
        over = asyncio.get_running_loop().create_future()
        timer = clock.call_later(grace, _resolve, over)
        try:
            while busy and not over.done():
                _, busy = await asyncio.wait(busy | {over}, return_when=asyncio.FIRST_COMPLETED)
                busy.discard(over)
        finally:
            timer.cancel()
    if before_cancel is not None:
        before_cancel()
    cancelled = 0
    for job in list(jobs):
        if job.state.is_terminal:
            continue
        running = [run for run in job.tasks.values() if run.state is RUNNING]
        if running:
            cancelled += endings.cancel_runs(job, running, "cancelled: the drain's grace ran out")
    return cancelled


async def close(
    slots: Slots, endings: Endings, jobs: Iterable[JobRun], grace: float | None
) -> None:
    """See `Scheduler.close`."""
    slots.closed = True
    for job in list(jobs):
        if not job.state.is_terminal:
            endings.cancel_request(job, CancelRequest())
    slots.retire_idle()
    tasks = slots.busy()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
