"""Peers benchmark: the 20,000-task layered DAG on dukat, Dask distributed and Ray local.

    make bench-peers          (its own venv, .venv-peers: dask[distributed], ray, this project)
    python bench/peers.py [--tasks 20000] [--rounds 3] [--only dukat,dask,ray]

The DAG is bench/engine.py's `layered_dag` (200 tasks a layer, up to 3 upstreams each, the
fixed seed) and every task is a no-op, so what is timed is each system's scheduling and
transport. The contenders, each on a cluster of its own started before the clock and kept
for the rounds:

    dukat/dispatch   a real `python -m dukatd` (defaults, `--ephemeral`) and one worker
                     process (`dukat.client` Worker, concurrency 64, a no-op handler; 1,000
                     of each measured the same here, the DAG's layers are 200 wide): one
                     job of dispatch tasks, `client.submit` then `handle.wait()`. This is the
                     fair comparison, and the one the targets are for: like the others, a
                     scheduler in one process hands every task across a process boundary to
                     a worker process and hears back from it.
    dask/distributed LocalCluster(processes=True, n_workers=1, threads_per_worker=2): the
                     scheduler in this process, one worker process, a thread per core. Worker
                     processes, not threads, so that tasks cross a process boundary as they do
                     for dukat and Ray (a threads-only cluster would run them in the scheduler's
                     process, the comparison for the embedded executor, which bench/engine.py
                     already makes with dask.get). `client.get(dsk, keys, sync=False)`, then
                     `distributed.wait` on all of them.
    ray/local        ray.init(num_cpus=2): the raylet and a worker process per CPU; a remote
                     no-op per task, given its upstreams' ObjectRefs so that Ray orders them;
                     `ray.wait` on all of them without fetching.
    dukat/embedded   for reference, not a peer: ParallelTaskExecutor in this process, the
                     same DAG with nothing crossing a process boundary.

Figures are tasks per second of wall-clock time from submitting the DAG to knowing every
task ended (each system spends most of that in other processes, so process CPU time would
miss it), the median of the rounds; cluster start-up is printed apart. Targets: dukat/dispatch
>= 5x ray/local and >= 10x dask/distributed. A contender that cannot be imported is skipped
with the reason. Not part of CI; a miss prints as such and the exit status stays 0.
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
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine import Graph, layered_dag
from bench.submit import daemon_env, run_to_success, stop

REPO = Path(__file__).resolve().parent.parent
QUEUE = "bench-peers"
WORKER_CONCURRENCY = 64
RAY_CPUS = 2
TARGETS = {"ray/local": 5.0, "dask/distributed": 10.0}


def noop(*_: object) -> None:
    return None


# A contender: started once (seconds of start-up), then run(graph, round) -> seconds.
Runner = Callable[[Graph, int], float]


# -- dukat --------------------------------------------------------------------------------


async def dukat_worker(address: str) -> None:
    """The worker process: serve the queue with a no-op until the daemon goes away."""
    import dukat

    async def handler(_task: object) -> bytes:
        return b""

    async with dukat.connect(address) as client:
        worker = client.worker(QUEUE, handler, WORKER_CONCURRENCY)
        async with worker:
            await worker.connected.wait()
            print("ready", flush=True)
            await asyncio.Event().wait()  # until killed


@contextlib.contextmanager
def dukat_cluster() -> Iterator[Runner]:
    from dukat.actions import DispatchAction
    from dukat.core import JobSpec, TaskSpec

    env = daemon_env()
    processes: list[subprocess.Popen[bytes]] = []
    # /tmp, not $TMPDIR: a unix socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-peers-") as directory:
        address = f"unix:{directory}/d.sock"
        try:
            daemon_argv = [sys.executable, "-m", "dukatd", "--listen", address, "--ephemeral"]
            daemon_argv += ["--metrics-listen", "off"]
            log = Path(directory) / "dukatd.log"  # its INFO lines would drown the table
            with log.open("wb") as out:
                daemon = subprocess.Popen(
                    daemon_argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO
                )
            processes.append(daemon)
            worker = subprocess.Popen(
                [sys.executable, __file__, "--worker", address],
                stdout=subprocess.PIPE,
                env=env,
                cwd=REPO,
            )
            processes.append(worker)
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != b"ready":  # the client retries until up
                raise SystemExit(f"the dukat worker did not connect; dukatd:\n{log.read_text()}")

            action = DispatchAction(QUEUE)

            async def job(graph: Graph, round_: int) -> float:
                spec = JobSpec(
                    tuple(
                        TaskSpec(name, action, dependencies=tuple(deps))
                        for name, deps in graph.items()
                    ),
                    labels={"round": str(round_)},
                )
                return await run_to_success(address, spec)

            yield lambda graph, round_: asyncio.run(job(graph, round_))
        finally:
            for process in reversed(processes):
                stop(process)


@contextlib.contextmanager
def embedded() -> Iterator[Runner]:
    from dukat.core.parallel_executor import ParallelTaskExecutor, Task

    async def run(graph: Graph) -> float:
        async def task() -> None:
            return None

        started = time.perf_counter()
        executor = ParallelTaskExecutor(max_concurrency=WORKER_CONCURRENCY)
        for name, deps in graph.items():
            await executor.add_task(Task(name, task), dependencies=deps)
        results = await executor.execute_all()
        seconds = time.perf_counter() - started
        assert all(result.succeeded for result in results.values())
        return seconds

    yield lambda graph, _round: asyncio.run(run(graph))


# -- peers --------------------------------------------------------------------------------


@contextlib.contextmanager
def dask_cluster() -> Iterator[Runner]:
    import distributed

    with (
        distributed.LocalCluster(
            processes=True, n_workers=1, threads_per_worker=2, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):

        def run(graph: Graph, round_: int) -> float:
            key = f"r{round_}-{{}}".format  # fresh keys each round: nothing is cached
            dsk = {key(name): (noop, *map(key, deps)) for name, deps in graph.items()}
            started = time.perf_counter()
            futures = client.get(dsk, list(dsk), sync=False)
            distributed.wait(futures)
            seconds = time.perf_counter() - started
            if any(future.status != "finished" for future in futures):
                raise SystemExit("a dask task did not finish")
            del futures
            return seconds

        yield run


@contextlib.contextmanager
def ray_cluster() -> Iterator[Runner]:
    import ray

    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    try:
        remote_noop = ray.remote(noop)

        def run(graph: Graph, _round: int) -> float:
            started = time.perf_counter()
            refs: dict[str, object] = {}
            for name, deps in graph.items():  # layered_dag lists every task after its deps
                refs[name] = remote_noop.remote(*(refs[d] for d in deps))
            everything = list(refs.values())
            ready, _ = ray.wait(everything, num_returns=len(everything), fetch_local=False)
            seconds = time.perf_counter() - started
            if len(ready) != len(graph):
                raise SystemExit("not every ray task ended")
            return seconds

        yield run
    finally:
        ray.shutdown()


CONTENDERS = {
    "dukat/dispatch": ("dukat", dukat_cluster),
    "dask/distributed": ("distributed", dask_cluster),
    "ray/local": ("ray", ray_cluster),
    "dukat/embedded": ("dukat", embedded),
}


def missing(module: str) -> str | None:
    """Why `module` cannot be used here, or None."""
    try:
        __import__(module)
    except ImportError as error:
        return f"cannot import {module!r} ({error}); run `make bench-peers` to install it"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated: dukat, dask, ray")
    parser.add_argument("--worker", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(dukat_worker(args.worker))
        return

    graph = layered_dag(args.tasks)
    only = {word.strip() for word in args.only.split(",") if word.strip()}
    print(
        f"peers: a {args.tasks:,}-task layered DAG of no-ops, median of {args.rounds} rounds, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    rates: dict[str, float] = {}
    lines: list[str] = []
    for name, (module, cluster) in CONTENDERS.items():
        if only and not any(name.startswith(word) for word in only):
            continue
        reason = missing(module)
        if reason is not None:
            lines.append(f"  {name:<17} skipped: {reason}")
            continue
        started = time.perf_counter()
        with cluster() as run:
            startup = time.perf_counter() - started
            run(layered_dag(200), -1)  # warm-up: imports, connections, worker processes
            seconds = [run(graph, round_) for round_ in range(args.rounds)]
        rates[name] = args.tasks / statistics.median(seconds)
        spread = ", ".join(f"{args.tasks / s:,.0f}" for s in seconds)
        lines.append(
            f"  {name:<17} {rates[name]:>9,.0f} tasks/s   (rounds: {spread}; "
            f"start-up {startup:.1f} s)"
        )
    print("\n".join(lines))
    if "dukat/dispatch" in rates:
        for peer, target in TARGETS.items():
            if peer in rates:
                ratio = rates["dukat/dispatch"] / rates[peer]
                verdict = "ok" if ratio >= target else "MISSED"
                print(
                    f"  dukat/dispatch vs {peer:<17} {ratio:6.1f}x  "
                    f"(target >= {target:g}x: {verdict})"
                )


if __name__ == "__main__":
    main()
