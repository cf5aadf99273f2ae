"""What a task's process writes, turned into a bounded stream of events and a bounded tail.

A process can write gigabytes, or one line without end, or a million lines a second; the
job's event log, every watcher and the daemon's memory must not pay for that. So:

- Lines are cut at `max_line_bytes`; the cut line ends with a note of how many bytes went.
  A line that never ends holds at most `max_line_bytes` in memory.
- Lines (and progress reports) become events through one token bucket per task: `burst`
  events at once, refilled at `lines_per_second`. A line that finds the bucket empty is
  dropped and counted; the count comes out as one marker line on the same stream when the
  bucket has a token again, or when the process ends. A progress report that finds it empty
  is kept (only the newest one) and sent as soon as there is a token: reports supersede
  each other, so only the last one matters. Markers take tokens too, so a task never makes
  more events than the bucket allows (but for one marker per stream at the end).
- Every byte, dropped or not, goes through the tail: the last `output_tail_bytes` of each stream,
  kept for the task's result or its error.

A stdout line `::progress 0.4 message` is a progress report rather than output; one whose
fraction is not a number from 0 to 1 is passed on as an ordinary line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["LineSplitter", "OutputPump", "ProgressSink", "dropped_marker"]

PROGRESS_PREFIX = b"::progress "
STREAMS = ("stdout", "stderr")


class ProgressSink(Protocol):
    """Where events go: the task's context (`dukat.core.TaskContext`) has these two."""

    def output(self, stream: str, text: str) -> None: ...

    def report_progress(self, fraction: float | None = None, message: str = "") -> None: ...


def dropped_marker(stream: str, count: int) -> str:
    """The line that stands in for `count` lines of `stream` over the rate limit."""
    return f"[dukatd] {count} {stream} line{'s' if count != 1 else ''} dropped (rate limit)"


class LineSplitter:
    """Cuts a byte stream into lines (without the newline), holding at most `max_bytes`.

    Only the unfinished line is held between reads, and only its first `max_bytes`: that is
    what bounds memory. Lines complete within one read come back whole, however long (at
    most a read's size); cutting them is left to whoever shows them, as most are dropped.
    """

    __slots__ = ("_cut", "_max", "_partial")

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._partial = bytearray()  # the unfinished line, at most _max bytes of it
        self._cut = 0  # bytes of the unfinished line beyond _max, thrown away

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        """The lines `data` completes, and how many bytes were already cut from the first."""
        lines = data.split(b"\n")
        rest = lines.pop()  # after the last newline: the start of the next line
        cut = 0
        if lines:
            if self._partial:
                lines[0] = bytes(self._partial) + lines[0]
                self._partial.clear()
            cut, self._cut = self._cut, 0
        if rest:
            room = self._max - len(self._partial)
            if len(rest) <= room:
                self._partial += rest
            else:
                self._partial += rest[:room]
                self._cut += len(rest) - room
        return lines, cut

    def flush(self) -> tuple[bytes, int] | None:
        """The last line and the bytes cut from it, if the stream ended without a newline."""
        if not self._partial and not self._cut:
            return None
        line = (bytes(self._partial), self._cut)
        self._partial.clear()
        self._cut = 0
        return line


class _Tail:
    """The last `limit` bytes written to a stream; trimmed lazily, so appends stay O(1)."""

    __slots__ = ("_buffer", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()

    def add(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > 2 * self._limit:
            del self._buffer[: -self._limit]

    def value(self) -> bytes:
        return bytes(self._buffer[-self._limit :]) if self._limit else b""


class OutputPump:
    """One task's stdout and stderr: split, bounded, rate-limited and sent to `sink`."""

    __slots__ = (
        "_burst",
        "_dropped",
        "_last_refill",
        "_max_line",
        "_monotonic",
        "_pending_progress",
        "_rate",
        "_sink",
        "_splitters",
        "_tails",
        "_tokens",
    )

    def __init__(
        self,
        sink: ProgressSink,
        *,
        lines_per_second: float,
        burst: int,
        max_line_bytes: int,
        output_tail_bytes: int,
        monotonic: Callable[[], float],
    ) -> None:
        self._sink = sink
        self._rate = lines_per_second
        self._burst = burst
        self._tokens = float(burst)
        self._monotonic = monotonic
        self._last_refill = monotonic()
        self._max_line = max_line_bytes
        self._splitters = (LineSplitter(max_line_bytes), LineSplitter(max_line_bytes))
        self._tails = (_Tail(output_tail_bytes), _Tail(output_tail_bytes))
        self._dropped = [0, 0]  # per stream, not yet told
        self._pending_progress: tuple[float, str] | None = None

    def feed(self, stream: int, data: bytes) -> None:
        """Bytes the process wrote to stream 0 (stdout) or 1 (stderr)."""
        self._tails[stream].add(data)
        lines, cut = self._splitters[stream].feed(data)
        for index, line in enumerate(lines):
            if not self._line(stream, line, cut):
                # Out of tokens: the rest of this read cannot earn one in the microseconds
                # it takes, so it is counted in bulk. A chatty task costs the loop little.
                self._drop(stream, lines[index + 1 :])
                return
            cut = 0

    def finish(self) -> None:
        """The process is gone: send its unfinished lines, what is pending, what was dropped."""
        for stream in (0, 1):
            last = self._splitters[stream].flush()
            if last is not None:
                self._line(stream, *last)
        # Past the rate limit: two markers and one report at most, and then the task is over.
        if self._pending_progress is not None:
            self._sink.report_progress(*self._pending_progress)
            self._pending_progress = None
        for stream in (0, 1):
            if self._dropped[stream]:
                name = STREAMS[stream]
                self._sink.output(name, dropped_marker(name, self._dropped[stream]))
                self._dropped[stream] = 0

    def tail(self, stream: int) -> bytes:
        """The last bytes written to stream 0 (stdout) or 1 (stderr), dropped lines included."""
        return self._tails[stream].value()

    def _line(self, stream: int, line: bytes, cut: int) -> bool:
        """Send one line (or progress report); False if it found no token and waits or went."""
        sink = self._sink
        if self._pending_progress is not None and self._take():
            sink.report_progress(*self._pending_progress)
            self._pending_progress = None
        if stream == 0 and line.startswith(PROGRESS_PREFIX):
            progress = self._progress(line, cut)
            if progress is not None:
                if self._take():
                    sink.report_progress(*progress)
                    return True
                self._pending_progress = progress
                return False
        dropped = self._dropped[stream]
        if dropped and self._take():
            sink.output(STREAMS[stream], dropped_marker(STREAMS[stream], dropped))
            self._dropped[stream] = dropped = 0
        if not self._take():
            self._dropped[stream] = dropped + 1
            return False
        if len(line) > self._max_line:
            cut += len(line) - self._max_line
            line = line[: self._max_line]
        elif line.endswith(b"\r"):
            line = line[:-1]
        text = line.decode("utf-8", "replace")
        sink.output(STREAMS[stream], f"{text} [dukatd: {cut} more bytes cut]" if cut else text)
        return True

    def _drop(self, stream: int, lines: list[bytes]) -> None:
        """Lines that found the bucket empty: counted, but the newest progress report kept."""
        dropped = len(lines)
        if stream == 0:
            # Reports are not lines, so they are not counted; each supersedes the one before.
            for line in [ln for ln in lines if ln.startswith(PROGRESS_PREFIX)]:
                progress = self._progress(line, 0)
                if progress is not None:
                    self._pending_progress = progress
                    dropped -= 1
        self._dropped[stream] += dropped

    def _progress(self, line: bytes, cut: int) -> tuple[float, str] | None:
        """The report a stdout line makes, if it is one (a cut line is only output)."""
        if cut or len(line) > self._max_line or not line.startswith(PROGRESS_PREFIX):
            return None
        return _parse_progress(line)

    def _take(self) -> bool:
        """One token from the bucket, if there is one."""
        now = self._monotonic()
        tokens = min(float(self._burst), self._tokens + (now - self._last_refill) * self._rate)
        self._last_refill = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


def _parse_progress(line: bytes) -> tuple[float, str] | None:
    """`::progress 0.4 message` as (0.4, "message"); None if the fraction is no good."""
    text = line.decode("utf-8", "replace").rstrip("\r")
    fraction_text, _, message = text[len(PROGRESS_PREFIX) :].lstrip(" ").partition(" ")
    try:
        fraction = float(fraction_text)
    except ValueError:
        return None
    if not 0.0 <= fraction <= 1.0:  # also refuses nan
        return None
    return fraction, message.strip()
