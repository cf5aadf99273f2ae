"""The journal's writer: one thread that commits what the loop queued, a group at a time.

The loop appends operations (`operations`) to `queue` (no lock) and wakes the thread; the
thread takes what has gathered and writes it as one transaction (`commit`), then tells the
loop (`on_commit`, `on_failure`, called in the loop). While nobody waits for a commit, a
group gathers for up to `commit_delay`; `hurry` commits at once. A commit that fails is
retried with backoff, without the jobs accepted in it (their Submits fail instead).

Within a commit each operation is dispatched by its kind to a short method; the events and
task changes of a job go as one row each per commit (`_flush`), whatever their number: a
row costs SQLite (and the loop, whose GIL each row's step gives up and takes back) far
more than packing does. The writer also keeps the file bounded: new jobs may fill only
`accept_pages` (the quota), each job keeps its newest `event_log_length` events, and freed pages
go back to the file system a chunk at a time (incremental vacuum).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dukat.core.events import JobStateChanged, TaskStateChanged
from dukat.errors import JournalWriteError
from dukatd.journal import codec
from dukatd.journal.operations import (
    Accept,
    Cancel,
    ConfigureBreaker,
    Drop,
    Operation,
    Write,
)

__all__ = ["CommitTimes", "Committed", "Writer"]

_log = logging.getLogger("dukatd.journal")

_VACUUM_CHUNK_PAGES = 2048
_PENDING = "pending"


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


@dataclass(slots=True)
class Committed:
    """What a commit wrote: the last sequence per job id (each to be published), and the
    jobs left out of it for want of room."""

    marks: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _JobWrites:
    """A job's writes of one commit: its event records (the engine's) and task changes
    (plain), in order, its last sequence, and its row's new state, message and end if its
    state changed."""

    job_id: str
    last: int
    events: list[tuple[Any, ...]] = field(default_factory=list)
    changes: list[tuple[Any, ...]] = field(default_factory=list)
    state: str | None = None
    message: str = ""
    finished: float | None = None


@dataclass(slots=True)
class _Batch:
    """One transaction's work so far."""

    jobs: dict[int, _JobWrites] = field(default_factory=dict)  # by row id
    committed: Committed = field(default_factory=Committed)
    added: list[str] = field(default_factory=list)  # jobs accepted, to forget if it fails
    dropped: list[tuple[str, int]] = field(default_factory=list)  # to remember if it fails


class Writer:
    """The writer thread of one journal and what it commits; see the module docstring."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        *,
        encode_result: Callable[[Any], Any],
        event_log_length: int,
        commit_delay: float,
        accept_pages: int | None = None,
    ) -> None:
        """`accept_pages`: pages in use beyond which no new job is accepted (None: no
        limit)."""
        self.db = db
        self.path = path
        self.encode_result = encode_result
        self.event_log_length = event_log_length
        self.commit_delay = commit_delay
        self.accept_pages = accept_pages
        self._keys: dict[str, int] = {}  # job id -> its row id: the jobs in the file
        self._trim_at: dict[int, int] = {}  # row id -> the sequence to trim its events at
        self.queue: deque[Operation] = deque()  # appended to by the loop, taken by the thread
        self.report_events = False  # give on_commit the events committed (for listeners)
        self.signalled = False  # woken since the last take: appending needs no wake()
        self._wake = threading.Event()
        self._hurry = threading.Event()  # someone awaits what is queued: commit at once
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_commit: Callable[[int, Committed, Sequence[Write]], None] | None = None
        self._on_failure: Callable[[JournalWriteError, int], None] | None = None
        self._handlers: dict[str, Callable[[Any, _Batch], None]] = {
            Write.kind: self._write,
            Accept.kind: self._accept,
            Cancel.kind: self._cancel,
            Drop.kind: self._drop,
            ConfigureBreaker.kind: self._configure_breaker,
        }
        # Written by the writer thread only, read at scrape time (dukatd.metrics_journal).
        self.commits = 0
        self.write_errors = 0
        self.commit_seconds = CommitTimes()

    # -- the loop's side ------------------------------------------------------------------

    def track(self, keys: dict[str, int], trim_at: dict[int, int]) -> None:
        """The jobs already in the file (`loader.Loaded`); before `start`."""
        self._keys.update(keys)
        self._trim_at.update(trim_at)

    def start(
        self,
        on_commit: Callable[[int, Committed, Sequence[Write]], None],
        on_failure: Callable[[JournalWriteError, int], None],
    ) -> None:
        """Start the thread; call in the running loop. `on_commit(count, committed, events)`
        and `on_failure(failure, count)` are called in the loop, `count` being the
        operations taken since the last commit that worked."""
        self._loop = asyncio.get_running_loop()
        self._on_commit, self._on_failure = on_commit, on_failure
        self._thread = threading.Thread(target=self._write_forever, name="dukatd-journal")
        self._thread.start()

    def wake(self) -> None:
        """Something was appended to `queue` (from the loop, which appends to it directly:
        a call less per event) while `signalled` was False."""
        self.signalled = True
        self._wake.set()

    def hurry(self) -> None:
        """Commit what is queued without waiting for more: someone waits for it."""
        self._hurry.set()

    async def stop(self) -> None:
        """Commit what is queued (once, whether it works or not) and end the thread."""
        self._closing = True
        thread = self._thread
        if thread is not None:
            self._wake.set()
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
            self._thread = None

    # -- the thread -----------------------------------------------------------------------

    def _write_forever(self) -> None:
        retained: list[Operation] = []  # of a failed commit, tried again
        uncounted = 0  # operations taken since the last commit that worked
        backoff = 0.05
        while True:
            self._wake.wait()
            if not self._closing:  # only events wait: let a group gather, unless one hurries
                self._hurry.wait(self.commit_delay)
            self._wake.clear()
            self._hurry.clear()  # before taking: a sync() after the take hurries the next
            self.signalled = False  # before taking: what comes after wakes us again
            queue = self.queue
            taken = [queue.popleft() for _ in range(len(queue))]
            uncounted += len(taken)
            operations = retained + taken
            if not operations:
                if uncounted:  # only refused jobs since the last commit: settled too
                    self._call_loop(self._on_commit, uncounted, Committed(), ())
                    uncounted = 0
                if self._closing:
                    return
                continue
            began = time.perf_counter()
            try:
                committed = self.commit(operations)
            except (sqlite3.Error, MemoryError) as error:  # SQLite's "out of memory" too
                self.write_errors += 1
                failure = _write_error(self.path, error)
                _log.error("%s; retrying in %.2gs", failure, backoff)
                # Jobs in it were never started: their Submits fail (and are not tried
                # again); the rest waits for a commit that works.
                retained = [op for op in operations if op.kind != Accept.kind]
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
            events = (
                [op for op in operations if op.kind == Write.kind] if self.report_events else ()
            )
            self._call_loop(self._on_commit, uncounted, committed, events)
            uncounted = 0
            if self._closing and not self.queue:
                return

    def _call_loop(self, callback: Callable[..., None] | None, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(callback, *args)  # type: ignore[union-attr,arg-type]

    # -- one transaction ------------------------------------------------------------------

    def commit(self, operations: Sequence[Operation]) -> Committed:
        """Write `operations` in one transaction, each by its kind; on an error, roll back
        and raise it (the writer's memory of which jobs are in the file goes back too)."""
        db = self.db
        batch = _Batch()
        handlers = self._handlers
        db.execute("BEGIN IMMEDIATE")
        try:
            for operation in operations:
                handlers[operation.kind](operation, batch)
            self._flush(batch)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            for job_id in batch.added:  # not in the file after all
                self._keys.pop(job_id, None)
            self._keys.update(batch.dropped)  # still in the file
            raise
        if batch.dropped:
            self._vacuum_some()
        return batch.committed

    def _write(self, operation: Write, batch: _Batch) -> None:
        """The hottest path of the writer, which holds the GIL while in Python: an event."""
        key = self._keys.get(operation.job_id)
        if key is None:
            return  # dropped already, or accepted by a failed commit
        record = operation.record
        writes = batch.jobs.get(key)
        if writes is None:
            writes = batch.jobs[key] = _JobWrites(operation.job_id, record[1])
        writes.last = record[1]
        writes.events.append(record)  # encoded at `_flush`, all at once
        event_class = record[0]
        if event_class is TaskStateChanged:
            change = codec.task_change(record, operation.kept, self.encode_result)
            if change is not None:
                writes.changes.append(change)
        elif event_class is JobStateChanged:
            state = record[3]
            writes.state, writes.message = state._value_, record[4]
            if state.is_terminal:
                writes.finished = record[2]

    def _accept(self, operation: Accept, batch: _Batch) -> None:
        """A new job's row, its spec and the tasks a rerun carried over; left out if the
        quota has no room for it (`accept_pages`)."""
        db, quota = self.db, self.accept_pages
        if quota is not None:
            db.execute("SAVEPOINT accept")
        cursor = db.execute(
            "INSERT INTO jobs (job_id, request_id, created_at, state) VALUES (?, ?, ?, ?)",
            (operation.job_id, operation.request_id, operation.created_at, _PENDING),
        )
        key: int = cursor.lastrowid  # type: ignore[assignment]
        db.execute("INSERT INTO job_specs VALUES (?, ?)", (key, operation.spec))
        if operation.carried:
            encode = self.encode_result
            changes = [codec.carried_change(task, encode) for task in operation.carried]
            db.execute("INSERT INTO task_changes VALUES (?, ?)", (key, codec.encode(changes)))
        if quota is not None:
            if _pages_in_use(db) > quota:
                db.execute("ROLLBACK TO accept")
                db.execute("RELEASE accept")
                batch.committed.refused.append(operation.job_id)
                return
            db.execute("RELEASE accept")
        self._keys[operation.job_id] = key
        batch.added.append(operation.job_id)

    def _cancel(self, operation: Cancel, batch: _Batch) -> None:
        key = self._keys.get(operation.job_id)
        if key is not None:
            self.db.execute("INSERT INTO cancels VALUES (?, ?)", (key, operation.kept))

    def _drop(self, operation: Drop, batch: _Batch) -> None:
        key = self._keys.pop(operation.job_id, None)
        if key is None:
            return
        batch.dropped.append((operation.job_id, key))
        self._flush(batch)  # the batch's writes for it go first, then all of it
        self._trim_at.pop(key, None)
        for table in ("event_chunks", "task_changes", "cancels", "job_specs"):
            self.db.execute(f"DELETE FROM {table} WHERE job = ?", (key,))
        self.db.execute("DELETE FROM jobs WHERE id = ?", (key,))

    def _configure_breaker(self, operation: ConfigureBreaker, batch: _Batch) -> None:
        self.db.execute(
            "INSERT INTO breakers VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET settings = excluded.settings",
            (operation.name, operation.settings),
        )

    def _flush(self, batch: _Batch) -> None:
        """Write the batch's gathered events and task changes, a row of each per job, and
        the jobs' new states; note each job's last sequence, to publish once committed."""
        jobs = batch.jobs
        if not jobs:
            return
        batch.jobs = {}
        db, encode = self.db, codec.encode
        events = [
            (k, w.events[0][1], w.last, codec.encode_events(w.events)) for k, w in jobs.items()
        ]
        db.executemany("INSERT INTO event_chunks VALUES (?, ?, ?, ?)", events)
        changes = [(k, encode(w.changes)) for k, w in jobs.items() if w.changes]
        if changes:
            db.executemany("INSERT INTO task_changes VALUES (?, ?)", changes)
        # A job's row changes with its state only: its last sequence is its newest chunk's
        # (`loader`), and a row less per commit is a page less in the WAL.
        changed = [
            (w.last, w.state, w.message, w.finished, k)
            for k, w in jobs.items()
            if w.state is not None
        ]
        if changed:
            db.executemany(
                "UPDATE jobs SET last_sequence = ?, state = ?, message = ?, "
                "finished_at = coalesce(?, finished_at) WHERE id = ?",
                changed,
            )
        marks = batch.committed.marks
        for key, writes in jobs.items():
            self._trim(key, writes.last)
            marks[writes.job_id] = writes.last

    def _trim(self, key: int, last: int) -> None:
        """Each job keeps its newest `event_log_length` events, and at most twice that: old chunks
        go once the tail has moved on by as much again."""
        tail = self.event_log_length
        due = self._trim_at.setdefault(key, last + tail)
        if last >= due:
            self.db.execute(
                "DELETE FROM event_chunks WHERE job = ? AND last_sequence <= ?",
                (key, last - tail),
            )
            self._trim_at[key] = last + tail

    def _vacuum_some(self) -> None:
        """Give freed pages back to the file system once a good share of the file is free."""
        db = self.db
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        if free >= _VACUUM_CHUNK_PAGES and free * 4 >= pages:
            db.execute(f"PRAGMA incremental_vacuum({free})")


def _pages_in_use(db: sqlite3.Connection) -> int:
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    return pages - db.execute("PRAGMA freelist_count").fetchone()[0]


def _write_error(path: Path, error: BaseException) -> JournalWriteError:
    why = str(error) or "out of memory"  # a MemoryError says nothing
    return JournalWriteError(
        f"the journal {str(path)!r} cannot be written: {why}",
        full=isinstance(error, MemoryError)
        or getattr(error, "sqlite_errorname", "") == "SQLITE_FULL",
    )
