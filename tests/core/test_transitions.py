"""The seams the scheduler's rooms meet at: the one transition function (and its silent form,
for records put back as they were), and the narrow reporter a task's context holds."""

from __future__ import annotations

import asyncio

import pytest

from dukat.core import CallableAction, JobSpec, TaskSpec, current_task
from dukat.core._runs import JobRun, TaskRun
from dukat.core._transitions import Transitions, put_back, put_back_job
from dukat.core.events import JobStateChanged, TaskStateChanged
from dukat.core.states import TASK_REACHABLE, JobState, TaskState
from tests.helpers import finished


async def noop() -> None:
    return None


def records() -> tuple[JobRun, TaskRun]:
    job = JobRun("j", JobSpec((TaskSpec("t", CallableAction(noop)),)), 0, 0.0, 100)
    run = TaskRun(job.spec.tasks[0], job, None, None)
    job.tasks = {"t": run}
    return job, run


def test_a_transition_checks_the_table_and_records_one_event() -> None:
    job, run = records()
    heard: list[tuple[str, tuple]] = []
    transitions = Transitions(lambda: 5.0)
    transitions.listeners.append(lambda job_id, record: heard.append((job_id, record)))
    with pytest.raises(RuntimeError, match="PENDING -> RUNNING is not allowed"):
        transitions.task(run, TaskState.RUNNING)
    assert run.state is TaskState.PENDING and job.sequence == 0 and heard == []
    transitions.task(run, TaskState.READY, "go")
    transitions.job(job, JobState.RUNNING, "1 tasks")
    assert (run.state, job.state, job.sequence) == (TaskState.READY, JobState.RUNNING, 2)
    assert [type(event) for event in job.log.read(0)] == [TaskStateChanged, JobStateChanged]
    assert heard[0] == ("j", (TaskStateChanged, 1, 5.0, "t", TaskState.READY, 0, "go"))


def test_putting_back_is_silent_and_only_goes_where_the_table_leads() -> None:
    job, run = records()
    put_back(run, TaskState.SUCCEEDED)  # PENDING, READY, RUNNING, SUCCEEDED: reachable
    put_back_job(job, JobState.FAILED)
    assert (run.state, job.state) == (TaskState.SUCCEEDED, JobState.FAILED)
    assert job.sequence == 0 and len(job.log) == 0  # no event: the log had them already
    with pytest.raises(RuntimeError, match="SUCCEEDED cannot lead to PENDING"):
        put_back(run, TaskState.PENDING)
    with pytest.raises(RuntimeError, match="FAILED cannot lead to RUNNING"):
        put_back_job(job, JobState.RUNNING)
    assert (run.state, job.state) == (TaskState.SUCCEEDED, JobState.FAILED)


def test_reachable_states_follow_the_transition_table() -> None:
    assert TASK_REACHABLE[TaskState.PENDING] == frozenset(TaskState) - {TaskState.PENDING}
    assert TASK_REACHABLE[TaskState.RETRYING] >= {TaskState.RUNNING, TaskState.SUCCEEDED}
    assert all(not TASK_REACHABLE[state] for state in TaskState if state.is_terminal)


async def test_a_tasks_context_holds_a_reporter_not_the_scheduler(make) -> None:
    scheduler = make()
    seen = []

    async def look() -> None:
        context = current_task()
        seen.append(context._reporter)
        context.report_progress(0.5, "half")
        await asyncio.to_thread(context.output, "stdout", "from a thread")

    job_id = scheduler.submit(JobSpec((TaskSpec("t", CallableAction(look)),)))
    await finished(scheduler, job_id)
    (reporter,) = seen
    assert reporter is not scheduler
    assert {name for name in dir(reporter) if not name.startswith("_")} == {
        "loop",
        "loop_thread",
        "report",
        "waiting",
    }
    kinds = {type(event).__name__ for event in scheduler._jobs[job_id].log.read(0)}
    assert "TaskProgress" in kinds and "TaskOutput" in kinds
    assert not hasattr(scheduler, "report") and not hasattr(scheduler, "waiting")
