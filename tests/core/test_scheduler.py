"""Behaviour of the Scheduler, driven through JobSpec / TaskSpec / CallableAction."""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from dukat.core import (
    BreakerRegistry,
    CallableAction,
    CircuitBreakerConfig,
    CircuitBreakerState,
    JobSpec,
    JobState,
    JobStateChanged,
    ManualClock,
    ResourcePool,
    ResourceRequirement,
    ResourceType,
    RetryPolicy,
    Scheduler,
    Snapshot,
    TaskFailure,
    TaskProgress,
    TaskSpec,
    TaskState,
    TaskStateChanged,
    TriggerRule,
    current_task,
    report_progress,
)
from dukat.core._gc import gc_paused
from dukat.core.events import Event
from dukat.errors import (
    CircuitBreakerError,
    CycleError,
    LimitExceededError,
    NotFoundError,
    TaskTimeoutError,
    ValidationError,
)
from tests.helpers import Gauge, Probe, finished, settle, wait_for

S = TaskState

# -- helpers --------------------------------------------------------------------------------


def spec(task_id: str, func: Callable[..., Any], *deps: str, **options: Any) -> TaskSpec:
    return TaskSpec(id=task_id, action=CallableAction(func), dependencies=deps, **options)


def job(*tasks: TaskSpec, **options: Any) -> JobSpec:
    return JobSpec(tasks=tasks, **options)


async def noop() -> None:
    return None


async def boom() -> None:
    raise ValueError("boom")


def returning(value: Any) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return value

    return run


def record(calls: list[str], name: str) -> Callable[[], Awaitable[str]]:
    async def run() -> str:
        calls.append(name)
        return name

    return run


def task_state(scheduler: Scheduler, job_id: str, task_id: str) -> TaskState:
    return scheduler.get_job(job_id).task(task_id).state


async def collect(scheduler: Scheduler, job_id: str, after: int = 0) -> list[Event]:
    async def read() -> list[Event]:
        return [event async for batch in scheduler.watch(job_id, after) for event in batch]

    return await asyncio.wait_for(read(), 10)  # a watch that never ends fails the test


def task_states(events: list[Event], task_id: str) -> list[TaskState]:
    return [e.state for e in events if isinstance(e, TaskStateChanged) and e.task_id == task_id]


@pytest.fixture
async def make(clock: ManualClock) -> AsyncIterator[Callable[..., Scheduler]]:
    """Build schedulers on the manual clock (max_concurrency 4 unless said); closed after."""
    made: list[Scheduler] = []

    def factory(**options: Any) -> Scheduler:
        options.setdefault("clock", clock)
        options.setdefault("max_concurrency", 4)
        made.append(Scheduler(**options))
        return made[-1]

    yield factory
    for scheduler in made:
        await asyncio.wait_for(scheduler.close(), 10)  # a close that hangs fails instead


# -- dependencies, limits, order ------------------------------------------------------------


async def test_tasks_that_never_suspend_still_let_the_event_loop_in(make):
    # A job of instant tasks must not hold the loop for its whole run: a watcher, an RPC
    # or a timer elsewhere gets turns while it runs.
    scheduler = make(max_concurrency=1)
    job_id = scheduler.submit(job(*(spec(f"t{i}", noop) for i in range(2_000))))
    seen_mid_job: list[int] = []
    while scheduler.job_state(job_id) is JobState.RUNNING:
        done = scheduler.get_job(job_id).count(S.SUCCEEDED)
        if 0 < done < 2_000:
            seen_mid_job.append(done)
        await asyncio.sleep(0)
    assert len(seen_mid_job) > 5


async def test_tasks_start_only_after_their_dependencies_succeeded(make):
    s = make()
    log: list[tuple[str, str]] = []

    def step(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            log.append(("start", name))
            await asyncio.sleep(0)
            log.append(("end", name))

        return run

    edges = {"d": ("b", "c"), "b": ("a",), "c": ("a",), "a": ()}
    j = s.submit(job(*(spec(t, step(t), *deps) for t, deps in edges.items())))
    assert await finished(s, j) is JobState.SUCCEEDED
    for task, deps in edges.items():
        for dep in deps:
            assert log.index(("end", dep)) < log.index(("start", task))


async def test_global_max_concurrency_holds_across_jobs(make):
    s = make(max_concurrency=3)
    gauge = Gauge()

    async def work() -> None:
        with gauge.hold():
            for _ in range(5):
                await asyncio.sleep(0)

    jobs = [s.submit(job(*(spec(f"t{i}", work) for i in range(10)))) for _ in range(2)]
    for j in jobs:
        assert await finished(s, j) is JobState.SUCCEEDED
    assert gauge.peak == 3


async def test_job_max_concurrency_limits_only_that_job(make):
    s = make(max_concurrency=10)
    limited, free = Gauge(), Gauge()

    def work(gauge: Gauge) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            with gauge.hold():
                for _ in range(5):
                    await asyncio.sleep(0)

        return run

    a = s.submit(job(*(spec(f"t{i}", work(limited)) for i in range(8)), max_concurrency=2))
    b = s.submit(job(*(spec(f"t{i}", work(free)) for i in range(8))))
    assert await finished(s, a) is await finished(s, b) is JobState.SUCCEEDED
    assert limited.peak == 2
    assert free.peak > 2


async def test_ready_tasks_run_by_priority_then_arrival(make):
    s = make(max_concurrency=1)
    order: list[str] = []
    priorities = {"t0": 1, "t1": 5, "t2": 3, "t3": 5, "t4": 0}
    j = s.submit(job(*(spec(t, record(order, t), priority=p) for t, p in priorities.items())))
    await finished(s, j)
    assert order == ["t1", "t3", "t2", "t0", "t4"]


async def test_tasks_of_a_higher_priority_job_run_first(make):
    s = make(max_concurrency=1)
    order: list[str] = []
    low = s.submit(job(*(spec(f"lo{i}", record(order, f"lo{i}")) for i in range(3))))
    high = s.submit(job(*(spec(f"hi{i}", record(order, f"hi{i}"), priority=5) for i in range(3))))
    await finished(s, low)
    await finished(s, high)
    assert order == ["hi0", "hi1", "hi2", "lo0", "lo1", "lo2"]


async def test_small_job_is_not_starved_by_a_big_job_of_equal_priority(make):
    s = make(max_concurrency=2)
    big_done = 0

    async def big_task() -> None:
        nonlocal big_done
        await asyncio.sleep(0)
        big_done += 1

    big = s.submit(job(*(spec(f"b{i}", big_task) for i in range(1000))))
    await wait_for(lambda: big_done >= 10)
    small = s.submit(job(*(spec(f"s{i}", noop) for i in range(3))))
    assert await finished(s, small) is JobState.SUCCEEDED
    assert big_done < 100  # without fair share all ~1000 big tasks would come first
    assert s.job_state(big) is JobState.RUNNING
    assert await finished(s, big) is JobState.SUCCEEDED


# -- failures -------------------------------------------------------------------------------


async def test_failure_skips_dependents_and_independent_branches_go_on(make):
    s = make()
    calls: list[str] = []
    j = s.submit(
        job(
            spec("a", boom),
            spec("b", record(calls, "b"), "a"),
            spec("c", record(calls, "c"), "b"),
            spec("d", returning(4)),
        )
    )
    assert await finished(s, j) is JobState.FAILED
    r = s.results(j)
    assert r["a"].state is S.FAILED and isinstance(r["a"].error, ValueError)
    assert r["b"].state is S.SKIPPED and "upstream 'a'" in r["b"].message
    assert r["c"].state is S.SKIPPED and "upstream 'b'" in r["c"].message
    assert (r["d"].state, r["d"].result) == (S.SUCCEEDED, 4)
    assert calls == []


async def test_fail_fast_cancels_the_rest_of_the_job(make):
    s = make()
    probe = Probe()

    async def fail_once_slow_runs() -> None:
        await wait_for(lambda: probe.started)
        raise ValueError("boom")

    j = s.submit(
        job(
            spec("slow", probe.task("slow")),
            spec("after", noop, "slow"),
            spec("boom", fail_once_slow_runs),
            fail_fast=True,
        )
    )
    assert await finished(s, j) is JobState.FAILED
    r = s.results(j)
    assert probe.cancelled == ["slow"]
    assert (r["boom"].state, r["slow"].state, r["after"].state) == (
        S.FAILED,
        S.CANCELLED,
        S.CANCELLED,
    )
    assert "'boom'" in r["slow"].message


async def test_all_done_task_runs_after_failed_and_skipped_upstreams(make):
    s = make()
    calls: list[str] = []
    cleanup = spec("cleanup", record(calls, "cleanup"), "a", "b", trigger_rule=TriggerRule.ALL_DONE)
    j = s.submit(job(spec("a", boom), spec("b", record(calls, "b"), "a"), cleanup))
    assert await finished(s, j) is JobState.FAILED
    assert calls == ["cleanup"]
    assert s.results(j)["cleanup"].state is S.SUCCEEDED


# -- retries and timeouts -------------------------------------------------------------------


async def test_retries_wait_out_exponential_backoff(make, clock):
    s = make()
    events: list[Event] = []
    s.add_listener(events.append)
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError(f"attempt {attempts}")
        return "ok"

    policy = RetryPolicy(max_attempts=3, initial_backoff=1.0, multiplier=2.0, jitter=0.0)
    j = s.submit(job(spec("t", flaky, retry=policy)))
    await wait_for(lambda: task_state(s, j, "t") is S.RETRYING)
    await clock.advance(0.99)
    assert attempts == 1
    await clock.advance(0.01)
    await wait_for(lambda: attempts == 2 and task_state(s, j, "t") is S.RETRYING)
    await clock.advance(1.99)  # the second wait is twice the first
    assert attempts == 2
    await clock.advance(0.01)
    assert await finished(s, j) is JobState.SUCCEEDED
    r = s.results(j)["t"]
    assert (r.attempts, r.result) == (3, "ok")
    retrying = [e for e in events if isinstance(e, TaskStateChanged) and e.state is S.RETRYING]
    assert [e.attempt for e in retrying] == [1, 2]
    assert "ConnectionError: attempt 1" in retrying[0].message


async def test_task_fails_once_its_attempts_are_used_up(make, clock):
    s = make()
    policy = RetryPolicy(max_attempts=2, initial_backoff=1.0, jitter=0.0)
    all_cpu = (ResourceRequirement(ResourceType.CPU, 1.0),)
    j = s.submit(job(spec("t", boom, retry=policy, resources=all_cpu)))
    await wait_for(lambda: task_state(s, j, "t") is S.RETRYING)
    assert s.resources.usage()["cpu"].used == 0  # nothing held while waiting out the backoff
    await clock.advance(1)
    assert await finished(s, j) is JobState.FAILED
    r = s.results(j)["t"]
    assert r.attempts == 2 and isinstance(r.error, ValueError)


@pytest.mark.parametrize(
    ("retry_on", "error", "attempts"),
    [
        ((ConnectionError,), ConnectionError("down"), 3),
        ((ConnectionError,), ValueError("bad input"), 1),
        (lambda e: "transient" in str(e), RuntimeError("transient glitch"), 3),
        (lambda e: "transient" in str(e), RuntimeError("fatal"), 1),
    ],
    ids=["listed-type", "other-type", "predicate-yes", "predicate-no"],
)
async def test_retry_on_chooses_which_errors_are_retried(make, clock, retry_on, error, attempts):
    s = make()

    async def failing() -> None:
        raise error

    policy = RetryPolicy(max_attempts=3, initial_backoff=1.0, jitter=0.0, retry_on=retry_on)
    j = s.submit(job(spec("t", failing, retry=policy)))
    for _ in range(4):
        await clock.advance(10)
    assert await finished(s, j) is JobState.FAILED
    assert s.results(j)["t"].attempts == attempts


async def test_attempt_times_out_when_the_clock_passes_its_timeout(make, clock):
    s = make()
    probe = Probe()
    j = s.submit(job(spec("t", probe.task("t"), timeout=5.0)))
    await wait_for(lambda: probe.started)
    await clock.advance(4.9)
    assert task_state(s, j, "t") is S.RUNNING
    await clock.advance(0.1)
    assert await finished(s, j) is JobState.FAILED
    r = s.results(j)["t"]
    assert isinstance(r.error, TaskTimeoutError) and r.error.timeout == 5.0
    assert probe.cancelled == ["t"]


async def test_timed_out_attempt_is_retried_by_policy(make, clock):
    s = make()
    hang = asyncio.Event()
    attempts = 0

    async def slow_then_fast() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await hang.wait()
        return attempts

    policy = RetryPolicy(max_attempts=2, initial_backoff=1.0, jitter=0.0, retry_on=(TimeoutError,))
    j = s.submit(job(spec("t", slow_then_fast, timeout=5.0, retry=policy)))
    await wait_for(lambda: attempts == 1)
    await clock.advance(5)
    assert task_state(s, j, "t") is S.RETRYING
    await clock.advance(1)
    assert await finished(s, j) is JobState.SUCCEEDED
    assert (s.results(j)["t"].attempts, s.results(j)["t"].result) == (2, 2)


# -- circuit breakers -----------------------------------------------------------------------


def open_breaker(s: Scheduler, name: str = "api", timeout: float = 30.0):
    breaker = s.breakers.configure(
        name, CircuitBreakerConfig(failure_threshold=1, timeout_seconds=timeout)
    )
    breaker.failure(ConnectionError("down"))
    assert breaker.state is CircuitBreakerState.OPEN
    return breaker


async def test_task_behind_an_open_breaker_fails_fast_without_running(make):
    s = make()
    open_breaker(s)
    calls: list[str] = []
    events: list[Event] = []
    s.add_listener(events.append)
    j = s.submit(job(spec("t", record(calls, "t"), circuit_breaker="api")))
    assert await finished(s, j) is JobState.FAILED
    error = s.results(j)["t"].error
    assert isinstance(error, CircuitBreakerError) and error.name == "api"
    assert calls == []
    assert S.RUNNING not in task_states(events, "t")


async def test_failing_tasks_trip_their_breaker_for_the_next_ones(make):
    s = make(max_concurrency=1)
    s.breakers.configure("api", CircuitBreakerConfig(failure_threshold=2, timeout_seconds=30))
    calls: list[str] = []

    async def failing() -> None:
        calls.append(current_task().task_id)
        raise ConnectionError("down")

    j = s.submit(job(*(spec(f"t{i}", failing, circuit_breaker="api") for i in range(4))))
    assert await finished(s, j) is JobState.FAILED
    assert calls == ["t0", "t1"]
    assert isinstance(s.results(j)["t3"].error, CircuitBreakerError)


async def test_task_waiting_for_its_breaker_frees_its_slot_and_runs_once_half_open(make, clock):
    s = make(max_concurrency=1)
    breaker = open_breaker(s, timeout=30.0)
    calls: list[str] = []
    guarded = spec(
        "guarded",
        record(calls, "guarded"),
        circuit_breaker="api",
        wait_for_breaker=True,
        priority=9,
    )
    others = [spec(f"other{i}", record(calls, f"other{i}")) for i in range(3)]
    j = s.submit(job(guarded, *others))
    await wait_for(lambda: len(calls) == 3)  # the only slot was free for the others
    await clock.advance(29.9)
    assert "guarded" not in calls and task_state(s, j, "guarded") is S.READY
    await clock.advance(0.1)
    assert await finished(s, j) is JobState.SUCCEEDED
    assert calls[-1] == "guarded"
    assert breaker.state is CircuitBreakerState.CLOSED


async def test_parked_tasks_wait_again_when_the_trial_call_fails(make, clock):
    s = make()
    breaker = open_breaker(s, timeout=30.0)
    calls = 0

    async def call_api() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("still down")

    parked = [spec(f"t{i}", call_api, circuit_breaker="api", wait_for_breaker=True) for i in "01"]
    j = s.submit(job(*parked))
    await settle()
    await clock.advance(30)
    await wait_for(lambda: calls == 1)  # one trial call only, and it fails
    await settle()
    assert calls == 1 and breaker.state is CircuitBreakerState.OPEN
    await clock.advance(30)
    assert await finished(s, j) is JobState.FAILED
    assert calls == 2
    assert [r.state for r in s.results(j).values()] == [S.FAILED, S.SUCCEEDED]


async def test_cancelled_task_parked_on_its_breaker_never_runs(make, clock):
    s = make()
    breaker = open_breaker(s, timeout=30.0)
    calls: list[str] = []
    j = s.submit(job(spec("t", record(calls, "t"), circuit_breaker="api", wait_for_breaker=True)))
    await settle()
    assert s.cancel(j) == 1
    assert await finished(s, j) is JobState.CANCELLED
    await clock.advance(30)
    assert calls == []
    assert breaker.allow_request()  # the half-open trial is still there for someone else


async def test_a_job_holds_its_breakers_until_it_ends_and_they_then_make_room(make):
    s = make(breakers=BreakerRegistry(max_breakers=2))
    gate = asyncio.Event()

    async def wait() -> None:
        await gate.wait()

    live = s.submit(job(spec("a", wait, circuit_breaker="a"), spec("b", wait, circuit_breaker="b")))
    with pytest.raises(LimitExceededError, match="limit is 2"):
        s.submit(job(spec("c", noop, circuit_breaker="c")))
    assert sorted(b.name for b in s.breakers) == ["a", "b"] and len(s.jobs()) == 1
    gate.set()
    assert await s.wait(live) is JobState.SUCCEEDED
    later = s.submit(
        job(spec("c", noop, circuit_breaker="c"), spec("d", noop, circuit_breaker="a"))
    )
    assert await s.wait(later) is JobState.SUCCEEDED
    assert sorted(b.name for b in s.breakers) == ["a", "c"]  # "b" made room


async def test_a_prepared_job_that_never_starts_lets_go_of_its_breakers(make):
    s = make(breakers=BreakerRegistry(max_breakers=1))
    prepared = s.prepare(job(spec("a", noop, circuit_breaker="a")))
    with pytest.raises(LimitExceededError):
        s.submit(job(spec("b", noop, circuit_breaker="b")))
    s.abandon(prepared)  # its journal write failed, say
    assert await s.wait(s.submit(job(spec("b", noop, circuit_breaker="b")))) is JobState.SUCCEEDED


# -- resources ------------------------------------------------------------------------------


@pytest.mark.parametrize(("cpu", "peak"), [(0.6, 1), (0.5, 2), (0.3, 3)])
async def test_cpu_shares_bound_how_many_tasks_overlap(make, cpu, peak):
    s = make(max_concurrency=4)
    gauge = Gauge()

    async def work() -> None:
        with gauge.hold():
            for _ in range(5):
                await asyncio.sleep(0)

    need = (ResourceRequirement(ResourceType.CPU, cpu),)
    j = s.submit(job(*(spec(f"t{i}", work, resources=need) for i in range(6))))
    assert await finished(s, j) is JobState.SUCCEEDED
    assert gauge.peak == peak
    assert s.resources.usage()["cpu"].used == 0


async def test_custom_resource_of_capacity_two_is_a_concurrency_group(make):
    s = make(max_concurrency=8, resources=ResourcePool({"licence": 2}))
    gauge = Gauge()

    async def work() -> None:
        with gauge.hold():
            for _ in range(5):
                await asyncio.sleep(0)

    seat = (ResourceRequirement(ResourceType.CUSTOM, 1, name="licence"),)
    j = s.submit(job(*(spec(f"t{i}", work, resources=seat) for i in range(6))))
    assert await finished(s, j) is JobState.SUCCEEDED
    assert gauge.peak == 2
    assert {key: u.used for key, u in s.resources.usage().items() if u.used} == {}


# -- cancellation ---------------------------------------------------------------------------


async def test_cancelling_a_job_interrupts_it_and_gives_everything_back(make):
    s = make(max_concurrency=2, resources=ResourcePool({"licence": 1}))
    probe = Probe()
    seat = (ResourceRequirement(ResourceType.CUSTOM, 1, name="licence"),)
    j = s.submit(
        job(
            spec("a", probe.task("a"), resources=seat),
            spec("b", probe.task("b")),
            spec("c", noop, "a"),
            spec("d", probe.task("d"), resources=seat),
        )
    )
    await wait_for(lambda: len(probe.started) == 2)
    assert s.cancel(j) == 4
    assert await finished(s, j) is JobState.CANCELLED
    assert sorted(probe.cancelled) == ["a", "b"]
    assert {r.state for r in s.results(j).values()} == {S.CANCELLED}
    assert s.running == 0 and s.resources.waiting == 0
    assert all(u.used == 0 for u in s.resources.usage().values())
    assert s.cancel(j) == 0
    after = s.submit(job(spec("x", noop), spec("y", noop, resources=seat)))
    assert await finished(s, after) is JobState.SUCCEEDED  # slots and the seat are usable again


async def test_cancelled_task_withdraws_its_waiting_resource_request(make):
    s = make(resources=ResourcePool({"licence": 1}))
    probe = Probe()
    seat = (ResourceRequirement(ResourceType.CUSTOM, 1, name="licence"),)
    holder = s.submit(job(spec("holder", probe.task("holder"), resources=seat)))
    await wait_for(lambda: probe.started)
    waiting = s.submit(job(spec("w", probe.task("w"), resources=seat)))
    await wait_for(lambda: s.resources.waiting == 1)
    assert s.cancel(waiting) == 1
    assert await finished(s, waiting) is JobState.CANCELLED
    assert s.resources.waiting == 0
    probe.gate.set()
    assert await finished(s, holder) is JobState.SUCCEEDED
    assert probe.started == ["holder"]
    assert s.resources.usage()["licence"].used == 0


async def test_second_cancel_before_the_task_stopped_cancels_nothing_more(make):
    s = make()
    probe = Probe()
    j = s.submit(job(spec("a", probe.task("a"))))
    await wait_for(lambda: probe.started)
    assert s.cancel(j) == 1
    assert s.cancel(j) == 0
    assert await finished(s, j) is JobState.CANCELLED


async def test_cancelling_a_task_cancels_it_and_its_downstream_only(make):
    s = make()
    probe = Probe()
    j = s.submit(
        job(
            spec("a", probe.task("a")),
            spec("b", noop, "a"),
            spec("c", noop, "b"),
            spec("d", probe.task("d", result="d")),
        )
    )
    await wait_for(lambda: len(probe.started) == 2)
    assert s.cancel(j, ["a"]) == 3
    await wait_for(lambda: task_state(s, j, "a") is S.CANCELLED)
    probe.gate.set()
    await finished(s, j)
    r = s.results(j)
    assert {t: r[t].state for t in "abcd"} == {
        "a": S.CANCELLED,
        "b": S.CANCELLED,
        "c": S.CANCELLED,
        "d": S.SUCCEEDED,
    }
    assert probe.cancelled == ["a"] and r["d"].result == "d"


async def test_a_cancel_keeps_its_reason_in_the_tasks_the_job_and_the_events(make):
    s = make()
    probe = Probe()
    events: list[Event] = []
    s.add_listener(events.append)
    j = s.submit(job(spec("a", probe.task("a")), spec("b", noop, "a"), spec("c", probe.task("c"))))
    await wait_for(lambda: len(probe.started) == 2)
    assert s.cancel(j, ["a"], reason="operator said stop") == 2
    assert s.cancel(j, reason="deploy") == 1  # c; the job keeps the first reason
    assert await finished(s, j) is JobState.CANCELLED
    r = s.results(j)
    assert {t: r[t].message for t in "abc"} == {
        "a": "cancelled: operator said stop",  # running: stopped with it
        "b": "cancelled: operator said stop",  # downstream of a
        "c": "job cancelled: deploy",
    }
    assert s.get_job(j).message == "3 of 3 tasks cancelled: operator said stop"
    ends = {e.task_id: e.message for e in events if isinstance(e, TaskStateChanged)}
    assert ends["a"] == "cancelled: operator said stop" and ends["c"] == "job cancelled: deploy"
    assert events[-1].message == "3 of 3 tasks cancelled: operator said stop"


async def test_a_job_that_failed_and_was_cancelled_says_both(make):
    s = make()
    probe = Probe()

    async def broken() -> None:
        raise ValueError("bad row")

    j = s.submit(job(spec("a", broken), spec("b", probe.task("b"))))
    await wait_for(lambda: probe.started and task_state(s, j, "a") is S.FAILED)
    s.cancel(j, reason="giving up")
    assert await finished(s, j) is JobState.FAILED
    assert s.get_job(j).message == "1 of 2 tasks failed; 1 of 2 tasks cancelled: giving up"


async def test_a_failed_task_keeps_its_error_as_data_in_its_status(make):
    s = make()

    async def broken() -> None:
        raise ValueError("bad row")

    j = s.submit(job(spec("a", broken)))
    assert await finished(s, j) is JobState.FAILED
    assert s.get_job(j).task("a").failure == TaskFailure("ValueError", "bad row")
    assert isinstance(s.results(j)["a"].error, ValueError)  # the exception itself


async def test_a_cancel_without_a_reason_reads_as_before(make):
    s = make()
    probe = Probe()
    j = s.submit(job(spec("a", probe.task("a"))))
    await wait_for(lambda: probe.started)
    s.cancel(j)
    assert await finished(s, j) is JobState.CANCELLED
    assert s.results(j)["a"].message == "job cancelled"
    assert s.get_job(j).message == "1 of 1 tasks cancelled"


async def test_a_task_cancelling_its_own_job_leaves_other_jobs_alone(make):
    s = make(max_concurrency=1)

    async def quit_job() -> None:
        s.cancel(current_task().job_id)

    async def bystander() -> str:
        await asyncio.sleep(0)
        return "fine"

    quitter = s.submit(job(spec("quitter", quit_job)))
    other = s.submit(job(spec("bystander", bystander)))
    assert await finished(s, quitter) is JobState.CANCELLED
    assert await finished(s, other) is JobState.SUCCEEDED


# -- events and progress --------------------------------------------------------------------


async def test_events_number_every_state_change_in_order(make):
    s = make()
    probe = Probe()
    j = s.submit(job(spec("a", probe.task("a")), spec("b", noop, "a")))
    await wait_for(lambda: probe.started)
    assert task_state(s, j, "b") is S.PENDING
    probe.gate.set()
    await finished(s, j)
    events = await collect(s, j)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert task_states(events, "a") == task_states(events, "b") == [S.READY, S.RUNNING, S.SUCCEEDED]
    jobs = [e for e in events if isinstance(e, JobStateChanged)]
    assert [e.state for e in jobs] == [JobState.RUNNING, JobState.SUCCEEDED]
    assert events[-1] is jobs[-1]
    a_done = next(e for e in events if getattr(e, "task_id", "") == "a" and e.state is S.SUCCEEDED)
    b_ready = next(e for e in events if getattr(e, "task_id", "") == "b" and e.state is S.READY)
    assert a_done.sequence < b_ready.sequence


async def test_watch_replays_after_a_sequence_then_follows_live_until_the_end(make):
    s = make()
    probe = Probe()
    j = s.submit(job(spec("a", probe.task("a"))))
    await wait_for(lambda: probe.started)
    seen: list[Event] = []

    async def watcher() -> None:
        async for batch in s.watch(j, after_sequence=1):
            seen.extend(batch)

    watching = asyncio.create_task(watcher())
    await wait_for(lambda: len(seen) == 2)
    assert [(e.sequence, e.state) for e in seen] == [(2, S.READY), (3, S.RUNNING)]
    probe.gate.set()
    await asyncio.wait_for(watching, timeout=5)  # ends by itself after the job's end
    assert [e.sequence for e in seen] == [2, 3, 4, 5]
    assert isinstance(seen[-1], JobStateChanged) and seen[-1].state is JobState.SUCCEEDED


async def test_watcher_behind_a_trimmed_log_resumes_from_a_snapshot(make):
    s = make(event_log_length=2)
    probe = Probe()
    j = s.submit(job(spec("a", probe.task("a")), *(spec(f"t{i}", noop, "a") for i in range(5))))
    await wait_for(lambda: probe.started)
    stream = s.watch(j)
    first = await anext(stream)
    assert [e.sequence for e in first] == [1, 2, 3]
    probe.gate.set()
    await finished(s, j)  # the log moves on and is trimmed past the watcher
    [snapshot] = await asyncio.wait_for(anext(stream), 10)
    assert isinstance(snapshot, Snapshot)
    assert snapshot.job.state is JobState.SUCCEEDED and snapshot.job.count(S.SUCCEEDED) == 6
    assert snapshot.sequence == s.get_job(j).last_sequence
    with pytest.raises(StopAsyncIteration):  # the snapshot already holds the job's end
        await asyncio.wait_for(anext(stream), 10)


async def _halfway() -> str:
    report_progress(0.5, "halfway")
    return "done"


def _halfway_in_a_thread() -> str:
    report_progress(0.5, "halfway")
    return "done"


@pytest.mark.parametrize("func", [_halfway, _halfway_in_a_thread], ids=["async", "thread"])
async def test_progress_reported_inside_a_task_becomes_an_event(make, func):
    s = make()
    events: list[Event] = []
    s.add_listener(events.append)
    j = s.submit(job(spec("t", func)))
    assert await finished(s, j) is JobState.SUCCEEDED
    progress = [e for e in events if isinstance(e, TaskProgress)]
    assert [(e.task_id, e.fraction, e.message) for e in progress] == [("t", 0.5, "halfway")]
    done = next(e for e in events if isinstance(e, TaskStateChanged) and e.state is S.SUCCEEDED)
    assert progress[0].sequence < done.sequence
    assert s.get_job(j).task("t").progress == 0.5


async def test_a_task_sees_its_upstream_results(make):
    s = make()

    async def total() -> tuple[dict[str, Any], str, int]:
        context = current_task()
        return dict(context.upstream_results), context.task_id, context.attempt

    j = s.submit(
        job(spec("a", returning(1)), spec("b", returning(2)), spec("sum", total, "a", "b"))
    )
    await finished(s, j)
    assert s.results(j)["sum"].result == ({"a": 1, "b": 2}, "sum", 1)
    with pytest.raises(RuntimeError, match="inside a task"):
        current_task()


# -- validation and lookups -----------------------------------------------------------------

CPU_TOO_MUCH = (ResourceRequirement(ResourceType.CPU, 1.5),)
GHOST_SEAT = (ResourceRequirement(ResourceType.CUSTOM, 1, name="ghost"),)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (("a", (), {}), "duplicate"),
        (("b", ("ghost",), {}), "'ghost'"),
        (("b", (), {"resources": CPU_TOO_MUCH}), "capacity"),
        (("b", (), {"resources": GHOST_SEAT}), "'ghost'"),
        (("b", (), {"timeout": -1}), "timeout"),
        (("b", (), {"timeout": math.nan}), "timeout"),
    ],
    ids=["duplicate", "unknown-dependency", "too-much", "unknown-resource", "neg-timeout", "nan"],
)
async def test_invalid_job_is_rejected_naming_the_task_and_nothing_is_kept(make, bad, words):
    s = make()
    s.submit(job(spec("earlier", noop)), job_id="earlier")
    calls: list[str] = []
    task_id, deps, options = bad
    tasks = (spec("a", record(calls, "a")), spec(task_id, record(calls, task_id), *deps, **options))
    with pytest.raises(ValidationError) as caught:
        s.submit(job(*tasks), job_id="bad")
    assert caught.value.task_id == task_id
    assert repr(task_id) in str(caught.value) and words in str(caught.value)
    assert [j.job_id for j in s.jobs()] == ["earlier"]
    await settle()
    assert calls == []


async def test_empty_job_is_rejected(make):
    s = make()
    with pytest.raises(ValidationError, match="at least one task"):
        s.submit(JobSpec(tasks=()))
    assert s.jobs() == []


@pytest.mark.parametrize(
    "order",
    [("root", "a", "b", "c"), ("a", "root", "c", "b"), ("c", "b", "a", "root")],
    ids=["topological", "mixed", "reversed"],
)
async def test_dependents_made_ready_together_run_in_the_order_of_the_spec(make, order):
    """However the spec orders tasks and their dependencies, so it orders their start."""
    s = make(max_concurrency=1)
    calls: list[str] = []
    deps = {"root": (), "a": ("root",), "b": ("root",), "c": ("root",)}
    job_id = s.submit(job(*(spec(t, record(calls, t), *deps[t]) for t in order)))
    assert await s.wait(job_id) is JobState.SUCCEEDED
    assert calls == ["root", *(t for t in order if t != "root")]


async def test_a_job_rejected_for_a_cycle_registers_none_of_its_breakers(make):
    s = make()
    tasks = (spec("a", noop, "b", circuit_breaker="fresh"), spec("b", noop, "a"))
    with pytest.raises(CycleError):
        s.submit(job(*tasks))
    assert "fresh" not in s.breakers and s.jobs() == []
    s.submit(job(spec("a", noop, circuit_breaker="fresh")))  # a valid one does
    assert "fresh" in s.breakers


async def test_cycle_is_rejected_with_its_path(make):
    s = make()
    deps = {"a": ("c",), "b": ("a",), "c": ("b",), "free": ()}
    with pytest.raises(CycleError) as caught:
        s.submit(job(*(spec(t, noop, *d) for t, d in deps.items())))
    cycle = caught.value.cycle
    assert len(cycle) == 4 and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert all(up in deps[down] for down, up in itertools.pairwise(cycle))
    assert " -> ".join(cycle) in str(caught.value)
    assert caught.value.task_id in {"a", "b", "c"}
    assert s.jobs() == []


async def test_unknown_job_and_task_ids_raise_not_found(make):
    s = make()
    probe = Probe()
    j = s.submit(job(spec("a", probe.task("a"))))
    for call in (lambda: s.get_job("nope"), lambda: s.cancel("nope"), lambda: s.results("nope")):
        with pytest.raises(NotFoundError, match="'nope'"):
            call()
    with pytest.raises(NotFoundError, match="'nope'"):
        await s.wait("nope")
    with pytest.raises(NotFoundError, match="'nope'"):
        await anext(s.watch("nope"))
    with pytest.raises(NotFoundError, match="'ghost'"):
        s.cancel(j, ["a", "ghost"])
    assert task_state(s, j, "a") in {S.READY, S.RUNNING}  # nothing was cancelled


async def test_only_the_newest_finished_jobs_are_retained(make):
    s = make(retain_finished_jobs=2)
    probe = Probe()
    live = s.submit(job(spec("a", probe.task("a"))))
    done: list[str] = []
    for _ in range(4):
        done.append(s.submit(job(spec("a", noop))))
        await finished(s, done[-1])
    assert [snap.job_id for snap in s.jobs()] == [live, *done[2:]]
    with pytest.raises(NotFoundError):
        s.get_job(done[0])


async def test_finished_jobs_are_dropped_once_their_ttl_passed(make, clock):
    s = make(finished_job_ttl=60)
    old = s.submit(job(spec("a", noop)))
    await finished(s, old)
    await clock.advance(30)
    young = s.submit(job(spec("a", noop)))
    await finished(s, young)
    await clock.advance(29.5)
    assert [snap.job_id for snap in s.jobs()] == [old, young]
    await clock.advance(0.5)  # old finished 60 s ago: gone at the next look
    assert [snap.job_id for snap in s.jobs()] == [young]
    with pytest.raises(NotFoundError):
        s.get_job(old)
    await clock.advance(30)
    with pytest.raises(NotFoundError):
        s.get_job(young)
    assert clock.pending_timers == 0  # lazy eviction: no timer per job
    assert (s.retain_finished_jobs, s.finished_job_ttl) == (1_000, 60)


async def test_the_ttl_counts_from_the_finish_and_spares_live_jobs(make, clock):
    s = make(finished_job_ttl=10)
    probe = Probe()
    live = s.submit(job(spec("a", probe.task("a"))))
    await clock.advance(100)  # running for longer than the TTL: still held
    done = s.submit(job(spec("a", noop)))
    await finished(s, done)
    await clock.advance(10)
    assert [snap.job_id for snap in s.jobs()] == [live]
    probe.gate.set()
    await finished(s, live)
    assert s.get_job(live).state is JobState.SUCCEEDED


async def test_the_count_and_the_ttl_both_bound_retention(make, clock):
    s = make(retain_finished_jobs=1, finished_job_ttl=60)
    first = s.submit(job(spec("a", noop)))
    await finished(s, first)
    second = s.submit(job(spec("a", noop)))
    await finished(s, second)
    assert [snap.job_id for snap in s.jobs()] == [second]  # the count, long before the TTL


async def test_a_ttl_of_zero_drops_a_job_as_it_finishes_but_its_waiters_get_it(make):
    s = make(finished_job_ttl=0)
    j = s.submit(job(spec("a", returning(7))))
    results = await asyncio.wait_for(s.wait_results(j), 10)
    assert results["a"].result == 7
    with pytest.raises(NotFoundError):
        s.get_job(j)


@pytest.mark.parametrize("ttl", [-1, math.inf, math.nan, "60"])
def test_a_ttl_must_be_a_finite_number_of_seconds(ttl):
    with pytest.raises(ValidationError, match="finished_job_ttl"):
        Scheduler(finished_job_ttl=ttl)


async def test_forget_drops_a_finished_job_and_its_id_can_be_used_again(make, clock):
    s = make(finished_job_ttl=60)
    j = s.submit(job(spec("a", noop)), job_id="nightly")
    await finished(s, j)
    s.forget(j)
    await clock.advance(30)
    again = s.submit(job(spec("a", noop)), job_id="nightly")
    await finished(s, again)
    await clock.advance(45)  # the first run would be past its TTL now, the second is not
    assert s.get_job("nightly").state is JobState.SUCCEEDED


class Marker:
    """Something a task holds (as an argument), to tell by weak reference when it is freed."""


@pytest.mark.parametrize("dropped_by", ["forget", "retention"])
@pytest.mark.parametrize("fails", [False, True])
async def test_a_dropped_job_is_freed_at_once_not_left_to_the_collector(make, dropped_by, fails):
    s = make(retain_finished_jobs=1 if dropped_by == "forget" else 0)
    marker = Marker()
    freed = weakref.finalize(marker, lambda: None)

    async def use(_: Marker) -> None:
        if fails:  # its traceback holds the frame that ran it
            raise ValueError("boom")

    action = CallableAction(use, (marker,))
    tasks = (TaskSpec("a", action), TaskSpec("b", action, dependencies=("a",)))
    j = s.submit(JobSpec(tasks=tasks))
    del marker, action, tasks
    with gc_paused():  # whatever frees it, it is not a collection
        outcome = (await s.wait_results(j))["a"]
        assert outcome.state is (S.FAILED if fails else S.SUCCEEDED)
        del outcome  # a result holds its error, and the error its traceback
        if dropped_by == "forget":
            s.forget(j)
        assert not freed.alive


async def test_a_watcher_of_a_job_dropped_as_it_finished_still_gets_its_tasks(make):
    s = make(finished_job_ttl=0, event_log_length=1)
    j = s.submit(job(spec("a", noop), spec("b", noop, "a")))
    results = asyncio.ensure_future(s.wait_results(j))
    batches = s.watch(j)
    await anext(batches)  # the watcher has the job from here on
    await results
    with pytest.raises(NotFoundError):
        s.get_job(j)  # dropped: a TTL of zero
    (snapshot,) = [e async for batch in batches for e in batch if isinstance(e, Snapshot)]
    assert {task.id: task.state for task in snapshot.job.tasks} == {
        "a": S.SUCCEEDED,
        "b": S.SUCCEEDED,
    }


async def test_a_grant_on_its_way_to_a_task_cancelled_and_dropped_meanwhile_is_ignored(make):
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    s = make(resources=ResourcePool({"seat": 1}))
    seat = (ResourceRequirement(ResourceType.CUSTOM, 1, name="seat"),)
    gate = asyncio.Event()
    holder = s.submit(job(spec("a", gate.wait, resources=seat)))
    await wait_for(lambda: task_state(s, holder, "a") is S.RUNNING)
    waiter = s.submit(job(spec("b", noop, resources=seat)))
    await settle()

    def cancel_and_drop_the_waiter(event: Event) -> None:
        # The seat is granted to "b" as "a" lets go of it; the grant's callback comes later.
        if isinstance(event, TaskStateChanged) and event.task_id == "a" and event.state.is_terminal:
            s.cancel(waiter)
            s.forget(waiter)

    s.add_listener(cancel_and_drop_the_waiter)
    gate.set()
    await finished(s, holder)
    await settle()
    assert errors == []
    assert s.resources.usage()["seat"].used == 0


async def test_a_task_context_kept_past_its_dropped_job_says_what_is_wrong(make):
    s = make()
    kept: list[Any] = []

    async def keep() -> None:
        kept.append(current_task())

    j = s.submit(job(spec("a", keep)))
    await finished(s, j)
    (context,) = kept
    assert context.job_id == j
    s.forget(j)
    for stale in ("job_id", "upstream_results", "upstream_outcomes"):
        with pytest.raises(RuntimeError, match="task 'a': its job has ended and been dropped"):
            getattr(context, stale)
    assert repr(context) == "<TaskContext (dropped)/a attempt 1>"


async def test_a_closed_scheduler_is_not_kept_alive_by_a_breaker_registry_it_shared(clock):
    shared = BreakerRegistry(clock=clock)
    scheduler = Scheduler(breakers=shared, clock=clock)
    j = scheduler.submit(job(spec("a", noop)))
    await finished(scheduler, j)
    await scheduler.close()
    await scheduler.close()  # idempotent
    gone = weakref.ref(scheduler)
    del scheduler
    gc.collect()
    assert gone() is None


async def test_close_cancels_running_work(make):
    s = make()
    probe = Probe()
    j = s.submit(job(spec("a", probe.task("a")), spec("b", noop, "a")))
    await wait_for(lambda: probe.started)
    await asyncio.wait_for(s.close(), 10)
    assert probe.cancelled == ["a"]
    assert s.job_state(j) is JobState.CANCELLED and s.running == 0
    with pytest.raises(RuntimeError, match="closed"):
        s.submit(job(spec("x", noop)))


# -- listeners --------------------------------------------------------------------------------


async def test_record_listeners_get_the_raw_records_and_event_listeners_events(make):
    scheduler = make()
    records: list[tuple[str, tuple[Any, ...]]] = []
    events: list[Event] = []

    def on_record(job_id: str, record: tuple[Any, ...]) -> None:
        records.append((job_id, record))

    scheduler.add_record_listener(on_record)
    scheduler.add_listener(events.append)
    job_id = scheduler.submit(job(spec("a", noop)))
    await scheduler.wait(job_id)
    assert [r[1][0] for r in records] == [type(e) for e in events]
    assert all(r[0] == job_id for r in records)
    built = [cls(sequence, job_id, *rest) for _, (cls, sequence, *rest) in records]
    assert built == events
    assert [e.state for e in events if isinstance(e, TaskStateChanged)] == [
        S.READY,
        S.RUNNING,
        S.SUCCEEDED,
    ]
    scheduler.remove_record_listener(on_record)
    scheduler.remove_listener(events.append)
    seen = len(events)
    await scheduler.wait(scheduler.submit(job(spec("b", noop))))
    assert len(events) == seen and len(records) == seen
