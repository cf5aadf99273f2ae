"""What a journal needs of the engine: prepare then start, restore after a restart, held logs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from dukat.core import (
    BreakerRegistry,
    CallableAction,
    JobSpec,
    JobState,
    RetryPolicy,
    SystemClock,
    TaskSpec,
    TaskState,
    TriggerRule,
)
from dukat.core.events import JobStateChanged, Snapshot, TaskStateChanged
from dukat.core.resources import ResourcePool, ResourceRequirement, ResourceType
from dukat.core.results import TaskFailure, TaskStatus
from dukat.core.scheduler import CancelRequest, JobEnding
from dukat.errors import LimitExceededError, ValidationError
from tests.helpers import finished, settle, states, wait_for

S = TaskState


def recorder(calls: list[str], name: str) -> Callable[[], Any]:
    async def run() -> str:
        calls.append(name)
        return f"{name}-result"

    return run


def spec(calls: list[str], task_id: str, *deps: str, **options: Any) -> TaskSpec:
    return TaskSpec(
        id=task_id, action=CallableAction(recorder(calls, task_id)), dependencies=deps, **options
    )


# -- prepare, then start --------------------------------------------------------------------


async def test_a_prepared_job_runs_nothing_until_started(make):
    calls: list[str] = []
    s = make()
    prepared = s.prepare(JobSpec(tasks=(spec(calls, "a"), spec(calls, "b", "a"))))
    await settle()
    assert calls == [] and prepared.job_id not in s
    job_id = s.start(prepared)
    assert job_id == prepared.job_id
    assert await finished(s, job_id) is JobState.SUCCEEDED
    assert calls == ["a", "b"]


async def test_prepare_validates_the_whole_job_and_keeps_nothing(make):
    s = make()
    with pytest.raises(ValidationError, match="'b'"):
        s.prepare(JobSpec(tasks=(spec([], "a", "b"),)))
    assert s.jobs() == []


async def test_a_prepared_job_never_started_leaves_no_trace(make):
    s = make()
    s.prepare(JobSpec(tasks=(spec([], "a"),)), job_id="j")
    assert "j" not in s and s.jobs() == []
    s.submit(JobSpec(tasks=(spec([], "a"),)), job_id="j")  # the id is still free
    assert await finished(s, "j") is JobState.SUCCEEDED


async def test_the_times_kept_are_the_times_of_their_events(make):
    """A journal keeps the events' times: a restored job must show the times it showed."""
    s = make(clock=SystemClock())  # a clock that moves between two readings
    records: list[tuple[Any, ...]] = []
    s.add_record_listener(lambda job_id, record: records.append(record))
    job_id = s.submit(JobSpec(tasks=(spec([], "a"), spec([], "b", "a"))))
    assert await finished(s, job_id) is JobState.SUCCEEDED
    snapshot = s.get_job(job_id)
    times = {(r[3], r[4]): r[2] for r in records if r[0] is TaskStateChanged}
    for task in snapshot.tasks:
        assert (task.started_at, task.finished_at) == (
            times[task.id, S.RUNNING],
            times[task.id, S.SUCCEEDED],
        )
    [ending] = [r for r in records if r[0] is JobStateChanged and r[3] is JobState.SUCCEEDED]
    assert snapshot.finished_at == ending[2]


# -- restore --------------------------------------------------------------------------------


def diamond(calls: list[str], **options: Any) -> JobSpec:
    # a -> (b, c) -> d
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.0, jitter=0.0)
    return JobSpec(
        tasks=(
            spec(calls, "a", retry=retry),
            spec(calls, "b", "a", retry=retry),
            spec(calls, "c", "a", retry=retry),
            spec(calls, "d", "b", "c", retry=retry),
        ),
        **options,
    )


def done(task_id: str, state: TaskState = S.SUCCEEDED, **fields: Any) -> TaskStatus:
    fields.setdefault("attempts", 1)
    if state is S.SUCCEEDED:
        fields.setdefault("result", f"{task_id}-result")
    return TaskStatus(id=task_id, state=state, finished_at=1.0, started_at=0.5, **fields)


async def test_restored_tasks_that_ended_keep_their_outcome_and_never_run_again(make):
    calls: list[str] = []
    s = make()
    s.restore(
        diamond(calls), job_id="j", created_at=1.0, tasks=[done("a"), done("b")], last_sequence=9
    )
    assert await finished(s, "j") is JobState.SUCCEEDED
    assert sorted(calls) == ["c", "d"]
    results = s.results("j")
    assert results["a"].result == "a-result" and results["a"].attempts == 1
    assert results["d"].result == "d-result"


async def test_an_interrupted_attempt_runs_again_without_spending_the_retry_policy(make):
    """One attempt by default: the restart took it, the task did not fail, it runs again."""
    calls: list[str] = []
    s = make()
    job = JobSpec(tasks=(spec(calls, "a"), spec(calls, "b", "a")))
    running = TaskStatus(id="a", state=S.RUNNING, attempts=1, started_at=0.5)
    s.restore(job, job_id="j", created_at=1.0, tasks=[running], last_sequence=3)
    assert await finished(s, "j") is JobState.SUCCEEDED
    assert calls == ["a", "b"]
    a = s.results("j")["a"]
    assert (a.attempts, a.interruptions, a.started_at) == (2, 1, 0.5)
    assert s.get_job("j").task("a").interruptions == 1
    assert s.interruptions["daemon_restart"] == 1


async def test_an_interrupted_task_that_must_not_run_twice_fails_and_skips_downstream(make):
    calls: list[str] = []
    s = make()
    job = JobSpec(
        tasks=(spec(calls, "a", max_interruptions=0), spec(calls, "b", "a"), spec(calls, "c"))
    )
    running = TaskStatus(id="a", state=S.RUNNING, attempts=1)
    s.restore(job, job_id="j", created_at=1.0, tasks=[running], last_sequence=3)
    assert await finished(s, "j") is JobState.FAILED
    assert calls == ["c"]
    results = s.results("j")
    assert results["a"].state is S.FAILED
    assert results["a"].message == (
        "TaskInterruptedError: interrupted (the daemon restarted); max_interruptions is 0: "
        "it must not run twice"
    )
    assert (results["a"].attempts, results["a"].interruptions) == (1, 1)
    assert results["b"].state is S.SKIPPED and "'a'" in results["b"].message


async def test_the_interruptions_before_a_restart_count_towards_the_cap(make):
    """Interrupted twice, then the daemon restarts mid-attempt: that is its third."""
    calls: list[str] = []
    s = make()
    job = JobSpec(tasks=(spec(calls, "capped", max_interruptions=2), spec(calls, "free")))
    s.restore(
        job,
        job_id="j",
        created_at=1.0,
        tasks=[
            TaskStatus(id="capped", state=S.RUNNING, attempts=3, interruptions=2),
            TaskStatus(id="free", state=S.RUNNING, attempts=3, interruptions=2),
        ],
        last_sequence=9,
    )
    assert await finished(s, "j") is JobState.FAILED
    results = s.results("j")
    assert results["capped"].message == (
        "TaskInterruptedError: interrupted 3 times, the last (the daemon restarted); "
        "max_interruptions is 2"
    )
    assert (results["capped"].attempts, results["capped"].interruptions) == (3, 3)
    assert (results["free"].state, results["free"].attempts) == (S.SUCCEEDED, 4)
    assert results["free"].interruptions == 3
    assert calls == ["free"]


async def test_a_task_restored_between_two_attempts_runs_again_uninterrupted(make):
    """RETRYING: its last attempt had ended (here it failed) before the restart took
    nothing; the next attempt is its second real one, not an interruption."""
    calls: list[str] = []
    s = make()
    retry = RetryPolicy(max_attempts=2, initial_backoff=60.0)
    job = JobSpec(tasks=(spec(calls, "a", retry=retry),))
    waiting = TaskStatus(id="a", state=S.RETRYING, attempts=1)
    s.restore(job, job_id="j", created_at=1.0, tasks=[waiting], last_sequence=4)
    assert await finished(s, "j") is JobState.SUCCEEDED  # at once: no 60 s backoff again
    a = s.results("j")["a"]
    assert (a.attempts, a.interruptions) == (2, 0)


async def test_events_continue_from_the_restored_sequence_without_gap(make):
    calls: list[str] = []
    s = make()
    tail = [
        (JobStateChanged, 1, 1.0, JobState.RUNNING, "4 tasks"),
        (TaskStateChanged, 2, 1.0, "a", S.READY, 0, ""),
        (TaskStateChanged, 3, 1.0, "a", S.RUNNING, 1, ""),
    ]
    running = TaskStatus(id="a", state=S.RUNNING, attempts=1)
    s.restore(
        diamond(calls), job_id="j", created_at=1.0, tasks=[running], events=tail, last_sequence=3
    )
    assert await finished(s, "j") is JobState.SUCCEEDED
    seen = [event async for batch in s.watch("j", 0) for event in batch]
    assert [event.sequence for event in seen] == list(range(1, len(seen) + 1))
    retry = seen[3]
    assert isinstance(retry, TaskStateChanged) and retry.task_id == "a"
    assert retry.state is S.RETRYING
    assert retry.message == "interrupted (the daemon restarted), 1 of 3; running again"


async def test_a_watcher_from_before_the_restored_tail_gets_a_snapshot(make):
    s = make()
    tail = [(TaskStateChanged, 7, 1.0, "a", S.READY, 0, "")]
    s.restore(diamond([]), job_id="j", created_at=1.0, events=tail, last_sequence=7)
    first = await anext(s.watch("j", 2))
    assert isinstance(first[0], Snapshot)
    later = await anext(s.watch("j", 6))
    assert later[0].sequence == 7


async def test_downstream_of_a_restored_failure_is_skipped_and_all_done_runs(make):
    calls: list[str] = []
    s = make()
    job = JobSpec(
        tasks=(
            spec(calls, "a"),
            spec(calls, "b", "a"),
            spec(calls, "cleanup", "a", trigger_rule=TriggerRule.ALL_DONE),
        )
    )
    s.restore(
        job,
        job_id="j",
        created_at=1.0,
        tasks=[done("a", S.FAILED, error="boom")],
        last_sequence=4,
    )
    assert await finished(s, "j") is JobState.FAILED
    assert calls == ["cleanup"]
    assert states(s, "j") == {"a": S.FAILED, "b": S.SKIPPED, "cleanup": S.SUCCEEDED}
    assert s.results("j")["a"].message == "boom"


async def test_a_restored_failure_keeps_its_evidence(make):
    s = make()
    failure = TaskFailure("TaskProcessError", "'sh' exited with code 7", 7, None, b"o", b"e")
    tasks = [done("a", S.FAILED, error="TaskProcessError: ...", failure=failure)]
    s.restore(diamond([]), job_id="j", created_at=1.0, tasks=tasks, last_sequence=4)
    assert await finished(s, "j") is JobState.FAILED
    assert s.get_job("j").task("a").failure == failure


async def test_a_fail_fast_job_with_a_restored_failure_cancels_the_rest(make):
    calls: list[str] = []
    s = make()
    job = JobSpec(tasks=(spec(calls, "a"), spec(calls, "b")), fail_fast=True)
    s.restore(job, job_id="j", created_at=1.0, tasks=[done("a", S.FAILED)], last_sequence=2)
    assert await finished(s, "j") is JobState.FAILED
    assert calls == []
    assert states(s, "j")["b"] is S.CANCELLED


async def test_a_job_whose_tasks_had_all_ended_finishes_at_once(make):
    s = make()
    tasks = [done(task_id) for task_id in "abcd"]
    s.restore(diamond([]), job_id="j", created_at=1.0, tasks=tasks, last_sequence=13)
    assert await finished(s, "j") is JobState.SUCCEEDED
    assert s.get_job("j").last_sequence == 14  # one new event: the job's end


async def test_a_restored_finished_job_is_held_for_retention_and_watchable(make, clock):
    s = make(finished_job_ttl=60.0)
    tail = [(JobStateChanged, 13, 1.0, JobState.SUCCEEDED, "4 tasks succeeded")]
    ended = JobEnding(JobState.SUCCEEDED, clock.wall() - 50.0, "4 tasks succeeded")
    tasks = [done(task_id) for task_id in "abcd"]
    s.restore(
        diamond([]),
        job_id="j",
        created_at=1.0,
        tasks=tasks,
        events=tail,
        last_sequence=13,
        ended=ended,
    )
    assert await finished(s, "j") is JobState.SUCCEEDED
    assert s.get_job("j").message == "4 tasks succeeded"
    assert (await anext(s.watch("j", 12)))[0].sequence == 13
    dropped: list[str] = []
    s.add_drop_listener(dropped.append)
    await clock.advance(11.0)  # 61 s after it finished, by the wall clock it finished at
    assert s.jobs() == [] and dropped == ["j"]


async def test_restore_refuses_an_id_already_held(make):
    s = make()
    s.submit(diamond([]), job_id="j")
    with pytest.raises(ValidationError, match="already exists"):
        s.restore(diamond([]), job_id="j", created_at=1.0)


# -- held logs and drops --------------------------------------------------------------------


async def test_watchers_of_a_held_scheduler_see_only_published_events(make):
    calls: list[str] = []
    s = make(hold_events=True)
    job_id = s.submit(JobSpec(tasks=(spec(calls, "a"),)))
    assert await finished(s, job_id) is JobState.SUCCEEDED
    watcher = s.watch(job_id, 0)
    pending = asyncio.ensure_future(anext(watcher))
    await settle()
    assert not pending.done()  # everything happened, nothing is published
    s.publish(job_id, 2)
    batch = await asyncio.wait_for(pending, 5)
    assert [event.sequence for event in batch] == [1, 2]
    last = s.get_job(job_id).last_sequence
    s.publish(job_id, last)
    rest = [event for b in [b async for b in watcher] for event in b]
    assert [event.sequence for event in rest] == list(range(3, last + 1))


async def test_a_held_watcher_does_not_end_before_the_last_event_is_published(make):
    s = make(hold_events=True)
    job_id = s.submit(JobSpec(tasks=(spec([], "a"),)))
    await finished(s, job_id)
    last = s.get_job(job_id).last_sequence
    s.publish(job_id, last - 1)
    seen: list[int] = []

    async def watch() -> None:
        async for batch in s.watch(job_id, 0):
            seen.extend(event.sequence for event in batch)

    watching = asyncio.ensure_future(watch())
    await wait_for(lambda: len(seen) == last - 1)
    assert not watching.done()
    s.publish(job_id, last)
    await asyncio.wait_for(watching, 5)
    assert seen == list(range(1, last + 1))


async def test_a_held_job_dropped_before_its_end_is_published_still_ends_its_watcher(make):
    # Retention may drop a finished job before the journal has published its last events:
    # its watcher must still see them when they are published, and end.
    s = make(hold_events=True, retain_finished_jobs=1)
    job_id = s.submit(JobSpec(tasks=(spec([], "a"),)))
    await finished(s, job_id)
    last = s.get_job(job_id).last_sequence
    s.publish(job_id, 1)
    seen: list[int] = []

    async def watch() -> None:
        async for batch in s.watch(job_id, 0):
            seen.extend(event.sequence for event in batch)

    watching = asyncio.ensure_future(watch())
    await wait_for(lambda: seen == [1])
    s.forget(job_id)
    s.publish(job_id, last)
    await asyncio.wait_for(watching, 5)
    assert seen == list(range(1, last + 1))
    # Published to its end, the dropped job is let go of.
    assert not s._retention.unpublished
    # One dropped by retention likewise.
    dropped = s.submit(JobSpec(tasks=(spec([], "a"),)))
    await finished(s, dropped)
    watcher = s.watch(dropped, 0)
    pending = asyncio.ensure_future(anext(watcher))
    await settle()
    await finished(s, s.submit(JobSpec(tasks=(spec([], "a"),))))
    assert dropped not in s and not pending.done()
    s.publish(dropped, last)  # one task each: as many events as the first job
    batch = await asyncio.wait_for(pending, 5)
    assert batch[-1].sequence == last and isinstance(batch[-1], JobStateChanged)
    assert [b async for b in watcher] == []


async def test_forgetting_and_retention_tell_the_drop_listeners(make):
    s = make(retain_finished_jobs=1)
    dropped: list[str] = []
    s.add_drop_listener(dropped.append)
    first = s.submit(JobSpec(tasks=(spec([], "a"),)))
    await finished(s, first)
    second = s.submit(JobSpec(tasks=(spec([], "a"),)))
    await finished(s, second)
    assert dropped == [first]
    s.forget(second)
    assert dropped == [first, second]


async def test_cancel_requests_apply_before_anything_runs_again(make):
    calls: list[str] = []
    s = make()
    running = TaskStatus(id="b", state=S.RUNNING, attempts=1)
    s.restore(
        diamond(calls),
        job_id="j",
        created_at=1.0,
        tasks=[done("a"), running],
        last_sequence=6,
        cancels=[CancelRequest(("b",))],
    )
    assert await finished(s, "j") is JobState.CANCELLED
    assert calls == ["c"]  # b was being cancelled, d is downstream of it
    assert states(s, "j") == {
        "a": S.SUCCEEDED,
        "b": S.CANCELLED,
        "c": S.SUCCEEDED,
        "d": S.CANCELLED,
    }


async def test_a_restored_cancel_keeps_its_reason(make):
    s = make()
    running = TaskStatus(id="b", state=S.RUNNING, attempts=1)
    s.restore(
        diamond([]),
        job_id="j",
        created_at=1.0,
        tasks=[done("a"), running],
        last_sequence=6,
        cancels=[CancelRequest(("b",), "operator said stop")],
    )
    assert await finished(s, "j") is JobState.CANCELLED
    results = s.results("j")
    assert results["b"].message == results["d"].message == "cancelled: operator said stop"
    assert s.get_job("j").message == "2 of 4 tasks cancelled: operator said stop"


async def test_a_job_being_cancelled_ends_cancelled_without_running_anything(make):
    calls: list[str] = []
    s = make()
    running = TaskStatus(id="a", state=S.RUNNING, attempts=1)
    s.restore(
        diamond(calls),
        job_id="j",
        created_at=1.0,
        tasks=[running],
        last_sequence=3,
        cancels=[CancelRequest()],
    )
    assert await finished(s, "j") is JobState.CANCELLED
    assert calls == [] and set(states(s, "j").values()) == {S.CANCELLED}


async def test_restored_jobs_come_back_past_the_breakers_limit_and_finished_ones_hold_none(
    make,
):
    calls: list[str] = []
    s = make(breakers=BreakerRegistry(max_breakers=1))
    ended = JobEnding(JobState.SUCCEEDED, 1_700_000_000.0)
    s.restore(
        JobSpec(tasks=(spec(calls, "a", circuit_breaker="old"),)),
        job_id="done",
        created_at=1_700_000_000.0,
        ended=ended,
    )
    gate = asyncio.Event()

    async def wait() -> None:
        await gate.wait()

    live = JobSpec(
        tasks=(
            TaskSpec("x", CallableAction(wait), circuit_breaker="x"),
            TaskSpec("y", CallableAction(wait), circuit_breaker="y"),
        )
    )
    s.restore(live, job_id="live", created_at=1_700_000_000.0)  # two breakers, past the limit
    assert {"x", "y"} <= {b.name for b in s.breakers}
    with pytest.raises(LimitExceededError):
        s.submit(JobSpec(tasks=(spec(calls, "z", circuit_breaker="z"),)))
    gate.set()
    assert await finished(s, "live") is JobState.SUCCEEDED
    job_id = s.submit(JobSpec(tasks=(spec(calls, "z", circuit_breaker="z"),)))
    assert await finished(s, job_id) is JobState.SUCCEEDED
    assert [b.name for b in s.breakers] == ["z"]


# -- a job accepted by a scheduler set up otherwise -------------------------------------------


class Elsewhere:
    """An action no runner of the restoring scheduler takes (exec, on a daemon now without)."""


async def test_a_restored_task_this_scheduler_cannot_run_fails_saying_why_and_the_job_stays(make):
    calls: list[str] = []
    s = make()
    job = JobSpec(
        tasks=(
            spec(calls, "ok"),
            TaskSpec("elsewhere", Elsewhere()),
            spec(calls, "after", "elsewhere", retry=RetryPolicy(max_attempts=3)),
        )
    )
    with pytest.raises(ValidationError):  # a new job like it is refused whole, as ever
        s.submit(job)
    job_id = s.restore(job, job_id="j1", created_at=1.0)
    assert await finished(s, job_id) is JobState.FAILED
    results = s.results(job_id)
    assert results["ok"].state is S.SUCCEEDED and calls == ["ok"]
    failed = results["elsewhere"]
    assert failed.state is S.FAILED and failed.attempts == 1  # never retried: nothing would help
    assert "cannot run here: task 'elsewhere': no runner for actions of type Elsewhere" in (
        failed.message
    )
    assert results["after"].state is S.SKIPPED


async def test_a_restored_task_wanting_more_than_the_pool_has_now_fails_instead_of_waiting(make):
    calls: list[str] = []
    s = make(resources=ResourcePool({"licence": 1}))
    job = JobSpec(
        tasks=(
            spec(
                calls,
                "big",
                resources=(ResourceRequirement(ResourceType.CUSTOM, 2, name="licence"),),
            ),
        )
    )
    job_id = s.restore(job, job_id="j1", created_at=1.0)
    assert await finished(s, job_id) is JobState.FAILED
    assert calls == [] and "cannot run here" in s.results(job_id)["big"].message
    assert s.resources.usage()["licence"].available == 1  # it never held any
