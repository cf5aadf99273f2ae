"""Following a job to its end (`dukat run`, `dukat watch`): the live view, plain lines or JSON,
and what Ctrl-C does (the job keeps running unless asked otherwise)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from dukat.client import JobHandle
from dukat.core.breaker import BreakerTransition
from dukat.core.events import (
    Event,
    JobStateChanged,
    Snapshot,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    TaskWaiting,
)
from dukat.core.states import JobState
from dukat.display import JobView
from dukat.errors import DaemonUnavailableError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "event_json",
    "follow",
    "until_interrupted",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


async def follow(handle: JobHandle, output: str) -> JobState:
    """Show the job until it ends (`output`: auto, plain or json); its final state.

    A daemon that stays away past the connect timeout ends the command, not the job: the
    error says how to follow it again.
    """
    try:
        return await _follow(handle, output)
    except DaemonUnavailableError as error:
        raise DaemonUnavailableError(
            error.details,
            code=error.code,
            message=f"{error} (job {handle.job_id} goes on in the daemon: once it is back, "
            f"`dukat watch {handle.job_id}` follows it again)",
        ) from error


async def _follow(handle: JobHandle, output: str) -> JobState:
    if output == "json":
        async for event in handle.events():
            print(json.dumps(event_json(event)), flush=True)
    else:
        async with handle.track(replay=True) as tracker:
            live = None if output == "auto" else False
            await JobView(tracker, file=sys.stdout, live=live).show()
    return (await handle.get()).state


async def until_interrupted(
    work: Awaitable[Any], on_interrupt: Callable[[], Awaitable[None]]
) -> Any:
    """`work`'s result; on Ctrl-C (SIGINT) stop it, await `on_interrupt()`, and raise
    KeyboardInterrupt (the caller exits 130)."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    task = asyncio.ensure_future(work)
    stop = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        stop.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await on_interrupt()
    raise KeyboardInterrupt


def event_json(event: Event | BreakerTransition) -> dict[str, Any]:
    """An event as one JSON object: `sequence`, `job_id`, `time`, `type` and its own fields."""
    if isinstance(event, BreakerTransition):
        return {
            "type": "breaker_state",
            "time": event.time,
            "name": event.name,
            "from_state": event.from_state.name.lower(),
            "to_state": event.to_state.name.lower(),
            "reason": event.reason,
        }
    head: dict[str, Any] = {"sequence": event.sequence, "job_id": event.job_id, "time": event.time}
    if isinstance(event, TaskStateChanged):
        return {
            **head,
            "type": "task_state",
            "task_id": event.task_id,
            "state": event.state.value,
            "attempt": event.attempt,
            "message": event.message,
        }
    if isinstance(event, JobStateChanged):
        return {**head, "type": "job_state", "state": event.state.value, "message": event.message}
    if isinstance(event, TaskProgress):
        return {
            **head,
            "type": "progress",
            "task_id": event.task_id,
            "fraction": event.fraction,
            "message": event.message,
        }
    if isinstance(event, TaskOutput):
        return {
            **head,
            "type": "output",
            "task_id": event.task_id,
            "stream": event.stream,
            "text": event.text,
        }
    if isinstance(event, TaskWaiting):
        return {
            **head,
            "type": "task_waiting",
            "task_id": event.task_id,
            "waiting_for": event.waiting_for,
            "queue": event.queue,
        }
    if isinstance(event, Snapshot):
        job = event.job
        return {
            **head,
            "type": "snapshot",
            "state": job.state.value,
            "counts": {state.value: count for state, count in job.task_counts.items()},
        }
    return {**head, "type": type(event).__name__}
