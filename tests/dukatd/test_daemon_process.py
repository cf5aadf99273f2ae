"""The daemon as a process: a real `python -m dukatd` on a unix socket, real gRPC, signals.

Each test starts its daemons with the `daemons` fixture (tests/dukatd/conftest.py), which
kills them at teardown.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import dukat
from dukat.actions import DispatchAction
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState
from dukat.v1 import event_pb2, job_pb2, scheduler_pb2, scheduler_pb2_grpc
from tests.dukatd.daemon_process import REPO, DaemonProcess
from tests.dukatd.processes import alive

SHUTDOWN_GRACE = 0.5
KILL_GRACE = 1.0


def exec_task(task_id: str, *argv: str, dependencies: tuple[str, ...] = ()) -> job_pb2.TaskSpec:
    return job_pb2.TaskSpec(
        id=task_id, dependencies=dependencies, exec=job_pb2.ExecAction(argv=list(argv))
    )


async def submit(channel: grpc.aio.Channel, *tasks: job_pb2.TaskSpec) -> str:
    stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
    reply = await stub.Submit(scheduler_pb2.SubmitRequest(job=job_pb2.JobSpec(tasks=tasks)))
    return reply.job_id


async def test_an_exec_job_runs_and_its_output_comes_through_watch(daemons):
    daemon = await daemons("--allow-exec").serving()
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        job_id = await submit(
            channel,
            exec_task("true", "/bin/true"),
            exec_task("hi", "sh", "-c", "echo hi", dependencies=("true",)),
        )
        events: list[event_pb2.Event] = []
        watch = stub.Watch(scheduler_pb2.WatchRequest(job_id=job_id), timeout=20)
        async for reply in watch:  # ends after the job's terminal event
            events.extend(reply.events)

        outputs = [e.output for e in events if e.WhichOneof("kind") == "output"]
        assert [(o.task_id, o.stream, o.text.strip()) for o in outputs] == [
            ("hi", event_pb2.OUTPUT_STREAM_STDOUT, "hi")
        ]
        job_states = [e.job_state.state for e in events if e.WhichOneof("kind") == "job_state"]
        assert job_states[-1] == job_pb2.JOB_STATE_SUCCEEDED
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))

        job = (await stub.GetJob(scheduler_pb2.GetJobRequest(job_id=job_id))).job
        assert job.state == job_pb2.JOB_STATE_SUCCEEDED
        assert {t.id: t.state for t in job.tasks} == {
            "true": job_pb2.TASK_STATE_SUCCEEDED,
            "hi": job_pb2.TASK_STATE_SUCCEEDED,
        }


async def test_exec_tasks_are_refused_without_allow_exec(daemons):
    daemon = await daemons().serving()
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await submit(channel, exec_task("true", "/bin/true"))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "--allow-exec" in refused.value.details()


async def test_a_second_daemon_on_the_same_socket_refuses_to_start(daemons):
    first = await daemons().serving()
    second = daemons()
    assert await second.exited() == 1
    assert f"another dukatd (pid {first.pid}) already serves the socket" in second.log()
    assert first.returncode() is None
    assert await first.health() == "SERVING"


async def test_a_stale_socket_of_a_killed_daemon_does_not_stop_the_next(daemons):
    killed = await daemons().serving()
    killed.signal(signal.SIGKILL)
    assert await killed.exited() == -signal.SIGKILL
    assert killed.socket.exists()  # left behind: nobody removed it

    await daemons().serving()


async def test_notify_datagrams_ready_watchdog_stopping(daemons, short_tmp: Path):
    path = short_tmp / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(os.fspath(path))
        notify.setblocking(False)
        loop = asyncio.get_running_loop()

        async def next_datagram() -> dict[str, str]:
            data = await asyncio.wait_for(loop.sock_recv(notify, 4096), 10)
            return dict(line.split("=", 1) for line in data.decode().splitlines())

        # 0.2 s: the daemon pings every 0.1 s, so a few come within the test.
        env = {"NOTIFY_SOCKET": os.fspath(path), "WATCHDOG_USEC": "200000"}
        daemon = daemons(env=env)
        ready = await next_datagram()
        assert ready["READY"] == "1"
        assert daemon.address in ready["STATUS"]
        pings = 0
        while pings < 2:
            assert await next_datagram() == {"WATCHDOG": "1"}
            pings += 1

        daemon.signal(signal.SIGTERM)
        while "STOPPING" not in (message := await next_datagram()):
            assert message == {"WATCHDOG": "1"}  # one may still be on its way
        assert message["STOPPING"] == "1"
        assert await daemon.exited() == 0


async def test_sigterm_drains_ends_watches_kills_tasks_and_removes_the_socket(daemons):
    daemon = await daemons(
        "--allow-exec", "--shutdown-grace", f"{SHUTDOWN_GRACE}s", "--kill-grace", f"{KILL_GRACE}s"
    ).serving()
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        # The task is its session's leader: the pid it prints is its process group's id.
        job_id = await submit(channel, exec_task("sleep", "sh", "-c", "echo $$; exec sleep 30"))
        watch = stub.Watch(scheduler_pb2.WatchRequest(job_id=job_id))
        pgid = None
        while pgid is None:
            for event in (await asyncio.wait_for(watch.read(), 10)).events:
                if event.WhichOneof("kind") == "output":
                    pgid = int(event.output.text)
        assert alive(pgid)
        statuses = health.Watch(health_pb2.HealthCheckRequest())
        assert (await statuses.read()).status == health_pb2.HealthCheckResponse.SERVING

        loop = asyncio.get_running_loop()
        began = loop.time()
        daemon.signal(signal.SIGTERM)
        assert (await statuses.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                reply = await asyncio.wait_for(watch.read(), 10)
                assert reply is not grpc.aio.EOF, "the watch ended without a status"
        assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
        assert ended.value.details() == "daemon shutting down"

        assert await daemon.exited() == 0
        # The task's grace, then SIGTERM to its group (sleep dies of it), plus start-up slack.
        assert loop.time() - began < SHUTDOWN_GRACE + KILL_GRACE + 3
    assert not alive(pgid)
    assert sorted(p.name for p in daemon.socket.parent.glob("d.sock*")) == []
    assert "drained in" in daemon.log()


async def test_a_second_sigterm_stops_at_once(daemons):
    daemon = await daemons("--allow-exec", "--shutdown-grace", "60s").serving()
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        job_id = await submit(channel, exec_task("sleep", "sleep", "30"))
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        await until(daemon, lambda: running(stub, job_id))
    daemon.signal(signal.SIGTERM)
    await until(daemon, lambda: "draining:" in daemon.log())
    daemon.signal(signal.SIGTERM)
    assert await daemon.exited(within=10) == 0  # far inside the 60 s grace
    assert "stopping now" in daemon.log()


async def running(stub: scheduler_pb2_grpc.SchedulerServiceStub, job_id: str) -> bool:
    job = (await stub.GetJob(scheduler_pb2.GetJobRequest(job_id=job_id))).job
    return job.tasks[0].state == job_pb2.TASK_STATE_RUNNING


async def until(daemon: DaemonProcess, condition, within: float = 10.0) -> None:
    """Poll `condition()` (a bool, or an awaitable of one) until true; fail after `within`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {within}s:\n{daemon.log()}")
        await asyncio.sleep(0.02)


async def test_the_health_probe_says_serving_then_unavailable(daemons):
    daemon = await daemons().serving()
    probe = [sys.executable, "-m", "dukatd.health", daemon.address, "--timeout", "5"]
    done = await asyncio.to_thread(subprocess.run, probe, capture_output=True, text=True, cwd=REPO)
    assert (done.returncode, done.stdout.strip()) == (0, f"{daemon.address}: SERVING")

    daemon.signal(signal.SIGINT)  # Ctrl-C drains like SIGTERM
    assert await daemon.exited() == 0
    done = await asyncio.to_thread(subprocess.run, probe, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1


async def test_with_token_file_only_callers_with_the_token_get_through(daemons, short_tmp: Path):
    token_file = short_tmp / "token"
    token_file.write_text("0123abcd\n")
    token_file.chmod(0o600)  # dukatd refuses a token that others may read
    daemon = await daemons("--token-file", str(token_file)).serving()  # health: no token
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        request = scheduler_pb2.ListJobsRequest()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListJobs(request)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "bearer token" in (caught.value.details() or "")
        reply = await stub.ListJobs(request, metadata=(("authorization", "Bearer 0123abcd"),))
        assert list(reply.jobs) == []


def test_the_entry_point_sets_grpc_fork_support_off_before_grpc_loads():
    script = (
        "import os, sys\n"
        "import dukatd\n"
        "assert 'grpc' not in sys.modules, 'import dukatd pulled grpc in'\n"
        "import dukatd.__main__\n"
        "print(os.environ['GRPC_ENABLE_FORK_SUPPORT'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert (done.returncode, done.stdout.strip()) == (0, "0"), done.stderr


def test_a_bad_option_exits_2_naming_it(short_tmp: Path):
    daemon = DaemonProcess(short_tmp, ("--max-concurrency", "0"))
    done = subprocess.run(daemon.argv, capture_output=True, text=True, env=daemon.env, cwd=REPO)
    assert done.returncode == 2
    assert "--max-concurrency" in done.stderr


async def test_getjob_fits_a_small_max_message_bytes_whatever_the_results_add_up_to(daemons):
    # 20 results of 5 KB are more than the daemon's 64 KiB messages: GetJob carries what
    # fits in a quarter of one and marks the rest omitted; the client asks for those by id.
    daemon = await daemons("--max-message-bytes", "64KiB", "--max-result-bytes", "8KiB").serving()
    result = b"r" * 5_000

    async def handler(task: dukat.client.DispatchTask) -> bytes:
        return result

    tasks = tuple(TaskSpec(f"t{i}", DispatchAction("q", b"")) for i in range(20))
    async with dukat.connect(daemon.address) as client, client.worker("q", handler):
        handle = await client.submit(JobSpec(tasks=tasks))
        assert (await asyncio.wait_for(handle.wait(), 30)).state is JobState.SUCCEEDED
        job = await handle.get()
        assert [task.result.payload for task in job.tasks] == [result] * 20
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            reply = await stub.GetJob(scheduler_pb2.GetJobRequest(job_id=handle.job_id))
    assert reply.ByteSize() < 64 * 1024
    omitted = sum(task.result_omitted for task in reply.job.tasks)
    assert omitted == 20 - 16 * 1024 // 5_000
