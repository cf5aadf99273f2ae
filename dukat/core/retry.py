"""Retry policies: how many attempts a task gets, and how long to wait between them."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from dukat.errors import FieldViolation, ValidationError

__all__ = ["RetryPolicy", "retry_policy"]

RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts and exponential backoff with a cap and jitter.

    The wait before attempt n+1 is `initial_backoff * multiplier**(n-1)`, capped at
    `max_backoff`, then spread by ±`jitter` (a fraction) so retries of many tasks do not
    arrive together — and never above `max_backoff`.

    An error with an attribute `retryable` that is `False` is never retried.
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
            "max_attempts": isinstance(self.max_attempts, int)
            and not isinstance(self.max_attempts, bool)
            and self.max_attempts >= 1,
            "initial_backoff": _finite(self.initial_backoff) and self.initial_backoff >= 0,
            # Compared only when both are numbers; a bad initial_backoff is reported first.
            "max_backoff": _finite(self.max_backoff)
            and _finite(self.initial_backoff)
            and self.max_backoff >= self.initial_backoff,
            "multiplier": _finite(self.multiplier) and self.multiplier >= 1,
            "jitter": _finite(self.jitter) and 0 <= self.jitter <= 1,
        }
        for field, ok in problems.items():
            if not ok:
                _invalid(field, f"{_RULES[field]}, not {getattr(self, field)!r}")
        retry_on = self.retry_on
        if _is_exception_type(retry_on):
            # A class is callable too; `retry_on=OSError` means the type, not a predicate.
            object.__setattr__(self, "retry_on", (retry_on,))
        elif isinstance(retry_on, tuple):
            if not all(_is_exception_type(kind) for kind in retry_on):
                _invalid("retry_on", f"must hold exception types only, not {retry_on!r}")
        elif not callable(retry_on):
            _invalid("retry_on", f"must be exception types or a predicate, not {retry_on!r}")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether `error`, raised by attempt number `attempt`, earns another attempt."""
        if attempt >= self.max_attempts or not isinstance(error, Exception):
            return False
        if getattr(error, "retryable", True) is False:
            # The error knows no attempt can help (a worker's WorkError with retryable=false,
            # a result over the size limit): final, whatever the policy would retry.
            return False
        if isinstance(self.retry_on, tuple):
            return isinstance(error, self.retry_on)
        return bool(self.retry_on(error))

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number `attempt` (1-based) failed."""
        if not self.initial_backoff:
            return 0.0
        try:
            # float: an int multiplier would compute 2**(10**9) exactly before overflowing.
            growth = float(self.multiplier) ** (attempt - 1)
        except OverflowError:
            growth = math.inf
        base = min(self.max_backoff, self.initial_backoff * growth)
        if self.jitter:
            base *= 1 + self.jitter * (2 * (rng or random).random() - 1)
        return min(self.max_backoff, max(0.0, base))


def retry_policy(value: Any, *, task_id: str | None = None) -> RetryPolicy | None:
    """The policy `value` stands for: a `RetryPolicy` as it is, a number of attempts
    (`retry=3`), a mapping of RetryPolicy's fields, or None (no retry).

    The one reading of the shorthand, for `add_task`, `Task(retry=...)` and the assistant's
    task dicts alike; anything else is a `ValidationError` naming the task.
    """
    if value is None or isinstance(value, RetryPolicy):
        return value
    where = "" if task_id is None else f"task {task_id!r}: "
    if isinstance(value, int) and not isinstance(value, bool):
        return _built(where, task_id, max_attempts=value)
    if isinstance(value, Mapping):
        try:
            return _built(where, task_id, **value)
        except TypeError as error:  # a key RetryPolicy does not have
            raise ValidationError(
                f"{where}bad retry {dict(value)!r}: {error}",
                task_id=task_id,
                violations=[FieldViolation("retry", str(error))],
            ) from None
    rule = "must be a RetryPolicy, a number of attempts or a dict of RetryPolicy's fields"
    raise ValidationError(
        f"{where}retry {rule}, not {value!r}",
        task_id=task_id,
        violations=[FieldViolation("retry", rule)],
    )


def _built(where: str, task_id: str | None, **fields: Any) -> RetryPolicy:
    try:
        return RetryPolicy(**fields)
    except ValidationError as error:  # the policy's own message, placed at the task
        raise ValidationError(
            f"{where}{error}",
            task_id=task_id,
            violations=[
                FieldViolation(f"retry.{v.field}", v.description) for v in error.violations
            ],
        ) from None


_RULES = {
    "max_attempts": "must be a whole number of at least 1",
    "initial_backoff": "must be zero or more seconds",
    "max_backoff": "must be at least initial_backoff",
    "multiplier": "must be at least 1",
    "jitter": "must be between 0 and 1",
}


def _invalid(field: str, rule: str) -> NoReturn:
    raise ValidationError(f"retry {field} {rule}", violations=[FieldViolation(field, rule)])


def _is_exception_type(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
