"""Prometheus metrics of the journal (`dukatd.journal`), read from it at scrape time.

    dukat_journal_commits_total           transactions written (group commits)
    dukat_journal_commit_seconds          histogram: one commit, fsync included
    dukat_journal_write_errors_total      commits that failed (full disk, I/O error)
    dukat_journal_backlog                 operations queued and not yet committed
    dukat_journal_bytes                   size on disk, database and WAL

The journal knows nothing of Prometheus: it keeps plain counts in its writer thread, and this
collector turns them into families when scraped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from dukatd.journal import CommitTimes, Journal

__all__ = ["JournalMetrics"]


class JournalMetrics(Collector):
    """Register with the daemon's registry: `registry.register(JournalMetrics(journal))`."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        journal = self.journal
        yield CounterMetricFamily(
            "dukat_journal_commits", "Journal transactions written.", journal.commits
        )
        times = journal.commit_seconds
        counts = list(itertools.accumulate(times.counts))
        bounds = [*map(str, CommitTimes.BUCKETS), "+Inf"]
        buckets = list(zip(bounds, counts, strict=True))
        yield HistogramMetricFamily(
            "dukat_journal_commit_seconds",
            "Duration of one journal commit, fsync included.",
            buckets=buckets,
            sum_value=times.total,
        )
        yield CounterMetricFamily(
            "dukat_journal_write_errors",
            "Journal commits that failed (full disk, I/O error); retried.",
            journal.write_errors,
        )
        yield GaugeMetricFamily(
            "dukat_journal_backlog",
            "Operations queued for the journal, not yet committed.",
            journal.backlog,
        )
        yield GaugeMetricFamily(
            "dukat_journal_bytes", "Size of the journal on disk, database and WAL.", journal.size()
        )
