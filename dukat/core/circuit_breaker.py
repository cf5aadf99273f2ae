"""Public face of the circuit breaker (see `dukat.core.breaker` for how it works)."""

from dukat.core.breaker import (
    BreakerRegistry,
    BreakerTransition,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerState,
)
from dukat.errors import CircuitBreakerError

__all__ = [
    "BreakerRegistry",
    "BreakerTransition",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerError",
    "CircuitBreakerState",
]
