"""Engine benchmark: dukat's embedded scheduler against baselines measured in the same run.

    (a) N no-op tasks, concurrency 64: ParallelTaskExecutor vs asyncio.gather + Semaphore(64)
    (b) a layered DAG (200 tasks per layer, up to 3 upstreams each, fixed seed):
        ParallelTaskExecutor, as its users call it (`await add_task(...)` per task, then
        `execute_all()`), vs a graphlib.TopologicalSorter-driven asyncio loop, and dask.get;
        for comparison, the same DAG as one JobSpec submitted to a Scheduler (the engine
        without the executor's face)
    (c) the same DAG at 10,000 and 100,000 tasks: how the time scales (and, for reference,
        how the graphlib loop's does)

Times are the CPU time of this process (everything here runs on one thread), which is what
the scheduling costs; wall time on a shared 2-core machine swings with the neighbours. Even
so absolute figures drift between machines: the ratios are what to read. Each figure is the
median of several samples, taken in rounds that time each contender in turn (in the reverse
order every other round), each run after a full garbage collection; a ratio is the median of
the rounds' own ratios.
A sample is as many runs in a row as last about a second, as timeit's autorange picks its
`number` (a first, untimed run tells how many, and warms up): every contender's samples then
last alike, so the neighbours' noise weighs on each alike. Timed alone, the 100 ms run of the
10,000-task DAG swung by a tenth between samples here, and moved the (c) ratio by a point.

    python bench/engine.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import graphlib
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dukat.core import CallableAction, JobSpec, Scheduler, TaskSpec
from dukat.core.parallel_executor import ParallelTaskExecutor, Task

LIMIT = 64
LAYER = 200
FAN_IN = 3
SEED = 20261128

Graph = dict[str, list[str]]  # task -> its dependencies


async def noop() -> None:
    return None


def noop_sync(*_: object) -> None:
    return None


def layered_dag(n: int, seed: int = SEED) -> Graph:
    """`n` tasks in layers of LAYER; each depends on up to FAN_IN tasks of the layer before."""
    rng = random.Random(seed)
    graph: Graph = {}
    previous: list[str] = []
    for layer in range((n + LAYER - 1) // LAYER):
        current = [f"L{layer}-{i}" for i in range(min(LAYER, n - layer * LAYER))]
        for name in current:
            k = rng.randint(0, FAN_IN) if previous else 0
            graph[name] = rng.sample(previous, min(k, len(previous)))
        previous = current
    return graph


# -- contenders ---------------------------------------------------------------------------


async def gather_semaphore(n: int) -> None:
    semaphore = asyncio.Semaphore(LIMIT)

    async def one() -> None:
        async with semaphore:
            await noop()

    await asyncio.gather(*(one() for _ in range(n)))


async def dukat_flat(n: int) -> None:
    executor = ParallelTaskExecutor(max_concurrency=LIMIT)
    for i in range(n):
        await executor.add_task(Task(f"t{i}", noop))
    results = await executor.execute_all()
    assert len(results) == n


async def dukat_dag(graph: Graph) -> None:
    executor = ParallelTaskExecutor(max_concurrency=LIMIT)
    for name, deps in graph.items():
        await executor.add_task(Task(name, noop), dependencies=deps)
    results = await executor.execute_all()
    assert len(results) == len(graph) and all(r.succeeded for r in results.values())


async def dukat_job_spec(graph: Graph) -> None:
    """The same DAG without the executor: one JobSpec, built and submitted at once."""
    scheduler = Scheduler(max_concurrency=LIMIT)
    spec = JobSpec(
        tuple(
            TaskSpec(name, CallableAction(noop), dependencies=tuple(deps))
            for name, deps in graph.items()
        )
    )
    results = await scheduler.wait_results(scheduler.submit(spec))
    assert len(results) == len(graph) and all(r.succeeded for r in results.values())


async def graphlib_loop(graph: Graph) -> None:
    """What one writes by hand: graphlib for the order, asyncio tasks, at most LIMIT at once."""
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    waiting: list[str] = []
    running: set[asyncio.Task[str]] = set()

    async def run(name: str) -> str:
        await noop()
        return name

    done_count = 0
    while sorter.is_active():
        waiting.extend(sorter.get_ready())
        while waiting and len(running) < LIMIT:
            running.add(asyncio.create_task(run(waiting.pop())))
        finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            sorter.done(task.result())
            done_count += 1
    assert done_count == len(graph)


def dask_get(graph: Graph) -> None:
    import dask

    dsk = {name: (noop_sync, *deps) for name, deps in graph.items()}
    dask.get(dsk, list(graph))


# -- measuring ----------------------------------------------------------------------------


SAMPLE_SECONDS = 1.0

Run = Callable[[], Awaitable[None]] | Callable[[], None]


def timed(run: Run, loops: int = 1) -> float:
    """CPU seconds of one run, the mean of `loops` runs in a row, each after a full
    collection (untimed): every run starts from the same heap, whatever the run before left."""
    total = 0.0
    for _ in range(loops):
        gc.collect()
        start = time.process_time()
        result = run()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
        total += time.process_time() - start
    return total / loops


@dataclass(frozen=True)
class Samples:
    """Each contender's times, one per round; a round times every contender once, in turn."""

    times: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def ratio(self, name: str, baseline: str) -> float:
        """The median of the rounds' own ratios: within a round the contenders ran moments
        apart, so a slow or fast spell of the machine cancels out of each ratio."""
        pairs = zip(self.times[name], self.times[baseline], strict=True)
        return statistics.median(time / base for time, base in pairs)


def measure(contenders: dict[str, Run], repeats: int) -> Samples:
    """`repeats` rounds of samples of about SAMPLE_SECONDS each."""
    loops = {name: max(1, round(SAMPLE_SECONDS / timed(run))) for name, run in contenders.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    for _ in range(repeats):
        for name in order:  # in turn, so that drift hits everyone alike
            times[name].append(timed(contenders[name], loops[name]))
        order.reverse()  # and not always in the same place: A B, B A, A B, ...
    return Samples(times)


def row(label: str, seconds: float, tasks: int, ratio: float | None, target: str) -> str:
    shown = f"{ratio:6.2f}x" if ratio is not None else "      -"
    per_task = seconds / tasks * 1e6
    return f"{label:<44} {seconds * 1e3:9.1f} ms {per_task:8.1f} us/task {shown}  {target}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7

    print(
        f"python {sys.version.split()[0]}, concurrency {LIMIT}, "
        f"median of {repeats} samples of about {SAMPLE_SECONDS:g} s each\n"
    )
    header = f"{'':<44} {'total':>12} {'per task':>16} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))

    n = 20_000
    flat = measure({"gather": lambda: gather_semaphore(n), "dukat": lambda: dukat_flat(n)}, repeats)
    print(row(f"(a) asyncio.gather + Semaphore, {n:,} no-ops", flat.median("gather"), n, None, ""))
    dukat_flat_ratio = flat.ratio("dukat", "gather")
    print(
        row("    dukat ParallelTaskExecutor", flat.median("dukat"), n, dukat_flat_ratio, "<= 2.0x")
    )

    graph = layered_dag(n)
    dag = measure(
        {
            "graphlib": lambda: graphlib_loop(graph),
            "dukat": lambda: dukat_dag(graph),
            "job spec": lambda: dukat_job_spec(graph),
            "dask": lambda: dask_get(graph),
        },
        repeats,
    )
    print(row(f"(b) graphlib + asyncio loop, {n:,}-task DAG", dag.median("graphlib"), n, None, ""))
    dukat_dag_ratio = dag.ratio("dukat", "graphlib")
    print(row("    dukat ParallelTaskExecutor", dag.median("dukat"), n, dukat_dag_ratio, "<= 1.5x"))
    spec_ratio = dag.ratio("job spec", "graphlib")
    label = "    dukat Scheduler, one JobSpec"
    print(row(label, dag.median("job spec"), n, spec_ratio, "(comparison)"))
    dask_ratio = dag.ratio("dask", "graphlib")
    print(row("    dask.get (synchronous)", dag.median("dask"), n, dask_ratio, ""))
    print(f"{'    dask.get / dukat':<44} {dag.ratio('dask', 'dukat'):41.1f}x  >= 10x")

    small, large = layered_dag(10_000), layered_dag(100_000)
    scale = measure(
        {"10k": lambda: dukat_dag(small), "100k": lambda: dukat_dag(large)},
        repeats,  # as many as the others: a median of three moved the ratio by a tenth
    )
    print(row("(c) dukat, 10,000-task DAG", scale.median("10k"), 10_000, None, ""))
    scale_ratio = scale.ratio("100k", "10k")
    print(row("    dukat, 100,000-task DAG", scale.median("100k"), 100_000, scale_ratio, "<= 12x"))
    # For reference: how the hand-written loop scales on the same DAGs. Any CPython code pays
    # more per object once its objects outgrow the caches; this says how much here, today.
    loop = measure(
        {"10k": lambda: graphlib_loop(small), "100k": lambda: graphlib_loop(large)}, repeats
    )
    loop_ratio = loop.ratio("100k", "10k")
    label = "    graphlib loop, 100,000-task DAG"
    print(row(label, loop.median("100k"), 100_000, loop_ratio, "(reference)"))


if __name__ == "__main__":
    main()
