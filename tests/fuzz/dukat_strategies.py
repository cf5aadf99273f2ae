"""What the fuzzer sends dukatd: requests of every method, raw bytes, Work stream scripts.

Requests come from `protobuf_strategies.messages`, steered by `OVERRIDES` towards what a
daemon knows, so that they get past the first check as often as not: task ids from a small
pool (so dependencies name them), breaker names and queues from pools, and markers where
only the running fuzzer knows the value — `@job0`..`@job3` for the ids of jobs it submitted
before, `@page` for the last page token ListJobs gave, `@queue` for the queue of the Work
stream being fuzzed (`resolve` puts the values in). Besides requests drawn whole, each
method gets valid requests with a field or two drawn (`protobuf_strategies.mutations`),
which reach further than the first check. Exec tasks only ever run harmless commands
(`SAFE_COMMANDS`, or a program that does not exist) with fuzzed arguments: the daemon runs
them for real.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import duration_pb2
from google.protobuf.message import Message
from hypothesis import strategies as st

from dukat.v1 import breaker_pb2, job_pb2, scheduler_pb2, work_pb2
from tests.fuzz.protobuf_strategies import boundary_text, messages, mutations

__all__ = [
    "CUSTOM_RESOURCE",
    "QUEUE_MARKER",
    "Answer",
    "Backlog",
    "Script",
    "Send",
    "SendRaw",
    "Sleep",
    "StopReading",
    "nested_page_token",
    "raw_bodies",
    "requests_of",
    "resolve",
    "scripts",
]

TASK_IDS = ("a", "b", "c", "d")
QUEUES = ("fuzz-q0", "fuzz-q1")
"""Queues the fuzzed jobs' dispatch tasks go to, and fuzzed workers serve."""
BREAKERS = ("fuzz-breaker", "fuzz-other")
CUSTOM_RESOURCE = "seats"
"""A custom resource the fuzzed daemon is started with (`--resource seats=2`)."""
JOB_MARKERS = tuple(f"@job{n}" for n in range(4))
QUEUE_MARKER = "@queue"

# Programs that cannot harm the host whatever their arguments, and one that does not exist.
SAFE_COMMANDS = (
    ["true"],
    ["false"],
    ["echo"],
    ["cat"],
    ["sleep", "0.2"],
    ["sh", "-c", "echo out; echo err >&2; exit 3"],
    ["sh", "-c", "head -c 300000 /dev/zero"],
)


def _pick(pool: Sequence[str]) -> st.SearchStrategy[str]:
    """Mostly a name from `pool`, sometimes any text."""
    return st.one_of(st.sampled_from(pool), st.sampled_from(pool), boundary_text)


_argv = st.one_of(
    st.builds(lambda command: list(command), st.sampled_from(SAFE_COMMANDS)),
    st.builds(lambda args: ["echo", *args], st.lists(boundary_text, max_size=3)),
    st.builds(lambda name: ["/nonexistent/" + name.replace("\x00", "")], boundary_text),
    st.just([]),
    st.just([""]),
)
_env = st.dictionaries(
    st.one_of(
        st.sampled_from(("DUKAT_FUZZ", "LANG", "", "A=B", "NUL\x00")),
        st.text(max_size=8).map("FUZZ_".__add__),
    ),
    boundary_text,
    max_size=3,
)
_cwd = st.one_of(st.sampled_from(("", "/", "/tmp", "/nonexistent")), boundary_text)


def _page_token(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def nested_page_token(brackets: tuple[bytes, bytes], depth: int) -> str:
    opening, closing = brackets
    return base64.urlsafe_b64encode(opening * depth + b"1" + closing * depth).decode()


_nested_tokens = st.builds(
    nested_page_token,
    st.sampled_from(((b"[", b"]"), (b'{"a":', b"}"))),
    st.sampled_from((1, 2, 100, 1_000, 100_000)),
)

# A ListJobs page token is base64 of JSON: tokens of the right shape, of the wrong shapes,
# nested deep enough to exhaust a recursive decoder, and not base64 at all.
_page_tokens = st.one_of(
    st.just(""),
    boundary_text,
    st.builds(
        lambda created, job: _page_token([created, job]),
        st.one_of(st.floats(), st.integers(), st.none(), st.text(max_size=4)),
        st.one_of(st.text(max_size=8), st.integers(), st.none()),
    ),
    _nested_tokens,
    _nested_tokens,
    st.builds(_page_token, st.recursive(st.none() | st.integers() | st.text(max_size=3), st.lists)),
)


@st.composite
def _bulk_tasks(draw: st.DrawFn) -> list[job_pb2.TaskSpec]:
    """Very many small tasks: each its own id and, sometimes, its own breaker."""
    use_exec = draw(st.booleans())
    # Exec tasks are processes the daemon starts: a few dozen, not thousands.
    n = 40 if use_exec else draw(st.sampled_from((100, 1_200, 20_000)))
    exec_action = job_pb2.ExecAction(argv=["true"])
    dispatch = job_pb2.DispatchAction(queue=draw(_pick(QUEUES))[:100])
    breaker = draw(st.one_of(st.just(""), _pick(BREAKERS)))[:300]
    breaker_each = draw(st.booleans())
    tasks = []
    for i in range(n):
        task = job_pb2.TaskSpec(id=f"t{i}")
        if use_exec:
            task.exec.CopyFrom(exec_action)
        else:
            task.dispatch.CopyFrom(dispatch)
        if breaker:
            task.circuit_breaker = f"{breaker}-{i}" if breaker_each else breaker
        tasks.append(task)
    return tasks


# Durations anywhere: whole seconds and nanos at the edges of what a Duration may hold (+-10,000
# years) and of what an int64 of nanoseconds can (2^63 ns is 292 years), as often as small ones.
_duration_seconds = st.one_of(
    st.sampled_from((0, 1, 2, 60, -1)),
    st.sampled_from((2**63 - 1, 2**63 - 512, -(2**63), 315_576_000_001, 9_223_372_037)),
    st.integers(-(2**63), 2**63 - 1),
)
_duration_nanos = st.sampled_from((0, 1, 999_999_999, 1_000_000_000, -1, -999_999_999, 2**31 - 1))

_job_id = st.one_of(st.sampled_from(JOB_MARKERS), st.sampled_from(JOB_MARKERS), boundary_text)

OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "google.protobuf.Duration.seconds": _duration_seconds,
    "google.protobuf.Duration.nanos": _duration_nanos,
    "dukat.v1.TaskSpec.id": _pick(TASK_IDS),
    "dukat.v1.TaskSpec.dependencies": st.lists(_pick(TASK_IDS), max_size=4),
    "dukat.v1.TaskSpec.circuit_breaker": st.one_of(st.just(""), _pick(BREAKERS)),
    "dukat.v1.ResourceRequirement.name": st.one_of(st.just(""), _pick((CUSTOM_RESOURCE,))),
    "dukat.v1.ExecAction.argv": _argv,
    "dukat.v1.ExecAction.env": _env,
    "dukat.v1.ExecAction.cwd": _cwd,
    "dukat.v1.DispatchAction.queue": _pick(QUEUES),
    "dukat.v1.SubmitRequest.request_id": st.one_of(st.just(""), _pick(("fuzz-r0", "fuzz-r1"))),
    "dukat.v1.ListJobsRequest.page_token": _page_tokens,
    "dukat.v1.CancelRequest.job_id": _job_id,
    "dukat.v1.CancelRequest.task_ids": st.lists(_pick(TASK_IDS), max_size=3),
    "dukat.v1.GetJobRequest.job_id": _job_id,
    "dukat.v1.GetJobRequest.task_ids": st.lists(_pick(TASK_IDS), max_size=3),
    "dukat.v1.WatchRequest.job_id": _job_id,
    "dukat.v1.WorkerHello.queues": st.lists(_pick((*QUEUES, QUEUE_MARKER)), max_size=3),
    "dukat.v1.WorkResult.job_id": _job_id,
    "dukat.v1.WorkResult.task_id": _pick(TASK_IDS),
    "dukat.v1.WorkProgress.job_id": _job_id,
    "dukat.v1.WorkProgress.task_id": _pick(TASK_IDS),
    **{
        f"dukat.v1.{request}.name": _pick(BREAKERS)
        for request in (
            "GetBreakerRequest",
            "ConfigureBreakerRequest",
            "ResetBreakerRequest",
            "AcquireRequest",
            "RecordRequest",
        )
    },
}
_task = messages(job_pb2.TaskSpec, overrides=OVERRIDES)
OVERRIDES["dukat.v1.JobSpec.tasks"] = st.one_of(
    st.lists(_task, min_size=1, max_size=4),
    st.lists(_task, min_size=1, max_size=4),
    st.just([]),
    _bulk_tasks(),
)


# -- valid requests, the base of mutated ones ---------------------------------------------------

PAGE_MARKER = "@page"
"""In a ListJobs page_token: the last next_page_token the daemon gave out."""


def _duration(low: float, high: float) -> st.SearchStrategy[duration_pb2.Duration]:
    return st.builds(
        lambda seconds: duration_pb2.Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9)),
        st.floats(low, high),
    )


@st.composite
def _valid_task(draw: st.DrawFn, index: int) -> job_pb2.TaskSpec:
    task = job_pb2.TaskSpec(id=TASK_IDS[index])
    if index:
        task.dependencies.extend(draw(st.lists(st.sampled_from(TASK_IDS[:index]), unique=True)))
    if draw(st.booleans()):
        task.exec.argv.extend(draw(st.sampled_from(SAFE_COMMANDS[:5])))
    else:
        task.dispatch.queue = draw(st.sampled_from(QUEUES))
        task.dispatch.payload = draw(st.binary(max_size=16))
    if draw(st.booleans()):
        task.retry.max_attempts = draw(st.integers(1, 3))
        task.retry.initial_backoff.CopyFrom(draw(_duration(0, 0.1)))
    if draw(st.booleans()):
        task.timeout.CopyFrom(draw(_duration(0.001, 2)))
    task.circuit_breaker = draw(st.sampled_from(("", *BREAKERS)))
    if draw(st.booleans()):
        task.resources.add(type=job_pb2.RESOURCE_TYPE_CUSTOM, amount=1, name=CUSTOM_RESOURCE)
    task.trigger_rule = draw(st.sampled_from((0, 1, 2)))
    task.priority = draw(st.integers(-2, 2))
    return task


# Now and then a label near the message limit: a few such jobs make a page of ListJobs that
# only fits if the daemon sizes its pages by bytes.
_label = st.one_of(st.text(max_size=4), st.sampled_from(("x" * 100_000, "x" * 900_000)))


@st.composite
def _valid_job(draw: st.DrawFn) -> job_pb2.JobSpec:
    size = draw(st.integers(1, len(TASK_IDS)))
    return job_pb2.JobSpec(
        tasks=[draw(_valid_task(i)) for i in range(size)],
        labels=draw(st.dictionaries(st.sampled_from(("team", "run")), _label, max_size=2)),
        fail_fast=draw(st.booleans()),
        max_concurrency=draw(st.integers(0, 3)),
    )


_valid_config = st.builds(
    breaker_pb2.CircuitBreakerConfig,
    failure_threshold=st.integers(0, 5),
    timeout=_duration(0.01, 60),
    half_open_max_calls=st.integers(0, 2),
    success_threshold=st.integers(0, 2),
)
_name = st.sampled_from(BREAKERS)
_marker = st.sampled_from(JOB_MARKERS)
_VALID: dict[type[Message], st.SearchStrategy[Message]] = {
    scheduler_pb2.SubmitRequest: st.builds(
        scheduler_pb2.SubmitRequest, job=_valid_job(), request_id=st.sampled_from(("", "fuzz-r0"))
    ),
    scheduler_pb2.WatchRequest: st.builds(
        scheduler_pb2.WatchRequest,
        job_id=_marker,
        after_sequence=st.integers(0, 20),
        job_events_only=st.booleans(),
    ),
    scheduler_pb2.CancelRequest: st.builds(
        scheduler_pb2.CancelRequest,
        job_id=_marker,
        task_ids=st.lists(st.sampled_from(TASK_IDS), max_size=2),
    ),
    scheduler_pb2.GetJobRequest: st.builds(scheduler_pb2.GetJobRequest, job_id=_marker),
    scheduler_pb2.ListJobsRequest: st.builds(
        scheduler_pb2.ListJobsRequest,
        states=st.lists(st.sampled_from(range(1, 6)), max_size=2),
        page_size=st.integers(0, 5),
        page_token=st.sampled_from(("", PAGE_MARKER)),
    ),
    scheduler_pb2.WorkRequest: st.builds(
        lambda queues, n: scheduler_pb2.WorkRequest(
            hello=work_pb2.WorkerHello(queues=queues, max_in_flight=n)
        ),
        st.lists(st.sampled_from((*QUEUES, QUEUE_MARKER)), min_size=1, max_size=2),
        st.integers(1, 10),
    ),
    breaker_pb2.ListBreakersRequest: st.just(breaker_pb2.ListBreakersRequest()),
    breaker_pb2.GetBreakerRequest: st.builds(breaker_pb2.GetBreakerRequest, name=_name),
    breaker_pb2.ConfigureBreakerRequest: st.builds(
        breaker_pb2.ConfigureBreakerRequest, name=_name, config=_valid_config
    ),
    breaker_pb2.ResetBreakerRequest: st.builds(breaker_pb2.ResetBreakerRequest, name=_name),
    breaker_pb2.AcquireRequest: st.builds(breaker_pb2.AcquireRequest, name=_name),
    breaker_pb2.RecordRequest: st.builds(
        breaker_pb2.RecordRequest,
        name=_name,
        permit=st.integers(0, 3),
        outcome=st.integers(1, 3),
        error=st.text(max_size=8),
    ),
}


@functools.cache
def requests_of(cls: type[Message]) -> st.SearchStrategy[Message]:
    """Requests of one method's input type: drawn whole (steered by `OVERRIDES`), or valid
    but for a field or two."""
    drawn = messages(cls, overrides=OVERRIDES)
    valid = _VALID.get(cls)
    if valid is None:
        return drawn
    return st.one_of(
        drawn, valid, mutations(valid, overrides=OVERRIDES), mutations(valid, overrides=OVERRIDES)
    )


# -- raw bytes ---------------------------------------------------------------------------------

_REQUEST_CLASSES = (
    scheduler_pb2.SubmitRequest,
    scheduler_pb2.WatchRequest,
    scheduler_pb2.CancelRequest,
    scheduler_pb2.GetJobRequest,
    scheduler_pb2.ListJobsRequest,
    scheduler_pb2.WorkRequest,
    breaker_pb2.ConfigureBreakerRequest,
    breaker_pb2.RecordRequest,
)

# Wire-format troublemakers: an invalid wire type, a length far past the end, a group
# start nested 100,000 deep (a recursive parser), a varint that never ends, a field number 0.
_WIRE_TRICKS = (
    b"\x0f",
    b"\x0a\xff\xff\xff\xff\x0f",
    b"\x0b" * 100_000,
    b"\x0a" + b"\xff" * 20,
    b"\x00\x01",
    b"\x12\x00" * 10_000,
    b"\x0a\x05\xff\xfe\xfd\xfc\xfb",  # a string field that is not UTF-8
)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid request of some type, then cut, flipped or spliced."""
    cls = draw(st.sampled_from(_REQUEST_CLASSES))
    data = bytearray(draw(requests_of(cls)).SerializeToString())
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(("cut", "flip", "insert")))
        if edit == "cut":
            del data[at:]
        elif edit == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


raw_bodies = st.one_of(
    st.binary(max_size=256),
    st.sampled_from(_WIRE_TRICKS),
    _mutated(),
    st.sampled_from(_REQUEST_CLASSES).flatmap(requests_of).map(lambda m: m.SerializeToString()),
)
"""Request bodies for any method: random, malformed on purpose, mutated, or another
method's request (which often parses, as something else)."""


def resolve(message: Message, jobs: Sequence[str], *, queue: str = "", page: str = "") -> None:
    """Put the values of the markers in `message`, in place: `@jobN` becomes one of `jobs`
    (the Nth newest; a marker stays as it is while there are none), `@queue` `queue`,
    `@page` `page`."""

    def value(text: str) -> str:
        if text in JOB_MARKERS and jobs:
            return jobs[-1 - JOB_MARKERS.index(text) % len(jobs)]
        if text == QUEUE_MARKER:
            return queue or text
        if text == PAGE_MARKER:
            return page
        return text

    _rewrite_strings(message, value)


def _rewrite_strings(message: Message, value: Callable[[str], str]) -> None:
    for field, current in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        if field.type == field.TYPE_STRING:
            if field.is_repeated:
                current[:] = [value(item) for item in current]
            else:
                setattr(message, field.name, value(current))
        elif field.type == field.TYPE_MESSAGE:
            for item in current if field.is_repeated else (current,):
                _rewrite_strings(item, value)


# -- Work stream scripts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    """Before the stream opens: `submits` jobs of `tasks` dispatch tasks each, with
    `payload` bytes apiece and a `timeout` (when not None), on the stream's own queue (what
    its hello can ask for)."""

    submits: int
    tasks: int
    payload: int
    timeout: duration_pb2.Duration | None = None


@dataclass(frozen=True)
class Send:
    request: scheduler_pb2.WorkRequest


@dataclass(frozen=True)
class SendRaw:
    body: bytes


@dataclass(frozen=True)
class Answer:
    """Report on every assignment received and not answered yet: `how` is success, error,
    retryable, oversize (a result over max_result_bytes), twice (two results each),
    stale (the wrong attempt number) or progress (a report, no result)."""

    how: str


@dataclass(frozen=True)
class StopReading:
    """Read nothing more until the stream is closed: the daemon's writes back up."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Send | SendRaw | Answer | StopReading | Sleep


@dataclass(frozen=True)
class Script:
    backlog: Backlog | None
    steps: tuple[Step, ...]
    cancel: bool
    """End by cancelling the call instead of closing the worker's side."""


_ANSWERS = ("success", "error", "retryable", "oversize", "twice", "stale", "progress")
_hello = st.builds(
    lambda hello: Send(scheduler_pb2.WorkRequest(hello=hello)),
    st.one_of(
        messages(work_pb2.WorkerHello, overrides=OVERRIDES),
        st.builds(
            work_pb2.WorkerHello,
            queues=st.just([QUEUE_MARKER]),
            max_in_flight=st.sampled_from((1, 10, 1_000)),
        ),
    ),
)
_step = st.one_of(
    st.builds(Send, requests_of(scheduler_pb2.WorkRequest)),
    _hello,
    st.builds(SendRaw, raw_bodies),
    st.builds(Answer, st.sampled_from(_ANSWERS)),
    st.builds(Answer, st.sampled_from(_ANSWERS)),
    st.just(StopReading()),
    st.builds(Sleep, st.sampled_from((0.05, 0.3))),
)
# (submits, tasks, payload): each Submit under the 4 MiB message limit; the last two more than
# the stream's flow-control window holds, so a worker that stops reading stalls the daemon.
_BACKLOGS = ((1, 1, 16), (1, 3, 16), (1, 40, 16), (2, 40, 65_536), (4, 3, 1_000_000))
_backlog = st.builds(
    lambda shape, timeout: Backlog(*shape, timeout),
    st.sampled_from(_BACKLOGS),
    st.one_of(st.none(), messages(duration_pb2.Duration, overrides=OVERRIDES)),
)

scripts = st.builds(
    Script,
    st.one_of(st.none(), _backlog),
    st.one_of(
        st.lists(_step, min_size=1, max_size=6).map(tuple),
        st.tuples(_hello, st.lists(_step, max_size=6)).map(lambda p: (p[0], *p[1])),
    ),
    st.booleans(),
)
"""Work streams: what a worker says, in any order, and how it reads."""
