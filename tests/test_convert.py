"""dukat.convert: both directions, every enum member, and wire-level validation paths."""

from __future__ import annotations

import math

import pytest

from dukat import convert
from dukat.actions import DispatchAction, DispatchResult, ExecAction, ExecResult
from dukat.core.breaker import BreakerTransition, CircuitBreakerState
from dukat.core.events import (
    JobStateChanged,
    Snapshot,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    TaskWaiting,
)
from dukat.core.resources import ResourceRequirement, ResourceType
from dukat.core.results import JobSnapshot, TaskFailure, TaskStatus
from dukat.core.retry import RetryPolicy
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState, TaskState, TriggerRule
from dukat.errors import FieldViolation, ValidationError
from dukat.v1 import breaker_pb2, event_pb2, job_pb2

TABLES = [
    (convert.JOB_STATES, list(JobState), job_pb2.JobState),
    (convert.TASK_STATES, list(TaskState), job_pb2.TaskState),
    (convert.TRIGGER_RULES, list(TriggerRule), job_pb2.TriggerRule),
    (convert.RESOURCE_TYPES, list(ResourceType), job_pb2.ResourceType),
    (convert.OUTPUT_STREAMS, ["stdout", "stderr"], event_pb2.OutputStream),
    (convert.BREAKER_STATES, list(CircuitBreakerState), breaker_pb2.CircuitBreakerState),
    (convert.CALL_OUTCOMES, ["success", "failure", "release"], breaker_pb2.CallOutcome),
]


@pytest.mark.parametrize(("table", "members", "proto_enum"), TABLES, ids=lambda t: str(t)[:20])
def test_every_engine_member_maps_to_the_proto_and_back(table, members, proto_enum) -> None:
    for member in members:
        number = table.to_proto(member)
        assert number != 0
        assert table.from_proto(number, "f") is member or table.from_proto(number, "f") == member


@pytest.mark.parametrize(("table", "members", "proto_enum"), TABLES, ids=lambda t: str(t)[:20])
def test_every_proto_value_but_unspecified_has_an_engine_member(table, members, proto_enum):
    for name, number in proto_enum.items():
        if number == 0:
            with pytest.raises(ValidationError) as caught:
                table.from_proto(number, "x.state")
            assert caught.value.violations == (
                FieldViolation("x.state", caught.value.violations[0].description),
            )
        else:
            member = table.from_proto(number, "f")
            # The names agree too: JOB_STATE_FAILED <-> JobState.FAILED.
            engine_name = member.name if hasattr(member, "name") else member.upper()
            assert name.endswith("_" + engine_name)


def test_unknown_enum_number_is_a_validation_error_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"states\[2\]: JobState unknown value 99"):
        convert.JOB_STATES.from_proto(99, "states[2]")


def full_spec() -> JobSpec:
    return JobSpec(
        tasks=(
            TaskSpec(
                "fetch",
                DispatchAction("io", b"\x00payload", "application/octet-stream"),
                description="get it",
                resources=(
                    ResourceRequirement(ResourceType.CPU, 0.5),
                    ResourceRequirement(ResourceType.CUSTOM, 2, "seats"),
                ),
                circuit_breaker="api",
                wait_for_breaker=True,
                retry=RetryPolicy(
                    max_attempts=3, initial_backoff=0.25, max_backoff=4, multiplier=3, jitter=0
                ),
                timeout=1.5,
                priority=-2,
                labels={"team": "a"},
                max_interruptions=0,
            ),
            TaskSpec(
                "build",
                ExecAction(("make", "-j2"), env={"CC": "gcc"}, cwd="/src", stdin=b"in"),
                dependencies=("fetch",),
                trigger_rule=TriggerRule.ALL_DONE,
            ),
        ),
        labels={"app": "x"},
        fail_fast=True,
        max_concurrency=4,
    )


def test_job_spec_round_trip() -> None:
    spec = full_spec()
    message = convert.job_spec_to_proto(spec)
    # Through bytes, as it travels.
    back = convert.job_spec_from_proto(job_pb2.JobSpec.FromString(message.SerializeToString()))
    assert back == spec


def test_proto_defaults_become_the_engine_defaults() -> None:
    message = job_pb2.JobSpec(tasks=[job_pb2.TaskSpec(id="a", dispatch={"queue": "q"})])
    message.tasks[0].retry.max_attempts = 0  # set but all zero: every default
    spec = convert.job_spec_from_proto(message)
    task = spec.tasks[0]
    assert spec.max_concurrency is None
    assert task.retry == RetryPolicy(
        max_attempts=1, initial_backoff=1.0, max_backoff=60.0, multiplier=2.0, jitter=0.2
    )
    assert task.timeout is None
    assert task.circuit_breaker is None
    assert task.trigger_rule is TriggerRule.ALL_SUCCESS
    assert task.action == DispatchAction("q", b"", "")
    assert task.max_interruptions == 3


def test_max_interruptions_travels_only_when_it_is_not_the_default() -> None:
    """Unset is 3 (the contract says so); 0, at most once, must be sent as set."""
    message = convert.job_spec_to_proto(full_spec())
    assert message.tasks[0].HasField("max_interruptions")
    assert message.tasks[0].max_interruptions == 0
    assert not message.tasks[1].HasField("max_interruptions")


def test_explicit_zero_jitter_is_kept() -> None:
    message = job_pb2.JobSpec(tasks=[job_pb2.TaskSpec(id="a", dispatch={"queue": "q"})])
    message.tasks[0].retry.jitter = 0.0
    assert convert.job_spec_from_proto(message).tasks[0].retry.jitter == 0.0


def violations(message: job_pb2.JobSpec) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        convert.job_spec_from_proto(message)
    return {v.field: v.description for v in caught.value.violations}


def test_wire_problems_are_all_reported_with_proto_paths() -> None:
    message = job_pb2.JobSpec(
        tasks=[
            job_pb2.TaskSpec(id="ok", dispatch={"queue": "q"}),
            job_pb2.TaskSpec(id="none"),
            job_pb2.TaskSpec(id="empty", exec={}),
            job_pb2.TaskSpec(id="noq", dispatch={}),
            job_pb2.TaskSpec(
                id="res",
                dispatch={"queue": "q"},
                resources=[
                    {"amount": 1},
                    {"type": job_pb2.RESOURCE_TYPE_CUSTOM, "amount": 1},
                    {"type": job_pb2.RESOURCE_TYPE_CPU, "amount": 1, "name": "x"},
                    {"type": job_pb2.RESOURCE_TYPE_CPU, "amount": -1},
                    {"type": job_pb2.RESOURCE_TYPE_GPU, "amount": math.nan},
                ],
            ),
            job_pb2.TaskSpec(id="rule", dispatch={"queue": "q"}, trigger_rule=7),
        ]
    )
    found = violations(message)
    assert set(found) == {
        "job.tasks[1].action",
        "job.tasks[2].exec.argv",
        "job.tasks[3].dispatch.queue",
        "job.tasks[4].resources[0].type",
        "job.tasks[4].resources[1].name",
        "job.tasks[4].resources[2].name",
        "job.tasks[4].resources[3].amount",
        "job.tasks[4].resources[4].amount",
        "job.tasks[5].trigger_rule",
    }
    assert "argv is empty" in found["job.tasks[2].exec.argv"]


def test_the_message_names_the_first_task_and_field() -> None:
    message = job_pb2.JobSpec(tasks=[job_pb2.TaskSpec(id="x"), job_pb2.TaskSpec(id="y")])
    with pytest.raises(ValidationError) as caught:
        convert.job_spec_from_proto(message)
    assert caught.value.task_id == "x"
    assert str(caught.value).startswith("task 'x': job.tasks[0].action: ")
    assert str(caught.value).endswith("(and 1 more problem)")


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("max_attempts", -1, "max_attempts"),
        ("multiplier", 0.5, "multiplier"),
        ("jitter", 1.5, "jitter"),
        ("initial_backoff", -1, "initial_backoff"),
        ("max_backoff", 0.5, "max_backoff"),  # below the default initial_backoff of 1 s
    ],
)
def test_bad_retry_values_name_the_retry_field(field: str, value: float, path: str) -> None:
    message = job_pb2.JobSpec(tasks=[job_pb2.TaskSpec(id="t", dispatch={"queue": "q"})])
    retry = message.tasks[0].retry
    if field in ("initial_backoff", "max_backoff"):
        getattr(retry, field).FromNanoseconds(int(value * 1e9))
    else:
        setattr(retry, field, value)
    assert list(violations(message)) == [f"job.tasks[0].retry.{path}"]


def test_exec_argv_with_an_empty_program_and_a_nul() -> None:
    message = job_pb2.JobSpec(tasks=[job_pb2.TaskSpec(id="t", exec={"argv": ["", "a\0b"]})])
    assert set(violations(message)) == {"job.tasks[0].exec.argv[0]", "job.tasks[0].exec.argv[1]"}


def test_at_path_moves_engine_paths_under_the_request_field() -> None:
    error = ValidationError(
        "task 'a': bad", task_id="a", violations=[FieldViolation("tasks[0].id", "x")]
    )
    moved = convert.at_path(error, "job")
    assert moved.violations == (FieldViolation("job.tasks[0].id", "x"),)
    assert str(moved) == "task 'a': bad" and moved.task_id == "a"


def snapshot() -> JobSnapshot:
    return JobSnapshot(
        job_id="j1",
        state=JobState.FAILED,
        tasks=(
            TaskStatus(
                "a",
                TaskState.SUCCEEDED,
                1,
                "",
                10.5,
                11.25,
                1.0,
                "done",
                "first",
                carried_from="j0",
            ),
            TaskStatus("b", TaskState.FAILED, 3, "boom", 11.5, 12.0, None, "", "", None, 2),
            TaskStatus("c", TaskState.SKIPPED, 0, "upstream 'b' failed"),
            TaskStatus(
                "d",
                TaskState.READY,
                waiting_for="a worker for queue 'q' (none connected)",
                waiting_for_queue="q",
            ),
        ),
        labels={"k": "v"},
        created_at=10.0,
        finished_at=12.5,
        last_sequence=17,
        message="1 of 3 tasks failed",
    )


def test_job_snapshot_round_trip_and_counts() -> None:
    message = convert.job_to_proto(snapshot())
    assert convert.job_from_proto(message) == snapshot()
    counts = message.task_counts
    assert (counts.succeeded, counts.failed, counts.skipped, counts.running) == (1, 1, 1, 0)
    assert not message.tasks[1].HasField("progress")
    assert [task.interruptions for task in message.tasks] == [0, 2, 0, 0]
    assert [task.carried_from for task in message.tasks] == ["j0", "", "", ""]
    listed = convert.job_to_proto(snapshot(), with_tasks=False)
    assert not listed.tasks and listed.task_counts == counts


def with_results(budget: int | None) -> tuple[JobSnapshot, job_pb2.Job]:
    tasks = (
        TaskStatus("d", TaskState.SUCCEEDED, 1, result=DispatchResult(b"\x00\xff", "app/x")),
        TaskStatus("e", TaskState.SUCCEEDED, 1, result=ExecResult(0, b"out\n", b"err\n")),
        TaskStatus("p", TaskState.SUCCEEDED, 1, result=object()),  # in-process: no wire form
        TaskStatus("f", TaskState.FAILED, 1, "boom"),
    )
    job = JobSnapshot("j2", JobState.FAILED, tasks)
    wire = job_pb2.Job.FromString(
        convert.job_to_proto(job, result_budget=budget).SerializeToString()
    )
    return job, wire


def test_dispatch_and_exec_results_round_trip_within_the_budget() -> None:
    job, wire = with_results(budget=1_000)
    assert [t.WhichOneof("kind") for t in (t.result for t in wire.tasks[:2])] == [
        "dispatch",
        "exec",
    ]
    assert not any(t.result_omitted for t in wire.tasks)
    back = convert.job_from_proto(wire)
    assert back.tasks[:2] == job.tasks[:2]
    assert back.task("p").result is None and back.task("f").result is None


def test_results_over_the_budget_are_marked_omitted_and_none_go_without_one() -> None:
    _, wire = with_results(budget=20)  # the dispatch result (13 bytes) fits, then no more
    assert [(t.HasField("result"), t.result_omitted) for t in wire.tasks] == [
        (True, False),
        (False, True),
        (False, False),
        (False, False),
    ]
    _, unbudgeted = with_results(budget=None)  # Watch snapshots, ListJobs: no results at all
    assert not any(t.HasField("result") or t.result_omitted for t in unbudgeted.tasks)
    only = convert.job_to_proto(with_results(None)[0], result_budget=100, task_ids=["e"])
    assert [t.id for t in only.tasks] == ["e"] and only.task_counts.succeeded == 3


PROCESS_FAILURE = TaskFailure(
    "TaskProcessError", "'sh' exited with code 7", 7, None, b"o\n", b"e\n"
)


def failed(*failures: TaskFailure) -> JobSnapshot:
    tasks = tuple(
        TaskStatus(f"f{i}", TaskState.FAILED, 1, f"{f.type}: {f.message}", failure=f)
        for i, f in enumerate(failures)
    )
    return JobSnapshot("j3", JobState.FAILED, tasks)


def test_a_failure_round_trips_with_its_tails_in_get_job_and_without_in_snapshots() -> None:
    remote = TaskFailure("KeyError", "no such user")
    killed = TaskFailure("TaskProcessError", "'sh' was killed by signal 9 (SIGKILL)", signal=9)
    job = failed(PROCESS_FAILURE, remote, killed)
    got = convert.job_from_proto(convert.job_to_proto(job, result_budget=1_000))
    assert got.tasks == job.tasks
    assert got.task("f0").failure.as_error().type == "TaskProcessError"
    watched = convert.job_from_proto(convert.job_to_proto(job))  # a snapshot: no budget
    assert watched.task("f0").failure == TaskFailure(
        "TaskProcessError", "'sh' exited with code 7", 7
    )
    assert watched.task("f1").failure == remote


def test_failure_tails_over_the_budget_are_left_out_and_marked_omitted() -> None:
    wire = convert.job_to_proto(failed(PROCESS_FAILURE, PROCESS_FAILURE), result_budget=5)
    first, second = wire.tasks
    assert (first.failure.stdout, first.failure.stderr, first.result_omitted) == (
        b"o\n",
        b"e\n",
        False,
    )
    assert (second.failure.exit_code, second.failure.stderr, second.result_omitted) == (
        7,
        b"",
        True,
    )


def test_a_result_kind_this_code_does_not_know_is_no_result() -> None:
    assert convert.task_result_from_proto(job_pb2.TaskResultValue()) is None
    assert convert.task_result_to_proto(b"bare bytes") is None


EVENTS = [
    TaskStateChanged(1, "j1", 100.25, "a", TaskState.RUNNING, 1, ""),
    TaskStateChanged(2, "j1", 100.5, "a", TaskState.RETRYING, 1, "boom; retrying"),
    JobStateChanged(3, "j1", 101.0, JobState.CANCELLED, "job cancelled"),
    TaskProgress(4, "j1", 101.5, "a", 0.25, "a quarter"),
    TaskProgress(5, "j1", 101.5, "a", None, "only words"),
    TaskOutput(6, "j1", 102.0, "a", "stderr", "oops\n"),
    TaskWaiting(7, "j1", 102.5, "d", "a worker for queue 'q' (none connected)", "q"),
    Snapshot(17, "j1", 103.0, snapshot()),
    BreakerTransition(
        "api", CircuitBreakerState.CLOSED, CircuitBreakerState.OPEN, "5 failures", 104.0
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_round_trip(event) -> None:
    message = convert.event_to_proto(event)
    wire = event_pb2.Event.FromString(message.SerializeToString())
    assert convert.event_from_proto(wire) == event


def test_breaker_events_belong_to_no_job() -> None:
    message = convert.event_to_proto(EVENTS[-1])
    assert message.sequence == 0 and message.job_id == ""
    assert message.WhichOneof("kind") == "breaker_state"


def test_an_event_kind_this_code_does_not_know_is_skipped() -> None:
    assert convert.event_from_proto(event_pb2.Event(sequence=1, job_id="j")) is None


def test_an_action_without_a_wire_form_is_refused() -> None:
    spec = JobSpec(tasks=(TaskSpec("a", object()),))
    with pytest.raises(TypeError, match="no wire form"):
        convert.job_spec_to_proto(spec)


def test_a_daemon_status_round_trips() -> None:
    import dataclasses

    from dukat.daemon_status import DaemonStatus, QueueStatus, RayClusterStatus, ResourceStatus

    status = DaemonStatus(
        version="1.2.3",
        started_at=1_700_000_000.0,
        listen=("unix:/run/d.sock", "127.0.0.1:7070"),
        state_dir=None,
        allow_exec=True,
        max_concurrency=64,
        tasks_running=3,
        jobs_live=2,
        jobs_finished=5,
        resources=(ResourceStatus("cpu", 1.0, 0.5), ResourceStatus("licence", 4.0, 1.0)),
        queues=(QueueStatus("q", 2, 8),),
    )
    assert convert.daemon_status_from_proto(convert.daemon_status_to_proto(status)) == status
    assert status.executor == "local" and status.ray is None
    on_ray = dataclasses.replace(
        status, executor="ray", ray=RayClusterStatus("auto", False, "not connected yet", 3)
    )
    assert convert.daemon_status_from_proto(convert.daemon_status_to_proto(on_ray)) == on_ray
