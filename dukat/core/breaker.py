"""Circuit breakers: one (`CircuitBreaker`, in `dukat.core._circuit`, which says how it works)
and the registry of a scheduler's or a daemon's named ones (`BreakerRegistry`).

Public through this module (and `dukat.core.circuit_breaker`, the documented face).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Iterator

from dukat.core._circuit import (
    BreakerTransition,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerState,
    Listener,
    notify,
)
from dukat.core.clock import Clock, SystemClock
from dukat.errors import LimitExceededError, ValidationError

__all__ = [
    "BreakerRegistry",
    "BreakerTransition",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerState",
]


class BreakerRegistry:
    """The named breakers of one scheduler (or one daemon): created on first use.

    With `max_breakers`, it holds at most that many. A new name past it makes room by letting
    go of the least recently used breaker that nobody needs: one made on first use (not
    configured nor registered), that no job's task names (`claim` until `release`), and that
    is at rest (`CircuitBreaker.at_rest`: not open, no trial call out). What such a breaker
    forgets is its counts; a new one of its name starts CLOSED with the defaults. With no
    room to make, `LimitExceededError`, and nothing changes. So breakers made by hostile or
    finished jobs, or by clients that went away, can never keep new ones out for good.
    """

    def __init__(
        self,
        defaults: CircuitBreakerConfig | None = None,
        *,
        clock: Clock | None = None,
        max_breakers: int | None = None,
    ) -> None:
        self.defaults = defaults or CircuitBreakerConfig()
        self.max_breakers = max_breakers
        self._clock: Clock = clock or SystemClock()
        self._breakers: dict[str, CircuitBreaker] = {}  # least recently used first
        self._kept: set[str] = set()  # configured or registered: never let go
        self._claims: dict[str, int] = {}  # name -> claims not released yet
        self._listeners: list[Listener] = []
        self._drop_listeners: list[Callable[[str], None]] = []

    def get(self, name: str) -> CircuitBreaker:
        """The breaker called `name`, created with the defaults if it does not exist yet."""
        if name not in self._breakers:
            self._make_room(1, repr(name))
        return self._take(name)

    def claim(
        self, names: Collection[str], *, within_limit: bool = True
    ) -> dict[str, CircuitBreaker]:
        """The breakers called `names`, for a job's tasks: made if need be, all of them or
        (`LimitExceededError`) none, and never let go until as many `release`s.

        `within_limit=False` takes them even past `max_breakers` (a job restored after a
        restart was accepted once and must come back; the registry shrinks to the limit
        again as breakers come free)."""
        new = [name for name in names if name not in self._breakers]
        if within_limit:
            # The job's other breakers exist and it is about to take them: never the room.
            self._make_room(len(new), f"the job's {len(new)} new ones", spare=names)
        claims = self._claims
        found = {}
        for name in names:
            found[name] = self._take(name)
            claims[name] = claims.get(name, 0) + 1
        return found

    def release(self, names: Iterable[str]) -> None:
        """A job that claimed `names` no longer needs them."""
        claims = self._claims
        for name in names:
            left = claims.get(name, 0) - 1
            if left > 0:
                claims[name] = left
            else:
                claims.pop(name, None)

    def register(self, breaker: CircuitBreaker) -> CircuitBreaker:
        """Add a breaker made elsewhere; a different breaker of the same name is an error."""
        existing = self._breakers.get(breaker.name)
        if existing is breaker:
            return breaker
        if existing is not None:
            raise ValidationError(f"another circuit breaker is already named {breaker.name!r}")
        self._make_room(1, repr(breaker.name))
        self._kept.add(breaker.name)
        return self._add(breaker)

    def configure(
        self, name: str, config: CircuitBreakerConfig, *, within_limit: bool = True
    ) -> CircuitBreaker:
        """Configure the breaker `name` (made if need be), which is then kept for good.
        `within_limit=False`: even past `max_breakers` (the host's own configuration)."""
        breaker = self.get(name) if within_limit else self._take(name)
        breaker.configure(config)
        self._kept.add(name)
        return breaker

    def find(self, name: str) -> CircuitBreaker | None:
        return self._breakers.get(name)

    def add_listener(self, listener: Listener) -> None:
        """Hear every transition of every breaker in the registry."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def add_drop_listener(self, listener: Callable[[str], None]) -> None:
        """Call `listener(name)` when a breaker is let go to make room."""
        self._drop_listeners.append(listener)

    def remove_drop_listener(self, listener: Callable[[str], None]) -> None:
        self._drop_listeners.remove(listener)

    def _take(self, name: str) -> CircuitBreaker:
        """The breaker `name`, made (whatever the limit) if need be; the most recently used."""
        breaker = self._breakers.pop(name, None)
        if breaker is not None:
            self._breakers[name] = breaker
            return breaker
        return self._add(CircuitBreaker(name, config=self.defaults, clock=self._clock))

    def _add(self, breaker: CircuitBreaker) -> CircuitBreaker:
        self._breakers[breaker.name] = breaker
        breaker.add_listener(self._forward)
        return breaker

    def _make_room(self, count: int, wanted: str, spare: Collection[str] = ()) -> None:
        """Let go of idle breakers (but those named in `spare`) until `count` new ones fit,
        or of none if they cannot."""
        limit = self.max_breakers
        if limit is None or count <= 0:
            return
        excess = len(self._breakers) + count - limit
        if excess <= 0:
            return
        candidates = (b for b in self._breakers.values() if b.name not in spare and self._idle(b))
        idle = list(itertools.islice(candidates, excess))
        if len(idle) < excess:
            raise LimitExceededError(
                f"{len(self._breakers)} circuit breakers are held, and the limit is {limit}: "
                f"no room for {wanted}, since {len(self._breakers) - len(idle)} of them are "
                "configured, named by jobs that have not finished, open or in a trial call; "
                "reuse the names of breakers that exist"
            )
        for breaker in idle:
            del self._breakers[breaker.name]
            breaker.remove_listener(self._forward)
            for listener in list(self._drop_listeners):
                listener(breaker.name)

    def _idle(self, breaker: CircuitBreaker) -> bool:
        name = breaker.name
        return name not in self._kept and name not in self._claims and breaker.at_rest

    def _forward(self, event: BreakerTransition) -> None:
        notify(self._listeners, event)

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __repr__(self) -> str:
        return f"<BreakerRegistry {', '.join(self._breakers) or 'empty'}>"
