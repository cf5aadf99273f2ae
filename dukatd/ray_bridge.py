"""The Ray driver of a dukatd: `python -m dukatd.ray_bridge --fd N --address ADDRESS`.

A process of its own, started by the daemon (`dukatd.ray_executor`), because a Ray driver
shares the fate of its cluster: when the Ray head (its GCS) is gone for longer than Ray's
reconnect timeout, Ray ends the driver's process. In dukatd's process that would take the
daemon, its dispatch tasks and its other clients down with the cluster; here it takes only
the bridge, and the daemon starts another once the cluster is back.

It connects (`ray.init`), says hello with the cluster's nodes, starts its `EventSink` actor,
then serves the link (`dukatd.ray_link`, on the socket `--fd`): each attempt is a Ray task
(`dukatd.ray_remote.ray_task`) with the task's resources and `max_retries=0` (retries are
dukat's), whose batches of events (collected from the sink) it passes on as they come, and
its outcome once every batch is passed on. The alive nodes and their resources are sent
again whenever they change (looked at every `--refresh-interval`).

A stop is `ray.cancel(force=False)`, which the task answers by stopping its process group;
`ray.cancel(force=True)` follows after the grace and `FORCE_MARGIN`, for a worker that does
not answer (its warden then kills the group). When the daemon's end of the link closes (the
daemon exited, or was killed), the bridge exits at once: Ray then ends every task it owned.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import ray
import ray.exceptions
import uvloop

from dukatd.ray_link import read_message, write_message
from dukatd.ray_remote import SINK_NAMESPACE, EventSink, ray_task

__all__ = ["main"]

_log = logging.getLogger("dukatd.ray_bridge")

FORCE_MARGIN = 2.0
"""Seconds past an attempt's grace before a stop forces its worker down."""
MAX_WHY = 2000
"""Characters of a Ray error's message passed on."""
AFTER_JOB_WAIT = 60.0
"""Seconds a new bridge waits at most for Ray to have the one before it for dead."""
SINK_WAIT = 1.0
"""Seconds the bridge's call for events waits at the sink when there are none."""

# A worker or node that died under the attempt: the task did nothing wrong.
_LOST = (
    ray.exceptions.NodeDiedError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.ObjectLostError,
)


class Bridge:
    """One connection to the cluster, serving one daemon's link."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        refresh_interval: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.refresh_interval = refresh_interval
        self.remote = ray.remote(max_retries=0)(ray_task)
        self.running: dict[int, Any] = {}  # key -> its ObjectRef
        self.stopping: set[int] = set()
        self.received: dict[int, int] = {}  # key -> batches of events passed on
        self.ending: dict[int, tuple[tuple[Any, ...], int]] = {}  # ended, batches to come
        self.sink: Any = None
        self.sink_name = ""
        self.nodes: list[tuple[str, dict[str, float]]] = []

    async def serve(self) -> None:
        refresh = asyncio.create_task(self._refresh())
        sink = self.sink = await start_sink()
        self.sink_name = sink_name()
        collect = asyncio.create_task(self._collect(sink))
        while (message := await read_message(self.reader)) is not None:
            if message[0] == "start":
                _, key, attempt, options = message
                self._start(key, attempt, options)
            elif message[0] == "stop":
                _, key, grace = message
                self._stop(key, grace)
        refresh.cancel()
        collect.cancel()

    def send(self, message: tuple[Any, ...]) -> None:
        write_message(self.writer, message)

    def _start(self, key: int, attempt: bytes, options: dict[str, Any]) -> None:
        ref = self.remote.options(**options).remote(attempt, self.sink_name)
        self.running[key] = ref
        self.received[key] = 0
        # A callback, not a coroutine awaiting the ref: a few hundred microseconds less a task.
        loop = asyncio.get_running_loop()
        ref.future().add_done_callback(lambda ended: _soon(loop, self._ended, key, ended))

    def _stop(self, key: int, grace: float) -> None:
        ref = self.running.get(key)
        if ref is None or key in self.stopping:
            return
        self.stopping.add(key)
        ray.cancel(ref, force=False)
        asyncio.get_running_loop().call_later(grace + FORCE_MARGIN, self._force, key)

    def _force(self, key: int) -> None:
        ref = self.running.get(key)
        if ref is not None:
            _log.warning("attempt %d did not stop within its grace: forcing its worker", key)
            ray.cancel(ref, force=True)

    def _ended(self, key: int, ended: concurrent.futures.Future[Any]) -> None:
        try:
            outcome, sent = ended.result()
        except Exception as error:
            outcome, sent = self._outcome_of(key, error), 0
        if self.received[key] < sent:  # its last batches are on their way from the sink
            self.ending[key] = (outcome, sent)
        else:
            self._finish(key, outcome)

    def _finish(self, key: int, outcome: tuple[Any, ...]) -> None:
        self.running.pop(key, None)
        self.stopping.discard(key)
        self.received.pop(key, None)
        self.ending.pop(key, None)
        self.send(("done", key, outcome))

    async def _collect(self, sink: Any) -> None:
        """Pass on the batches of events the sink holds, as they come."""
        while True:
            batches = await sink.take.remote(SINK_WAIT)
            for key, events in batches:
                if key in self.received:
                    self.received[key] += 1
                    self.send(("events", key, events))
                    ending = self.ending.get(key)
                    if ending is not None and self.received[key] >= ending[1]:
                        self._finish(key, ending[0])

    def _outcome_of(self, key: int, error: BaseException) -> tuple[Any, ...]:
        if key in self.stopping or _cancelled(error):
            return ("stopped",)
        why = str(error)[:MAX_WHY]
        if isinstance(error, _LOST):
            return ("interrupted", "node_lost", f"its Ray node or worker was lost: {why}")
        if isinstance(error, ray.exceptions.RayError):
            return ("failed", type(error).__name__, why)
        return ("failed", type(error).__name__, f"the Ray bridge failed: {why}")

    async def _refresh(self) -> None:
        while True:
            nodes = await asyncio.to_thread(alive_nodes)
            if nodes != self.nodes:
                self.nodes = nodes
                self.send(("nodes", nodes))
            await asyncio.sleep(self.refresh_interval)


def _soon(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    """Call `callback(*args)` on `loop` (from one of Ray's threads), unless it is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def sink_name() -> str:
    """The name of this bridge's event sink: one per Ray job (so per bridge)."""
    return f"dukat-events-{ray.get_runtime_context().get_job_id()}"


async def start_sink() -> Any:
    """Start this bridge's `EventSink` on its own node, so that it goes with the bridge."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    sink = (
        ray.remote(EventSink)
        .options(
            name=sink_name(),
            namespace=SINK_NAMESPACE,
            num_cpus=0,
            max_concurrency=1000,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        )
        .remote()
    )
    await sink.take.remote(0)  # up and running before the first attempt looks for it
    return sink


def _cancelled(error: BaseException) -> bool:
    if isinstance(error, ray.exceptions.TaskCancelledError):
        return True
    cause = getattr(error, "cause", None)
    return isinstance(error, ray.exceptions.RayTaskError) and isinstance(
        cause, (ray.exceptions.TaskCancelledError, KeyboardInterrupt)
    )


def alive_nodes() -> list[tuple[str, dict[str, float]]]:
    """Each alive node of the cluster and its resources (totals), sorted by node id."""
    return sorted(
        (node["NodeID"], dict(node["Resources"])) for node in ray.nodes() if node["Alive"]
    )


def connect(address: str, after_job: str = "") -> dict[str, Any]:
    """`ray.init` for `address` (auto, local, host:port, ray://...); what hello says.

    `after_job`: the Ray job of the bridge before this one (the daemon's, before a crash or
    a lost connection): hello waits until Ray has it for dead, since that is when Ray ends
    the tasks it owned; the attempts they ran are run again only after that.
    """
    local = address == "local"
    ray.init(
        address=address,
        logging_level=logging.WARNING,
        log_to_driver=False,
        configure_logging=False,
        # A local Ray for trying things out listens on loopback only (the daemon also tells
        # Ray this host is no cluster: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), no dashboard.
        **({"include_dashboard": False, "_node_ip_address": "127.0.0.1"} if local else {}),
    )
    if after_job:
        _wait_for_the_end_of(after_job)
    context = ray.get_runtime_context()
    return {
        "ray_version": ray.__version__,
        "job_id": context.get_job_id(),
        "node_id": context.get_node_id(),
        "address": context.gcs_address,
        "nodes": alive_nodes(),
    }


def _wait_for_the_end_of(job_id: str) -> None:
    deadline = time.monotonic() + AFTER_JOB_WAIT
    while time.monotonic() < deadline:
        jobs = {job["JobID"]: job for job in ray._private.state.jobs()}
        if job_id not in jobs or jobs[job_id]["IsDead"]:
            return
        time.sleep(0.1)
    _log.warning("Ray still has job %s (the bridge before) for alive; going on", job_id)


async def _serve(fd: int, address: str, refresh_interval: float, after_job: str) -> None:
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd))
    try:
        info = connect(address, after_job)
    except Exception as error:
        write_message(writer, ("failed", f"{type(error).__name__}: {error}"[:MAX_WHY]))
        await writer.drain()
        return
    bridge = Bridge(reader, writer, refresh_interval)
    bridge.send(("hello", info))
    await bridge.serve()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dukatd.ray_bridge")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--refresh-interval", type=float, default=10.0)
    parser.add_argument("--after-job", default="")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # uvloop, as the daemon: each attempt is a few wake-ups of this loop.
    uvloop.run(_serve(args.fd, args.address, args.refresh_interval, args.after_job))
    # The daemon is gone (or the cluster could not be reached): no clean Ray shutdown to
    # wait for; Ray ends the tasks of a driver that exited.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
