"""What `dukat jobs`, `show`, `breakers` and `status` print: rich tables (plain on a pipe)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from dukat.core.breaker import CircuitBreakerState
from dukat.core.events import CARRIED
from dukat.core.results import JobSnapshot
from dukat.core.states import JobState, TaskState
from dukat.daemon_status import BreakerStatus, DaemonStatus
from dukat.display import MARKS, format_duration

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["breakers_table", "job_table", "jobs_table", "status_table"]

JOB_STYLES = {
    JobState.PENDING: "dim",
    JobState.RUNNING: "cyan",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "red",
    JobState.CANCELLED: "yellow",
}
BREAKER_STYLES = {
    CircuitBreakerState.CLOSED: "green",
    CircuitBreakerState.OPEN: "red",
    CircuitBreakerState.HALF_OPEN: "yellow",
}
ERROR_WIDTH = 80


def jobs_table(jobs: Sequence[JobSnapshot], *, now: float) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    if not jobs:
        return Text("no jobs", style="dim")
    table = Table(box=None, pad_edge=False)
    table.add_column("JOB", no_wrap=True, min_width=max(len(job.job_id) for job in jobs))
    for column in ("STATE", "TASKS", "FAILED", "AGE", "DURATION", "LABELS"):
        table.add_column(column, no_wrap=True)
    for job in jobs:
        done = sum(job.count(state) for state in TaskState if state.is_terminal)
        end = job.finished_at if job.finished_at is not None else now
        table.add_row(
            job.job_id,
            Text(job.state.value, style=JOB_STYLES[job.state]),
            f"{done}/{job.total}",
            str(job.count(TaskState.FAILED) or ""),
            _age(job.created_at, now),
            format_duration(None if job.created_at is None else end - job.created_at),
            ",".join(f"{key}={value}" for key, value in sorted(job.labels.items())),
        )
    return table


def job_table(job: JobSnapshot) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text.assemble(
        ("job ", "bold"),
        (job.job_id, "bold"),
        "  ",
        (job.state.value, JOB_STYLES[job.state]),
    )
    if job.message:
        head.append(f"  {job.message}", style="dim")
    lines: list[RenderableType] = [head]
    if job.labels:
        labels = ", ".join(f"{key}={value}" for key, value in sorted(job.labels.items()))
        lines.append(Text(f"labels: {labels}", style="dim"))
    if job.created_at is not None:
        created = datetime.fromtimestamp(job.created_at).isoformat(sep=" ", timespec="seconds")
        lines.append(Text(f"created: {created}", style="dim"))
    table = Table(box=None, pad_edge=False)
    for column in ("", "TASK", "STATE", "ATTEMPTS", "DURATION", "ERROR"):
        table.add_column(column, no_wrap=column != "ERROR")
    for task in job.tasks:
        mark, style = MARKS.get(task.state, ("·", "cyan"))
        duration = None
        if task.started_at is not None and task.finished_at is not None:
            duration = task.finished_at - task.started_at
        said = f"waiting for {task.waiting_for}" if task.waiting_for else task.error
        said = said or (f"{CARRIED}{task.carried_from}" if task.carried_from else "")
        error = said if len(said) <= ERROR_WIDTH else said[: ERROR_WIDTH - 1] + "…"
        table.add_row(
            Text(mark, style=style),
            task.id,
            Text(task.state.value, style=style),
            str(task.attempts),
            format_duration(duration),
            Text(error, style="red" if task.state is TaskState.FAILED else "dim"),
        )
    return Group(*lines, table)


def breakers_table(breakers: Sequence[BreakerStatus]) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    if not breakers:
        return Text("no breakers", style="dim")
    table = Table(box=None, pad_edge=False)
    for column in ("BREAKER", "STATE", "FAILURES", "THRESHOLD", "TIMEOUT", "RETRY AFTER"):
        table.add_column(column, no_wrap=True)
    for breaker in breakers:
        table.add_row(
            breaker.name,
            Text(breaker.state.name.lower(), style=BREAKER_STYLES[breaker.state]),
            str(breaker.consecutive_failures),
            str(breaker.config.failure_threshold),
            format_duration(breaker.config.timeout_seconds),
            format_duration(breaker.retry_after) if breaker.retry_after else "",
        )
    return table


def status_table(
    daemon: DaemonStatus, breakers: Sequence[BreakerStatus], *, now: float
) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("version", daemon.version)
    facts.add_row("up", format_duration(max(0.0, now - daemon.started_at)))
    facts.add_row("listening", ", ".join(daemon.listen))
    facts.add_row("state", daemon.state_dir or "none (ephemeral)")
    facts.add_row("exec", "allowed" if daemon.allow_exec else "refused")
    if daemon.ray is not None:
        ray = daemon.ray
        state = (
            f"connected, {ray.nodes} node{'s' if ray.nodes != 1 else ''}"
            if ray.connected
            else f"unavailable ({ray.unavailable_reason})"
        )
        facts.add_row("executor", f"ray at {ray.address}: {state}")
    facts.add_row("tasks", f"{daemon.tasks_running} running of {daemon.max_concurrency}")
    facts.add_row("jobs", f"{daemon.jobs_live} live, {daemon.jobs_finished} finished held")
    parts: list[RenderableType] = [facts]
    resources = Table(box=None, pad_edge=False, title_justify="left")
    for column in ("RESOURCE", "USED", "CAPACITY"):
        resources.add_column(column, no_wrap=True)
    for resource in daemon.resources:
        resources.add_row(resource.name, f"{resource.used:g}", f"{resource.capacity:g}")
    parts += [Text(""), resources]
    parts.append(Text(""))
    if daemon.queues:
        queues = Table(box=None, pad_edge=False)
        for column in ("QUEUE", "WORKERS", "SLOTS"):
            queues.add_column(column, no_wrap=True)
        for queue in daemon.queues:
            queues.add_row(queue.name, str(queue.workers), str(queue.slots))
        parts.append(queues)
    else:
        parts.append(Text("no workers connected", style="dim"))
    parts += [Text(""), breakers_table(breakers)]
    return Group(*parts)


def _age(created_at: float | None, now: float) -> str:
    return "-" if created_at is None else format_duration(max(0.0, now - created_at))
