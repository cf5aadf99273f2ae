"""`python -m dukatd.health [ADDR]`: exit 0 when the daemon at ADDR answers SERVING, else 1.

A health probe for Docker's HEALTHCHECK and scripts, where grpc_health_probe is not
installed: one `grpc.health.v1.Health/Check` of the whole server (service ""). It is NOT_SERVING
while the daemon drains, so a draining daemon counts as unhealthy.

ADDR defaults to the daemon's own default: the first unix socket in `$DUKATD_LISTEN` (the
variable takes a comma-separated list), else its first address, else the default socket path.
Plaintext only (unix sockets, loopback TCP without TLS): a TLS listener needs a real client.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")  # as dukatd's own, before grpc loads

import argparse
import sys
from collections.abc import Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dukatd.config import default_listen

__all__ = ["check", "default_address", "main"]

SERVING = health_pb2.HealthCheckResponse.SERVING


def default_address(environ: Mapping[str, str] | None = None) -> str:
    """Where the daemon listens by default, as the module docstring says."""
    environ = os.environ if environ is None else environ
    listed = [part.strip() for part in environ.get("DUKATD_LISTEN", "").split(",")]
    listed = [part for part in listed if part]
    for address in listed:
        if address.startswith("unix:"):
            return address
    return listed[0] if listed else default_listen(environ)[0]


def check(address: str, *, timeout: float = 3.0, service: str = "") -> str:
    """The health status name of `service` at `address` ("SERVING", ...), or the gRPC code's
    name when the call fails ("UNAVAILABLE" when nothing listens)."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            return error.code().name  # type: ignore[attr-defined]  # a Call, in practice
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dukatd.health", description=__doc__.split("\n")[0]
    )
    parser.add_argument("address", nargs="?", help="unix:/path or host:port (see --help)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--service", default="", help="a service name; default the server")
    args = parser.parse_args(argv)
    address = args.address or default_address()
    status = check(address, timeout=args.timeout, service=args.service)
    print(f"{address}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
