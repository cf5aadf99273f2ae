"""The journal's file: opened, checked, set up for the writer, and upgraded to this schema.

The schema is versioned (`PRAGMA user_version`) and upgraded in place by `MIGRATIONS`,
every step due in one transaction: a crash or an error during the upgrade leaves the file
as it was, at its old version, for this dukatd to try again or an older one to use.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dukat.errors import JournalError
from dukatd.journal import codec, legacy
from dukatd.private_files import make_private, open_private

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "corrupt", "grouped", "open_database"]

_log = logging.getLogger("dukatd.journal")


def _pack_rows(db: sqlite3.Connection) -> None:
    """Schema 3: events and task changes packed, a row per job and commit, the rows of
    schema 1 moved in; specs in a table of their own (updating a job's row rewrote its spec
    too: SQLite writes a row whole). The packed rows are written in this dukatd's format
    (dukatd 0.1.0 pickled them; step 4 brings those to this format)."""
    db.execute(
        "CREATE TABLE event_chunks (job INTEGER NOT NULL, first_sequence INTEGER NOT NULL, "
        "last_sequence INTEGER NOT NULL, data BLOB NOT NULL)"
    )
    db.execute("CREATE INDEX event_chunks_by_job ON event_chunks (job, last_sequence)")
    db.execute("CREATE TABLE task_changes (job INTEGER NOT NULL, data BLOB NOT NULL)")
    db.execute("CREATE INDEX task_changes_by_job ON task_changes (job)")
    rows = db.execute(
        "SELECT job, task_id, state, attempts, started_at, finished_at, message, result "
        "FROM tasks ORDER BY job"
    ).fetchall()
    for key, group in grouped(rows):
        changes = [legacy.change_of_v1_row(row[1:]) for row in group]
        db.execute("INSERT INTO task_changes VALUES (?, ?)", (key, codec.encode(changes)))
    rows = db.execute(
        "SELECT job, sequence, time, kind, task_id, state, number, text FROM events "
        "ORDER BY job, sequence"
    ).fetchall()
    for key, group in grouped(rows):
        records = [legacy.record_of_v1_row(row[1:]) for row in group]
        db.execute(
            "INSERT INTO event_chunks VALUES (?, ?, ?, ?)",
            (key, records[0][1], records[-1][1], codec.encode(records)),
        )
    db.execute("DROP TABLE tasks")
    db.execute("DROP TABLE events")
    db.execute("CREATE TABLE job_specs (job INTEGER PRIMARY KEY, spec BLOB NOT NULL)")
    db.execute("INSERT INTO job_specs SELECT id, spec FROM jobs")
    db.execute("ALTER TABLE jobs DROP COLUMN spec")


def _unpickle_rows(db: sqlite3.Connection) -> None:
    """Schema 4: the rows dukatd 0.1.0 pickled (engine objects, named by class path)
    rewritten as plain values in this dukatd's format (`codec`)."""
    for table in ("event_chunks", "task_changes"):
        rows = db.execute(
            f"SELECT rowid, data FROM {table} WHERE substr(data, 1, 1) = ?",
            (bytes([legacy.PICKLED]),),
        ).fetchall()
        db.executemany(
            f"UPDATE {table} SET data = ? WHERE rowid = ?",
            [(codec.encode(legacy.unpickle_v3(data)), rowid) for rowid, data in rows],
        )


# Each migration takes the schema from its index to the next version. Append only: a file
# of each version is out there, as its dukatd left it.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    # 1: jobs, the tasks that started or ended, the ring of each job's newest events.
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL UNIQUE,
        request_id TEXT,
        spec BLOB NOT NULL,
        created_at REAL NOT NULL,
        state TEXT NOT NULL,
        finished_at REAL,
        message TEXT NOT NULL DEFAULT '',
        last_sequence INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE tasks (
        job INTEGER NOT NULL,
        task_id TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        started_at REAL,
        finished_at REAL,
        message TEXT NOT NULL DEFAULT '',
        result BLOB,
        PRIMARY KEY (job, task_id)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        job INTEGER NOT NULL,
        slot INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        time REAL NOT NULL,
        kind INTEGER NOT NULL,
        task_id TEXT,
        state TEXT,
        number REAL,
        text TEXT,
        PRIMARY KEY (job, slot)
    ) WITHOUT ROWID;
    """,
    # 2: cancel requests (replayed on recovery) and breakers configured over the API.
    """
    CREATE TABLE cancels (
        job INTEGER NOT NULL,
        task_ids TEXT NOT NULL
    );
    CREATE INDEX cancels_by_job ON cancels (job);
    CREATE TABLE breakers (
        name TEXT PRIMARY KEY,
        settings TEXT NOT NULL
    );
    """,
    # 3: a row per commit and job instead of one per event and per task (`_pack_rows`).
    _pack_rows,
    # 4: plain values instead of pickled engine objects (`_unpickle_rows`).
    _unpickle_rows,
)
SCHEMA_VERSION = len(MIGRATIONS)


def open_database(path: Path, *, sync: str, max_bytes: int | None) -> sqlite3.Connection:
    """The journal's database at `path`, made if missing, checked, in WAL mode, upgraded.

    Raises `JournalError` when it cannot be used: not a database, corrupt, written by a
    newer dukatd, not readable, or its upgrade failed.
    """
    try:
        _make_private(path)
    except OSError as error:
        raise JournalError(f"cannot open the journal {str(path)!r}: {error.strerror}") from None
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as error:
        raise JournalError(f"cannot open the journal {str(path)!r}: {error}") from None
    try:
        _prepare(db, path, sync=sync, max_bytes=max_bytes)
    except sqlite3.DatabaseError as error:
        db.close()
        raise JournalError(corrupt(path, str(error))) from None
    except codec.FormatError as error:
        db.close()
        raise JournalError(corrupt(path, f"unreadable record: {error}")) from None
    except BaseException:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection, path: Path, *, sync: str, max_bytes: int | None) -> None:
    """Check the file, set it up for the writer, and upgrade its schema."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"the journal {str(path)!r} was written by a newer dukatd (schema version "
            f"{version}; this one knows up to {SCHEMA_VERSION}): run that version, or move "
            "the state directory aside to start empty"
        )
    if version == 0 and not db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
        # A new file: incremental vacuum must be chosen before the first table exists.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise sqlite3.DatabaseError("; ".join(problems))
    if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
        raise JournalError(f"the journal {str(path)!r} cannot use WAL mode on this file system")
    db.execute(f"PRAGMA synchronous = {sync.upper()}")
    db.execute(f"PRAGMA journal_size_limit = {64 * 1024 * 1024}")
    if max_bytes:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page_size)}")
    if version < SCHEMA_VERSION:
        _migrate(db, version)
        if version:  # a new file is made at the current version
            _log.info("journal %s: schema upgraded from %d to %d", path, version, SCHEMA_VERSION)


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """Every step from `version` on, and the new version, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for migration in MIGRATIONS[version:]:
            if isinstance(migration, str):
                for statement in _statements(migration):
                    db.execute(statement)
            else:
                migration(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _make_private(path: Path) -> None:
    """The journal's files mode 0600: it holds the tasks' environments and results.

    SQLite makes its WAL and shared-memory files with the database file's mode, so the
    database is created here, 0600, before SQLite opens it; files an older dukatd left
    readable are narrowed."""
    for suffix in ("-wal", "-shm"):
        make_private(path.with_name(path.name + suffix))
    os.close(open_private(path, os.O_RDWR))


def _statements(script: str) -> Iterable[str]:
    return (part.strip() for part in script.split(";") if part.strip())


def corrupt(path: Path, detail: str) -> str:
    """What to say of a journal that cannot be read, and what to do about it."""
    return (
        f"the journal {str(path)!r} is damaged ({detail}). dukatd will not start on it, "
        "so that no accepted job is silently lost. Restore it from a backup, or move it "
        f"aside (mv {path} {path}.damaged) to start with an empty journal; "
        f"`sqlite3 {path}.damaged .recover` may save what is left of it"
    )


def grouped(rows: Iterable[tuple[Any, ...]]) -> Iterable[tuple[int, list[tuple[Any, ...]]]]:
    """Consecutive rows with the same first column (a job's key), as (key, rows)."""
    key: int | None = None
    group: list[tuple[Any, ...]] = []
    for row in rows:
        if row[0] != key:
            if group:
                yield key, group  # type: ignore[misc]
            key, group = row[0], []
        group.append(row)
    if group:
        yield key, group  # type: ignore[misc]
