"""dukat.convert for circuit breakers: configs both ways, wire paths in errors, snapshots."""

from __future__ import annotations

import pytest

from dukat import convert
from dukat.core.breaker import CircuitBreaker, CircuitBreakerConfig, CircuitBreakerState
from dukat.core.clock import ManualClock
from dukat.errors import ValidationError
from dukat.v1 import breaker_pb2

CONFIGS = [
    CircuitBreakerConfig(),
    CircuitBreakerConfig(failure_threshold=1, timeout_seconds=0.25, half_open_max_calls=3),
    CircuitBreakerConfig(success_threshold=2, failure_rate_threshold=0.5, window_size=10),
    CircuitBreakerConfig(timeout_seconds=0),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_a_config_goes_to_the_wire_and_back_unchanged(config):
    message = convert.breaker_config_to_proto(config)
    assert convert.breaker_config_from_proto(message) == config


def test_zero_fields_take_the_documented_defaults():
    assert convert.breaker_config_from_proto(breaker_pb2.CircuitBreakerConfig()) == (
        CircuitBreakerConfig()
    )


def test_errors_carry_wire_paths():
    message = breaker_pb2.CircuitBreakerConfig()
    message.timeout.FromMilliseconds(-5)
    with pytest.raises(ValidationError) as caught:
        convert.breaker_config_from_proto(message, path="request.config")
    assert [v.field for v in caught.value.violations] == ["request.config.timeout"]
    assert "timeout_seconds" not in str(caught.value)


def test_a_breaker_as_it_stands():
    clock = ManualClock()
    breaker = CircuitBreaker("db", failure_threshold=2, timeout_seconds=30, clock=clock)
    breaker.failure()
    message = convert.breaker_to_proto(breaker)
    assert message.name == "db"
    assert message.state == breaker_pb2.CIRCUIT_BREAKER_STATE_CLOSED
    assert message.consecutive_failures == 1
    assert not message.HasField("retry_after")
    breaker.failure()
    message = convert.breaker_to_proto(breaker)
    assert convert.BREAKER_STATES.from_proto(message.state, "state") is CircuitBreakerState.OPEN
    assert message.retry_after.seconds == 30
    assert message.generation == breaker.generation == 1
    refused = convert.acquire_to_proto(breaker, breaker.acquire())
    assert not refused.allowed and refused.retry_after.seconds == 30
