"""What the loop asks the writer to commit: one small record per operation, by `kind`.

Slotted dataclasses rather than NamedTuples: a `Write` is made on the loop for every event
of every job, and a NamedTuple's constructor (Python code) costs twice as much. Treat them
as read-only once queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dukat.core.results import TaskStatus

__all__ = ["Accept", "Cancel", "ConfigureBreaker", "Drop", "Operation", "Write"]


@dataclass(slots=True)
class Write:
    """An event of a job, with what the journal keeps of its task beyond it (`Journal.on_record`):
    a succeeded task's result, a failed one's (failure, interruptions), the interruptions of
    one RETRYING."""

    kind: ClassVar[str] = "write"
    job_id: str
    record: tuple[Any, ...]
    kept: Any = None


@dataclass(slots=True)
class Accept:
    """A job submitted, with the tasks a rerun carried over into it."""

    kind: ClassVar[str] = "accept"
    job_id: str
    request_id: str | None
    spec: bytes
    created_at: float
    carried: Sequence[TaskStatus] = ()


@dataclass(slots=True)
class Cancel:
    """A cancel request: its task ids (none: the whole job) and reason, as the row keeps
    them (JSON, see `loader.cancel_request`)."""

    kind: ClassVar[str] = "cancel"
    job_id: str
    kept: str


@dataclass(slots=True)
class Drop:
    """A job leaves the journal, all of it."""

    kind: ClassVar[str] = "drop"
    job_id: str


@dataclass(slots=True)
class ConfigureBreaker:
    """A breaker's settings as configured over the API (JSON)."""

    kind: ClassVar[str] = "breaker"
    name: str
    settings: str


Operation = Write | Accept | Cancel | Drop | ConfigureBreaker
