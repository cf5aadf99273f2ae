"""CPU cost of DaemonMetrics per task: 20,000 no-op tasks, with and without it, same run.

.venv/bin/python bench/metrics_cost.py [rounds]
"""

import asyncio
import sys
import time

from dukat.core.runners import CallableAction
from dukat.core.scheduler import Scheduler
from dukat.core.spec import JobSpec, TaskSpec
from dukatd.metrics import DaemonMetrics

N = 20_000


async def noop() -> None:
    return None


async def run(attach: bool) -> float:
    scheduler = Scheduler(max_concurrency=64)
    metrics = DaemonMetrics()
    if attach:
        metrics.attach(scheduler)
    spec = JobSpec(tasks=tuple(TaskSpec(f"t{i}", CallableAction(noop)) for i in range(N)))
    start = time.process_time()
    job_id = scheduler.submit(spec)
    await scheduler.wait(job_id)
    elapsed = time.process_time() - start
    if attach:
        from prometheus_client import generate_latest

        text = generate_latest(metrics.registry).decode()
        assert 'dukat_tasks_finished_total{kind="callable",state="succeeded"} 20000.0' in text, text
        metrics.detach()
    await scheduler.close()
    return elapsed


async def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    without, with_ = [], []
    await run(False)
    await run(True)  # warm-up
    for _ in range(rounds):
        without.append(await run(False))
        with_.append(await run(True))
    a, b = min(without), min(with_)
    print(f"without metrics: {a * 1e6 / N:6.2f} µs/task (best of {rounds})")
    print(f"with metrics:    {b * 1e6 / N:6.2f} µs/task")
    print(f"metrics cost:    {(b - a) * 1e6 / N:6.2f} µs/task")


asyncio.run(main())
