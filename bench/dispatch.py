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
    dukatd/ts-client the same, with the TypeScript client's Worker (clients/typescript/bench/
                     worker.ts, built by `make bench`) in a node process as the worker
    raw/round-trip   N round trips on one raw grpc.aio bidi stream with bytes of the same
                     sizes as a TaskAssignment and a WorkResult: one message each way per
                     task, never batched (what dispatch would cost without batching)

The target: dukat/dispatch and dukatd/client >= 10,000 tasks/s, and above raw/round-trip;
dukatd/ts-client at least as fast as dukatd/client.
Figures are the median of the rounds, tasks per second of wall-clock time: the work is split
between processes, so one process's CPU time would miss half of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

# As the daemon does: spawning the client subprocess must not run gRPC's fork handlers.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import grpc
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.submit import daemon_env, run_to_success, stop
from dukat import convert
from dukat.actions import DispatchAction
from dukat.core import JobSpec, JobState, Scheduler, TaskSpec
from dukat.v1 import scheduler_pb2, scheduler_pb2_grpc, work_pb2
from dukatd.scheduler_service import SchedulerService
from dukatd.server import create_server
from dukatd.work_hub import WorkerHub

QUEUE = "bench"
ECHO = "/bench.Echo/Stream"


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


def python_worker(address: str, in_flight: int) -> list[str]:
    """The command of a `dukat.client` worker (this script, `--client-worker`)."""
    return [sys.executable, __file__, "--client-worker", address, str(in_flight)]


@contextlib.contextmanager
def served(
    in_flight: int, worker_command: Callable[[str, int], list[str]] = python_worker
) -> Iterator[tuple[str, subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """A real dukatd (`--ephemeral`, max_concurrency as in `run_dispatch`) and one worker
    process serving it, ready: their address and processes; both stopped at the end."""
    env = daemon_env()
    concurrency = str(max(in_flight * 2, 64))
    # /tmp, not $TMPDIR: a unix socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-bench-") as directory:
        address = f"unix:{directory}/d.sock"
        argv = [sys.executable, "-m", "dukatd", "--listen", address, "--ephemeral"]
        argv += ["--metrics-listen", "off", "--max-concurrency", concurrency]
        log = Path(directory) / "dukatd.log"
        with log.open("wb") as out:
            daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        worker = subprocess.Popen(
            worker_command(address, in_flight), stdout=subprocess.PIPE, env=env
        )
        try:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != b"ready":  # the client retries until up
                raise SystemExit(f"the worker did not connect; dukatd:\n{log.read_text()}")
            yield address, daemon, worker
        finally:
            for process in (worker, daemon):
                stop(process)


def run_daemon(
    n: int,
    in_flight: int,
    rounds: int,
    worker_command: Callable[[str, int], list[str]] = python_worker,
) -> list[float]:
    """`rounds` jobs through a real dukatd and a worker process (by default a `dukat.client`
    one), both started once."""
    spec = no_op_job(n)
    with served(in_flight, worker_command) as (address, _, _):
        return [n / uvloop.run(run_to_success(address, spec)) for _ in range(rounds)]


def no_op_job(n: int) -> JobSpec:
    action = DispatchAction(QUEUE)
    return JobSpec(tuple(TaskSpec(f"t{i}", action) for i in range(n)))


TS_WORKER = Path(__file__).resolve().parent.parent / "clients/typescript/dist/bench/worker.js"


def typescript_worker(address: str, in_flight: int) -> list[str]:
    """The command of the TypeScript client's no-op worker, on the machine's node."""
    if not TS_WORKER.exists():
        raise SystemExit(f"no {TS_WORKER}: build it with `cd clients/typescript && npm run build`")
    return ["node", str(TS_WORKER), address, str(in_flight)]


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
    rates: dict[str, list[float]] = {"dukat/dispatch": [], "dukatd/client": []}
    rates["raw/round-trip"] = []
    rates["dukatd/client"] = run_daemon(n, args.in_flight, args.rounds)
    rates["dukatd/ts-client"] = run_daemon(n, args.in_flight, args.rounds, typescript_worker)
    for _ in range(args.rounds):
        rates["dukat/dispatch"].append(uvloop.run(run_dispatch(n, args.in_flight)))
        rates["raw/round-trip"].append(uvloop.run(run_round_trips(n, request_size, response_size)))
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        spread = ", ".join(f"{v:,.0f}" for v in rates[name])
        print(f"  {name:<16} {value:>9,.0f} tasks/s   (rounds: {spread})")
    for name in ("dukat/dispatch", "dukatd/client"):
        ratio = median[name] / median["raw/round-trip"]
        print(f"  {name} vs raw/round-trip: {ratio:.2f}x  (target >= 10,000 tasks/s and > 1x)")
    ratio = median["dukatd/ts-client"] / median["dukatd/client"]
    print(f"  dukatd/ts-client vs dukatd/client: {ratio:.2f}x  (target >= 1x)")


if __name__ == "__main__":
    main()
