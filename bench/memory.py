"""Memory benchmark: what a task held by a real `python -m dukatd` costs in resident memory.

    python bench/memory.py [--jobs 10] [--tasks 20000] [--ephemeral]

Starts a daemon (with a journal in a temporary state directory unless `--ephemeral`;
`--metrics-listen off`, `--max-tasks` just enough) and submits `--jobs` jobs of `--tasks`
dispatch tasks each to a queue no worker serves: the layered DAG of bench/engine.py, each
task with a 32-byte payload. So every task stays held, READY or PENDING, and nothing runs.

    live        the daemon's VmRSS (/proc/<pid>/status) after each Submit, and its growth
                since it was SERVING divided by the tasks held: what `--max-tasks` is sized
                from (its default times this is the memory dukatd may take for tasks).
    finished    every job is cancelled, and so held as finished for retention; RSS per task
                again (freed memory mostly stays with the process, so this is an upper bound).
    restarted   with a journal: the daemon is stopped (SIGTERM) and started again on the
                same state directory, which brings every job back finished; RSS per task of
                a fresh process holding finished jobs only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dukat
from bench.engine import layered_dag
from bench.submit import start_daemon, status_mb, stop
from dukat.actions import DispatchAction
from dukat.core import JobSpec, JobState, TaskSpec

QUEUE = "bench-unserved"


def job_of(n: int, prefix: str) -> JobSpec:
    return JobSpec(
        tuple(
            TaskSpec(
                name,
                DispatchAction(QUEUE, f"{prefix}-{name}".encode().ljust(32)),
                dependencies=tuple(deps),
            )
            for name, deps in layered_dag(n).items()
        )
    )


def per_task(rss: float, idle: float, tasks: int) -> str:
    return f"{rss:7.1f} MB  ({(rss - idle) * 1e6 / tasks:5.0f} B a task)"


async def fill(address: str, pid: int, jobs: int, tasks: int) -> float:
    """Submit the jobs, then cancel them all; the idle RSS."""
    idle = status_mb(pid, "VmRSS")
    print(f"  idle        {idle:7.1f} MB")
    async with dukat.connect(address) as client:
        handles = []
        for index in range(jobs):
            handles.append(await client.submit(job_of(tasks, f"j{index}")))
            held = (index + 1) * tasks
            print(f"  live      {held:>9,} tasks: {per_task(status_mb(pid, 'VmRSS'), idle, held)}")
        for handle in handles:
            await handle.cancel()
        for handle in handles:
            job = await handle.wait()
            if job.state is not JobState.CANCELLED:
                raise SystemExit(f"job {handle.job_id} ended {job.state.name}")
    held = jobs * tasks
    print(f"  finished  {held:>9,} tasks: {per_task(status_mb(pid, 'VmRSS'), idle, held)}")
    return idle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--ephemeral", action="store_true")
    args = parser.parse_args()
    kind = "ephemeral" if args.ephemeral else "journal on"
    print(f"memory: {args.jobs} jobs of {args.tasks:,} dispatch tasks, nothing served ({kind})")
    held = args.jobs * args.tasks
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-bench-") as directory:
        address = f"unix:{directory}/d.sock"
        log = Path(directory) / "dukatd.log"
        state = ["--ephemeral"] if args.ephemeral else ["--state-dir", f"{directory}/state"]
        argv = [sys.executable, "-m", "dukatd", "--listen", address, *state]
        argv += ["--metrics-listen", "off", "--max-tasks", str(held)]
        daemon = start_daemon(argv, log, address)
        try:
            idle = asyncio.run(fill(address, daemon.pid, args.jobs, args.tasks))
        finally:
            stop(daemon)
        if not args.ephemeral:
            daemon = start_daemon(argv, log, address)
            try:
                rss = status_mb(daemon.pid, "VmRSS")
                print(f"  restarted {held:>9,} tasks: {per_task(rss, idle, held)}")
            finally:
                stop(daemon)


if __name__ == "__main__":
    main()
