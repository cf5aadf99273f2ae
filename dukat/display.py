"""A job's progress on a terminal: a live view (rich) of a tracker, or plain lines elsewhere.

    from dukat.display import show_progress

    async with show_progress(executor):           # or an assistant, a JobHandle, a tracker
        results = await executor.execute_all()

On a terminal: one bar for the job, a line per running task (its progress and latest output
line), and each finished task collapsing to one line above them (✓ ✗ ⊘, its duration, and for
a failure its error and last output lines). Elsewhere (a pipe, a CI log): one plain line per
thing that happened. The command line `dukat run` and `dukat watch` show jobs with this too.

rich is an optional dependency (`pip install 'dukat[cli]'`), imported only when a view is made;
the engine never imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Protocol

from dukat.core.events import (
    INTERRUPTED,
    Event,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    TaskWaiting,
)
from dukat.core.progress import JobProgress, ProgressTracker
from dukat.core.states import TaskState

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["JobView", "Trackable", "format_duration", "show_progress", "summary"]

MARKS = {
    TaskState.SUCCEEDED: ("✓", "green"),
    TaskState.FAILED: ("✗", "red"),
    TaskState.CANCELLED: ("⊘", "yellow"),
    TaskState.SKIPPED: ("⊘", "dim"),
}
TAIL_LINES = 5
"""Output lines shown under a failed task."""
REFRESH_SECONDS = 0.1


class Trackable(Protocol):
    """What has a job to track: an executor, an assistant, a client's JobHandle."""

    def track(self) -> ProgressTracker: ...


@contextlib.asynccontextmanager
async def show_progress(
    source: Trackable | ProgressTracker, *, file: IO[str] | None = None
) -> AsyncIterator[ProgressTracker]:
    """Show the progress of `source`'s job while the block runs; yields its tracker.

    Leaving the block normally waits for the job's last events to be shown (the job has
    ended: `execute_all()` or `handle.wait()` returned); an exception stops the view at once.
    `file`: where to write (standard error by default, so that standard output stays yours).
    """
    tracker = source if isinstance(source, ProgressTracker) else source.track()
    view = JobView(tracker, file=file if file is not None else sys.stderr)
    shown = asyncio.create_task(view.show())
    try:
        yield tracker
        if tracker.started:
            await tracker.wait()
    finally:
        tracker.close()
        await shown


class JobView:
    """Shows one tracker's job until it ends or the tracker closes; `await view.show()`.

    Remembers beyond the progress only what it shows: when each running task started and
    its last few output lines (dropped when the task ends), and the finished lines not yet
    printed.
    """

    def __init__(
        self, tracker: ProgressTracker, *, file: IO[str] | None = None, live: bool | None = None
    ) -> None:
        """`live`: the live view (None: when `file` is a terminal)."""
        from rich.console import Console

        self.tracker = tracker
        # soft_wrap: a line is one line, however long (a log, a terminal, wraps it itself).
        self.console: Console = Console(file=file or sys.stderr, highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal if live is None else live
        self._started: dict[str, float] = {}
        self._tails: dict[str, deque[str]] = {}
        self._ended: list[RenderableType] = []  # finished lines waiting to be printed
        self._waits_told: set[str] = set()  # each wait once, not once per task
        self._wake = asyncio.Event()
        tracker.add_listener(self._on_events)

    async def show(self) -> JobProgress:
        """Show the job until it ends (or the tracker closes); its progress then."""
        if self.live:
            await self._show_live()
        else:
            await self.tracker.wait()
        progress = self.tracker.progress
        if self.tracker.started:
            self.console.print(summary(progress), highlight=False)
        return progress

    async def _show_live(self) -> None:
        from rich.live import Live

        reader = asyncio.create_task(self.tracker.wait())
        reader.add_done_callback(lambda _: self._wake.set())
        with Live(console=self.console, auto_refresh=False, transient=True) as live:
            while True:
                live.update(self._render())
                for line in self._take_ended():  # above the live part, which is redrawn
                    live.console.print(line)
                live.refresh()
                if reader.done():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), REFRESH_SECONDS)
                self._wake.clear()
        for line in self._take_ended():
            self.console.print(line)
        reader.result()

    def _take_ended(self) -> list[RenderableType]:
        ended, self._ended = self._ended, []
        return ended

    # -- what happened ----------------------------------------------------------------------

    def _on_events(self, events: Sequence[Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is TaskStateChanged:
                self._on_state(event)  # type: ignore[arg-type]
            elif kind is TaskOutput:
                task_id = event.task_id  # type: ignore[attr-defined]
                if self.live:  # a failure's tail; plain lines show each line as it comes
                    self._tails.setdefault(task_id, deque(maxlen=TAIL_LINES)).append(event.text)  # type: ignore[attr-defined]
                else:
                    self._plain(f"{task_id} | {event.text}")  # type: ignore[attr-defined]
            elif kind is TaskProgress and not self.live:
                self._plain(f"{event.task_id}: {_progress_text(event.fraction, event.message)}")  # type: ignore[attr-defined]
            elif kind is TaskWaiting:
                self._on_waiting(event)  # type: ignore[arg-type]
        if self.live:
            self._wake.set()

    def _on_state(self, event: TaskStateChanged) -> None:
        task_id, state = event.task_id, event.state
        if state is TaskState.RUNNING:
            self._started.setdefault(task_id, event.time)
            if not self.live:
                attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
                self._plain(f"{task_id}: started{attempt}")
        elif state is TaskState.RETRYING and not self.live:
            if event.message.startswith(INTERRUPTED):  # not a failure: say it as the engine does
                self._plain(f"{task_id}: attempt {event.attempt} {event.message}")
            else:
                self._plain(f"{task_id}: attempt {event.attempt} failed, retrying: {event.message}")
        elif state.is_terminal:
            started = self._started.pop(task_id, None)
            tail = self._tails.pop(task_id, ())
            duration = None if started is None else event.time - started
            line = _ended_line(task_id, state, duration, event.message, tail)
            if self.live:
                self._ended.append(line)
            else:
                self.console.print(line)

    def _on_waiting(self, event: TaskWaiting) -> None:
        if event.waiting_for in self._waits_told:
            return
        self._waits_told.add(event.waiting_for)
        line = f"{event.task_id}: waiting for {event.waiting_for}"
        if self.live:
            from rich.text import Text

            self._ended.append(Text(f"⧗ {line}", style="yellow"))
        else:
            self._plain(line)

    def _plain(self, text: str) -> None:
        self.console.print(text, markup=False)

    # -- the live part ----------------------------------------------------------------------

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        progress = self.tracker.progress
        table = Table.grid(padding=(0, 1))
        for _ in range(4):
            table.add_column(no_wrap=True)
        for task in progress.running:
            fraction = task.fraction
            percent = "" if fraction is None else f"{fraction:4.0%}"
            note = " · ".join(part for part in (task.message, task.output) if part)
            table.add_row(
                Text("⠿", style="cyan"),
                Text(task.task_id, style="bold"),
                Text(percent),
                Text(note, style="dim", overflow="ellipsis"),
            )
        if not progress.total and not self.tracker.started:
            return Text("waiting for the job to start…", style="dim")
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            Text(f"job {progress.job_id[:12]}", style="bold"),
            ProgressBar(
                total=1.0,
                completed=progress.fraction,
                width=30,
                complete_style="cyan",
                finished_style="red" if progress.count(TaskState.FAILED) else "green",
            ),
            Text(f"{progress.done}/{progress.total} tasks"),
            Text(f"{progress.fraction:.0%}"),
            Text(_time_text(progress), style="dim"),
        )
        return Group(table, bar) if progress.running else bar


def summary(progress: JobProgress) -> str:
    """`job 1a2b… succeeded: 4 succeeded in 3.2s`."""
    counts = ", ".join(
        f"{count} {state.value}" for state, count in progress.counts.items() if count
    )
    return (
        f"job {progress.job_id} {progress.state.value}: {counts or 'no tasks'} "
        f"in {format_duration(progress.elapsed)}"
    )


def format_duration(seconds: float | None) -> str:
    """`0.4s`, `12s`, `3m05s`, `1h02m`; `-` for None."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _time_text(progress: JobProgress) -> str:
    remaining = progress.remaining
    left = "" if remaining is None or progress.finished else f", ~{format_duration(remaining)} left"
    return f"{format_duration(progress.elapsed)}{left}"


def _progress_text(fraction: float | None, message: str) -> str:
    percent = "" if fraction is None else f"{fraction:.0%}"
    return " ".join(part for part in (percent, message) if part)


def _ended_line(
    task_id: str,
    state: TaskState,
    duration: float | None,
    message: str,
    tail: Iterable[str],
) -> RenderableType:
    from rich.text import Text

    mark, style = MARKS[state]
    line = Text.assemble((mark, style), " ", (task_id, "bold"))
    if duration is not None:
        line.append(f"  {format_duration(duration)}", style="dim")
    if state is not TaskState.SUCCEEDED:
        line.append(f"  {state.value}", style=style)
        if message:
            line.append(f": {message}")
    elif message:  # a success says nothing, but that a rerun carried it over
        line.append(f"  {message}", style="dim")
    if state is TaskState.FAILED:  # `tail` is empty where plain lines showed each one
        for text in tail:
            line.append(f"\n    │ {text}", style="dim")
    return line
