"""dukat.errors: one tree of errors, each catchable as the builtin it resembles."""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib
import pickle
from pathlib import Path

import pytest

import dukat.errors as errors
from dukat.cli._jobfile import Problem
from dukat.errors import (
    AlreadyRunningError,
    AttemptStateError,
    BadValue,
    CapacityError,
    CircuitBreakerError,
    ConfigError,
    CycleError,
    DaemonError,
    DaemonNotFoundError,
    DaemonUnavailableError,
    DeadlineExceededError,
    DukatError,
    FailedPreconditionError,
    FellBehind,
    FieldViolation,
    FormatError,
    HeartbeatTimeoutError,
    InvalidArgumentError,
    JobFileError,
    JournalError,
    JournalWriteError,
    LimitExceededError,
    LockError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RecordedFailure,
    Refused,
    ResourceExhaustedError,
    StartError,
    TaskFailedRemotely,
    TaskInterruptedError,
    TaskProcessError,
    TaskTimeoutError,
    UnauthenticatedError,
    ValidationError,
)


def test_public_surface_is_pinned():
    assert errors.__all__ == [
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


@pytest.mark.parametrize(
    ("error", "parents"),
    [
        (ValidationError, (DukatError, ValueError)),
        (CycleError, (ValidationError, DukatError, ValueError)),
        (ConfigError, (ValidationError, DukatError, ValueError)),
        (JobFileError, (ValidationError, DukatError, ValueError)),
        (BadValue, (DukatError, ValueError)),
        (CircuitBreakerError, (DukatError,)),
        (CapacityError, (DukatError,)),
        (TaskTimeoutError, (DukatError, TimeoutError)),
        (TaskInterruptedError, (DukatError,)),
        (TaskFailedRemotely, (DukatError,)),
        (TaskProcessError, (DukatError,)),
        (NotFoundError, (DukatError, LookupError)),
        (LimitExceededError, (DukatError,)),
        (AttemptStateError, (DukatError,)),
        (ProtocolError, (DukatError,)),
        (HeartbeatTimeoutError, (DukatError, TimeoutError)),
        (FormatError, (DukatError, ValueError)),
        (LockError, (DukatError,)),
        (AlreadyRunningError, (LockError, DukatError)),
        (StartError, (DukatError,)),
        (Refused, (DukatError,)),
        (FellBehind, (DukatError,)),
        (RecordedFailure, (DukatError,)),
        (DaemonError, (DukatError,)),
        (InvalidArgumentError, (DaemonError, ValidationError, ValueError)),
        (DaemonNotFoundError, (DaemonError, NotFoundError, LookupError)),
        (PermissionDeniedError, (DaemonError,)),
        (UnauthenticatedError, (DaemonError,)),
        (ResourceExhaustedError, (DaemonError,)),
        (FailedPreconditionError, (DaemonError,)),
        (DeadlineExceededError, (DaemonError, TimeoutError)),
        (DaemonUnavailableError, (DaemonError, ConnectionError)),
    ],
)
def test_hierarchy(error, parents):
    for parent in parents:
        assert issubclass(error, parent), f"{error.__name__} is not a {parent.__name__}"


def test_every_dukat_error_is_an_exception_and_nothing_more_fundamental():
    assert issubclass(DukatError, Exception)
    assert not issubclass(DukatError, ValueError)


@pytest.mark.parametrize(
    ("error", "unrelated"),
    [
        (CircuitBreakerError("db", 1), ValueError),
        (TaskTimeoutError("t", 1), ValueError),
        (NotFoundError("job"), ValueError),
        (ValidationError("bad"), LookupError),
        (TaskInterruptedError("gone"), TimeoutError),
        (TaskProcessError("sh", exit_code=1), OSError),
    ],
)
def test_errors_are_not_caught_by_unrelated_builtins(error, unrelated):
    assert not isinstance(error, unrelated)


def test_every_public_error_is_in_the_tree_drawn_in_the_module_docstring():
    for name in errors.__all__:
        if name != "FieldViolation":
            assert name in errors.__doc__


# -- ValidationError ------------------------------------------------------------------------


def test_validation_error_carries_message_task_and_violations():
    violation = FieldViolation("tasks[3].dependencies", "unknown task 'x'")
    error = ValidationError("bad job", task_id="t3", violations=[violation])
    assert str(error) == "bad job"
    assert error.task_id == "t3"
    assert error.violations == (violation,)


def test_validation_error_defaults_to_no_task_and_no_violations():
    error = ValidationError("bad")
    assert error.task_id is None
    assert error.violations == ()


def test_validation_error_keeps_violations_from_any_iterable_as_a_tuple():
    error = ValidationError("bad", violations=(FieldViolation(f"f{i}", "x") for i in range(3)))
    assert [v.field for v in error.violations] == ["f0", "f1", "f2"]


def test_field_violation_is_a_frozen_value():
    violation = FieldViolation("timeout", "must be positive")
    assert violation == FieldViolation("timeout", "must be positive")
    with pytest.raises(dataclasses.FrozenInstanceError):
        violation.field = "other"  # type: ignore[misc]


# -- CycleError -----------------------------------------------------------------------------


def test_cycle_error_gives_the_path_in_message_and_attribute():
    error = CycleError(["a", "b", "c", "a"])
    assert error.cycle == ("a", "b", "c", "a")
    assert str(error) == "dependency cycle: a -> b -> c -> a"


def test_cycle_error_names_the_first_task_and_the_field():
    error = CycleError(["a", "b", "a"], field="tasks[0].dependencies")
    assert error.task_id == "a"
    assert error.violations == (
        FieldViolation("tasks[0].dependencies", "dependency cycle: a -> b -> a"),
    )


def test_cycle_error_field_defaults_to_dependencies():
    assert CycleError(["a", "a"]).violations[0].field == "dependencies"


def test_cycle_error_is_caught_as_value_error():
    with pytest.raises(ValueError, match="a -> a"):
        raise CycleError(["a", "a"])


def test_cycle_error_copies_the_path_it_was_given():
    path = ["a", "b", "a"]
    error = CycleError(path)
    path.append("c")
    assert error.cycle == ("a", "b", "a")


# -- the others -----------------------------------------------------------------------------


def test_circuit_breaker_error_names_the_breaker_and_when_to_try_again():
    error = CircuitBreakerError("db", 12.34)
    assert error.name == "db"
    assert error.retry_after == 12.34
    assert str(error) == "circuit breaker 'db' is open; next trial call in 12.3s"


def test_circuit_breaker_error_when_half_open_says_the_trial_calls_are_taken():
    assert CircuitBreakerError("db", 5).half_open is False
    error = CircuitBreakerError("db", 0, half_open=True)
    assert error.half_open is True
    assert str(error) == "circuit breaker 'db' is half-open and its trial calls are taken"


def test_circuit_breaker_error_never_says_to_wait_a_negative_time():
    error = CircuitBreakerError("db", -3)
    assert error.retry_after == 0.0
    assert "in 0.0s" in str(error)


def test_task_timeout_error_names_the_task_and_the_timeout():
    error = TaskTimeoutError("fetch", 1.5)
    assert error.task_id == "fetch"
    assert error.timeout == 1.5
    assert str(error) == "task 'fetch' timed out after 1.5s"


def test_task_timeout_error_is_caught_by_except_timeout_error():
    with pytest.raises(TimeoutError):
        raise TaskTimeoutError("fetch", 30)


def test_not_found_error_is_caught_as_lookup_error():
    with pytest.raises(LookupError, match="job 'j1'"):
        raise NotFoundError("unknown job 'j1'")


def test_task_interrupted_error_keeps_its_message():
    assert str(TaskInterruptedError("worker w1 left")) == "worker w1 left"


def test_task_interrupted_error_names_its_cause_in_a_word():
    assert TaskInterruptedError("gone").cause == "other"
    assert TaskInterruptedError("worker w1 left", cause="worker_lost").cause == "worker_lost"
    assert set(TaskInterruptedError.CAUSES) >= {"daemon_restart", "worker_lost", "other"}


def test_task_process_error_names_the_program_and_the_exit_code_with_the_last_stderr_lines():
    error = TaskProcessError("make", exit_code=2, stderr_tail=b"cc ...\nerror: no rule\n\n")
    assert (error.program, error.exit_code, error.signal, error.spawn_error) == (
        "make",
        2,
        None,
        None,
    )
    assert error.stderr_tail == b"cc ...\nerror: no rule\n\n"
    assert str(error) == "'make' exited with code 2; stderr ends: cc ... | error: no rule"


def test_task_process_error_quotes_the_last_three_lines_of_stderr_else_of_stdout():
    stderr = b"e0\ne1\n\n  e2\ne3\n"
    error = TaskProcessError("sh", exit_code=7, stderr_tail=stderr, stdout_tail=b"o1\n")
    assert (error.stdout_tail, error.stderr_tail) == (b"o1\n", stderr)
    assert str(error) == "'sh' exited with code 7; stderr ends: e1 | e2 | e3"
    quiet = TaskProcessError("sh", signal=9, stdout_tail=b"o1\no2")
    assert str(quiet) == "'sh' was killed by signal 9 (SIGKILL); stdout ends: o1 | o2"


def test_task_process_error_names_the_signal():
    assert str(TaskProcessError("sleep", signal=15)) == "'sleep' was killed by signal 15 (SIGTERM)"
    assert str(TaskProcessError("x", signal=200)) == "'x' was killed by signal 200 (unknown signal)"


def test_task_process_error_says_why_a_program_could_not_start():
    error = TaskProcessError("nope", spawn_error="No such file or directory: 'nope'")
    assert str(error) == "'nope' could not start: No such file or directory: 'nope'"


def test_task_process_error_keeps_the_message_short_whatever_the_tail_holds():
    error = TaskProcessError("x", exit_code=1, stderr_tail=b"y" * 1000)
    assert str(error) == "'x' exited with code 1; stderr ends: " + "y" * 199 + "…"
    many = TaskProcessError("x", exit_code=1, stderr_tail=(b"z" * 300 + b"\n") * 1000)
    assert len(str(many)) < 700


@pytest.mark.parametrize(
    "kwargs", [{}, {"exit_code": 1, "signal": 9}, {"signal": 9, "spawn_error": "no"}]
)
def test_task_process_error_takes_exactly_one_cause(kwargs):
    with pytest.raises(ValueError, match="exactly one of"):
        TaskProcessError("x", **kwargs)


# -- errors travel: pickled to another process, copied --------------------------------------

TRAVELLERS = [
    ValidationError("bad", task_id="t", violations=[FieldViolation("timeout", "must be > 0")]),
    CycleError(["a", "b", "a"], field="tasks[0].dependencies"),
    CircuitBreakerError("db", 2.5),
    CircuitBreakerError("db", 0, half_open=True),
    CapacityError("max_tasks", 10, held=8, requested=3),
    TaskTimeoutError("fetch", 1.5),
    TaskInterruptedError("worker w1 left", cause="worker_lost"),
    TaskFailedRemotely("no such user", type="KeyError", retryable=False),
    TaskProcessError("sh", exit_code=3, stderr_tail=b"fatal\n", stdout_tail=b"out\n"),
    TaskProcessError("sh", signal=9),
    TaskProcessError("nope", spawn_error="No such file or directory: 'nope'"),
    NotFoundError("unknown job 'j1'"),
    AttemptStateError(("j", "t", 2), "DONE", "WAITING"),
    ProtocolError("a second hello"),
    HeartbeatTimeoutError("worker 'w1' went silent", silent=31.5, timeout=30.0),
    JournalError("the journal is damaged"),
    JournalWriteError("the disk is full", full=True),
    ConfigError("must be at least 1", option="max_tasks", source="--max-tasks"),
    JobFileError("job.toml", [Problem("[tasks.a]", "retry", "must be at least 1")]),
    BadValue("not a duration: 'soon'"),
    FormatError("a record of format 02, not 1"),
    LockError("cannot create the directory", path=Path("/run/dukatd")),
    AlreadyRunningError(Path("/run/d.lock"), pid=42, serving="/run/d.sock", hint="--listen"),
    StartError("--token-file: cannot read it"),
    Refused("PERMISSION_DENIED", "exec tasks are off"),
    FellBehind(5, 10),
    RecordedFailure("a client's failure"),
    DaemonError("odd", code="INTERNAL"),
    InvalidArgumentError(
        "task 'a': bad", task_id="a", violations=[FieldViolation("job.tasks[0].id", "bad")]
    ),
    DaemonNotFoundError("unknown job 'j1'", code="NOT_FOUND"),
    DaemonUnavailableError("connection refused", code="UNAVAILABLE"),
]


@pytest.mark.parametrize("error", TRAVELLERS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("carry", [lambda e: pickle.loads(pickle.dumps(e)), copy.copy])
def test_an_error_survives_pickle_and_copy_with_message_and_attributes(error, carry):
    carried = carry(error)
    assert type(carried) is type(error)
    assert str(carried) == str(error)
    assert carried.args == error.args
    assert vars(carried) == vars(error)


# -- the daemon's errors --------------------------------------------------------------------


def test_a_daemon_error_carries_code_and_details_as_plain_strings():
    error = PermissionDeniedError("exec is off", code="PERMISSION_DENIED")
    assert (error.code, error.details, str(error)) == (
        "PERMISSION_DENIED",
        "exec is off",
        "exec is off",
    )


def test_a_daemon_error_without_details_says_the_code():
    assert str(DaemonError("", code="INTERNAL")) == "the daemon answered INTERNAL"


def test_invalid_argument_is_a_validation_error_with_violations():
    violation = FieldViolation("job.tasks", "a job needs at least one task")
    error = InvalidArgumentError("job.tasks: empty", violations=[violation])
    assert error.code == "INVALID_ARGUMENT"
    assert error.violations == (violation,)
    assert error.task_id is None
    with pytest.raises(ValidationError):
        raise error


def test_the_errors_module_imports_no_grpc():
    import subprocess
    import sys

    code = "import sys, dukat.errors; print('grpc' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert shown.stdout.strip() == "False"


def test_task_failed_remotely_names_the_workers_error_and_says_whether_to_retry():
    error = TaskFailedRemotely("no such user", type="KeyError", retryable=False)
    assert str(error) == "KeyError: no such user"
    assert (error.type, error.retryable) == ("KeyError", False)
    assert str(TaskFailedRemotely("boom")) == "boom"
    assert TaskFailedRemotely("boom").retryable is True


# -- every error is here, and where it was too -------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("dukat.cli._jobfile", "JobFileError"),
        ("dukatd.lock", "LockError"),
        ("dukatd.lock", "AlreadyRunningError"),
        ("dukatd.event_ring", "FellBehind"),
        ("dukatd.journal.codec", "FormatError"),
        ("dukatd.config", "ConfigError"),
        ("dukatd.app", "StartError"),
        ("dukatd.options", "BadValue"),
    ],
)
def test_an_error_that_moved_here_is_still_found_where_it_was(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_no_module_of_the_product_defines_an_error_of_its_own():
    """Every exception class of dukat and dukatd is in dukat.errors (the generated stubs
    aside), so that the tree in its docstring is the whole of them."""
    root = Path(errors.__file__).parent.parent
    found = []
    for path in sorted([*(root / "dukat").rglob("*.py"), *(root / "dukatd").rglob("*.py")]):
        if path == Path(errors.__file__) or "v1" in path.relative_to(root).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                _names_an_exception(base) for base in node.bases
            ):
                found.append(f"{path.relative_to(root)}: {node.name}")
    assert found == []


def _names_an_exception(base: ast.expr) -> bool:
    name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
    return name.endswith(("Error", "Exception")) or name in errors.__all__
