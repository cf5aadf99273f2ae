"""dukatd.server.server_options: the channel arguments the daemon's server is built with."""

from __future__ import annotations

import math

import pytest

from dukatd.server import (
    KEEPALIVE_TIME_MS,
    KEEPALIVE_TIMEOUT_MS,
    MAX_PING_STRIKES,
    MIN_CLIENT_PING_INTERVAL_MS,
    server_options,
)


def test_the_defaults_are_the_documented_constants():
    options = dict(server_options())
    assert options["grpc.keepalive_time_ms"] == KEEPALIVE_TIME_MS
    assert options["grpc.keepalive_timeout_ms"] == KEEPALIVE_TIMEOUT_MS
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == MIN_CLIENT_PING_INTERVAL_MS
    assert options["grpc.http2.max_ping_strikes"] == MAX_PING_STRIKES
    assert options["grpc.so_reuseport"] == 0


def test_keepalive_times_in_seconds_become_milliseconds():
    options = dict(
        server_options(
            keepalive_time=2.5, keepalive_timeout=0.0001, keepalive_min_client_interval=0
        )
    )
    assert options["grpc.keepalive_time_ms"] == 2_500
    assert options["grpc.keepalive_timeout_ms"] == 1  # grpc's least, not 0 (which is "off")
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("keepalive_time", 0),
        ("keepalive_time", math.nan),
        ("keepalive_timeout", -1),
        ("keepalive_min_client_interval", -0.5),
    ],
)
def test_nonsense_times_are_refused_by_name(option: str, value: float):
    with pytest.raises(ValueError, match=option):
        server_options(**{option: value})
