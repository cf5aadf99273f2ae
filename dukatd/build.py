"""The daemon's one scheduler, built from its configuration: the breakers it names, the
runners of the actions it serves (exec, when allowed), the resource pool and the limits."""

from __future__ import annotations

from dukat.actions import ExecAction
from dukat.core.breaker import BreakerRegistry
from dukat.core.clock import Clock, SystemClock
from dukat.core.resources import ResourcePool
from dukat.core.runners import Unrunnable
from dukat.core.scheduler import Scheduler
from dukat.errors import ValidationError
from dukatd.breaker_service import MAX_BREAKERS
from dukatd.config import Config
from dukatd.exec_groups import GroupLedger
from dukatd.exec_runner import ExecOptions
from dukatd.executor import ExecExecutor, build_exec_executor
from dukatd.journal import Journal

__all__ = ["EXEC_OFF", "RAY_JOB_FILE", "build_scheduler"]

RAY_JOB_FILE = "ray-job"
"""File in the state dir keeping the Ray job of the daemon's last bridge (dukatd.ray_executor)."""


def build_scheduler(
    config: Config,
    *,
    ledger: GroupLedger | None = None,
    journal: Journal | None = None,
    clock: Clock | None = None,
) -> tuple[Scheduler, ExecExecutor | None]:
    """The daemon's one scheduler, with the exec executor when exec is allowed (`--executor`:
    this host's subprocesses, or a Ray cluster's, whose `start` is then the caller's).

    With a `journal`, watchers see only what it has written (`hold_events`), and no task
    process starts before its RUNNING state is written (a crash must not take back an
    attempt that ran). `clock`: the daemon's one clock (default: the system's), which the
    breakers and the scheduler both read: breaker timeouts, task timeouts and backoff, the
    retention of finished jobs, and the work hub's heartbeats (the hub takes the
    scheduler's)."""
    clock = clock if clock is not None else SystemClock()
    breakers = BreakerRegistry(max_breakers=MAX_BREAKERS, clock=clock)
    for name, settings in config.breakers.items():  # the file may pass the cap
        breakers.configure(name, settings, within_limit=False)
    scheduler = Scheduler(
        max_concurrency=config.max_concurrency,
        resources=ResourcePool(dict(config.resources)),
        breakers=breakers,
        max_tasks_per_job=config.max_tasks_per_job,
        max_tasks=config.max_tasks,
        event_log_length=config.event_log_length,
        retain_finished_jobs=config.retain_finished_jobs,
        finished_job_ttl=config.finished_job_ttl,
        hold_events=journal is not None,
        clock=clock,
    )
    exec_runner = None
    if config.allow_exec:
        options = ExecOptions(
            kill_grace=config.kill_grace,
            # The runner keeps at least one byte; 0 in the config means "keep nothing useful".
            output_tail_bytes=max(1, config.output_tail_bytes),
        )
        exec_runner = build_exec_executor(
            config.executor,
            options,
            scheduler,
            ledger=ledger,
            before_spawn=journal.settled if journal is not None else None,
            ray={
                "job_file": None if config.ephemeral else config.state_dir / RAY_JOB_FILE,
                "address": config.ray_address,
                "pinned": config.resources,
                "refresh_interval": config.ray_refresh_interval,
                "connect_timeout": config.ray_connect_timeout,
            },
        )
        scheduler.add_runner(ExecAction, exec_runner)
    else:  # Submit refuses exec tasks; these are ones accepted while exec was on, restored
        scheduler.add_runner(ExecAction, Unrunnable(ValidationError(EXEC_OFF)))
    return scheduler, exec_runner


EXEC_OFF = (
    "exec tasks are off on this daemon; restart it with --allow-exec, then run the job again "
    "with `dukat rerun JOB`"
)
"""Why an exec task accepted while exec was on fails on a daemon restarted without it."""
