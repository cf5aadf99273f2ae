"""Circuit breakers: configuration both ways, a breaker as it stands, call outcomes."""

from __future__ import annotations

from dataclasses import replace

from dukat.convert._bounds import (
    MAX_WINDOW,
    Problems,
    Report,
    duration_seconds,
    seconds_within,
    within,
)
from dukat.convert._tables import BREAKER_STATES, duration
from dukat.core.breaker import CircuitBreaker, CircuitBreakerConfig
from dukat.errors import FieldViolation, ValidationError
from dukat.v1 import breaker_pb2

# The engine names two fields differently from the wire (seconds as a float vs a Duration).
_WIRE_FIELD = {"timeout_seconds": "timeout"}
_DEFAULTS = CircuitBreakerConfig()


def breaker_config_from_proto(
    message: breaker_pb2.CircuitBreakerConfig, *, path: str = "config"
) -> CircuitBreakerConfig:
    """The engine's config; fields left at zero take the defaults breaker.proto documents.

    Bad values, and values out of the wire's bounds, raise `ValidationError` with wire paths
    (`config.timeout`), so a client in any language is told the field it sent.
    """
    problems = Problems()
    rate = message.failure_rate_threshold or None
    window = message.window_size or None
    timeout = (
        duration_seconds(problems.report(), f"{path}.timeout", message.timeout)
        if message.HasField("timeout")
        else _DEFAULTS.timeout_seconds
    )
    problems.raise_if_any()
    try:
        config = CircuitBreakerConfig(
            failure_threshold=message.failure_threshold or _DEFAULTS.failure_threshold,
            timeout_seconds=timeout,
            half_open_max_calls=message.half_open_max_calls or _DEFAULTS.half_open_max_calls,
            success_threshold=message.success_threshold or _DEFAULTS.success_threshold,
            failure_rate_threshold=rate,
            window_size=window,
        )
    except ValidationError as error:
        violations = [
            FieldViolation(f"{path}.{_WIRE_FIELD.get(v.field, v.field)}", v.description)
            for v in error.violations
        ]
        message_text = str(error)
        for engine, wire in _WIRE_FIELD.items():
            message_text = message_text.replace(engine, wire)
        raise ValidationError(f"{path}: {message_text}", violations=violations) from None
    breaker_config_within_bounds(config, problems.report(), path=path)
    problems.raise_if_any()
    return config


def breaker_config_within_bounds(
    config: CircuitBreakerConfig, report: Report, *, path: str = "config"
) -> CircuitBreakerConfig:
    """`config` with each value over the wire's bounds brought to the bound, and reported.

    The one rule for a config from a request (which `breaker_config_from_proto` refuses if
    anything was reported) and for one an older daemon wrote to its journal (which is then
    used as it comes back from here).
    """
    timeout = seconds_within(report, f"{path}.timeout", config.timeout_seconds)
    window = config.window_size
    if window is not None:
        window = within(report, f"{path}.window_size", window, MAX_WINDOW)
    if (timeout, window) == (config.timeout_seconds, config.window_size):
        return config
    return replace(config, timeout_seconds=timeout, window_size=window)


def breaker_config_to_proto(config: CircuitBreakerConfig) -> breaker_pb2.CircuitBreakerConfig:
    """Every field filled in, defaults included (what GetBreaker shows)."""
    return breaker_pb2.CircuitBreakerConfig(
        failure_threshold=config.failure_threshold,
        timeout=duration(config.timeout_seconds),
        half_open_max_calls=config.half_open_max_calls,
        success_threshold=config.success_threshold,
        failure_rate_threshold=config.failure_rate_threshold or 0.0,
        window_size=config.window_size or 0,
    )


def breaker_to_proto(breaker: CircuitBreaker) -> breaker_pb2.CircuitBreaker:
    """A breaker at this moment. Reading its state may half-open it (the engine's rule)."""
    state = breaker.state  # first: it applies a due OPEN -> HALF_OPEN before the rest is read
    message = breaker_pb2.CircuitBreaker(
        name=breaker.name,
        state=BREAKER_STATES.to_proto(state),
        config=breaker_config_to_proto(breaker.config),
        consecutive_failures=breaker.consecutive_failures,
        generation=breaker.generation,
    )
    retry_after = breaker.retry_after
    if state is state.OPEN:
        message.retry_after.CopyFrom(duration(retry_after))
    return message


def acquire_to_proto(breaker: CircuitBreaker, permit: int | None) -> breaker_pb2.AcquireResponse:
    """The answer to Acquire: the permit, or why not and for how long (OPEN only)."""
    state = breaker.state
    response = breaker_pb2.AcquireResponse(
        allowed=permit is not None, permit=permit or 0, state=BREAKER_STATES.to_proto(state)
    )
    if permit is None and state is state.OPEN:
        response.retry_after.CopyFrom(duration(breaker.retry_after))
    return response
