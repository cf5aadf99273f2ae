"""What a daemon says of itself and of its breakers: the shared words of `dukatd` and clients.

`DaemonStatus` is what `DaemonService.GetStatus` answers (`dukat status`); `BreakerStatus` is a
breaker as `CircuitBreakerService.ListBreakers` shows it (`dukat breakers`). Plain data, here
beside `dukat.actions` rather than in the daemon, because clients read them too.
"""

from __future__ import annotations

from dataclasses import dataclass

from dukat.core.breaker import CircuitBreakerConfig, CircuitBreakerState

__all__ = ["BreakerStatus", "DaemonStatus", "QueueStatus", "RayClusterStatus", "ResourceStatus"]


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    """One resource of the daemon's pool: how much there is, how much is held now."""

    name: str
    capacity: float
    used: float


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """A queue of dispatch tasks: the workers connected that serve it, and their slots."""

    name: str
    workers: int
    slots: int


@dataclass(frozen=True, slots=True)
class RayClusterStatus:
    """The Ray cluster of a daemon run with `--executor ray`, as it sees it."""

    address: str
    """As given to `--ray-address`."""
    connected: bool
    """Exec tasks are refused (UNAVAILABLE) while it is not."""
    unavailable_reason: str = ""
    nodes: int = 0
    """Alive nodes, as last seen."""


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """A daemon at one moment."""

    version: str
    started_at: float
    """Wall-clock seconds since the epoch."""
    listen: tuple[str, ...]
    state_dir: str | None
    """None: the daemon keeps nothing (--ephemeral)."""
    allow_exec: bool
    max_concurrency: int
    tasks_running: int
    jobs_live: int
    jobs_finished: int
    resources: tuple[ResourceStatus, ...] = ()
    queues: tuple[QueueStatus, ...] = ()
    executor: str = "local"
    """Where exec tasks run: "local" or "ray" (`--executor`)."""
    ray: RayClusterStatus | None = None
    """With the Ray executor: its cluster (the resources are then the cluster's)."""


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """A named breaker at one moment, as the daemon shows it."""

    name: str
    state: CircuitBreakerState
    config: CircuitBreakerConfig
    consecutive_failures: int = 0
    retry_after: float = 0.0
    """While OPEN: seconds until trial calls are let through."""
