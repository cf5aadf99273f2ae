"""Journal benchmark: what the SQLite journal costs a real `python -m dukatd`, same run.

    python bench/journal.py [--rounds 3] [--quick]

Every daemon is a real `python -m dukatd` process on a unix socket in a temporary directory
(`--metrics-listen off`); the journal's is a fresh temporary `--state-dir`. The contenders
differ only in that:

    journal          the journal on, as by default (`--journal-sync normal`: no fsync)
    journal/full     the journal on, `--journal-sync full` (an fsync at each commit)
    no-ledger        journal, but the exec-group ledger (`dukatd.exec_groups`: a line
                     appended at each exec task's start and end, on with a state dir and
                     --allow-exec) is
                     stubbed out (exec only): what the journal alone costs exec tasks; the
                     same `dukatd.__main__.main`, started with `python -c` to stub it
    ephemeral        `--ephemeral`: no journal (and no ledger), the baseline

    exec        one job of --exec-tasks `/bin/true` tasks (2,000) at --max-concurrency 8
                (as bench/exec.py), submitted with `dukat.connect(...).submit`, timed from
                submit to `handle.wait()`: processes per second
    dispatch    one job of --dispatch-tasks no-op dispatch tasks (20,000) served by one
                `dukat.client` Worker process (concurrency 1,000, as bench/dispatch.py's
                dukatd/client), timed the same way: tasks per second
    submit      one --submit-tasks job (100,000; bench/submit.py's layered DAG of dispatch
                tasks no worker serves) to a fresh daemon: seconds until Submit answered
                (with the journal that includes the commit of the job), the daemon's peak
                RSS (VmHWM) and the journal's size on disk once the Submit answered (the
                database and its WAL) and after the daemon stopped (checkpointed); then a
                new daemon on that state dir: seconds from its start to SERVING, recovery
                of the job included (and the interpreter's own start, about a second)

The daemons of a section are started once and kept; each round runs one job on each, the
order alternating between rounds, after one warm-up job each. `cpu` is the daemon's own CPU
time (user + system, from /proc) per 1,000 tasks, the median of the rounds: less noisy than
wall clock, and where the journal's cost shows (its writer thread included). Ratios are
journal/ephemeral of the medians; the targets: the journal keeps >= 80% of the throughput,
and a 100,000-task Submit answers in < 5 s. A miss is printed, not an error (not part of CI).
On a shared 2-core machine, with other work running, single rounds swing by a third and
more: read the medians, and run it again before believing a few percent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

import dukat
from bench.submit import (
    cpu_seconds,
    daemon_env,
    job_of,
    run_to_success,
    start_daemon,
    status_mb,
    stop,
    verdict,
)
from dukat.actions import DispatchAction, ExecAction
from dukat.core import JobSpec, TaskSpec
from dukatd.journal import JOURNAL_FILE

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
QUEUE = "bench"
EXEC_CONCURRENCY = 8
IN_FLIGHT = 1_000
TARGET_RATIO = 0.80
TARGET_SECONDS = 5.0
NORMAL, FULL, NO_LEDGER = "journal", "journal/full", "no-ledger"
EPHEMERAL = "ephemeral"
MODES = {
    FULL: ("--journal-sync", "full"),
    NORMAL: ("--journal-sync", "normal"),
    NO_LEDGER: ("--journal-sync", "normal"),
    EPHEMERAL: ("--ephemeral",),
}
# dukatd with GroupLedger.open making a ledger that records nothing (for NO_LEDGER).
_WITHOUT_LEDGER = """
import os, sys
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"
from dukatd.exec_groups import GroupLedger
class NoLedger:
    killed = []
    def add(self, pgid, started_after=None): pass
    def discard(self, pgid): pass
    def __len__(self): return 0
GroupLedger.open = classmethod(lambda cls, directory: NoLedger())
from dukatd.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Daemon:
    """A running `python -m dukatd` of this benchmark."""

    address: str
    process: subprocess.Popen[bytes]
    state_dir: Path | None
    log: Path
    argv: list[str]

    @property
    def journal_bytes(self) -> int:
        """The journal's database and WAL, as they are on disk now."""
        if self.state_dir is None:
            return 0
        files = (JOURNAL_FILE, f"{JOURNAL_FILE}-wal")
        return sum(p.stat().st_size for f in files if (p := self.state_dir / f).exists())

    def cpu_seconds(self) -> float:
        """User + system CPU time of the daemon so far, every thread of it."""
        return cpu_seconds(self.process.pid)


@contextmanager
def running_daemon(mode: str, *options: str) -> Iterator[Daemon]:
    """A daemon in `mode` (a key of MODES) with `options`, SERVING; SIGTERM at the end."""
    # /tmp, not $TMPDIR: a unix socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-bench-") as directory:
        root = Path(directory)
        address = f"unix:{root}/d.sock"
        state_dir = None if mode == EPHEMERAL else root / "state"
        start = ("-c", _WITHOUT_LEDGER) if mode == NO_LEDGER else ("-m", "dukatd")
        argv = [sys.executable, *start, "--listen", address, "--metrics-listen", "off"]
        argv += [*MODES[mode], *options]
        if state_dir is not None:
            argv += ["--state-dir", str(state_dir)]
        log = root / "dukatd.log"
        process = start_daemon(argv, log, address)
        try:
            yield Daemon(address, process, state_dir, log, argv)
        finally:
            stop(process)


@contextmanager
def running_worker(address: str) -> Iterator[None]:
    """bench/dispatch.py's `dukat.client` Worker process, no-op handler, connected."""
    worker = subprocess.Popen(
        [sys.executable, str(BENCH / "dispatch.py"), "--client-worker", address, str(IN_FLIGHT)],
        stdout=subprocess.PIPE,
        env=daemon_env(),
    )
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != b"ready":
            raise SystemExit(f"the worker did not connect to {address}")
        yield
    finally:
        stop(worker)


# -- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    rate: float  # tasks per second, wall clock, submit to the job's end
    cpu_ms: float  # the daemon's CPU time per 1,000 tasks


def run_job(daemon: Daemon, spec: JobSpec) -> Sample:
    """Submit `spec` and wait for its end; its rate and the daemon's CPU time for it."""

    cpu = daemon.cpu_seconds()
    elapsed = uvloop.run(run_to_success(daemon.address, spec))
    cpu = daemon.cpu_seconds() - cpu
    n = len(spec.tasks)
    return Sample(n / elapsed, cpu * 1000 / n * 1000)


def alternate(daemons: dict[str, Daemon], spec: JobSpec, rounds: int) -> dict[str, list[Sample]]:
    """One job on each daemon per round, the order reversed every other round."""
    warm_up = JobSpec(spec.tasks[: max(1, len(spec.tasks) // 10)])
    for daemon in daemons.values():
        run_job(daemon, warm_up)  # imports, the allocator, the file's first pages
    samples: dict[str, list[Sample]] = {name: [] for name in daemons}
    for round_ in range(rounds):
        names = list(daemons)
        if round_ % 2:
            names.reverse()  # drift on the machine hits everyone alike
        for name in names:
            samples[name].append(run_job(daemons[name], spec))
    return samples


def throughput_section(
    title: str,
    unit: str,
    modes: Sequence[str],
    spec: JobSpec,
    rounds: int,
    options: Sequence[str],
    *,
    worker: bool = False,
) -> list[float]:
    """Print a section's table; the journal/ephemeral ratios of its journal modes.

    `worker`: give each daemon a `dukat.client` worker of the bench queue."""
    with ExitStack() as stack:
        daemons = {mode: stack.enter_context(running_daemon(mode, *options)) for mode in modes}
        if worker:
            for daemon in daemons.values():
                stack.enter_context(running_worker(daemon.address))
        samples = alternate(daemons, spec, rounds)
    print(title)
    median = {name: statistics.median(s.rate for s in values) for name, values in samples.items()}
    for name, values in samples.items():
        cpu = statistics.median(s.cpu_ms for s in values)
        spread = ", ".join(f"{s.rate:,.0f}" for s in values)
        print(
            f"  {name:<15} {median[name]:8,.0f} {unit}/s   cpu {cpu:5.0f} ms/1k tasks"
            f"   (rounds: {spread})"
        )
    ratios = []
    for name in modes:
        if name != EPHEMERAL:
            ratio = median[name] / median[EPHEMERAL]
            ratios.append(ratio)
            print(
                f"  {name} vs ephemeral: {ratio:.2f}  (target >= {TARGET_RATIO:.2f}: "
                f"{verdict(ratio >= TARGET_RATIO)})"
            )
    return ratios


@dataclass(frozen=True)
class SubmitRound:
    seconds: float
    peak_mb: float
    journal_mb: float  # once Submit answered: database + WAL
    stopped_mb: float  # after the daemon's stop (checkpointed, WAL truncated)
    restart_seconds: float  # a new daemon on that state dir, to SERVING (recovery)


def submit_round(mode: str, spec: JobSpec) -> SubmitRound:
    """A fresh daemon (so that VmHWM is this Submit's), one Submit, stop."""

    async def submit(daemon: Daemon) -> float:
        async with dukat.connect(daemon.address) as client:
            started = time.perf_counter()
            await client.submit(spec)
            return time.perf_counter() - started

    with running_daemon(mode) as daemon:
        seconds = asyncio.run(submit(daemon))
        peak = status_mb(daemon.process.pid, "VmHWM")
        size = daemon.journal_bytes
        stop(daemon.process)
        stopped = daemon.journal_bytes
        restart = restart_seconds(daemon) if daemon.state_dir is not None else 0.0
    return SubmitRound(seconds, peak, size / 1e6, stopped / 1e6, restart)


def restart_seconds(daemon: Daemon) -> float:
    """Start the daemon again on its state dir: seconds until SERVING, its recovery done."""
    began = time.perf_counter()
    again = start_daemon(daemon.argv, daemon.log, daemon.address)
    seconds = time.perf_counter() - began
    stop(again)
    return seconds


def submit_section(spec: JobSpec, rounds: int) -> float:
    """Print the Submit table; the median seconds with the journal."""
    results: dict[str, list[SubmitRound]] = {NORMAL: [], EPHEMERAL: []}
    for round_ in range(rounds):
        names = list(results)
        if round_ % 2:
            names.reverse()
        for name in names:
            results[name].append(submit_round(name, spec))
    n = len(spec.tasks)
    edges = sum(len(task.dependencies) for task in spec.tasks)
    print(f"submit: one job of {n:,} dispatch tasks ({edges:,} dependencies), fresh daemons")
    seconds = {}
    for name, values in results.items():
        seconds[name] = statistics.median(r.seconds for r in values)
        peak = max(r.peak_mb for r in values)
        spread = ", ".join(f"{r.seconds:.2f}" for r in values)
        line = f"  {name:<15} {seconds[name]:6.2f} s   peak RSS {peak:4.0f} MB"
        if name != EPHEMERAL:
            size = max(r.journal_mb for r in values)
            stopped = max(r.stopped_mb for r in values)
            restart = statistics.median(r.restart_seconds for r in values)
            line += f"   journal {size:.1f} MB ({stopped:.1f} MB stopped)"
            line += f"   restart to SERVING {restart:.2f} s"
        print(f"{line}   (rounds: {spread})")
    print(
        f"  journal vs ephemeral: {seconds[NORMAL] / seconds[EPHEMERAL]:.2f}x the time; "
        f"< {TARGET_SECONDS:g} s: {verdict(seconds[NORMAL] < TARGET_SECONDS)}"
    )
    return seconds[NORMAL]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exec-tasks", type=int, default=2_000)
    parser.add_argument("--dispatch-tasks", type=int, default=20_000)
    parser.add_argument("--submit-tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny jobs, one round (no figures)"
    )
    args = parser.parse_args()
    if args.quick:
        args.exec_tasks, args.dispatch_tasks, args.submit_tasks = 20, 200, 1_000
        args.rounds = 1
    rounds = args.rounds
    if args.quick:
        print("--quick: a smoke run, tiny jobs; its figures mean nothing")
    print(
        f"journal: a real dukatd per configuration, medians of {rounds} rounds alternating; "
        f"{os.cpu_count()} CPUs, shared (other work may run): read the ratios, not single rounds"
    )
    exec_spec = JobSpec(
        tuple(TaskSpec(f"t{i}", ExecAction(("/bin/true",))) for i in range(args.exec_tasks))
    )
    throughput_section(
        f"exec: {args.exec_tasks:,} x /bin/true, --max-concurrency {EXEC_CONCURRENCY}",
        "processes",
        (NORMAL, FULL, NO_LEDGER, EPHEMERAL),
        exec_spec,
        rounds,
        ("--allow-exec", "--max-concurrency", str(EXEC_CONCURRENCY)),
    )
    print()
    dispatch_spec = JobSpec(
        tuple(TaskSpec(f"t{i}", DispatchAction(QUEUE)) for i in range(args.dispatch_tasks))
    )
    throughput_section(
        f"dispatch: {args.dispatch_tasks:,} no-op tasks, one dukat.client worker "
        f"(concurrency {IN_FLIGHT:,})",
        "tasks",
        (NORMAL, FULL, EPHEMERAL),
        dispatch_spec,
        rounds,
        ("--max-concurrency", str(IN_FLIGHT * 2)),
        worker=True,
    )
    print()
    submit_section(job_of(args.submit_tasks), rounds)


if __name__ == "__main__":
    main()
