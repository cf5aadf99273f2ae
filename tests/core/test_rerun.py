"""A rerun: a new job that carries over what succeeded in a finished one and runs the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dukat.core import (
    CallableAction,
    JobSpec,
    JobState,
    ManualClock,
    ProgressFold,
    Scheduler,
    TaskSpec,
    TaskState,
    TriggerRule,
    current_task,
)
from dukat.core.events import CARRIED, TaskStateChanged
from dukat.errors import NotFoundError
from tests.helpers import finished, wait_for

S = TaskState


class Pipeline:
    """Tasks that record each call; `broken` ones raise until `fixed`."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.broken: set[str] = set()
        self.seen: dict[str, dict[str, Any]] = {}  # task id -> its upstream results

    def action(self, task_id: str) -> CallableAction:
        async def run() -> str:
            self.calls.append(task_id)
            self.seen[task_id] = dict(current_task().upstream_results)
            if task_id in self.broken:
                raise RuntimeError(f"{task_id} is broken")
            return f"{task_id}-result"

        return CallableAction(run)

    def spec(self, *tasks: tuple[str, tuple[str, ...]], **options: Any) -> JobSpec:
        return JobSpec(
            tasks=tuple(
                TaskSpec(task_id, self.action(task_id), dependencies=deps)
                for task_id, deps in tasks
            ),
            **options,
        )


CHAIN = (("extract", ()), ("clean", ("extract",)), ("load", ("clean",)), ("report", ("load",)))


async def failed_chain(make: Callable[..., Any]) -> tuple[Any, Pipeline, JobSpec, str]:
    """A scheduler, and a 4-task chain whose third task failed."""
    s = make()
    pipeline = Pipeline()
    pipeline.broken.add("load")
    spec = pipeline.spec(*CHAIN)
    job_id = s.submit(spec)
    assert await finished(s, job_id) is JobState.FAILED
    assert pipeline.calls == ["extract", "clean", "load"]
    pipeline.calls.clear()
    return s, pipeline, spec, job_id


async def test_a_rerun_carries_over_what_succeeded_and_runs_the_rest(make):
    s, pipeline, spec, old = await failed_chain(make)
    before = s.get_job(old)
    pipeline.broken.clear()
    new = s.submit(spec, rerun_of=old)
    assert new != old
    assert await finished(s, new) is JobState.SUCCEEDED
    assert pipeline.calls == ["load", "report"]
    # What ran again sees the carried results of its upstreams.
    assert pipeline.seen["load"] == {"clean": "clean-result"}
    job = s.get_job(new)
    for task_id in ("extract", "clean"):
        task, was = job.task(task_id), before.task(task_id)
        assert (task.state, task.result, task.carried_from) == (S.SUCCEEDED, was.result, old)
        assert (task.attempts, task.started_at, task.finished_at) == (
            was.attempts,
            was.started_at,
            was.finished_at,
        )
    assert job.task("load").carried_from == "" and job.task("load").attempts == 1
    assert s.results(new)["report"].result == "report-result"
    assert s.get_job(old) == before  # the old job is left as it was


async def test_carried_tasks_say_so_in_events_of_the_new_job(make):
    s, pipeline, spec, old = await failed_chain(make)
    pipeline.broken.clear()
    new = s.submit(spec, rerun_of=old)
    assert await finished(s, new) is JobState.SUCCEEDED
    events = [e async for batch in s.watch(new) for e in batch]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].message == f"4 tasks, 2 carried over from job {old}"
    carried = [e for e in events if isinstance(e, TaskStateChanged) and e.message]
    carried = [e for e in carried if e.message.startswith(CARRIED)]
    assert [(e.task_id, e.state, e.message) for e in carried] == [
        ("extract", S.SUCCEEDED, f"carried over from job {old}"),
        ("clean", S.SUCCEEDED, f"carried over from job {old}"),
    ]
    # A carried task keeps its time: its event says when it ended.
    assert carried[0].time == s.get_job(old).task("extract").finished_at
    # Folding the new job's events from its first counts the carried tasks as done.
    fold = ProgressFold(new, total=4)
    fold.apply(events)
    assert fold.progress(0.0).counts == s.get_job(new).task_counts


async def test_a_tracker_counts_carried_tasks_as_done(make):
    s, pipeline, spec, old = await failed_chain(make)
    pipeline.broken = {"report"}  # the rerun fails again, later
    new = s.submit(spec, rerun_of=old)
    tracker = s.track(new)
    assert tracker.progress.done == 2 and tracker.progress.total == 4
    assert await finished(s, new) is JobState.FAILED
    progress = await tracker.wait()
    assert progress.count(S.SUCCEEDED) == 3 and progress.count(S.FAILED) == 1


async def test_with_a_changed_spec_a_changed_task_and_its_downstream_run_again(make):
    s, pipeline, _, old = await failed_chain(make)
    pipeline.broken.clear()
    # The same actions but for `clean`'s (a new callable): it and everything after it run.
    tasks = {task.id: task for task in s.job_spec(old).tasks}
    tasks["clean"] = tasks["clean"]._replace(action=pipeline.action("clean"))
    changed = JobSpec(tasks=tuple(tasks.values()))
    new = s.submit(changed, rerun_of=old)
    assert await finished(s, new) is JobState.SUCCEEDED
    assert pipeline.calls == ["clean", "load", "report"]
    job = s.get_job(new)
    assert [t.id for t in job.tasks if t.carried_from] == ["extract"]


async def test_what_does_not_decide_a_result_may_change(make):
    """Description, priority, timeout, retries, resources, breaker: how, not what."""
    s, pipeline, _, old = await failed_chain(make)
    pipeline.broken.clear()
    tasks = [
        task._replace(description="now described", priority=5, timeout=30.0)
        for task in s.job_spec(old).tasks
    ]
    tasks.append(TaskSpec("new", pipeline.action("new"), dependencies=("clean",)))
    new = s.submit(JobSpec(tasks=tuple(tasks), labels={"try": "2"}), rerun_of=old)
    assert await finished(s, new) is JobState.SUCCEEDED
    assert sorted(pipeline.calls) == ["load", "new", "report"]


async def test_a_task_whose_upstream_runs_again_runs_again(make):
    """`tidy` (ALL_DONE) succeeded after `load` failed: `load` runs again, so `tidy` too."""
    s = make()
    pipeline = Pipeline()
    pipeline.broken.add("load")
    tasks = [TaskSpec(i, pipeline.action(i), dependencies=d) for i, d in CHAIN[:3]]
    tasks.append(
        TaskSpec(
            "tidy",
            pipeline.action("tidy"),
            dependencies=("load",),
            trigger_rule=TriggerRule.ALL_DONE,
        )
    )
    spec = JobSpec(tasks=tuple(tasks))
    old = s.submit(spec)
    assert await finished(s, old) is JobState.FAILED
    assert s.get_job(old).task("tidy").state is S.SUCCEEDED
    pipeline.calls.clear()
    pipeline.broken.clear()
    new = s.submit(spec, rerun_of=old)
    assert await finished(s, new) is JobState.SUCCEEDED
    assert pipeline.calls == ["load", "tidy"]


async def test_a_rerun_with_nothing_left_to_run_succeeds_at_once(make):
    s = make()
    pipeline = Pipeline()
    spec = pipeline.spec(*CHAIN)
    old = s.submit(spec)
    assert await finished(s, old) is JobState.SUCCEEDED
    pipeline.calls.clear()
    new = s.submit(spec, rerun_of=old)
    assert s.job_state(new) is JobState.SUCCEEDED
    assert pipeline.calls == []
    assert s.get_job(new).message == "4 tasks succeeded"


async def test_a_rerun_of_a_rerun_carries_from_the_job_it_reruns(make):
    s, pipeline, spec, first = await failed_chain(make)
    pipeline.broken = {"report"}
    second = s.submit(spec, rerun_of=first)
    assert await finished(s, second) is JobState.FAILED
    pipeline.broken.clear()
    third = s.submit(spec, rerun_of=second)
    assert await finished(s, third) is JobState.SUCCEEDED
    carried = {t.id: t.carried_from for t in s.get_job(third).tasks}
    assert carried == {"extract": second, "clean": second, "load": second, "report": ""}


async def test_a_rerun_of_a_job_still_running_or_unknown_is_refused(make):
    s = make()
    pipeline = Pipeline()
    gate_open = False

    async def wait() -> None:
        await wait_for(lambda: gate_open, within=10)

    spec = JobSpec(tasks=(TaskSpec("slow", CallableAction(wait)),))
    running = s.submit(spec)
    with pytest.raises(ValueError, match=r"still running; cancel it or wait for it to end"):
        s.submit(spec, rerun_of=running)
    with pytest.raises(NotFoundError, match="'nope'"):
        s.submit(pipeline.spec(*CHAIN), rerun_of="nope")
    gate_open = True
    assert await finished(s, running) is JobState.SUCCEEDED
    assert len(s.jobs()) == 1  # nothing was kept of the refused ones


async def test_a_prepared_rerun_restored_before_it_started_keeps_its_carried_tasks(make):
    """What a journal does with a rerun accepted just before a crash: the carried outcomes
    it wrote with the job come back, announced as when the job starts."""
    s, pipeline, spec, old = await failed_chain(make)
    pipeline.broken.clear()
    prepared = s.prepare(spec, rerun_of=old)
    assert [t.id for t in prepared.carried] == ["extract", "clean"]
    assert {t.carried_from for t in prepared.carried} == {old}
    s.abandon(prepared)
    after = make()
    after.restore(spec, job_id="again", created_at=1.0, tasks=prepared.carried)
    assert await finished(after, "again") is JobState.SUCCEEDED
    assert pipeline.calls == ["load", "report"]
    job = after.get_job("again")
    assert [t.id for t in job.tasks if t.carried_from == old] == ["extract", "clean"]
    events = [e async for batch in after.watch("again") for e in batch]
    assert [e.task_id for e in events if getattr(e, "message", "").startswith(CARRIED)] == [
        "extract",
        "clean",
    ]


@st.composite
def broken_dags(draw: st.DrawFn) -> tuple[list[tuple[str, tuple[str, ...], bool]], set[str]]:
    """Up to 8 tasks, each after some of those before it, some ALL_DONE; some broken."""
    tasks = []
    for index in range(draw(st.integers(1, 8))):
        earlier = [f"t{i}" for i in range(index)]
        deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        tasks.append((f"t{index}", tuple(deps), draw(st.booleans())))
    broken = draw(st.sets(st.sampled_from([task_id for task_id, _, _ in tasks])))
    return tasks, broken


@settings(max_examples=150, deadline=None)
@given(broken_dags())
def test_a_rerun_of_the_same_job_fixed_runs_exactly_what_was_not_carried(dag) -> None:
    """Carried: SUCCEEDED before, and every upstream carried (the definition, recursively);
    each other task runs once, and the fixed job succeeds; its events fold to its counts."""
    tasks, broken = dag

    async def run() -> None:
        pipeline = Pipeline()
        pipeline.broken |= broken
        rule = {True: TriggerRule.ALL_DONE, False: TriggerRule.ALL_SUCCESS}
        spec = JobSpec(
            tasks=tuple(
                TaskSpec(task_id, pipeline.action(task_id), dependencies=deps, trigger_rule=rule[a])
                for task_id, deps, a in tasks
            )
        )
        async with Scheduler(clock=ManualClock()) as s:
            old = s.submit(spec)
            await finished(s, old)
            before = {t.id: t.state for t in s.get_job(old).tasks}
            carried: dict[str, bool] = {}
            for task_id, deps, _ in tasks:  # upstreams come first
                carried[task_id] = before[task_id] is S.SUCCEEDED and all(carried[d] for d in deps)
            pipeline.calls.clear()
            pipeline.broken.clear()
            new = s.submit(spec, rerun_of=old)
            assert await finished(s, new) is JobState.SUCCEEDED
            assert sorted(pipeline.calls) == sorted(t for t, kept in carried.items() if not kept)
            job = s.get_job(new)
            assert {t.id for t in job.tasks if t.carried_from == old} == {
                t for t, kept in carried.items() if kept
            }
            fold = ProgressFold(new, total=len(tasks))
            fold.apply([e async for batch in s.watch(new) for e in batch])
            assert fold.progress(0.0).counts == job.task_counts

    asyncio.run(run())
