"""The server streams that are open now (Watch, Work), so that a drain can end them cleanly.

`server.stop(grace)` waits for open calls, and a Watch of a job that never ends, or of every
job, never ends by itself: left alone it would be cut at the end of the grace with CANCELLED,
which a client cannot tell from a network failure. ARCHITECTURE ("The daemon") wants the
streams ended first "with a defined status": UNAVAILABLE, whose meaning clients already know
(retry elsewhere or later), with the details "daemon shutting down".

    streams = LiveStreams()
    async def Watch(self, request, context):
        with streams.track(context):   # UNAVAILABLE at once while draining
            ...                        # writes until the job ends, or until end_all()
    streams.end_all("daemon shutting down")  # by the drain

A tracked handler is ended by cancelling its task (grpc.aio runs each call in a task of its
own); `track` takes that one cancellation back and sets the status instead of letting the
`CancelledError` through, so the handler returns normally and grpc sends the status.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import grpc

from dukat.errors import Refused

__all__ = ["SHUTTING_DOWN", "LiveStreams"]

SHUTTING_DOWN = "daemon shutting down"


class LiveStreams:
    """The tracked calls, by their tasks; `end_all` ends them with UNAVAILABLE."""

    def __init__(self) -> None:
        self._open: dict[asyncio.Task[object], grpc.aio.ServicerContext] = {}
        self._ended: set[asyncio.Task[object]] = set()
        self.ending: str | None = None
        """The details of `end_all`, once it was called: new streams are refused with them."""

    @contextlib.contextmanager
    def track(self, context: grpc.aio.ServicerContext) -> Iterator[None]:
        """Hold a streaming call open until its body ends, or until `end_all`."""
        if self.ending is not None:
            raise Refused("UNAVAILABLE", self.ending)
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("LiveStreams.track() must run inside a grpc.aio handler's task")
        self._open[task] = context
        try:
            yield
        except asyncio.CancelledError:
            if task not in self._ended:
                raise  # the client went away, or grpc cut the call: not ours to answer
            # Take back our one cancellation; if someone else cancelled too, let theirs win.
            if task.uncancel() > 0:
                raise
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details(self.ending or SHUTTING_DOWN)
        finally:
            del self._open[task]
            self._ended.discard(task)

    def end_all(self, details: str = SHUTTING_DOWN) -> int:
        """End every tracked call with UNAVAILABLE `details`, refuse new ones; how many."""
        self.ending = details
        ended = 0
        for task in list(self._open):
            if task not in self._ended and not task.done():
                self._ended.add(task)
                task.cancel(details)
                ended += 1
        return ended

    def __len__(self) -> int:
        return len(self._open)

    def __repr__(self) -> str:
        state = f" ending: {self.ending!r}" if self.ending is not None else ""
        return f"<LiveStreams open:{len(self._open)}{state}>"
