"""The fuzzer's judge and its notes: what counts as a failure, and how failures are grouped."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given, settings

from dukat.v1 import scheduler_pb2
from tests.fuzz.dukat_strategies import requests_of, resolve
from tests.fuzz.probe import METHODS, Findings, describe, verdict

Code = grpc.StatusCode


@pytest.mark.parametrize(
    "code", [Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION]
)
def test_ok_and_client_errors_pass(code: grpc.StatusCode) -> None:
    assert verdict(code, "no job 'x'") is None


@pytest.mark.parametrize("code", [Code.UNKNOWN, Code.INTERNAL, Code.UNAVAILABLE, Code.CANCELLED])
def test_daemon_errors_fail(code: grpc.StatusCode) -> None:
    assert verdict(code, "Unexpected <class 'ValueError'>") == (
        f"answered {code.name}: Unexpected <class 'ValueError'>"
    )


def test_an_answer_over_the_daemons_own_limit_fails_but_a_request_over_it_does_not() -> None:
    sent = "SERVER: Sent message larger than max (5243397 vs. 4194304)"
    received = "SERVER: Received message larger than max (5242911 vs. 4194304)"
    assert verdict(Code.RESOURCE_EXHAUSTED, sent) is not None
    assert verdict(Code.RESOURCE_EXHAUSTED, received) is None


def test_findings_group_by_problem_and_keep_the_smallest_request() -> None:
    findings = Findings()
    findings.add("GetJob", "answered UNKNOWN: no job '0123456789abcdef0123456789abcdef'", "big", 9)
    findings.add(
        "GetJob", "answered UNKNOWN: no job 'fedcba9876543210fedcba9876543210'", "small", 2
    )
    findings.add("ListJobs", "answered UNKNOWN: no job 'fedcba9876543210fedcba9876543210'", "x", 1)
    assert len(findings.by_kind) == 2
    report = findings.report()
    assert "(x2)" in report and "smallest request: small" in report


def test_every_method_of_the_contract_is_fuzzed() -> None:
    names = {method.name for method in METHODS}
    assert {"Submit", "Watch", "Cancel", "GetJob", "ListJobs", "Work"} <= names
    assert {"ListBreakers", "GetBreaker", "ConfigureBreaker", "ResetBreaker"} <= names
    assert {"Acquire", "Record"} <= names


@settings(max_examples=50, deadline=None, database=None, derandomize=True)
@given(requests_of(scheduler_pb2.GetJobRequest))
def test_markers_become_the_jobs_the_fuzzer_submitted(request: scheduler_pb2.GetJobRequest) -> None:
    resolve(request, ["older", "newest"])
    assert not request.job_id.startswith("@job")
    assert len(describe(request)) < 2_000
