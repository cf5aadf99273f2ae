"""Where exec tasks run: the executor seam of the daemon.

An exec executor is the scheduler's runner of `ExecAction`s and what the drain stops:

- `local` (the default): `dukatd.exec_runner.ExecRunner`, subprocesses of the daemon on
  this host, their shares of it in the resource pool;
- `ray`: `dukatd.ray_executor.RayExecutor`, each attempt's process on a node of a Ray
  cluster that has its resources, the pool's capacities the cluster's (`--executor ray
  --ray-address ADDRESS`, with `pip install 'dukat[ray]'`).

Both turn an attempt into the same outcomes — an `ExecResult`, a `TaskProcessError` with the
exit code or signal and the tails, a `TaskInterruptedError` with its cause — and stream the
same output lines and `::progress` reports (`dukatd.exec_output`); the engine above them
cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from dukat.actions import ExecResult
from dukat.core.context import TaskContext
from dukat.core.scheduler import Scheduler
from dukatd.exec_groups import GroupLedger
from dukatd.exec_runner import ExecOptions, ExecRunner

__all__ = ["ExecExecutor", "build_exec_executor"]


class ExecExecutor(Protocol):
    """Runs attempts of exec tasks (the scheduler's `Runner` protocol), and stops them."""

    def run(self, context: TaskContext) -> Awaitable[ExecResult]: ...

    async def kill_all(self, grace: float | None = None) -> int:
        """Refuse new attempts; stop every live one within `grace`, wait; how many."""
        ...

    def kill_all_now(self) -> int:
        """Stop everything without waiting: the last thing a dying daemon does."""
        ...


def build_exec_executor(
    executor: str,
    options: ExecOptions,
    scheduler: Scheduler,
    *,
    ledger: GroupLedger | None = None,
    before_spawn: Callable[[], Awaitable[object]] | None = None,
    ray: Mapping[str, Any] | None = None,
) -> ExecExecutor:
    """The executor named `executor` for `scheduler`; `ray` holds the Ray executor's
    settings (address, pinned, refresh_interval, connect_timeout, job_file)."""
    if executor == "ray":
        from dukatd.ray_executor import RayExecutor

        return RayExecutor(
            pool=scheduler.resources,
            task_spec=scheduler.task_spec,
            options=options,
            before_spawn=before_spawn,
            **dict(ray or {}),
        )
    return ExecRunner(options, ledger=ledger, before_spawn=before_spawn)
