"""Dispatch benchmark: no-op dispatch tasks through one worker, against raw gRPC round trips.

    python bench/dispatch.py [--tasks 20000] [--in-flight 1000] [--rounds 3]

Both contenders use a grpc.aio server in this process on uvloop (as the daemon runs) on a
unix socket, and a client in a subprocess (a second process, as a real worker is):

    dukat/dispatch   one job of N independent no-op dispatch tasks, submitted over gRPC,
                     served by one Python worker on the raw stubs that answers each
                     WorkResponse with one WorkerUpdate of all its results (max_in_flight
                     --in-flight); timed from Submit to the job's end
    dukatd/client    the same job, honestly: a real `python -m dukatd` process (`--ephemeral
                     --metrics-listen off`, max_concurrency as above) and one worker process on
                     the public `dukat.client` Worker (concurrency --in-flight, a no-op
                     handler); submitted with `dukat.connect(...).submit`, timed from submit
                     to `handle.wait()`
    dukatd/go-client the same job through the same daemon, served by the Go client's Worker
                     (clients/go/cmd/dukat-bench-worker, built here with `go build`; skipped
                     without a Go toolchain) on a queue of its own, concurrency as above; its
                     rounds take turns with dukatd/client's
    dukatd/ts-client the same again, served by the TypeScript client's Worker in a node process
                     (clients/typescript/bench/worker.ts, built by `make bench`; skipped
                     without node or the build), on a queue of its own
    raw/round-trip   N round trips on one raw grpc.aio bidi stream with bytes of the same
                     sizes as a TaskAssignment and a WorkResult: one message each way per
                     task, never batched (what dispatch would cost without batching)

The targets: dukat/dispatch and dukatd/client >= 10,000 tasks/s, and above raw/round-trip;
dukatd/go-client >= 1.3x dukatd/client; dukatd/ts-client >= 1x dukatd/client. Figures are
the median of the rounds, tasks per second of wall-clock time: the work is split between
processes, so one process's CPU time would miss half of it. For the real workers, the CPU
milliseconds per 1,000 tasks of the daemon, of the worker and of this process (which submits
and waits) say where the time goes: when the daemon's far exceed the worker's, the daemon is
the ceiling and a faster worker cannot make the job go much faster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

# As the daemon does: spawning the client subprocess must not run gRPC's fork handlers.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import grpc
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.submit import cpu_seconds, daemon_env, run_to_success, stop
from dukat import convert
from dukat.actions import DispatchAction
from dukat.core import JobSpec, JobState, Scheduler, TaskSpec
from dukat.v1 import scheduler_pb2, scheduler_pb2_grpc, work_pb2
from dukatd.scheduler_service import SchedulerService
from dukatd.server import create_server
from dukatd.work_hub import WorkerHub

QUEUE = "bench"
GO_QUEUE = "bench-go"
ECHO = "/bench.Echo/Stream"
GO_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "go"
TS_QUEUE = "bench-ts"
TS_WORKER = Path(__file__).resolve().parent.parent / "clients/typescript/dist/bench/worker.js"


def sample_sizes() -> tuple[int, int]:
    """Bytes of a typical TaskAssignment and WorkResult of the dispatch run."""
    ids = {"job_id": "0" * 32, "task_id": "t12345", "attempt": 1}
    assignment = work_pb2.TaskAssignment(**ids, queue=QUEUE)
    result = work_pb2.WorkResult(**ids, success=work_pb2.WorkSuccess())
    return assignment.ByteSize(), result.ByteSize()


# -- the worker side (a subprocess) -------------------------------------------------------


async def dispatch_worker(address: str, in_flight: int) -> None:
    """Serve the bench queue until the daemon ends the stream: the raw protocol, batched."""
    outbox: asyncio.Queue[scheduler_pb2.WorkRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[scheduler_pb2.WorkRequest]:
        while (request := await outbox.get()) is not None:
            yield request

    async with grpc.aio.insecure_channel(address) as channel:
        call = scheduler_pb2_grpc.SchedulerServiceStub(channel).Work(requests())
        hello = work_pb2.WorkerHello(worker_id="bench", queues=[QUEUE], max_in_flight=in_flight)
        outbox.put_nowait(scheduler_pb2.WorkRequest(hello=hello))
        await call.read()  # the welcome; a run is shorter than one heartbeat interval
        print("ready", flush=True)
        try:
            await serve(call, outbox)
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE:  # the daemon's stop: the end
                raise


async def serve(call: grpc.aio.StreamStreamCall, outbox: asyncio.Queue) -> None:
    Result, Success = work_pb2.WorkResult, work_pb2.WorkSuccess
    empty = Success()
    while (response := await call.read()) is not grpc.aio.EOF:
        results = [
            Result(job_id=a.job_id, task_id=a.task_id, attempt=a.attempt, success=empty)
            for a in response.assignments
        ]
        if results:
            update = work_pb2.WorkerUpdate(results=results)
            outbox.put_nowait(scheduler_pb2.WorkRequest(update=update))


async def client_worker(address: str, in_flight: int) -> None:
    """Serve the bench queue with the public client's Worker and a no-op until killed."""
    import dukat

    async def handler(_task: object) -> bytes:
        return b""

    async with dukat.connect(address) as client, client.worker(QUEUE, handler, in_flight) as w:
        await w.connected.wait()
        print("ready", flush=True)
        await asyncio.Event().wait()


async def echo_client(address: str, n: int, request_size: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(ECHO, lambda b: b, lambda b: b)()
        message = b"x" * request_size
        await call.write(message)
        await call.read()
        print("ready", flush=True)
        for _ in range(n):
            await call.write(message)
            await call.read()
        await call.done_writing()


# -- the daemon side (this process) -------------------------------------------------------


async def start_client(*args: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, *args, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = await process.stdout.readline()
    if line.strip() != b"ready":
        raise SystemExit(f"the benchmark's client did not start: {line!r}")
    return process


async def run_dispatch(n: int, in_flight: int) -> float:
    scheduler = Scheduler(max_concurrency=max(in_flight * 2, 64), gc_hold_min_tasks=5_000)
    hub = WorkerHub(scheduler)
    service = SchedulerService(scheduler, work_hub=hub)
    with tempfile.TemporaryDirectory(prefix="dukat-bench-") as directory:
        address = f"unix:{directory}/d.sock"
        server = await create_server(scheduler, [address], service=service)
        await server.start()
        worker = await start_client("--worker", address, str(in_flight))
        await asyncio.sleep(0.1)  # the hello is applied
        action = DispatchAction(QUEUE)
        spec = convert.job_spec_to_proto(
            JobSpec(tuple(TaskSpec(f"t{i}", action) for i in range(n)))
        )
        request = scheduler_pb2.SubmitRequest(job=spec)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            started = time.perf_counter()
            job_id = (await stub.Submit(request)).job_id
            state = await scheduler.wait(job_id)
            elapsed = time.perf_counter() - started
        if state is not JobState.SUCCEEDED:
            raise SystemExit(f"the benchmark job ended {state.name}")
        await server.stop(grace=0.5)  # ends the worker's stream
        await worker.wait()
        await scheduler.close()
    return n / elapsed


def build_go_worker(directory: str) -> Path | None:
    """The Go client's no-op bench worker, built into `directory`; None without Go."""
    binary = Path(directory) / "dukat-bench-worker"
    try:
        subprocess.run(
            ["go", "build", "-o", str(binary), "./cmd/dukat-bench-worker"],
            cwd=GO_CLIENT,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"  (dukatd/go-client skipped: could not build the Go worker: {error})")
        return None
    return binary


def typescript_worker() -> Path | None:
    """The TypeScript client's no-op bench worker, built; None without it or without node."""
    if shutil.which("node") is None or not TS_WORKER.exists():
        print(f"  (dukatd/ts-client skipped: no node, or no {TS_WORKER}: `make bench` builds it)")
        return None
    return TS_WORKER


def measured(run: Callable[[], float], pids: dict[str, int]) -> tuple[float, dict[str, float]]:
    """What `run` returns, the CPU seconds each process took meanwhile (and "submitter": this
    one, which submits and waits), and the wall-clock seconds ("wall")."""
    before = {who: cpu_seconds(pid) for who, pid in pids.items()}
    own, started = time.process_time(), time.perf_counter()
    result = run()
    seconds = {who: cpu_seconds(pid) - before[who] for who, pid in pids.items()}
    seconds["submitter"] = time.process_time() - own
    seconds["wall"] = time.perf_counter() - started
    return result, seconds


def run_daemon(
    n: int, in_flight: int, rounds: int, go_worker: Path | None, ts_worker: Path | None = None
) -> tuple[dict[str, list[float]], dict[str, dict[str, list[float]]]]:
    """`rounds` jobs for each real worker through one dukatd started once, taking turns: the
    public `dukat.client` Worker (dukatd/client) and, when built, the Go client's
    (dukatd/go-client) and the TypeScript client's (dukatd/ts-client), each on a queue of its
    own. Returns the rates, and the seconds of each contender's rounds (`measured`)."""

    env = daemon_env()
    concurrency = str(max(in_flight * 2, 64))

    def spec(queue: str) -> JobSpec:
        return JobSpec(tuple(TaskSpec(f"t{i}", DispatchAction(queue)) for i in range(n)))

    async def job(spec: JobSpec) -> float:
        return n / await run_to_success(address, spec)

    # /tmp, not $TMPDIR: a unix socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-bench-") as directory:
        address = f"unix:{directory}/d.sock"
        argv = [sys.executable, "-m", "dukatd", "--listen", address, "--ephemeral"]
        argv += ["--metrics-listen", "off", "--max-concurrency", concurrency]
        log = Path(directory) / "dukatd.log"
        with log.open("wb") as out:
            daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        contenders = {
            "dukatd/client": (
                [sys.executable, __file__, "--client-worker", address, str(in_flight)],
                spec(QUEUE),
            )
        }
        if go_worker is not None:
            go_argv = [str(go_worker), "-address", address, "-queue", GO_QUEUE]
            contenders["dukatd/go-client"] = (
                [*go_argv, "-concurrency", str(in_flight)],
                spec(GO_QUEUE),
            )
        if ts_worker is not None:
            contenders["dukatd/ts-client"] = (
                ["node", str(ts_worker), address, str(in_flight), TS_QUEUE],
                spec(TS_QUEUE),
            )
        workers: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name, (worker_argv, _) in contenders.items():
                worker = workers[name] = subprocess.Popen(
                    worker_argv, stdout=subprocess.PIPE, env=env
                )
                assert worker.stdout is not None
                if worker.stdout.readline().strip() != b"ready":  # the client retries until up
                    raise SystemExit(
                        f"the {name} worker did not connect; dukatd:\n{log.read_text()}"
                    )
            rates: dict[str, list[float]] = {name: [] for name in contenders}
            costs: dict[str, dict[str, list[float]]] = {name: {} for name in contenders}
            for _ in range(rounds):
                for name, (_, job_spec) in contenders.items():
                    pids = {"daemon": daemon.pid, "worker": workers[name].pid}
                    rate, cost = measured(lambda spec=job_spec: uvloop.run(job(spec)), pids)
                    rates[name].append(rate)
                    for who, seconds in cost.items():
                        costs[name].setdefault(who, []).append(seconds)
            return rates, costs
        finally:
            for process in (*workers.values(), daemon):
                stop(process)


async def run_round_trips(n: int, request_size: int, response_size: int) -> float:
    reply = b"y" * response_size

    async def echo(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        async for _ in requests:
            await context.write(reply)

    handler = grpc.stream_stream_rpc_method_handler(echo, lambda b: b, lambda b: b)
    with tempfile.TemporaryDirectory(prefix="dukat-bench-") as directory:
        address = f"unix:{directory}/e.sock"
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bench.Echo", {"Stream": handler}),)
        )
        server.add_insecure_port(address)
        await server.start()
        client = await start_client("--echo", address, str(n), str(request_size))
        # Timed from the first round trip: the client's start-up is not the stream's cost.
        started = time.perf_counter()
        await client.wait()
        elapsed = time.perf_counter() - started
        await server.stop(grace=None)
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("ADDRESS", "IN_FLIGHT"))
    parser.add_argument("--client-worker", nargs=2, metavar=("ADDRESS", "IN_FLIGHT"))
    parser.add_argument("--echo", nargs=3, metavar=("ADDRESS", "N", "SIZE"))
    args = parser.parse_args()
    if args.worker:
        uvloop.run(dispatch_worker(args.worker[0], int(args.worker[1])))
        return
    if args.client_worker:
        uvloop.run(client_worker(args.client_worker[0], int(args.client_worker[1])))
        return
    if args.echo:
        uvloop.run(echo_client(args.echo[0], int(args.echo[1]), int(args.echo[2])))
        return

    n = args.tasks
    request_size, response_size = sample_sizes()
    print(f"dispatch: {n:,} no-op tasks, one worker, max_in_flight {args.in_flight}")
    rates: dict[str, list[float]] = {"dukat/dispatch": [], "raw/round-trip": []}
    with tempfile.TemporaryDirectory(prefix="dukat-bench-go-") as build:
        go_worker, ts_worker = build_go_worker(build), typescript_worker()
        daemon_rates, costs = run_daemon(n, args.in_flight, args.rounds, go_worker, ts_worker)
    rates.update(daemon_rates)
    for _ in range(args.rounds):
        rates["dukat/dispatch"].append(uvloop.run(run_dispatch(n, args.in_flight)))
        rates["raw/round-trip"].append(uvloop.run(run_round_trips(n, request_size, response_size)))
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        spread = ", ".join(f"{v:,.0f}" for v in rates[name])
        print(f"  {name:<16} {value:>9,.0f} tasks/s   (rounds: {spread})")
    print("  ms per 1,000 tasks (median of the rounds): CPU of each process, and wall-clock")
    for name, cost in costs.items():
        ms = ", ".join(f"{who} {statistics.median(s) * 1e6 / n:.0f}" for who, s in cost.items())
        print(f"  {name:<16} {ms}")
    for name in ("dukat/dispatch", "dukatd/client"):
        ratio = median[name] / median["raw/round-trip"]
        print(f"  {name} vs raw/round-trip: {ratio:.2f}x  (target >= 10,000 tasks/s and > 1x)")
    if "dukatd/go-client" in median:
        ratio = median["dukatd/go-client"] / median["dukatd/client"]
        print(f"  dukatd/go-client vs dukatd/client: {ratio:.2f}x  (target >= 1.3x)")
    if "dukatd/ts-client" in median:
        ratio = median["dukatd/ts-client"] / median["dukatd/client"]
        print(f"  dukatd/ts-client vs dukatd/client: {ratio:.2f}x  (target >= 1x)")


if __name__ == "__main__":
    main()
