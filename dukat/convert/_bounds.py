"""The wire's bounds: how long, how many and how far the values of a request may go.

The engine checks what running a job needs (ids, cycles, capacities, retry rules, finite
numbers). A daemon shared by many clients needs more: every value it keeps must be one it
can hold, send back and write down, whoever sent it. These are those limits, for every RPC,
in one table; the README's "What a request may carry" lists them.

A value over a bound is INVALID_ARGUMENT naming its field, like any other bad value. What an
older dukatd accepted before these bounds existed may be in its journal: read back with a
`Problems(lenient=...)`, a number out of range is brought to the nearest bound and reported
instead (the daemon logs a warning naming it), and a string over its length is kept as it
was (cutting an argv item or an id would change what the job does).

Words a client *reports* (a worker's error and progress messages, an outcome's error) are
not refused, which would lose the report: they are cut at `MAX_TEXT` (`cut`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from google.protobuf import duration_pb2

from dukat.core.spec import MAX_ID_LENGTH
from dukat.errors import FieldViolation, ValidationError

__all__ = [
    "MAX_ARG",
    "MAX_ARGV",
    "MAX_BREAKER_NAME",
    "MAX_DURATION",
    "MAX_ENV",
    "MAX_LABELS",
    "MAX_LABEL_VALUE",
    "MAX_NAME",
    "MAX_PATH",
    "MAX_QUEUES",
    "MAX_RESOURCES",
    "MAX_TEXT",
    "MAX_WINDOW",
    "Problems",
    "Report",
    "check_count",
    "check_labels",
    "check_length",
    "check_mapping",
    "cut",
    "duration_seconds",
    "seconds_within",
    "within",
]

MAX_DURATION = 365 * 24 * 3600
"""Seconds: the longest duration a request may give (task timeouts, backoffs, breaker
timeouts). Longer means "never" in practice, and some of them overflow a Duration when the
daemon sends them back (a timeout's remainder to a worker, a breaker's config)."""
MAX_NAME = MAX_ID_LENGTH
"""Characters of an id or a name: task, job and request ids, queue and resource names,
worker ids, content types, label keys, env variable names."""
MAX_BREAKER_NAME = 200
"""Characters of a circuit breaker's name (they are metric labels too)."""
MAX_TEXT = 4096
"""Characters of words for people: a task's description, a cancel's reason; and where the
words a client reports are cut."""
MAX_LABELS = 64
"""Labels of one job, of one task, or of one ListJobs filter."""
MAX_LABEL_VALUE = 1024
"""Characters of a label's value."""
MAX_ARG = 128 * 1024
"""Characters of one argv item or env value (Linux refuses longer: MAX_ARG_STRLEN)."""
MAX_ARGV = 4096
"""Items of an exec task's argv."""
MAX_ENV = 1024
"""Variables of an exec task's env."""
MAX_PATH = 4096
"""Characters of an exec task's cwd (PATH_MAX)."""
MAX_RESOURCES = 64
"""Resource requirements of one task."""
MAX_WINDOW = 10_000
"""Calls in a circuit breaker's failure-rate window (each is kept)."""
MAX_QUEUES = 1000
"""Queues one worker serves."""

Report = Callable[[str, str], None]
"""Told of one problem: (field path, what is wrong)."""


class Problems:
    """Every problem of one request, reported together as one `ValidationError`.

    `add` is a problem whatever happens; `bound` one of the bounds above, which with
    `lenient` (a Report) is told there instead and not raised: the caller goes on with the
    value brought within the bound.
    """

    __slots__ = ("found", "lenient")

    def __init__(self, lenient: Report | None = None) -> None:
        self.found: list[tuple[str | None, FieldViolation]] = []
        self.lenient = lenient

    def add(self, task_id: str | None, field: str, description: str) -> None:
        self.found.append((task_id or None, FieldViolation(field, description)))

    def bound(self, task_id: str | None, field: str, description: str) -> None:
        if self.lenient is not None:
            self.lenient(field, description)
        else:
            self.add(task_id, field, description)

    def report(self, task_id: str | None = None) -> Report:
        """A Report of bound problems, for the checks below."""
        return lambda field, description: self.bound(task_id, field, description)

    def raise_if_any(self) -> None:
        if not self.found:
            return
        task_id, first = self.found[0]
        subject = f"task {task_id!r}: " if task_id else ""
        message = f"{subject}{first.field}: {first.description}"
        more = len(self.found) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ValidationError(message, task_id=task_id, violations=[v for _, v in self.found])


def check_length(report: Report, field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        report(field, f"at most {limit} characters, not {len(value)}")


def check_count(report: Report, field: str, count: int, limit: int) -> None:
    if count > limit:
        report(field, f"at most {limit} items, not {count}")


def check_labels(report: Report, field: str, labels: Mapping[str, str]) -> None:
    """At most MAX_LABELS labels; keys of MAX_NAME characters, values of MAX_LABEL_VALUE."""
    check_mapping(report, field, labels, MAX_LABELS, MAX_LABEL_VALUE)


def check_mapping(
    report: Report,
    field: str,
    mapping: Mapping[str, str],
    items: int,
    value_chars: int,
    key_name: str = "a key",
) -> None:
    """At most `items` entries; keys of MAX_NAME characters, values of `value_chars`."""
    check_count(report, field, len(mapping), items)
    for key, value in mapping.items():
        if len(key) > MAX_NAME:
            report(field, f"{key_name} of {len(key)} characters; at most {MAX_NAME}")
        else:
            check_length(report, f"{field}[{key!r}]", value, value_chars)


def duration_seconds(report: Report, field: str, duration: duration_pb2.Duration) -> float:
    """The seconds of a Duration that is well formed and at most MAX_DURATION.

    Its sign is the caller's (the engine's) to check: a negative one goes on as it is. Out
    of bounds, the value given back is brought within them.
    """
    seconds, nanos = duration.seconds, duration.nanos
    if not -1_000_000_000 < nanos < 1_000_000_000 or (seconds < 0 < nanos or nanos < 0 < seconds):
        report(field, f"nanos must be within ±999,999,999 and of the sign of seconds, not {nanos}")
        nanos = 0
    return seconds_within(report, field, seconds + nanos / 1e9)


def seconds_within(report: Report, field: str, seconds: float) -> float:
    """`seconds`, or MAX_DURATION if it is longer (reported as such)."""
    if seconds > MAX_DURATION:
        report(field, f"at most {MAX_DURATION:,} seconds (365 days), not {seconds:g}")
        return MAX_DURATION
    return seconds


def within(report: Report, field: str, value: int, limit: int) -> int:
    """`value`, or `limit` if it is over it (reported as such)."""
    if value > limit:
        report(field, f"at most {limit:,}, not {value:,}")
        return limit
    return value


def cut(text: str, limit: int = MAX_TEXT) -> str:
    """`text`, ending in "…" at `limit` characters if it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
