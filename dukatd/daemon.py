"""One daemon: what `dukatd.app.serve` builds and stops, in the order its docstring gives.

`Daemon.claim` takes the token, the locks, the exec groups' ledger and the journal;
`Daemon.start` builds the scheduler (`dukatd.build`), the hub, the services and the server,
and serves; `Daemon.reload` applies a SIGHUP; `Daemon.close_now` lets go of everything.
The drain between the two is `dukatd.drain`'s, on this same handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
from collections.abc import Callable

import grpc
from grpc_health.v1 import health

import dukat
from dukat.core.clock import Clock, SystemClock
from dukat.core.scheduler import Scheduler
from dukat.daemon_status import DaemonStatus
from dukat.errors import ConfigError, JournalError, StartError
from dukatd.address import TcpAddress
from dukatd.auth import BearerTokenAuth
from dukatd.breaker_service import BreakerService
from dukatd.build import build_scheduler
from dukatd.config import Config
from dukatd.daemon_service import DaemonService, status_of
from dukatd.exec_groups import GroupLedger
from dukatd.exec_process import LEADERS
from dukatd.executor import ExecExecutor
from dukatd.journal import JOURNAL_FILE, Journal
from dukatd.lock import LockFile, UnixSocketClaim, claim_state_dir, claim_unix_socket, socket_umask
from dukatd.metrics import DaemonMetrics, MetricsServer, start_metrics_server
from dukatd.metrics_journal import JournalMetrics
from dukatd.metrics_ray import RayMetrics
from dukatd.metrics_work import WorkMetrics
from dukatd.notify import Notifier
from dukatd.orphans import OrphanReaper
from dukatd.ray_executor import RayExecutor
from dukatd.recovery import decode_result, encode_result, recover, recover_breakers
from dukatd.scheduler_service import SchedulerService, page_bytes_for, result_budget_for
from dukatd.server import create_server
from dukatd.start_up import (
    METRICS_FIX,
    bind_failed,
    check_port,
    log_start_up,
    tls_credentials,
    warn_of_client_pings,
)
from dukatd.work_hub import WorkerHub

__all__ = ["LEDGER_DIR", "Daemon"]

_log = logging.getLogger("dukatd")

LEDGER_DIR = "exec-groups"
"""Directory in the state dir where the exec runner records live task process groups."""


class Daemon:
    """One daemon: what `serve` built, and the handle that stops it (`stop`)."""

    def __init__(self, config: Config, notifier: Notifier, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        """What the daemon times on: its breakers, its scheduler and its work hub."""
        self.config = config
        self.notifier = notifier
        self.state_lock: LockFile | None = None
        self.claims: list[UnixSocketClaim] = []
        self.ledger: GroupLedger | None = None
        self.journal: Journal | None = None
        self.scheduler: Scheduler | None = None
        self.exec_runner: ExecExecutor | None = None
        self.service: SchedulerService | None = None
        self.work_hub: WorkerHub | None = None
        self.metrics: DaemonMetrics | None = None
        self.metrics_http: MetricsServer | None = None
        self.auth: BearerTokenAuth | None = None
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.watchdog: asyncio.Task[None] | None = None
        self.reaper: OrphanReaper | None = None
        self.started_at = self.clock.wall()
        self.stop_requested = asyncio.Event()
        self.fast = asyncio.Event()
        """Set by a second stop (a second SIGTERM or Ctrl-C): the drain skips its waits."""

    def stop(self, *, fast: bool = False) -> None:
        """Begin the drain; a second call, or `fast=True`, takes the fast path."""
        if fast or self.stop_requested.is_set():
            self.fast.set()
        self.stop_requested.set()

    # -- start-up ---------------------------------------------------------------------------

    def claim(self) -> None:
        """Take the locks and, with exec on, kill what a crashed predecessor left running."""
        config = self.config
        # Read first: a missing or empty token file stops the start before any lock is taken.
        token = config.read_token()
        if token is not None:
            try:
                self.auth = BearerTokenAuth(token)
            except ValueError as error:
                where = config.sources.get("token_file", "--token-file")
                raise StartError(f"{where}: {error}") from None
        if not config.ephemeral:
            self.state_lock = claim_state_dir(config.state_dir)
        for path in config.unix_socket_paths:
            self.claims.append(claim_unix_socket(path))
        if config.allow_exec and not config.ephemeral:
            self.ledger = GroupLedger.open(config.state_dir / LEDGER_DIR)
            if self.ledger.killed:
                _log.warning(
                    "killed %d process(es) of tasks left running by an earlier dukatd: %s",
                    len(self.ledger.killed),
                    ", ".join(map(str, self.ledger.killed)),
                )
        if not config.ephemeral:
            try:
                self.journal = Journal.open(
                    config.state_dir / JOURNAL_FILE,
                    encode_result=encode_result,
                    decode_result=decode_result,
                    sync=config.journal_sync,
                    max_bytes=config.journal_max_bytes or None,
                    event_log_length=config.event_log_length,
                )
            except JournalError as error:
                raise StartError(str(error)) from None

    def check_ports(self) -> None:
        """Stop the start, with what to do, if a TCP address cannot be bound (a port in use:
        another dukatd's, most often its metrics'), before anything is bound or served."""
        config = self.config
        for address in config.addresses:
            if isinstance(address, TcpAddress):
                check_port(config, address, "listen", "--listen HOST:PORT")
        if config.metrics_address is not None:
            check_port(config, config.metrics_address, "metrics_listen", METRICS_FIX)

    async def start(self) -> None:
        """Build the scheduler and the server, bind every address, start serving."""
        config = self.config
        _log.info("dukatd %s, pid %d", dukat.__version__, os.getpid())
        self.check_ports()
        if config.executor == "ray" and importlib.util.find_spec("ray") is None:
            raise StartError(
                "--executor ray needs Ray in dukatd's environment: pip install 'dukat[ray]' "
                "(the same Ray and Python versions as the cluster's nodes)"
            )
        warn_of_client_pings(config)
        open_exec = config.open_exec_address
        if open_exec is not None:  # only with --insecure
            _log.warning(
                "exec tasks are served on %s without a token (--insecure): every local user "
                "who can connect runs commands as this daemon's user; give --token-file",
                open_exec,
            )
        self.scheduler, self.exec_runner = build_scheduler(
            config, ledger=self.ledger, journal=self.journal, clock=self.clock
        )
        ray = self.ray_executor
        if ray is not None:  # before recovery: restored tasks are checked against its pool
            _log.info("connecting to the Ray cluster at %s", ray.address)
            if not await ray.start():
                _log.warning(
                    "the Ray cluster at %s is unavailable (%s): serving anyway; exec tasks "
                    "are refused (UNAVAILABLE) until it is back, those accepted before wait",
                    ray.address,
                    ray.why_unavailable,
                )
        # Dispatch tasks wait READY until a worker serving their queue takes them over Work.
        # With a journal, no worker gets an attempt before its RUNNING state is on disk.
        self.work_hub = WorkerHub(
            self.scheduler,
            heartbeat_interval=config.worker_heartbeat_interval,
            heartbeat_timeout=config.worker_heartbeat_timeout,
            max_result_bytes=config.max_result_bytes,
            before_send=self.journal.settled if self.journal is not None else None,
        )
        request_ids = self.recover() if self.journal is not None else {}
        self.service = SchedulerService(
            self.scheduler,
            allow_exec=config.allow_exec,
            max_watch_streams=config.max_watch_streams,
            max_watch_streams_per_client=config.max_watch_streams_per_client,
            work_hub=self.work_hub,
            journal=self.journal,
            request_ids=request_ids,
            # A GetJob or ListJobs over the daemon's own message limit would fail
            # RESOURCE_EXHAUSTED.
            result_budget=result_budget_for(config.max_message_bytes),
            page_bytes=page_bytes_for(config.max_message_bytes),
            check_job=ray.check_job if ray is not None else None,
        )
        interceptors: list[grpc.aio.ServerInterceptor] = []
        # Only /metrics reads the registry: with it off, no listener or interceptor pays its
        # cost on every task and call for numbers nobody can scrape.
        if config.metrics_address is not None:
            self.metrics = DaemonMetrics()
            self.metrics.attach(self.scheduler)
            if self.journal is not None:
                self.metrics.registry.register(JournalMetrics(self.journal))
            # The hub reports the count; it knows nothing of prometheus (metrics subscribe).
            self.work_hub.add_listener(self.metrics.workers_connected.set)
            self.metrics.registry.register(WorkMetrics(self.work_hub))
            if ray is not None:
                self.metrics.registry.register(RayMetrics(ray))
            # Metrics outermost: they count the calls the token check refuses too.
            interceptors.append(self.metrics.grpc)
        if self.auth is not None:
            interceptors.append(self.auth)
        # The umask is process-wide, and nothing else runs yet: the sockets that grpc makes
        # while binding and starting get mode 0660, not the daemon's umask's.
        with socket_umask():
            self.server = await create_server(
                self.scheduler,
                config.listen,
                service=self.service,
                breaker_service=BreakerService(self.scheduler.breakers, journal=self.journal),
                daemon_service=DaemonService(self.status),
                health_servicer=self.health,
                max_message_bytes=config.max_message_bytes,
                keepalive_time=config.keepalive_time,
                keepalive_timeout=config.keepalive_timeout,
                keepalive_min_client_interval=config.keepalive_min_client_interval,
                credentials=tls_credentials(config),
                interceptors=interceptors,
            )
            await self.server.start()
        self.started_at = self.clock.wall()
        for address in config.listen:
            _log.info("listening on %s", address)
        metrics_address = config.metrics_address
        if self.metrics is not None and metrics_address is not None:
            try:
                self.metrics_http = await start_metrics_server(
                    self.metrics.registry, metrics_address.host, metrics_address.port
                )
            except OSError as error:  # taken since check_ports looked
                raise StartError(
                    bind_failed(config, metrics_address, "metrics_listen", METRICS_FIX, error)
                ) from None
            http = self.metrics_http
            _log.info("metrics on http://%s:%d/metrics", http.host, http.port)
        else:
            _log.info("metrics off")
        if OrphanReaper.needed():  # no init above us: the orphans of tasks are ours to reap
            self.reaper = OrphanReaper(LEADERS)
            self.reaper.start()
        log_start_up(config)
        exec_state = "on" if config.allow_exec else "off"
        self.notifier.ready(f"serving on {', '.join(config.listen)}; exec {exec_state}")
        self.watchdog = self.notifier.start_watchdog()

    @property
    def ray_executor(self) -> RayExecutor | None:
        """The exec executor when it is Ray's (`--executor ray`)."""
        return self.exec_runner if isinstance(self.exec_runner, RayExecutor) else None

    def status(self) -> DaemonStatus:
        """What `dukat status` shows (DaemonService.GetStatus)."""
        assert self.scheduler is not None and self.work_hub is not None
        config = self.config
        return status_of(
            self.scheduler,
            started_at=self.started_at,
            listen=config.listen,
            state_dir=None if config.ephemeral else str(config.state_dir),
            allow_exec=config.allow_exec,
            workers=self.work_hub.sessions,
            ray=None if self.ray_executor is None else self.ray_executor.status(),
        )

    def recover(self) -> dict[str, str]:
        """Start the journal and bring back what it kept; the request ids of those jobs."""
        journal, scheduler = self.journal, self.scheduler
        assert journal is not None and scheduler is not None
        try:
            jobs, breakers = journal.load()
        except JournalError as error:
            raise StartError(str(error)) from None
        # The file's settings win over the API's.
        recover_breakers(scheduler.breakers, breakers, configured=self.config.breakers)
        journal.start(
            publish=scheduler.publish,
            result_of=scheduler.task_result,
            interruptions_of=scheduler.task_interruptions,
        )
        # Listening before recovery: what recovery changes (tasks re-queued) is journaled too.
        scheduler.add_record_listener(journal.on_record)
        scheduler.add_drop_listener(journal.drop)
        recovered = recover(scheduler, journal, jobs)
        if jobs:
            _log.info(
                "recovered %d job(s) from %s: %d unfinished (%d task(s) interrupted, "
                "run again up to their max_interruptions), %d finished",
                recovered.live + recovered.finished,
                journal.path,
                recovered.live,
                recovered.interrupted,
                recovered.finished,
            )
        if recovered.live_tasks > self.config.max_tasks:
            # Starting anyway: refusing would leave the jobs accepted before to nobody.
            _log.warning(
                "the journal holds %d task(s) of unfinished jobs, more than --max-tasks "
                "(%d): all were recovered, and new jobs are refused (RESOURCE_EXHAUSTED) "
                "until enough of them finish; raise --max-tasks if the host has the memory",
                recovered.live_tasks,
                self.config.max_tasks,
            )
        return recovered.request_ids

    # -- reload -----------------------------------------------------------------------------

    def reload(self, read_config: Callable[[], Config] | None) -> None:
        """SIGHUP: apply the breakers of a freshly read configuration.

        Only the breakers change live (`BreakerRegistry.configure` keeps each breaker's
        state); the resource pool cannot change capacity under granted holdings yet, and
        the rest (addresses, exec, limits) needs a restart: such changes are logged.
        """
        if read_config is None or self.scheduler is None:
            _log.warning("SIGHUP: reloading is not available here; restart to change settings")
            return
        self.notifier.reloading()
        try:
            fresh = read_config()
        except (ConfigError, OSError) as error:
            _log.error("SIGHUP: not reloaded, the configuration is invalid: %s", error)
        else:
            for name, settings in fresh.breakers.items():  # the file may pass the breakers' cap
                self.scheduler.breakers.configure(name, settings, within_limit=False)
            _log.info("SIGHUP: reloaded %d breaker(s)", len(fresh.breakers))
            changed = [
                option
                for option in (
                    "listen",
                    "allow_exec",
                    "max_concurrency",
                    "resources",
                    "ephemeral",
                    "executor",
                    "ray_address",
                )
                if getattr(fresh, option) != getattr(self.config, option)
            ]
            if changed:
                _log.warning("SIGHUP: %s changed; restart dukatd to apply", ", ".join(changed))
        self.notifier.ready()

    # -- the end ----------------------------------------------------------------------------

    async def close_now(self) -> None:
        """The last word, after a drain or a failed start: stop whatever still runs, let go
        of every lock. Idempotent, and never waits on tasks."""
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.stop(None)
        if self.exec_runner is not None:
            self.exec_runner.kill_all_now()
        if self.reaper is not None:
            self.reaper.stop()
            self.reaper.reap()  # what the last tasks left behind
        if self.ledger is not None:
            self.ledger.close()
        if self.journal is not None:
            self.journal.freeze()  # closing cancels every job: not something to remember
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                await self.scheduler.close(0)
        if self.journal is not None:
            with contextlib.suppress(Exception):
                await self.journal.close()
        if self.metrics_http is not None:
            self.metrics_http.close()
            with contextlib.suppress(Exception):
                await self.metrics_http.wait_closed()
        if self.metrics is not None:
            self.metrics.detach()
        # Sockets first (each removed while its lock is still held), then the state lock.
        for claim in self.claims:
            claim.release()
        if self.state_lock is not None:
            self.state_lock.release()
        self.notifier.close()

    def __repr__(self) -> str:
        state = "fast stop" if self.fast.is_set() else "stopping" if self.stopping else "up"
        return f"<Daemon {', '.join(self.config.listen)} {state}>"

    @property
    def stopping(self) -> bool:
        return self.stop_requested.is_set()
