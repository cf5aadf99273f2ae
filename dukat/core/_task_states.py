"""The members of `TaskState` as plain module globals, for the engine's per-task paths.

On CPython 3.11 `TaskState.RUNNING` goes through EnumType.__getattr__'s slow path (~90 ns,
never specialized), a module global ~15: the modules of `dukat.core` that test a task's
state once or more per task import these (`state is RUNNING`).
"""

from __future__ import annotations

from dukat.core.states import TaskState

__all__ = ["FAILED", "PENDING", "READY", "RETRYING", "RUNNING", "SUCCEEDED"]

PENDING, READY, RUNNING = TaskState.PENDING, TaskState.READY, TaskState.RUNNING
RETRYING, SUCCEEDED, FAILED = TaskState.RETRYING, TaskState.SUCCEEDED, TaskState.FAILED
