"""The journal's encoding of event records and task changes: plain values, no class names.

A blob (`event_chunks.data`, `task_changes.data`) is one format byte, `FORMAT`, then a
pickle (protocol 5) of a list of tuples of plain values only — str, bytes, int, float,
None, tuples — with the kind of each event as a number and states as their names (the
tables are in the package docstring). Pickle is in C and reads any older protocol, and a
pickle of plain values names no Python class: `decode` reads it with an unpickler that
refuses every class (`find_class`), so what a later dukatd renames or moves can never
make a journal unreadable. Tuples of plain values rather than `dukat.v1` messages: the
writer encodes every event of every job, on the hot path of 20k tasks/s, holding the GIL
the loop needs, and a message per event costs it ten times as much and more
(`bench/journal_codec.py`).

Engine records are `(EventClass, sequence, time, *fields)` (`dukat.core.events`); this
module is the one place that maps them to their kinds and back.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Sequence
from typing import Any

from dukat.core.events import (
    JobStateChanged,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    TaskWaiting,
)
from dukat.core.results import TaskStatus
from dukat.core.states import JobState, TaskState
from dukat.errors import FormatError

__all__ = [
    "EVENT_KINDS",
    "FORMAT",
    "FormatError",
    "carried_change",
    "decode",
    "encode",
    "encode_events",
    "engine_record",
    "plain_record",
    "task_change",
    "task_state",
]

FORMAT = 1
"""The format byte of every blob this dukatd writes. A later format gets the next number,
and the code that reads this one stays."""
_HEADER = bytes([FORMAT])

# Kinds of events: the field numbers of the `kind` oneof of `dukat.v1.Event`, stable for
# as long as the wire contract is.
JOB_STATE, TASK_STATE, PROGRESS, OUTPUT, WAITING = 5, 6, 7, 8, 10
EVENT_KINDS: dict[type, int] = {
    JobStateChanged: JOB_STATE,
    TaskStateChanged: TASK_STATE,
    TaskProgress: PROGRESS,
    TaskOutput: OUTPUT,
    TaskWaiting: WAITING,
}
_CLASSES = {kind: event_class for event_class, kind in EVENT_KINDS.items()}
_TASK_STATES = {state.value: state for state in TaskState}
_READY, _RUNNING = TaskState.READY, TaskState.RUNNING
_RETRYING, _FAILED = TaskState.RETRYING, TaskState.FAILED
_ENDS = frozenset(state for state in TaskState if state.is_terminal)
_JOB_STATES = {state.value: state for state in JobState}


def encode(values: Sequence[Any]) -> bytes:
    """Plain values (records, changes) as one blob of this format."""
    return _HEADER + pickle.dumps(values, protocol=5)


def decode(blob: bytes) -> list[Any]:
    """The plain values of a blob; FormatError if it is not of a format this dukatd reads."""
    if not blob or blob[0] != FORMAT:
        raise FormatError(f"a record of format {blob[:1].hex() or 'none'}, not {FORMAT}")
    try:
        return _PlainUnpickler(io.BytesIO(blob[1:])).load()
    except (pickle.UnpicklingError, EOFError) as error:
        raise FormatError(str(error)) from None


class _PlainUnpickler(pickle.Unpickler):
    """Reads plain values only: a blob naming a class is not one this dukatd wrote."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"names a class ({module}.{name}), plain values expected")


def encode_events(records: Sequence[Sequence[Any]]) -> bytes:
    """Engine records as one blob (`plain_record` each, the commonest kind inline: the
    writer encodes every event of every job, holding the GIL the loop needs). A
    TaskStateChanged record has all its fields (`EventLog` refuses it otherwise)."""
    return encode(
        [
            (TASK_STATE, r[1], r[2], r[3], r[4]._value_, r[5], r[6])
            if r[0] is TaskStateChanged
            else plain_record(r)
            for r in records
        ]
    )


def plain_record(record: Sequence[Any]) -> tuple[Any, ...]:
    """An engine record as the journal writes it: its kind's number, states by name."""
    event_class = record[0]
    if event_class is TaskStateChanged:  # the most common by far: three per task
        return (TASK_STATE, record[1], record[2], record[3], record[4]._value_, *record[5:])
    if event_class is JobStateChanged:
        return (JOB_STATE, record[1], record[2], record[3]._value_, *record[4:])
    return (EVENT_KINDS[event_class], *record[1:])


def engine_record(plain: Sequence[Any]) -> tuple[Any, ...]:
    """The engine record a plain one stands for (for `EventLog.restore`)."""
    kind = plain[0]
    if kind == TASK_STATE:
        return (TaskStateChanged, *plain[1:4], _TASK_STATES[plain[4]], *plain[5:])
    if kind == JOB_STATE:
        return (JobStateChanged, *plain[1:3], _JOB_STATES[plain[3]], *plain[4:])
    try:
        event_class = _CLASSES[kind]
    except KeyError:
        raise FormatError(f"an event of unknown kind {kind!r}") from None
    return (event_class, *plain[1:])


def task_state(name: str) -> TaskState:
    """A task state by the name a change holds."""
    try:
        return _TASK_STATES[name]
    except KeyError:
        raise FormatError(f"an unknown task state {name!r}") from None


def task_change(
    record: Sequence[Any], kept: Any, encode_result: Callable[[Any], Any]
) -> tuple[Any, ...] | None:
    """The task change a TaskStateChanged record makes (None for one that changes nothing
    the journal keeps: PENDING, READY). `kept`: what `Journal.on_record` took of the task
    with it: a succeeded task's result, a failed one's (failure, interruptions), the
    interruptions of one RETRYING."""
    state = record[4]
    if state is _READY:  # a third of them
        return None
    task_id, attempt = record[3], record[5]
    if state is _RUNNING:
        return (task_id, state._value_, attempt, record[2])
    if state is _RETRYING:
        return (task_id, state._value_, attempt, kept)
    if state is _FAILED:
        failure, interruptions = kept
        value = None if failure is None else encode_result(failure)
        return (task_id, state._value_, attempt, None, record[2], record[6], value, interruptions)
    if state in _ENDS:
        value = None if kept is None else encode_result(kept)
        return (task_id, state._value_, attempt, None, record[2], record[6], value)
    return None


def carried_change(status: TaskStatus, encode_result: Callable[[Any], Any]) -> tuple[Any, ...]:
    """A task a rerun carried over: SUCCEEDED, its result, its interruptions, and the job it
    comes from."""
    value = None if status.result is None else encode_result(status.result)
    return (
        status.id,
        status.state.value,
        status.attempts,
        status.started_at,
        status.finished_at,
        status.error,
        value,
        status.interruptions,
        status.carried_from,
    )
