"""dukat.client: the daemon (dukatd) over gRPC, in the engine's vocabulary.

    async with dukat.connect("unix:/run/dukatd/dukatd.sock") as client:
        handle = await client.submit(JobSpec(tasks=(...)))
        async for event in handle.events():
            ...
        job = await handle.wait()

Everything here speaks dataclasses and engine enums (`dukat.core`), never protobuf; a
failed call raises a `dukat.errors.DaemonError` subclass named after its status code.
Importing this package imports grpc; importing `dukat` does not (`dukat.connect` loads it
on first use).
"""

from dukat.actions import DispatchTask, UpstreamResult
from dukat.client._assistant import RemoteAssistant
from dukat.client._breaker import RemoteBreaker
from dukat.client._client import Client, connect
from dukat.client._connection import (
    CLIENT_ID_KEY,
    DEFAULT_MAX_MESSAGE_BYTES,
    channel_options,
    check_address,
)
from dukat.client._errors import ERRORS_BY_CODE
from dukat.client._jobs import JobHandle
from dukat.client._reconnect import Reconnect
from dukat.client._worker import Worker

__all__ = [
    "CLIENT_ID_KEY",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ERRORS_BY_CODE",
    "Client",
    "DispatchTask",
    "JobHandle",
    "Reconnect",
    "RemoteAssistant",
    "RemoteBreaker",
    "UpstreamResult",
    "Worker",
    "channel_options",
    "check_address",
    "connect",
]
