"""A rerun: which tasks of a new job carry over what they did in the finished job it reruns.

A task is carried over, SUCCEEDED at once with its result, attempts and times, when the job
it reruns had a task of its id that SUCCEEDED doing the same work (`same_work`), and every one
of its upstreams is carried over too: a task downstream of one that runs again runs again, as
make rebuilds what depends on a rebuilt target. The rest run. The outcomes found here are put
on the new job's records by `apply_outcomes`, as a restart's are.
"""

from __future__ import annotations

from collections.abc import Iterator

from dukat.core._runs import JobRun, TaskRun
from dukat.core.events import CARRIED
from dukat.core.graph import topological_order
from dukat.core.results import TaskStatus
from dukat.core.spec import TaskSpec
from dukat.core.states import TaskState

__all__ = ["carried_over", "same_work"]


def same_work(before: TaskSpec, now: TaskSpec) -> bool:
    """Whether `now` does what `before` did, so that its result would be the same: the same
    action, dependencies (in order, as a worker is given their results), trigger rule and
    labels (a callable may read them). How it is run may differ: description, priority,
    retry policy, timeout, resources, breaker, interruptions allowed."""
    return (
        before.action == now.action
        and before.dependencies == now.dependencies
        and before.trigger_rule is now.trigger_rule
        and before.labels == now.labels
    )


def carried_over(before: JobRun, job: JobRun) -> list[TaskStatus]:
    """The tasks of `job` (built, not started) that carry over their outcome in `before` (a
    finished job), upstreams first, as `apply_outcomes` takes them."""
    earlier = before.tasks
    message = f"{CARRIED}{before.id}"
    kept: set[str] = set()
    carried = []
    for run in _upstreams_first(job):
        old = earlier.get(run.id)
        if (
            old is None
            or old.state is not TaskState.SUCCEEDED
            or not same_work(old.spec, run.spec)
            or not kept.issuperset(run.spec.dependencies)
        ):
            continue
        kept.add(run.id)
        carried.append(
            TaskStatus(
                id=run.id,
                state=TaskState.SUCCEEDED,
                attempts=old.attempts,
                error=message,  # the record's message, which its event says
                started_at=old.started_at,
                finished_at=old.finished_at,
                description=run.spec.description,
                result=old.result,
                interruptions=old.interruptions,
                carried_from=before.id,
            )
        )
    return carried


def _upstreams_first(job: JobRun) -> Iterator[TaskRun]:
    """The job's tasks, each after all of its upstreams (the job is acyclic)."""
    tasks = job.tasks
    for task_id in topological_order(
        {task_id: run.spec.dependencies for task_id, run in tasks.items()}
    ):
        yield tasks[task_id]
