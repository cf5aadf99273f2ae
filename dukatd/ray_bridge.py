"""The Ray driver of a dukatd: `python -m dukatd.ray_bridge --fd N --address ADDRESS`.

A process of its own, started by the daemon (`dukatd.ray_executor`), because a Ray driver
shares the fate of its cluster: when the Ray head (its GCS) is gone for longer than Ray's
reconnect timeout, Ray ends the driver's process. In dukatd's process that would take the
daemon, its dispatch tasks and its other clients down with the cluster; here it takes only
the bridge, and the daemon starts another once the cluster is back.

It connects (`ray.init`), says hello with the cluster's nodes, then serves the link
(`dukatd.ray_link`, on the socket `--fd`): each attempt is a streaming generator task
(`dukatd.ray_remote.ray_task`) with the task's resources and `max_retries=0` (retries are
dukat's), whose items it passes on as events and, last, the outcome. The alive nodes and
their resources are sent again whenever they change (looked at every `--refresh-interval`).

A stop is `ray.cancel(force=False)`, which the task answers by stopping its process group;
`ray.cancel(force=True)` follows after the grace and `FORCE_MARGIN`, for a worker that does
not answer (its warden then kills the group). When the daemon's end of the link closes (the
daemon exited, or was killed), the bridge exits at once: Ray then ends every task it owned.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

import ray
import ray.exceptions

from dukatd.ray_link import read_message, write_message
from dukatd.ray_remote import RemoteAttempt, ray_task

__all__ = ["main"]

_log = logging.getLogger("dukatd.ray_bridge")

FORCE_MARGIN = 2.0
"""Seconds past an attempt's grace before a stop forces its worker down."""
MAX_WHY = 2000
"""Characters of a Ray error's message passed on."""

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
        self.remote = ray.remote(num_returns="streaming", max_retries=0)(ray_task)
        self.running: dict[int, Any] = {}  # key -> its ObjectRefGenerator
        self.stopping: set[int] = set()
        self.followers: set[asyncio.Task[None]] = set()
        self.nodes: list[tuple[str, dict[str, float]]] = []

    async def serve(self) -> None:
        refresh = asyncio.create_task(self._refresh())
        while (message := await read_message(self.reader)) is not None:
            if message[0] == "start":
                _, key, attempt, options = message
                self._start(key, attempt, options)
            elif message[0] == "stop":
                _, key, grace = message
                self._stop(key, grace)
        refresh.cancel()

    def send(self, message: tuple[Any, ...]) -> None:
        write_message(self.writer, message)

    def _start(self, key: int, attempt: RemoteAttempt, options: dict[str, Any]) -> None:
        generator = self.remote.options(**options).remote(attempt)
        self.running[key] = generator
        follower = asyncio.create_task(self._follow(key, generator))
        self.followers.add(follower)
        follower.add_done_callback(self.followers.discard)

    def _stop(self, key: int, grace: float) -> None:
        generator = self.running.get(key)
        if generator is None or key in self.stopping:
            return
        self.stopping.add(key)
        ray.cancel(generator, force=False)
        asyncio.get_running_loop().call_later(grace + FORCE_MARGIN, self._force, key)

    def _force(self, key: int) -> None:
        generator = self.running.get(key)
        if generator is not None:
            _log.warning("attempt %d did not stop within its grace: forcing its worker", key)
            ray.cancel(generator, force=True)

    async def _follow(self, key: int, generator: Any) -> None:
        outcome: tuple[Any, ...] = ("failed", "RayError", "the attempt ended without an outcome")
        try:
            async for ref in generator:
                item = await ref
                if item[0] == "events":
                    self.send(("events", key, item[1]))
                else:
                    outcome = item
        except BaseException as error:
            outcome = self._outcome_of(key, error)
            if not isinstance(error, Exception):
                raise
        finally:
            self.running.pop(key, None)
            self.stopping.discard(key)
            self.send(("done", key, outcome))

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


def connect(address: str) -> dict[str, Any]:
    """`ray.init` for `address` (auto, local, host:port, ray://...); what hello says."""
    local = address == "local"
    ray.init(
        address=address,
        logging_level=logging.WARNING,
        log_to_driver=False,
        configure_logging=False,
        # A local Ray for trying things out listens on loopback only, with no dashboard.
        **({"include_dashboard": False, "_node_ip_address": "127.0.0.1"} if local else {}),
    )
    context = ray.get_runtime_context()
    return {
        "ray_version": ray.__version__,
        "job_id": context.get_job_id(),
        "node_id": context.get_node_id(),
        "address": context.gcs_address,
        "nodes": alive_nodes(),
    }


async def _serve(fd: int, address: str, refresh_interval: float) -> None:
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd))
    try:
        info = connect(address)
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
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(args.fd, args.address, args.refresh_interval))
    # The daemon is gone (or the cluster could not be reached): no clean Ray shutdown to
    # wait for; Ray ends the tasks of a driver that exited.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
