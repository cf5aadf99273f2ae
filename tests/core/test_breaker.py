"""Unit tests for the circuit breaker (`dukat.core.breaker`, public face `circuit_breaker`).

Time is a `ManualClock`: nothing here sleeps; a breaker's timeout passes when a test says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import dukat.core.breaker as breaker_module
import dukat.core.circuit_breaker as public_face
from dukat.core.breaker import (
    BreakerRegistry,
    BreakerTransition,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerState,
)
from dukat.core.clock import ManualClock, settle
from dukat.errors import CircuitBreakerError, DukatError, LimitExceededError, ValidationError

CLOSED = CircuitBreakerState.CLOSED
OPEN = CircuitBreakerState.OPEN
HALF_OPEN = CircuitBreakerState.HALF_OPEN

THRESHOLD = 3
TIMEOUT = 10.0


class Boom(Exception):
    """The downstream failed."""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_breaker(clock: ManualClock, name: str = "db", **options: object) -> CircuitBreaker:
    options.setdefault("failure_threshold", THRESHOLD)
    options.setdefault("timeout_seconds", TIMEOUT)
    return CircuitBreaker(name, clock=clock, **options)  # type: ignore[arg-type]


def fail_calls(breaker: CircuitBreaker, count: int) -> None:
    for _ in range(count):
        assert breaker.allow_request()
        breaker.failure(Boom("down"))


def succeed_calls(breaker: CircuitBreaker, count: int) -> None:
    for _ in range(count):
        assert breaker.allow_request()
        breaker.success()


def trip(breaker: CircuitBreaker) -> None:
    fail_calls(breaker, breaker.config.failure_threshold)
    assert breaker.state is OPEN


async def half_open(breaker: CircuitBreaker, clock: ManualClock) -> None:
    trip(breaker)
    await clock.advance(breaker.config.timeout_seconds)
    assert breaker.state is HALF_OPEN


def record(breaker: CircuitBreaker | BreakerRegistry) -> list[BreakerTransition]:
    heard: list[BreakerTransition] = []
    breaker.add_listener(heard.append)
    return heard


def moves(heard: list[BreakerTransition]) -> list[tuple[CircuitBreakerState, CircuitBreakerState]]:
    return [(t.from_state, t.to_state) for t in heard]


# -- the public surface ---------------------------------------------------------------------


def test_constructor_signature_is_the_documented_one() -> None:
    parameters = inspect.signature(CircuitBreaker).parameters
    positional = [
        (p.name, p.default)
        for p in parameters.values()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    assert positional == [
        ("name", inspect.Parameter.empty),
        ("failure_threshold", 5),
        ("timeout_seconds", 60.0),
    ]
    keyword_only = {
        p.name: p.default for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert {
        "half_open_max_calls": 1,
        "success_threshold": 1,
        "failure_rate_threshold": None,
        "window_size": None,
        "clock": None,
    }.items() <= keyword_only.items()
    assert not any(
        p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        for p in parameters.values()
    )


def test_constructor_defaults_reach_the_config() -> None:
    breaker = CircuitBreaker("db")
    assert breaker.name == "db"
    assert breaker.config == CircuitBreakerConfig(
        failure_threshold=5,
        timeout_seconds=60.0,
        half_open_max_calls=1,
        success_threshold=1,
        failure_rate_threshold=None,
        window_size=None,
    )
    assert breaker.state is CLOSED


def test_threshold_and_timeout_may_be_given_positionally_the_rest_only_by_keyword() -> None:
    breaker = CircuitBreaker("db", 2, 7.5, half_open_max_calls=4, success_threshold=3)
    assert breaker.config.failure_threshold == 2
    assert breaker.config.timeout_seconds == 7.5
    assert breaker.config.half_open_max_calls == 4
    assert breaker.config.success_threshold == 3
    with pytest.raises(TypeError):
        CircuitBreaker("db", 2, 7.5, 4)  # type: ignore[misc]


def test_state_numbers_are_fixed() -> None:
    assert [(state.name, int(state)) for state in CircuitBreakerState] == [
        ("CLOSED", 0),
        ("OPEN", 1),
        ("HALF_OPEN", 2),
    ]
    assert CircuitBreakerState(2) is HALF_OPEN


def test_public_face_exports_the_breaker_types() -> None:
    assert public_face.CircuitBreaker is CircuitBreaker
    assert public_face.CircuitBreakerState is CircuitBreakerState
    assert public_face.CircuitBreakerError is CircuitBreakerError
    assert public_face.BreakerRegistry is BreakerRegistry
    assert public_face.__all__ == sorted(public_face.__all__)
    assert {"CircuitBreaker", "CircuitBreakerError", "CircuitBreakerState"} <= set(
        public_face.__all__
    )
    for name in public_face.__all__:
        assert hasattr(public_face, name), name
    for name in breaker_module.__all__:
        assert getattr(public_face, name) is getattr(breaker_module, name)


# -- CLOSED -> OPEN ---------------------------------------------------------------------------


def test_opens_after_exactly_failure_threshold_consecutive_failures(clock: ManualClock) -> None:
    breaker = make_breaker(clock, failure_threshold=3)
    fail_calls(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.allow_request()
    breaker.failure(Boom("down"))
    assert breaker.state is OPEN
    assert not breaker.allow_request()


def test_a_success_between_failures_starts_the_count_over(clock: ManualClock) -> None:
    breaker = make_breaker(clock, failure_threshold=3)
    fail_calls(breaker, 2)
    succeed_calls(breaker, 1)
    fail_calls(breaker, 2)
    assert breaker.state is CLOSED
    fail_calls(breaker, 1)
    assert breaker.state is OPEN


def test_a_threshold_of_one_opens_on_the_first_failure(clock: ManualClock) -> None:
    breaker = make_breaker(clock, failure_threshold=1)
    fail_calls(breaker, 1)
    assert breaker.state is OPEN


def test_successes_alone_never_open(clock: ManualClock) -> None:
    breaker = make_breaker(clock, failure_threshold=1, failure_rate_threshold=0.5, window_size=2)
    succeed_calls(breaker, 100)
    assert breaker.state is CLOSED


# -- the failure-rate window ------------------------------------------------------------------


def rate_breaker(clock: ManualClock, rate: float, window: int) -> CircuitBreaker:
    # A consecutive-failure threshold out of reach, so only the rate can open it.
    return make_breaker(
        clock, failure_threshold=1000, failure_rate_threshold=rate, window_size=window
    )


def run_pattern(breaker: CircuitBreaker, pattern: str) -> None:
    for outcome in pattern:
        assert breaker.allow_request()
        if outcome == "F":
            breaker.failure()
        else:
            breaker.success()


def test_failure_rate_opens_even_without_two_failures_in_a_row(clock: ManualClock) -> None:
    breaker = rate_breaker(clock, rate=0.5, window=4)
    heard = record(breaker)
    run_pattern(breaker, "SFS")
    assert breaker.state is CLOSED
    run_pattern(breaker, "F")  # window S F S F: 2 of 4 failed
    assert breaker.state is OPEN
    assert heard[0].reason.startswith("2/4 calls failed")


def test_failure_rate_waits_for_a_full_window(clock: ManualClock) -> None:
    breaker = rate_breaker(clock, rate=0.5, window=4)
    run_pattern(breaker, "FFF")  # 100% failed, but only 3 of 4 calls seen
    assert breaker.state is CLOSED
    run_pattern(breaker, "F")
    assert breaker.state is OPEN


def test_failures_that_slide_out_of_the_window_no_longer_count(clock: ManualClock) -> None:
    breaker = rate_breaker(clock, rate=0.75, window=4)
    run_pattern(breaker, "FFSSSSFF")  # window now S S F F: 2 of 4
    assert breaker.state is CLOSED
    run_pattern(breaker, "F")  # window S F F F: 3 of 4
    assert breaker.state is OPEN


@pytest.mark.parametrize(("rate", "window", "failures"), [(0.28, 25, 7), (0.07, 100, 7)])
def test_failure_rate_exactly_at_the_threshold_opens(
    clock: ManualClock, rate: float, window: int, failures: int
) -> None:
    # 7/25 == 0.28 exactly; rate * window in floating point is 7.000000000000001.
    breaker = rate_breaker(clock, rate=rate, window=window)
    run_pattern(breaker, "S" * (window - failures) + "F" * (failures - 1))
    assert breaker.state is CLOSED
    run_pattern(breaker, "F")
    assert breaker.state is OPEN


def test_failure_rate_just_under_the_threshold_stays_closed(clock: ManualClock) -> None:
    breaker = rate_breaker(clock, rate=0.28, window=25)
    run_pattern(breaker, "S" * 19 + "F" * 6)
    assert breaker.state is CLOSED


# -- OPEN ---------------------------------------------------------------------------------------


async def test_open_refuses_until_the_timeout_then_reads_half_open(clock: ManualClock) -> None:
    breaker = make_breaker(clock, timeout_seconds=10.0)
    trip(breaker)
    await clock.advance(9.999)
    assert breaker.state is OPEN
    assert not breaker.allow_request()
    await clock.advance(0.001)
    assert breaker.state is HALF_OPEN


async def test_retry_after_counts_down_to_half_open(clock: ManualClock) -> None:
    breaker = make_breaker(clock, timeout_seconds=30.0)
    assert breaker.retry_after == 0.0
    trip(breaker)
    assert breaker.retry_after == pytest.approx(30.0)
    await clock.advance(12.5)
    assert breaker.retry_after == pytest.approx(17.5)
    await clock.advance(17.5)
    assert breaker.retry_after == 0.0
    assert breaker.state is HALF_OPEN


async def test_a_late_result_while_open_neither_counts_nor_moves_the_timeout(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, timeout_seconds=10.0)
    assert breaker.allow_request()  # a slow call, started while closed
    trip(breaker)
    await clock.advance(5)
    breaker.failure(Boom("late"))
    assert breaker.retry_after == pytest.approx(5.0)
    breaker.success()
    assert breaker.state is OPEN
    await clock.advance(5)
    assert breaker.state is HALF_OPEN


async def test_a_zero_timeout_half_opens_at_once(clock: ManualClock) -> None:
    breaker = make_breaker(clock, timeout_seconds=0.0)
    heard = record(breaker)
    fail_calls(breaker, THRESHOLD)
    assert breaker.state is HALF_OPEN
    assert moves(heard) == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


# -- HALF_OPEN ----------------------------------------------------------------------------------


async def test_half_open_lets_exactly_half_open_max_calls_through(clock: ManualClock) -> None:
    breaker = make_breaker(clock, half_open_max_calls=2, success_threshold=5)
    await half_open(breaker, clock)
    assert breaker.allow_request()
    assert breaker.allow_request()
    assert not breaker.allow_request()
    assert breaker.state is HALF_OPEN
    breaker.success()  # one trial done: its place is free again
    assert breaker.allow_request()
    assert not breaker.allow_request()


async def test_half_open_admits_exactly_n_of_fifty_concurrent_callers(clock: ManualClock) -> None:
    n = 3
    breaker = make_breaker(clock, half_open_max_calls=n, success_threshold=n)
    await half_open(breaker, clock)
    start, finish = asyncio.Event(), asyncio.Event()
    inside = peak = 0

    async def caller() -> str:
        nonlocal inside, peak
        await start.wait()
        async with breaker:
            inside += 1
            peak = max(peak, inside)
            await finish.wait()
            inside -= 1
        return "ran"

    tasks = [asyncio.create_task(caller()) for _ in range(50)]
    await settle()
    start.set()  # all fifty arrive in the same turn of the loop
    await settle()
    assert inside == n
    assert breaker.state is HALF_OPEN
    finish.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("ran") == n
    refused = [r for r in results if isinstance(r, CircuitBreakerError)]
    assert len(refused) == 50 - n
    assert peak == n
    assert breaker.state is CLOSED


async def test_half_open_admits_exactly_n_of_fifty_threads(clock: ManualClock) -> None:
    n = 4
    breaker = make_breaker(clock, half_open_max_calls=n, success_threshold=n)
    await half_open(breaker, clock)
    barrier = threading.Barrier(50)

    def ask() -> bool:
        barrier.wait(timeout=10)
        return breaker.allow_request()

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda _: ask(), range(50)))
    assert answers.count(True) == n


async def test_success_threshold_trial_successes_close(clock: ManualClock) -> None:
    breaker = make_breaker(clock, half_open_max_calls=1, success_threshold=3)
    heard = record(breaker)
    await half_open(breaker, clock)
    succeed_calls(breaker, 2)
    assert breaker.state is HALF_OPEN
    succeed_calls(breaker, 1)
    assert breaker.state is CLOSED
    assert heard[-1].reason == "trial calls succeeded"


async def test_after_closing_again_the_failure_count_starts_from_zero(clock: ManualClock) -> None:
    breaker = make_breaker(clock, failure_threshold=3)
    fail_calls(breaker, 2)
    fail_calls(breaker, 1)
    await clock.advance(TIMEOUT)
    succeed_calls(breaker, 1)
    assert breaker.state is CLOSED
    fail_calls(breaker, 2)
    assert breaker.state is CLOSED


async def test_a_failed_trial_reopens_and_restarts_the_timeout(clock: ManualClock) -> None:
    breaker = make_breaker(clock, timeout_seconds=10.0, success_threshold=2)
    heard = record(breaker)
    await half_open(breaker, clock)  # at t=10
    succeed_calls(breaker, 1)
    await clock.advance(5)  # t=15
    assert breaker.allow_request()
    breaker.failure(Boom("still down"))
    assert breaker.state is OPEN
    assert breaker.retry_after == pytest.approx(10.0)
    assert not breaker.allow_request()
    await clock.advance(9.9)
    assert breaker.state is OPEN
    await clock.advance(0.1)
    assert breaker.state is HALF_OPEN
    # The success before the failure was forgotten: two new ones are needed.
    succeed_calls(breaker, 1)
    assert breaker.state is HALF_OPEN
    assert moves(heard) == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
    ]
    assert heard[2].reason == "trial call failed: Boom: still down"


async def test_a_call_from_before_the_breaker_opened_does_not_count_as_a_trial(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, half_open_max_calls=1)
    slow_call = breaker.acquire()  # a slow call, started while closed
    assert slow_call is not None
    trip(breaker)
    await clock.advance(TIMEOUT)
    assert breaker.acquire() is not None  # the one trial call
    breaker.release(permit=slow_call)  # the slow call from before is cancelled
    assert breaker.acquire() is None  # a second trial would exceed half_open_max_calls
    breaker.success(permit=slow_call)  # nor does its late success close the breaker
    assert breaker.state is HALF_OPEN


async def test_a_slow_guarded_call_from_before_the_breaker_opened_is_not_a_trial(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, half_open_max_calls=1)
    release_slow = asyncio.Event()

    async def slow() -> None:
        async with breaker:
            await release_slow.wait()

    slow_task = asyncio.create_task(slow())
    await asyncio.sleep(0)
    trip(breaker)
    await clock.advance(TIMEOUT)
    assert breaker.acquire() is not None  # the one trial call
    release_slow.set()
    await slow_task  # succeeds, but began before the breaker opened
    assert breaker.state is HALF_OPEN
    assert breaker.acquire() is None


# -- reset() ----------------------------------------------------------------------------------


def test_reset_while_closed_forgets_failures_without_an_event(clock: ManualClock) -> None:
    breaker = make_breaker(clock, failure_threshold=3)
    heard = record(breaker)
    fail_calls(breaker, 2)
    breaker.reset()
    fail_calls(breaker, 2)
    assert breaker.state is CLOSED
    assert heard == []


def test_reset_closes_an_open_breaker(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    heard = record(breaker)
    trip(breaker)
    breaker.reset()
    assert breaker.state is CLOSED
    assert breaker.allow_request()
    assert heard[-1].from_state is OPEN
    assert heard[-1].to_state is CLOSED
    assert heard[-1].reason == "reset"
    fail_calls(breaker, THRESHOLD - 1)
    assert breaker.state is CLOSED


async def test_reset_closes_a_half_open_breaker_with_trials_in_flight(clock: ManualClock) -> None:
    breaker = make_breaker(clock, half_open_max_calls=1)
    heard = record(breaker)
    await half_open(breaker, clock)
    assert breaker.allow_request()
    breaker.reset()
    assert breaker.state is CLOSED
    assert moves(heard)[-1] == (HALF_OPEN, CLOSED)
    succeed_calls(breaker, 5)


# -- the transition table -----------------------------------------------------------------------

ALLOWED = {
    (CLOSED, OPEN),
    (OPEN, HALF_OPEN),
    (OPEN, CLOSED),
    (HALF_OPEN, OPEN),
    (HALF_OPEN, CLOSED),
}
ALL_PAIRS = [(a, b) for a in CircuitBreakerState for b in CircuitBreakerState]


async def breaker_in(state: CircuitBreakerState, clock: ManualClock) -> CircuitBreaker:
    breaker = make_breaker(clock)
    if state is OPEN:
        trip(breaker)
    elif state is HALF_OPEN:
        await half_open(breaker, clock)
    assert breaker.state is state
    return breaker


@pytest.mark.parametrize(
    ("from_state", "to_state"), [pair for pair in ALL_PAIRS if pair not in ALLOWED]
)
async def test_transition_refuses_moves_outside_the_table(
    clock: ManualClock, from_state: CircuitBreakerState, to_state: CircuitBreakerState
) -> None:
    breaker = await breaker_in(from_state, clock)
    heard = record(breaker)
    with pytest.raises(RuntimeError, match=rf"'db'.*{from_state.name} -> {to_state.name}"):
        breaker._transition(to_state, "test")
    assert breaker.state is from_state
    assert heard == []


@pytest.mark.parametrize(("from_state", "to_state"), sorted(ALLOWED))
async def test_transition_swaps_and_describes_moves_in_the_table(
    clock: ManualClock, from_state: CircuitBreakerState, to_state: CircuitBreakerState
) -> None:
    breaker = await breaker_in(from_state, clock)
    event = breaker._transition(to_state, "because")
    assert event == BreakerTransition("db", from_state, to_state, "because", clock.wall())
    assert breaker._state is to_state


def test_closed_to_half_open_is_refused(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    with pytest.raises(RuntimeError, match="CLOSED -> HALF_OPEN is not allowed"):
        breaker._transition(HALF_OPEN, "skipping open")
    assert breaker.state is CLOSED


# -- async with ---------------------------------------------------------------------------------


async def test_async_with_records_a_success(clock: ManualClock) -> None:
    breaker = make_breaker(clock, failure_threshold=2)
    fail_calls(breaker, 1)
    async with breaker as entered:
        assert entered is breaker
    fail_calls(breaker, 1)  # the success in between started the count over
    assert breaker.state is CLOSED


async def test_async_with_records_a_failure_and_lets_it_propagate(clock: ManualClock) -> None:
    breaker = make_breaker(clock, failure_threshold=2)
    heard = record(breaker)
    for _ in range(2):
        with pytest.raises(Boom):
            async with breaker:
                raise Boom("down")
    assert breaker.state is OPEN
    assert heard[0].reason == "2 consecutive failures: Boom: down"


async def test_async_with_refuses_an_open_breaker_without_running_the_body(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, timeout_seconds=30.0)
    trip(breaker)
    await clock.advance(10)
    ran = False
    with pytest.raises(CircuitBreakerError) as caught:
        async with breaker:
            ran = True
    assert not ran
    assert caught.value.name == "db"
    assert caught.value.retry_after == pytest.approx(20.0)


async def test_cancellation_in_a_trial_gives_back_its_place_without_counting(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, half_open_max_calls=1)
    await half_open(breaker, clock)
    entered = asyncio.Event()

    async def trial() -> None:
        async with breaker:
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(trial())
    await entered.wait()
    assert not breaker.allow_request()  # the trial holds the one place
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is HALF_OPEN  # neither re-opened nor closed
    assert breaker.allow_request()


async def test_cancellation_while_closed_neither_counts_as_failure_nor_as_success(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, failure_threshold=3)
    fail_calls(breaker, 2)

    async def call() -> None:
        async with breaker:
            await asyncio.Event().wait()

    task = asyncio.create_task(call())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is CLOSED  # not a failure
    fail_calls(breaker, 1)
    assert breaker.state is OPEN  # not a success either: the count went on from 2


# -- @breaker -------------------------------------------------------------------------------------


async def test_decorated_coroutine_function_passes_arguments_and_result(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock)

    @breaker
    async def fetch(key: str, *, default: int = 0) -> tuple[str, int]:
        """Fetch a thing."""
        return key, default

    assert await fetch("a", default=2) == ("a", 2)
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a thing."
    assert inspect.iscoroutinefunction(fetch)


async def test_decorated_failures_open_the_breaker_then_calls_are_refused(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, failure_threshold=2, timeout_seconds=5.0)
    calls = 0

    @breaker
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise Boom("down")

    for _ in range(2):
        with pytest.raises(Boom):
            await flaky()
    with pytest.raises(CircuitBreakerError) as caught:
        await flaky()
    assert calls == 2
    assert caught.value.retry_after == pytest.approx(5.0)


async def test_decorated_call_in_half_open_closes_on_success(clock: ManualClock) -> None:
    breaker = make_breaker(clock)

    @breaker
    async def ping() -> str:
        return "pong"

    await half_open(breaker, clock)
    assert await ping() == "pong"
    assert breaker.state is CLOSED


def test_decorating_a_plain_function_is_a_type_error(clock: ManualClock) -> None:
    breaker = make_breaker(clock, name="payments")

    def plain() -> None:
        pass

    with pytest.raises(TypeError, match=r"payments.*coroutine function"):
        breaker(plain)  # type: ignore[arg-type]


# -- CircuitBreakerError --------------------------------------------------------------------------


async def test_refusal_error_names_the_breaker_and_the_wait(clock: ManualClock) -> None:
    breaker = make_breaker(clock, name="payments", timeout_seconds=60.0)
    trip(breaker)
    await clock.advance(15)
    with pytest.raises(CircuitBreakerError) as caught:
        async with breaker:
            pass
    error = caught.value
    assert isinstance(error, DukatError)
    assert error.name == "payments"
    assert error.retry_after == pytest.approx(45.0)
    assert "'payments'" in str(error)
    assert "45.0s" in str(error)


async def test_refusal_while_half_open_and_full_has_no_wait(clock: ManualClock) -> None:
    breaker = make_breaker(clock, half_open_max_calls=1)
    await half_open(breaker, clock)
    assert breaker.allow_request()
    with pytest.raises(CircuitBreakerError) as caught:
        async with breaker:
            pass
    assert caught.value.retry_after == 0.0


# -- listeners ------------------------------------------------------------------------------------


async def test_listeners_see_every_transition_with_from_to_reason_and_time(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, name="api", failure_threshold=2, timeout_seconds=10.0)
    heard = record(breaker)
    fail_calls(breaker, 2)
    await clock.advance(10)
    _ = breaker.state
    _ = breaker.state  # reading again publishes nothing new
    assert breaker.allow_request()
    breaker.failure(ValueError("bad reply"))
    await clock.advance(10)
    assert breaker.allow_request()
    breaker.success()
    trip(breaker)
    breaker.reset()
    assert [(t.name, t.from_state, t.to_state, t.reason, t.time) for t in heard] == [
        ("api", CLOSED, OPEN, "2 consecutive failures: Boom: down", 1_700_000_000.0),
        ("api", OPEN, HALF_OPEN, "timeout elapsed", 1_700_000_010.0),
        ("api", HALF_OPEN, OPEN, "trial call failed: ValueError: bad reply", 1_700_000_010.0),
        ("api", OPEN, HALF_OPEN, "timeout elapsed", 1_700_000_020.0),
        ("api", HALF_OPEN, CLOSED, "trial calls succeeded", 1_700_000_020.0),
        ("api", CLOSED, OPEN, "2 consecutive failures: Boom: down", 1_700_000_020.0),
        ("api", OPEN, CLOSED, "reset", 1_700_000_020.0),
    ]


def test_failure_without_an_exception_still_gives_a_reason(clock: ManualClock) -> None:
    breaker = make_breaker(clock, failure_threshold=2)
    heard = record(breaker)
    for _ in range(2):
        assert breaker.allow_request()
        breaker.failure()
    assert heard[0].reason == "2 consecutive failures"


def test_transition_events_are_frozen(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    heard = record(breaker)
    trip(breaker)
    with pytest.raises(dataclasses.FrozenInstanceError):
        heard[0].to_state = CLOSED  # type: ignore[misc]


def test_removed_listener_hears_nothing_more(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    heard = record(breaker)
    trip(breaker)
    breaker.remove_listener(heard.append)
    breaker.reset()
    assert moves(heard) == [(CLOSED, OPEN)]


def test_listeners_run_outside_the_lock_and_may_read_the_breaker(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    seen: list[tuple[bool, CircuitBreakerState | None]] = []

    def listener(event: BreakerTransition) -> None:
        locked = breaker._lock.locked()
        # Reading the state under a held (non-reentrant) lock would hang: check first.
        seen.append((locked, None if locked else breaker.state))

    breaker.add_listener(listener)
    trip(breaker)
    breaker.reset()
    assert seen == [(False, OPEN), (False, CLOSED)]


async def test_a_raising_listener_neither_breaks_the_breaker_nor_silences_the_others(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make_breaker(clock, half_open_max_calls=1)
    trip(breaker)
    await clock.advance(TIMEOUT)

    def broken(event: BreakerTransition) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    heard = record(breaker)
    with caplog.at_level(logging.ERROR, logger="dukat.core.breaker"):
        # This call half-opens the breaker and takes the one trial place.
        assert breaker.allow_request()
        breaker.success()
    assert breaker.state is CLOSED
    assert moves(heard) == [(OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert "listener bug" in caplog.text


# -- no lock around the guarded call --------------------------------------------------------------


def acquire_and_release(lock: threading.Lock) -> bool:
    if not lock.acquire(timeout=5):
        return False
    lock.release()
    return True


async def test_no_lock_is_held_while_the_guarded_call_runs(clock: ManualClock) -> None:
    breaker = make_breaker(clock)

    @breaker
    async def guarded() -> tuple[CircuitBreakerState, CircuitBreakerState, bool]:
        # From another thread first: a held lock makes this False instead of a deadlock.
        assert await asyncio.to_thread(acquire_and_release, breaker._lock)
        from_thread = await asyncio.to_thread(lambda: breaker.state)
        allowed = breaker.allow_request()
        breaker.success()
        return breaker.state, from_thread, allowed

    assert await guarded() == (CLOSED, CLOSED, True)


async def test_a_trial_call_can_ask_the_breaker_from_inside(clock: ManualClock) -> None:
    breaker = make_breaker(clock, half_open_max_calls=1)
    await half_open(breaker, clock)
    async with breaker:
        assert await asyncio.to_thread(acquire_and_release, breaker._lock)
        assert breaker.state is HALF_OPEN
        assert not breaker.allow_request()  # the one trial place is ours
        assert not await asyncio.to_thread(breaker.allow_request)
        assert breaker.retry_after == 0.0
    assert breaker.state is CLOSED


# -- configure() --------------------------------------------------------------------------------


def test_configure_changes_the_config_in_place_and_starts_counting_over(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, failure_threshold=3)
    fail_calls(breaker, 2)
    breaker.configure(failure_threshold=2, success_threshold=4)
    assert breaker.config.failure_threshold == 2
    assert breaker.config.success_threshold == 4
    assert breaker.config.timeout_seconds == TIMEOUT  # untouched fields are kept
    fail_calls(breaker, 1)
    assert breaker.state is CLOSED  # the two failures before were forgotten
    fail_calls(breaker, 1)
    assert breaker.state is OPEN


async def test_configure_keeps_the_state_and_applies_a_new_timeout(clock: ManualClock) -> None:
    breaker = make_breaker(clock, timeout_seconds=60.0)
    trip(breaker)
    breaker.configure(timeout_seconds=5.0)
    assert breaker.state is OPEN
    await clock.advance(5)
    assert breaker.state is HALF_OPEN


def test_configure_with_a_whole_config_object(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    config = CircuitBreakerConfig(failure_threshold=100, failure_rate_threshold=0.5, window_size=2)
    breaker.configure(config)
    assert breaker.config == config
    run_pattern(breaker, "SF")
    assert breaker.state is OPEN


def test_configure_with_an_invalid_value_changes_nothing(clock: ManualClock) -> None:
    breaker = make_breaker(clock, failure_threshold=3)
    fail_calls(breaker, 2)
    with pytest.raises(ValidationError, match="failure_threshold"):
        breaker.configure(failure_threshold=0)
    assert breaker.config.failure_threshold == 3
    fail_calls(breaker, 1)
    assert breaker.state is OPEN


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("failure_threshold", {"failure_threshold": 0}),
        ("timeout_seconds", {"timeout_seconds": -1.0}),
        ("timeout_seconds", {"timeout_seconds": math.nan}),
        ("half_open_max_calls", {"half_open_max_calls": 0}),
        ("success_threshold", {"success_threshold": 0}),
        ("failure_rate_threshold", {"failure_rate_threshold": 0.0, "window_size": 10}),
        ("failure_rate_threshold", {"failure_rate_threshold": 1.5, "window_size": 10}),
        ("window_size", {"failure_rate_threshold": 0.5, "window_size": 0}),
    ],
)
def test_invalid_config_names_the_field_and_the_value(
    field: str, changes: dict[str, object]
) -> None:
    with pytest.raises(ValidationError) as caught:
        CircuitBreaker("db", **changes)  # type: ignore[arg-type]
    error = caught.value
    assert isinstance(error, ValueError)
    assert field in str(error)
    assert repr(changes[field]) in str(error)
    assert [v.field for v in error.violations] == [field]


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"failure_rate_threshold": 0.5}, "window_size"),
        ({"window_size": 10}, "failure_rate_threshold"),
    ],
)
def test_rate_and_window_must_come_together(changes: dict[str, object], missing: str) -> None:
    with pytest.raises(ValidationError, match="failure_rate_threshold and window_size") as caught:
        CircuitBreakerConfig(**changes)  # type: ignore[arg-type]
    assert [v.field for v in caught.value.violations] == [missing]


def test_a_breaker_needs_a_name() -> None:
    with pytest.raises(ValidationError, match="name"):
        CircuitBreaker("")


def test_edge_values_are_valid() -> None:
    config = CircuitBreakerConfig(
        failure_threshold=1,
        timeout_seconds=0.0,
        half_open_max_calls=1,
        success_threshold=1,
        failure_rate_threshold=1.0,
        window_size=1,
    )
    assert config.failure_rate_threshold == 1.0


# -- BreakerRegistry ------------------------------------------------------------------------------


async def test_registry_creates_breakers_on_first_use_with_its_defaults_and_clock(
    clock: ManualClock,
) -> None:
    defaults = CircuitBreakerConfig(failure_threshold=2, timeout_seconds=7.0)
    registry = BreakerRegistry(defaults, clock=clock)
    assert "db" not in registry
    assert registry.find("db") is None
    db = registry.get("db")
    assert registry.get("db") is db
    assert registry.find("db") is db
    assert db.name == "db"
    assert db.config == defaults
    assert "db" in registry
    assert len(registry) == 1
    trip(db)
    await clock.advance(7)
    assert db.state is HALF_OPEN


def test_registry_default_config_is_the_breaker_default() -> None:
    assert BreakerRegistry().get("x").config == CircuitBreakerConfig()


def test_registry_register_adds_an_instance_made_elsewhere(clock: ManualClock) -> None:
    registry = BreakerRegistry(clock=clock)
    mine = make_breaker(clock, name="api", failure_threshold=9)
    assert registry.register(mine) is mine
    assert registry.get("api") is mine
    assert registry.get("api").config.failure_threshold == 9
    assert registry.register(mine) is mine  # again: no-op
    assert list(registry) == [mine]


def test_registry_rejects_a_different_breaker_with_a_taken_name(clock: ManualClock) -> None:
    registry = BreakerRegistry(clock=clock)
    first = registry.get("api")
    with pytest.raises(ValidationError, match="'api'"):
        registry.register(make_breaker(clock, name="api"))
    assert registry.get("api") is first
    assert len(registry) == 1


def test_registry_listeners_hear_every_breaker(clock: ManualClock) -> None:
    registry = BreakerRegistry(CircuitBreakerConfig(failure_threshold=1), clock=clock)
    heard = record(registry)
    made_here = registry.get("db")
    made_elsewhere = registry.register(make_breaker(clock, name="api", failure_threshold=1))
    registry.register(made_elsewhere)  # registering twice must not double the events
    fail_calls(made_here, 1)
    fail_calls(made_elsewhere, 1)
    made_here.reset()
    assert [(t.name, t.from_state, t.to_state) for t in heard] == [
        ("db", CLOSED, OPEN),
        ("api", CLOSED, OPEN),
        ("db", OPEN, CLOSED),
    ]
    registry.remove_listener(heard.append)
    made_elsewhere.reset()
    assert len(heard) == 3


def test_registry_configure_creates_or_changes_a_breaker(clock: ManualClock) -> None:
    registry = BreakerRegistry(clock=clock)
    config = CircuitBreakerConfig(failure_threshold=2)
    db = registry.configure("db", config)
    assert registry.get("db") is db
    assert db.config == config
    registry.configure("db", CircuitBreakerConfig(failure_threshold=4))
    assert db.config.failure_threshold == 4


def test_registry_get_with_an_empty_name_is_refused(clock: ManualClock) -> None:
    registry = BreakerRegistry(clock=clock)
    with pytest.raises(ValidationError):
        registry.get("")
    assert len(registry) == 0


# -- repr -----------------------------------------------------------------------------------------


def test_breaker_repr_shows_name_state_and_failures(clock: ManualClock) -> None:
    breaker = make_breaker(clock, name="db", failure_threshold=5)
    assert repr(breaker) == "<CircuitBreaker 'db' CLOSED failures:0/5>"
    fail_calls(breaker, 2)
    assert repr(breaker) == "<CircuitBreaker 'db' CLOSED failures:2/5>"
    fail_calls(breaker, 3)
    assert repr(breaker) == "<CircuitBreaker 'db' OPEN failures:0/5>"


def test_registry_repr_lists_the_breakers(clock: ManualClock) -> None:
    registry = BreakerRegistry(clock=clock)
    assert repr(registry) == "<BreakerRegistry empty>"
    registry.get("db")
    registry.get("api")
    assert repr(registry) == "<BreakerRegistry db, api>"


# -- BreakerRegistry: its cap, and the breakers it lets go ----------------------------------------


def capped(clock: ManualClock, cap: int = 3) -> BreakerRegistry:
    return BreakerRegistry(CircuitBreakerConfig(failure_threshold=1), clock=clock, max_breakers=cap)


def test_without_a_cap_a_registry_keeps_every_breaker(clock: ManualClock) -> None:
    registry = BreakerRegistry(clock=clock)
    for n in range(2_000):
        registry.get(f"b{n}")
    assert len(registry) == 2_000


def test_at_the_cap_the_least_recently_used_idle_breaker_makes_room(clock: ManualClock) -> None:
    registry = capped(clock)
    dropped: list[str] = []
    registry.add_drop_listener(dropped.append)
    a, _, _ = registry.get("a"), registry.get("b"), registry.get("c")
    assert registry.get("a") is a  # a use: "b" is now the least recently used
    registry.get("d")
    assert sorted(b.name for b in registry) == ["a", "c", "d"] and dropped == ["b"]


async def test_configured_claimed_open_and_trial_breakers_are_never_let_go(
    clock: ManualClock,
) -> None:
    registry = capped(clock, cap=4)
    registry.configure("configured", CircuitBreakerConfig())
    registry.claim({"claimed"})
    registry.get("open").failure(Boom())
    trial = registry.get("trial")
    trial.failure(Boom())
    await clock.advance(60)  # "open" and "trial" half-open; "trial" lets its one call through
    assert trial.acquire() is not None
    reopened = registry.get("open")
    reopened.failure(Boom(), permit=reopened.acquire())  # its trial failed: open again
    with pytest.raises(LimitExceededError, match="4 circuit breakers"):
        registry.get("new")
    with pytest.raises(LimitExceededError):
        registry.claim({"new"})
    assert sorted(b.name for b in registry) == ["claimed", "configured", "open", "trial"]

    registry.release({"claimed"})  # its job ended
    registry.get("new")
    assert "claimed" not in registry and "new" in registry


def test_a_claim_never_makes_room_by_letting_go_of_a_breaker_it_names(clock: ManualClock) -> None:
    registry = capped(clock, cap=2)
    a = registry.get("a")
    registry.get("b")  # "a" is now the least recently used, and idle
    found = registry.claim(["a", "c"])
    assert found["a"] is a  # the same breaker, with its state: not one made again
    assert sorted(b.name for b in registry) == ["a", "c"]


def test_a_claim_takes_every_breaker_it_names_or_none(clock: ManualClock) -> None:
    registry = capped(clock)
    registry.claim({"x"})
    with pytest.raises(LimitExceededError, match="3 new"):
        registry.claim({"x", "a", "b", "c"})
    assert [b.name for b in registry] == ["x"]
    found = registry.claim({"x", "a", "b"})
    assert sorted(found) == ["a", "b", "x"] and found["x"] is registry.find("x")
    registry.release({"x"})  # one of the two claims on it: still in use
    with pytest.raises(LimitExceededError):
        registry.get("d")
    registry.release({"x"})
    registry.get("d")
    assert "x" not in registry


def test_a_claim_beyond_the_limit_is_kept_and_the_registry_shrinks_back(clock: ManualClock):
    registry = capped(clock, cap=2)
    registry.claim(["a", "b", "c"], within_limit=False)  # a job restored after a restart
    assert len(registry) == 3
    registry.release({"a", "b", "c"})
    registry.get("d")  # makes room down to the cap
    assert sorted(b.name for b in registry) == ["c", "d"]


def test_a_breaker_let_go_tells_nobody_of_its_transitions_any_more(clock: ManualClock) -> None:
    registry = capped(clock, cap=1)
    heard: list[BreakerTransition] = []
    registry.add_listener(heard.append)
    old = registry.get("old")
    registry.get("new")  # "old" is let go
    old.failure(Boom())  # someone still holding it
    assert heard == []
