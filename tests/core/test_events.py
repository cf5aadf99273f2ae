"""EventLog: records in, events out, trimmed in chunks, held until published."""

from __future__ import annotations

import sys
from dataclasses import fields

import pytest

from dukat.core.context import current_task
from dukat.core.events import (
    Event,
    EventLog,
    JobStateChanged,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    event_of,
)
from dukat.core.runners import CallableAction
from dukat.core.scheduler import Scheduler
from dukat.core.spec import JobSpec, TaskSpec
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


def test_a_held_log_trimmed_past_what_was_published_shows_nothing_unpublished() -> None:
    log = EventLog("job", limit=5, held=True)
    for sequence in range(1, 5):
        log.append(task_record(sequence))
    log.publish(4)
    for sequence in range(5, 11):  # the tenth trims the log to 6..10, none of them published
        log.append(task_record(sequence))
    assert log.first_sequence == 6
    assert log.read(5) == [] and log.read(5, limit=1) == []
    assert log.read(3) is None
    log.publish(8)
    assert [event.sequence for event in log.read(5)] == [6, 7, 8]


@pytest.mark.parametrize(
    "record",
    [
        (JobStateChanged, 1, 1.0, JobState.RUNNING),  # a field short
        (TaskStateChanged, 1, 1.0, "a", TaskState.READY, 0, "", "extra"),
        (Event, 1, 1.0),  # not a kind the log keeps
    ],
    ids=["short", "long", "unknown-kind"],
)
def test_a_malformed_record_is_refused_before_it_can_shift_the_others(record) -> None:
    log = EventLog("job")
    log.append(task_record(1))
    with pytest.raises(ValueError, match="not an event record"):
        log.append(record)
    with pytest.raises(ValueError, match="not an event record"):
        EventLog("job").restore([record], 1)
    assert log.read(0) == [TaskStateChanged(1, "job", 1.0, "a", TaskState.READY, 0, "")]


async def test_every_record_the_scheduler_makes_has_its_kind_s_length() -> None:
    """The scheduler appends task state records to the log without the log's checks."""
    records: list[tuple[object, ...]] = []

    async def reporting() -> None:
        context = current_task()
        context.report_progress(0.5, "half")
        context.output("stdout", "a line\n")

    async def failing() -> None:
        raise RuntimeError("boom")

    async with Scheduler() as scheduler:
        scheduler.add_record_listener(lambda _, record: records.append(record))
        job_id = scheduler.submit(
            JobSpec(
                tasks=(
                    TaskSpec("report", CallableAction(reporting)),
                    TaskSpec("fail", CallableAction(failing)),
                    TaskSpec("skipped", CallableAction(reporting), dependencies=("fail",)),
                )
            )
        )
        assert await scheduler.wait(job_id) is JobState.FAILED
        events = [event async for batch in scheduler.watch(job_id) for event in batch]

    kinds = {type(event) for event in events}
    assert kinds == {JobStateChanged, TaskStateChanged, TaskProgress, TaskOutput}
    assert len(records) == len(events)
    for record, event in zip(records, events, strict=True):
        assert len(record) == len(fields(event)) and event_of(record, job_id) == event
