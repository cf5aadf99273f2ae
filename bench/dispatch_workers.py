"""Where a dispatch job's time goes, by worker: the Python client's against the TypeScript one's.

    python bench/dispatch_workers.py [--tasks 20000] [--in-flight 1000] [--rounds 5]

`bench/dispatch.py` times the two workers one after the other, and on a shared machine the load
moves in between. Here a real dukatd (`--ephemeral`) and its worker are started for each
(`dukat.client`'s Worker; the TypeScript client's, clients/typescript/bench/worker.ts, built by
`make bench`), a job of N no-op dispatch tasks warms each up, then the two take turns, a job
each per round. For every job: tasks per second of wall-clock time, and the CPU seconds that
dukatd, the worker and this process (the client that submits and waits) spent on it, read from
/proc: CPU time does not move with the machine's load the way wall-clock time does. Figures
are medians of the rounds; the ratio is the median of the rounds' own ratios.

The worker is the ceiling only if its CPU time per job is near the job's wall-clock time; when
dukatd's is, no worker can go faster.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from pathlib import Path

# As the daemon does: spawning the client subprocess must not run gRPC's fork handlers.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dispatch import no_op_job, python_worker, served, typescript_worker
from bench.submit import run_to_success

WORKERS = {"python": python_worker, "typescript": typescript_worker}
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None = None) -> float:
    """User and system CPU seconds of a process so far (this one when `pid` is None)."""
    path = f"/proc/{pid or 'self'}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, spec = args.tasks, no_op_job(args.tasks)
    print(f"dispatch by worker: {n:,} no-op tasks, max_in_flight {args.in_flight}, one dukatd each")
    # name -> per round: (tasks/s, dukatd CPU s, worker CPU s, client CPU s)
    figures: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in WORKERS}
    with contextlib.ExitStack() as stack:
        pairs = {
            name: stack.enter_context(served(args.in_flight, command))
            for name, command in WORKERS.items()
        }
        for round_ in range(args.rounds + 1):
            for name, (address, daemon, worker) in pairs.items():
                before = (cpu_seconds(daemon.pid), cpu_seconds(worker.pid), cpu_seconds())
                seconds = uvloop.run(run_to_success(address, spec))
                after = (cpu_seconds(daemon.pid), cpu_seconds(worker.pid), cpu_seconds())
                if round_:  # the first: warming up (imports, JIT, caches)
                    spent = (b - a for a, b in zip(before, after, strict=True))
                    figures[name].append((n / seconds, *spent))
    columns = ("dukatd", "worker", "client")
    print(f"  {'':<11} {'tasks/s':>8}   CPU s per job: {'  '.join(f'{c:>6}' for c in columns)}")
    for name, rows in figures.items():
        rate, daemon_cpu, worker_cpu, client_cpu = (
            statistics.median(c) for c in zip(*rows, strict=True)
        )
        print(
            f"  {name:<11} {rate:>8,.0f}   {'':<14} {daemon_cpu:>6.2f}  {worker_cpu:>6.2f}"
            f"  {client_cpu:>6.2f}   (rounds: {', '.join(f'{r[0]:,.0f}' for r in rows)})"
        )
    ts, py = figures["typescript"], figures["python"]
    ratio = statistics.median(t[0] / p[0] for t, p in zip(ts, py, strict=True))
    cpu = statistics.median(t[2] / p[2] for t, p in zip(ts, py, strict=True))
    print(f"  typescript vs python: {ratio:.2f}x the throughput, {cpu:.2f}x the worker's CPU")


if __name__ == "__main__":
    main()
