"""Exec benchmark: the daemon's ExecRunner against a bare asyncio subprocess loop, same run.

    N `/bin/true` processes (default 2,000), at most 8 at once:

    dukat/uvloop     Scheduler + ExecRunner on uvloop: how the daemon runs them
    dukat/asyncio    the same on the default asyncio loop
    bare/asyncio     a Semaphore(8) loop of asyncio.create_subprocess_exec on the default loop
                     with a pidfd child watcher (set explicitly: 3.11's default is the
                     threaded watcher), capturing stdout and stderr like the runner does
    bare/no-pipes    the same without pipes: only spawn and reap
    bare/uvloop      bare/asyncio on uvloop, whose own subprocess support is the slow path

The target: dukat/uvloop at >= 80% of bare/asyncio. Figures are wall-clock processes per
second (spawning and reaping is work for the kernel and the children, not only for this
process), the median of several rounds with the contenders alternating; on a shared 2-core
machine single rounds swing by half, so read the ratios of the medians.

    python bench/exec.py [--tasks 2000] [--rounds 5] [--ledger] [--pdeathsig]

--ledger adds a GroupLedger (a line appended per group start and end); --pdeathsig wraps
every task in `setpriv --pdeathsig KILL --`, to show what a death signal by wrapper would cost.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dukat.actions import ExecAction
from dukat.core import JobSpec, JobState, Scheduler, TaskSpec
from dukatd.exec_groups import GroupLedger
from dukatd.exec_runner import ExecRunner

CONCURRENCY = 8
PROGRAM = "/bin/true"


async def dukat_runner(n: int, *, ledger_dir: str | None, pdeathsig: bool) -> None:
    ledger = GroupLedger.open(ledger_dir) if ledger_dir else None
    runner = ExecRunner(ledger=ledger)
    argv = ("setpriv", "--pdeathsig", "KILL", "--", PROGRAM) if pdeathsig else (PROGRAM,)
    action = ExecAction(argv)
    scheduler = Scheduler(max_concurrency=CONCURRENCY, runners={ExecAction: runner})
    job = scheduler.submit(JobSpec(tuple(TaskSpec(f"t{i}", action) for i in range(n))))
    state = await scheduler.wait(job)
    if state is not JobState.SUCCEEDED:
        raise SystemExit(f"the benchmark job ended {state.name}: {scheduler.get_job(job)}")


async def bare(n: int, *, pipes: bool) -> None:
    semaphore = asyncio.Semaphore(CONCURRENCY)
    out = subprocess.PIPE if pipes else subprocess.DEVNULL

    async def one() -> None:
        async with semaphore:
            process = await asyncio.create_subprocess_exec(
                PROGRAM, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
            if pipes:
                await process.communicate()
            else:
                await process.wait()
            if process.returncode != 0:
                raise SystemExit(f"{PROGRAM} exited {process.returncode}")

    await asyncio.gather(*(one() for _ in range(n)))


def with_pidfd_watcher(make: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """asyncio.run(make()) with the pidfd child watcher, the fastest the stdlib has."""
    if sys.version_info < (3, 12):
        # 3.11 defaults to ThreadedChildWatcher (a thread per process); later versions use
        # pidfds by themselves when the kernel has them.
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    asyncio.run(make())


def timed(run: Callable[[], None], n: int) -> float:
    """Processes per second of one round."""
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ledger", action="store_true", help="record groups in a GroupLedger")
    parser.add_argument("--pdeathsig", action="store_true", help="wrap tasks in setpriv")
    args = parser.parse_args()
    n = args.tasks
    with tempfile.TemporaryDirectory(prefix="dukat-bench-") as scratch:
        ledger_dir = str(Path(scratch) / "groups") if args.ledger else None
        options = {"ledger_dir": ledger_dir, "pdeathsig": args.pdeathsig}
        contenders: dict[str, Callable[[], None]] = {
            "dukat/uvloop": lambda: uvloop.run(dukat_runner(n, **options)),
            "dukat/asyncio": lambda: asyncio.run(dukat_runner(n, **options)),
            "bare/asyncio": lambda: with_pidfd_watcher(lambda: bare(n, pipes=True)),
            "bare/no-pipes": lambda: with_pidfd_watcher(lambda: bare(n, pipes=False)),
            "bare/uvloop": lambda: uvloop.run(bare(n, pipes=True)),
        }
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        timed(contenders["dukat/uvloop"], n)  # warm-up: page cache, imports, allocator
        for round_ in range(args.rounds):
            names = list(contenders)
            if round_ % 2:
                names.reverse()  # alternate, so drift on the machine hits everyone alike
            for name in names:
                rates[name].append(timed(contenders[name], n))

    extras = [flag for flag in ("ledger", "pdeathsig") if getattr(args, flag)]
    print(
        f"{n} x {PROGRAM}, concurrency {CONCURRENCY}, median of {args.rounds} rounds"
        + (f" ({', '.join(extras)})" if extras else "")
    )
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        spread = f"{min(rates[name]):,.0f}-{max(rates[name]):,.0f}"
        print(f"  {name:<14} {value:8,.0f} processes/s   (rounds: {spread})")
    ratio = median["dukat/uvloop"] / median["bare/asyncio"]
    print(f"  dukat/uvloop vs bare/asyncio:  {ratio:.0%}  (target >= 80%)")
    print(
        f"  dukat/uvloop vs bare/no-pipes: {median['dukat/uvloop'] / median['bare/no-pipes']:.0%}"
    )
    print(f"  dukat/uvloop vs bare/uvloop:   {median['dukat/uvloop'] / median['bare/uvloop']:.1f}x")


if __name__ == "__main__":
    main()
