"""Prometheus metrics of dispatch (`dukatd.work_hub`), read from the hub at scrape time.

    dukat_tasks_waiting_for_worker{workers}   dispatch tasks READY and picked to start,
                                              waiting for a worker of their queue to take them:
                                              workers="none": no worker serves the queue (they
                                              may wait for ever); "busy": its workers are full

No queue label: queue names are the clients' to make (an AsyncAssistant makes one per
process), so there is no bound to them; GetJob's `waiting_for` names the queue of each task.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dukatd.work_hub import WorkerHub

__all__ = ["WorkMetrics"]


class WorkMetrics(Collector):
    """Register with the daemon's registry: `registry.register(WorkMetrics(hub))`."""

    def __init__(self, hub: WorkerHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily]:
        unserved, busy = self.hub.tasks_waiting()
        waiting = GaugeMetricFamily(
            "dukat_tasks_waiting_for_worker",
            "Dispatch tasks ready to start, waiting for a worker of their queue: none "
            "connected, or all busy.",
            labels=["workers"],
        )
        waiting.add_metric(["none"], unserved)
        waiting.add_metric(["busy"], busy)
        yield waiting
