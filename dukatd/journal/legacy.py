"""What older dukatds wrote, read by the migrations (`schema`) into this format's plain values.

Schema 1 (dukatd before 0.1.0) had a row per event and per task; schema 3 (dukatd 0.1.0)
kept the same records as now, but pickled as the engine's objects: the event classes of
`dukat.core.events` and the members of `dukat.core.states`, named by their class paths.
Those paths are read here by the names they had then, from a fixed table, never looked up
in the code: a pickle naming any other class is refused (it is not what dukatd wrote).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from typing import Any

from dukatd.journal import codec

__all__ = ["PICKLED", "change_of_v1_row", "record_of_v1_row", "unpickle_v3"]

PICKLED = 0x80
"""The first byte of a schema-3 blob (pickle protocol 2 and later), never a format byte."""


# (module, name) -> what the pickle's reference stands for now. An event class becomes its
# kind's number; a state enum, called with its member's value, gives that value (its name).
_V3_NAMES: dict[tuple[str, str], Any] = {
    ("dukat.core.events", "JobStateChanged"): codec.JOB_STATE,
    ("dukat.core.events", "TaskStateChanged"): codec.TASK_STATE,
    ("dukat.core.events", "TaskProgress"): codec.PROGRESS,
    ("dukat.core.events", "TaskOutput"): codec.OUTPUT,
    ("dukat.core.events", "TaskWaiting"): codec.WAITING,
    ("dukat.core.states", "TaskState"): str,
    ("dukat.core.states", "JobState"): str,
}


class _V3Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _V3_NAMES[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"a schema-3 record names {module}.{name}") from None


def unpickle_v3(blob: bytes) -> list[Any]:
    """The plain values of a schema-3 blob: records and changes as this format has them."""
    try:
        return _V3Unpickler(io.BytesIO(blob)).load()
    except (pickle.UnpicklingError, EOFError, TypeError) as error:
        raise codec.FormatError(f"a schema-3 record: {error}") from None


# events.kind of schema 1
_V1_JOB, _V1_TASK, _V1_PROGRESS = range(3)


def record_of_v1_row(row: Sequence[Any]) -> tuple[Any, ...]:
    """A plain record from a schema-1 `events` row (sequence, time, kind, task, state,
    number, text)."""
    sequence, moment, kind, task_id, state, number, text = row
    if kind == _V1_TASK:
        return (codec.TASK_STATE, sequence, moment, task_id, state, int(number), text)
    if kind == _V1_JOB:
        return (codec.JOB_STATE, sequence, moment, state, text)
    if kind == _V1_PROGRESS:
        return (codec.PROGRESS, sequence, moment, task_id, number, text)
    return (codec.OUTPUT, sequence, moment, task_id, state, text)


def change_of_v1_row(row: Sequence[Any]) -> tuple[Any, ...]:
    """A plain task change from a schema-1 `tasks` row (task, state, attempts, started,
    finished, message, result): the long shape, whatever the state."""
    return tuple(row)
