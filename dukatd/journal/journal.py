"""`Journal`: the journal as the daemon's loop uses it.

It opens the file (`schema`), reads it back once (`loader`), then queues what is to be
written for the writer thread (`writer`) and tells who waits when it is on disk: `sync`
and `settled` return once everything queued before them is committed; the scheduler's
held events are published (`publish`) and the listeners told as each commit lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dukat.core.events import Event, TaskStateChanged, event_of
from dukat.core.results import TaskStatus
from dukat.core.states import TaskState
from dukat.errors import JournalError, JournalWriteError
from dukatd.journal import loader, schema
from dukatd.journal.loader import RecoveredJob
from dukatd.journal.operations import (
    Accept,
    Cancel,
    ConfigureBreaker,
    Drop,
    Operation,
    Write,
)
from dukatd.journal.writer import Committed, CommitTimes, Writer

__all__ = ["ACCEPT_SHARE", "Journal"]

ACCEPT_SHARE = 0.75
"""Of `max_bytes`, what accepted jobs may fill; the rest is for the progress of those jobs."""

_RETRYING, _FAILED, _SUCCEEDED = TaskState.RETRYING, TaskState.FAILED, TaskState.SUCCEEDED


class Journal:
    """The daemon's journal; see the package docstring. `Journal.open` makes one."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        *,
        encode_result: Callable[[Any], Any],
        decode_result: Callable[[Any], Any],
        event_log_length: int,
        commit_delay: float,
        accept_pages: int | None = None,
    ) -> None:
        """`accept_pages`: pages in use beyond which no new job is accepted (None: no limit)."""
        self.path = path
        self._db = connection
        self._decode_result = decode_result
        self.event_log_length = event_log_length
        self._writer = Writer(
            connection,
            path,
            encode_result=encode_result,
            event_log_length=event_log_length,
            commit_delay=commit_delay,
            accept_pages=accept_pages,
        )
        self._queued = 0  # operations queued so far (the loop's count)
        self._committed = 0  # of those, committed (the loop's copy, set by `_on_commit`)
        # (target, future, patient): a patient waiter waits through failed commits.
        self._waiters: list[tuple[int, asyncio.Future[None], bool]] = []
        self._frozen = False
        self._closing = False
        self._refused: dict[str, JournalWriteError] = {}  # job id -> why it was left out
        self._publish: Callable[[str, int], None] | None = None
        self._result_of: Callable[[str, str], Any] | None = None
        self._interruptions_of: Callable[[str, str], int] | None = None
        self._event_listeners: list[Callable[[Event], None]] = []

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
        event_log_length: int = 10_000,
        commit_delay: float = 0.01,
    ) -> Journal:
        """Open (or create) the journal at `path`, checked and upgraded to this schema.

        Raises `JournalError` when it cannot be used: not a database, corrupt, written by a
        newer dukatd, or not readable.
        """
        if sync not in ("full", "normal"):
            raise ValueError(f"sync must be 'full' or 'normal', not {sync!r}")
        path = Path(path)
        db = schema.open_database(path, sync=sync, max_bytes=max_bytes)
        accept_pages = None
        if max_bytes:
            limit = db.execute("PRAGMA max_page_count").fetchone()[0]
            accept_pages = int(limit * ACCEPT_SHARE)
        return cls(
            db,
            path,
            encode_result=encode_result,
            decode_result=decode_result,
            event_log_length=event_log_length,
            commit_delay=commit_delay,
            accept_pages=accept_pages,
        )

    def load(self) -> tuple[list[RecoveredJob], dict[str, dict[str, Any]]]:
        """Every job kept (oldest first) and the breakers configured over the API.

        Call once, before `start`. Raises `JournalError` if what is read is corrupt.
        """
        try:
            loaded = loader.load(
                self._db, decode_result=self._decode_result, event_log_length=self.event_log_length
            )
        except sqlite3.DatabaseError as error:
            raise JournalError(schema.corrupt(self.path, str(error))) from None
        except (ValueError, TypeError, LookupError) as error:  # FormatError is a ValueError
            raise JournalError(schema.corrupt(self.path, f"unreadable record: {error}")) from None
        self._writer.track(loaded.keys, loaded.trim_at)
        return loaded.jobs, loaded.breakers

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
        self._publish = publish
        self._result_of = result_of
        self._interruptions_of = interruptions_of
        self._writer.start(self._on_commit, self._on_failure)

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
        self._put(Write(job_id, record, kept))

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
        self._put(Accept(job_id, request_id or None, spec, created_at, carried))

    def check_accepted(self, job_id: str) -> None:
        """After `sync`: raise `JournalWriteError` if the job was left out for want of room
        (see `ACCEPT_SHARE`); it is not in the journal, and must not start."""
        refused = self._refused.pop(job_id, None)
        if refused is not None:
            raise refused

    def cancel(self, job_id: str, task_ids: Sequence[str], reason: str = "") -> None:
        """Queue a cancel request (empty `task_ids`: the whole job) and its reason."""
        # The task ids as a list, as ever; with a reason, an object (`loader.cancel_request`).
        kept: Any = {"task_ids": list(task_ids), "reason": reason} if reason else list(task_ids)
        self._put(Cancel(job_id, json.dumps(kept)))

    def drop(self, job_id: str) -> None:
        """Queue the removal of a job: a finished one the scheduler let go
        (`add_drop_listener`), or one accepted whose `sync` failed (it never started)."""
        self._put(Drop(job_id))

    def configure_breaker(self, name: str, settings: dict[str, Any]) -> None:
        """Queue a breaker's settings, as configured over the API."""
        self._put(ConfigureBreaker(name, json.dumps(settings, sort_keys=True)))

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
        await self._wait(target, patient=False)

    async def settled(self) -> None:
        """Return once everything queued so far is committed, however long that takes.

        For what must not go ahead before it is on disk but has nothing to answer either
        (a task about to start): while commits fail (a full disk), it waits, and the task
        waits with it, instead of failing.
        """
        target = self._queued
        if self._committed >= target:
            return
        await self._wait(target, patient=True)

    async def _wait(self, target: int, *, patient: bool) -> None:
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future, patient))
        self._writer.hurry()
        await future

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` for each event of every job once it is committed."""
        self._event_listeners.append(listener)
        self._writer.report_events = True

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        self._event_listeners.remove(listener)
        self._writer.report_events = bool(self._event_listeners)

    def freeze(self) -> None:
        """Record nothing more: what happens from here is the shutdown's doing (tasks that
        the drain cancels must run again after the restart, not end CANCELLED)."""
        self._frozen = True

    @property
    def frozen(self) -> bool:
        """Recording nothing more: a Submit or Cancel now would not survive a restart."""
        return self._frozen

    @property
    def closed(self) -> bool:
        """`close` was called: nothing more is written."""
        return self._closing

    async def close(self) -> None:
        """Freeze, commit what is queued, stop the writer, checkpoint and close the file.
        A journal never started (only opened, or loaded) is closed as well."""
        self.freeze()
        self._closing = True
        await self._writer.stop()
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    def _put(self, operation: Operation) -> None:
        if self._frozen and operation.kind != ConfigureBreaker.kind:
            return
        writer = self._writer
        writer.queue.append(operation)
        self._queued += 1
        if not writer.signalled:
            writer.wake()

    # -- back on the loop -------------------------------------------------------------------

    def _on_commit(self, count: int, committed: Committed, events: Sequence[Write]) -> None:
        for job_id in committed.refused:
            self._refused[job_id] = JournalWriteError(
                f"the journal {str(self.path)!r} is full: new jobs may take "
                f"{ACCEPT_SHARE:.0%} of its size limit, the rest is kept for the jobs accepted "
                "before (raise --journal-max-bytes, or let finished jobs go sooner)",
                full=True,
            )
        self._committed += count
        publish = self._publish
        for job_id, sequence in committed.marks.items():
            publish(job_id, sequence)  # type: ignore[misc]
        listeners = self._event_listeners
        if listeners:
            for write in events:
                event = event_of(write.record, write.job_id)
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

    # -- what it has done -------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Operations queued and not committed yet."""
        return self._queued - self._committed

    @property
    def queued(self) -> int:
        """Operations queued since the journal was opened (once frozen, breakers only)."""
        return self._queued

    @property
    def commits(self) -> int:
        """Transactions written (group commits)."""
        return self._writer.commits

    @property
    def write_errors(self) -> int:
        """Commits that failed (each retried)."""
        return self._writer.write_errors

    @property
    def commit_seconds(self) -> CommitTimes:
        """A histogram of commit durations."""
        return self._writer.commit_seconds

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
