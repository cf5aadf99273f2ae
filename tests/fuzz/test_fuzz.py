"""Fuzz a real dukatd: requests to every method, raw bytes, Work streams in any order.

Each test runs examples against one daemon (journaled, exec allowed, a small retention, see
conftest.py), records what broke the property of `probe.verdict` (OK or a documented client
error, in time, every stream ended), then checks that the daemon still serves
(`Probe.still_serves`) and reports every failure at once. `make fuzz` runs them for longer.

Besides the drawn examples, each test always plays a few explicit ones: the edges that
broke dukatd before (an operator's probe found them), so that CI keeps checking them
whatever the draw.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from google.protobuf.duration_pb2 import Duration
from hypothesis import example, given
from hypothesis import strategies as st

from dukat.v1 import breaker_pb2, job_pb2, scheduler_pb2, work_pb2
from tests.dukatd.daemon_process import DaemonProcess
from tests.fuzz.conftest import MAX_MESSAGE_BYTES
from tests.fuzz.dukat_strategies import (
    QUEUE_MARKER,
    Backlog,
    Script,
    Send,
    Sleep,
    StopReading,
    nested_page_token,
    raw_bodies,
    requests_of,
    scripts,
)
from tests.fuzz.probe import METHODS, Method, Probe
from tests.fuzz.runs import Budget, fuzz_settings, repeat

# Submit makes the state the other methods find (jobs, breakers, dispatch tasks): it gets
# more turns.
_WEIGHTED = [m for m in METHODS for _ in range(4 if m.name == "Submit" else 1)]
_METHOD = {method.name: method for method in METHODS}
NEAR_2_63 = Duration(seconds=2**63 - 1)
"""The longest Duration an int64 of seconds holds: 2^63 ns is only 292 years."""


def fuzz(
    daemon: DaemonProcess,
    strategy: st.SearchStrategy[Any],
    play: Callable[[Probe, Any], Awaitable[None]],
    *,
    ci_examples: int,
    explicit: Sequence[Any] = (),
) -> None:
    budget = Budget()
    started = time.monotonic()
    with asyncio.Runner() as runner:
        probe = runner.run(_probe(daemon))

        def run(value: Any) -> None:
            if budget.spent() or daemon.returncode() is not None:
                return
            runner.run(play(probe, value))

        for value in reversed(explicit):  # @example runs the outermost first
            run = example(value)(run)
        repeat(fuzz_settings(ci_examples)(given(strategy)(run)), budget)
        code = daemon.returncode()
        if code is None:
            runner.run(probe.still_serves())
        else:
            probe.findings.add("dukatd", f"exited with {code}", "(the whole run)", 0)
        runner.run(probe.close())
    print(f"answers, {time.monotonic() - started:.1f} s:\n{probe.tally()}")
    assert not probe.findings, probe.findings.report() + _errors_logged(daemon)


async def _probe(daemon: DaemonProcess) -> Probe:
    return Probe(daemon.address, MAX_MESSAGE_BYTES)


def _errors_logged(daemon: DaemonProcess) -> str:
    """The last line of each distinct traceback in the daemon's log."""
    lines = daemon.log().splitlines()
    ends = {
        re.sub(r" at 0x[0-9a-f]+", "", line)
        for before, line in itertools.pairwise(lines)
        if before.startswith("  ") and re.match(r"^[\w.]+(Error|Exception)\b", line)
    }
    if not ends:
        return ""
    return "\ndukatd logged:\n" + "\n".join(f"  {end[:300]}" for end in sorted(ends))


async def _request(probe: Probe, drawn: tuple[Method, Any]) -> None:
    await probe.send(*drawn)


def _submit(labels: dict[str, str] | None = None, **task: Any) -> tuple[Method, Any]:
    spec = job_pb2.JobSpec(tasks=[job_pb2.TaskSpec(id="a", **task)], labels=labels)
    return _METHOD["Submit"], scheduler_pb2.SubmitRequest(job=spec)


EDGE_REQUESTS = (
    # A page token of JSON nested deeper than a recursive decoder goes.
    (
        _METHOD["ListJobs"],
        scheduler_pb2.ListJobsRequest(page_token=nested_page_token((b"[", b"]"), 100_000)),
    ),
    # Durations at the edge of an int64 of seconds, for a breaker and for tasks.
    (
        _METHOD["ConfigureBreaker"],
        breaker_pb2.ConfigureBreakerRequest(
            name="fuzz-breaker", config=breaker_pb2.CircuitBreakerConfig(timeout=NEAR_2_63)
        ),
    ),
    _submit(dispatch=job_pb2.DispatchAction(queue="fuzz-q0"), timeout=NEAR_2_63),
    _submit(
        exec=job_pb2.ExecAction(argv=["false"]),
        retry=job_pb2.RetryPolicy(max_attempts=2, initial_backoff=NEAR_2_63),
    ),
    # A breaker named by a task, one character longer than a breaker name may be.
    _submit(exec=job_pb2.ExecAction(argv=["true"]), circuit_breaker="b" * 201),
    # Five jobs that stay (no worker serves their queue), each labelled with most of a
    # message: ListJobs must not put them all in one.
    *(
        _submit({"big": f"{n}" * 900_000}, dispatch=job_pb2.DispatchAction(queue="fuzz-idle"))
        for n in range(5)
    ),
)


def test_requests_to_every_method(fuzzed_daemon: DaemonProcess) -> None:
    drawn = st.sampled_from(_WEIGHTED).flatmap(
        lambda method: st.tuples(st.just(method), requests_of(method.request))
    )
    fuzz(fuzzed_daemon, drawn, _request, ci_examples=500, explicit=EDGE_REQUESTS)


async def _raw(probe: Probe, drawn: tuple[Method, bytes]) -> None:
    await probe.send_raw(*drawn)


def test_raw_bytes_to_every_method(fuzzed_daemon: DaemonProcess) -> None:
    drawn = st.tuples(st.sampled_from(METHODS), raw_bodies)
    fuzz(fuzzed_daemon, drawn, _raw, ci_examples=500)


def _hello(max_in_flight: int = 1_000) -> Send:
    hello = work_pb2.WorkerHello(queues=[QUEUE_MARKER], max_in_flight=max_in_flight)
    return Send(scheduler_pb2.WorkRequest(hello=hello))


EDGE_SCRIPTS = (
    # An assignment whose task's timeout is at the edge of an int64 of seconds.
    Script(Backlog(1, 1, 16, NEAR_2_63), (_hello(), Sleep(0.3)), cancel=False),
    # A worker that stops reading while megabytes of assignments are on their way, then
    # breaks the protocol: the daemon ends the stream in the middle of a write.
    Script(
        Backlog(4, 3, 1_000_000),
        (_hello(), StopReading(), Sleep(0.5), _hello()),
        cancel=False,
    ),
)


def test_work_streams_in_any_order(fuzzed_daemon: DaemonProcess) -> None:
    fuzz(fuzzed_daemon, scripts, Probe.work, ci_examples=150, explicit=EDGE_SCRIPTS)
