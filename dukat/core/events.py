"""Events: every state change, progress report and output line of a job, numbered.

Each job has an `EventLog`: a bounded list of its events with consecutive sequence numbers
starting at 1. A watcher is a cursor (the last sequence it saw) into that log, never a queue
of its own, so a slow watcher costs nothing but falls behind. When the log has been trimmed
past a watcher's cursor, the watcher is given a `Snapshot` of the whole job instead.

A log may be *held*: its events are readable only up to the sequence its owner has
published (`publish`). A daemon with a journal holds every log until the events are on
disk, so no watcher ever sees a state change that a crash could take back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from dukat.core.states import JobState, TaskState

if TYPE_CHECKING:
    from dukat.core.results import JobSnapshot

__all__ = [
    "CARRIED",
    "INTERRUPTED",
    "Event",
    "EventLog",
    "JobStateChanged",
    "Snapshot",
    "TaskOutput",
    "TaskProgress",
    "TaskStateChanged",
    "TaskWaiting",
    "event_of",
    "watch_log",
]

# Events are made on the scheduler's hot path, so they are plain slotted dataclasses rather
# than frozen ones (which cost twice as much to build). Treat them as read-only.


@dataclass(slots=True)
class Event:
    sequence: int
    """Position in the job's log, from 1, without gaps."""
    job_id: str
    time: float
    """Wall-clock seconds since the epoch."""


@dataclass(slots=True)
class JobStateChanged(Event):
    state: JobState
    message: str = ""


@dataclass(slots=True)
class TaskStateChanged(Event):
    task_id: str
    state: TaskState
    attempt: int
    message: str = ""
    """Why: the error of a failed attempt, the upstream that failed, ... A RETRYING change
    after an interrupted attempt says "interrupted (worker 'w1' left), 1 of 3; running
    again": it begins with `INTERRUPTED`, where a failed attempt's names its error's class.
    A SUCCEEDED change has none, unless a rerun carried the task over: "carried over from
    job J" (`CARRIED`)."""


INTERRUPTED = "interrupted ("
"""How the message of a task's RETRYING change begins when its attempt was interrupted."""
CARRIED = "carried over from job "
"""How the message of a task's SUCCEEDED change begins when a rerun carried it over from
the job it reruns (whose id follows) instead of running it."""


@dataclass(slots=True)
class TaskWaiting(Event):
    """A READY task waits for something that may never come by itself (its runner says so):
    a worker for its dispatch queue when none is connected. Once per task; its state stays."""

    task_id: str
    waiting_for: str
    """In words: "a worker for queue 'q' (none connected)"."""
    queue: str = ""
    """The dispatch queue it waits on a worker of; empty for another wait."""


@dataclass(slots=True)
class TaskProgress(Event):
    task_id: str
    fraction: float | None
    """0.0 to 1.0, or None when the task only says what it is doing."""
    message: str = ""


@dataclass(slots=True)
class TaskOutput(Event):
    task_id: str
    stream: str
    """'stdout' or 'stderr'."""
    text: str


@dataclass(slots=True)
class Snapshot(Event):
    """The whole job at `sequence`; given to a watcher whose cursor fell out of the log."""

    job: JobSnapshot


Record = tuple  # (event class, sequence, time, *the class's own fields)

# The length of each kind of record: one item per field of its event, the class standing in
# for the job id (which the log knows).
_RECORD_LENGTH = {
    kind: len(fields(kind))
    for kind in (TaskStateChanged, JobStateChanged, TaskProgress, TaskOutput, TaskWaiting)
}
RECORD_WIDTH = max(_RECORD_LENGTH.values())
"""Items of the longest record (a TaskStateChanged's); the log pads shorter ones to it."""
_PADDING = {kind: (None,) * (RECORD_WIDTH - length) for kind, length in _RECORD_LENGTH.items()}


def event_of(record: Sequence[Any], job_id: str) -> Event:
    """The `Event` a record of job `job_id` stands for."""
    return record[0](record[1], job_id, *record[2 : _RECORD_LENGTH[record[0]]])


def _padded(record: Record) -> Record:
    """The record as the log stores it, RECORD_WIDTH items long; ValueError if malformed:
    one item too many or too few would shift every record after it."""
    kind = record[0]
    if _RECORD_LENGTH.get(kind) != len(record):
        raise ValueError(f"not an event record: {record!r}")
    return tuple(record) + _PADDING[kind]


class EventLog:
    """A job's events, the newest `limit` of them at least, and a way to wait for more.

    The log stores compact records and builds `Event` objects only for those who read them:
    most events of a big job are never read by anybody. It stores them end to end in one
    flat list rather than as a list of tuples: each tuple would be an object of its own
    for the cyclic collector to walk at its passes while the log holds it (three per task,
    and the log holds thousands), where the items of one list cost it nothing more.
    """

    __slots__ = (
        "_first",
        "_limit",
        "closed",
        "full_at",
        "items",
        "job_id",
        "published",
        "trim_at",
        "waiters",
    )

    def __init__(self, job_id: str, limit: int = 10_000, *, held: bool = False) -> None:
        if limit < 1:
            raise ValueError(f"an event log keeps at least one event, not {limit!r}")
        self.job_id = job_id
        self._limit = limit
        self.trim_at = 2 * limit  # events
        # The records, oldest first, end to end, each RECORD_WIDTH items long (padded).
        # Append-only for everybody but the log itself; the scheduler extends it directly on
        # its hottest path, then calls `appended()` when the log is due for trimming or has
        # `waiters` to wake (see `append`).
        self.items: list[Any] = []
        self._first = 1  # sequence of the first record
        # The sequence whose record brings the log to `trim_at` records: the scheduler tests
        # this against the sequence it has in hand, where `len(items)` would be a call.
        self.full_at = self.trim_at
        self.closed = False  # no event will follow
        self.waiters: list[asyncio.Future[None]] = []
        # Held: readers see events up to this sequence only. None: not held, they see all.
        self.published: int | None = 0 if held else None

    def append(self, record: Record) -> None:
        """Add `(EventClass, sequence, time, *fields)`; sequences must follow each other."""
        self.items.extend(_padded(record))
        if record[1] >= self.full_at or self.waiters:
            self.appended()

    def appended(self) -> None:
        """Trim (in chunks, so appending stays O(1) amortised) and wake the watchers."""
        items = self.items
        held = len(items) // RECORD_WIDTH
        if held >= self.trim_at:
            drop = held - self._limit
            del items[: drop * RECORD_WIDTH]
            self._first += drop
            self.full_at = self._first + self.trim_at - 1
        if self.waiters:
            self._wake()

    @property
    def last_sequence(self) -> int:
        """The newest sequence (0 before the first event)."""
        return self._first + len(self.items) // RECORD_WIDTH - 1

    @property
    def visible_sequence(self) -> int:
        """The newest sequence readers may see: the last, or the last published if held."""
        last = self.last_sequence
        published = self.published
        return last if published is None or published > last else published

    def publish(self, sequence: int) -> None:
        """Let readers of a held log see the events up to `sequence` (never fewer than now)."""
        if self.published is not None and sequence > self.published:
            self.published = sequence
            self._wake()

    def restore(self, records: list[Record], last_sequence: int) -> None:
        """Start from the tail of a log kept elsewhere (a journal), its events all published.

        `records` are the newest events, in order and without gaps, ending at
        `last_sequence`; older ones are gone, so a reader from before them gets a snapshot.
        """
        if records and (records[-1][1] != last_sequence or len(records) > last_sequence):
            raise ValueError(f"records do not end at sequence {last_sequence}")
        items: list[Any] = []
        for record in records:
            items.extend(_padded(record))
        self.items = items
        self._first = last_sequence - len(records) + 1
        self.full_at = self._first + self.trim_at - 1
        if self.published is not None:
            self.published = last_sequence

    def close(self) -> None:
        self.closed = True
        self._wake()

    @property
    def first_sequence(self) -> int:
        """The oldest sequence still held (1 until the log is trimmed)."""
        return self._first

    def read(self, after: int, limit: int | None = None) -> list[Event] | None:
        """Events with sequence > `after`, at most `limit`; None if some were trimmed away."""
        if after + 1 < self._first:
            return None
        start = max(0, after + 1 - self._first)
        end = self.visible_sequence + 1 - self._first
        if limit is not None:
            end = min(end, start + limit)
        job_id = self.job_id
        items = self.items
        return [
            event_of(items[at : at + RECORD_WIDTH], job_id)
            for at in range(start * RECORD_WIDTH, end * RECORD_WIDTH, RECORD_WIDTH)
        ]

    @property
    def ended(self) -> bool:
        """Closed, and every event visible: a reader at the end has seen them all."""
        return self.closed and self.visible_sequence == self.last_sequence

    async def wait(self, after: int) -> None:
        """Return once there is a visible event after `after`, or the log has `ended`."""
        while self.visible_sequence <= after and not self.ended:
            future = asyncio.get_running_loop().create_future()
            self.waiters.append(future)
            try:
                await future
            finally:
                if future in self.waiters:
                    self.waiters.remove(future)

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def __len__(self) -> int:
        return len(self.items) // RECORD_WIDTH

    def __repr__(self) -> str:
        return (
            f"<EventLog {self.job_id} {self._first}..{self.last_sequence} "
            f"held:{len(self)} watchers:{len(self.waiters)}"
            f"{' closed' if self.closed else ''}>"
        )


async def watch_log(
    log: EventLog,
    snapshot: Callable[[], JobSnapshot],
    wall: Callable[[], float],
    after_sequence: int,
    max_batch: int,
) -> AsyncIterator[list[Event]]:
    """A watcher: the log's events after `after_sequence`, in batches, live until it ends.

    A watcher whose cursor fell out of the log gets a `Snapshot` (`snapshot()`, dated by
    `wall()`) first, once readers may see the state it shows."""
    cursor = after_sequence
    while True:
        batch = log.read(cursor, max_batch)
        if batch is None:
            job = snapshot()
            cursor = job.last_sequence
            while log.visible_sequence < cursor:  # held: show no state before it is
                await log.wait(log.visible_sequence)
            yield [Snapshot(cursor, job.job_id, wall(), job)]
        elif batch:
            cursor = batch[-1].sequence
            yield batch
        elif log.ended:
            return
        else:
            await log.wait(cursor)
