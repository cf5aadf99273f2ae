"""EventLog: records in, events out, trimmed in chunks, held until published."""

from __future__ import annotations

import sys

import pytest

from dukat.core.events import (
    EventLog,
    JobStateChanged,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    event_of,
)
from dukat.core.states import JobState, TaskState


def task_record(sequence: int, task_id: str = "a") -> tuple[object, ...]:
    return (TaskStateChanged, sequence, float(sequence), task_id, TaskState.READY, 0, "")


def test_every_kind_of_record_reads_back_as_its_event() -> None:
    log = EventLog("job")
    log.append((JobStateChanged, 1, 1.0, JobState.RUNNING, "2 tasks"))
    log.append((TaskStateChanged, 2, 2.0, "a", TaskState.RUNNING, 1, ""))
    log.append((TaskProgress, 3, 3.0, "a", None, "warming up"))
    log.append((TaskOutput, 4, 4.0, "a", "stderr", "oops\n"))
    log.append((TaskStateChanged, 5, 5.0, "a", TaskState.FAILED, 1, "boom"))

    assert log.read(0) == [
        JobStateChanged(1, "job", 1.0, JobState.RUNNING, "2 tasks"),
        TaskStateChanged(2, "job", 2.0, "a", TaskState.RUNNING, 1, ""),
        TaskProgress(3, "job", 3.0, "a", None, "warming up"),
        TaskOutput(4, "job", 4.0, "a", "stderr", "oops\n"),
        TaskStateChanged(5, "job", 5.0, "a", TaskState.FAILED, 1, "boom"),
    ]
    assert log.read(3, limit=1) == [TaskOutput(4, "job", 4.0, "a", "stderr", "oops\n")]
    assert (len(log), log.first_sequence, log.last_sequence) == (5, 1, 5)


def test_event_of_builds_the_same_event_from_a_raw_record() -> None:
    record = (TaskProgress, 7, 7.5, "b", 0.25, "a quarter")
    assert event_of(record, "job") == TaskProgress(7, "job", 7.5, "b", 0.25, "a quarter")


def test_the_log_keeps_no_record_object() -> None:
    """A tuple kept per event would be an object the collector walks while the log holds it."""
    log = EventLog("job")
    record = task_record(1)
    before = sys.getrefcount(record)
    log.append(record)
    assert sys.getrefcount(record) == before


def test_trims_in_chunks_and_readers_behind_the_trim_get_none() -> None:
    log = EventLog("job", limit=3)
    for sequence in range(1, 6):  # up to trim_at - 1 = 5: nothing trimmed yet
        log.append(task_record(sequence))
    assert (log.first_sequence, len(log)) == (1, 5)

    log.append(task_record(6))  # reaches 2 * limit: back to the newest `limit`
    assert (log.first_sequence, log.last_sequence, len(log)) == (4, 6, 3)
    assert log.read(0) is None
    assert log.read(2) is None
    assert [event.sequence for event in log.read(3)] == [4, 5, 6]

    for sequence in range(7, 13):
        log.append(task_record(sequence))
    assert (log.first_sequence, log.last_sequence, len(log)) == (10, 12, 3)
    assert [event.sequence for event in log.read(9)] == [10, 11, 12]


def test_restore_starts_from_a_tail_and_goes_on() -> None:
    log = EventLog("job", limit=10)
    log.restore([(JobStateChanged, 8, 8.0, JobState.RUNNING, ""), task_record(9)], 9)
    log.append(task_record(10, "b"))

    assert (log.first_sequence, log.last_sequence) == (8, 10)
    assert log.read(7) == [
        JobStateChanged(8, "job", 8.0, JobState.RUNNING, ""),
        TaskStateChanged(9, "job", 9.0, "a", TaskState.READY, 0, ""),
        TaskStateChanged(10, "job", 10.0, "b", TaskState.READY, 0, ""),
    ]
    assert log.read(6) is None  # before the tail: a snapshot is due


def test_restore_refuses_a_tail_that_does_not_end_where_it_says() -> None:
    with pytest.raises(ValueError, match="do not end at sequence 5"):
        EventLog("job").restore([task_record(3)], 5)


def test_a_held_log_shows_only_what_was_published() -> None:
    log = EventLog("job", held=True)
    for sequence in range(1, 4):
        log.append(task_record(sequence))
    assert log.read(0) == []
    log.publish(2)
    assert [event.sequence for event in log.read(0)] == [1, 2]
    log.publish(1)  # never fewer than before
    assert log.visible_sequence == 2
