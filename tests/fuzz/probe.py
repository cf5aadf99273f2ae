"""The fuzzer's side of the wire: send a request, judge the answer, remember what was wrong.

Every method of every service in dukat.v1 is called through a generic channel with identity
serializers, so a body is any bytes: a drawn request serialized, or garbage. The property
(`verdict`): an answer is OK or a client-error code the README documents (INVALID_ARGUMENT,
NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, PERMISSION_DENIED, OUT_OF_RANGE,
ALREADY_EXISTS); never UNKNOWN, INTERNAL or UNAVAILABLE, never an answer the daemon could not
send ("Sent message larger than max"), and every call ends within its deadline — a unary call
that runs out of time, a Watch still open after its job ended, a Work stream still open
after the worker closed its side are failures too.

`Probe` does not raise on a failure: it records it in `Findings` (grouped by method and
problem, with the smallest request that showed it) and goes on, so one run reports every
distinct bug it met; the test asserts at the end that there are none. `still_serves` is the
check after a run: the daemon lists and reads all its breakers and jobs, and runs a normal
job (an exec task and a dispatch task) to success.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc
from google.protobuf import message_factory, text_format
from google.protobuf.message import DecodeError, Message

import dukat
from dukat.actions import DispatchAction, ExecAction
from dukat.client import DispatchTask
from dukat.core import JobSpec, JobState, TaskSpec
from dukat.v1 import breaker_pb2, job_pb2, scheduler_pb2, work_pb2
from dukatd.breaker_service import MAX_BREAKERS
from tests.fuzz.dukat_strategies import (
    Answer,
    Backlog,
    Script,
    Send,
    SendRaw,
    Sleep,
    StopReading,
    resolve,
)

__all__ = ["METHODS", "Findings", "Method", "Probe", "verdict"]

UNARY_SECONDS = 10.0
"""Deadline of a unary call: generous, any answer comes in milliseconds."""
WATCH_SECONDS = 0.5
"""How long a Watch is followed; one still open then must be of a job that has not ended."""
WATCH_ALL_SECONDS = 0.2
"""How long a Watch of every job is followed (it never ends by itself)."""
WORK_SECONDS = 10.0
"""Deadline of a whole Work stream, its script included."""
WATCH_ENDS_SECONDS = 2.0
"""A Watch of a job that has ended must end within this (it has nothing left to wait for)."""
KEEP_JOBS = 1_000
"""Jobs submitted that the fuzzer leaves be; at this many, it cancels all but the newest
tenth (a long run would otherwise hold ever more live tasks)."""
CHECK_SECONDS = 10.0
"""The check after the run: its job (two tasks that do nothing) must have ended by then."""

OK = grpc.StatusCode.OK
CLIENT_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)
TERMINAL = frozenset(
    {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}
)
# The client raises no limit of its own below the daemon's: a reply too big is the daemon's
# to refuse, and shows as such.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
]


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    request: type[Message]
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


def _methods() -> tuple[Method, ...]:
    found = []
    for module in (scheduler_pb2, breaker_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found.append(
                    Method(
                        service.full_name,
                        method.name,
                        message_factory.GetMessageClass(method.input_type),
                        method.client_streaming,
                        method.server_streaming,
                    )
                )
    return tuple(found)


METHODS = _methods()
"""Every RPC of dukat.v1, read from the descriptors (a new one is fuzzed as it comes)."""
_BY_NAME = {method.name: method for method in METHODS}


def verdict(code: grpc.StatusCode, details: str) -> str | None:
    """What is wrong with an answer that came in time; None when nothing is."""
    if code is not OK and code not in CLIENT_ERRORS:
        return f"answered {code.name}: {details}"
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and "Sent message larger than max" in details:
        return f"made an answer over its own message limit: {details}"
    return None


_IDS = re.compile(r"[0-9a-f]{32}|\b\d+\b")


@dataclass
class Finding:
    method: str
    problem: str
    count: int
    example: str
    size: int


@dataclass
class Findings:
    """Failures grouped by (method, problem with ids and numbers blanked)."""

    by_kind: dict[tuple[str, str], Finding] = field(default_factory=dict)

    def add(self, method: str, problem: str, example: str, size: int) -> None:
        key = (method, _IDS.sub("N", problem)[:160])
        found = self.by_kind.get(key)
        if found is None:
            self.by_kind[key] = Finding(method, problem, 1, example, size)
            return
        found.count += 1
        if size < found.size:
            found.example, found.size = example, size

    def __bool__(self) -> bool:
        return bool(self.by_kind)

    def report(self) -> str:
        lines = [f"{len(self.by_kind)} distinct failure(s):"]
        for finding in sorted(self.by_kind.values(), key=lambda f: (f.method, f.problem)):
            lines.append(f"- {finding.method}: {_cut(finding.problem, 300)} (x{finding.count})")
            lines.append(f"    smallest request: {_cut(finding.example, 600)}")
        return "\n".join(lines)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def describe(message: Message) -> str:
    """A message in one line of text format, with long strings and lists cut short."""
    short = type(message)()
    short.CopyFrom(message)
    notes: list[str] = []
    _shorten(short, notes)
    text = text_format.MessageToString(short, as_one_line=True) or "(empty)"
    return f"{text} ({', '.join(notes)})" if notes else text


def _short(value: str | bytes) -> str | bytes:
    if len(value) <= 60:
        return value
    mark = f"…[{len(value)}]"
    return value[:40] + (mark if isinstance(value, str) else mark.encode())


def _shorten(message: Message, notes: list[str]) -> None:
    for fd, value in message.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            items = dict(value)
            value.clear()
            if len(items) > 3:
                notes.append(f"{fd.name}: {len(items)} entries")
            for key, item in list(items.items())[:3]:
                key = _short(key) if isinstance(key, (str, bytes)) else key
                if isinstance(item, Message):
                    value[key].CopyFrom(item)
                else:
                    value[key] = _short(item) if isinstance(item, (str, bytes)) else item
            continue
        items = list(value) if fd.is_repeated else [value]
        if fd.is_repeated and len(items) > 3:
            notes.append(f"{fd.name}: {len(items)} items")
            del value[3:]
            items = items[:3]
        if fd.type == fd.TYPE_MESSAGE:
            for item in items:
                _shorten(item, notes)
        elif fd.type in (fd.TYPE_STRING, fd.TYPE_BYTES):
            if fd.is_repeated:
                value[:] = [_short(item) for item in items]
            else:
                setattr(message, fd.name, _short(value))


def describe_raw(body: bytes) -> str:
    head = body[:48].hex()
    return f"{len(body)} raw bytes: {head}{'…' if len(body) > 48 else ''}"


class Probe:
    """Calls a daemon the way the fuzzer does, and keeps what went wrong in `findings`."""

    def __init__(self, address: str, max_message_bytes: int) -> None:
        self.address = address
        self.max_message_bytes = max_message_bytes
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.findings = Findings()
        self.jobs: list[str] = []
        """Ids of the jobs submitted so far, newest last (the `@jobN` markers name them)."""
        self.page = ""
        """The last next_page_token of ListJobs (the `@page` marker)."""
        self.streams = itertools.count()
        self.answers: Counter[tuple[str, str]] = Counter()
        """How each method answered: (method, status code name) -> count."""

    async def close(self) -> None:
        await self.channel.close()

    def tally(self) -> str:
        """How each method answered, one line per method."""
        methods = sorted({method for method, _ in self.answers})
        lines = []
        for method in methods:
            codes = sorted((n, code) for (m, code), n in self.answers.items() if m == method)
            lines.append(
                f"  {method:<16} " + ", ".join(f"{code} {n}" for n, code in reversed(codes))
            )
        return "\n".join(lines)

    # -- one call ----------------------------------------------------------------------------

    async def call(self, method: Method, body: bytes, example: str) -> bytes | None:
        """A unary call; the reply's bytes when OK. Any failure goes to `findings`."""
        rpc = self.channel.unary_unary(method.path)
        try:
            reply = await rpc(body, timeout=UNARY_SECONDS)
        except grpc.aio.AioRpcError as error:
            self.answers[method.name, error.code().name] += 1
            problem = (
                f"no answer within {UNARY_SECONDS:g}s"
                if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                else verdict(error.code(), error.details() or "")
            )
            if problem:
                self.findings.add(method.name, problem, example, len(body))
            return None
        self.answers[method.name, "OK"] += 1
        return reply

    async def send(self, method: Method, request: Message) -> None:
        """Send a drawn request to `method`, its markers resolved (`dukat_strategies.resolve`)."""
        resolve(request, self.jobs, page=self.page)
        body = request.SerializeToString()
        if method.client_streaming:
            await self.work(Script(None, (Send(request),), cancel=False))
        elif method.server_streaming:
            await self.watch(request, body, describe(request))
        else:
            reply = await self.call(method, body, describe(request))
            if reply is not None and method.name == "Submit":
                self.jobs.append(scheduler_pb2.SubmitResponse.FromString(reply).job_id)
                if len(self.jobs) >= KEEP_JOBS:
                    await self._cancel(self.jobs[: -KEEP_JOBS // 10])
                    del self.jobs[: -KEEP_JOBS // 10]
            if reply is not None and method.name == "ListJobs":
                self.page = scheduler_pb2.ListJobsResponse.FromString(reply).next_page_token

    async def send_raw(self, method: Method, body: bytes) -> None:
        """Send `body`, whatever it is, as the request of `method`."""
        if method.client_streaming:
            await self.work(Script(None, (SendRaw(body),), cancel=False))
            return
        if not method.server_streaming:
            await self.call(method, body, describe_raw(body))
            return
        try:  # what the daemon will make of it, to know how long the stream may last
            request = method.request.FromString(body)
        except DecodeError:
            request = None
        await self.watch(request, body, describe_raw(body))

    # -- Watch -------------------------------------------------------------------------------

    async def watch(self, request: Message | None, body: bytes, example: str) -> None:
        """Follow a Watch for WATCH_SECONDS. A watch of every job stays open by design; one of
        a job that is still open then must be of a job that has not ended (`_stuck`)."""
        every_job = request is not None and not request.job_id
        code, details, last = await self._follow(
            body, WATCH_ALL_SECONDS if every_job else WATCH_SECONDS
        )
        self.answers["Watch", code.name] += 1
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            if request is None or every_job:
                return  # a watch of every job is open until the client leaves
            problem = await self._stuck(request.job_id, last)
        else:
            problem = verdict(code, details)
        if problem:
            self.findings.add("Watch", problem, example, len(body))

    async def _follow(self, body: bytes, seconds: float) -> tuple[grpc.StatusCode, str, int]:
        """Read a Watch to its end or its deadline: its status, and the last sequence seen."""
        last = 0
        call = self.channel.unary_stream(_BY_NAME["Watch"].path)(body, timeout=seconds)
        try:
            async for reply in call:
                events = scheduler_pb2.WatchResponse.FromString(reply).events
                last = max([last, *(event.sequence for event in events)])
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details() or "", last
        return grpc.StatusCode.OK, "", last

    async def _stuck(self, job_id: str, last: int) -> str | None:
        """Why a Watch of `job_id` that gave up after sequence `last` should have ended.

        When GetJob says the job has ended (and so has its end on disk), a new Watch after
        `last` must end within WATCH_ENDS_SECONDS: the first one may only have given up just
        before the end reached it.
        """
        request = scheduler_pb2.GetJobRequest(job_id=job_id)
        try:
            reply = await self.channel.unary_unary(_BY_NAME["GetJob"].path)(
                request.SerializeToString(), timeout=UNARY_SECONDS
            )
        except grpc.aio.AioRpcError:
            return None  # dropped since (or GetJob's own failure, its finding when fuzzed)
        job = scheduler_pb2.GetJobResponse.FromString(reply).job
        if job.state not in TERMINAL:
            return None  # still running: the watch rightly waits
        again = scheduler_pb2.WatchRequest(job_id=job_id, after_sequence=last)
        code, details, _ = await self._follow(again.SerializeToString(), WATCH_ENDS_SECONDS)
        state = job_pb2.JobState.Name(job.state)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return (
                f"a Watch of a job that had ended ({state}) did not end, nor did another "
                f"after sequence {last} within {WATCH_ENDS_SECONDS:g}s"
            )
        problem = verdict(code, details)
        return (
            None if problem is None else f"a Watch after sequence {last} of a {state} job {problem}"
        )

    # -- Work --------------------------------------------------------------------------------

    async def work(self, script: Script) -> None:
        """Play a Work stream script; closed (or cancelled) at its end, the stream must end
        with a status within the deadline."""
        queue = f"fuzz-w{next(self.streams)}"
        example = describe_script(script)
        if script.backlog is not None:
            await self._backlog(queue, script.backlog)
        call = self.channel.stream_stream(_BY_NAME["Work"].path)(timeout=WORK_SECONDS)
        stream = _Stream(call)
        reader = asyncio.create_task(stream.read())
        try:
            for step in script.steps:
                if call.done():
                    break
                if isinstance(step, Send):
                    request = scheduler_pb2.WorkRequest()
                    request.CopyFrom(step.request)
                    resolve(request, self.jobs, queue=queue, page=self.page)
                    await stream.write(request.SerializeToString())
                elif isinstance(step, SendRaw):
                    await stream.write(step.body)
                elif isinstance(step, Answer):
                    await stream.write(stream.answer(step.how).SerializeToString())
                elif isinstance(step, StopReading):
                    stream.reading.clear()
                elif isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
            if script.cancel:
                call.cancel()
                return
            await stream.close()
            stream.reading.set()
            code = await call.code()
        finally:
            stream.reading.set()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        details = await call.details() or ""
        if stream.status_lost and code is grpc.StatusCode.INTERNAL:
            self.answers["Work", "(lost by the client)"] += 1
            return  # see _Stream.write: the daemon's answer is not known
        self.answers["Work", code.name] += 1
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            problem = f"still open {WORK_SECONDS:g}s on though the worker had closed its side"
        else:
            problem = verdict(code, details)
        if problem:
            self.findings.add("Work", problem, example, len(example))

    async def _backlog(self, queue: str, backlog: Backlog) -> None:
        action = job_pb2.DispatchAction(queue=queue, payload=b"p" * backlog.payload)
        request = scheduler_pb2.SubmitRequest()
        for i in range(backlog.tasks):
            task = request.job.tasks.add(id=f"t{i}", dispatch=action)
            if backlog.timeout is not None:
                task.timeout.CopyFrom(backlog.timeout)
        for _ in range(backlog.submits):
            reply = await self.call(
                _BY_NAME["Submit"], request.SerializeToString(), describe(request)
            )
            if reply is not None:
                self.jobs.append(scheduler_pb2.SubmitResponse.FromString(reply).job_id)

    # -- after the run ------------------------------------------------------------------------

    async def still_serves(self) -> None:
        """Breakers and jobs can be listed and read by a client of the daemon's message size,
        and once the jobs the run left are cancelled (a limit on live tasks must not turn the
        next job away), a normal job runs to success."""
        options = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]
        async with grpc.aio.insecure_channel(self.address, options=options) as channel:
            await self._breakers_readable(channel)
            await self._jobs_listable(channel)
        await self._cancel(self.jobs)
        await self._runs_a_job()

    async def _cancel(self, jobs: Iterable[str]) -> None:
        cancel = _BY_NAME["Cancel"]
        for job_id in set(jobs):
            request = scheduler_pb2.CancelRequest(
                job_id=job_id, reason="the fuzzer is done with it"
            )
            await self.call(cancel, request.SerializeToString(), describe(request))

    def _after(self, method: str, problem: str) -> None:
        self.findings.add(method, f"after the run: {problem}", "(the check after the run)", 0)

    async def _breakers_readable(self, channel: grpc.aio.Channel) -> None:
        try:
            listed = await channel.unary_unary(
                _BY_NAME["ListBreakers"].path,
                request_serializer=breaker_pb2.ListBreakersRequest.SerializeToString,
                response_deserializer=breaker_pb2.ListBreakersResponse.FromString,
            )(breaker_pb2.ListBreakersRequest(), timeout=UNARY_SECONDS)
        except grpc.aio.AioRpcError as error:
            self._after("ListBreakers", f"{error.code().name}: {error.details()}")
            return
        if len(listed.breakers) > MAX_BREAKERS:
            self._after(
                "ListBreakers",
                f"{len(listed.breakers)} breakers, over the daemon's cap of {MAX_BREAKERS}",
            )
        get = channel.unary_unary(
            _BY_NAME["GetBreaker"].path,
            request_serializer=breaker_pb2.GetBreakerRequest.SerializeToString,
            response_deserializer=breaker_pb2.GetBreakerResponse.FromString,
        )
        for breaker in listed.breakers[:MAX_BREAKERS]:
            try:
                await get(breaker_pb2.GetBreakerRequest(name=breaker.name), timeout=UNARY_SECONDS)
            except grpc.aio.AioRpcError as error:
                self._after(
                    "GetBreaker",
                    f"a breaker ListBreakers lists ({len(breaker.name)} chars) cannot be read: "
                    f"{error.code().name}: {error.details()}",
                )

    async def _jobs_listable(self, channel: grpc.aio.Channel) -> None:
        rpc = channel.unary_unary(
            _BY_NAME["ListJobs"].path,
            request_serializer=scheduler_pb2.ListJobsRequest.SerializeToString,
            response_deserializer=scheduler_pb2.ListJobsResponse.FromString,
        )
        request = scheduler_pb2.ListJobsRequest()
        for _ in range(1_000):
            try:
                page = await rpc(request, timeout=UNARY_SECONDS)
            except grpc.aio.AioRpcError as error:
                self._after("ListJobs", f"{error.code().name}: {error.details()}")
                return
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token
        self._after("ListJobs", "more than 1,000 pages")

    async def _runs_a_job(self) -> None:
        async def shout(task: DispatchTask) -> bytes:
            return task.payload.upper()

        spec = JobSpec(
            tasks=(
                TaskSpec("exec", ExecAction(("true",))),
                TaskSpec("dispatch", DispatchAction("fuzz-check", b"ok"), dependencies=("exec",)),
            )
        )
        try:
            async with dukat.connect(self.address) as client, client.worker("fuzz-check", shout):
                handle = await client.submit(spec)
                async with asyncio.timeout(CHECK_SECONDS):
                    async for _ in handle.events():
                        pass
                job = await handle.get()
        except TimeoutError:
            self._after("Submit", f"a normal job's watch did not end within {CHECK_SECONDS:g}s")
            return
        except Exception as error:
            self._after("Submit", f"a normal job could not be run: {error!r}")
            return
        if job.state is not JobState.SUCCEEDED:
            self._after("Submit", f"a normal job ended {job.state.name}: {job.message}")


_ENDED = (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError)


class _Stream:
    """The fuzzer's end of one Work stream: reads (unless told to stop), writes, answers."""

    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self.call = call
        self.reading = asyncio.Event()
        self.reading.set()
        self.assignments: list[work_pb2.TaskAssignment] = []
        self.answered = 0
        self.status_lost = False
        self.max_result_bytes = 1024 * 1024

    async def read(self) -> None:
        while True:
            await self.reading.wait()
            reply = await self.call.read()
            if reply is grpc.aio.EOF:
                return
            response = scheduler_pb2.WorkResponse.FromString(reply)
            if response.HasField("welcome"):
                self.max_result_bytes = response.welcome.max_result_bytes
            self.assignments.extend(response.assignments)

    async def write(self, body: bytes) -> None:
        try:
            await self.call.write(body)
        except grpc.aio.AioRpcError as error:
            # Written as the daemon ended the stream: grpc's client then reports INTERNAL
            # instead of the daemon's status (a race in the client, not the daemon's doing).
            if "execute_batch" in (error.debug_error_string() or ""):
                self.status_lost = True
        except (asyncio.InvalidStateError, grpc.aio.UsageError):
            pass  # the stream had ended: its status says how

    async def close(self) -> None:
        with contextlib.suppress(*_ENDED):
            await self.call.done_writing()

    def answer(self, how: str) -> scheduler_pb2.WorkRequest:
        """An update reporting on the assignments not answered yet (at most 2,000)."""
        pending = self.assignments[self.answered : self.answered + 2_000]
        update = work_pb2.WorkerUpdate()
        for number, assignment in enumerate(pending):
            key = {
                "job_id": assignment.job_id,
                "task_id": assignment.task_id,
                "attempt": assignment.attempt + (1 if how == "stale" else 0),
            }
            if how == "progress":
                update.progress.add(**key, fraction=0.5, message="fuzzing")
                continue
            result = work_pb2.WorkResult(**key)
            if how in ("error", "retryable"):
                result.error.message = "fuzzed failure"
                result.error.retryable = how == "retryable"
            elif how == "oversize" and number < 2:
                result.success.payload = b"o" * (self.max_result_bytes + 1)
            else:
                result.success.payload = b"ok"
            update.results.append(result)
            if how == "twice":
                update.results.append(result)
        if how != "progress":
            self.answered += len(pending)
        return scheduler_pb2.WorkRequest(update=update)


def describe_script(script: Script) -> str:
    parts: list[str] = []
    if script.backlog is not None:
        b = script.backlog
        timeout = "" if b.timeout is None else f", timeout {describe(b.timeout)}"
        parts.append(f"backlog {b.submits}x{b.tasks} tasks of {b.payload} bytes{timeout}")
    for step in script.steps:
        parts.append(_describe_step(step))
    parts.append("cancel" if script.cancel else "close")
    return "; ".join(parts)


def _describe_step(step: object) -> str:
    if isinstance(step, Send):
        return f"send {describe(step.request)}"
    if isinstance(step, SendRaw):
        return f"send {describe_raw(step.body)}"
    if isinstance(step, Answer):
        return f"answer {step.how}"
    if isinstance(step, StopReading):
        return "stop reading"
    if isinstance(step, Sleep):
        return f"sleep {step.seconds:g}s"
    raise TypeError(step)
