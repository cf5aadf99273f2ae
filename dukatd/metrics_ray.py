"""Prometheus metrics of the Ray executor (`dukatd.ray_executor`), read at scrape time.

    dukat_ray_connected        1 while the daemon's Ray bridge is connected to the cluster
    dukat_ray_nodes            alive nodes of the cluster, as last seen
    dukat_ray_attempts_running exec attempts running on the cluster now

The cluster's capacity is the pool's: `dukat_resource_capacity{resource}` follows the
cluster's totals with this executor. No node label: nodes come and go without bound.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dukatd.ray_executor import RayExecutor

__all__ = ["RAY_METRICS", "RayMetrics"]

RAY_METRICS = ("dukat_ray_connected", "dukat_ray_nodes", "dukat_ray_attempts_running")
"""The families only a daemon with `--executor ray` serves."""


class RayMetrics(Collector):
    """Register with the daemon's registry: `registry.register(RayMetrics(executor))`."""

    def __init__(self, executor: RayExecutor) -> None:
        self.executor = executor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        executor = self.executor
        connected, nodes, running = RAY_METRICS
        yield GaugeMetricFamily(
            connected,
            "1 while the Ray bridge is connected to the cluster, else 0.",
            value=1 if executor.connected else 0,
        )
        yield GaugeMetricFamily(
            nodes, "Alive nodes of the Ray cluster.", value=len(executor.cluster.nodes)
        )
        yield GaugeMetricFamily(
            running,
            "Exec attempts running on the Ray cluster.",
            value=executor.live,
        )
