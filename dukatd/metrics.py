"""Prometheus metrics of the daemon, fed by the engine's listeners, served on /metrics.

The per-task metrics (`dukatd.metrics_tasks`) take the scheduler's raw event records
(`Scheduler.add_record_listener`) and keep plain counts that become metric families at
scrape time: about a microsecond per task, where an `Event` per state change and
prometheus-client's locked `observe()`/`inc()` cost several.

Habit 5 (STYLE.md): the engine publishes events and metrics subscribe to them. Nothing in
the scheduler, the pool or the breakers knows about Prometheus. Label values are bounded: no
job or task ids, no dispatch queue names (AsyncAssistant makes a private queue per process).

Wiring, for the daemon (`dukatd.app`), only when /metrics is served (`--metrics-listen off`
makes none of it: nothing else reads the registry, and the listeners cost on every task)::

    address = config.metrics_address               # None when --metrics-listen off
    metrics = DaemonMetrics()                      # its own CollectorRegistry, not the global
    metrics.attach(scheduler)                      # scheduler events, pool, breaker registry
    server = await create_server(scheduler, addresses, interceptors=[metrics.grpc])
    http = await start_metrics_server(metrics.registry, address.host, address.port)
    ...
    http.close(); await http.wait_closed()
    metrics.detach()

    hub.add_listener(metrics.workers_connected.set)  # WorkerHub reports the count it has

`start_metrics_server` serves GET /metrics on the running loop (collection reads engine
state, which belongs to the loop's thread) and binds 127.0.0.1 unless told otherwise:
prometheus-client's own default, 0.0.0.0, would publish the daemon's internals to the network.

The metrics (labels in braces):

    dukat_jobs_submitted_total                    jobs accepted
    dukat_jobs_finished_total{state}              succeeded | failed | cancelled
    dukat_tasks_finished_total{state,kind}        state: succeeded|failed|cancelled|skipped;
                                                  kind: exec | dispatch | callable (a rerun's
                                                  carried-over tasks are not counted again)
    dukat_task_retries_total{kind}                attempts that failed and will be retried
    dukat_task_interruptions_total{reason}        attempts interrupted (not failed), by cause:
                                                  daemon_restart | daemon_stopping |
                                                  worker_lost | executor_stopped |
                                                  node_lost | cluster_lost | other
    dukat_task_duration_seconds{kind}             histogram, one attempt (RUNNING -> its end)
    dukat_task_queue_wait_seconds{kind}           histogram, READY -> RUNNING
    dukat_tasks_running, dukat_tasks_ready        gauges
    dukat_resource_capacity{resource}             gauges (cpu, memory, ..., custom names)
    dukat_resource_used{resource}
    dukat_breaker_state{breaker}                  CLOSED 0, OPEN 1, HALF_OPEN 2 (the engine's)
    dukat_breaker_transitions_total{breaker,from_state,to_state}
    dukat_workers_connected                       gauge, set by the Work service
    dukat_tasks_waiting_for_worker{workers}       none | busy: see `dukatd.metrics_work`
    dukat_journal_*                               with a journal: see `dukatd.metrics_journal`
    grpc_server_started_total, grpc_server_handled_total{...,grpc_code},
    grpc_server_msg_received_total, grpc_server_msg_sent_total,
    grpc_server_handling_seconds                  see `dukatd.grpc_metrics`
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from dukat.actions import DispatchAction, ExecAction
from dukat.core.breaker import BreakerRegistry, BreakerTransition, CircuitBreakerState
from dukat.core.events import JobStateChanged
from dukat.core.resources import ResourcePool
from dukat.core.scheduler import Scheduler
from dukat.core.states import JobState
from dukatd.grpc_metrics import GrpcServerMetrics
from dukatd.metrics_tasks import TaskMetrics

__all__ = ["JOB_BUCKETS", "DaemonMetrics", "MetricsServer", "start_metrics_server"]

# Tasks are jobs' steps, not requests: from a few ms (a no-op dispatch) to hours (a build).
JOB_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    120, 300, 600, 1800, 3600, 7200, 14400, 43200,
)  # fmt: skip

_KINDS = {ExecAction: "exec", DispatchAction: "dispatch"}


class DaemonMetrics:
    """Every metric of one daemon, in its own registry; `attach` subscribes them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Not prometheus-client's global registry: two daemons in one test process (or a
        # library user's own metrics) must not collide on names.
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.jobs_submitted = Counter("dukat_jobs_submitted", "Jobs accepted.", registry=r)
        self.jobs_finished = Counter(
            "dukat_jobs_finished", "Jobs finished, by final state.", ["state"], registry=r
        )
        self.resource_capacity = Gauge(
            "dukat_resource_capacity", "Capacity of each resource.", ["resource"], registry=r
        )
        self.resource_used = Gauge(
            "dukat_resource_used",
            "Amount of each resource held by tasks.",
            ["resource"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "dukat_breaker_transitions",
            "Circuit breaker state changes.",
            ["breaker", "from_state", "to_state"],
            registry=r,
        )
        self.workers_connected = Gauge(
            "dukat_workers_connected", "Worker streams open (SchedulerService.Work).", registry=r
        )
        self.grpc = GrpcServerMetrics(r)
        """The grpc.aio.ServerInterceptor to pass to `create_server(interceptors=...)`."""

        self._scheduler: Scheduler | None = None
        # Per-task metrics: plain counts, made into families at scrape (dukatd.metrics_tasks).
        self.tasks = TaskMetrics(JOB_BUCKETS, self._kind, self._running, self._interruptions)
        r.register(self.tasks)
        self._breaker_states: dict[str, CircuitBreakerState] = {}
        self._breakers = _BreakerStates(self)
        r.register(self._breakers)

    # -- subscribing --------------------------------------------------------------------------

    def attach(self, scheduler: Scheduler) -> None:
        """Listen to `scheduler`'s events, its resource pool and its breaker registry."""
        if self._scheduler is not None:
            raise RuntimeError("these metrics already listen to a scheduler; detach() first")
        self._scheduler = scheduler
        scheduler.add_record_listener(self.on_job_record)
        scheduler.add_record_listener(self.tasks.on_record)
        scheduler.resources.add_listener(self.on_pool)
        scheduler.breakers.add_listener(self.on_breaker)
        scheduler.breakers.add_drop_listener(self.on_breaker_dropped)
        self._breakers.registry = scheduler.breakers
        for breaker in scheduler.breakers:  # configured before we listened
            self._breaker_states[breaker.name] = breaker.state
        self.on_pool(scheduler.resources)  # capacities are known before any allocation

    def detach(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        scheduler.remove_record_listener(self.on_job_record)
        scheduler.remove_record_listener(self.tasks.on_record)
        scheduler.breakers.remove_listener(self.on_breaker)
        scheduler.breakers.remove_drop_listener(self.on_breaker_dropped)
        # ResourcePool has no remove_listener: the listener stays but does only gauge sets.

    # -- listeners (on the scheduler's hot path: keep them cheap) -----------------------------

    def on_job_record(self, job_id: str, record: tuple[Any, ...]) -> None:
        """Scheduler record listener: counts jobs by their JobStateChanged records."""
        if record[0] is JobStateChanged:
            state = record[3]
            if state.is_terminal:
                self.jobs_finished.labels(state.value).inc()
            elif state is JobState.RUNNING:  # a job's first event: submit starts it at once
                self.jobs_submitted.inc()

    def _kind(self, job_id: str, task_id: str) -> str:
        scheduler = self._scheduler
        if scheduler is None:
            return "unknown"
        try:
            action = scheduler.task_spec(job_id, task_id).action
        except LookupError:  # the job is gone already; never a reason to break a listener
            return "unknown"
        return _KINDS.get(type(action), "callable")

    def _running(self) -> int:
        scheduler = self._scheduler
        return 0 if scheduler is None else scheduler.running

    def _interruptions(self) -> Mapping[str, int]:
        scheduler = self._scheduler
        return {} if scheduler is None else scheduler.interruptions

    def on_pool(self, pool: ResourcePool) -> None:
        """Resource pool listener: after every allocation and release."""
        for key, usage in pool.usage().items():
            self.resource_capacity.labels(key).set(usage.capacity)
            self.resource_used.labels(key).set(usage.used)

    def on_breaker(self, transition: BreakerTransition) -> None:
        """Breaker registry listener: every transition of every breaker."""
        self._breaker_states[transition.name] = transition.to_state
        self.breaker_transitions.labels(
            transition.name, transition.from_state.name.lower(), transition.to_state.name.lower()
        ).inc()

    def on_breaker_dropped(self, name: str) -> None:
        """Breaker registry drop listener: a breaker let go takes its series with it, so the
        `breaker` label stays bounded by the registry's limit however many names come."""
        self._breaker_states.pop(name, None)
        for from_state in CircuitBreakerState:
            for to_state in CircuitBreakerState:
                self.breaker_transitions.remove(
                    name, from_state.name.lower(), to_state.name.lower()
                )


class _BreakerStates(Collector):
    """dukat_breaker_state for every breaker in the registry, new ones (CLOSED) included.

    A breaker made on first use publishes no transition, so a gauge set only by the listener
    would miss it. Collected from what the listener saw, never by reading `breaker.state`:
    reading can half-open a breaker, and a scrape must not change the daemon's state.
    """

    def __init__(self, metrics: DaemonMetrics) -> None:
        self.metrics = metrics
        self.registry: BreakerRegistry | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "dukat_breaker_state",
            "Circuit breaker state: CLOSED 0, OPEN 1, HALF_OPEN 2.",
            labels=["breaker"],
        )
        names = [breaker.name for breaker in self.registry or ()]
        seen = self.metrics._breaker_states
        for name in sorted(names):
            family.add_metric([name], int(seen.get(name, CircuitBreakerState.CLOSED)))
        yield family


# -- /metrics over HTTP ------------------------------------------------------------------------

_MAX_HEADER_BYTES = 16 * 1024
_READ_TIMEOUT = 10.0


class MetricsServer:
    """The /metrics endpoint; `close()` then `await wait_closed()` to stop it."""

    def __init__(self, server: asyncio.Server, registry: CollectorRegistry) -> None:
        self._server = server
        self.registry = registry
        host, port = server.sockets[0].getsockname()[:2]
        self.host: str = host
        self.port: int = port

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()

    def __repr__(self) -> str:
        return f"<MetricsServer http://{self.host}:{self.port}/metrics>"


async def start_metrics_server(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9464
) -> MetricsServer:
    """Serve `registry` on http://host:port/metrics from the running loop (port 0 picks one).

    Not prometheus-client's `start_http_server`: its thread would collect while the loop
    changes the engine's state. Collection here is a synchronous call on the loop, a
    millisecond or so for this daemon's few hundred series.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(_answer(registry, reader, writer), _READ_TIMEOUT)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a scraper that went away or never finished asking: nobody to answer
        except asyncio.LimitOverrunError:
            with contextlib.suppress(ConnectionError):
                await _respond(writer, 431, b"request header too large\n")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port, limit=_MAX_HEADER_BYTES)
    metrics_server = MetricsServer(server, registry)
    return metrics_server


async def _answer(
    registry: CollectorRegistry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split()
    if len(parts) != 3:
        await _respond(writer, 400, b"bad request\n")
        return
    method, target, _version = parts
    path = target.split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        await _respond(writer, 405, b"only GET and HEAD\n", extra=b"Allow: GET, HEAD\r\n")
    elif path != "/metrics":
        await _respond(writer, 404, b"metrics are at /metrics\n")
    else:
        body = generate_latest(registry)
        await _respond(writer, 200, body, CONTENT_TYPE_LATEST, head_only=method == "HEAD")


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large"}  # fmt: skip


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    extra: bytes = b"",
    head_only: bool = False,
) -> None:
    header = (
        (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        ).encode()
        + extra
        + b"\r\n"
    )
    writer.write(header if head_only else header + body)
    await writer.drain()
