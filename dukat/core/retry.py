"""Retry policies: how many attempts a task gets, and how long to wait between them."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from dukat.errors import ValidationError

__all__ = ["RetryPolicy"]

RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts and exponential backoff with a cap and jitter.

    The wait before attempt n+1 is `initial_backoff * multiplier**(n-1)`, capped at
    `max_backoff`, then spread by ±`jitter` (a fraction) so retries of many tasks do not
    arrive together — and never above `max_backoff`.
    """

    max_attempts: int = 1
    """Attempts in all, the first included; 1 means no retry."""
    initial_backoff: float = 1.0
    """Seconds before the second attempt."""
    max_backoff: float = 60.0
    """The longest wait between two attempts."""
    multiplier: float = 2.0
    """How much each wait grows over the previous one."""
    jitter: float = 0.2
    """Spread of each wait, as a fraction of it (0 to 1)."""
    retry_on: RetryOn = (Exception,)
    """Exception types that are retried, or a predicate on the exception."""

    def __post_init__(self) -> None:
        problems = {
            "max_attempts": isinstance(self.max_attempts, int) and self.max_attempts >= 1,
            "initial_backoff": _finite(self.initial_backoff) and self.initial_backoff >= 0,
            "max_backoff": _finite(self.max_backoff) and self.max_backoff >= self.initial_backoff,
            "multiplier": _finite(self.multiplier) and self.multiplier >= 1,
            "jitter": _finite(self.jitter) and 0 <= self.jitter <= 1,
        }
        for field, ok in problems.items():
            if not ok:
                raise ValidationError(
                    f"retry {field} {_RULES[field]}, not {getattr(self, field)!r}"
                )
        if not (callable(self.retry_on) or isinstance(self.retry_on, tuple)):
            raise ValidationError("retry retry_on must be a tuple of exception types or a callable")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether `error`, raised by attempt number `attempt`, earns another attempt."""
        if attempt >= self.max_attempts or not isinstance(error, Exception):
            return False
        if isinstance(self.retry_on, tuple):
            return isinstance(error, self.retry_on)
        return bool(self.retry_on(error))

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number `attempt` (1-based) failed."""
        try:
            base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        except OverflowError:
            base = self.max_backoff
        if self.jitter:
            base *= 1 + self.jitter * (2 * (rng or random).random() - 1)
        return min(self.max_backoff, max(0.0, base))


_RULES = {
    "max_attempts": "must be a whole number of at least 1",
    "initial_backoff": "must be zero or more seconds",
    "max_backoff": "must be at least initial_backoff",
    "multiplier": "must be at least 1",
    "jitter": "must be between 0 and 1",
}


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
