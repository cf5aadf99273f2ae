"""The per-task metrics, kept as plain counts and turned into Prometheus families at scrape.

Every task passes three or more state changes, so what runs for each is the daemon's
per-task overhead: here a tuple unpack, a dict set or pop and a list increment (a
`bisect` for the histograms), instead of prometheus-client's locked `inc()`/`observe()`
and an `Event` object per change. Collection happens on the loop's thread
(`dukatd.metrics.start_metrics_server`), as do the updates, so nothing here needs a lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from dukat.core.events import CARRIED, INTERRUPTED, TaskStateChanged
from dukat.core.states import TaskState

__all__ = ["TaskMetrics"]

_ENDS = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.SKIPPED)
_READY, _RUNNING, _RETRYING = TaskState.READY, TaskState.RUNNING, TaskState.RETRYING


class _Kind:
    """Counts of one action kind (a label value): histograms as per-bucket counts."""

    __slots__ = ("duration", "duration_sum", "finished", "retries", "wait", "wait_sum")

    def __init__(self, buckets: int) -> None:
        self.duration = [0] * (buckets + 1)  # the last one is +Inf
        self.duration_sum = 0.0
        self.wait = [0] * (buckets + 1)
        self.wait_sum = 0.0
        self.finished = dict.fromkeys(_ENDS, 0)
        self.retries = 0


class TaskMetrics(Collector):
    """Task counters, duration and queue-wait histograms, running/ready gauges.

    `on_record` is a `Scheduler.add_record_listener` listener. `kind_of(job_id, task_id)`
    names a task's action kind; `running()` is the number of attempts in progress;
    `interruptions()` the attempts interrupted so far by cause (`Scheduler.interruptions`).
    """

    def __init__(
        self,
        buckets: Sequence[float],
        kind_of: Callable[[str, str], str],
        running: Callable[[], int],
        interruptions: Callable[[], Mapping[str, int]],
    ) -> None:
        self.buckets = tuple(buckets)
        self._kind_of = kind_of
        self._running = running
        self._interruptions = interruptions
        self._kinds: dict[str, _Kind] = {}
        # (job_id, task_id) -> when it became READY / (when it started RUNNING, its kind).
        # Bounded by the tasks READY or RUNNING now.
        self._ready_since: dict[tuple[str, str], float] = {}
        self._running_since: dict[tuple[str, str], tuple[float, _Kind]] = {}

    def on_record(self, job_id: str, record: tuple[Any, ...]) -> None:
        """Scheduler record listener: every event of every job, on the hot path."""
        if record[0] is not TaskStateChanged:
            return
        _, _, now, task_id, state, _, _ = record
        key = (job_id, task_id)
        if state is _READY:
            self._ready_since[key] = now
        elif state is _RUNNING:
            kind = self._kind(job_id, task_id)
            since = self._ready_since.pop(key, None)
            if since is not None:
                wait = now - since if now > since else 0.0
                kind.wait[bisect_left(self.buckets, wait)] += 1
                kind.wait_sum += wait
            self._running_since[key] = (now, kind)
        else:
            self._ready_since.pop(key, None)  # cancelled, failed or refused while READY
            started = self._running_since.pop(key, None)
            if started is not None:
                since, kind = started
                duration = now - since if now > since else 0.0
                kind.duration[bisect_left(self.buckets, duration)] += 1
                kind.duration_sum += duration
            elif state is TaskState.PENDING or record[6].startswith(CARRIED):
                return  # nothing ended here (a carried-over task ran in the job it comes from)
            else:
                kind = self._kind(job_id, task_id)
            if state is _RETRYING:
                # An interrupted attempt runs again too, but it did not fail: counted apart,
                # by the scheduler (dukat_task_interruptions_total).
                if not record[6].startswith(INTERRUPTED):
                    kind.retries += 1
            elif state in kind.finished:
                kind.finished[state] += 1

    def _kind(self, job_id: str, task_id: str) -> _Kind:
        name = self._kind_of(job_id, task_id)
        kind = self._kinds.get(name)
        if kind is None:
            kind = self._kinds[name] = _Kind(len(self.buckets))
        return kind

    def collect(self) -> Iterator[Any]:
        kinds = sorted(self._kinds.items())
        finished = CounterMetricFamily(
            "dukat_tasks_finished",
            "Tasks finished, by final state and action kind.",
            labels=["state", "kind"],
        )
        retries = CounterMetricFamily(
            "dukat_task_retries", "Failed attempts that will be retried.", labels=["kind"]
        )
        duration = HistogramMetricFamily(
            "dukat_task_duration_seconds",
            "Duration of one task attempt, RUNNING to its end.",
            labels=["kind"],
        )
        wait = HistogramMetricFamily(
            "dukat_task_queue_wait_seconds",
            "Time a task waited READY (slot, resources, breaker, worker) before RUNNING.",
            labels=["kind"],
        )
        for name, kind in kinds:
            for state, count in kind.finished.items():
                finished.add_metric([state.value, name], count)
            retries.add_metric([name], kind.retries)
            duration.add_metric([name], self._cumulative(kind.duration), kind.duration_sum)
            wait.add_metric([name], self._cumulative(kind.wait), kind.wait_sum)
        yield from (finished, retries, duration, wait)
        interruptions = CounterMetricFamily(
            "dukat_task_interruptions",
            "Attempts interrupted (no failure: run again), by what interrupted them.",
            labels=["reason"],
        )
        for reason, count in sorted(self._interruptions().items()):
            interruptions.add_metric([reason], count)
        yield interruptions
        yield GaugeMetricFamily("dukat_tasks_running", "Task attempts running.", self._running())
        yield GaugeMetricFamily(
            "dukat_tasks_ready", "Tasks READY, waiting to run.", len(self._ready_since)
        )

    def _cumulative(self, counts: list[int]) -> list[tuple[str, float]]:
        total = 0
        out = []
        for bound, count in zip((*map(_le, self.buckets), "+Inf"), counts, strict=True):
            total += count
            out.append((bound, total))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))  # as prometheus-client spells its own `le` labels: "0.005", "1.0"
