"""Recovery: put the jobs the journal kept back into a fresh scheduler, before serving.

Runs at start, after the exec ledger has killed what a dead predecessor left running and
before `READY=1`. Each kept job comes back as `Scheduler.restore` describes: tasks that had
ended keep their outcome and never run again, those that were running lost that attempt to
the restart, an interruption (run again at once, up to their `max_interruptions`, counting
those they had had before), those between two attempts run again, the rest start over;
finished jobs are held for their retention as before. Cancel requests are applied again
first, so a task that was being cancelled when the daemon died ends CANCELLED. Dispatch tasks wait
READY for their workers, which reconnect by themselves.

A journal may hold values an older dukatd accepted and this one refuses (`dukat.convert`'s
bounds, such as a timeout of 2^63 seconds). They must not stop the start, nor make a job or
a breaker unreadable: a number out of range is brought to its bound, a string over its
length is kept, each with a warning naming the job or breaker and the field; breaker
settings this dukatd cannot use at all are dropped with a warning (the breaker is made
with the defaults on first use), as is a job that cannot be restored at all.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from dukat import convert
from dukat.actions import DispatchResult, ExecResult
from dukat.core.breaker import BreakerRegistry, CircuitBreakerConfig
from dukat.core.results import TaskFailure
from dukat.core.scheduler import JobEnding, Scheduler
from dukat.core.states import TaskState
from dukat.errors import DukatError
from dukat.v1 import job_pb2
from dukatd.journal import Journal, RecoveredJob

__all__ = ["Recovered", "decode_result", "encode_result", "recover", "recover_breakers"]

_log = logging.getLogger("dukatd")


@dataclass(slots=True)
class Recovered:
    """What recovery brought back."""

    live: int = 0
    finished: int = 0
    interrupted: int = 0
    """Tasks whose running attempt the restart cut off."""
    live_tasks: int = 0
    """Tasks of the unfinished jobs brought back."""
    request_ids: dict[str, str] = field(default_factory=dict)
    """Submit request ids of the jobs brought back -> their job ids."""


def encode_result(value: Any) -> tuple[Any, ...] | None:
    """A task's result (or a failed task's `TaskFailure`) as the journal keeps it: a tuple of
    plain values, packed with the rest of its commit (far cheaper than a protobuf message
    per task)."""
    if isinstance(value, DispatchResult):
        return ("dispatch", value.payload, value.content_type)
    if isinstance(value, ExecResult):
        return ("exec", value.exit_code, value.stdout, value.stderr)
    if isinstance(value, TaskFailure):
        return (
            "failure",
            value.type,
            value.message,
            value.exit_code,
            value.signal,
            value.stdout,
            value.stderr,
        )
    return None


_DECODED = {"dispatch": DispatchResult, "exec": ExecResult, "failure": TaskFailure}


def decode_result(kept: Any) -> Any:
    if isinstance(kept, bytes):  # schema 1 kept a dukat.v1.TaskResultValue
        return convert.task_result_from_proto(job_pb2.TaskResultValue.FromString(kept))
    kind, *fields = kept
    return _DECODED[kind](*fields)


def recover(scheduler: Scheduler, journal: Journal, jobs: list[RecoveredJob]) -> Recovered:
    """Restore `jobs` (as `Journal.load` gave them) into `scheduler`."""
    recovered = Recovered()
    # Finished jobs first, in the order they finished: retention drops the oldest first.
    ended = sorted((j for j in jobs if j.state.is_terminal), key=lambda j: j.finished_at or 0.0)
    live = [job for job in jobs if not job.state.is_terminal]
    for job in [*ended, *live]:
        try:
            tasks = _restore(scheduler, job)
        except (DukatError, DecodeError, ValueError) as error:
            # Only a journal from a dukatd that accepted what this one refuses gets here.
            _log.error("job %s could not be restored and is dropped: %s", job.job_id, error)
            journal.drop(job.job_id)
            continue
        if job.state.is_terminal:
            recovered.finished += 1
        else:
            recovered.live += 1
            recovered.live_tasks += tasks
            recovered.interrupted += sum(1 for t in job.tasks if t.state is TaskState.RUNNING)
        if job.request_id:
            recovered.request_ids[job.request_id] = job.job_id
    return recovered


def recover_breakers(
    registry: BreakerRegistry,
    breakers: Mapping[str, Mapping[str, Any]],
    *,
    configured: Container[str] = (),
) -> None:
    """Configure the breakers the journal kept (name -> settings, as `Journal.load` gave
    them), but those named in `configured` (the daemon's config file's win)."""
    for name, settings in breakers.items():
        if name in configured:
            continue
        try:
            config = CircuitBreakerConfig(**settings)
        except (TypeError, ValueError) as error:  # a ValidationError is a ValueError
            _log.warning(
                "breaker %r: its journaled settings %s cannot be used (%s); it is not "
                "configured (first use makes it with the defaults)",
                name,
                settings,
                error,
            )
            continue

        def warn(field: str, description: str, name: str = name) -> None:
            _log.warning(
                "breaker %r: journaled %s is out of bounds (%s); brought within them",
                name,
                field,
                description,
            )

        config = convert.breaker_config_within_bounds(config, warn)
        # Each was configured over the API within the cap; with the file's, they may pass it.
        registry.configure(name, config, within_limit=False)


def _restore(scheduler: Scheduler, job: RecoveredJob) -> int:
    """Restore one job; its number of tasks."""

    def warn(field: str, description: str) -> None:
        _log.warning(
            "job %s: journaled %s is out of bounds (%s); brought within them",
            job.job_id,
            field,
            description,
        )

    message = job_pb2.JobSpec.FromString(job.spec)
    spec = convert.job_spec_from_proto(message, path="job", lenient=warn)
    ending = None
    if job.state.is_terminal:
        ending = JobEnding(job.state, job.finished_at or job.created_at, job.message)
    scheduler.restore(
        spec,
        job_id=job.job_id,
        created_at=job.created_at,
        tasks=job.tasks,
        events=job.events,
        last_sequence=job.last_sequence,
        ended=ending,
        cancels=job.cancels,
    )
    return len(spec.tasks)
