"""Small tools shared by the tests: wait on a condition, count what runs at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any


async def wait_for(predicate: Callable[[], object], *, within: float = 5.0) -> None:
    """Let the loop run until `predicate()` is true; fail after `within` seconds.

    Spins with `sleep(0)` first (most conditions need only a few loop steps), then polls
    with short sleeps so work in threads can progress too.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    spins = 0
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0 if spins < 200 else 0.001)
        spins += 1


def states(scheduler: Any, job_id: str) -> dict[str, Any]:
    """Each task's state in a scheduler's job, by task id."""
    return {task.id: task.state for task in scheduler.get_job(job_id).tasks}


async def finished(scheduler: Any, job_id: str, *, within: float = 10.0) -> Any:
    """`scheduler.wait(job_id)`, but a job that never ends fails the test instead of hanging."""
    return await asyncio.wait_for(scheduler.wait(job_id), within)


async def settle(rounds: int = 50) -> None:
    """Let the loop run whatever is ready now, a few rounds deep (for 'nothing happens')."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Gauge:
    """Counts how many holders are inside at once, and the most there ever were."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self.current += 1
        self.peak = max(self.peak, self.current)
        try:
            yield
        finally:
            self.current -= 1


class Probe:
    """Tasks that start, then block on one gate; records who started and who was cancelled."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.gate = asyncio.Event()

    def task(self, name: str, result: object = None) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            self.started.append(name)
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled.append(name)
                raise
            return result

        run.__qualname__ = f"probe_{name}"
        return run
