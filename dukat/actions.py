"""The actions a daemon task can have: the shared vocabulary of the daemon and its clients.

`ExecAction` is run by the daemon itself as a subprocess (`dukatd.exec_runner`);
`DispatchAction` is handed to a worker serving its queue over `SchedulerService.Work`, and a
successful attempt's result is the worker's `DispatchResult`. They live here, beside the
engine rather than in the daemon, because clients build them too. A worker's handler gets
each attempt as a `DispatchTask` (re-exported by `dukat.client`), with its dependencies'
`UpstreamResult`s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from dukat.core.states import TaskState
from dukat.errors import FieldViolation, ValidationError

__all__ = [
    "DispatchAction",
    "DispatchResult",
    "DispatchTask",
    "ExecAction",
    "ExecResult",
    "ProgressSink",
    "UpstreamResult",
]

ProgressSink = Callable[["DispatchTask", "float | None", str], None]
"""Where a `DispatchTask`'s progress reports go (the worker that runs it)."""


@dataclass(frozen=True, slots=True)
class ExecAction:
    """Run `argv` as a subprocess of the daemon."""

    argv: tuple[str, ...]
    """The program (looked up in the task's PATH) and its arguments."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables laid over the runner's base env (see the module docstring)."""
    cwd: str | None = None
    """Working directory; None: the daemon's."""
    stdin: bytes = b""
    """Written to the process's stdin, which is then closed; empty: stdin is /dev/null."""

    def __post_init__(self) -> None:
        problems = []
        argv = self.argv
        if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence):
            problems.append(FieldViolation("argv", f"must be a sequence of strings, not {argv!r}"))
            argv = ()
        elif not argv:
            problems.append(FieldViolation("argv", "must name a program: argv is empty"))
        for index, arg in enumerate(argv):
            if not isinstance(arg, str) or "\0" in arg:
                problems.append(
                    FieldViolation(f"argv[{index}]", f"not a string without NUL: {arg!r}")
                )
        if argv and argv[0] == "":
            problems.append(FieldViolation("argv[0]", "the program name is empty"))
        env = self.env
        if not isinstance(env, Mapping):
            problems.append(FieldViolation("env", f"must be a mapping, not {env!r}"))
            env = {}
        for key, value in env.items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key:
                problems.append(FieldViolation("env", f"bad variable name {key!r}"))
            elif not isinstance(value, str) or "\0" in value:
                problems.append(
                    FieldViolation(f"env[{key!r}]", f"not a string without NUL: {value!r}")
                )
        if self.cwd is not None and (
            not isinstance(self.cwd, str) or not self.cwd or "\0" in self.cwd
        ):
            problems.append(
                FieldViolation("cwd", f"must be a directory path or None, not {self.cwd!r}")
            )
        if not isinstance(self.stdin, (bytes, bytearray, memoryview)):
            problems.append(
                FieldViolation("stdin", f"must be bytes, not {type(self.stdin).__name__}")
            )
        if problems:
            first = problems[0]
            raise ValidationError(
                f"ExecAction {first.field}: {first.description}", violations=problems
            )
        # Frozen means frozen: copies, so a caller's list or dict changed later changes nothing.
        object.__setattr__(self, "argv", tuple(argv))
        object.__setattr__(self, "env", MappingProxyType(dict(env)))
        object.__setattr__(self, "stdin", bytes(self.stdin))

    @property
    def program(self) -> str:
        return self.argv[0]


@dataclass(frozen=True, slots=True)
class DispatchAction:
    """Hand the task to a worker serving `queue`; `payload` and `content_type` pass untouched."""

    queue: str
    payload: bytes = b""
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """What a worker sent back for a dispatch task that succeeded (its WorkSuccess).

    The task's result in the engine, and what its dependents are given as an UpstreamResult:
    a result object rather than bare bytes, because the media type has to travel with them.
    """

    payload: bytes = b""
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What a successful exec attempt gives: the exit code (0) and the tail of each stream.

    Made by the daemon's exec runner (`dukatd.exec_runner`), read back by clients from
    GetJob: here, beside `DispatchResult`, because both sides use it.
    """

    exit_code: int
    stdout: bytes
    """The last `ExecOptions.output_tail_bytes` the process wrote to stdout."""
    stderr: bytes
    """The last `ExecOptions.output_tail_bytes` the process wrote to stderr."""


@dataclass(frozen=True, slots=True)
class UpstreamResult:
    """How one dependency of a dispatch task ended."""

    task_id: str
    state: TaskState
    """Its terminal state (not SUCCEEDED only under trigger rule ALL_DONE)."""
    payload: bytes = b""
    """What it returned, when it was a dispatch task that succeeded."""
    content_type: str = ""
    error: str = ""
    """Why it did not succeed, in words."""


@dataclass(frozen=True, slots=True)
class DispatchTask:
    """One attempt of a dispatch task given to a worker; `attempt` is its fencing token."""

    job_id: str
    task_id: str
    attempt: int
    queue: str
    payload: bytes
    content_type: str = ""
    upstream_results: tuple[UpstreamResult, ...] = ()
    """How each dependency ended, in the order of the task's dependencies."""
    timeout: float | None = None
    """Seconds this attempt may run (the daemon cancels it after); None: no limit."""
    progress_sink: ProgressSink | None = field(default=None, repr=False, compare=False)
    """Where `report_progress` sends its reports: the worker running the attempt."""

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.job_id, self.task_id, self.attempt)

    def report_progress(self, fraction: float | None = None, message: str = "") -> None:
        """Say how far the attempt is (0.0 to 1.0) and/or what it is doing.

        Batched: sent with the worker's next update, the latest report per attempt only.
        """
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
        if self.progress_sink is not None:
            self.progress_sink(self, None if fraction is None else float(fraction), str(message))
