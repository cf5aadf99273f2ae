"""dukat.convert's Work messages: what one side builds, the other reads back as it was."""

from __future__ import annotations

import math

import pytest

from dukat import convert
from dukat.actions import DispatchAction, DispatchResult, DispatchTask, UpstreamResult
from dukat.core.results import TaskResult
from dukat.core.states import TaskState
from dukat.errors import ProtocolError, TaskFailedRemotely, ValidationError
from dukat.v1 import scheduler_pb2, work_pb2

KEY = ("j1", "t1", 2)


def test_a_hello_reads_back_as_the_worker_said_it() -> None:
    request = convert.worker_hello_to_proto("w1", ["q", "r", "q"], 8)
    assert convert.worker_hello_from_proto(request.hello) == ("w1", ("q", "r"), 8)


def test_the_welcome_gives_the_worker_its_terms() -> None:
    response = convert.worker_welcome_to_proto("w1", 10, 30, 1024, daemon_heartbeats=True)
    assert convert.work_terms_from_proto(response) == convert.WorkTerms("w1", 10, 30, 1024, True)


def test_an_assignment_reads_back_as_the_dispatch_task_the_handler_gets() -> None:
    reports: list[tuple[DispatchTask, float | None, str]] = []
    upstream = [
        TaskResult("u1", TaskState.SUCCEEDED, DispatchResult(b"up", "text/plain")),
        TaskResult("u2", TaskState.FAILED, message="ValueError: no"),
    ]
    action = DispatchAction("q", b"payload", "application/json")
    assignment, size = convert.task_assignment_to_proto(*KEY, action, upstream, 2.5)
    assert size == 64 + len(b"payload") + len(b"up")
    response = convert.work_response_to_proto([assignment])
    tasks, cancels = convert.work_response_from_proto(
        response, lambda *report: reports.append(report)
    )
    assert cancels == []
    assert tasks == [
        DispatchTask(
            "j1",
            "t1",
            2,
            "q",
            b"payload",
            "application/json",
            (
                UpstreamResult("u1", TaskState.SUCCEEDED, b"up", "text/plain"),
                UpstreamResult("u2", TaskState.FAILED, error="ValueError: no"),
            ),
            2.5,
        )
    ]
    tasks[0].report_progress(0.5, "half")
    assert reports == [(tasks[0], 0.5, "half")]


def test_an_assignment_past_its_time_still_says_a_timeout() -> None:
    assignment, _ = convert.task_assignment_to_proto(*KEY, DispatchAction("q"), (), -1.0)
    assert convert.dispatch_task_from_proto(assignment).timeout == 0.001
    untimed, _ = convert.task_assignment_to_proto(*KEY, DispatchAction("q"))
    assert convert.dispatch_task_from_proto(untimed).timeout is None


def test_a_cancel_reads_back_with_its_reason() -> None:
    response = convert.work_response_to_proto(cancels=[convert.task_cancel_to_proto(KEY, "why")])
    assert convert.work_response_from_proto(response) == ([], [(KEY, "why")])


def test_an_empty_response_is_the_daemons_heartbeat() -> None:
    assert convert.work_response_to_proto() == scheduler_pb2.WorkResponse()


def test_results_read_back_as_the_outcome_the_engine_gets() -> None:
    success = convert.work_success_to_proto(KEY, b"done")
    assert convert.report_key(success) == KEY
    assert convert.work_outcome_from_proto(success, 100) == DispatchResult(b"done", "")
    error = convert.work_outcome_from_proto(
        convert.work_error_to_proto(KEY, "no such user", "KeyError", retryable=False), 100
    )
    assert isinstance(error, TaskFailedRemotely)
    assert (str(error), error.retryable) == ("KeyError: no such user", False)


def test_a_success_over_the_daemons_limit_is_a_failure_not_retried() -> None:
    outcome = convert.work_outcome_from_proto(convert.work_success_to_proto(KEY, b"x" * 11), 10)
    assert isinstance(outcome, TaskFailedRemotely)
    assert (outcome.type, outcome.retryable) == ("ResultTooLarge", False)


def test_a_result_without_an_outcome_is_refused() -> None:
    with pytest.raises(ValidationError, match="no outcome") as refused:
        convert.work_outcome_from_proto(work_pb2.WorkResult(job_id="j", task_id="t"), 10)
    assert refused.value.violations[0].field == "update.results.outcome"


@pytest.mark.parametrize("fraction", [None, 0.0, 0.25, 1.0])
def test_progress_reads_back_as_reported(fraction: float | None) -> None:
    progress = convert.work_progress_to_proto(KEY, fraction, "working")
    assert convert.report_key(progress) == KEY
    assert convert.work_progress_from_proto(progress) == (fraction, "working")


@pytest.mark.parametrize("fraction", [math.nan, math.inf, -0.1, 1.5])
def test_progress_outside_0_to_1_is_refused(fraction: float) -> None:
    with pytest.raises(ValidationError, match="between 0 and 1"):
        convert.work_progress_from_proto(convert.work_progress_to_proto(KEY, fraction, ""))


def test_an_update_reads_back_with_its_results_progress_and_draining() -> None:
    result = convert.work_success_to_proto(KEY, b"")
    progress = convert.work_progress_to_proto(KEY, None, "")
    request = convert.worker_update_to_proto([result], [progress], draining=True)
    update = convert.worker_update_from_proto(request)
    assert (list(update.results), list(update.progress), update.draining) == (
        [result],
        [progress],
        True,
    )
    heartbeat = convert.worker_update_from_proto(convert.worker_update_to_proto())
    assert heartbeat == work_pb2.WorkerUpdate()


def test_a_request_after_the_hello_must_be_an_update() -> None:
    with pytest.raises(ProtocolError, match="second hello"):
        convert.worker_update_from_proto(convert.worker_hello_to_proto("w", ["q"], 1))
    with pytest.raises(ValidationError, match="neither hello nor update"):
        convert.worker_update_from_proto(scheduler_pb2.WorkRequest())


@pytest.mark.parametrize("key", [("", "t", 1), ("j", "", 1), ("j", "t", 0)])
def test_a_report_must_name_an_attempt_an_assignment_could_have(key: tuple[str, str, int]) -> None:
    convert.check_report_key(KEY)
    with pytest.raises(ValidationError, match="echo the ids"):
        convert.check_report_key(key)
