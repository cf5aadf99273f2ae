"""Every error dukat raises, in one place.

    DukatError
     ├── ValidationError (ValueError)     bad input: a job, a task, a requirement, an option;
     │    │                               `.violations` lists (field, description) pairs and
     │    │                               `.task_id` names the offending task when there is one
     │    ├── CycleError                  the dependencies close a loop; `.cycle` is the path
     │    ├── ConfigError                 an option of dukatd has a bad value; `.option` is the
     │    │                               Config field, `.source` where it was given
     │    └── JobFileError                a job file (the command line's) cannot be run;
     │                                    `.problems` lists every mistake found in `.source`
     ├── BadValue (ValueError)            an option's value that cannot be converted (the caller
     │                                    says which option, as a ConfigError)
     ├── CircuitBreakerError              a call refused by an open breaker; `.name`, `.retry_after`
     ├── CapacityError                    a job refused for want of room (the scheduler's
     │                                    `max_tasks`); `.limit`, `.capacity`, `.held`, `.requested`
     ├── TaskTimeoutError (TimeoutError)  one attempt ran past its `timeout`
     ├── TaskInterruptedError             an attempt was taken away from the task (its worker left,
     │                                    the daemon restarted); `.cause` says which, in a word
     ├── TaskFailedRemotely               a worker reported the attempt failed; `.type` names the
     │                                    worker's error, `.retryable` False stops the retries
     ├── TaskProcessError                 a task's process could not start, exited non-zero or
     │                                    was killed; `.exit_code`, `.signal` or `.spawn_error`,
     │                                    and the tails of its output
     ├── NotFoundError (LookupError)      an unknown job or task id
     ├── LimitExceededError               a bound of the engine would be passed (more circuit
     │                                    breakers than a registry may hold)
     ├── AttemptStateError                a dispatch attempt was moved where its state table
     │                                    does not allow (a bug of the daemon); `.key`
     ├── ProtocolError                    a worker's stream broke the Work protocol in a way that
     │                                    does not fit its state (a second hello); the daemon
     │                                    ends the stream FAILED_PRECONDITION
     ├── HeartbeatTimeoutError            a worker sent nothing for longer than its heartbeat
     │    (TimeoutError)                  timeout; the daemon ends its stream DEADLINE_EXCEEDED
     ├── JournalError                     dukatd's journal cannot be used (damaged, written by a
     │                                    newer dukatd, unreadable): the daemon does not start
     ├── JournalWriteError                what was to be made durable could not be written to
     │                                    the journal; `.full`: for want of room
     ├── FormatError (ValueError)         a record of dukatd's journal that it cannot read
     ├── LockError                        dukatd cannot claim a socket or its state directory;
     │    │                               `.path`
     │    └── AlreadyRunningError         another dukatd holds the lock; `.pid`
     ├── StartError                       dukatd cannot start with this configuration
     ├── Refused                          dukatd turns a request down for a reason of its own (a
     │                                    policy, a limit); `.code` names the gRPC status
     ├── FellBehind                       a watcher of every job was overwritten before it read
     │                                    (dukatd answers RESOURCE_EXHAUSTED); `.lost`
     ├── RecordedFailure                  a failure a client reported to a breaker of dukatd
     │                                    (Record): only its text is known
     └── DaemonError                      the daemon (over gRPC) answered with an error status;
          │                               `.code` is the status's name ("NOT_FOUND"), `.details`
          │                               its message; raised by `dukat.client` only
          ├── InvalidArgumentError          INVALID_ARGUMENT; also a ValidationError, with the
          │                                 `violations` of the status's google.rpc.BadRequest
          ├── DaemonNotFoundError           NOT_FOUND; also a NotFoundError
          ├── PermissionDeniedError         PERMISSION_DENIED (exec tasks on a daemon without exec)
          ├── UnauthenticatedError          UNAUTHENTICATED (no token, or the wrong one)
          ├── ResourceExhaustedError        RESOURCE_EXHAUSTED (a limit of the daemon)
          ├── FailedPreconditionError       FAILED_PRECONDITION
          ├── DeadlineExceededError         DEADLINE_EXCEEDED; also a TimeoutError
          └── DaemonUnavailableError        UNAVAILABLE: not reachable, or draining (after the
                                            client's own reconnects); also a ConnectionError

The gRPC status code of a `DaemonError` or a `Refused` is a plain string, its name, so that
this module (and whoever catches its errors) needs no grpc import; `dukat.client` holds the
one code -> class table, `dukatd.status` the one error -> status table.

A task that is SKIPPED because an upstream failed, or CANCELLED, is an outcome recorded in its
result, not an exception: `TaskResult.state` says so and `TaskResult.message` says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from signal import Signals

__all__ = [
    "AlreadyRunningError",
    "AttemptStateError",
    "BadValue",
    "CapacityError",
    "CircuitBreakerError",
    "ConfigError",
    "CycleError",
    "DaemonError",
    "DaemonNotFoundError",
    "DaemonUnavailableError",
    "DeadlineExceededError",
    "DukatError",
    "FailedPreconditionError",
    "FellBehind",
    "FieldViolation",
    "FormatError",
    "HeartbeatTimeoutError",
    "InvalidArgumentError",
    "JobFileError",
    "JournalError",
    "JournalWriteError",
    "LimitExceededError",
    "LockError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "RecordedFailure",
    "Refused",
    "ResourceExhaustedError",
    "StartError",
    "TaskFailedRemotely",
    "TaskInterruptedError",
    "TaskProcessError",
    "TaskTimeoutError",
    "UnauthenticatedError",
    "ValidationError",
]


class DukatError(Exception):
    """Base class of every error raised by dukat."""

    def __reduce__(self) -> tuple[object, ...]:
        # Pickle and copy rebuild an exception as `cls(*self.args)`, but our subclasses take
        # other arguments than their message (CycleError(cycle), TaskTimeoutError(task_id,
        # timeout)). Rebuild without calling __init__; the attributes travel in __dict__.
        return (_rebuild, (type(self), self.args), self.__dict__)


def _rebuild(cls: type[DukatError], args: tuple[object, ...]) -> DukatError:
    error = cls.__new__(cls)
    error.args = args
    return error


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One thing wrong with the input: the field's path and what is wrong with it."""

    field: str
    description: str


class ValidationError(DukatError, ValueError):
    """The input cannot be accepted; nothing of it was applied.

    `violations` holds every problem found (`tasks[3].dependencies`, ...); the message is the
    first of them, or all of them when there are a few.
    """

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class CycleError(ValidationError):
    """The dependencies form a cycle; `cycle` is the path, first node repeated at the end."""

    def __init__(self, cycle: Sequence[str], *, field: str = "dependencies") -> None:
        self.cycle: tuple[str, ...] = tuple(cycle)
        path = " -> ".join(self.cycle)
        super().__init__(
            f"dependency cycle: {path}",
            task_id=self.cycle[0] if self.cycle else None,
            violations=[FieldViolation(field, f"dependency cycle: {path}")],
        )


class ConfigError(ValidationError):
    """An option of dukatd has a bad value; `.option` is the Config field, `.source` where it
    was given (a flag, a variable, a TOML key)."""

    def __init__(self, problem: str, *, option: str, source: str | None = None) -> None:
        self.option = option
        self.source = source or option
        self.problem = problem
        super().__init__(f"{self.source}: {problem}", violations=[FieldViolation(option, problem)])


class JobFileError(ValidationError):
    """A job file that cannot be run; `problems` lists every mistake found (each says where
    it is in the file: `dukat.cli`'s `Problem`), `source` names the file."""

    def __init__(self, source: str, problems: Sequence[object]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


class BadValue(DukatError, ValueError):
    """A value that cannot be converted; the message says why, the caller says where."""


class CircuitBreakerError(DukatError):
    """A call was refused because the breaker `name` is open (or half-open and full)."""

    def __init__(self, name: str, retry_after: float, *, half_open: bool = False) -> None:
        self.name = name
        self.retry_after = max(0.0, retry_after)
        self.half_open = half_open
        if half_open:
            message = f"circuit breaker {name!r} is half-open and its trial calls are taken"
        else:
            wait = f"{self.retry_after:.1f}s"
            message = f"circuit breaker {name!r} is open; next trial call in {wait}"
        super().__init__(message)


class CapacityError(DukatError):
    """A job was refused: the scheduler holds as many tasks as its limit allows.

    `limit` names the limit (`"max_tasks"`) and `capacity` is its value; `held` is what the
    jobs that cannot make room (unfinished, or prepared and not started) hold, and
    `requested` what the job refused needed. Nothing of the job was kept.
    """

    def __init__(self, limit: str, capacity: int, *, held: int, requested: int) -> None:
        self.limit = limit
        self.capacity = capacity
        self.held = held
        self.requested = requested
        if requested > capacity:
            message = f"a job of {requested} tasks can never fit: {limit} is {capacity}"
        else:
            message = (
                f"a job of {requested} tasks does not fit: unfinished jobs hold {held} tasks "
                f"and {limit} is {capacity}; submit it again once some have finished"
            )
        super().__init__(message)


class TaskTimeoutError(DukatError, TimeoutError):
    """An attempt of a task ran longer than its `timeout`."""

    def __init__(self, task_id: str, timeout: float) -> None:
        self.task_id = task_id
        self.timeout = timeout
        super().__init__(f"task {task_id!r} timed out after {timeout:g}s")


class TaskInterruptedError(DukatError):
    """An attempt was lost through no fault of the task: its worker left or went silent, the
    daemon restarted or stopped its runner, a Ray node running it was lost ("node_lost") or the
    daemon lost its Ray cluster ("cluster_lost"). Any runner may raise it.

    Not a failure: the engine runs the task again at once, without spending its retry
    policy's attempts, up to its `max_interruptions`. `cause` names what took the attempt,
    one of `CAUSES` (a metric label: anything else is counted as "other"); the message says
    it for people ("worker 'w1' left").
    """

    CAUSES = (
        "daemon_restart",
        "daemon_stopping",
        "worker_lost",
        "executor_stopped",
        "node_lost",
        "cluster_lost",
        "other",
    )

    def __init__(self, message: str, *, cause: str = "other") -> None:
        self.cause = cause
        super().__init__(message)


class TaskFailedRemotely(DukatError):
    """A worker reported that an attempt of a dispatch task failed, or its result was refused.

    `type` is the error's kind as the worker named it (an exception class name, may be empty).
    `retryable` False tells the engine's RetryPolicy not to retry, whatever attempts are left:
    the worker knows when no attempt can help. It lives here, not in the daemon, so that the
    Python client and the engine raise and catch the same class.
    """

    def __init__(self, message: str, *, type: str = "", retryable: bool = True) -> None:
        self.type = type
        self.detail = message
        """The worker's words, without `type` (which the error's message starts with)."""
        self.retryable = retryable
        super().__init__(f"{type}: {message}" if type else message)


class TaskProcessError(DukatError):
    """A task's process failed: it could not start, exited non-zero, or was killed by a signal.

    Exactly one of `exit_code` (1-255), `signal` (its number) or `spawn_error` (why it could
    not start) is set. `stdout_tail` and `stderr_tail` are the ends of what it wrote; the
    message names the program and quotes the last few lines of stderr (of stdout when stderr
    has none), which usually say why: `'sh' exited with code 7; stderr ends: e1 | e2 | e3`.
    The quote is bounded (`QUOTED_LINES` lines of at most `QUOTED_LINE_CHARS` characters).
    """

    QUOTED_LINES = 3
    QUOTED_LINE_CHARS = 200

    def __init__(
        self,
        program: str,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        spawn_error: str | None = None,
        stderr_tail: bytes = b"",
        stdout_tail: bytes = b"",
    ) -> None:
        if (exit_code is None) + (signal is None) + (spawn_error is None) != 2:
            raise ValueError("give exactly one of exit_code, signal and spawn_error")
        self.program = program
        self.exit_code = exit_code
        self.signal = signal
        self.spawn_error = spawn_error
        self.stderr_tail = stderr_tail
        self.stdout_tail = stdout_tail
        if spawn_error is not None:
            message = f"{program!r} could not start: {spawn_error}"
        elif signal is not None:
            message = f"{program!r} was killed by signal {signal} ({_signal_name(signal)})"
        else:
            message = f"{program!r} exited with code {exit_code}"
        for stream, tail in (("stderr", stderr_tail), ("stdout", stdout_tail)):
            lines = _last_lines(tail, self.QUOTED_LINES, self.QUOTED_LINE_CHARS)
            if lines:
                message = f"{message}; {stream} ends: {' | '.join(lines)}"
                break
        super().__init__(message)


def _signal_name(number: int) -> str:
    try:
        return Signals(number).name
    except ValueError:
        return "unknown signal"


def _last_lines(tail: bytes, count: int, limit: int) -> list[str]:
    """The last `count` lines of `tail` that are not blank, each cut at `limit` characters."""
    lines: list[str] = []
    # Only the end is read: a tail may be a whole --output-tail-bytes of one long line.
    text = tail[-count * limit * 4 :].decode("utf-8", "replace")
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            lines.append(line if len(line) <= limit else line[: limit - 1] + "…")
            if len(lines) == count:
                break
    return lines[::-1]


class NotFoundError(DukatError, LookupError):
    """An unknown job or task id."""


class LimitExceededError(DukatError):
    """What was asked would pass a bound of the engine (a breaker registry's `max_breakers`);
    nothing of it was done. The daemon answers RESOURCE_EXHAUSTED."""


class AttemptStateError(DukatError):
    """An attempt of a dispatch task was asked to move from one state to another that its
    table of transitions (`dukatd.work_attempt.TRANSITIONS`) does not allow; nothing moved.
    A bug of the daemon, never a worker's doing. `key` is (job_id, task_id, attempt)."""

    def __init__(self, key: tuple[str, str, int], state: str, to: str) -> None:
        self.key = key
        self.state = state
        self.to = to
        job_id, task_id, attempt = key
        super().__init__(
            f"attempt {attempt} of task {task_id!r} (job {job_id!r}) cannot go from {state} to {to}"
        )


class ProtocolError(DukatError):
    """A peer broke a stream's protocol in a way that does not fit the state it is in (a
    second hello, a report for a job the daemon does not hold); the stream ends. The daemon
    answers FAILED_PRECONDITION (misuse that a message alone shows, a report without an
    outcome, is a `ValidationError`)."""


class HeartbeatTimeoutError(DukatError, TimeoutError):
    """A peer of a stream sent nothing for longer than its heartbeat timeout: the stream is
    taken for dead and ends (the daemon answers DEADLINE_EXCEEDED). `silent` is how long it
    was silent, `timeout` the heartbeat timeout, in seconds."""

    def __init__(self, message: str, *, silent: float, timeout: float) -> None:
        self.silent = silent
        self.timeout = timeout
        super().__init__(message)


class JournalError(DukatError):
    """dukatd's journal cannot be used; the daemon must not start on it. The message says
    why and what to do."""


class JournalWriteError(DukatError):
    """What was asked to be made durable could not be written to dukatd's journal (`full`:
    the disk, or the journal's size limit, is full)."""

    def __init__(self, message: str, *, full: bool) -> None:
        super().__init__(message)
        self.full = full


class FormatError(DukatError, ValueError):
    """A blob of dukatd's journal this dukatd cannot read: another format, or not plain
    values."""


class LockError(DukatError):
    """The daemon cannot claim a socket or directory; the message says why and what to do."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class AlreadyRunningError(LockError):
    """Another process holds the lock at `path`; `pid` is its process id when it wrote one."""

    def __init__(self, path: Path, *, pid: int | None, serving: str, hint: str) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"another dukatd ({holder}) already serves {serving}: it holds the lock {str(path)!r}."
            f" Stop it first, or start this one with {hint}",
            path=path,
        )
        self.pid = pid


class StartError(DukatError):
    """The daemon cannot start with this configuration; the message says why and what to do."""


class Refused(DukatError):
    """A request the daemon turns down for a reason of its own (a policy, a limit). `code` is
    the gRPC status it answers with, by name (`"PERMISSION_DENIED"`, as
    `grpc.StatusCode.PERMISSION_DENIED.name` spells it; `dukatd.status` maps it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class FellBehind(DukatError):
    """A watcher's next event was overwritten before it read it."""

    def __init__(self, lost: int, capacity: int) -> None:
        super().__init__(
            f"this watcher fell {lost} events behind and the daemon keeps only the last "
            f"{capacity} of all jobs; watch again (Watch with a job_id resumes a job from the "
            "last sequence seen)"
        )
        self.lost = lost


class RecordedFailure(DukatError):
    """A failure a client reported with Record; only its text is known (kept in the reason)."""

    def __str__(self) -> str:
        return str(self.args[0])


# -- errors the daemon answers with (raised by dukat.client) ---------------------------------


class DaemonError(DukatError):
    """The daemon answered a call with an error status.

    `code` is the gRPC status code's name (`"NOT_FOUND"`, as `grpc.StatusCode.NOT_FOUND.name`
    spells it) and `details` the status message, which is also the error's message unless
    `message` gives one that says more (the address of a daemon that cannot be reached).
    """

    def __init__(self, details: str, *, code: str = "UNKNOWN", message: str | None = None) -> None:
        # Cooperative: for InvalidArgumentError this runs ValidationError.__init__ next.
        super().__init__(message or details or f"the daemon answered {code}")
        self.code = code
        self.details = details


class InvalidArgumentError(DaemonError, ValidationError):
    """INVALID_ARGUMENT: the daemon rejected the request; nothing of it was applied.

    A `ValidationError` like the engine's own: `violations` are the field violations the
    daemon sent (google.rpc.BadRequest), with paths as the request names them
    (`job.tasks[3].dependencies[0]`).
    """

    def __init__(
        self,
        details: str,
        *,
        code: str = "INVALID_ARGUMENT",
        task_id: str | None = None,
        violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(details, code=code)
        self.task_id = task_id
        self.violations = tuple(violations)


class DaemonNotFoundError(DaemonError, NotFoundError):
    """NOT_FOUND: an unknown job, task or breaker (or one the daemon no longer holds)."""


class PermissionDeniedError(DaemonError):
    """PERMISSION_DENIED: the daemon does not allow this (exec tasks when exec is off)."""


class UnauthenticatedError(DaemonError):
    """UNAUTHENTICATED: the daemon wants a bearer token, and none or the wrong one came."""


class ResourceExhaustedError(DaemonError):
    """RESOURCE_EXHAUSTED: a limit of the daemon (message size, open watch streams, ...)."""


class FailedPreconditionError(DaemonError):
    """FAILED_PRECONDITION: the request does not fit the state things are in."""


class DeadlineExceededError(DaemonError, TimeoutError):
    """DEADLINE_EXCEEDED: the call ran past its deadline."""


class DaemonUnavailableError(DaemonError, ConnectionError):
    """UNAVAILABLE: the daemon cannot be reached, or is draining, and stayed so through the
    client's reconnect attempts."""
