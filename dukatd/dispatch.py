"""Dispatch tasks: the engine's action for a task that a worker runs (SchedulerService.Work).

Only the action for now; the runner that hands these to workers over the Work stream comes
with the worker streams.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DispatchAction"]


@dataclass(frozen=True, slots=True)
class DispatchAction:
    """Hand the task to a worker serving `queue`; `payload` and `content_type` pass untouched."""

    queue: str
    payload: bytes = b""
    content_type: str = ""
