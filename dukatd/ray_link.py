"""The link between dukatd and its Ray bridge process: framed messages on a socket pair.

Each message is a tuple, pickled, after its length (4 bytes, big-endian). Both ends are this
package's code, started together from the same installation, over a socket pair nobody else
holds: pickle is safe here, and carries the dataclasses and bytes as they are.

dukatd -> bridge:
    ("start", key, attempt, ray_options)         run an attempt: a pickled
                                                 `dukatd.ray_remote.RemoteAttempt`, which
                                                 the bridge hands Ray as it is
    ("stop", key, grace)                         stop it: cancel, then force after the grace
bridge -> dukatd:
    ("hello", info)          connected to the cluster: ray_version, job_id, address, nodes
    ("failed", why)          could not connect; the bridge exits
    ("nodes", nodes)         the alive nodes changed: [(node_id, {resource: total})]
    ("events", key, events)  output lines and progress reports of a running attempt
    ("done", key, outcome)   the attempt is over: ("exit", code, stdout_tail, stderr_tail,
                             events), ("spawn_error", why), ("stopped",),
                             ("interrupted", cause, why) or ("failed", type, why)
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

__all__ = ["MAX_FRAME", "read_message", "write_message"]

MAX_FRAME = 1 << 31
"""Largest message: a task's stdin is bounded by the daemon's --max-message-bytes."""


async def read_message(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None at the end of the stream."""
    try:
        header = await reader.readexactly(4)
        size = int.from_bytes(header, "big")
        if size > MAX_FRAME:
            raise ValueError(f"a message of {size} bytes on the Ray link")
        return pickle.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def write_message(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    """Queue `message` on the link (the transport buffers it)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(len(data).to_bytes(4, "big") + data)
