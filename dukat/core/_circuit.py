"""A circuit breaker: stop calling a downstream that keeps failing, try it again later.

    CLOSED --(failure_threshold consecutive failures, or failure rate over the window)--> OPEN
    OPEN --(timeout_seconds elapsed)--> HALF_OPEN
    HALF_OPEN --(success_threshold trial successes)--> CLOSED
    HALF_OPEN --(a trial fails)--> OPEN
    any --(reset())--> CLOSED

The states are an enum with fixed numbers (exported as a gauge by the daemon), the allowed
transitions a table, and every transition passes through `_transition`, which validates,
swaps and then tells the listeners. A lock guards the counters only; it is never held while
the guarded call runs, nor while listeners run.
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from dukat.core.clock import Clock, SystemClock
from dukat.errors import (
    CircuitBreakerError,
    FieldViolation,
    ValidationError,
)

__all__ = [
    "BreakerTransition",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerState",
    "Listener",
    "notify",
]

P = ParamSpec("P")
R = TypeVar("R")

_log = logging.getLogger("dukat.core.breaker")  # the breakers' log, as it always was


class CircuitBreakerState(enum.IntEnum):
    """Breaker states; the numbers are fixed (metrics and the wire use them)."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


_State = CircuitBreakerState
_ALLOWED_TRANSITIONS: dict[CircuitBreakerState, frozenset[CircuitBreakerState]] = {
    _State.CLOSED: frozenset({_State.OPEN}),
    _State.OPEN: frozenset({_State.HALF_OPEN, _State.CLOSED}),
    _State.HALF_OPEN: frozenset({_State.OPEN, _State.CLOSED}),
}


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """How a breaker decides; validated on construction."""

    failure_threshold: int = 5
    """Consecutive failures that open a closed breaker."""
    timeout_seconds: float = 60.0
    """How long an open breaker refuses calls before it lets trial calls through."""
    half_open_max_calls: int = 1
    """Trial calls let through at once while half-open."""
    success_threshold: int = 1
    """Trial successes that close a half-open breaker."""
    failure_rate_threshold: float | None = None
    """Also open when this fraction (0-1] of the last `window_size` calls failed."""
    window_size: int | None = None
    """Calls in the failure-rate window; required with `failure_rate_threshold`."""

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ValidationError:
            value = getattr(self, field)
            return ValidationError(
                f"circuit breaker {field} {why}, not {value!r}",
                violations=[FieldViolation(field, f"{why}, not {value!r}")],
            )

        if self.failure_threshold < 1:
            raise bad("failure_threshold", "must be at least 1")
        if not self.timeout_seconds >= 0:
            raise bad("timeout_seconds", "must be zero or more")
        if self.half_open_max_calls < 1:
            raise bad("half_open_max_calls", "must be at least 1")
        if self.success_threshold < 1:
            raise bad("success_threshold", "must be at least 1")
        if (self.failure_rate_threshold is None) != (self.window_size is None):
            given, missing = "failure_rate_threshold", "window_size"
            if self.window_size is not None:
                given, missing = missing, given
            raise ValidationError(
                "circuit breaker failure_rate_threshold and window_size go together",
                violations=[FieldViolation(missing, f"required with {given}")],
            )
        if self.failure_rate_threshold is not None and not 0 < self.failure_rate_threshold <= 1:
            raise bad("failure_rate_threshold", "must be in (0, 1]")
        if self.window_size is not None and self.window_size < 1:
            raise bad("window_size", "must be at least 1")


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A breaker changed state; given to listeners."""

    name: str
    from_state: CircuitBreakerState
    to_state: CircuitBreakerState
    reason: str
    time: float  # wall clock


Listener = Callable[[BreakerTransition], None]


def notify(listeners: list[Listener], event: BreakerTransition) -> None:
    # A listener's bug must not escape into the breaker's caller: by now the state has changed
    # and a permit may have been taken (allow_request), which nobody would ever give back.
    for listener in list(listeners):
        try:
            listener(event)
        except Exception:
            _log.exception("listener %r failed on %s", listener, event)


class CircuitBreaker:
    """A named circuit breaker.

    Use it by hand (`allow_request()`, then `success()` or `failure(exc)`), as `async with
    breaker:`, or as a decorator on a coroutine function. A refused call raises
    `CircuitBreakerError` carrying the breaker's name and the seconds until it half-opens.
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        timeout_seconds: float = 60.0,
        *,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        failure_rate_threshold: float | None = None,
        window_size: int | None = None,
        clock: Clock | None = None,
        config: CircuitBreakerConfig | None = None,
    ) -> None:
        if not name:
            raise ValidationError("a circuit breaker needs a name")
        self.name = name
        self._config = config or CircuitBreakerConfig(
            failure_threshold=failure_threshold,
            timeout_seconds=timeout_seconds,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            failure_rate_threshold=failure_rate_threshold,
            window_size=window_size,
        )
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._state = CircuitBreakerState.CLOSED
        self._opened_at = 0.0
        self._consecutive_failures = 0
        self._window: deque[bool] = deque(maxlen=self._config.window_size or 1)
        self._window_failures = 0
        self._trials_in_flight = 0
        self._trial_successes = 0
        self._generation = 0  # bumped by every transition; permits carry it
        self._permits: ContextVar[tuple[int, ...]] = ContextVar(f"breaker_{name}", default=())

    # -- configuration ----------------------------------------------------------------------

    @property
    def config(self) -> CircuitBreakerConfig:
        return self._config

    def configure(self, config: CircuitBreakerConfig | None = None, **changes: Any) -> None:
        """Change the configuration in place; the state is kept, the counters start over."""
        new = replace(config or self._config, **changes)
        with self._lock:
            self._config = new
            self._generation += 1  # calls in flight were let in under the old rules
            self._clear_counters()
            self._window = deque(maxlen=new.window_size or 1)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(transition)` after every state change."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    # -- the state machine ------------------------------------------------------------------

    @property
    def state(self) -> CircuitBreakerState:
        """The current state; an open breaker whose timeout has passed reads HALF_OPEN."""
        with self._lock:
            event = self._half_open_if_due()
        self._publish(event)
        return self._state

    @property
    def generation(self) -> int:
        """The state generation: bumped by every transition and reconfiguration (the permit)."""
        return self._generation

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row counted while CLOSED."""
        return self._consecutive_failures

    @property
    def at_rest(self) -> bool:
        """Whether the breaker holds no call back and waits for none: CLOSED, or HALF_OPEN
        with no trial call out (an OPEN one whose timeout has passed reads HALF_OPEN)."""
        state = self.state
        return state is CircuitBreakerState.CLOSED or (
            state is CircuitBreakerState.HALF_OPEN and not self._trials_in_flight
        )

    @property
    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 unless OPEN)."""
        if self.state is not CircuitBreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._config.timeout_seconds - self._clock.now())

    def acquire(self) -> int | None:
        """Ask to make one call: a permit to hand back with the outcome, or None if refused.

        The permit names the breaker's state generation it was given in. An outcome reported
        with a permit from an earlier generation (a call that began before the breaker opened
        and ended after it half-opened) is ignored: it was not one of the trial calls.
        """
        with self._lock:
            event = self._half_open_if_due()
            permit: int | None = self._generation
            if self._state is CircuitBreakerState.HALF_OPEN:
                if self._trials_in_flight < self._config.half_open_max_calls:
                    self._trials_in_flight += 1
                else:
                    permit = None
            elif self._state is CircuitBreakerState.OPEN:
                permit = None
        self._publish(event)
        return permit

    def allow_request(self) -> bool:
        """Ask to make one call. True means go ahead, then report `success()` or `failure()`."""
        return self.acquire() is not None

    def success(self, *, permit: int | None = None) -> None:
        """The call that was allowed succeeded."""
        with self._lock:
            event = None
            state = self._settle(permit)
            if state is CircuitBreakerState.HALF_OPEN:
                self._trial_successes += 1
                if self._trial_successes >= self._config.success_threshold:
                    event = self._transition(CircuitBreakerState.CLOSED, "trial calls succeeded")
            elif state is CircuitBreakerState.CLOSED:
                self._consecutive_failures = 0
                self._record_in_window(failed=False)
        self._publish(event)

    def failure(self, exc: BaseException | None = None, *, permit: int | None = None) -> None:
        """The call that was allowed failed (`exc` is kept only for the transition's reason)."""
        reason = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        with self._lock:
            event = None
            state = self._settle(permit)
            if state is CircuitBreakerState.HALF_OPEN:
                event = self._transition(CircuitBreakerState.OPEN, "trial call failed" + reason)
            elif state is CircuitBreakerState.CLOSED:
                self._consecutive_failures += 1
                self._record_in_window(failed=True)
                if self._consecutive_failures >= self._config.failure_threshold:
                    event = self._transition(
                        CircuitBreakerState.OPEN,
                        f"{self._consecutive_failures} consecutive failures{reason}",
                    )
                elif self._rate_exceeded():
                    event = self._transition(
                        CircuitBreakerState.OPEN,
                        f"{self._window_failures}/{len(self._window)} calls failed{reason}",
                    )
        self._publish(event)

    def release(self, *, permit: int | None = None) -> None:
        """The allowed call was abandoned (cancelled) and counts neither way."""
        with self._lock:
            self._settle(permit)

    def _settle(self, permit: int | None) -> CircuitBreakerState | None:
        """An allowed call ended: the state its outcome counts in, its trial place given
        back; None if `permit` is from an earlier generation (the outcome counts nowhere)."""
        if permit is not None and permit != self._generation:
            return None
        if self._state is CircuitBreakerState.HALF_OPEN:
            self._trials_in_flight = max(0, self._trials_in_flight - 1)
        return self._state

    def reset(self) -> None:
        """Back to CLOSED with clean counters, whatever the state."""
        with self._lock:
            event = None
            if self._state is not CircuitBreakerState.CLOSED:
                event = self._transition(CircuitBreakerState.CLOSED, "reset")
            self._clear_counters()
        self._publish(event)

    def _transition(self, to: CircuitBreakerState, reason: str) -> BreakerTransition:
        """The one place a state changes: validate, swap, and return the event to publish."""
        from_state = self._state
        if to not in _ALLOWED_TRANSITIONS[from_state]:
            raise RuntimeError(
                f"breaker {self.name!r}: {from_state.name} -> {to.name} is not allowed"
            )
        self._state = to
        self._generation += 1  # permits given before this are stale from now on
        self._clear_counters()
        if to is CircuitBreakerState.OPEN:
            self._opened_at = self._clock.now()
        return BreakerTransition(self.name, from_state, to, reason, self._clock.wall())

    def _publish(self, event: BreakerTransition | None) -> None:
        if event is not None:
            notify(self._listeners, event)

    def _half_open_if_due(self) -> BreakerTransition | None:
        if (
            self._state is CircuitBreakerState.OPEN
            and self._clock.now() >= self._opened_at + self._config.timeout_seconds
        ):
            return self._transition(CircuitBreakerState.HALF_OPEN, "timeout elapsed")
        return None

    def _clear_counters(self) -> None:
        self._consecutive_failures = 0
        self._window.clear()
        self._window_failures = 0
        self._trials_in_flight = 0
        self._trial_successes = 0

    def _record_in_window(self, *, failed: bool) -> None:
        if self._config.window_size is None:
            return
        if len(self._window) == self._window.maxlen and self._window[0]:
            self._window_failures -= 1
        self._window.append(failed)
        self._window_failures += failed

    def _rate_exceeded(self) -> bool:
        threshold = self._config.failure_rate_threshold
        if threshold is None or len(self._window) < (self._config.window_size or 0):
            return False
        # Divide rather than multiply: 7/25 == 0.28 exactly, but 0.28 * 25 == 7.000000000000001.
        return self._window_failures / len(self._window) >= threshold

    # -- ways to guard a call ---------------------------------------------------------------

    def refused(self) -> CircuitBreakerError:
        """The error for a call this breaker did not allow, saying why."""
        half_open = self.state is CircuitBreakerState.HALF_OPEN
        return CircuitBreakerError(self.name, self.retry_after, half_open=half_open)

    async def __aenter__(self) -> CircuitBreaker:
        permit = self.acquire()
        if permit is None:
            raise self.refused()
        # The permit travels with the calling task (nested blocks stack), not on self.
        self._permits.set((*self._permits.get(), permit))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        *outer, permit = self._permits.get()
        self._permits.set(tuple(outer))
        if exc is None:
            self.success(permit=permit)
        elif isinstance(exc, Exception):
            self.failure(exc, permit=permit)
        else:  # cancelled or interrupted: says nothing about the downstream
            self.release(permit=permit)

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate a coroutine function so that every call goes through this breaker."""
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"@{self.name} guards coroutine functions; {func!r} is not one")

        @functools.wraps(func)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            async with self:
                return await func(*args, **kwargs)

        return guarded

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self.name!r} {self._state.name} "
            f"failures:{self._consecutive_failures}/{self._config.failure_threshold}>"
        )
