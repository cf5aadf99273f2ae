"""Fixtures of the engine's tests: schedulers on a manual clock, closed after each test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from dukat.core import ManualClock, Scheduler


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make(clock: ManualClock) -> AsyncIterator[Callable[..., Scheduler]]:
    """`make(**options)`: a Scheduler on `clock`; every one made is closed after the test."""
    made: list[Scheduler] = []

    def factory(**options: Any) -> Scheduler:
        options.setdefault("clock", clock)
        made.append(Scheduler(**options))
        return made[-1]

    yield factory
    for scheduler in made:
        await asyncio.wait_for(scheduler.close(), 10)  # a close that hangs fails instead
