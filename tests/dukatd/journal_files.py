"""Journals as older dukatds wrote them, made by hand with sqlite3, for the upgrade tests.

Made from the migrations as released (`dukatd.journal.schema.MIGRATIONS`, append only), so a file
of schema version N is what a dukatd of version N left: the rows are those its writer made.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from dukat.v1 import job_pb2
from dukatd.journal import codec
from dukatd.journal.schema import MIGRATIONS

__all__ = ["write_journal", "write_v1_journal"]


def write_v1_journal(
    path: Path,
    *,
    job_id: str,
    spec: job_pb2.JobSpec,
    tasks: Iterable[tuple[str, str, int, bytes | None]],
    request_id: str = "",
    last_sequence: int = 9,
) -> None:
    """A schema-1 journal holding one running job whose event tail was not kept.

    `tasks`: (task id, state, attempts, stdout of a succeeded exec task or None).
    """
    now = time.time()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("BEGIN")
        for statement in MIGRATIONS[0].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        cursor = db.execute(
            "INSERT INTO jobs (job_id, request_id, spec, created_at, state, last_sequence) "
            "VALUES (?, ?, ?, ?, 'running', ?)",
            (job_id, request_id or None, spec.SerializeToString(), now - 60, last_sequence),
        )
        key = cursor.lastrowid
        for task_id, state, attempts, stdout in tasks:
            result = None
            finished = None
            if stdout is not None:
                value = job_pb2.TaskResultValue(exec=job_pb2.ExecResult(stdout=stdout))
                result, finished = value.SerializeToString(), now - 30
            db.execute(
                "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, '', ?)",
                (key, task_id, state, attempts, now - 50, finished, result),
            )
        db.execute("COMMIT")


def write_journal(
    path: Path,
    *,
    jobs: Iterable[tuple[str, job_pb2.JobSpec]] = (),
    breakers: dict[str, dict[str, object]] | None = None,
    task_changes: dict[str, list[tuple[object, ...]]] | None = None,
) -> None:
    """A journal of the current schema holding `jobs` (job id, spec), accepted and not
    started yet (but for their `task_changes`: job id -> the changes of one commit, in the
    shapes the docstring of `dukatd.journal` lists), and `breakers` configured over the API
    (name -> the engine's settings): written as a dukatd would have, whatever values they
    hold."""
    now = time.time()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("BEGIN")
        for migration in MIGRATIONS:
            if callable(migration):
                migration(db)
                continue
            for statement in migration.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        for job_id, spec in jobs:
            cursor = db.execute(
                "INSERT INTO jobs (job_id, created_at, state) VALUES (?, ?, 'pending')",
                (job_id, now - 60),
            )
            db.execute(
                "INSERT INTO job_specs VALUES (?, ?)", (cursor.lastrowid, spec.SerializeToString())
            )
            changes = (task_changes or {}).get(job_id)
            if changes:
                db.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (cursor.lastrowid,))
                db.execute(
                    "INSERT INTO task_changes VALUES (?, ?)",
                    (cursor.lastrowid, codec.encode(changes)),
                )
        for name, settings in (breakers or {}).items():
            db.execute("INSERT INTO breakers VALUES (?, ?)", (name, json.dumps(settings)))
        db.execute("COMMIT")
