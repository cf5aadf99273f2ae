"""Jobs, task statuses and events as they stand: engine -> proto, and back for clients."""

from __future__ import annotations

from collections.abc import Collection

from dukat.convert._results import (
    task_failure_from_proto,
    task_failure_to_proto,
    task_result_from_proto,
    task_result_to_proto,
)
from dukat.convert._tables import (
    BREAKER_STATES,
    JOB_STATES,
    OUTPUT_STREAMS,
    TASK_STATES,
    seconds_of,
    time_or_none,
    timestamp,
)
from dukat.core.breaker import BreakerTransition
from dukat.core.events import (
    Event,
    JobStateChanged,
    Snapshot,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    TaskWaiting,
)
from dukat.core.results import JobSnapshot, TaskStatus
from dukat.core.states import TaskState
from dukat.v1 import breaker_pb2, event_pb2, job_pb2

# -- jobs and tasks as they stand -------------------------------------------------------------

_COUNT_FIELDS = {state: state.value for state in TaskState}  # TaskCounts field per state
_TASK_WIRE = TASK_STATES.to_wire  # TaskState -> wire number, for the per-task hot paths


def job_to_proto(
    snapshot: JobSnapshot,
    *,
    with_tasks: bool = True,
    result_budget: int | None = None,
    task_ids: Collection[str] = (),
) -> job_pb2.Job:
    """A Job message, with the snapshot's `task_counts`.

    `result_budget`: None leaves every task's result out (Watch snapshots, ListJobs), and
    the output tails of failures; a number of bytes fills them, in task order, while they
    fit in it, and marks the ones that did not `result_omitted` (GetJob: a job's results
    together are unbounded, a message is not). `task_ids`: only these tasks in `tasks` (all
    of them when empty).
    """
    job = job_pb2.Job(
        job_id=snapshot.job_id,
        state=JOB_STATES.to_proto(snapshot.state),
        labels=dict(snapshot.labels),
        last_sequence=snapshot.last_sequence,
        message=snapshot.message,
    )
    for state, count in snapshot.task_counts.items():
        setattr(job.task_counts, _COUNT_FIELDS[state], count)
    if with_tasks:
        statuses = snapshot.tasks
        if task_ids:
            wanted = set(task_ids)
            statuses = tuple(status for status in statuses if status.id in wanted)
        if result_budget is None:
            job.tasks.extend(task_status_to_proto(status) for status in statuses)
        else:
            left = result_budget
            for status in statuses:
                message = task_status_to_proto(status)
                result = task_result_to_proto(status.result)
                if result is not None:
                    size = result.ByteSize()
                    if size <= left:
                        left -= size
                        message.result.CopyFrom(result)
                    else:
                        message.result_omitted = True
                failure = status.failure
                if failure is not None and (failure.stdout or failure.stderr):
                    size = len(failure.stdout) + len(failure.stderr)
                    if size <= left:
                        left -= size
                        message.failure.stdout = failure.stdout
                        message.failure.stderr = failure.stderr
                    else:
                        message.result_omitted = True
                job.tasks.append(message)
    if snapshot.created_at is not None:
        job.created_at.CopyFrom(timestamp(snapshot.created_at))
    if snapshot.finished_at is not None:
        job.finished_at.CopyFrom(timestamp(snapshot.finished_at))
    return job


def task_status_to_proto(status: TaskStatus) -> job_pb2.TaskStatus:
    """A TaskStatus message without its result, and its failure without output tails
    (`job_to_proto` adds them within a budget)."""
    started_at, finished_at, failure = status.started_at, status.finished_at, status.failure
    return job_pb2.TaskStatus(
        id=status.id,
        state=_TASK_WIRE[status.state],
        attempts=status.attempts,
        error=status.error,
        progress_message=status.progress_message,
        description=status.description,
        started_at=None if started_at is None else timestamp(started_at),
        finished_at=None if finished_at is None else timestamp(finished_at),
        progress=status.progress,
        failure=None if failure is None else task_failure_to_proto(failure, tails=False),
        interruptions=status.interruptions,
        waiting_for=status.waiting_for,
        waiting_for_queue=status.waiting_for_queue,
        carried_from=status.carried_from,
    )


def job_from_proto(job: job_pb2.Job) -> JobSnapshot:
    return JobSnapshot(
        job_id=job.job_id,
        state=JOB_STATES.from_proto(job.state, "state"),
        tasks=tuple(_task_status_from_proto(task) for task in job.tasks),
        labels=dict(job.labels),
        created_at=time_or_none(job, "created_at"),
        finished_at=time_or_none(job, "finished_at"),
        last_sequence=job.last_sequence,
        message=job.message,
        # The daemon fills them, also for a listed job, which has no tasks to count.
        task_counts={
            state: getattr(job.task_counts, field) for state, field in _COUNT_FIELDS.items()
        },
    )


def _task_status_from_proto(task: job_pb2.TaskStatus) -> TaskStatus:
    return TaskStatus(
        id=task.id,
        state=TASK_STATES.from_proto(task.state, "state"),
        attempts=task.attempts,
        error=task.error,
        started_at=time_or_none(task, "started_at"),
        finished_at=time_or_none(task, "finished_at"),
        progress=task.progress if task.HasField("progress") else None,
        progress_message=task.progress_message,
        description=task.description,
        result=task_result_from_proto(task.result) if task.HasField("result") else None,
        failure=task_failure_from_proto(task.failure) if task.HasField("failure") else None,
        interruptions=task.interruptions,
        waiting_for=task.waiting_for,
        waiting_for_queue=task.waiting_for_queue,
        carried_from=task.carried_from,
    )


# -- events -----------------------------------------------------------------------------------


def event_to_proto(event: Event | BreakerTransition) -> event_pb2.Event:
    """An Event message for any engine event, or a breaker transition (which has no job)."""
    if isinstance(event, BreakerTransition):
        return event_pb2.Event(
            time=timestamp(event.time),
            breaker_state=breaker_pb2.BreakerStateChanged(
                name=event.name,
                from_state=BREAKER_STATES.to_proto(event.from_state),
                to_state=BREAKER_STATES.to_proto(event.to_state),
                reason=event.reason,
            ),
        )
    if type(event) is TaskStateChanged:  # most events: one constructor call
        return event_pb2.Event(
            sequence=event.sequence,
            job_id=event.job_id,
            time=timestamp(event.time),
            task_state=event_pb2.TaskStateChanged(
                task_id=event.task_id,
                state=_TASK_WIRE[event.state],
                attempt=event.attempt,
                message=event.message,
            ),
        )
    message = event_pb2.Event(
        sequence=event.sequence, job_id=event.job_id, time=timestamp(event.time)
    )
    if isinstance(event, TaskStateChanged):
        kind = message.task_state
        kind.task_id = event.task_id
        kind.state = TASK_STATES.to_proto(event.state)
        kind.attempt = event.attempt
        kind.message = event.message
    elif isinstance(event, JobStateChanged):
        message.job_state.state = JOB_STATES.to_proto(event.state)
        message.job_state.message = event.message
    elif isinstance(event, TaskProgress):
        message.progress.task_id = event.task_id
        message.progress.message = event.message
        if event.fraction is not None:
            message.progress.fraction = event.fraction
    elif isinstance(event, TaskOutput):
        message.output.task_id = event.task_id
        message.output.stream = OUTPUT_STREAMS.to_proto(event.stream)
        message.output.text = event.text
    elif isinstance(event, TaskWaiting):
        waiting = message.task_waiting
        waiting.task_id = event.task_id
        waiting.waiting_for = event.waiting_for
        waiting.queue = event.queue
    elif isinstance(event, Snapshot):
        message.snapshot.job.CopyFrom(job_to_proto(event.job))
    else:
        raise TypeError(f"no wire form for event {event!r}")
    return message


def event_from_proto(message: event_pb2.Event) -> Event | BreakerTransition | None:
    """The engine event for an Event message; None for a kind this code does not know."""
    kind = message.WhichOneof("kind")
    time = seconds_of(message.time)
    head = (message.sequence, message.job_id, time)
    if kind == "task_state":
        change = message.task_state
        state = TASK_STATES.from_proto(change.state, "task_state.state")
        return TaskStateChanged(*head, change.task_id, state, change.attempt, change.message)
    if kind == "job_state":
        job_state = JOB_STATES.from_proto(message.job_state.state, "job_state.state")
        return JobStateChanged(*head, job_state, message.job_state.message)
    if kind == "progress":
        progress = message.progress
        fraction = progress.fraction if progress.HasField("fraction") else None
        return TaskProgress(*head, progress.task_id, fraction, progress.message)
    if kind == "output":
        stream = OUTPUT_STREAMS.from_proto(message.output.stream, "output.stream")
        return TaskOutput(*head, message.output.task_id, stream, message.output.text)
    if kind == "task_waiting":
        waiting = message.task_waiting
        return TaskWaiting(*head, waiting.task_id, waiting.waiting_for, waiting.queue)
    if kind == "snapshot":
        return Snapshot(*head, job_from_proto(message.snapshot.job))
    if kind == "breaker_state":
        change = message.breaker_state
        return BreakerTransition(
            name=change.name,
            from_state=BREAKER_STATES.from_proto(change.from_state, "from_state"),
            to_state=BREAKER_STATES.from_proto(change.to_state, "to_state"),
            reason=change.reason,
            time=time,
        )
    return None  # a newer daemon's kind: clients skip what they do not know (event.proto)
