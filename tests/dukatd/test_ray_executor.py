"""`dukatd --executor ray`: exec tasks on a real Ray cluster of several nodes on this host.

One cluster for the module (tests/dukatd/ray_cluster.py: a head with one CPU, node `alpha`
with 2 CPUs and `alpha: 2`, node `beta` with 2 CPUs and `beta: 2`), and one daemon for the
tests that only submit jobs; the tests that kill a daemon or remove a node have their own.
Each task says where it ran (`DUKAT_RAY_NODE_ID`), so placement is proved, not assumed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import dukat
from dukat import convert
from dukat.actions import ExecAction
from dukat.client import Reconnect
from dukat.core import JobSpec, TaskSpec
from dukat.core.events import TaskOutput, TaskProgress, TaskStateChanged
from dukat.core.resources import ResourceRequirement, ResourceType
from dukat.core.retry import RetryPolicy
from dukat.core.states import JobState, TaskState
from dukat.daemon_status import RayClusterStatus
from dukat.errors import InvalidArgumentError
from dukat.v1 import scheduler_pb2, scheduler_pb2_grpc
from dukatd.metrics_ray import RAY_METRICS
from tests.dukatd.daemon_process import DaemonProcess
from tests.dukatd.processes import alive, all_dead
from tests.dukatd.ray_cluster import RAY_ENV, RayCluster
from tests.helpers import wait_for

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="needs Ray: pip install 'dukat[ray]'"
)

# A task that says where it runs, then starts two children (one under a shell of its own)
# and tells their pids, and waits for them: a tree to stop.
WHERE = 'echo "$DUKAT_TASK_ID on $DUKAT_RAY_NODE_ID"'
TREE = 'sleep 300 & a=$!; sh -c "sleep 301" & b=$!; echo "pids $$ $a $b"; wait'


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    cluster = RayCluster()
    try:
        cluster.add("alpha", 2, {"alpha": 2})
        cluster.add("beta", 2, {"beta": 2})
        yield cluster
    finally:
        cluster.close()


def ray_daemon(directory: Path, cluster: RayCluster, *args: str, **kwargs) -> DaemonProcess:
    return DaemonProcess(
        directory,
        (
            "--allow-exec",
            "--executor",
            "ray",
            "--ray-address",
            cluster.address,
            "--ray-refresh-interval",
            "200ms",
            "--kill-grace",
            "1s",
            *args,
        ),
        env=RAY_ENV,
        **kwargs,
    )


@pytest.fixture(scope="module")
def daemon(cluster: RayCluster) -> Iterator[str]:
    """The address of a daemon on the module's cluster, for tests that only submit jobs."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukatd-") as directory:
        process = ray_daemon(Path(directory), cluster).start()
        try:
            asyncio.run(process.serving(within=60))
            yield process.address
        finally:
            process.kill()


def sh(script: str, **env: str) -> ExecAction:
    return ExecAction(("sh", "-c", script), env=env)


def custom(name: str, amount: float) -> ResourceRequirement:
    return ResourceRequirement(ResourceType.CUSTOM, amount, name=name)


def cpu(amount: float) -> ResourceRequirement:
    return ResourceRequirement(ResourceType.CPU, amount)


async def test_a_diamond_runs_each_task_on_a_node_that_has_its_resources(daemon, cluster):
    job = JobSpec(
        tasks=(
            TaskSpec("top", sh(WHERE)),
            TaskSpec("left", sh(WHERE), dependencies=("top",), resources=(custom("alpha", 1),)),
            TaskSpec(
                "right",
                sh(WHERE),
                dependencies=("top",),
                resources=(custom("beta", 1), cpu(2)),
            ),
            TaskSpec(
                "bottom",
                sh(WHERE),
                dependencies=("left", "right"),
                resources=(custom("alpha", 2), cpu(1)),
            ),
        )
    )
    async with dukat.connect(daemon) as client:
        status = await client.status()
        capacity = {r.name: r.capacity for r in status.resources}
        # The cluster's totals, in Ray's units: 1 + 2 + 2 CPUs, and the custom resources.
        assert (capacity["cpu"], capacity["alpha"], capacity["beta"]) == (5, 2, 2)
        assert capacity["gpu"] == 0  # no node has one
        assert status.executor == "ray"
        assert status.ray == RayClusterStatus(cluster.address, True, "", 3)
        handle = await client.submit(job)
        assert (await handle.wait()).state is JobState.SUCCEEDED
        results = await handle.results()
    ran_on = {
        task: results[task].result.stdout.decode().split(" on ")[1].strip() for task in results
    }
    assert ran_on["left"] == ran_on["bottom"] == cluster.node_ids["alpha"]
    assert ran_on["right"] == cluster.node_ids["beta"]


async def test_output_and_progress_arrive_while_the_task_runs(daemon, short_tmp: Path):
    go = short_tmp / "go"
    script = (
        'echo first; echo "::progress 0.5 half way"; '
        'until [ -e "$GO" ]; do sleep 0.05; done; echo last'
    )
    async with dukat.connect(daemon) as client:
        handle = await client.submit(JobSpec(tasks=(TaskSpec("talks", sh(script, GO=str(go))),)))
        lines, reports = [], []
        async for event in handle.events():
            if isinstance(event, TaskOutput):
                lines.append(event.text)
            elif isinstance(event, TaskProgress):
                reports.append((event.fraction, event.message))
            if lines == ["first"] and reports == [(0.5, "half way")]:
                go.touch()  # the task cannot end before this: both came while it ran
        assert (await handle.wait()).state is JobState.SUCCEEDED
    assert lines == ["first", "last"]


async def test_a_failed_attempt_is_retried_by_dukat(daemon, short_tmp: Path):
    mark = short_tmp / "failed-once"
    script = 'if [ -e "$MARK" ]; then echo fine; else touch "$MARK"; echo boom >&2; exit 3; fi'
    task = TaskSpec(
        "flaky",
        sh(script, MARK=str(mark)),
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, jitter=0),
    )
    async with dukat.connect(daemon) as client:
        handle = await client.submit(JobSpec(tasks=(task,)))
        messages = [
            event.message
            async for event in handle.events()
            if isinstance(event, TaskStateChanged) and event.state is TaskState.RETRYING
        ]
        result = (await handle.results())["flaky"]
    assert messages == [
        "TaskProcessError: 'sh' exited with code 3; stderr ends: boom; retrying in 0.01s"
    ]
    assert (result.state, result.attempts, result.result.stdout) == (
        TaskState.SUCCEEDED,
        2,
        b"fine\n",
    )


async def stop_a_tree(daemon: str, task: TaskSpec, *, cancel: bool) -> tuple[object, list[int]]:
    """Run a TREE task until it told its pids, cancel it (or let its timeout come); its
    result once the job ended, and the pids."""
    pids: list[int] = []
    async with dukat.connect(daemon) as client:
        handle = await client.submit(JobSpec(tasks=(task,)))
        async for event in handle.events():
            if isinstance(event, TaskOutput) and event.text.startswith("pids "):
                pids = [int(pid) for pid in event.text.split()[1:]]
                assert all(alive(pid) for pid in pids)
                if cancel:
                    await handle.cancel(reason="enough")
        return (await handle.results())[task.id], pids


async def test_a_cancel_stops_the_remote_process_and_its_children(daemon):
    result, pids = await stop_a_tree(daemon, TaskSpec("tree", sh(TREE)), cancel=True)
    assert result.state is TaskState.CANCELLED
    assert len(pids) == 3
    await all_dead(pids)


async def test_a_timeout_stops_the_remote_process_tree_and_fails_the_attempt(daemon):
    result, pids = await stop_a_tree(daemon, TaskSpec("slow", sh(TREE), timeout=1), cancel=False)
    assert result.state is TaskState.FAILED
    assert "timed out after 1s" in str(result.error)
    await all_dead(pids)


async def test_resources_no_node_has_are_refused_at_submit(daemon):
    # 3 CPUs are in the cluster (5), but on no one node (2 each): Ray would wait for ever.
    too_big = TaskSpec("big", sh("true"), resources=(cpu(2), custom("alpha", 1), custom("beta", 1)))
    async with dukat.connect(daemon) as client:
        with pytest.raises(InvalidArgumentError) as refused:
            await client.submit(JobSpec(tasks=(TaskSpec("fine", sh("true")), too_big)))
        assert "task 'big' needs alpha 1, beta 1, cpu 2 on one node" in str(refused.value)
        assert refused.value.violations[0].field == "job.tasks[1].resources"
        with pytest.raises(InvalidArgumentError, match="task 'gpu' needs gpu 1 on one node"):
            await client.submit(
                JobSpec(
                    tasks=(
                        TaskSpec(
                            "gpu", sh("true"), resources=(ResourceRequirement(ResourceType.GPU, 1),)
                        ),
                    )
                )
            )


async def test_a_cluster_out_of_reach_refuses_exec_work_and_serves_the_rest(
    short_tmp: Path,
):
    nobody = "127.0.0.1:9"  # nothing listens there
    process = DaemonProcess(
        short_tmp,
        (
            "--allow-exec",
            "--executor",
            "ray",
            "--ray-address",
            nobody,
            "--ray-connect-timeout",
            "1s",
        ),
        env=RAY_ENV,
    ).start()
    try:
        await process.serving(within=60)
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            exec_job = JobSpec(tasks=(TaskSpec("t", sh("true")),))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Submit(
                    scheduler_pb2.SubmitRequest(job=convert.job_spec_to_proto(exec_job))
                )
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert f"the Ray cluster at {nobody}, which is unavailable" in refused.value.details()
        # Everything else is served: a job of dispatch tasks is taken, GetJob answers.
        async with dukat.connect(process.address, reconnect=Reconnect(give_up_after=0)) as client:
            handle = await client.submit(
                JobSpec(tasks=(TaskSpec("d", dukat.actions.DispatchAction("q")),))
            )
            assert (await handle.get()).state is JobState.RUNNING
            assert await client.breakers() == []
            ray = (await client.status()).ray
            assert ray is not None and (ray.address, ray.connected) == (nobody, False)
            assert ray.unavailable_reason  # why: not connected yet, or cannot connect
    finally:
        process.kill()


async def test_a_node_lost_mid_task_interrupts_the_attempt_which_runs_again_elsewhere(
    cluster: RayCluster, short_tmp: Path
):
    cluster.add("spare-1", 1, {"spare": 1})
    cluster.add("spare-2", 1, {"spare": 1})
    process = ray_daemon(short_tmp, cluster).start()
    try:
        await process.serving(within=60)
        script = f'{WHERE}; if [ "$DUKAT_ATTEMPT" = 1 ]; then {TREE}; fi'
        task = TaskSpec("move", sh(script), resources=(custom("spare", 1),))
        async with dukat.connect(process.address) as client:
            capacity: dict[str, float] = {}

            async def look() -> None:
                status = await client.status()
                capacity.update({r.name: r.capacity for r in status.resources})

            await look()
            while capacity.get("spare") != 2:  # the daemon sees both spare nodes (refreshed)
                await look()
            handle = await client.submit(JobSpec(tasks=(task,)))
            first_node, pids, why = "", [], []
            async for event in handle.events():
                if isinstance(event, TaskStateChanged) and event.state is TaskState.RETRYING:
                    why.append(event.message)
                if isinstance(event, TaskOutput) and " on " in event.text and not first_node:
                    first_node = event.text.split(" on ")[1]
                if isinstance(event, TaskOutput) and event.text.startswith("pids "):
                    pids = [int(pid) for pid in event.text.split()[1:]]
                    lost = next(n for n, i in cluster.node_ids.items() if i == first_node)
                    await asyncio.to_thread(cluster.remove, lost)
            result = (await handle.results())["move"]
        assert result.state is TaskState.SUCCEEDED, result.error
        assert (result.attempts, result.interruptions) == (2, 1)
        assert len(why) == 1 and why[0].startswith("interrupted (its Ray node or worker was lost")
        survivor = next(i for n, i in cluster.node_ids.items() if n.startswith("spare"))
        assert result.result.stdout.decode().split(" on ")[1].strip() == survivor != first_node
        await all_dead(pids)
    finally:
        process.kill()
        for name in [n for n in cluster.node_ids if n.startswith("spare")]:
            cluster.remove(name)


async def test_a_killed_daemons_ray_task_is_gone_before_it_runs_again_and_nothing_runs_twice(
    cluster: RayCluster, short_tmp: Path
):
    """kill -9 of dukatd with a task running on the cluster: Ray ends the tasks of the dead
    daemon's bridge, and the task's warden its processes; the next daemon runs the
    interrupted task again, and nothing that had finished."""
    state, ran, seen = short_tmp / "state", short_tmp / "ran", short_tmp / "seen"
    # The second attempt looks whether the first's processes are still there, first thing.
    again = (
        f'echo "$DUKAT_TASK_ID $DUKAT_ATTEMPT" >> {ran}; '
        f'if [ "$DUKAT_ATTEMPT" = 1 ]; then {TREE}; fi; '
        f"for pid in $(cat {seen}); do "
        f"if [ -e /proc/$pid ] && ! grep -q ') Z' /proc/$pid/stat; then echo still there $pid; fi; "
        "done"
    )
    job = JobSpec(
        tasks=(
            TaskSpec("once", sh(f'echo "$DUKAT_TASK_ID $DUKAT_ATTEMPT" >> {ran}')),
            TaskSpec("again", sh(again), dependencies=("once",)),
        )
    )
    first = ray_daemon(short_tmp, cluster, state_dir=state).start()
    second = None
    try:
        await first.serving(within=60)
        async with dukat.connect(first.address) as client:
            handle = await client.submit(JobSpec(tasks=job.tasks))
            job_id = handle.job_id
            pids: list[int] = []
            async for event in handle.events():
                if isinstance(event, TaskOutput) and event.text.startswith("pids "):
                    pids = [int(pid) for pid in event.text.split()[1:]]
                    seen.write_text(" ".join(map(str, pids)))
                    first.signal(signal.SIGKILL)
                    break
        assert await first.exited() == -signal.SIGKILL
        second = ray_daemon(short_tmp, cluster, state_dir=state, name="e").start()
        await second.serving(within=60)
        async with dukat.connect(second.address) as client:
            handle = client.job(job_id)
            assert (await handle.wait()).state is JobState.SUCCEEDED
            results = await handle.results()
        assert ran.read_text().splitlines() == ["once 1", "again 1", "again 2"]
        assert results["again"].interruptions == 1
        assert "still there" not in results["again"].result.stdout.decode()
        await wait_for(lambda: not any(alive(pid) for pid in pids), within=2)
    finally:
        first.kill()
        if second is not None:
            second.kill()


def bridge_of(daemon: DaemonProcess) -> int:
    """The pid of the daemon's Ray bridge process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == daemon.pid and b"dukatd.ray_bridge" in cmdline:
                return int(entry.name)
    raise AssertionError("the daemon has no Ray bridge")


async def test_a_lost_bridge_interrupts_its_attempts_and_the_next_one_runs_them_again(
    cluster: RayCluster, short_tmp: Path
):
    """What Ray does to a driver whose head is gone too long: its bridge dies. The daemon
    goes on serving, starts another bridge, and runs the attempts the first had again once
    Ray has ended them."""
    process = ray_daemon(short_tmp, cluster).start()
    try:
        await process.serving(within=60)
        script = f'if [ "$DUKAT_ATTEMPT" = 1 ]; then {TREE}; fi; echo done'
        async with dukat.connect(process.address) as client:
            handle = await client.submit(JobSpec(tasks=(TaskSpec("t", sh(script)),)))
            pids: list[int] = []
            messages = []
            async for event in handle.events():
                if isinstance(event, TaskOutput) and event.text.startswith("pids "):
                    pids = [int(pid) for pid in event.text.split()[1:]]
                    os.kill(bridge_of(process), signal.SIGKILL)
                if isinstance(event, TaskStateChanged) and event.state is TaskState.RETRYING:
                    messages.append(event.message)
            result = (await handle.results())["t"]
        assert result.state is TaskState.SUCCEEDED, result.error
        assert (result.attempts, result.interruptions) == (2, 1)
        assert messages == [
            "interrupted (the Ray bridge exited (the cluster's head may be down)), 1 of 3; "
            "running again"
        ]
        await all_dead(pids)
        assert process.returncode() is None
    finally:
        process.kill()


async def test_a_drain_stops_the_remote_processes_and_the_next_daemon_runs_the_task_again(
    cluster: RayCluster, short_tmp: Path
):
    """SIGTERM (systemctl stop) with a task running on the cluster: the drain stops its
    remote process tree as it would a local one, the attempt is interrupted, not failed, and
    the next daemon runs it again."""
    state = short_tmp / "state"
    script = f'if [ "$DUKAT_ATTEMPT" = 1 ]; then {TREE}; fi; echo again'
    first = ray_daemon(short_tmp, cluster, "--shutdown-grace", "0s", state_dir=state).start()
    second = None
    try:
        await first.serving(within=60)
        async with dukat.connect(first.address) as client:
            handle = await client.submit(JobSpec(tasks=(TaskSpec("t", sh(script)),)))
            pids: list[int] = []
            async for event in handle.events():
                if isinstance(event, TaskOutput) and event.text.startswith("pids "):
                    pids = [int(pid) for pid in event.text.split()[1:]]
                    first.signal(signal.SIGTERM)
                    break
        assert await first.exited(within=30) == 0
        await all_dead(pids)  # stopped by the drain itself, not left to Ray
        second = ray_daemon(short_tmp, cluster, state_dir=state, name="e").start()
        await second.serving(within=60)
        async with dukat.connect(second.address) as client:
            assert (await client.job(handle.job_id).wait()).state is JobState.SUCCEEDED
            result = (await client.job(handle.job_id).results())["t"]
        assert (result.attempts, result.interruptions) == (2, 1)
        assert result.result.stdout == b"again\n"
    finally:
        first.kill()
        if second is not None:
            second.kill()


async def test_a_local_ray_of_its_own_runs_exec_tasks_on_loopback(short_tmp: Path):
    """`--ray-address local`, to try the executor out: the bridge starts a Ray of its own."""
    process = DaemonProcess(
        short_tmp, ("--allow-exec", "--executor", "ray", "--ray-address", "local")
    ).start()
    try:
        await process.serving(within=60)
        async with dukat.connect(process.address) as client:
            handle = await client.submit(JobSpec(tasks=(TaskSpec("a", sh(WHERE)),)))
            assert (await handle.wait()).state is JobState.SUCCEEDED
            ran = (await handle.results())["a"].result.stdout.decode()
            status = await client.status()
        assert ran.startswith("a on ") and len(ran.split(" on ")[1].strip()) == 56  # a node id
        assert {r.name: r.capacity for r in status.resources}["cpu"] >= 1
        assert "Ray cluster at 127.0.0.1:" in process.log()  # loopback only
    finally:
        process.kill()


async def test_the_metrics_show_the_cluster_and_its_capacity(cluster: RayCluster, short_tmp):
    with socket.socket() as probe:  # a free port on loopback for /metrics
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = ray_daemon(short_tmp, cluster, "--metrics-listen", f"127.0.0.1:{port}").start()
    try:
        await process.serving(within=60)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                return page.read().decode()

        text = await asyncio.to_thread(scrape)
        # The head, alpha and beta (once Ray has a node another test removed for dead).
        while "dukat_ray_nodes 3.0" not in text:
            text = await asyncio.to_thread(scrape)
        for family in RAY_METRICS:  # what docs/metrics.md lists and a local daemon does not serve
            assert f"# TYPE {family} gauge" in text
        assert "dukat_ray_connected 1.0" in text
        assert "dukat_ray_attempts_running 0.0" in text
        assert 'dukat_resource_capacity{resource="alpha"} 2.0' in text
        assert 'dukat_resource_capacity{resource="cpu"} 5.0' in text
    finally:
        process.kill()
