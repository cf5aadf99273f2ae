"""client.breaker(name): the daemon's shared breaker with the engine's CircuitBreaker API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import dukat
from dukat.client import Client, RemoteBreaker
from dukat.core.breaker import CircuitBreakerConfig, CircuitBreakerState
from dukat.core.clock import ManualClock
from dukat.core.scheduler import Scheduler
from dukat.errors import CircuitBreakerError, DaemonNotFoundError
from tests.client.daemon import Daemon, running_daemon

pytest.importorskip(
    "dukatd.breaker_service", reason="CircuitBreakerService is not in the daemon yet"
)

FAST = CircuitBreakerConfig(failure_threshold=2, timeout_seconds=0.2)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def daemon(clock: ManualClock) -> AsyncIterator[Daemon]:
    """The daemon's breakers time out on a clock the tests move, not by waiting."""
    async with running_daemon(scheduler=Scheduler(clock=clock)) as running:
        yield running


@pytest.fixture
def configured(daemon: Daemon) -> Daemon:
    daemon.scheduler.breakers.configure("db", FAST)
    return daemon


async def test_by_hand_allow_then_report_opens_after_the_threshold(
    client: Client, configured: Daemon
) -> None:
    breaker = client.breaker("db")
    assert isinstance(breaker, RemoteBreaker)
    for _ in range(2):
        assert await breaker.allow_request()
        await breaker.failure(ConnectionError("refused"))
    assert breaker.state is CircuitBreakerState.OPEN
    assert configured.scheduler.breakers.get("db").state is CircuitBreakerState.OPEN
    assert await breaker.acquire() is None
    assert 0 < breaker.retry_after <= 0.2
    with pytest.raises(CircuitBreakerError) as caught:
        async with breaker:
            pass
    assert caught.value.name == "db"


async def test_async_with_and_the_decorator_count_like_the_engines(
    client: Client, configured: Daemon, clock: ManualClock
) -> None:
    breaker = client.breaker("db")
    calls = 0

    @breaker
    async def call(fail: bool) -> str:
        nonlocal calls
        calls += 1
        if fail:
            raise TimeoutError("slow")
        return "ok"

    assert await call(False) == "ok"
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await call(True)
    with pytest.raises(CircuitBreakerError):
        await call(False)
    assert calls == 3  # the refused call never ran

    await clock.advance(0.2)  # the breaker's timeout: it lets a trial call through
    async with breaker:
        assert breaker.state is CircuitBreakerState.HALF_OPEN
    assert breaker.state is CircuitBreakerState.CLOSED


async def test_a_cancelled_block_gives_the_trial_permit_back(
    client: Client, configured: Daemon, clock: ManualClock
) -> None:
    breaker = client.breaker("db")
    for _ in range(2):
        assert await breaker.allow_request()
        await breaker.failure()
    await clock.advance(0.2)
    inside = asyncio.Event()

    async def hold() -> None:
        async with breaker:
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    holder = asyncio.create_task(hold())
    await asyncio.wait_for(inside.wait(), 5)
    assert await breaker.acquire() is None  # the one trial slot is taken
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    assert await breaker.acquire() is not None


async def test_two_clients_share_one_breaker(daemon: Daemon, configured: Daemon) -> None:
    async with dukat.connect(daemon.address) as one, dukat.connect(daemon.address) as two:
        for _ in range(2):
            assert await one.breaker("db").allow_request()
            await one.breaker("db").failure()
        assert await two.breaker("db").refresh() is CircuitBreakerState.OPEN
        assert not await two.breaker("db").allow_request()
        await two.breaker("db").reset()
        assert await one.breaker("db").allow_request()


async def test_reporting_without_a_permit_names_the_fix(client: Client, daemon: Daemon) -> None:
    with pytest.raises(RuntimeError, match="acquire"):
        await client.breaker("fresh").success()
    with pytest.raises(DaemonNotFoundError):
        await client.breaker("never-made").refresh()
    with pytest.raises(ValueError, match="needs a name"):
        client.breaker("")
