"""The journal: what dukatd has accepted and done, in SQLite, so a restart loses nothing.

One database file, `journal.sqlite3` in the state directory, in WAL mode, written by one
thread of its own. The event loop never waits on the disk: the scheduler's listener appends
each event to a queue (a deque append, no lock), and the writer thread commits what has
gathered as one transaction — a group commit, so a burst of ten thousand events is a handful
of commits. Callers that must not go on before something is on disk await `sync()` (or
`settled()`), which returns once everything queued before it is committed; one waiting
makes the writer commit at once, and what queues up meanwhile goes in the next commit. While
nobody waits, only watchers do (they see events once committed), and a group gathers for up
to `commit_delay`: a steady trickle of events makes a commit per many tasks rather than one
per task, each a WAL append (and an fsync). What is kept:

- `jobs`: every accepted job: request id, creation time, and its state and end when they
  change (its last event sequence is its newest event chunk's); its spec (the
  `dukat.v1.JobSpec` message as submitted) in `job_specs`, apart, since SQLite rewrites a
  whole row — blob included — at each update;
- `task_changes`: per job and commit, one row listing the tasks that started, ended or went
  RETRYING in it — state, attempts, times, message, when it succeeded its result, when it
  failed its `TaskFailure` (each encoded by the caller's `encode_result` into plain values:
  bytes, str, numbers, tuples), and when it went RETRYING or FAILED its interruptions so far
  (`_fold` lists the shapes); recovery folds them in order, the last change of a task wins.
  A rerun's tasks carried over from the job it reruns are written with its acceptance, in the
  same transaction, each with that job's id: a rerun never comes back without them;
- `event_chunks`: per job and commit, one row of its events, for watchers that resume after
  a restart; the chunks older than twice `event_tail` events are deleted as the job goes on.
  A row holds a pickled list of the engine's own event records (`_pack`): a row costs
  SQLite, and the loop whose GIL each row's step gives up and takes back, far more than
  packing does (schema 3; schema 1 had a row per task and per event);
- `cancels`: cancel requests, replayed on recovery (a task being stopped when the daemon
  died must not run again), with their reasons; `breakers`: breaker settings configured
  over the API.

The engine holds every job's events back from watchers until the writer has committed them
(`Scheduler(hold_events=True)`, published from `_on_commit`): no client can have seen a state
that a crash takes back, so sequence numbers after a restart continue without a gap.

Durability: `sync="normal"` (the default) writes each commit to the WAL without an fsync: it
survives a crash or `kill -9` of the daemon (the kernel holds it), and the last commits may be
lost on power loss; `"full"` fsyncs the WAL at each commit, which survives power loss too, at
a disk flush per commit — and every task start waits for one (see `settled`).

A commit that fails (a full disk, `max_bytes` reached, an I/O error, no memory left)
is retried with backoff; the jobs in it were never started, so their Submits fail instead
(`JournalWriteError`), and nothing else is lost while the writer keeps trying. With
`max_bytes`, new jobs may fill only `ACCEPT_SHARE` of it: a job that would go beyond is left
out of its commit (its Submit fails, `check_accepted`) and the rest is kept for the events of
the jobs accepted before, which must still be written for them to finish — a journal filled
up to its limit by Submits would refuse those too, and they could never end.

Finished jobs leave the journal when the scheduler drops them (its retention); freed pages go
back to the file system a chunk at a time (incremental vacuum), and the WAL is truncated at
each checkpoint beyond `journal_size_limit`, so the file stays bounded under a steady load.
The schema is versioned (`PRAGMA user_version`) and upgraded in place by `_MIGRATIONS`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import os
import pickle
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dukat.core.events import (
    Event,
    JobStateChanged,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    event_of,
)
from dukat.core.results import TaskStatus
from dukat.core.scheduler import CancelRequest
from dukat.core.states import _RUNNING, JobState, TaskState
from dukatd.private_files import make_private, open_private

__all__ = [
    "ACCEPT_SHARE",
    "JOURNAL_FILE",
    "SCHEMA_VERSION",
    "Journal",
    "JournalError",
    "JournalWriteError",
    "RecoveredJob",
]

_log = logging.getLogger("dukatd.journal")

JOURNAL_FILE = "journal.sqlite3"


# Each migration takes the schema from its index to the next version. Append only: a
# released step never changes, since journals out there were written by it.
def _pack_rows(db: sqlite3.Connection) -> None:
    """Schema 3: events and task changes packed, a row per job and commit (`_pack`), the
    rows of schema 1 moved in; specs in a table of their own (updating a job's row rewrote
    its spec too: SQLite writes a row whole)."""
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
    for key, group in _grouped(rows):
        changes = [(row[1], TaskState(row[2]), *row[3:]) for row in group]
        db.execute("INSERT INTO task_changes VALUES (?, ?)", (key, _pack(changes)))
    rows = db.execute(
        "SELECT job, sequence, time, kind, task_id, state, number, text FROM events "
        "ORDER BY job, sequence"
    ).fetchall()
    for key, group in _grouped(rows):
        records = [_record(row[1:]) for row in group]
        db.execute(
            "INSERT INTO event_chunks VALUES (?, ?, ?, ?)",
            (key, records[0][1], records[-1][1], _pack(records)),
        )
    db.execute("DROP TABLE tasks")
    db.execute("DROP TABLE events")
    db.execute("CREATE TABLE job_specs (job INTEGER PRIMARY KEY, spec BLOB NOT NULL)")
    db.execute("INSERT INTO job_specs SELECT id, spec FROM jobs")
    db.execute("ALTER TABLE jobs DROP COLUMN spec")


_MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
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
)
SCHEMA_VERSION = len(_MIGRATIONS)

# events.kind
_JOB, _TASK, _PROGRESS, _OUTPUT = range(4)

# queued operations: (kind, ...)
_EVENT, _ACCEPT, _CANCEL, _DROP, _BREAKER = range(5)

ACCEPT_SHARE = 0.75
"""Of `max_bytes`, what accepted jobs may fill; the rest is for the progress of those jobs."""

_ENDS = frozenset(s for s in TaskState if s.is_terminal)
_RETRYING, _FAILED, _SUCCEEDED = TaskState.RETRYING, TaskState.FAILED, TaskState.SUCCEEDED
_VACUUM_CHUNK_PAGES = 2048


class JournalError(Exception):
    """The journal cannot be used; the daemon must not start on it. The message says why
    and what to do."""


class JournalWriteError(Exception):
    """What was asked to be made durable could not be written (`full`: the disk, or the
    journal's size limit, is full)."""

    def __init__(self, message: str, *, full: bool) -> None:
        super().__init__(message)
        self.full = full


@dataclass(slots=True)
class RecoveredJob:
    """One job as the journal kept it: enough for `Scheduler.restore`."""

    job_id: str
    request_id: str
    spec: bytes
    created_at: float
    state: JobState
    finished_at: float | None
    message: str
    last_sequence: int
    tasks: list[TaskStatus] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    cancels: list[CancelRequest] = field(default_factory=list)
    """Cancel requests in order; one without task ids cancelled the whole job."""


class Journal:
    """The daemon's journal; see the module docstring. `Journal.open` makes one."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        *,
        encode_result: Callable[[Any], Any],
        decode_result: Callable[[Any], Any],
        event_tail: int,
        commit_delay: float,
        accept_pages: int | None = None,
    ) -> None:
        """`accept_pages`: pages in use beyond which no new job is accepted (None: no limit)."""
        self.path = path
        self._db = connection
        self._encode_result = encode_result
        self._decode_result = decode_result
        self.event_tail = event_tail
        self.commit_delay = commit_delay
        self._keys: dict[str, int] = {}  # job id -> jobs.id; the writer's once it runs
        self._trim_at: dict[int, int] = {}  # jobs.id -> sequence at which to trim its events
        self._queue: deque[tuple[Any, ...]] = deque()
        self._queued = 0  # operations queued so far (the loop's count)
        self._committed = 0  # of those, committed (the loop's copy, set by `_on_commit`)
        self._signalled = False
        self._wake = threading.Event()
        self._hurry = threading.Event()  # someone awaits what is queued: commit at once
        # (target, future, patient): a patient waiter waits through failed commits.
        self._waiters: list[tuple[int, asyncio.Future[None], bool]] = []
        self._frozen = False
        self._closing = False
        self._accept_pages = accept_pages
        self._refused: dict[str, JournalWriteError] = {}  # job id -> why it was left out
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publish: Callable[[str, int], None] | None = None
        self._result_of: Callable[[str, str], Any] | None = None
        self._interruptions_of: Callable[[str, str], int] | None = None
        self._event_listeners: list[Callable[[Event], None]] = []
        # Written by the writer thread only, read at scrape time (dukatd.metrics_journal).
        self.commits = 0
        self.write_errors = 0
        self.commit_seconds = CommitTimes()

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        encode_result: Callable[[Any], Any],
        decode_result: Callable[[Any], Any],
        sync: str = "normal",
        max_bytes: int | None = None,
        event_tail: int = 10_000,
        commit_delay: float = 0.01,
    ) -> Journal:
        """Open (or create) the journal at `path`, checked and upgraded to this schema.

        Raises `JournalError` when it cannot be used: not a database, corrupt, written by a
        newer dukatd, or not readable.
        """
        if sync not in ("full", "normal"):
            raise ValueError(f"sync must be 'full' or 'normal', not {sync!r}")
        path = Path(path)
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
            raise JournalError(_corrupt(path, str(error))) from None
        except JournalError:
            db.close()
            raise
        accept_pages = None
        if max_bytes:
            limit = db.execute("PRAGMA max_page_count").fetchone()[0]
            accept_pages = int(limit * ACCEPT_SHARE)
        return cls(
            db,
            path,
            encode_result=encode_result,
            decode_result=decode_result,
            event_tail=event_tail,
            commit_delay=commit_delay,
            accept_pages=accept_pages,
        )

    def load(self) -> tuple[list[RecoveredJob], dict[str, dict[str, Any]]]:
        """Every job kept (oldest first) and the breakers configured over the API.

        Call once, before `start`. Raises `JournalError` if what is read is corrupt.
        """
        try:
            return self._load()
        except sqlite3.DatabaseError as error:
            raise JournalError(_corrupt(self.path, str(error))) from None
        except (pickle.UnpicklingError, ValueError, EOFError, TypeError, LookupError) as error:
            raise JournalError(_corrupt(self.path, f"unreadable record: {error}")) from None

    def _load(self) -> tuple[list[RecoveredJob], dict[str, dict[str, Any]]]:
        db = self._db
        jobs: dict[int, RecoveredJob] = {}
        for row in db.execute(
            "SELECT id, job_id, request_id, spec, created_at, state, finished_at, message, "
            "last_sequence FROM jobs JOIN job_specs ON job_specs.job = jobs.id ORDER BY id"
        ):
            key, job_id, request_id, spec, created, state, finished, message, last = row
            self._keys[job_id] = key
            jobs[key] = RecoveredJob(
                job_id, request_id or "", spec, created, JobState(state), finished, message, last
            )
        newest = "SELECT job, max(last_sequence) FROM event_chunks GROUP BY job"
        for key, last in db.execute(newest):
            if key in jobs and last > jobs[key].last_sequence:
                jobs[key].last_sequence = last
        changes: dict[int, dict[str, list[Any]]] = {}
        for key, data in db.execute("SELECT job, data FROM task_changes ORDER BY rowid"):
            folded = changes.setdefault(key, {})
            for change in pickle.loads(data):
                _fold(folded, change)
        decode = self._decode_result
        for key, folded in changes.items():
            job = jobs.get(key)
            if job is None:
                continue
            for (
                task_id,
                state,
                attempts,
                started,
                finished,
                message,
                result,
                interruptions,
                carried_from,
            ) in folded.values():
                value = decode(result) if result is not None else None
                job.tasks.append(
                    TaskStatus(
                        id=task_id,
                        state=state,
                        attempts=attempts,
                        error=message,
                        started_at=started,
                        finished_at=finished,
                        result=value if state is TaskState.SUCCEEDED else None,
                        failure=value if state is TaskState.FAILED else None,
                        interruptions=interruptions,
                        carried_from=carried_from,
                    )
                )
        chunks = db.execute("SELECT job, data FROM event_chunks ORDER BY job, first_sequence")
        for key, rows in _grouped(chunks):
            job = jobs.get(key)
            if job is not None:
                records = [record for _, data in rows for record in pickle.loads(data)]
                tail = _contiguous_tail(records, job.last_sequence)
                job.events = tail[-self.event_tail :]
                self._trim_at[key] = job.last_sequence + self.event_tail
        for key, kept in db.execute("SELECT job, task_ids FROM cancels ORDER BY rowid"):
            job = jobs.get(key)
            if job is not None:
                job.cancels.append(_cancel_request(json.loads(kept)))
        breakers = {
            name: json.loads(settings)
            for name, settings in db.execute("SELECT name, settings FROM breakers")
        }
        return list(jobs.values()), breakers

    # -- running ----------------------------------------------------------------------------

    def start(
        self,
        *,
        publish: Callable[[str, int], None],
        result_of: Callable[[str, str], Any],
        interruptions_of: Callable[[str, str], int],
    ) -> None:
        """Start the writer thread. Call in the running loop, after `load`.

        `publish(job_id, sequence)`: events up to there are on disk (`Scheduler.publish`).
        `result_of(job_id, task_id)`: a succeeded task's result, or a failed one's
        `TaskFailure`, read when its event comes.
        `interruptions_of(job_id, task_id)`: a task's interruptions so far, read when it goes
        RETRYING or FAILED (the only changes that may follow one).
        """
        self._loop = asyncio.get_running_loop()
        self._publish = publish
        self._result_of = result_of
        self._interruptions_of = interruptions_of
        self._thread = threading.Thread(target=self._write_forever, name="dukatd-journal")
        self._thread.start()

    def on_record(self, job_id: str, record: tuple[Any, ...]) -> None:
        """The scheduler's record listener: queue an event, with what the journal keeps of
        the task beyond it: a succeeded task's result, a failed one's failure and
        interruptions, the interruptions of one RETRYING."""
        if self._frozen:
            return
        kept = None
        if record[0] is TaskStateChanged:
            state = record[4]
            task_id = record[3]
            if state is _SUCCEEDED:
                kept = self._result_of(job_id, task_id)  # type: ignore[misc]
            elif state is _RETRYING:
                kept = self._interruptions_of(job_id, task_id)  # type: ignore[misc]
            elif state is _FAILED:
                kept = (
                    self._result_of(job_id, task_id),  # type: ignore[misc]
                    self._interruptions_of(job_id, task_id),  # type: ignore[misc]
                )
        self._put((_EVENT, job_id, record, kept))

    def accept(
        self,
        job_id: str,
        request_id: str,
        spec: bytes,
        created_at: float,
        carried: Sequence[TaskStatus] = (),
    ) -> None:
        """Queue a job that was submitted, with the tasks a rerun carried over into it
        (`PreparedJob.carried`); `await sync()`, then `check_accepted`, before starting it."""
        self._put((_ACCEPT, job_id, request_id or None, spec, created_at, carried))

    def check_accepted(self, job_id: str) -> None:
        """After `sync`: raise `JournalWriteError` if the job was left out for want of room
        (see `ACCEPT_SHARE`); it is not in the journal, and must not start."""
        refused = self._refused.pop(job_id, None)
        if refused is not None:
            raise refused

    def cancel(self, job_id: str, task_ids: Sequence[str], reason: str = "") -> None:
        """Queue a cancel request (empty `task_ids`: the whole job) and its reason."""
        # The task ids as a list, as ever; with a reason, an object (see _cancel_request).
        kept: Any = {"task_ids": list(task_ids), "reason": reason} if reason else list(task_ids)
        self._put((_CANCEL, job_id, json.dumps(kept)))

    def drop(self, job_id: str) -> None:
        """Queue the removal of a job: a finished one the scheduler let go
        (`add_drop_listener`), or one accepted whose `sync` failed (it never started)."""
        self._put((_DROP, job_id))

    def configure_breaker(self, name: str, settings: dict[str, Any]) -> None:
        """Queue a breaker's settings, as configured over the API."""
        self._put((_BREAKER, name, json.dumps(settings, sort_keys=True)))

    async def sync(self) -> None:
        """Return once everything queued so far is committed.

        Raises `JournalWriteError` if the commit that was to hold them failed (the writer
        keeps trying with what it can: all but the jobs accepted in it).
        """
        target = self._queued
        if self._committed >= target:
            return
        if self._closing:  # no writer will come for it
            raise JournalWriteError("the journal is closed: dukatd is stopping", full=False)
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future, False))
        self._hurry.set()
        await future

    async def settled(self) -> None:
        """Return once everything queued so far is committed, however long that takes.

        For what must not go ahead before it is on disk but has nothing to answer either
        (a task about to start): while commits fail (a full disk), it waits, and the task
        waits with it, instead of failing.
        """
        target = self._queued
        if self._committed >= target:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future, True))
        self._hurry.set()
        await future

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` for each event of every job once it is committed."""
        self._event_listeners.append(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        self._event_listeners.remove(listener)

    def freeze(self) -> None:
        """Record nothing more: what happens from here is the shutdown's doing (tasks that
        the drain cancels must run again after the restart, not end CANCELLED)."""
        self._frozen = True

    @property
    def frozen(self) -> bool:
        """Recording nothing more: a Submit or Cancel now would not survive a restart."""
        return self._frozen

    async def close(self) -> None:
        """Freeze, commit what is queued, stop the writer, checkpoint and close the file."""
        self.freeze()
        self._closing = True
        thread = self._thread
        if thread is not None:
            self._wake.set()
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
            self._thread = None
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    def _put(self, operation: tuple[Any, ...]) -> None:
        if self._frozen and operation[0] != _BREAKER:
            return
        self._queue.append(operation)
        self._queued += 1
        if not self._signalled:
            self._signalled = True
            self._wake.set()

    # -- the writer thread ------------------------------------------------------------------

    def _write_forever(self) -> None:
        retained: list[tuple[Any, ...]] = []  # of a failed commit, tried again
        uncounted = 0  # operations taken since the last commit that worked
        backoff = 0.05
        while True:
            self._wake.wait()
            if not self._closing:  # only events wait: let a group gather, unless one hurries
                self._hurry.wait(self.commit_delay)
            self._wake.clear()
            self._hurry.clear()  # before taking: a sync() after the take hurries the next
            self._signalled = False  # before taking: what comes after wakes us again
            queue = self._queue
            taken = [queue.popleft() for _ in range(len(queue))]
            uncounted += len(taken)
            operations = retained + taken
            if not operations:
                if uncounted:  # only refused jobs since the last commit: settled too
                    self._call_loop(self._on_commit, uncounted, {}, ())
                    uncounted = 0
                if self._closing:
                    return
                continue
            began = time.perf_counter()
            try:
                marks, refused = self._commit(operations)
            except (sqlite3.Error, MemoryError) as error:  # SQLite's "out of memory" too
                self.write_errors += 1
                why = str(error) or "out of memory"  # a MemoryError says nothing
                failure = JournalWriteError(
                    f"the journal {str(self.path)!r} cannot be written: {why}",
                    full=isinstance(error, MemoryError)
                    or getattr(error, "sqlite_errorname", "") == "SQLITE_FULL",
                )
                _log.error("%s; retrying in %.2gs", failure, backoff)
                # Jobs in it were never started: their Submits fail (and are not tried
                # again); the rest waits for a commit that works.
                retained = [op for op in operations if op[0] != _ACCEPT]
                self._call_loop(self._on_failure, failure, uncounted)
                if self._closing:
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                self._wake.set()
                continue
            retained = []
            backoff = 0.05
            self.commits += 1
            self.commit_seconds.observe(time.perf_counter() - began)
            # Read without a lock: a listener added meanwhile hears from the next commit on.
            events = [op for op in operations if op[0] == _EVENT] if self._event_listeners else ()
            self._call_loop(self._on_commit, uncounted, marks, events, refused)
            uncounted = 0
            if self._closing and not self._queue:
                return

    def _call_loop(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(callback, *args)  # type: ignore[union-attr]

    def _commit(self, operations: list[tuple[Any, ...]]) -> tuple[dict[str, int], list[str]]:
        """Write `operations` in one transaction; the last sequence written per job, and the
        jobs left out for want of room (`accept_pages`)."""
        db = self._db
        keys = self._keys
        events: dict[int, list[tuple[Any, ...]]] = {}  # key -> its event records, in order
        tasks: dict[int, list[tuple[Any, ...]]] = {}  # key -> its task changes, in order
        # key -> [last sequence, state, message, finished, job id]
        jobs: dict[int, list[Any]] = {}
        marks: dict[str, int] = {}  # job id -> last sequence written, whatever was dropped
        added: list[str] = []
        refused: list[str] = []
        dropped: list[tuple[str, int]] = []
        encode = self._encode_result
        db.execute("BEGIN IMMEDIATE")
        try:
            for operation in operations:
                kind = operation[0]
                if kind == _EVENT:
                    _, job_id, record, kept = operation
                    key = keys.get(job_id)
                    if key is None:
                        continue  # dropped already, or accepted by a failed commit
                    # The hottest loop of the writer, which holds the GIL while in Python:
                    # records go as they are, `pickle` (C) packs them per job at the end.
                    sequence = record[1]
                    update = jobs.get(key)
                    if update is None:
                        jobs[key] = update = [sequence, None, None, None, job_id]
                        events[key] = []
                        tasks[key] = []
                    update[0] = sequence
                    events[key].append(record)
                    event_class = record[0]
                    if event_class is TaskStateChanged:
                        state = record[4]
                        if state is _RUNNING:
                            tasks[key].append((record[3], state, record[5], record[2]))
                        elif state is _RETRYING:
                            tasks[key].append((record[3], state, record[5], kept))
                        elif state is _FAILED:  # its failure, and its interruptions so far
                            failure, interruptions = kept
                            value = None if failure is None else encode(failure)
                            tasks[key].append(
                                (
                                    record[3],
                                    state,
                                    record[5],
                                    None,
                                    record[2],
                                    record[6],
                                    value,
                                    interruptions,
                                )
                            )
                        elif state in _ENDS:
                            value = None if kept is None else encode(kept)
                            tasks[key].append(
                                (record[3], state, record[5], None, record[2], record[6], value)
                            )
                    elif event_class is JobStateChanged:
                        state = record[3]
                        update[1], update[2] = state.value, record[4]
                        if state.is_terminal:
                            update[3] = record[2]
                elif kind == _ACCEPT:
                    _, job_id, request_id, spec, created_at, carried = operation
                    if self._accept_pages is not None:
                        db.execute("SAVEPOINT accept")
                    cursor = db.execute(
                        "INSERT INTO jobs (job_id, request_id, created_at, state) "
                        "VALUES (?, ?, ?, ?)",
                        (job_id, request_id, created_at, JobState.PENDING.value),
                    )
                    db.execute("INSERT INTO job_specs VALUES (?, ?)", (cursor.lastrowid, spec))
                    if carried:
                        db.execute(
                            "INSERT INTO task_changes VALUES (?, ?)",
                            (cursor.lastrowid, _pack([_carried(t, encode) for t in carried])),
                        )
                    if self._accept_pages is not None:
                        if _pages_in_use(db) > self._accept_pages:
                            db.execute("ROLLBACK TO accept")
                            db.execute("RELEASE accept")
                            refused.append(job_id)
                            continue
                        db.execute("RELEASE accept")
                    keys[job_id] = cursor.lastrowid  # type: ignore[assignment]
                    added.append(job_id)
                elif kind == _CANCEL:
                    key = keys.get(operation[1])
                    if key is not None:
                        db.execute("INSERT INTO cancels VALUES (?, ?)", (key, operation[2]))
                elif kind == _DROP:
                    key = keys.pop(operation[1], None)
                    if key is not None:
                        dropped.append((operation[1], key))
                        # Writes of this batch for it go first, then all of it.
                        marks.update(self._flush(events, tasks, jobs))
                        events, tasks, jobs = {}, {}, {}
                        self._trim_at.pop(key, None)
                        for table in ("event_chunks", "task_changes", "cancels", "job_specs"):
                            db.execute(f"DELETE FROM {table} WHERE job = ?", (key,))
                        db.execute("DELETE FROM jobs WHERE id = ?", (key,))
                elif kind == _BREAKER:
                    db.execute(
                        "INSERT INTO breakers VALUES (?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET settings = excluded.settings",
                        operation[1:],
                    )
            marks.update(self._flush(events, tasks, jobs))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            for job_id in added:  # not in the file after all
                keys.pop(job_id, None)
            keys.update(dropped)  # still in the file
            raise
        if dropped:
            self._vacuum_some()
        return marks, refused

    def _flush(
        self,
        events: dict[int, list[tuple[Any, ...]]],
        tasks: dict[int, list[tuple[Any, ...]]],
        jobs: dict[int, list[Any]],
    ) -> dict[str, int]:
        """One row of events and one of task changes per job, whatever their number: a row
        costs SQLite (and the loop, whose GIL each row's step gives up and takes back) far
        more than packing does. Returns the last sequence written per job id: each of them
        is to be published once the transaction commits."""
        db = self._db
        if events:
            db.executemany(
                "INSERT INTO event_chunks VALUES (?, ?, ?, ?)",
                [(k, e[0][1], e[-1][1], _pack(e)) for k, e in events.items() if e],
            )
        if tasks:
            db.executemany(
                "INSERT INTO task_changes VALUES (?, ?)",
                [(k, _pack(c)) for k, c in tasks.items() if c],
            )
        if jobs:
            # A job's row changes with its state only: its last sequence is its newest
            # chunk's (`_load`), and a row less per commit is a page less in the WAL.
            changed = [(*update[:4], key) for key, update in jobs.items() if update[1] is not None]
            if changed:
                db.executemany(
                    "UPDATE jobs SET last_sequence = ?, state = ?, message = ?, "
                    "finished_at = coalesce(?, finished_at) WHERE id = ?",
                    changed,
                )
            # Each job keeps its newest `event_tail` events, and at most twice that: old
            # chunks go once the tail has moved on by as much again.
            tail, trim_at = self.event_tail, self._trim_at
            for key, update in jobs.items():
                last = update[0]
                due = trim_at.setdefault(key, last + tail)
                if last >= due:
                    db.execute(
                        "DELETE FROM event_chunks WHERE job = ? AND last_sequence <= ?",
                        (key, last - tail),
                    )
                    trim_at[key] = last + tail
        return {update[4]: update[0] for update in jobs.values()}

    def _vacuum_some(self) -> None:
        """Give freed pages back to the file system once a good share of the file is free."""
        db = self._db
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        if free >= _VACUUM_CHUNK_PAGES and free * 4 >= pages:
            db.execute(f"PRAGMA incremental_vacuum({free})")

    # -- back on the loop -------------------------------------------------------------------

    def _on_commit(
        self,
        count: int,
        marks: dict[str, int],
        events: Sequence[tuple[Any, ...]],
        refused: Sequence[str] = (),
    ) -> None:
        for job_id in refused:
            self._refused[job_id] = JournalWriteError(
                f"the journal {str(self.path)!r} is full: new jobs may take "
                f"{ACCEPT_SHARE:.0%} of its size limit, the rest is kept for the jobs accepted "
                "before (raise --journal-max-bytes, or let finished jobs go sooner)",
                full=True,
            )
        self._committed += count
        publish = self._publish
        for job_id, sequence in marks.items():
            publish(job_id, sequence)  # type: ignore[misc]
        listeners = self._event_listeners
        if listeners:
            for _, job_id, record, _ in events:
                event = event_of(record, job_id)
                for listener in listeners:
                    listener(event)
        self._wake_waiters()

    def _on_failure(self, failure: JournalWriteError, uncounted: int) -> None:
        """The commit of everything up to `uncounted` operations past the last one that
        worked failed: whoever waits for those hears why; later ones wait on."""
        failed_upto = self._committed + uncounted
        waiting = []
        for waiter in self._waiters:
            target, future, patient = waiter
            if patient or target > failed_upto:
                waiting.append(waiter)
            elif not future.done():
                future.set_exception(failure)
        self._waiters = waiting

    def _wake_waiters(self) -> None:
        committed = self._committed
        waiting = []
        for waiter in self._waiters:
            target, future, _ = waiter
            if target <= committed:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append(waiter)
        self._waiters = waiting

    @property
    def backlog(self) -> int:
        """Operations queued and not committed yet."""
        return self._queued - self._committed

    def size(self) -> int:
        """Bytes on disk: the database file and its WAL."""
        total = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def __repr__(self) -> str:
        return (
            f"<Journal {str(self.path)!r} queued:{self._queued} committed:{self._committed}"
            f"{' frozen' if self._frozen else ''}>"
        )


class CommitTimes:
    """A histogram of commit durations, kept by the writer thread without a lock (one
    writer; readers at scrape time may see one observation half counted, never a wrong one
    for long)."""

    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BUCKETS) + 1)  # the last one: +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.total += seconds
        self.counts[bisect.bisect_left(self.BUCKETS, seconds)] += 1


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
    for step in range(version, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        migration = _MIGRATIONS[step]
        if isinstance(migration, str):
            for statement in _statements(migration):
                db.execute(statement)
        else:
            migration(db)
        db.execute(f"PRAGMA user_version = {step + 1}")
        db.execute("COMMIT")
    if version and version < SCHEMA_VERSION:  # a new file is made at the current version
        _log.info("journal %s: schema upgraded from %d to %d", path, version, SCHEMA_VERSION)


def _make_private(path: Path) -> None:
    """The journal's files mode 0600: it holds the tasks' environments and results.

    SQLite makes its WAL and shared-memory files with the database file's mode, so the
    database is created here, 0600, before SQLite opens it; files an older dukatd left
    readable are narrowed."""
    for suffix in ("-wal", "-shm"):
        make_private(path.with_name(path.name + suffix))
    os.close(open_private(path, os.O_RDWR))


def _pages_in_use(db: sqlite3.Connection) -> int:
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    return pages - db.execute("PRAGMA freelist_count").fetchone()[0]


def _statements(script: str) -> Iterable[str]:
    return (part.strip() for part in script.split(";") if part.strip())


def _corrupt(path: Path, detail: str) -> str:
    return (
        f"the journal {str(path)!r} is damaged ({detail}). dukatd will not start on it, "
        "so that no accepted job is silently lost. Restore it from a backup, or move it "
        f"aside (mv {path} {path}.damaged) to start with an empty journal; "
        f"`sqlite3 {path}.damaged .recover` may save what is left of it"
    )


def _pack(values: list[Any]) -> bytes:
    """Records and changes as one blob. pickle: in C, and each class and enum member once
    per blob (memoized), where converting every record to plain values costs the writer's
    thread, and the loop's GIL, a microsecond or more per event. The journal is the daemon's
    own file in its private state directory: whoever can write it can run code as the
    daemon anyway."""
    return pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)


def _cancel_request(kept: Any) -> CancelRequest:
    """A cancel request back from its row: a list of task ids, or (with a reason, since
    the reason is kept) an object of both."""
    if isinstance(kept, dict):
        return CancelRequest(tuple(kept["task_ids"]), kept["reason"])
    return CancelRequest(tuple(kept))


def _carried(status: TaskStatus, encode: Callable[[Any], Any]) -> tuple[Any, ...]:
    """A task a rerun carried over, as the change `_fold` reads: SUCCEEDED, its result, its
    interruptions, and the job it comes from."""
    value = None if status.result is None else encode(status.result)
    return (
        status.id,
        status.state,
        status.attempts,
        status.started_at,
        status.finished_at,
        status.error,
        value,
        status.interruptions,
        status.carried_from,
    )


def _fold(folded: dict[str, list[Any]], change: tuple[Any, ...]) -> None:
    """Apply one task change to the task's [task, state, attempt, started, finished, message,
    result, interruptions, carried from]. A change is (task, RUNNING, attempt, started),
    (task, RETRYING, attempt, interruptions), or (task, state, attempt, started, finished,
    message, result), which a FAILED one follows with its interruptions, and one a rerun
    carried over with its interruptions and the job it comes from (`_carried`). The first
    start of a task stays its start; its interruptions stay as the last change that said
    them (0 in a journal of a dukatd that did not count them); a carried task stays carried
    (its SUCCEEDED event, written later, says nothing of it)."""
    earlier = folded.get(change[0])
    if len(change) == 4:
        task_id, state, attempt, value = change
        if earlier is None:
            earlier = folded[task_id] = [task_id, state, attempt, None, None, "", None, 0, ""]
        earlier[1], earlier[2] = state, attempt
        if state is _RETRYING:
            earlier[7] = value
        elif earlier[3] is None:
            earlier[3] = value
        return
    task_id, state, attempt, started, finished, message, result, *counted = change
    interruptions, carried_from = 0, ""
    if earlier is not None:
        if earlier[3] is not None:
            started = earlier[3]
        interruptions, carried_from = earlier[7], earlier[8]
    if counted:
        interruptions = counted[0]
    if len(counted) > 1:
        carried_from = counted[1]
    folded[task_id] = [
        task_id,
        state,
        attempt,
        started,
        finished,
        message,
        result,
        interruptions,
        carried_from,
    ]


def _record(entry: Sequence[Any]) -> tuple[Any, ...]:
    """An event record back from a schema-1 row (sequence, time, kind, task, state, n,
    text)."""
    sequence, moment, kind, task_id, state, number, text = entry
    if kind == _TASK:
        return (TaskStateChanged, sequence, moment, task_id, TaskState(state), int(number), text)
    if kind == _JOB:
        return (JobStateChanged, sequence, moment, JobState(state), text)
    if kind == _PROGRESS:
        return (TaskProgress, sequence, moment, task_id, number, text)
    return (TaskOutput, sequence, moment, task_id, state, text)


def _contiguous_tail(records: list[tuple[Any, ...]], last: int) -> list[tuple[Any, ...]]:
    """The run of records ending at sequence `last` without a gap (the ring may hold stale
    slots from a longer tail of an earlier configuration)."""
    if not records or records[-1][1] != last:
        return []
    start = len(records) - 1
    while start > 0 and records[start - 1][1] == records[start][1] - 1:
        start -= 1
    return records[start:]


def _grouped(rows: Iterable[tuple[Any, ...]]) -> Iterable[tuple[int, list[tuple[Any, ...]]]]:
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
