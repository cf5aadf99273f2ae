"""Submit benchmark: one 100,000-task job sent to a real `python -m dukatd`, seconds and RSS.

    python bench/submit.py [--tasks 100000] [--rounds 3]

Each round starts a fresh daemon (`--ephemeral --metrics-listen off`, on a unix socket in a
temporary directory), waits until health says SERVING, and submits one job with
`dukat.connect(...).submit(spec)`: the layered DAG of bench/engine.py (200 tasks a layer, up
to 3 upstreams each, fixed seed) made of dispatch tasks to a queue no worker serves. So the
daemon does all that a Submit costs (decode, validate every task and dependency, look for
cycles, admit the job, make the first layer READY) and nothing runs afterwards to muddy
the memory figure. The daemon is stopped (SIGTERM) after each round.

    submit      wall-clock seconds of `client.submit(spec)` as the client sees it: encoding
                the JobSpec to protobuf, the call over the socket, the daemon's work, the
                reply. Wall clock because most of it is spent in the other process; the
                median of the rounds. `encode` is the client's share (the same conversion,
                timed alone, process CPU time of this process).
    peak RSS    the daemon's VmHWM from /proc/<pid>/status after the Submit returned (the
                highest resident set it ever had, start-up included); the largest of the
                rounds. `idle` is its VmRSS once SERVING, before the Submit.

Targets on the project's 2-core machines: submit < 5 s, peak RSS < 500 MB. A miss is
printed as such; the script still exits 0 (the benchmark is not part of CI).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dukat
from bench.engine import layered_dag
from dukat import convert
from dukat.actions import DispatchAction
from dukat.core import JobSpec, JobState, TaskSpec

REPO = Path(__file__).resolve().parent.parent
QUEUE = "bench-unserved"
TARGET_SECONDS = 5.0
TARGET_MB = 500
# What the daemon must not inherit from this shell: settings of its own, systemd's handshakes.
_NOT_INHERITED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS")


@dataclass(frozen=True)
class Round:
    seconds: float
    idle_mb: float
    peak_mb: float


def job_of(n: int) -> JobSpec:
    action = DispatchAction(QUEUE)
    return JobSpec(
        tuple(
            TaskSpec(name, action, dependencies=tuple(deps))
            for name, deps in layered_dag(n).items()
        )
    )


def status_mb(pid: int, field: str) -> float:
    """A memory line of /proc/<pid>/status (`VmRSS`, `VmHWM`: kB there) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise SystemExit(f"no {field} in /proc/{pid}/status: is this Linux?")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time process `pid` has used so far, every thread of it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def start_daemon(argv: list[str], log: Path, address: str) -> subprocess.Popen[bytes]:
    """The dukatd of `argv` (its output appended to `log`), once it serves at `address`;
    exits with its log if it never does."""
    with log.open("ab") as out:
        daemon = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=daemon_env(), cwd=REPO
        )
    failure = asyncio.run(serving(address, daemon))
    if failure is not None:
        stop(daemon)
        raise SystemExit(f"{failure}:\n{log.read_text()}")
    return daemon


async def serving(address: str, daemon: subprocess.Popen[bytes]) -> str | None:
    """None once health says SERVING; else why not (the caller adds the daemon's log)."""
    deadline = time.monotonic() + 30
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while daemon.poll() is None:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return None
            except grpc.aio.AioRpcError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                return "dukatd not SERVING within 30 s"
            await asyncio.sleep(0.05)
    return f"dukatd exited with {daemon.returncode}"


async def measure(address: str, pid: int, spec: JobSpec) -> Round:
    idle = status_mb(pid, "VmRSS")
    async with dukat.connect(address) as client:
        started = time.perf_counter()
        handle = await client.submit(spec)
        seconds = time.perf_counter() - started
        peak = status_mb(pid, "VmHWM")
        # After the measurement: the daemon holds the whole job, its first layer READY.
        job = await client.get_job(handle.job_id)
    if len(job.tasks) != len(spec.tasks):
        raise SystemExit(f"the daemon holds {len(job.tasks)} tasks, not {len(spec.tasks)}")
    return Round(seconds, idle, peak)


async def run_to_success(address: str, spec: JobSpec) -> float:
    """Seconds from Submit to the job's end through a daemon at `address`; it must succeed."""
    async with dukat.connect(address) as client:
        started = time.perf_counter()
        snapshot = await (await client.submit(spec)).wait()
        elapsed = time.perf_counter() - started
    if snapshot.state is not JobState.SUCCEEDED:
        raise SystemExit(f"the benchmark job ended {snapshot.state.name}")
    return elapsed


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM (a daemon drains), then SIGKILL if it is not gone within `timeout`."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def daemon_env() -> dict[str, str]:
    """This environment without what would change how a benchmark's dukatd runs."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DUKATD_") and k not in _NOT_INHERITED
    }


def one_round(spec: JobSpec) -> Round:
    """A fresh daemon (so that VmHWM is this Submit's), one Submit, SIGTERM."""
    env = daemon_env()
    # /tmp, not $TMPDIR: a unix socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-bench-") as directory:
        address = f"unix:{directory}/d.sock"
        log = Path(directory) / "dukatd.log"
        argv = [sys.executable, "-m", "dukatd", "--listen", address, "--ephemeral"]
        argv += ["--metrics-listen", "off"]
        with log.open("wb") as out:
            daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            failure = asyncio.run(serving(address, daemon))
            if failure is not None:
                raise SystemExit(f"{failure}:\n{log.read_text()}")
            return asyncio.run(measure(address, daemon.pid, spec))
        finally:
            stop(daemon)


def encode_seconds(spec: JobSpec) -> float:
    started = time.process_time()
    convert.job_spec_to_proto(spec).SerializeToString()
    return time.process_time() - started


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spec = job_of(args.tasks)
    edges = sum(len(task.dependencies) for task in spec.tasks)
    print(
        f"submit: one job of {args.tasks:,} dispatch tasks ({edges:,} dependencies) to a "
        f"fresh dukatd, {args.rounds} rounds"
    )
    rounds = [one_round(spec) for _ in range(args.rounds)]
    seconds = statistics.median(r.seconds for r in rounds)
    peak = max(r.peak_mb for r in rounds)
    idle = max(r.idle_mb for r in rounds)
    spread = ", ".join(f"{r.seconds:.2f}" for r in rounds)
    encode = encode_seconds(spec)
    print(f"  submit      {seconds:6.2f} s     (rounds: {spread}; encode {encode:.2f} s)")
    print(f"  peak RSS    {peak:6.0f} MB    (idle {idle:.0f} MB)")
    print(f"  submit < {TARGET_SECONDS:g} s: {verdict(seconds < TARGET_SECONDS)}")
    print(f"  peak RSS < {TARGET_MB} MB: {verdict(peak < TARGET_MB)}")


if __name__ == "__main__":
    main()
