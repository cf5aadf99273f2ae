"""Reading the journal back at start: every job kept, as `Scheduler.restore` takes it.

Task changes are folded in the order they were written, the last change of a task winning
(`fold`); event chunks are read back to the newest run of events without a gap.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dukat.core.results import TaskStatus
from dukat.core.scheduler import CancelRequest
from dukat.core.states import JobState, TaskState
from dukatd.journal import codec
from dukatd.journal.schema import grouped

__all__ = ["Loaded", "RecoveredJob", "cancel_request", "fold", "load"]

_RETRYING = TaskState.RETRYING.value


@dataclass(slots=True)
class RecoveredJob:
    """One job as the journal kept it: enough for `Scheduler.restore`."""

    job_id: str
    request_id: str
    spec: bytes
    created_at: float
    state: JobState
    finished_at: float | None
    message: str
    last_sequence: int
    tasks: list[TaskStatus] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    cancels: list[CancelRequest] = field(default_factory=list)
    """Cancel requests in order; one without task ids cancelled the whole job."""


@dataclass(slots=True)
class Loaded:
    """What `load` read: the jobs (oldest first), the breakers configured over the API, and
    for the writer each job's row id and the sequence at which its events are next trimmed."""

    jobs: list[RecoveredJob]
    breakers: dict[str, dict[str, Any]]
    keys: dict[str, int]
    trim_at: dict[int, int]


def load(
    db: sqlite3.Connection, *, decode_result: Callable[[Any], Any], event_log_length: int
) -> Loaded:
    """Read every job and breaker; sqlite3.DatabaseError or ValueError (a `FormatError`
    among them) if what is read is corrupt."""
    jobs: dict[int, RecoveredJob] = {}
    keys: dict[str, int] = {}
    trim_at: dict[int, int] = {}
    for row in db.execute(
        "SELECT id, job_id, request_id, spec, created_at, state, finished_at, message, "
        "last_sequence FROM jobs JOIN job_specs ON job_specs.job = jobs.id ORDER BY id"
    ):
        key, job_id, request_id, spec, created, state, finished, message, last = row
        keys[job_id] = key
        jobs[key] = RecoveredJob(
            job_id, request_id or "", spec, created, JobState(state), finished, message, last
        )
    newest = "SELECT job, max(last_sequence) FROM event_chunks GROUP BY job"
    for key, last in db.execute(newest):
        if key in jobs and last > jobs[key].last_sequence:
            jobs[key].last_sequence = last
    changes: dict[int, dict[str, list[Any]]] = {}
    for key, data in db.execute("SELECT job, data FROM task_changes ORDER BY rowid"):
        folded = changes.setdefault(key, {})
        for change in codec.decode(data):
            fold(folded, change)
    for key, folded in changes.items():
        job = jobs.get(key)
        if job is not None:
            job.tasks.extend(_status(task, decode_result) for task in folded.values())
    chunks = db.execute("SELECT job, data FROM event_chunks ORDER BY job, first_sequence")
    for key, rows in grouped(chunks):
        job = jobs.get(key)
        if job is not None:
            records = [record for _, data in rows for record in codec.decode(data)]
            tail = _contiguous_tail(records, job.last_sequence)[-event_log_length:]
            job.events = [codec.engine_record(record) for record in tail]
            trim_at[key] = job.last_sequence + event_log_length
    for key, kept in db.execute("SELECT job, task_ids FROM cancels ORDER BY rowid"):
        job = jobs.get(key)
        if job is not None:
            job.cancels.append(cancel_request(json.loads(kept)))
    breakers = {
        name: json.loads(settings)
        for name, settings in db.execute("SELECT name, settings FROM breakers")
    }
    return Loaded(list(jobs.values()), breakers, keys, trim_at)


def fold(folded: dict[str, list[Any]], change: tuple[Any, ...]) -> None:
    """Apply one task change to the task's [task, state, attempt, started, finished, message,
    result, interruptions, carried from]. The shapes are the package docstring's: the first
    start of a task stays its start; its interruptions stay as the last change that said
    them (0 in a journal of a dukatd that did not count them); a carried task stays carried
    (its SUCCEEDED event, written later, says nothing of it)."""
    earlier = folded.get(change[0])
    if len(change) == 4:
        task_id, state, attempt, value = change
        if earlier is None:
            earlier = folded[task_id] = [task_id, state, attempt, None, None, "", None, 0, ""]
        earlier[1], earlier[2] = state, attempt
        if state == _RETRYING:
            earlier[7] = value
        elif earlier[3] is None:
            earlier[3] = value
        return
    task_id, state, attempt, started, finished, message, result, *counted = change
    interruptions, carried_from = 0, ""
    if earlier is not None:
        if earlier[3] is not None:
            started = earlier[3]
        interruptions, carried_from = earlier[7], earlier[8]
    if counted:
        interruptions = counted[0]
    if len(counted) > 1:
        carried_from = counted[1]
    folded[task_id] = [
        task_id,
        state,
        attempt,
        started,
        finished,
        message,
        result,
        interruptions,
        carried_from,
    ]


def _status(folded: list[Any], decode_result: Callable[[Any], Any]) -> TaskStatus:
    task_id, state, attempts, started, finished, message, result, interruptions, carried = folded
    state = codec.task_state(state)
    value = decode_result(result) if result is not None else None
    return TaskStatus(
        id=task_id,
        state=state,
        attempts=attempts,
        error=message,
        started_at=started,
        finished_at=finished,
        result=value if state is TaskState.SUCCEEDED else None,
        failure=value if state is TaskState.FAILED else None,
        interruptions=interruptions,
        carried_from=carried,
    )


def cancel_request(kept: Any) -> CancelRequest:
    """A cancel request back from its row: a list of task ids, or (with a reason, since
    the reason is kept) an object of both."""
    if isinstance(kept, dict):
        return CancelRequest(tuple(kept["task_ids"]), kept["reason"])
    return CancelRequest(tuple(kept))


def _contiguous_tail(records: list[tuple[Any, ...]], last: int) -> list[tuple[Any, ...]]:
    """The run of records ending at sequence `last` without a gap (the ring may hold stale
    slots from a longer tail of an earlier configuration)."""
    if not records or records[-1][1] != last:
        return []
    start = len(records) - 1
    while start > 0 and records[start - 1][1] == records[start][1] - 1:
        start -= 1
    return records[start:]
