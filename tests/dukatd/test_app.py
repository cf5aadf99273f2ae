"""dukatd.app as a library: serve() in the test's loop, stopped through its Daemon handle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import Gauge

import dukat
from dukat.actions import DispatchAction, ExecAction
from dukat.core.breaker import CircuitBreakerConfig, CircuitBreakerState
from dukat.core.clock import ManualClock
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState
from dukat.errors import DaemonNotFoundError, NotFoundError, UnauthenticatedError
from dukatd import daemon as daemon_module
from dukatd.app import EXIT_START_FAILED, Daemon, build_scheduler, serve
from dukatd.config import Config
from dukatd.metrics import DaemonMetrics
from dukatd.metrics_tasks import TaskMetrics
from tests.dukatd.in_loop import served
from tests.dukatd.work_worker import RawWorker


def config_for(directory: Path, **options: object) -> Config:
    defaults: dict[str, object] = {
        "listen": (f"unix:{directory}/d.sock",),
        "ephemeral": True,
        "metrics_listen": None,
    }
    return Config(**{**defaults, **options})


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_serve_until_stopped_then_releases_everything(short_tmp: Path):
    config = config_for(short_tmp)
    async with served(config):
        async with grpc.aio.insecure_channel(config.listen[0]) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert (short_tmp / "d.sock").stat().st_mode & 0o777 == 0o660
    assert names(short_tmp) == []


async def test_metrics_are_served_over_http_while_the_daemon_runs(short_tmp: Path):
    config = config_for(short_tmp, metrics_listen="127.0.0.1:0")
    async with served(config) as daemon:
        assert daemon.metrics_http is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.metrics_http.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = (await asyncio.wait_for(reader.read(), 10)).decode()
        writer.close()
        await writer.wait_closed()
        assert body.startswith("HTTP/1.1 200")
        assert "dukat_jobs_submitted_total" in body
        worker = await RawWorker(config.listen[0]).start()
        assert daemon.metrics is not None
        assert daemon.metrics.registry.get_sample_value("dukat_workers_connected") == 1
        await worker.close()


async def test_with_a_token_file_calls_need_the_token_and_health_does_not(short_tmp: Path):
    token = short_tmp / "token"
    token.write_text("secret\n")  # the newline an editor adds is not part of the token
    token.chmod(0o600)  # dukatd refuses a token that others may read
    config = config_for(short_tmp, token_file=token)
    async with served(config):
        async with grpc.aio.insecure_channel(config.listen[0]) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        async with dukat.connect(config.listen[0], token="secret") as client:
            assert [job async for job in client.jobs()] == []
        async with dukat.connect(config.listen[0]) as client:
            with pytest.raises(UnauthenticatedError):
                await client.get_job("nope")


@pytest.mark.parametrize(
    ("text", "says"), [("\n", "is empty"), ("two words\n", "printable ASCII without spaces")]
)
async def test_a_token_no_client_could_send_stops_the_start_before_any_lock(
    short_tmp: Path, caplog, text: str, says: str
):
    token = short_tmp / "token"
    token.write_text(text)
    token.chmod(0o600)
    config = config_for(short_tmp, token_file=token)
    assert await serve(config, install_signal_handlers=False) == EXIT_START_FAILED
    assert says in caplog.text
    assert names(short_tmp) == ["token"]


async def test_the_keepalive_and_size_options_reach_the_grpc_server(short_tmp: Path, monkeypatch):
    made: list[dict[str, object]] = []
    real_server = grpc.aio.server

    def spy(*args: object, **kwargs: object) -> grpc.aio.Server:
        made.append(dict(kwargs["options"]))  # type: ignore[call-overload]
        return real_server(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(grpc.aio, "server", spy)
    config = config_for(
        short_tmp,
        keepalive_time=45.0,
        keepalive_timeout=5.0,
        keepalive_min_client_interval=20.0,
        max_message_bytes=8 * 1024 * 1024,
    )
    async with served(config):
        pass
    (options,) = made
    assert options["grpc.keepalive_time_ms"] == 45_000
    assert options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 20_000
    assert options["grpc.max_receive_message_length"] == 8 * 1024 * 1024
    assert options == dict(config.grpc_server_options())


async def test_the_state_dir_is_locked_and_holds_the_exec_ledger(short_tmp: Path):
    state = short_tmp / "state"
    config = config_for(short_tmp, ephemeral=False, state_dir=state, allow_exec=True)
    async with served(config) as daemon:
        assert (state / "dukatd.lock").exists()
        assert daemon.ledger is not None and daemon.ledger.directory == state / "exec-groups"
    assert not (state / "dukatd.lock").exists()


@pytest.mark.parametrize("allow_exec", [False, True])
async def test_build_scheduler_takes_the_config(short_tmp: Path, allow_exec: bool):
    breaker = CircuitBreakerConfig(failure_threshold=3)
    config = config_for(
        short_tmp,
        max_concurrency=3,
        resources={"cpu": 2.0, "seats": 4.0},
        breakers={"payments": breaker},
        allow_exec=allow_exec,
        kill_grace=0.25,
        retain_finished_jobs=7,
        finished_job_ttl=90.0,
    )
    scheduler, exec_runner = build_scheduler(config)
    assert scheduler.max_concurrency == 3
    assert (scheduler.retain_finished_jobs, scheduler.finished_job_ttl) == (7, 90.0)
    assert scheduler.resources.capacities["seats"] == 4.0
    assert scheduler.resources.capacities["cpu"] == 2.0
    assert scheduler.breakers.get("payments").config == breaker
    assert (exec_runner is not None) is allow_exec
    if exec_runner is not None:
        assert exec_runner.options.kill_grace == 0.25
        assert scheduler._runners[ExecAction] is exec_runner
    await scheduler.close()


async def test_build_scheduler_gives_its_breakers_and_the_scheduler_the_clock_it_is_given(
    short_tmp: Path,
):
    clock = ManualClock()
    db = CircuitBreakerConfig(failure_threshold=1, timeout_seconds=30)
    scheduler, _ = build_scheduler(config_for(short_tmp, breakers={"db": db}), clock=clock)
    assert scheduler.clock is clock
    breaker = scheduler.breakers.get("db")
    breaker.failure()
    assert (breaker.state, breaker.retry_after) == (CircuitBreakerState.OPEN, 30)
    await clock.advance(30)
    assert (breaker.state, breaker.retry_after) == (CircuitBreakerState.HALF_OPEN, 0)
    await scheduler.close()


async def test_the_daemon_times_everything_of_its_own_on_the_one_clock_it_is_given(
    short_tmp: Path,
):
    """Its breakers (those of the file and those clients make), the retention of finished
    jobs (--finished-job-ttl), workers' heartbeats and when it started: all on `serve`'s
    clock."""
    clock = ManualClock()
    db = CircuitBreakerConfig(failure_threshold=1, timeout_seconds=60)
    config = config_for(short_tmp, breakers={"db": db}, finished_job_ttl=60.0)
    async with served(config, clock=clock) as daemon:
        scheduler = daemon.scheduler
        assert scheduler.clock is clock and daemon.work_hub.clock is clock
        assert daemon.started_at == clock.wall()
        opened = {}
        for name in ("db", "made-by-a-client"):
            breaker = scheduler.breakers.get(name)
            while breaker.state is CircuitBreakerState.CLOSED:
                breaker.failure()
            opened[name] = breaker.retry_after
        # With exec off, the task fails at once: a finished job, held for 60 s of the clock.
        job_id = scheduler.submit(JobSpec(tasks=(TaskSpec("t", ExecAction(("true",))),)))
        await asyncio.wait_for(scheduler.wait(job_id), 10)
        await clock.advance(59)
        assert scheduler.get_job(job_id).state is JobState.FAILED
        for name, retry_after in opened.items():
            assert scheduler.breakers.get(name).retry_after == max(0.0, retry_after - 59)
        await clock.advance(1)
        with pytest.raises(NotFoundError):
            scheduler.get_job(job_id)
        assert scheduler.breakers.get("db").state is CircuitBreakerState.HALF_OPEN
        assert daemon.status().started_at == clock.wall() - 60


def metrics_listeners(daemon: Daemon) -> list[object]:
    """What listens to the engine on the metrics' behalf (the listener lists are private)."""
    assert daemon.scheduler is not None and daemon.work_hub is not None
    scheduler = daemon.scheduler
    listeners = [
        *scheduler._listeners,
        *scheduler.resources._listeners,
        *scheduler.breakers._listeners,
        *daemon.work_hub._listeners,
    ]
    owners = (DaemonMetrics, TaskMetrics, Gauge)
    return [one for one in listeners if isinstance(getattr(one, "__self__", None), owners)]


@pytest.mark.parametrize("metrics_listen", [None, "127.0.0.1:0"])
async def test_with_metrics_off_nothing_listens_for_them_and_the_daemon_works(
    short_tmp: Path, metrics_listen: str | None, monkeypatch
):
    server_options: dict[str, object] = {}
    create_server = daemon_module.create_server

    async def recording_create_server(*args: object, **options: object) -> grpc.aio.Server:
        server_options.update(options)
        return await create_server(*args, **options)

    monkeypatch.setattr(daemon_module, "create_server", recording_create_server)
    config = config_for(short_tmp, metrics_listen=metrics_listen)
    async with served(config) as daemon:
        if metrics_listen is None:
            assert daemon.metrics is None and daemon.metrics_http is None
            assert metrics_listeners(daemon) == []
            assert server_options["interceptors"] == []
        else:
            assert len(metrics_listeners(daemon)) == 5
            assert server_options["interceptors"] == [daemon.metrics.grpc]

        async def shout(task: dukat.client.DispatchTask) -> bytes:
            return task.payload.upper()

        async with dukat.connect(config.listen[0]) as client, client.worker("q", shout):
            handle = await client.submit(
                JobSpec(tasks=(TaskSpec("a", DispatchAction("q", b"hi")),))
            )
            assert (await asyncio.wait_for(handle.wait(), 10)).state is JobState.SUCCEEDED
            assert (await handle.get()).task("a").result.payload == b"HI"
            with pytest.raises(DaemonNotFoundError):
                await client.get_job("nope")


@pytest.mark.parametrize("interval", [10.0, 30.0, 45.0])
async def test_a_min_client_interval_longer_than_our_clients_pings_is_warned_of(
    short_tmp: Path, caplog: pytest.LogCaptureFixture, interval: float
):
    # dukat.client pings every 30 s: a daemon that wants 45 s between pings would end its
    # clients' idle connections with GOAWAY too_many_pings.
    sources = {"keepalive_min_client_interval": "DUKATD_KEEPALIVE_MIN_CLIENT_INTERVAL"}
    config = config_for(short_tmp, keepalive_min_client_interval=interval, sources=sources)
    async with served(config):
        pass
    warnings = [r for r in caplog.records if "too_many_pings" in r.getMessage()]
    if interval <= 30:
        assert warnings == []
    else:
        (record,) = warnings
        assert record.levelname == "WARNING"
        warning = record.getMessage()
        assert "DUKATD_KEEPALIVE_MIN_CLIENT_INTERVAL is 45s" in warning
        assert "the 30s between the keepalive pings of dukat's own clients" in warning
