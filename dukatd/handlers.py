"""Registering a servicer so that undecodable requests get INVALID_ARGUMENT, not UNKNOWN.

The generated `add_*Servicer_to_server` functions deserialize with `FromString`; when the
bytes are not a valid message, grpc.aio logs an "unexpected" error and answers UNKNOWN,
which tells a client in another language nothing useful and fills the daemon's log. Here
every method of a service is registered from its descriptor, with a deserializer that
returns an `Undecodable` in place of the message; `dukatd.status.rpc_errors` answers it
with INVALID_ARGUMENT before the handler runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message

__all__ = ["Undecodable", "add_service", "lenient_deserializer"]


class Undecodable:
    """Stands for a request whose bytes are not a `message_name`."""

    __slots__ = ("message_name", "reason")

    def __init__(self, message_name: str, reason: str) -> None:
        self.message_name = message_name
        self.reason = reason

    def __repr__(self) -> str:
        return f"<Undecodable {self.message_name}: {self.reason}>"


def lenient_deserializer(message_class: type[Message]) -> Callable[[bytes], Any]:
    name = message_class.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Message | Undecodable:
        try:
            return message_class.FromString(data)
        except DecodeError as error:
            return Undecodable(name, str(error))

    return deserialize


_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_service(server: grpc.aio.Server, service: ServiceDescriptor, servicer: object) -> None:
    """Register every method of `service` on `server`, served by `servicer`'s methods."""
    handlers = {}
    for method in service.methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        make = _HANDLER_KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=lenient_deserializer(request),
            response_serializer=response.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    # As the generated code does: lets grpc route these methods without a lookup per call.
    server.add_registered_method_handlers(service.full_name, handlers)
