"""Dispatch tasks, run by workers over `SchedulerService.Work`.

    hub = WorkerHub(scheduler)   # also registers DispatchRunner(hub) for DispatchAction
    service = SchedulerService(scheduler, work_hub=hub)

An attempt of a dispatch task is an assignment on its queue (`dukatd.work_hub`); the engine
awaits the result that a worker serving the queue sends back. Success gives the task a
`dukat.actions.DispatchResult` (payload and content type: its dependents get both). A
`WorkError` becomes `dukat.errors.TaskFailedRemotely`, whose `retryable` the engine's
`RetryPolicy` obeys (false: the task fails now, whatever attempts are left). A worker that
leaves or falls silent interrupts its attempts (`TaskInterruptedError`, "worker 'w1' left"):
no failure, they run again at once, maybe elsewhere, up to the task's `max_interruptions`.

Slots: a dispatch task waits for a worker READY, outside the scheduler's `max_concurrency`
slots (`DispatchRunner.admit`, the engine's admission hook): it goes to a slot, shows RUNNING
and starts its timeout only once a worker serving its queue has credit for it. While it
waits it counts against its job's `max_concurrency`, so that bounds how many of a job's
tasks sit on a queue nobody serves. Admission is a hint: if that credit goes to another
attempt first, this one waits in its slot, RUNNING, for the next (it is not sent back).

The protocol a worker must follow (the Python client's `client.worker(...)` implements it):

1. Open `Work`; send one `WorkRequest{hello}`: at least one queue, `max_in_flight` >= 1 (the
   daemon clamps it to its own cap, `WorkerHub.max_in_flight_cap`, and never says so: it
   just never sends more). An empty `worker_id` gets a made-up one.
2. Read `WorkResponse{welcome}`: `heartbeat_interval`, `heartbeat_timeout`,
   `max_result_bytes`. Send a `WorkerUpdate` at least every `heartbeat_interval` (an empty
   one when idle); silent past `heartbeat_timeout`, the stream ends with DEADLINE_EXCEEDED
   and every attempt it held is given up (interrupted: it runs again). The daemon does the same
   (`daemon_heartbeats`): an empty `WorkResponse` when it has sent nothing for an interval,
   so a worker that hears nothing for `heartbeat_timeout` may end the stream and say hello
   again.
3. Every later `WorkResponse` may carry many `assignments` and `cancels`; read the
   assignments first. Never more than `max_in_flight` assignments are outstanding: one is
   outstanding from when it is sent until its `WorkResult` arrives (also after a cancel).
   A message's assignments total about `WorkerHub.max_batch_bytes` of payload, but one
   big assignment travels alone: raise the channel's receive limit (grpc's default is
   4 MiB) to the daemon's message limit if payloads or upstream results can be large.
4. Send results and progress batched: everything ready, in one `WorkerUpdate`. Echo
   `(job_id, task_id, attempt)` exactly. A result for an attempt the daemon gave up
   (cancelled, timed out) is ignored but frees its slot; a result or progress report for
   an attempt never assigned on this stream whose job the daemon still holds is ignored
   (fencing); for a job it does not know, the stream ends with FAILED_PRECONDITION.
5. A `TaskCancel`: stop the attempt, then send a `WorkResult` for it (an error will do).
6. Results belong to the stream their assignment came on: after a reconnect, drop what is
   unsent from the old stream (the daemon gave those attempts up when it ended) and say
   hello again.
7. Misuse ends the stream, the daemon keeps serving others: no hello first or a second
   hello (FAILED_PRECONDITION); a bad hello, a result without an outcome or with empty
   ids, a progress fraction outside 0..1 (NaN too), undecodable bytes (INVALID_ARGUMENT).
   The attempts the stream held are given up at once; its status follows the messages
   already sent, also when the worker had stopped reading (`dukatd.work_session`). A success
   payload over `max_result_bytes` fails that attempt (not retryable) and keeps the stream.
   A worker that half-closes its side ends the stream (status OK); what it held is given up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from dukat.actions import DispatchResult
from dukat.core.context import TaskContext

if TYPE_CHECKING:
    from dukatd.work_hub import WorkerHub

__all__ = ["DispatchRunner"]


class DispatchRunner:
    """The engine's Runner for `DispatchAction`: an attempt is an assignment to a worker."""

    __slots__ = ("hub",)

    def __init__(self, hub: WorkerHub) -> None:
        self.hub = hub

    def admit(self, context: TaskContext) -> asyncio.Future[None] | None:
        # The engine's optional hook: keep the task READY, out of a slot, until a worker can
        # take it (`WorkerHub.admit`).
        return self.hub.admit(context)

    def run(self, context: TaskContext) -> Awaitable[DispatchResult]:
        # The hub's coroutine itself, not one wrapped around it: this runs for every task.
        return self.hub.dispatch(context)

    def __repr__(self) -> str:
        return f"<DispatchRunner {self.hub!r}>"
