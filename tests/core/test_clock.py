"""Clocks: ManualClock moves only when told and fires its timers in order; SystemClock is real."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from dukat.core.clock import ManualClock, SystemClock
from tests.helpers import wait_for

# -- ManualClock: time ----------------------------------------------------------------------


def test_manual_clock_starts_where_told_and_stands_still():
    clock = ManualClock(5.0)
    assert clock.now() == 5.0
    assert clock.now() == 5.0


def test_manual_clock_wall_time_starts_at_wall_start():
    clock = ManualClock(10.0, wall_start=1_000.0)
    assert clock.wall() == 1_000.0


async def test_advance_moves_now_and_wall_by_the_same_amount():
    clock = ManualClock(10.0, wall_start=1_000.0)
    await clock.advance(2.5)
    assert clock.now() == 12.5
    assert clock.wall() == 1_002.5


async def test_advance_by_zero_keeps_the_time():
    clock = ManualClock(3.0)
    await clock.advance(0)
    assert clock.now() == 3.0


@pytest.mark.parametrize("seconds", [-1, -0.001, math.nan, math.inf])
async def test_advance_refuses_to_move_backwards_or_by_a_non_finite_amount(seconds):
    clock = ManualClock(3.0)
    with pytest.raises(ValueError, match="advance"):
        await clock.advance(seconds)
    assert clock.now() == 3.0


# -- ManualClock: timers --------------------------------------------------------------------


async def test_timers_fire_in_deadline_order_on_advance():
    clock = ManualClock()
    fired: list[str] = []
    clock.call_later(3, fired.append, "c")
    clock.call_later(1, fired.append, "a")
    clock.call_later(2, fired.append, "b")
    await clock.advance(10)
    assert fired == ["a", "b", "c"]


async def test_timers_with_the_same_deadline_fire_in_the_order_they_were_set():
    clock = ManualClock()
    fired: list[int] = []
    for number in range(5):
        clock.call_later(1, fired.append, number)
    await clock.advance(1)
    assert fired == [0, 1, 2, 3, 4]


async def test_only_timers_that_come_due_fire():
    clock = ManualClock()
    fired: list[str] = []
    clock.call_later(1, fired.append, "soon")
    clock.call_later(5, fired.append, "later")
    await clock.advance(1)  # a deadline exactly at the new time is due
    assert fired == ["soon"]
    assert clock.pending_timers == 1
    await clock.advance(3.999)
    assert fired == ["soon"]
    await clock.advance(0.001)
    assert fired == ["soon", "later"]


async def test_nothing_fires_without_advance():
    clock = ManualClock()
    fired: list[str] = []
    clock.call_later(0, fired.append, "now")
    await asyncio.sleep(0)
    assert fired == []
    await clock.advance(0)
    assert fired == ["now"]


async def test_each_timer_sees_its_own_deadline_as_now():
    clock = ManualClock(100.0)
    seen: list[float] = []
    clock.call_later(1, lambda: seen.append(clock.now()))
    clock.call_later(4, lambda: seen.append(clock.now()))
    await clock.advance(10)
    assert seen == [101.0, 104.0]
    assert clock.now() == 110.0


async def test_a_negative_delay_is_due_at_once():
    clock = ManualClock(1.0)
    fired: list[float] = []
    clock.call_later(-5, lambda: fired.append(clock.now()))
    await clock.advance(0)
    assert fired == [1.0]


async def test_a_cancelled_timer_does_not_fire():
    clock = ManualClock()
    fired: list[str] = []
    handle = clock.call_later(1, fired.append, "cancelled")
    clock.call_later(2, fired.append, "kept")
    handle.cancel()
    assert clock.pending_timers == 1
    await clock.advance(5)
    assert fired == ["kept"]


async def test_a_timer_cancelled_by_an_earlier_one_does_not_fire():
    clock = ManualClock()
    fired: list[str] = []
    victim = clock.call_later(2, fired.append, "victim")
    clock.call_later(1, victim.cancel)
    await clock.advance(5)
    assert fired == []


async def test_a_timer_fires_once_and_cancelling_it_afterwards_is_harmless():
    clock = ManualClock()
    fired: list[str] = []
    handle = clock.call_later(1, fired.append, "once")
    await clock.advance(1)
    handle.cancel()
    await clock.advance(10)
    assert fired == ["once"]


async def test_a_timer_set_by_a_firing_timer_fires_in_the_same_advance_if_due():
    clock = ManualClock()
    fired: list[tuple[str, float]] = []

    def first() -> None:
        fired.append(("first", clock.now()))
        clock.call_later(2, lambda: fired.append(("second", clock.now())))

    clock.call_later(1, first)
    await clock.advance(5)
    assert fired == [("first", 1.0), ("second", 3.0)]


async def test_a_timer_set_by_a_firing_timer_waits_if_not_yet_due():
    clock = ManualClock()
    fired: list[str] = []
    clock.call_later(1, lambda: clock.call_later(10, fired.append, "late"))
    await clock.advance(5)
    assert fired == []
    await clock.advance(6)
    assert fired == ["late"]


async def test_pending_timers_and_repr_show_the_live_state():
    clock = ManualClock(2.0)
    clock.call_later(1, lambda: None)
    clock.call_later(2, lambda: None).cancel()
    assert clock.pending_timers == 1
    assert repr(clock) == "<ManualClock now=2 timers:1>"


# -- ManualClock: sleep ---------------------------------------------------------------------


async def test_sleep_wakes_when_time_is_advanced_far_enough():
    clock = ManualClock()
    sleeper = asyncio.create_task(clock.sleep(5))
    await wait_for(lambda: clock.pending_timers == 1)
    await clock.advance(4.9)
    assert not sleeper.done()
    await clock.advance(0.1)
    assert sleeper.done()
    await sleeper


async def test_sleepers_wake_in_order_and_see_their_deadline():
    clock = ManualClock()
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(nap("long", 3)), asyncio.create_task(nap("short", 1))]
    await wait_for(lambda: clock.pending_timers == 2)
    await clock.advance(10)
    await asyncio.gather(*tasks)
    assert woke == [("short", 1.0), ("long", 3.0)]


async def test_code_woken_by_sleep_runs_before_the_next_timer_fires():
    clock = ManualClock()
    events: list[str] = []

    async def sleeper() -> None:
        await clock.sleep(1)
        events.append("woke at 1")

    task = asyncio.create_task(sleeper())
    clock.call_later(2, events.append, "timer at 2")
    await wait_for(lambda: clock.pending_timers == 2)
    await clock.advance(2)
    await task
    assert events == ["woke at 1", "timer at 2"]


async def test_a_sleeper_that_sleeps_again_is_woken_within_the_same_advance():
    clock = ManualClock()
    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(3):
            await clock.sleep(1)
            ticks.append(clock.now())

    task = asyncio.create_task(ticker())
    await wait_for(lambda: clock.pending_timers == 1)
    await clock.advance(3)
    await task
    assert ticks == [1.0, 2.0, 3.0]


async def test_a_cancelled_sleep_leaves_no_timer_behind():
    clock = ManualClock()
    sleeper = asyncio.create_task(clock.sleep(5))
    await wait_for(lambda: clock.pending_timers == 1)
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    assert clock.pending_timers == 0
    await clock.advance(10)  # firing nothing, and no error from a resolved-cancelled future


async def test_sleep_under_a_timeout_on_the_real_loop_is_cancelled_cleanly():
    clock = ManualClock()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await clock.sleep(60)
    assert clock.pending_timers == 0


# -- SystemClock ----------------------------------------------------------------------------


def test_system_clock_now_is_monotonic_and_wall_is_epoch_time():
    clock = SystemClock()
    first = clock.now()
    assert clock.now() >= first
    before = time.time()
    wall = clock.wall()
    assert before <= wall <= time.time()
    assert repr(clock) == "<SystemClock>"


async def test_system_clock_call_later_runs_the_callback_on_the_loop():
    clock = SystemClock()
    fired = asyncio.Event()
    handle = clock.call_later(0, fired.set)
    assert isinstance(handle, asyncio.TimerHandle)
    await asyncio.wait_for(fired.wait(), timeout=5)


async def test_system_clock_cancelled_timer_does_not_fire():
    clock = SystemClock()
    fired: list[str] = []
    clock.call_later(0, fired.append, "cancelled").cancel()
    done = asyncio.Event()
    clock.call_later(0, done.set)
    await asyncio.wait_for(done.wait(), timeout=5)
    assert fired == []


async def test_system_clock_sleep_zero_yields_to_the_loop():
    clock = SystemClock()
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "other")
    await clock.sleep(0)
    assert ran == ["other"]


def test_system_clock_call_later_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        SystemClock().call_later(1, lambda: None)
