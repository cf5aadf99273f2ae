"""An interrupted attempt (`TaskInterruptedError`: the worker left, the daemon restarted) is
not a failure: the task runs again at once, without spending its retry policy, up to its
`max_interruptions`. On a manual clock that never moves: no backoff is waited for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest

from dukat.core import (
    CallableAction,
    CircuitBreakerConfig,
    CircuitBreakerState,
    JobSpec,
    JobState,
    RetryPolicy,
    TaskSpec,
    TaskState,
    TaskStateChanged,
    current_task,
)
from dukat.core.async_assistant import AsyncAssistant
from dukat.core.events import Event
from dukat.core.parallel_executor import ParallelTaskExecutor, Task
from dukat.errors import TaskInterruptedError, TaskTimeoutError, ValidationError
from tests.helpers import finished, wait_for

S = TaskState
LEFT = TaskInterruptedError("worker 'w1' left", cause="worker_lost")


class Boom(Exception):
    pass


def scripted(*outcomes: BaseException | None) -> Callable[[], Awaitable[str]]:
    """A task whose attempt n raises `outcomes[n - 1]` (None: succeeds); past the script,
    the last outcome again."""

    async def run() -> str:
        attempt = current_task().attempt
        outcome = outcomes[min(attempt, len(outcomes)) - 1]
        if outcome is not None:
            raise outcome
        return f"attempt {attempt}"

    return run


def spec(task_id: str, func: Callable[..., Any], *deps: str, **options: Any) -> TaskSpec:
    return TaskSpec(id=task_id, action=CallableAction(func), dependencies=deps, **options)


def transitions(events: Iterable[Event], task_id: str) -> list[tuple[TaskState, int, str]]:
    return [
        (e.state, e.attempt, e.message)
        for e in events
        if isinstance(e, TaskStateChanged) and e.task_id == task_id
    ]


async def test_an_interrupted_task_runs_again_at_once_without_spending_its_one_attempt(make):
    s = make()
    events: list[Event] = []
    s.add_listener(events.append)
    j = s.submit(JobSpec(tasks=(spec("a", scripted(LEFT, None)), spec("b", scripted(None), "a"))))
    assert await finished(s, j) is JobState.SUCCEEDED  # the clock never moved: no backoff
    a, b = s.results(j)["a"], s.results(j)["b"]
    assert (a.state, a.result, a.attempts, a.interruptions) == (S.SUCCEEDED, "attempt 2", 2, 1)
    assert (b.state, b.attempts, b.interruptions) == (S.SUCCEEDED, 1, 0)
    assert transitions(events, "a") == [
        (S.READY, 0, ""),
        (S.RUNNING, 1, ""),
        (S.RETRYING, 1, "interrupted (worker 'w1' left), 1 of 3; running again"),
        (S.READY, 1, ""),
        (S.RUNNING, 2, ""),
        (S.SUCCEEDED, 2, ""),
    ]
    assert s.get_job(j).task("a").interruptions == 1
    assert s.interruptions == {
        "daemon_restart": 0,
        "daemon_stopping": 0,
        "worker_lost": 1,
        "executor_stopped": 0,
        "node_lost": 0,
        "cluster_lost": 0,
        "other": 0,
    }


async def test_past_max_interruptions_the_task_fails_saying_how_often_and_why(make):
    s = make()
    j = s.submit(JobSpec(tasks=(spec("a", scripted(LEFT)), spec("b", scripted(None), "a"))))
    assert await finished(s, j) is JobState.FAILED
    a, b = s.results(j)["a"], s.results(j)["b"]
    assert (a.state, a.attempts, a.interruptions) == (S.FAILED, 4, 4)
    assert a.message == (
        "TaskInterruptedError: interrupted 4 times, the last (worker 'w1' left); "
        "max_interruptions is 3"
    )
    assert a.error is LEFT
    assert b.state is S.SKIPPED


async def test_max_interruptions_0_fails_at_the_first_interruption_saying_so(make):
    s = make()
    j = s.submit(JobSpec(tasks=(spec("a", scripted(LEFT, None), max_interruptions=0),)))
    assert await finished(s, j) is JobState.FAILED
    a = s.results(j)["a"]
    assert (a.attempts, a.interruptions) == (1, 1)
    assert a.message == (
        "TaskInterruptedError: interrupted (worker 'w1' left); max_interruptions is 0: "
        "it must not run twice"
    )


async def test_interruptions_and_failures_are_counted_apart(make):
    """max_attempts=2: failed once and interrupted once, the task still gets its second real
    attempt; the backoff follows the failures (the first wait, 10 s, not the second)."""
    s = make()
    events: list[Event] = []
    s.add_listener(events.append)
    retry = RetryPolicy(max_attempts=2, initial_backoff=10.0, jitter=0.0)
    task = spec("a", scripted(LEFT, Boom("1st"), Boom("2nd")), retry=retry)
    j = s.submit(JobSpec(tasks=(task,)))
    await wait_for(lambda: s.get_job(j).task("a").state is S.RETRYING)
    await wait_for(lambda: s.get_job(j).task("a").attempts == 2)
    assert transitions(events, "a")[-1] == (S.RETRYING, 2, "Boom: 1st; retrying in 10s")
    await s.clock.advance(10)
    assert await finished(s, j) is JobState.FAILED
    a = s.results(j)["a"]
    assert (a.attempts, a.interruptions, a.message) == (3, 1, "Boom: 2nd")


async def test_an_interruption_after_a_failure_does_not_cost_the_retry(make, clock):
    s = make()
    retry = RetryPolicy(max_attempts=2, initial_backoff=1.0, jitter=0.0)
    j = s.submit(JobSpec(tasks=(spec("a", scripted(Boom("x"), LEFT, None), retry=retry),)))
    await wait_for(lambda: s.get_job(j).task("a").state is S.RETRYING)
    await clock.advance(1)
    assert await finished(s, j) is JobState.SUCCEEDED
    a = s.results(j)["a"]
    assert (a.attempts, a.interruptions) == (3, 1)


async def test_an_interruption_is_no_failure_for_the_breaker_and_frees_its_trial(make, clock):
    s = make()
    breaker = s.breakers.configure(
        "api", CircuitBreakerConfig(failure_threshold=1, timeout_seconds=30)
    )
    j = s.submit(JobSpec(tasks=(spec("a", scripted(LEFT, LEFT, None), circuit_breaker="api"),)))
    assert await finished(s, j) is JobState.SUCCEEDED
    assert breaker.state is CircuitBreakerState.CLOSED and breaker.consecutive_failures == 0

    # Half-open, one trial call: an interrupted trial gives it back for the next attempt.
    breaker.failure(ConnectionError("down"))
    await clock.advance(30)
    assert breaker.state is CircuitBreakerState.HALF_OPEN
    j = s.submit(JobSpec(tasks=(spec("b", scripted(LEFT, None), circuit_breaker="api"),)))
    assert await finished(s, j) is JobState.SUCCEEDED
    assert s.results(j)["b"].interruptions == 1
    assert breaker.state is CircuitBreakerState.CLOSED


async def test_a_cancel_wins_over_an_interruption(make):
    """An attempt that, being cancelled, reports an interruption is CANCELLED."""
    s = make()
    started = asyncio.Event()

    async def interrupted_when_cancelled() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise LEFT from None

    j = s.submit(JobSpec(tasks=(spec("a", interrupted_when_cancelled),)))
    await started.wait()
    s.cancel(j)
    assert await finished(s, j) is JobState.CANCELLED
    assert s.results(j)["a"].interruptions == 0


async def test_a_timeout_wins_over_an_interruption(make, clock):
    s = make()
    started = asyncio.Event()

    async def interrupted_when_stopped() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise LEFT from None

    j = s.submit(JobSpec(tasks=(spec("a", interrupted_when_stopped, timeout=5.0),)))
    await started.wait()
    await clock.advance(5)
    assert await finished(s, j) is JobState.FAILED
    a = s.results(j)["a"]
    assert isinstance(a.error, TaskTimeoutError) and a.interruptions == 0


async def test_interruptions_are_counted_by_cause_and_unknown_causes_as_other(make):
    s = make()
    odd = TaskInterruptedError("the moon", cause="lunar")
    stopped = TaskInterruptedError("stopped", cause="executor_stopped")
    plain = TaskInterruptedError("plain")
    j = s.submit(
        JobSpec(
            tasks=(
                spec("a", scripted(odd, None)),
                spec("b", scripted(stopped, None)),
                spec("c", scripted(plain, None)),
            )
        )
    )
    assert await finished(s, j) is JobState.SUCCEEDED
    assert s.interruptions == {
        "daemon_restart": 0,
        "daemon_stopping": 0,
        "worker_lost": 0,
        "executor_stopped": 1,
        "node_lost": 0,
        "cluster_lost": 0,
        "other": 2,
    }


@pytest.mark.parametrize("value", [-1, 101, True, 1.5, None, "3"])
async def test_max_interruptions_must_be_a_whole_number_within_bounds(make, value):
    s = make()
    with pytest.raises(ValidationError, match="max_interruptions") as caught:
        s.submit(JobSpec(tasks=(spec("a", scripted(None), max_interruptions=value),)))
    assert caught.value.task_id == "a"
    assert [v.field for v in caught.value.violations] == ["tasks[0].max_interruptions"]


async def test_the_executor_and_the_assistant_take_max_interruptions():
    async with ParallelTaskExecutor() as executor:
        await executor.add_task(Task("a", scripted(LEFT, None), max_interruptions=0))
        await executor.add_task(Task("b", scripted(LEFT, None)), max_interruptions=1)
        results = await executor.execute_all()
    assert (results["a"].state, results["a"].interruptions) == (S.FAILED, 1)
    assert (results["b"].state, results["b"].interruptions) == (S.SUCCEEDED, 1)

    async with AsyncAssistant() as assistant:
        results = await assistant.execute_tasks_in_parallel(
            [
                {"task_id": "a", "func": scripted(LEFT, None), "max_interruptions": 0},
                {"task_id": "b", "func": scripted(LEFT, None)},
            ]
        )
    assert (results["a"].state, results["a"].attempts) == (S.FAILED, 1)
    assert (results["b"].state, results["b"].attempts) == (S.SUCCEEDED, 2)
