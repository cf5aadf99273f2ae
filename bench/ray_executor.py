"""Ray executor benchmark: 2,000 short exec tasks through dukatd on Ray, against Ray alone.

    make bench                (needs dukat[ray]; this script: python bench/ray_executor.py)
    python bench/ray_executor.py [--tasks 2000] [--rounds 3] [--cpus 2]

One local Ray (a head with `--cpus` CPUs, on loopback, started by this process) serves both,
in the same run, rounds alternating:

    ray/direct   the DAG as Ray tasks: `subprocess.run(["true"])` inside `@ray.remote`
                 (num_cpus=1), each given its upstreams' ObjectRefs so that Ray orders them;
                 `ray.wait` on all of them.
    ray/gated    for where the time goes: the same tasks, each submitted by this process
                 only once its upstreams ended and one of `--cpus` slots is free, as a
                 scheduler that counts the cluster's resources itself (dukat's pool) does.
    dukat/ray    a real `python -m dukatd --executor ray` on the same cluster, the same DAG
                 as one job of exec tasks `true`, each asking `cpu=1` (num_cpus=1 on Ray's
                 side), `client.submit` then `handle.wait()`.

The DAG is bench/engine.py's `layered_dag` (200 tasks a layer, up to 3 upstreams each). The
figures are tasks per second of wall-clock time from submitting to knowing every task
ended, the median of the rounds. Target: dukat's overhead on top of Ray (its time over Ray's,
less one) at most 25%. Not part of CI; a miss prints as such and the exit status stays 0.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine import Graph, layered_dag
from bench.submit import cpu_seconds, run_to_success, start_daemon, stop

# Ray rewrites a loopback address into the host's outside one unless told this; the cluster
# here listens on 127.0.0.1 only, and the daemon's bridge (which inherits it) must find it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

REPO = Path(__file__).resolve().parent.parent
TARGET_OVERHEAD = 0.25


def run_true(*_upstreams: object) -> int:
    return subprocess.run(["true"], check=True).returncode


def ray_direct(graph: Graph) -> float:
    import ray

    remote = ray.remote(num_cpus=1, max_retries=0)(run_true)
    started = time.perf_counter()
    refs: dict[str, object] = {}
    for name, deps in graph.items():  # layered_dag lists every task after its upstreams
        refs[name] = remote.remote(*(refs[d] for d in deps))
    everything = list(refs.values())
    ready, _ = ray.wait(everything, num_returns=len(everything), fetch_local=False)
    seconds = time.perf_counter() - started
    if len(ready) != len(graph):
        raise SystemExit("not every ray task ended")
    return seconds


def ray_gated(graph: Graph, slots: int) -> float:
    """The DAG as Ray tasks, each submitted only once its upstreams ended and a slot is free
    (`slots` at once): what any scheduler that keeps its own count of the cluster's
    resources, as dukat's pool does, hands Ray. Ray then has no queue of its own to run from:
    it leases a worker for each task, and the next one starts a round trip later."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=0)(run_true)
    started = time.perf_counter()
    waiting = {name: set(deps) for name, deps in graph.items()}
    dependents: dict[str, list[str]] = {name: [] for name in graph}
    for name, deps in graph.items():
        for dep in deps:
            dependents[dep].append(name)
    ready = [name for name, deps in waiting.items() if not deps]
    running: dict[object, str] = {}
    done = 0
    while done < len(graph):
        while ready and len(running) < slots:
            running[remote.remote()] = ready.pop(0)
        finished, _ = ray.wait(list(running), num_returns=1)
        for ref in finished:
            name = running.pop(ref)
            done += 1
            for dependent in dependents[name]:
                waiting[dependent].discard(name)
                if not waiting[dependent]:
                    ready.append(dependent)
    return time.perf_counter() - started


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (dukatd's: its Ray bridge)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def dukat_job(graph: Graph, round_: int):  # -> JobSpec
    from dukat.actions import ExecAction
    from dukat.core import JobSpec, TaskSpec
    from dukat.core.resources import ResourceRequirement, ResourceType

    action = ExecAction(("true",))
    cpu = (ResourceRequirement(ResourceType.CPU, 1),)
    return JobSpec(
        tuple(
            TaskSpec(name, action, dependencies=tuple(deps), resources=cpu)
            for name, deps in graph.items()
        ),
        labels={"round": str(round_)},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    try:
        import ray
    except ImportError as error:
        print(
            f"bench/ray_executor.py skipped: cannot import ray ({error}); pip install 'dukat[ray]'"
        )
        return

    graph = layered_dag(args.tasks)
    started = time.perf_counter()
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    address = ray.get_runtime_context().gcs_address
    up = time.perf_counter() - started
    print(f"Ray {ray.__version__} at {address}, {args.cpus} CPUs: up in {up:.1f} s")
    times: dict[str, list[float]] = {"ray/direct": [], "ray/gated": [], "dukat/ray": []}
    cpu: dict[str, list[float]] = {"dukatd": [], "bridge": [], "driver": []}
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-bench-ray-") as directory:
        socket = f"unix:{directory}/d.sock"
        argv = [sys.executable, "-m", "dukatd", "--listen", socket, "--ephemeral"]
        argv += ["--metrics-listen", "off", "--allow-exec", "--executor", "ray"]
        argv += ["--ray-address", address]
        daemon = start_daemon(argv, Path(directory) / "dukatd.log", socket)
        try:
            ray_direct(layered_dag(200))  # warm both: Ray's workers, dukatd's bridge
            asyncio.run(run_to_success(socket, dukat_job(layered_dag(200), -1)))
            bridge = next(iter(children(daemon.pid)))
            for round_ in range(args.rounds):
                driver = cpu_seconds(os.getpid())
                times["ray/direct"].append(ray_direct(graph))
                cpu["driver"].append(cpu_seconds(os.getpid()) - driver)
                times["ray/gated"].append(ray_gated(graph, args.cpus))
                before = cpu_seconds(daemon.pid), cpu_seconds(bridge)
                times["dukat/ray"].append(
                    asyncio.run(run_to_success(socket, dukat_job(graph, round_)))
                )
                cpu["dukatd"].append(cpu_seconds(daemon.pid) - before[0])
                cpu["bridge"].append(cpu_seconds(bridge) - before[1])
        finally:
            stop(daemon)
            ray.shutdown()

    print(f"\n{args.tasks} exec tasks `true`, cpu=1 each, median of {args.rounds} rounds")
    print(f"{'':12} {'tasks/s':>9} {'seconds':>9}   rounds")
    median = {name: statistics.median(seconds) for name, seconds in times.items()}
    for name, seconds in times.items():
        rounds = " ".join(f"{s:.2f}" for s in seconds)
        print(f"{name:12} {args.tasks / median[name]:9.0f} {median[name]:9.2f}   {rounds}")
    per_task = {name: statistics.median(s) / args.tasks * 1e6 for name, s in cpu.items()}
    print(
        f"CPU per task: dukatd {per_task['dukatd']:.0f} us and its Ray bridge (the driver) "
        f"{per_task['bridge']:.0f} us, against Ray's driver alone {per_task['driver']:.0f} us"
    )
    floor = median["ray/gated"] / median["ray/direct"] - 1
    print(f"Ray gated as dukat gates it, over Ray alone: {floor:+.0%} (no dukat in it at all)")
    gated = median["dukat/ray"] / median["ray/gated"] - 1
    print(f"dukat over Ray gated as dukat gates it: {gated:+.0%}")
    overhead = median["dukat/ray"] / median["ray/direct"] - 1
    verdict = "met" if overhead <= TARGET_OVERHEAD else "MISSED"
    print(
        f"\ndukat's overhead on top of Ray: {overhead:+.0%} "
        f"(target <= {TARGET_OVERHEAD:.0%}: {verdict})"
    )


if __name__ == "__main__":
    main()
