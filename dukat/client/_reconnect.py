"""How the client rides out a daemon that is briefly gone (restarting, draining, a new socket)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

__all__ = ["Backoff", "Reconnect"]


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Retries of calls that failed with UNAVAILABLE: only calls safe to repeat are retried
    (Submit with its request id, reads, Cancel, a Watch resumed from its last sequence)."""

    initial_backoff: float = 0.05
    """Seconds before the first retry."""
    max_backoff: float = 2.0
    """The longest wait between two tries."""
    multiplier: float = 2.0
    """How much each wait grows over the previous one."""
    give_up_after: float | None = 30.0
    """Seconds without reaching the daemon after which the call raises
    DaemonUnavailableError; None: never give up; 0: do not retry at all."""

    def __post_init__(self) -> None:
        if not (0 <= self.initial_backoff <= self.max_backoff):
            raise ValueError(
                f"need 0 <= initial_backoff <= max_backoff, not {self.initial_backoff!r} "
                f"and {self.max_backoff!r}"
            )
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, not {self.multiplier!r}")
        if self.give_up_after is not None and self.give_up_after < 0:
            raise ValueError(f"give_up_after must be 0 or more, not {self.give_up_after!r}")


class Backoff:
    """One run of retries under a `Reconnect`: `await backoff.wait()` or give up (False)."""

    def __init__(self, policy: Reconnect) -> None:
        self.policy = policy
        self._started: float | None = None
        self._next = policy.initial_backoff

    @property
    def retrying(self) -> bool:
        """True from the first wait until a reset: an outage is being ridden out."""
        return self._started is not None

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
        limit = self.policy.give_up_after
        if limit is not None and now - self._started >= limit:
            return False
        # Full jitter: many clients of one restarted daemon do not come back in step.
        delay = self._next * (0.5 + random.random() / 2)
        if limit is not None:
            delay = min(delay, max(0.0, self._started + limit - now))
        self._next = min(self.policy.max_backoff, self._next * self.policy.multiplier)
        await asyncio.sleep(delay)
        return True
