"""How the client rides out a daemon that is briefly gone (restarting, draining, a new socket)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff", "Reconnect"]


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Retries of calls that failed with UNAVAILABLE: only calls safe to repeat are retried
    (Submit with its request id, reads, Cancel, a Watch resumed from its last sequence).

    Two budgets: a client that has never reached its daemon gives up after `connect_within`
    (a wrong address or a daemon not started is said within seconds, not after the long
    wait), one that has reached it rides out an outage (a restart, an upgrade) for
    `give_up_after`.
    """

    initial_backoff: float = 0.05
    """Seconds before the first retry."""
    max_backoff: float = 2.0
    """The longest wait between two tries."""
    multiplier: float = 2.0
    """How much each wait grows over the previous one."""
    give_up_after: float | None = 30.0
    """Seconds without reaching the daemon after which the call raises
    DaemonUnavailableError; None: never give up; 0: do not retry at all."""
    connect_within: float | None = 5.0
    """The same, for a client that has not reached the daemon yet (never more than
    `give_up_after`); None: `give_up_after` from the first call on."""

    def __post_init__(self) -> None:
        if not (0 <= self.initial_backoff <= self.max_backoff):
            raise ValueError(
                f"need 0 <= initial_backoff <= max_backoff, not {self.initial_backoff!r} "
                f"and {self.max_backoff!r}"
            )
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, not {self.multiplier!r}")
        for name in ("give_up_after", "connect_within"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be 0 or more, not {value!r}")

    def limit(self, reached: bool) -> float | None:
        """Seconds of retries before giving up, for a client that has (not) reached the
        daemon yet; None: no limit."""
        first, limit = self.connect_within, self.give_up_after
        if reached or first is None:
            return limit
        return first if limit is None else min(first, limit)


class Backoff:
    """One run of retries under a `Reconnect`: `await backoff.wait()` or give up (False).

    `reached()`: whether the client has reached its daemon yet, for the policy's first
    budget (`Reconnect.connect_within`); without it, only `give_up_after` counts (a worker
    keeps trying a daemon that is not there yet as long as one that went away).
    """

    def __init__(self, policy: Reconnect, reached: Callable[[], bool] | None = None) -> None:
        self.policy = policy
        self._reached = reached
        self._started: float | None = None
        self._next = policy.initial_backoff

    @property
    def retrying(self) -> bool:
        """True from the first wait until a reset: an outage is being ridden out."""
        return self._started is not None

    @property
    def waited(self) -> float:
        """Seconds since the first wait of this run (0 when not retrying)."""
        if self._started is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._started

    def reset(self) -> None:
        """The daemon answered: the next outage starts its own count."""
        self._started = None
        self._next = self.policy.initial_backoff

    async def wait(self) -> bool:
        """Sleep before the next try; False when the policy says to give up instead."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._started is None:
            self._started = now
        limit = self.policy.limit(self._reached is None or self._reached())
        if limit is not None and now - self._started >= limit:
            return False
        # Full jitter: many clients of one restarted daemon do not come back in step.
        delay = self._next * (0.5 + random.random() / 2)
        if limit is not None:
            delay = min(delay, max(0.0, self._started + limit - now))
        self._next = min(self.policy.max_backoff, self._next * self.policy.multiplier)
        await asyncio.sleep(delay)
        return True
