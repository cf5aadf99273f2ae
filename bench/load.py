"""Load: hundreds of clients against one journaled dukatd for a bounded time; fails on leaks.

    python bench/load.py [--seconds 60] [--processes 3] [--clients 70] [--workers 3]
                         [--retain 100] [--watch-deadline 30] [--no-greedy]

One `python -m dukatd` (journal on, `--allow-exec`, `--retain-finished-jobs RETAIN`, so
that retention drops finished jobs all through the run) on a unix socket in a temporary
directory. PROCESSES client processes (2 cores: the client must not be the bottleneck) each
run CLIENTS clients, asyncio tasks with a `dukat.connect` each, that until SECONDS have
passed submit a small job (exec tasks, dispatch tasks, or both), follow it to its end
(`handle.events()`, or `handle.wait()` for one in ten, each within WATCH_DEADLINE) and
cancel one in seven on the way; and WORKERS `dukat.client` workers each on the dispatch
queue, of which one leaves every two seconds while a new one joins (the daemon retries the
attempts it held). Each process also watches every job (one Watch with an empty job id), to
know which jobs ended. One more client, the greedy watcher, opens Watch streams on one job
that never ends until the daemon refuses one, and goes on asking for more all through the
run: a daemon that lets one client take every Watch slot turns the other clients away.
After the run, `wait()` is called on a job that retention drops as it ends.

Printed at the end: jobs accepted and ended per second, Submit latency (p50, p99), errors
by call and status code, watches started and ended, what GetJob says of every accepted job
at the end, and the daemon's RSS (VmRSS of /proc/<pid>/status, sampled twice a second).
The run FAILS (exit status 1) when:

- a watch (or a wait) did not end within its deadline, or a call failed with a code the
  load does not explain: Submit may be refused RESOURCE_EXHAUSTED (back-pressure, counted
  but fine), and a Watch or wait may find its job gone (NOT_FOUND) if the job had ended
  (retention may drop a job before its client's Watch reaches the daemon); a Watch refused
  RESOURCE_EXHAUSTED fails the run: the daemon allows 1,000 streams, honest clients need a
  few hundred, so only the greedy one can have taken the rest;
- an accepted job is not terminal at the end (GetJob), or is gone (NOT_FOUND) though nobody
  saw it end: retention drops only jobs that ended;
- the greedy watcher's streams did not all end once its job was cancelled;
- `wait()` on a job that retention dropped right after its end did not give its end;
- RSS kept growing in the steady phase: with retention bounding what the daemon keeps, its
  memory levels off once the run is warm. The steady phase is the part of the run after
  its first third; the median RSS over the last fifth of it may exceed the median over a
  fifth around its middle by at most max(16 MB, 10%). A leak shows as growth between the
  two; the allocator's own slack, a few MB, does not, nor does the daemon's ring of events
  for watchers of every job (bounded at 100,000 events, ~15 MB, which the watchers of every
  job make it fill at a few hundred kB a second). The shorter the run, the bigger a leak
  must be to show: a CI-sized run catches only gross ones.

Every call has a deadline (CALL_SECONDS, WATCH_DEADLINE), so the run ends in bounded time
whatever the daemon does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dukat
from bench.submit import REPO, start_daemon, status_mb, stop
from dukat.actions import DispatchAction, ExecAction
from dukat.client import DispatchTask, JobHandle
from dukat.core import JobSpec, JobStateChanged, RetryPolicy, Snapshot, TaskSpec
from dukat.errors import DaemonError, DaemonNotFoundError

T = TypeVar("T")
QUEUE = "load"
IDLE_QUEUE = "load-idle"
"""No worker serves it: the greedy watcher's job waits on it until cancelled."""
DROP_QUEUE = "load-drop"
GREEDY_CAP = 1_500
"""Watch streams the greedy watcher holds at most (more than the daemon's 1,000)."""
GREEDY_BURST = 20
"""Watch streams it asks for at once, four times a second at most."""
RSS_TOLERANCE_MB = 16.0
RSS_TOLERANCE_FRACTION = 0.10
RSS_EVERY = 0.5
START_MARGIN = 3.0
"""Seconds for the client processes to start before the common start time."""
DROP_RETAIN = 5
"""Finished jobs the daemon of the wait() scenario keeps."""
CALL_SECONDS = 20.0
"""Deadline of a unary call (Submit, Cancel, GetJob): any answer comes in a second."""
WAIT_FOLLOWS = 1.0
"""Time given to `wait()` to be following its job before the job ends (there is nothing to
wait on instead: whether its Watch is open shows nowhere)."""


@dataclass
class Options:
    address: str
    seconds: float
    clients: int
    workers: int
    watch_deadline: float
    start_at: float
    seed: int
    greedy: bool
    tally_file: str
    """Where the process writes its tally (JSON) when done: too big for a pipe's buffer."""


# -- one client process -----------------------------------------------------------------------


@dataclass
class Tally:
    """What one client process saw; summed over processes by the main one."""

    accepted: int = 0
    ended: int = 0
    cancels: int = 0
    watches_started: int = 0
    watches_ended: int = 0
    watches_hung: int = 0
    late: int = 0
    """Watches, waits and cancels that found their job already dropped (it had ended)."""
    submit_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    terminal: int = 0
    dropped_after_end: int = 0
    not_terminal: int = 0
    gone_unseen: int = 0
    greedy_held: int = 0
    greedy_refused: int = 0
    greedy_hung: int = 0
    worker_changes: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(text)


class ClientProcess:
    """CLIENTS clients, WORKERS churning workers, a watcher of every job and maybe the
    greedy watcher, on one event loop."""

    def __init__(self, options: Options) -> None:
        self.o = options
        self.tally = Tally()
        self.accepted: list[str] = []
        self.seen_end: set[str] = set()
        """Jobs whose terminal event a client or the watcher of every job saw."""
        self.not_found: list[tuple[str, str]] = []
        """(call, job id) of the Watch, wait and Cancel calls that answered NOT_FOUND."""
        self.end = 0.0

    async def run(self) -> Tally:
        async with dukat.connect(self.o.address) as admin:
            observer = asyncio.create_task(self.observe())
            await asyncio.sleep(max(0.0, self.o.start_at - time.time()))
            self.end = asyncio.get_running_loop().time() + self.o.seconds
            workers = asyncio.create_task(self.workers(admin))
            greedy = asyncio.create_task(self.greedy(admin)) if self.o.greedy else None
            await asyncio.gather(*(self.client(i) for i in range(self.o.clients)))
            if greedy is not None:
                await greedy
            await self.verify(admin)
            for task in (workers, observer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return self.tally

    async def observe(self) -> None:
        """Follow every job's state changes, to know which jobs ended."""
        import grpc

        from dukat.v1 import job_pb2, scheduler_pb2, scheduler_pb2_grpc

        terminal = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED}
        terminal.add(job_pb2.JOB_STATE_CANCELLED)
        async with grpc.aio.insecure_channel(self.o.address) as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            call = stub.Watch(scheduler_pb2.WatchRequest(job_events_only=True))
            try:
                async for response in call:
                    for event in response.events:
                        if event.HasField("job_state") and event.job_state.state in terminal:
                            self.seen_end.add(event.job_id)
            except grpc.aio.AioRpcError as error:
                self.tally.errors[f"Watch of every job {error.code().name}"] += 1

    def job(self, rng: random.Random, slow: bool) -> JobSpec:
        retry = RetryPolicy(max_attempts=3, initial_backoff=0.05, jitter=0.0)
        kind = rng.choice(("exec", "dispatch", "both"))
        tasks = []
        if kind in ("exec", "both"):
            tasks.append(TaskSpec("run", ExecAction(("sleep", "0.3") if slow else ("true",))))
        if kind in ("dispatch", "both"):
            action = DispatchAction(QUEUE, b"slow" if slow else b"fast")
            upstream = ("run",) if tasks else ()
            tasks += [
                TaskSpec(f"serve-{i}", action, dependencies=upstream, retry=retry)
                for i in range(rng.randint(1, 3))
            ]
        return JobSpec(tuple(tasks), labels={"load": "yes"})

    async def client(self, index: int) -> None:
        rng = random.Random(self.o.seed * 1_000 + index)
        loop = asyncio.get_running_loop()
        async with dukat.connect(self.o.address) as client:
            while loop.time() < self.end:
                mode = rng.choices(("events", "wait", "cancel"), (75, 10, 15))[0]
                spec = self.job(rng, slow=mode == "cancel")
                started = time.perf_counter()
                handle = await self.answer("Submit", client.submit(spec))
                if handle is None:
                    await asyncio.sleep(0.1)
                    continue
                self.tally.submit_ms.append((time.perf_counter() - started) * 1000)
                self.tally.accepted += 1
                self.accepted.append(handle.job_id)
                if mode == "wait":
                    await self.wait(handle)
                elif mode == "cancel":
                    follow = asyncio.create_task(self.follow(handle))
                    await asyncio.sleep(rng.uniform(0, 0.2))
                    await self.cancel(handle)
                    await follow
                else:
                    await self.follow(handle)

    async def answer(self, name: str, call: Awaitable[T]) -> T | None:
        """What a call gave, or None once its error (or its silence) is counted."""
        try:
            async with asyncio.timeout(CALL_SECONDS):
                return await call
        except TimeoutError:
            self.tally.errors[f"{name} unanswered after {CALL_SECONDS:g}s"] += 1
        except DaemonError as error:
            self.tally.errors[f"{name} {error.code}"] += 1
        return None

    async def cancel(self, handle: JobHandle) -> None:
        try:
            async with asyncio.timeout(CALL_SECONDS):
                await handle.cancel(reason="load")
        except TimeoutError:
            self.tally.errors[f"Cancel unanswered after {CALL_SECONDS:g}s"] += 1
        except DaemonNotFoundError:
            self.not_found.append(("Cancel", handle.job_id))
        except DaemonError as error:
            self.tally.errors[f"Cancel {error.code}"] += 1
        else:
            self.tally.cancels += 1

    async def follow(self, handle: JobHandle) -> None:
        """Watch a job to its terminal event, within the deadline."""
        self.tally.watches_started += 1
        ended = False
        try:
            async with asyncio.timeout(self.o.watch_deadline):
                async for event in handle.events():
                    if isinstance(event, JobStateChanged):
                        ended = ended or event.state.is_terminal
                    elif isinstance(event, Snapshot):
                        ended = ended or event.job.state.is_terminal
        except TimeoutError:
            self.tally.watches_hung += 1
            self.tally.problem(
                f"Watch of job {handle.job_id} open after {self.o.watch_deadline:g}s"
            )
            return
        except DaemonNotFoundError:
            self.not_found.append(("Watch", handle.job_id))
            return
        except DaemonError as error:
            self.tally.errors[f"Watch {error.code}"] += 1
            return
        self.tally.watches_ended += 1
        if ended:
            self.seen_end.add(handle.job_id)
            self.tally.ended += 1
        else:
            self.tally.errors["Watch ended before its job"] += 1

    async def wait(self, handle: JobHandle) -> None:
        """`handle.wait()` within the deadline: the job's terminal snapshot."""
        self.tally.watches_started += 1
        try:
            async with asyncio.timeout(self.o.watch_deadline):
                job = await handle.wait()
        except TimeoutError:
            self.tally.watches_hung += 1
            self.tally.problem(f"wait() for job {handle.job_id} after {self.o.watch_deadline:g}s")
            return
        except DaemonNotFoundError:
            self.not_found.append(("wait", handle.job_id))
            return
        except DaemonError as error:
            self.tally.errors[f"wait {error.code}"] += 1
            return
        self.tally.watches_ended += 1
        if job.state.is_terminal:
            self.seen_end.add(handle.job_id)
            self.tally.ended += 1

    async def workers(self, admin: dukat.Client) -> None:
        """WORKERS workers on QUEUE; every two seconds the oldest leaves and a new one joins."""

        async def handler(task: DispatchTask) -> bytes:
            if task.payload == b"slow":
                await asyncio.sleep(0.2)
            return task.payload

        running: list[asyncio.Task[None]] = []
        try:
            while True:
                while len(running) < self.o.workers:
                    running.append(asyncio.create_task(admin.worker(QUEUE, handler, 8).run()))
                await asyncio.sleep(2.0)
                running.pop(0).cancel()
                self.tally.worker_changes += 1
        finally:
            for worker in running:
                worker.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def greedy(self, admin: dukat.Client) -> None:
        """Hold as many Watch streams on one idle job as the daemon gives, asking for more
        all through the run; then cancel the job: every stream must end."""
        import grpc

        from dukat.v1 import scheduler_pb2, scheduler_pb2_grpc

        idle = JobSpec((TaskSpec("idle", DispatchAction(IDLE_QUEUE)),))
        handle = await self.answer("Submit", admin.submit(idle))
        if handle is None:
            return
        loop = asyncio.get_running_loop()
        streams: list[asyncio.Task[grpc.StatusCode]] = []
        async with grpc.aio.insecure_channel(self.o.address) as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            request = scheduler_pb2.WatchRequest(job_id=handle.job_id, job_events_only=True)

            async def hold() -> grpc.StatusCode:
                call = stub.Watch(request)
                try:
                    async for _ in call:
                        pass
                except grpc.aio.AioRpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

            while loop.time() < self.end:
                if sum(1 for stream in streams if not stream.done()) >= GREEDY_CAP:
                    await asyncio.sleep(0.2)
                    continue
                burst = [asyncio.create_task(hold()) for _ in range(GREEDY_BURST)]
                streams += burst
                await asyncio.sleep(0.05)
                if any(stream.done() for stream in burst):  # refused: ask again later
                    await asyncio.sleep(0.2)
            self.tally.greedy_held = sum(1 for stream in streams if not stream.done())
            await self.answer("Cancel", handle.cancel(reason="load over"))
            done, pending = await asyncio.wait(streams, timeout=10)
            self.tally.greedy_hung = len(pending)
            self.tally.greedy_refused = sum(
                1 for stream in done if stream.result() is grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            for stream in pending:
                stream.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def verify(self, admin: dukat.Client) -> None:
        """GetJob of every accepted job: terminal, or dropped after somebody saw its end."""
        gate = asyncio.Semaphore(32)

        async def check(job_id: str) -> None:
            async with gate:
                try:
                    async with asyncio.timeout(CALL_SECONDS):
                        job = await admin.get_job(job_id)
                except TimeoutError:
                    self.tally.errors[f"GetJob unanswered after {CALL_SECONDS:g}s"] += 1
                    return
                except DaemonNotFoundError:
                    if job_id in self.seen_end:
                        self.tally.dropped_after_end += 1
                    else:
                        self.tally.gone_unseen += 1
                        self.tally.problem(f"job {job_id} is gone, and nobody saw it end")
                    return
                except DaemonError as error:
                    self.tally.errors[f"GetJob {error.code}"] += 1
                    return
            if job.state.is_terminal:
                self.tally.terminal += 1
            else:
                self.tally.not_terminal += 1
                self.tally.problem(f"job {job_id} is {job.state.name} at the end")

        await asyncio.gather(*(check(job_id) for job_id in self.accepted))
        for call, job_id in self.not_found:
            if job_id in self.seen_end:
                self.tally.late += 1  # dropped before the call reached the daemon
            else:
                self.tally.errors[f"{call} NOT_FOUND"] += 1
                self.tally.problem(f"{call} of job {job_id}: NOT_FOUND, and nobody saw it end")


def client_main(config: str) -> None:
    options = Options(**json.loads(config))
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    tally = asyncio.run(ClientProcess(options).run())
    Path(options.tally_file).write_text(json.dumps(tally.__dict__))


async def wait_through_a_drop(address: str, retain: int) -> str | None:
    """`wait()` on a job that ends together with RETAIN + 5 others, which makes retention
    drop it at once: wait() was following it, so it must give its end (the contract's "a
    wait already following a job gets to its end either way"). Why not, or None."""
    gate = asyncio.Event()
    assigned = 0

    async def handler(task: DispatchTask) -> bytes:
        nonlocal assigned
        assigned += 1
        await gate.wait()
        return b""

    async def until(count: int) -> None:
        async with asyncio.timeout(30):
            while assigned < count:  # noqa: ASYNC110 - the worker's handlers count
                await asyncio.sleep(0.01)

    def one() -> JobSpec:
        return JobSpec((TaskSpec("t", DispatchAction(DROP_QUEUE)),))

    async with dukat.connect(address) as client, client.worker(DROP_QUEUE, handler, retain + 10):
        first = await client.submit(one())
        await until(1)  # assigned first, so its result goes first in the worker's next update
        for _ in range(retain + 5):
            await client.submit(one())
        await until(retain + 6)
        waiting = asyncio.create_task(first.wait())
        await asyncio.sleep(WAIT_FOLLOWS)
        gate.set()
        try:
            async with asyncio.timeout(10):
                job = await waiting
        except TimeoutError:
            return "wait() on a job dropped as it ended did not return within 10 s"
        except DaemonError as error:
            return f"wait() on a job dropped as it ended raised {error.code}: {error}"
    if not job.state.is_terminal:
        return f"wait() on a job dropped as it ended gave it {job.state.name}"
    return None


# -- the main process -------------------------------------------------------------------------


def merge(tallies: list[dict[str, Any]]) -> Tally:
    total = Tally()
    for tally in tallies:
        for name, value in tally.items():
            if name == "errors":
                total.errors.update(value)
            elif name in ("submit_ms", "problems"):
                getattr(total, name).extend(value)
            else:
                setattr(total, name, getattr(total, name) + value)
    return total


def rss_growth(samples: list[tuple[float, float]], seconds: float) -> tuple[float, float, float]:
    """(median RSS around the middle of the steady phase, over its last fifth, tolerance)."""
    steady_from = seconds / 3
    length = seconds - steady_from
    middle = steady_from + length / 2

    def median(low: float, high: float) -> float:
        window = [mb for at, mb in samples if low <= at <= high]
        return statistics.median(window) if window else float("nan")

    mid = median(middle - length / 10, middle + length / 10)
    end = median(seconds - length / 5, seconds)
    return mid, end, max(RSS_TOLERANCE_MB, RSS_TOLERANCE_FRACTION * mid)


def judge(
    tally: Tally, samples: list[tuple[float, float]], args: argparse.Namespace
) -> tuple[list[str], list[str]]:
    """The table's lines, and what failed."""
    lines: list[str] = []
    failures: list[str] = []
    seconds = args.seconds
    ms = sorted(tally.submit_ms)
    p50 = statistics.median(ms) if ms else float("nan")
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan")
    lines += [
        f"  jobs            accepted {tally.accepted:,} ({tally.accepted / seconds:.1f}/s), "
        f"seen to their end {tally.ended:,} ({tally.ended / seconds:.1f}/s), "
        f"cancels {tally.cancels:,}",
        f"  Submit          p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        f"  watches         started {tally.watches_started:,}, ended {tally.watches_ended:,}, "
        f"open at their deadline {tally.watches_hung:,}, came after their job was dropped "
        f"{tally.late:,}",
        "  errors          "
        + (", ".join(f"{key} {n:,}" for key, n in tally.errors.most_common()) or "none"),
        f"  at the end      terminal {tally.terminal:,}, dropped after their end "
        f"{tally.dropped_after_end:,}, not terminal {tally.not_terminal:,}, gone unseen "
        f"{tally.gone_unseen:,}",
        f"  workers         {tally.worker_changes:,} left and were replaced",
    ]
    if args.greedy:
        lines.append(
            f"  greedy watcher  {tally.greedy_held:,} streams still open at the end, refused "
            f"{tally.greedy_refused:,} times, {tally.greedy_hung:,} not ended by the cancel"
        )
    if samples:
        mid, end, tolerance = rss_growth(samples, seconds)
        peak = max(mb for _, mb in samples)
        step = max(1, len(samples) // 12)
        lines += [
            f"  dukatd RSS      start {samples[0][1]:.0f} MB, steady middle {mid:.0f} MB, "
            f"end {end:.0f} MB (growth {end - mid:+.1f} MB, tolerated {tolerance:.0f}), "
            f"peak {peak:.0f} MB",
            "  RSS over time   " + " ".join(f"{at:.0f}s:{mb:.0f}" for at, mb in samples[::step]),
        ]
        if end - mid > tolerance:
            failures.append(
                f"dukatd's RSS grew {end - mid:.1f} MB over the second half of the steady "
                f"phase (tolerated: {tolerance:.0f} MB)"
            )
    if tally.watches_hung:
        failures.append(
            f"{tally.watches_hung} watch(es) did not end within {args.watch_deadline:g}s"
        )
    failed = {k: n for k, n in tally.errors.items() if k != "Submit RESOURCE_EXHAUSTED"}
    if failed:
        failures.append("calls failed: " + ", ".join(f"{k} {n}" for k, n in failed.items()))
    if tally.not_terminal:
        failures.append(f"{tally.not_terminal} accepted job(s) not terminal at the end")
    if tally.gone_unseen:
        failures.append(f"{tally.gone_unseen} accepted job(s) gone though nobody saw them end")
    if tally.greedy_hung:
        failures.append(
            f"{tally.greedy_hung} greedy watch(es) did not end when their job was cancelled"
        )
    return lines, failures


async def sample_rss(
    pid: int, started: float, clients: list[subprocess.Popen[bytes]], out: list[tuple[float, float]]
) -> None:
    while any(client.poll() is None for client in clients):
        with contextlib.suppress(FileNotFoundError, SystemExit):
            out.append((time.time() - started, status_mb(pid, "VmRSS")))
        await asyncio.sleep(RSS_EVERY)


@contextlib.contextmanager
def daemon(
    directory: str, name: str, *args: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """A `python -m dukatd ARGS` on `<directory>/<name>.sock`, serving; SIGTERM at the end."""
    address = f"unix:{directory}/{name}.sock"
    log = Path(directory) / f"{name}.log"
    argv = [sys.executable, "-m", "dukatd", "--listen", address, "--metrics-listen", "off", *args]
    process = start_daemon(argv, log, address)
    try:
        yield process, address, log
    finally:
        stop(process)


def run(args: argparse.Namespace) -> int:
    # /tmp, not $TMPDIR: a unix socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-load-") as directory:
        journaled = ("--state-dir", f"{directory}/state", "--allow-exec")
        with daemon(directory, "d", *journaled, "--retain-finished-jobs", str(args.retain)) as (
            process,
            address,
            log,
        ):
            lines, failures = drive(args, directory, address, process, log)
        # wait() at a drop, on a daemon of its own: without a journal (whose own trouble
        # with retention is the main run's to find) and keeping only DROP_RETAIN jobs, so
        # that a few jobs ending at once, within the concurrency limit, drop the first.
        with daemon(
            directory, "drop", "--ephemeral", "--retain-finished-jobs", str(DROP_RETAIN)
        ) as (
            _,
            address,
            _,
        ):
            dropped = asyncio.run(wait_through_a_drop(address, DROP_RETAIN))
    lines.append(f"  wait() at drop  {dropped or 'gave the job its end'}")
    if dropped:
        failures.append(dropped)
    print("\n".join(lines))
    if not failures:
        print("ok")
        return 0
    print("FAILED:\n" + "\n".join(f"  - {failure}" for failure in failures))
    return 1


def drive(
    args: argparse.Namespace,
    directory: str,
    address: str,
    process: subprocess.Popen[bytes],
    log: Path,
) -> tuple[list[str], list[str]]:
    """The main run: its table's lines and its failures."""
    start_at = time.time() + START_MARGIN
    clients = []
    for index in range(args.processes):
        options = Options(
            address=address,
            seconds=args.seconds,
            clients=args.clients,
            workers=args.workers,
            watch_deadline=args.watch_deadline,
            start_at=start_at,
            seed=args.seed + index,
            greedy=args.greedy and index == 0,
            tally_file=f"{directory}/tally-{index}.json",
        )
        argv = [sys.executable, __file__, "--client", json.dumps(options.__dict__)]
        clients.append(subprocess.Popen(argv, cwd=REPO))
    samples: list[tuple[float, float]] = []
    # Every wait of a client is bounded: a process still running past this is stuck.
    limit = START_MARGIN + args.seconds + args.watch_deadline + 3 * CALL_SECONDS + 30
    with contextlib.suppress(TimeoutError):
        asyncio.run(asyncio.wait_for(sample_rss(process.pid, start_at, clients, samples), limit))
    tallies = []
    stuck = []
    for index, client in enumerate(clients):
        if client.poll() is None:
            client.kill()
        if client.wait() == 0:
            tallies.append(json.loads(Path(f"{directory}/tally-{index}.json").read_text()))
        else:
            stuck.append(f"client process {index} (exit {client.returncode})")
    tally = merge(tallies)
    steady = [(at, mb) for at, mb in samples if 0 <= at <= args.seconds]
    lines, failures = judge(tally, steady, args)
    if stuck:
        failures.append(f"failed, or killed {limit:g}s after the start: {', '.join(stuck)}")
    lines.insert(
        0,
        f"load: {args.seconds:g} s, {args.processes} processes x {args.clients} clients, "
        f"{args.processes} x {args.workers} workers, dukatd --retain-finished-jobs "
        f"{args.retain} (journal on)",
    )
    lines += [f"  e.g.            {problem}" for problem in tally.problems[:10]]
    if process.poll() is not None:
        failures.append(f"dukatd exited with {process.returncode}")
    if failures:
        errors = [line for line in log.read_text(errors="replace").splitlines() if "Error" in line]
        lines += [f"  dukatd logged   {line[:200]}" for line in errors[:10]]
    return lines, failures


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        client_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--clients", type=int, default=70, help="clients per process")
    parser.add_argument("--workers", type=int, default=3, help="workers per process")
    parser.add_argument("--retain", type=int, default=100, help="--retain-finished-jobs")
    parser.add_argument("--watch-deadline", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-greedy", dest="greedy", action="store_false")
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
