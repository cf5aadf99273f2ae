"""Progress you can hold: a job's events folded into one value, kept current by a tracker.

    tracker = executor.track()                 # before or during execute_all()
    async for progress in tracker:             # each time it changed; ends with the job
        print(f"{progress.done}/{progress.total} {progress.fraction:.0%}")
    tracker.progress                           # or read it at any time

`ProgressFold` is the one place where events become progress: every tracker (embedded
executor, assistant, scheduler, the Python client's job handle) and the command line fold
through it. It starts from a `JobSnapshot` (or from nothing but the job's size) and takes
the job's events in order; a `Snapshot` event starts it over. A `ProgressTracker` owns a
fold, is fed by one source, and hands out `JobProgress` values: immutable, cheap to build
(counts and the running tasks, never every task).

Elapsed time and the estimate of what is left are computed for the moment the value was
made (`as_of`, from the tracker's clock), so a value read twice says the same thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from dukat.core.clock import Clock, SystemClock
from dukat.core.events import (
    Event,
    JobStateChanged,
    Snapshot,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
)
from dukat.core.results import JobSnapshot
from dukat.core.states import JobState, TaskState

__all__ = ["JobProgress", "ProgressFold", "ProgressTracker", "RunningTask"]

_TERMINAL = tuple(state for state in TaskState if state.is_terminal)
_RUNNING = TaskState.RUNNING
_PENDING = TaskState.PENDING


@dataclass(frozen=True, slots=True)
class RunningTask:
    """A task with an attempt in progress."""

    task_id: str
    attempt: int
    started_at: float | None
    """When this attempt started (wall-clock seconds since the epoch)."""
    fraction: float | None = None
    """The attempt's latest progress report, 0.0 to 1.0; None before one with a number."""
    message: str = ""
    """The message of its latest progress report."""
    output: str = ""
    """The latest line it wrote (stdout or stderr)."""


@dataclass(frozen=True, slots=True)
class JobProgress:
    """A job's progress at one moment: counts by state, the running tasks, time."""

    job_id: str
    state: JobState
    total: int
    """Tasks in the job."""
    counts: Mapping[TaskState, int]
    """How many tasks are in each state; every state is present."""
    running: tuple[RunningTask, ...]
    """The tasks running now, in the order they started."""
    started_at: float | None
    """When the job started running; None before."""
    finished_at: float | None
    """When it reached its terminal state; None while it runs."""
    as_of: float
    """The moment this value describes (wall-clock seconds since the epoch)."""
    last_sequence: int = 0
    """Sequence of the latest event folded in."""
    message: str = ""
    """The job's message (why it ended as it did)."""

    def count(self, state: TaskState) -> int:
        return self.counts.get(state, 0)

    @property
    def done(self) -> int:
        """Tasks in a terminal state: succeeded, failed, cancelled or skipped."""
        return sum(self.counts.get(state, 0) for state in _TERMINAL)

    @property
    def finished(self) -> bool:
        """The job has reached its terminal state."""
        return self.state.is_terminal

    @property
    def fraction(self) -> float:
        """How much of the job is done, 0.0 to 1.0: ended tasks, plus what the running ones
        report of themselves."""
        if self.finished:
            return 1.0
        if not self.total:
            return 0.0
        partial = sum(task.fraction or 0.0 for task in self.running)
        return min(1.0, (self.done + partial) / self.total)

    @property
    def elapsed(self) -> float:
        """Seconds since the job started, until it finished or until `as_of`."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else self.as_of
        return max(0.0, end - self.started_at)

    @property
    def remaining(self) -> float | None:
        """An estimate of the seconds left, at the pace so far; None before there is one."""
        if self.finished:
            return 0.0
        fraction, elapsed = self.fraction, self.elapsed
        if fraction <= 0.0 or elapsed <= 0.0:
            return None
        return elapsed * (1.0 - fraction) / fraction


class ProgressFold:
    """A job's events folded into its progress: `apply` events, read `progress(now)`.

    Keeps each task's state that an event or the starting snapshot told (so memory grows
    with the tasks that moved), the counts by state, and the running tasks. Events at or
    before the latest sequence folded are ignored, so a replay that overlaps is harmless.
    """

    __slots__ = (
        "_counts",
        "_running",
        "_states",
        "finished_at",
        "job_id",
        "last_sequence",
        "message",
        "started_at",
        "state",
        "total",
    )

    def __init__(self, job_id: str = "", total: int = 0) -> None:
        """A job of `total` tasks that has not started: every task PENDING, no event yet."""
        self.job_id = job_id
        self.total = total
        self.state = JobState.PENDING
        self.message = ""
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.last_sequence = 0
        self._states: dict[str, TaskState] = {}
        self._counts = dict.fromkeys(TaskState, 0)
        self._counts[_PENDING] = total
        # task id -> [attempt, started_at, fraction, message, output]
        self._running: dict[str, list[Any]] = {}

    @classmethod
    def of(cls, snapshot: JobSnapshot) -> ProgressFold:
        """A fold that starts where `snapshot` stands."""
        fold = cls(snapshot.job_id)
        fold._restart(snapshot)
        return fold

    def _restart(self, snapshot: JobSnapshot) -> None:
        """Start over from `snapshot`. A snapshot without its tasks (a listing) gives the
        counts only: a later event then takes a task it never saw for a PENDING one."""
        self.job_id = snapshot.job_id
        self.state = snapshot.state
        self.message = snapshot.message
        self.finished_at = snapshot.finished_at
        self.last_sequence = snapshot.last_sequence
        if self.started_at is None and snapshot.state is not JobState.PENDING:
            self.started_at = snapshot.created_at
        self._counts = dict.fromkeys(TaskState, 0)
        self._counts.update(snapshot.task_counts)
        self.total = sum(self._counts.values())
        self._states = {task.id: task.state for task in snapshot.tasks}
        self._running = {
            task.id: [task.attempts, task.started_at, task.progress, task.progress_message, ""]
            for task in snapshot.tasks
            if task.state is _RUNNING
        }

    def apply(self, events: Iterable[Event]) -> None:
        """Fold `events` of this job in, in sequence order."""
        for event in events:
            if event.sequence <= self.last_sequence and (
                type(event) is not Snapshot or event.sequence < self.last_sequence
            ):
                continue  # folded in already (a snapshot as new as the fold is taken anew)
            kind = type(event)
            if kind is TaskStateChanged:
                self._task_state(event)  # type: ignore[arg-type]
            elif kind is TaskProgress:
                running = self._running.get(event.task_id)  # type: ignore[attr-defined]
                if running is not None:
                    running[2] = event.fraction  # type: ignore[attr-defined]
                    running[3] = event.message  # type: ignore[attr-defined]
            elif kind is TaskOutput:
                running = self._running.get(event.task_id)  # type: ignore[attr-defined]
                if running is not None:
                    running[4] = event.text  # type: ignore[attr-defined]
            elif kind is JobStateChanged:
                self._job_state(event)  # type: ignore[arg-type]
            elif kind is Snapshot:
                self._restart(event.job)  # type: ignore[attr-defined]
            self.last_sequence = max(self.last_sequence, event.sequence)

    def _task_state(self, event: TaskStateChanged) -> None:
        task_id, state = event.task_id, event.state
        before = self._states.get(task_id, _PENDING)
        self._states[task_id] = state
        counts = self._counts
        counts[before] -= 1
        counts[state] += 1
        if state is _RUNNING:
            self._running[task_id] = [event.attempt, event.time, None, "", ""]
        elif before is _RUNNING:
            self._running.pop(task_id, None)

    def _job_state(self, event: JobStateChanged) -> None:
        self.state = event.state
        self.message = event.message
        if self.started_at is None:
            self.started_at = event.time
        if event.state.is_terminal:
            self.finished_at = event.time
            self._running.clear()  # nothing runs in a finished job

    def progress(self, as_of: float) -> JobProgress:
        """The progress now; `as_of`: the moment it describes, for elapsed and remaining."""
        return JobProgress(
            job_id=self.job_id,
            state=self.state,
            total=self.total,
            counts=MappingProxyType(dict(self._counts)),
            running=tuple(
                RunningTask(task_id, *fields) for task_id, fields in self._running.items()
            ),
            started_at=self.started_at,
            finished_at=self.finished_at,
            as_of=as_of,
            last_sequence=self.last_sequence,
            message=self.message,
        )


EventsListener = Callable[[Sequence[Event]], object]


class Followable(Protocol):
    """What `ProgressTracker.follow` needs of an embedded engine (a `Scheduler`)."""

    clock: Clock

    def get_job(self, job_id: str) -> JobSnapshot: ...

    def add_listener(self, listener: Callable[[Event], None]) -> None: ...

    def remove_listener(self, listener: Callable[[Event], None]) -> None: ...


class ProgressTracker:
    """Keeps one job's progress current; `tracker.progress` at any time, or iterate.

    Made by a source (`ParallelTaskExecutor.track()`, `AsyncAssistant.track()`,
    `Scheduler.track(job_id)`, `dukat.client.JobHandle.track()`), which starts it on a
    job (`start`) and feeds it that job's events (`feed`). `async for progress in tracker`
    yields the progress each time it changed (the latest only, when several changes came
    at once) from the moment the job started, and ends after the job's terminal state.
    `close()` (or leaving `async with tracker:`) stops following the job.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        """`clock`: its `wall()` dates `JobProgress.as_of` (the scheduler's, once it
        follows one; the system's before)."""
        self._clock: Clock = clock or SystemClock()
        self._fold = ProgressFold()
        self._version = 0  # bumped by every change; 0: not started
        self._waiters: list[asyncio.Future[None]] = []
        self._listeners: list[EventsListener] = []
        self._detach: Callable[[], object] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._closed = False

    # -- reading ----------------------------------------------------------------------------

    @property
    def progress(self) -> JobProgress:
        """The job's progress now (an empty, PENDING one before the job started)."""
        return self._fold.progress(self._clock.wall())

    @property
    def started(self) -> bool:
        return self._version > 0

    @property
    def job_id(self) -> str:
        """The id of the job followed; empty until it started."""
        return self._fold.job_id

    @property
    def finished(self) -> bool:
        """The job followed has reached its terminal state."""
        return self._fold.state.is_terminal

    def add_listener(self, listener: EventsListener) -> None:
        """Call `listener(events)` with each batch of events fed, once folded in (a display
        that shows more than the progress: output lines, finished tasks)."""
        self._listeners.append(listener)

    async def __aiter__(self) -> AsyncIterator[JobProgress]:
        seen = 0
        while True:
            if self._version != seen:
                seen = self._version
                yield self.progress
            elif self._error is not None:
                raise self._error
            elif self._closed or (self.finished and self._source_done):
                return
            else:
                await self._changed()

    @property
    def _source_done(self) -> bool:
        """Nothing more will be fed: no stream, or its task has ended."""
        return self._pump is None or self._pump.done()

    async def wait(self) -> JobProgress:
        """Wait for the job to finish (or the tracker to close); its progress then."""
        async for _ in self:
            pass
        return self.progress

    async def _changed(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        finally:
            if future in self._waiters:
                self._waiters.remove(future)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    # -- feeding (the sources) --------------------------------------------------------------

    def start(self, snapshot: JobSnapshot, *, replay: bool = False) -> None:
        """Begin with the job as `snapshot` shows it; its events after that come by `feed`.

        `replay`: begin before its first event instead (its size taken from `snapshot`), for
        a source that feeds every event from the first."""
        if replay:
            self._fold = ProgressFold(snapshot.job_id, snapshot.total)
        else:
            self._fold = ProgressFold.of(snapshot)
        self._version += 1
        self._wake()

    def feed(self, events: Sequence[Event]) -> None:
        """Fold the job's next events in, tell the listeners, wake the readers."""
        if not self.started:
            return
        self._fold.apply(events)
        self._version += 1
        for listener in self._listeners:
            listener(events)
        if self.finished and self._detach is not None:
            self._stop_source()  # a scheduler's listener: nothing more will come
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The source broke (a daemon gone for good): readers get `error`."""
        self._error = error
        self._stop_source()
        self._wake()

    def follow(self, scheduler: Followable, job_id: str) -> None:
        """Follow `job_id` of an embedded `scheduler`, event by event, as it runs.

        A listener, not a watcher: it sees every event as it happens, so the tracker is
        current whenever anybody reads it, without a task of its own.
        """
        if self._closed:
            return
        self._clock = scheduler.clock
        self.start(scheduler.get_job(job_id))
        if self.finished:
            return

        def listener(event: Event) -> None:
            if event.job_id == job_id:
                self.feed((event,))

        scheduler.add_listener(listener)
        self._detach = lambda: scheduler.remove_listener(listener)

    def follow_stream(
        self,
        snapshot: Callable[[], Awaitable[JobSnapshot]],
        events_after: Callable[[int], AsyncIterator[Event]],
        *,
        replay: bool = False,
    ) -> None:
        """Follow a job through a stream of its events, in a task of the tracker's own:
        `snapshot()` gives the job now, `events_after(sequence)` its events after that
        (a daemon's Watch, through the client). `close()` ends the task.

        `replay`: fold the job's events from its first one (or from the snapshot its source
        gives for those it no longer holds), and give them all to the listeners: a display
        then shows the job's history, and the running tasks' latest output lines, which a
        snapshot does not have."""

        if self._closed:
            return

        async def pump() -> None:
            self.start(await snapshot(), replay=replay)
            if self.finished:
                return
            # The stream ends after the job's terminal event.
            async for event in events_after(self._fold.last_sequence):
                self.feed((event,))

        self._pump = asyncio.get_running_loop().create_task(pump())
        self._pump.add_done_callback(self._pump_ended)

    def _pump_ended(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.fail(error)
        elif not self.finished:  # the stream ended before the job did
            self.close()
        else:
            self._wake()

    def _stop_source(self) -> None:
        detach, self._detach = self._detach, None
        if detach is not None:
            detach()
        pump = self._pump
        if pump is not None and not pump.done() and pump is not asyncio.current_task():
            pump.cancel()

    def close(self) -> None:
        """Stop following the job; readers end with the progress as it stands."""
        self._closed = True
        self._stop_source()
        self._wake()

    async def __aenter__(self) -> ProgressTracker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        progress = self._fold
        if not self.started:
            return "<ProgressTracker not started>"
        done = sum(progress._counts[state] for state in _TERMINAL)
        return (
            f"<ProgressTracker {progress.job_id} {progress.state.name} "
            f"{done}/{progress.total}{' closed' if self._closed else ''}>"
        )
