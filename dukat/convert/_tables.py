"""The enum tables (one per proto enum, both directions from it) and the time conversions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from dukat.core.breaker import CircuitBreakerState
from dukat.core.resources import ResourceType
from dukat.core.states import JobState, TaskState, TriggerRule
from dukat.errors import FieldViolation, ValidationError
from dukat.v1 import breaker_pb2, event_pb2, job_pb2

E = TypeVar("E")


class EnumTable(Generic[E]):
    """One engine enum <-> one proto enum; `_UNSPECIFIED` (0) is never a member."""

    def __init__(self, proto_name: str, pairs: Mapping[E, int]) -> None:
        self.proto_name = proto_name
        self.to_wire: dict[E, int] = dict(pairs)
        self.from_wire: dict[int, E] = {number: member for member, number in pairs.items()}
        if len(self.from_wire) != len(self.to_wire) or 0 in self.from_wire:
            raise ValueError(f"{proto_name}: the table must be one-to-one and never use 0")

    def to_proto(self, member: E) -> int:
        return self.to_wire[member]

    def from_proto(self, number: int, field: str) -> E:
        """The engine member for `number`; ValidationError naming `field` if there is none."""
        member = self.from_wire.get(number)
        if member is None:
            what = "must be set" if number == 0 else f"unknown value {number}"
            raise ValidationError(
                f"{field}: {self.proto_name} {what}",
                violations=[FieldViolation(field, f"{self.proto_name} {what}")],
            )
        return member


_J, _T = job_pb2, TaskState
JOB_STATES = EnumTable(
    "JobState",
    {
        JobState.PENDING: _J.JOB_STATE_PENDING,
        JobState.RUNNING: _J.JOB_STATE_RUNNING,
        JobState.SUCCEEDED: _J.JOB_STATE_SUCCEEDED,
        JobState.FAILED: _J.JOB_STATE_FAILED,
        JobState.CANCELLED: _J.JOB_STATE_CANCELLED,
    },
)
TASK_STATES = EnumTable(
    "TaskState",
    {
        _T.PENDING: _J.TASK_STATE_PENDING,
        _T.READY: _J.TASK_STATE_READY,
        _T.RUNNING: _J.TASK_STATE_RUNNING,
        _T.RETRYING: _J.TASK_STATE_RETRYING,
        _T.SUCCEEDED: _J.TASK_STATE_SUCCEEDED,
        _T.FAILED: _J.TASK_STATE_FAILED,
        _T.CANCELLED: _J.TASK_STATE_CANCELLED,
        _T.SKIPPED: _J.TASK_STATE_SKIPPED,
    },
)
TRIGGER_RULES = EnumTable(
    "TriggerRule",
    {
        TriggerRule.ALL_SUCCESS: _J.TRIGGER_RULE_ALL_SUCCESS,
        TriggerRule.ALL_DONE: _J.TRIGGER_RULE_ALL_DONE,
    },
)
RESOURCE_TYPES = EnumTable(
    "ResourceType",
    {
        ResourceType.CPU: _J.RESOURCE_TYPE_CPU,
        ResourceType.MEMORY: _J.RESOURCE_TYPE_MEMORY,
        ResourceType.NETWORK: _J.RESOURCE_TYPE_NETWORK,
        ResourceType.DISK: _J.RESOURCE_TYPE_DISK,
        ResourceType.GPU: _J.RESOURCE_TYPE_GPU,
        ResourceType.CUSTOM: _J.RESOURCE_TYPE_CUSTOM,
    },
)
# The engine names output streams with strings, not an enum; these two are all it uses.
OUTPUT_STREAMS = EnumTable(
    "OutputStream",
    {"stdout": event_pb2.OUTPUT_STREAM_STDOUT, "stderr": event_pb2.OUTPUT_STREAM_STDERR},
)
BREAKER_STATES = EnumTable(
    "CircuitBreakerState",
    {
        CircuitBreakerState.CLOSED: breaker_pb2.CIRCUIT_BREAKER_STATE_CLOSED,
        CircuitBreakerState.OPEN: breaker_pb2.CIRCUIT_BREAKER_STATE_OPEN,
        CircuitBreakerState.HALF_OPEN: breaker_pb2.CIRCUIT_BREAKER_STATE_HALF_OPEN,
    },
)
# The wire's CallOutcome (breaker.proto) has no engine enum: the engine has one method per
# outcome (success, failure, release), and these are their names.
CALL_OUTCOMES = EnumTable(
    "CallOutcome",
    {
        "success": breaker_pb2.CALL_OUTCOME_SUCCESS,
        "failure": breaker_pb2.CALL_OUTCOME_FAILURE,
        "release": breaker_pb2.CALL_OUTCOME_RELEASE,
    },
)

# The defaults job.proto documents for fields left at zero or unset.
DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_MULTIPLIER = 2.0
DEFAULT_JITTER = 0.2


def seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    if math.isfinite(seconds):
        duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    # One constructor call: FromNanoseconds is Python, and this runs for every event.
    whole, nanos = divmod(round(seconds * 1e9), 1_000_000_000)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=nanos)


def seconds_of(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def time_or_none(message: Any, field: str) -> float | None:
    return seconds_of(getattr(message, field)) if message.HasField(field) else None
