"""The journal's on-disk encoding (`dukatd.journal.codec`), the reader of dukatd 0.1.0's pickles
(`legacy`), and the upgrade of a 0.1.0 journal in one transaction (`schema`)."""

from __future__ import annotations

import contextlib
import pickle
import pickletools
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dukat.core.events as events
import dukat.core.states as states
from dukat.core.events import (
    JobStateChanged,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    TaskWaiting,
)
from dukat.core.states import JobState, TaskState
from dukatd.journal import SCHEMA_VERSION, Journal, JournalError, codec, legacy
from dukatd.recovery import decode_result, encode_result

FIXTURE = Path(__file__).parent / "fixtures" / "journal-0.1.0.sqlite3"

texts = st.text(max_size=20)
times = st.floats(allow_nan=False, allow_infinity=False)
sequences = st.integers(min_value=1, max_value=2**62)
records = st.one_of(
    st.tuples(st.just(JobStateChanged), sequences, times, st.sampled_from(JobState), texts),
    st.tuples(
        st.just(TaskStateChanged),
        sequences,
        times,
        texts,
        st.sampled_from(TaskState),
        st.integers(min_value=0, max_value=2**31),
        texts,
    ),
    st.tuples(
        st.just(TaskProgress),
        sequences,
        times,
        texts,
        st.none() | st.floats(min_value=0.0, max_value=1.0),
        texts,
    ),
    st.tuples(st.just(TaskOutput), sequences, times, texts, st.sampled_from(["stdout"]), texts),
    st.tuples(st.just(TaskWaiting), sequences, times, texts, texts, texts),
)


def names_a_class(blob: bytes) -> bool:
    return any(op.name in ("GLOBAL", "STACK_GLOBAL") for op, _, _ in pickletools.genops(blob))


@given(st.lists(records, max_size=20))
def test_every_kind_of_event_goes_to_plain_values_and_back(engine_records):
    blob = codec.encode([codec.plain_record(record) for record in engine_records])
    assert blob[0] == codec.FORMAT and not names_a_class(blob[1:])
    assert [codec.engine_record(plain) for plain in codec.decode(blob)] == engine_records


def test_a_blob_naming_a_class_or_of_another_format_is_refused():
    with pytest.raises(codec.FormatError, match="names a class"):
        codec.decode(bytes([codec.FORMAT]) + pickle.dumps([TaskState.RUNNING]))
    with pytest.raises(codec.FormatError, match="format 02"):
        codec.decode(bytes([2]) + pickle.dumps([]))
    with pytest.raises(codec.FormatError, match="unknown kind 99"):
        codec.engine_record((99, 1, 0.0))


def test_a_pickle_of_0_1_0_is_read_by_the_names_it_had_whatever_they_are_now(monkeypatch):
    blob = pickle.dumps(
        [
            (TaskStateChanged, 3, 1.5, "a", TaskState.RUNNING, 1, ""),
            (JobStateChanged, 4, 2.0, JobState.FAILED, "1 of 1 tasks failed"),
            ("a", TaskState.FAILED, 1, None, 2.0, "boom", ("failure", "E", "boom", 3, None)),
        ],
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    monkeypatch.delattr(events, "TaskStateChanged")  # moved, or renamed
    monkeypatch.delattr(states, "TaskState")
    assert legacy.unpickle_v3(blob) == [
        (codec.TASK_STATE, 3, 1.5, "a", "running", 1, ""),
        (codec.JOB_STATE, 4, 2.0, "failed", "1 of 1 tasks failed"),
        ("a", "failed", 1, None, 2.0, "boom", ("failure", "E", "boom", 3, None)),
    ]
    with pytest.raises(codec.FormatError, match=r"names builtins\.eval"):
        legacy.unpickle_v3(pickle.dumps(eval))


def contents(path: Path) -> tuple[int, list[Any]]:
    """The file's schema version and every row of its tables."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        query = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        tables = [row[0] for row in db.execute(query)]
        rows = [
            (table, db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall())
            for table in tables
        ]
    return version, rows


async def test_an_upgrade_that_fails_half_way_leaves_the_journal_as_it_was(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "journal.sqlite3"
    shutil.copyfile(FIXTURE, path)
    before = contents(path)
    assert before[0] == 3
    encode = codec.encode
    calls = 0

    def dies_on_the_third(values: Any) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # as abrupt as it gets short of a kill
        return encode(values)

    monkeypatch.setattr(codec, "encode", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        Journal.open(path, encode_result=encode_result, decode_result=decode_result)
    assert contents(path) == before

    monkeypatch.setattr(codec, "encode", encode)
    journal = Journal.open(path, encode_result=encode_result, decode_result=decode_result)
    jobs, breakers = journal.load()
    await journal.close()
    assert len(jobs) == 5 and set(breakers) == {"api"}
    version, tables = contents(path)
    assert version == SCHEMA_VERSION
    packed = ("event_chunks", "task_changes")
    blobs = [row[-1] for table, rows in tables if table in packed for row in rows]
    assert blobs and all(b[0] == codec.FORMAT and not names_a_class(b[1:]) for b in blobs)


async def test_a_record_this_dukatd_cannot_read_stops_the_start_with_what_to_do(tmp_path: Path):
    path = tmp_path / "journal.sqlite3"
    shutil.copyfile(FIXTURE, path)
    await Journal.open(path, encode_result=encode_result, decode_result=decode_result).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE task_changes SET data = ? WHERE rowid = 1", (b"\x07later",))
        db.commit()
    journal = Journal.open(path, encode_result=encode_result, decode_result=decode_result)
    try:
        with pytest.raises(
            JournalError, match=r"damaged \(unreadable record: a record of format 07"
        ):
            journal.load()
    finally:
        await journal.close()
