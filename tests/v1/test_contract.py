"""The wire contract: the names ARCHITECTURE.md fixes, read back from the generated descriptors.

Clients in other languages and outside tests use these names, so a rename must fail here
first. Fields may be added (the tables below are what must be there, not all there is);
nothing listed may change name, type or streaming kind.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import subprocess
import sys
import textwrap
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor as _descriptor
from google.protobuf.duration_pb2 import Duration

import dukat.v1
from dukat import actions
from dukat.core import breaker as core_breaker
from dukat.core import events as core_events
from dukat.core import resources as core_resources
from dukat.core import results as core_results
from dukat.core import retry as core_retry
from dukat.core import spec as core_spec
from dukat.core import states as core_states
from dukat.v1 import (
    breaker_pb2,
    daemon_pb2,
    event_pb2,
    job_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
    work_pb2,
)

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "protos"
GENERATED_DIR = REPO / "dukat" / "v1"
FILES = (breaker_pb2, daemon_pb2, event_pb2, job_pb2, scheduler_pb2, work_pb2)
POOL = job_pb2.DESCRIPTOR.pool

# service -> rpc -> (request, response, client streams, server streams)
SERVICES = {
    "dukat.v1.SchedulerService": {
        "Submit": ("SubmitRequest", "SubmitResponse", False, False),
        "Watch": ("WatchRequest", "WatchResponse", False, True),
        "Cancel": ("CancelRequest", "CancelResponse", False, False),
        "GetJob": ("GetJobRequest", "GetJobResponse", False, False),
        "ListJobs": ("ListJobsRequest", "ListJobsResponse", False, False),
        "Work": ("WorkRequest", "WorkResponse", True, True),
    },
    "dukat.v1.CircuitBreakerService": {
        "ListBreakers": ("ListBreakersRequest", "ListBreakersResponse", False, False),
        "GetBreaker": ("GetBreakerRequest", "GetBreakerResponse", False, False),
        "ConfigureBreaker": ("ConfigureBreakerRequest", "ConfigureBreakerResponse", False, False),
        "ResetBreaker": ("ResetBreakerRequest", "ResetBreakerResponse", False, False),
        "Acquire": ("AcquireRequest", "AcquireResponse", False, False),
        "Record": ("RecordRequest", "RecordResponse", False, False),
    },
    "dukat.v1.DaemonService": {
        "GetStatus": ("GetStatusRequest", "GetStatusResponse", False, False),
    },
}

DURATION = "google.protobuf.Duration"
TIMESTAMP = "google.protobuf.Timestamp"
LABELS = "map<string, string>"

# message -> field -> type, as `describe()` spells it. Types in dukat.v1 are named short.
MESSAGES: dict[str, dict[str, str]] = {
    # scheduler.proto
    "SubmitRequest": {"job": "JobSpec", "request_id": "string", "rerun_of": "string"},
    "SubmitResponse": {"job_id": "string"},
    "WatchRequest": {"job_id": "string", "after_sequence": "int64", "job_events_only": "bool"},
    "WatchResponse": {"events": "repeated Event"},
    "CancelRequest": {"job_id": "string", "task_ids": "repeated string"},
    "CancelResponse": {"cancelled_count": "int32"},
    "GetJobRequest": {"job_id": "string", "task_ids": "repeated string"},
    "GetJobResponse": {"job": "Job"},
    "ListJobsRequest": {
        "states": "repeated JobState",
        "labels": LABELS,
        "page_size": "int32",
        "page_token": "string",
    },
    "ListJobsResponse": {"jobs": "repeated Job", "next_page_token": "string"},
    "WorkRequest": {"hello": "WorkerHello", "update": "WorkerUpdate"},
    "WorkResponse": {
        "welcome": "WorkerWelcome",
        "assignments": "repeated TaskAssignment",
        "cancels": "repeated TaskCancel",
    },
    # job.proto
    "JobSpec": {
        "tasks": "repeated TaskSpec",
        "labels": LABELS,
        "fail_fast": "bool",
        "max_concurrency": "int32",
    },
    "TaskSpec": {
        "id": "string",
        "description": "string",
        "dependencies": "repeated string",
        "resources": "repeated ResourceRequirement",
        "circuit_breaker": "string",
        "wait_for_breaker": "bool",
        "retry": "RetryPolicy",
        "timeout": DURATION,
        "priority": "int32",
        "trigger_rule": "TriggerRule",
        "labels": LABELS,
        "exec": "ExecAction",
        "dispatch": "DispatchAction",
    },
    "ResourceRequirement": {"type": "ResourceType", "amount": "double", "name": "string"},
    "RetryPolicy": {
        "max_attempts": "int32",
        "initial_backoff": DURATION,
        "max_backoff": DURATION,
        "multiplier": "double",
        "jitter": "optional double",
    },
    "ExecAction": {
        "argv": "repeated string",
        "env": LABELS,
        "cwd": "string",
        "stdin": "bytes",
    },
    "DispatchAction": {"queue": "string", "payload": "bytes", "content_type": "string"},
    "Job": {
        "job_id": "string",
        "state": "JobState",
        "tasks": "repeated TaskStatus",
        "labels": LABELS,
        "created_at": TIMESTAMP,
        "finished_at": TIMESTAMP,
        "last_sequence": "int64",
        "message": "string",
        "task_counts": "TaskCounts",
    },
    "TaskStatus": {
        "id": "string",
        "state": "TaskState",
        "attempts": "int32",
        "error": "string",
        "started_at": TIMESTAMP,
        "finished_at": TIMESTAMP,
        "progress": "optional double",
        "progress_message": "string",
        "description": "string",
        "result": "TaskResultValue",
        "result_omitted": "bool",
        "failure": "TaskFailure",
        "waiting_for": "string",
        "waiting_for_queue": "string",
        "carried_from": "string",
    },
    "TaskFailure": {
        "type": "string",
        "message": "string",
        "exit_code": "int32",
        "signal": "int32",
        "stdout": "bytes",
        "stderr": "bytes",
    },
    "TaskResultValue": {"dispatch": "DispatchResult", "exec": "ExecResult"},
    "DispatchResult": {"payload": "bytes", "content_type": "string"},
    "ExecResult": {"exit_code": "int32", "stdout": "bytes", "stderr": "bytes"},
    # event.proto
    "Event": {
        "sequence": "int64",
        "job_id": "string",
        "time": TIMESTAMP,
        "snapshot": "Snapshot",
        "job_state": "JobStateChanged",
        "task_state": "TaskStateChanged",
        "progress": "TaskProgress",
        "output": "TaskOutput",
        "breaker_state": "BreakerStateChanged",
        "task_waiting": "TaskWaiting",
    },
    "Snapshot": {"job": "Job"},
    "JobStateChanged": {"state": "JobState", "message": "string"},
    "TaskStateChanged": {
        "task_id": "string",
        "state": "TaskState",
        "attempt": "int32",
        "message": "string",
    },
    "TaskProgress": {"task_id": "string", "fraction": "optional double", "message": "string"},
    "TaskOutput": {"task_id": "string", "stream": "OutputStream", "text": "string"},
    "TaskWaiting": {"task_id": "string", "waiting_for": "string", "queue": "string"},
    # work.proto
    "WorkerHello": {
        "worker_id": "string",
        "queues": "repeated string",
        "max_in_flight": "int32",
    },
    "WorkerUpdate": {"results": "repeated WorkResult", "progress": "repeated WorkProgress"},
    "TaskAssignment": {
        "job_id": "string",
        "task_id": "string",
        "attempt": "int32",
        "queue": "string",
        "payload": "bytes",
        "content_type": "string",
        "upstream_results": "repeated UpstreamResult",
        "timeout": DURATION,
    },
    "UpstreamResult": {
        "task_id": "string",
        "state": "TaskState",
        "payload": "bytes",
        "content_type": "string",
    },
    "TaskCancel": {"job_id": "string", "task_id": "string", "attempt": "int32"},
    "WorkResult": {
        "job_id": "string",
        "task_id": "string",
        "attempt": "int32",
        "success": "WorkSuccess",
        "error": "WorkError",
    },
    "WorkSuccess": {"payload": "bytes", "content_type": "string"},
    "WorkError": {"message": "string", "retryable": "bool"},
    "WorkProgress": {
        "job_id": "string",
        "task_id": "string",
        "attempt": "int32",
        "fraction": "optional double",
        "message": "string",
    },
    # breaker.proto
    "CircuitBreakerConfig": {
        "failure_threshold": "int32",
        "timeout": DURATION,
        "half_open_max_calls": "int32",
        "success_threshold": "int32",
        "failure_rate_threshold": "double",
        "window_size": "int32",
    },
    "CircuitBreaker": {
        "name": "string",
        "state": "CircuitBreakerState",
        "config": "CircuitBreakerConfig",
    },
    "BreakerStateChanged": {
        "name": "string",
        "from_state": "CircuitBreakerState",
        "to_state": "CircuitBreakerState",
        "reason": "string",
    },
    "ListBreakersResponse": {"breakers": "repeated CircuitBreaker"},
    "GetBreakerRequest": {"name": "string"},
    "GetBreakerResponse": {"breaker": "CircuitBreaker"},
    "ConfigureBreakerRequest": {"name": "string", "config": "CircuitBreakerConfig"},
    "ConfigureBreakerResponse": {"breaker": "CircuitBreaker"},
    "ResetBreakerRequest": {"name": "string"},
    "ResetBreakerResponse": {"breaker": "CircuitBreaker"},
    "AcquireRequest": {"name": "string"},
    "AcquireResponse": {
        "allowed": "bool",
        "permit": "int64",
        "retry_after": DURATION,
        "state": "CircuitBreakerState",
    },
    "RecordRequest": {
        "name": "string",
        "permit": "int64",
        "outcome": "CallOutcome",
        "error": "string",
    },
    # daemon.proto
    "GetStatusRequest": {},
    "GetStatusResponse": {"status": "DaemonStatus"},
    "DaemonStatus": {
        "version": "string",
        "started_at": TIMESTAMP,
        "listen": "repeated string",
        "state_dir": "string",
        "allow_exec": "bool",
        "max_concurrency": "int32",
        "tasks_running": "int32",
        "jobs_live": "int32",
        "jobs_finished": "int32",
        "resources": "repeated ResourceStatus",
        "queues": "repeated QueueStatus",
    },
    "ResourceStatus": {"name": "string", "capacity": "double", "used": "double"},
    "QueueStatus": {"name": "string", "workers": "int32", "slots": "int32"},
}

# message -> oneof -> its fields, exactly.
ONEOFS = {
    "TaskSpec": {"action": {"exec", "dispatch"}},
    "Event": {
        "kind": {
            "snapshot",
            "job_state",
            "task_state",
            "progress",
            "output",
            "breaker_state",
            "task_waiting",
        }
    },
    "WorkRequest": {"kind": {"hello", "update"}},
    "WorkResult": {"outcome": {"success", "error"}},
    "TaskResultValue": {"kind": {"dispatch", "exec"}},
}

# enum -> its values in order after `<ENUM>_UNSPECIFIED = 0` (values may be appended, never
# renumbered).
ENUMS = {
    "JobState": ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
    "TaskState": [
        "PENDING",
        "READY",
        "RUNNING",
        "RETRYING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLED",
        "SKIPPED",
    ],
    "TriggerRule": ["ALL_SUCCESS", "ALL_DONE"],
    "ResourceType": ["CPU", "MEMORY", "NETWORK", "DISK", "GPU", "CUSTOM"],
    "CircuitBreakerState": ["CLOSED", "OPEN", "HALF_OPEN"],
    "CallOutcome": ["SUCCESS", "FAILURE", "RELEASE"],
    "OutputStream": ["STDOUT", "STDERR"],
}

_SCALARS = {
    _descriptor.FieldDescriptor.TYPE_BOOL: "bool",
    _descriptor.FieldDescriptor.TYPE_BYTES: "bytes",
    _descriptor.FieldDescriptor.TYPE_DOUBLE: "double",
    _descriptor.FieldDescriptor.TYPE_INT32: "int32",
    _descriptor.FieldDescriptor.TYPE_INT64: "int64",
    _descriptor.FieldDescriptor.TYPE_STRING: "string",
}


def _type_name(field: _descriptor.FieldDescriptor) -> str:
    if field.message_type is not None:
        name = field.message_type.full_name
    elif field.enum_type is not None:
        name = field.enum_type.full_name
    else:
        return _SCALARS[field.type]
    return name.removeprefix("dukat.v1.")


def describe(field: _descriptor.FieldDescriptor) -> str:
    """A field's type as the .proto spells it: `repeated Event`, `map<string, string>`, ..."""
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key, value = (_type_name(entry.fields_by_name[n]) for n in ("key", "value"))
        return f"map<{key}, {value}>"
    if field.is_repeated:
        return f"repeated {_type_name(field)}"
    # proto3 `optional`: a scalar with presence, in no oneof or in its synthetic `_name` one
    # (the real oneofs of this contract hold messages only).
    oneof = field.containing_oneof
    if field.message_type is None and field.has_presence:
        assert oneof is None or oneof.name.startswith("_"), field.full_name
        return f"optional {_type_name(field)}"
    return _type_name(field)


def message(name: str) -> _descriptor.Descriptor:
    return POOL.FindMessageTypeByName(f"dukat.v1.{name}")


def all_enums() -> list[_descriptor.EnumDescriptor]:
    return [e for module in FILES for e in module.DESCRIPTOR.enum_types_by_name.values()]


# -- names ---------------------------------------------------------------------------------


def test_every_file_is_in_package_dukat_v1_and_its_directory() -> None:
    for module in FILES:
        assert module.DESCRIPTOR.package == "dukat.v1"
        assert module.DESCRIPTOR.name.startswith("dukat/v1/")
    on_disk = sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))
    assert on_disk == sorted(module.DESCRIPTOR.name for module in FILES)


@pytest.mark.parametrize("service", SERVICES)
def test_services_and_their_rpcs(service: str) -> None:
    descriptor = POOL.FindServiceByName(service)
    rpcs = {
        method.name: (
            method.input_type.full_name.removeprefix("dukat.v1."),
            method.output_type.full_name.removeprefix("dukat.v1."),
            method.client_streaming,
            method.server_streaming,
        )
        for method in descriptor.methods
    }
    assert rpcs == SERVICES[service]


def test_each_rpc_has_its_own_request_and_response() -> None:
    seen: set[str] = set()
    for service in SERVICES:
        for method in POOL.FindServiceByName(service).methods:
            assert method.input_type.name == f"{method.name}Request"
            assert method.output_type.name == f"{method.name}Response"
            seen |= {method.input_type.name, method.output_type.name}
    assert len(seen) == 2 * sum(len(rpcs) for rpcs in SERVICES.values())


@pytest.mark.parametrize("name", MESSAGES)
def test_message_fields(name: str) -> None:
    fields = {f.name: describe(f) for f in message(name).fields}
    expected = MESSAGES[name]
    assert {f: fields.get(f) for f in expected} == expected


@pytest.mark.parametrize("name", ONEOFS)
def test_oneofs(name: str) -> None:
    real = {
        oneof.name: {f.name for f in oneof.fields}
        for oneof in message(name).oneofs
        if not oneof.name.startswith("_")  # the synthetic oneofs of proto3 `optional`
    }
    assert real == ONEOFS[name]


def enum_prefix(name: str) -> str:
    """`JobState` -> `JOB_STATE_`: what buf's ENUM_VALUE_PREFIX asks of every value."""
    return "".join(f"_{c}" if c.isupper() else c.upper() for c in name).lstrip("_") + "_"


@pytest.mark.parametrize("name", ENUMS)
def test_enum_values(name: str) -> None:
    enum_descriptor = POOL.FindEnumTypeByName(f"dukat.v1.{name}")
    prefix = enum_prefix(name)
    expected = [f"{prefix}UNSPECIFIED", *(prefix + value for value in ENUMS[name])]
    values = list(enum_descriptor.values)[: len(expected)]
    assert [v.name for v in values] == expected
    assert [v.number for v in values] == list(range(len(expected)))


def test_every_enum_is_prefixed_with_an_unspecified_zero() -> None:
    for enum_descriptor in all_enums():
        prefix = enum_prefix(enum_descriptor.name)
        assert enum_descriptor.values_by_number[0].name == f"{prefix}UNSPECIFIED"
        for value in enum_descriptor.values:
            assert value.name.startswith(prefix), value.name


def test_breaker_permit_is_the_int64_state_generation() -> None:
    assert describe(message("AcquireResponse").fields_by_name["permit"]) == "int64"
    assert describe(message("CircuitBreaker").fields_by_name["generation"]) == "int64"


# -- the engine's words ----------------------------------------------------------------------


def _wire_names(name: str) -> set[str]:
    enum_descriptor = POOL.FindEnumTypeByName(f"dukat.v1.{name}")
    prefix = enum_prefix(name)
    return {v.name.removeprefix(prefix) for v in enum_descriptor.values if v.number != 0}


@pytest.mark.parametrize(
    ("wire", "engine"),
    [
        ("JobState", core_states.JobState),
        ("TaskState", core_states.TaskState),
        ("TriggerRule", core_states.TriggerRule),
        ("ResourceType", core_resources.ResourceType),
        ("CircuitBreakerState", core_breaker.CircuitBreakerState),
    ],
)
def test_wire_enums_have_the_engine_enums_values(wire: str, engine: type[enum.Enum]) -> None:
    # Both ways: a state added on one side only would have nothing to map to.
    assert _wire_names(wire) == {member.name for member in engine}


def test_call_outcomes_are_the_breakers_methods() -> None:
    for outcome in _wire_names("CallOutcome"):
        assert callable(getattr(core_breaker.CircuitBreaker, outcome.lower()))


def _fields_of(engine_type: type) -> set[str]:
    if dataclasses.is_dataclass(engine_type):
        return {f.name for f in dataclasses.fields(engine_type)}
    return set(engine_type._fields)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("wire", "engine", "renamed", "engine_only"),
    [
        ("JobSpec", core_spec.JobSpec, {}, set()),
        ("TaskSpec", core_spec.TaskSpec, {}, {"action"}),  # a oneof on the wire
        ("ResourceRequirement", core_resources.ResourceRequirement, {}, set()),
        ("RetryPolicy", core_retry.RetryPolicy, {}, {"retry_on"}),  # Python types
        ("TaskStatus", core_results.TaskStatus, {}, set()),
        ("DispatchResult", actions.DispatchResult, {}, set()),
        ("ExecResult", actions.ExecResult, {}, set()),
        ("TaskFailure", core_results.TaskFailure, {}, set()),
        ("Job", core_results.JobSnapshot, {}, set()),
        (
            "CircuitBreakerConfig",
            core_breaker.CircuitBreakerConfig,
            {"timeout_seconds": "timeout"},
            set(),
        ),
        ("BreakerStateChanged", core_breaker.BreakerTransition, {}, {"time"}),  # Event.time
        ("Snapshot", core_events.Snapshot, {}, set()),
        ("JobStateChanged", core_events.JobStateChanged, {}, set()),
        ("TaskStateChanged", core_events.TaskStateChanged, {}, set()),
        ("TaskProgress", core_events.TaskProgress, {}, set()),
        ("TaskOutput", core_events.TaskOutput, {}, set()),
        ("TaskWaiting", core_events.TaskWaiting, {}, set()),
    ],
)
def test_wire_messages_use_the_engines_field_names(
    wire: str, engine: type, renamed: dict[str, str], engine_only: set[str]
) -> None:
    event_base = {"sequence", "job_id", "time"} if issubclass(engine, core_events.Event) else set()
    expected = {renamed.get(f, f) for f in _fields_of(engine) - event_base - engine_only}
    assert expected <= set(message(wire).fields_by_name)


# -- the generated code ----------------------------------------------------------------------


def test_generated_files_say_do_not_edit() -> None:
    files = sorted(p for p in GENERATED_DIR.iterdir() if p.suffix in {".py", ".pyi"})
    assert {p.name for p in files} >= {
        f"{m.__name__.rsplit('.', 1)[1]}{suffix}" for m in FILES for suffix in (".py", ".pyi")
    }
    for path in files:
        head = "\n".join(path.read_text().splitlines()[:3]).lower()
        assert "do not edit" in head, path


def test_the_package_says_what_it_is() -> None:
    assert "dukat.v1" in (dukat.v1.__doc__ or "")


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromTimedelta(datetime.timedelta(seconds=seconds))
    return duration


def sample_job() -> job_pb2.JobSpec:
    return job_pb2.JobSpec(
        tasks=[
            job_pb2.TaskSpec(
                id="build",
                description="compile",
                resources=[
                    job_pb2.ResourceRequirement(type=job_pb2.RESOURCE_TYPE_CPU, amount=0.5),
                    job_pb2.ResourceRequirement(
                        type=job_pb2.RESOURCE_TYPE_CUSTOM, amount=1, name="licence"
                    ),
                ],
                retry=job_pb2.RetryPolicy(
                    max_attempts=3,
                    initial_backoff=_duration(0.5),
                    max_backoff=_duration(10),
                    multiplier=2.0,
                    jitter=0.0,
                ),
                timeout=_duration(30),
                priority=5,
                labels={"team": "infra"},
                exec=job_pb2.ExecAction(
                    argv=["make", "all"], env={"CC": "clang"}, cwd="/src", stdin=b"\x00yes\n"
                ),
            ),
            job_pb2.TaskSpec(
                id="upload",
                dependencies=["build"],
                circuit_breaker="s3",
                wait_for_breaker=True,
                trigger_rule=job_pb2.TRIGGER_RULE_ALL_DONE,
                dispatch=job_pb2.DispatchAction(
                    queue="uploads", payload=b'{"bucket": "b"}', content_type="application/json"
                ),
            ),
        ],
        labels={"owner": "ci"},
        fail_fast=True,
        max_concurrency=2,
    )


def test_a_job_spec_round_trips() -> None:
    job = sample_job()
    request = scheduler_pb2.SubmitRequest(job=job, request_id="r-1")
    back = scheduler_pb2.SubmitRequest.FromString(request.SerializeToString())
    assert back == request
    build, upload = back.job.tasks
    assert build.WhichOneof("action") == "exec"
    assert list(build.exec.argv) == ["make", "all"]
    assert build.exec.stdin == b"\x00yes\n"
    assert build.retry.HasField("jitter") and build.retry.jitter == 0.0  # no jitter, not unset
    assert build.timeout.ToTimedelta().total_seconds() == 30
    assert build.resources[1].name == "licence"
    assert upload.WhichOneof("action") == "dispatch"
    assert upload.dispatch.payload == b'{"bucket": "b"}'
    assert upload.trigger_rule == job_pb2.TRIGGER_RULE_ALL_DONE
    assert upload.wait_for_breaker and upload.circuit_breaker == "s3"
    assert not upload.HasField("retry") and not upload.HasField("timeout")
    assert dict(back.job.labels) == {"owner": "ci"} and back.job.fail_fast


def test_an_event_round_trips_with_its_kind() -> None:
    event = event_pb2.Event(
        sequence=7,
        job_id="j1",
        progress=event_pb2.TaskProgress(task_id="t", fraction=0.0, message="starting"),
    )
    back = event_pb2.Event.FromString(event.SerializeToString())
    assert back.WhichOneof("kind") == "progress"
    assert back.progress.HasField("fraction")  # 0.0 is a fraction, not "no fraction"


# -- a client built from protos/ alone -------------------------------------------------------


class _Scheduler(scheduler_pb2_grpc.SchedulerServiceServicer):
    """Answers Submit and GetJob, enough for a client to talk to."""

    def __init__(self) -> None:
        self.submitted: list[scheduler_pb2.SubmitRequest] = []

    def Submit(self, request: scheduler_pb2.SubmitRequest, context: object) -> object:
        self.submitted.append(request)
        return scheduler_pb2.SubmitResponse(job_id=f"job-{len(self.submitted)}")

    def GetJob(self, request: scheduler_pb2.GetJobRequest, context: object) -> object:
        spec = self.submitted[int(request.job_id.removeprefix("job-")) - 1].job
        return scheduler_pb2.GetJobResponse(
            job=job_pb2.Job(
                job_id=request.job_id,
                state=job_pb2.JOB_STATE_RUNNING,
                tasks=[
                    job_pb2.TaskStatus(id=t.id, state=job_pb2.TASK_STATE_PENDING)
                    for t in spec.tasks
                ],
                labels=spec.labels,
            )
        )


CLIENT = """
import sys

import grpc

from dukat.v1 import job_pb2, scheduler_pb2, scheduler_pb2_grpc

assert scheduler_pb2.__file__.startswith(sys.argv[1]), scheduler_pb2.__file__
with grpc.insecure_channel(sys.argv[2]) as channel:
    stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
    job = job_pb2.JobSpec(
        tasks=[
            job_pb2.TaskSpec(id="a", exec=job_pb2.ExecAction(argv=["true"])),
            job_pb2.TaskSpec(
                id="b", dependencies=["a"], dispatch=job_pb2.DispatchAction(queue="q")
            ),
        ],
        labels={"from": "stock"},
    )
    job_id = stub.Submit(scheduler_pb2.SubmitRequest(job=job, request_id="x")).job_id
    got = stub.GetJob(scheduler_pb2.GetJobRequest(job_id=job_id)).job
    print(job_id, job_pb2.JobState.Name(got.state), [t.id for t in got.tasks], dict(got.labels))
"""


def test_a_client_built_only_from_protos_with_stock_grpcio_tools(tmp_path: Path) -> None:
    out = tmp_path / "client"
    out.mkdir()
    protos = sorted(str(p) for p in (PROTO_DIR / "dukat" / "v1").glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ],
        check=True,
        capture_output=True,
    )
    # Make the fresh stubs a regular package, so that they, not the installed dukat, are
    # imported in the subprocess (which checks it).
    (out / "dukat" / "__init__.py").write_text("")
    (out / "dukat" / "v1" / "__init__.py").write_text("")

    servicer = _Scheduler()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CLIENT), str(out), f"127.0.0.1:{port}"],
            cwd=out,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop(None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "job-1 JOB_STATE_RUNNING ['a', 'b'] {'from': 'stock'}"
    # What the stock client sent is what the committed stubs read.
    (request,) = servicer.submitted
    assert request.request_id == "x"
    assert request.job.tasks[1].dispatch.queue == "q"
