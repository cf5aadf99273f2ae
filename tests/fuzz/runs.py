"""How long and how the fuzzer runs: a short deterministic run in CI, or exploring for longer.

In `make test` (no `DUKAT_FUZZ_SECONDS`) each fuzz test draws a fixed number of examples with
`derandomize=True`, so a green CI run is green every time; examples drawn once `CI_SECONDS`
have passed do nothing, so that a daemon that hangs calls (each until its deadline) cannot
hold CI for long. With `DUKAT_FUZZ_SECONDS=N` (`make fuzz`) each test draws random batches
of examples for N seconds, different every run.

Examples are not shrunk: the daemon under test keeps its state from one example to the next,
so an example does not fail alone. The probe records every failure and the test reports
them together at the end, with the smallest request that showed each.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from hypothesis import HealthCheck, Phase, settings

__all__ = ["CI_SECONDS", "Budget", "exploring", "fuzz_settings", "repeat"]

CI_SECONDS = 20.0
"""Examples are played for this long at most per fuzz test in CI (a healthy daemon answers
all of them well within it)."""
_SECONDS = float(os.environ.get("DUKAT_FUZZ_SECONDS") or 0)
exploring = _SECONDS > 0
EXPLORING_BATCH = 100


class Budget:
    """Time left to a fuzz test; examples drawn once it is spent do nothing."""

    def __init__(self) -> None:
        self.ends = time.monotonic() + (_SECONDS if exploring else CI_SECONDS)

    def spent(self) -> bool:
        return time.monotonic() >= self.ends


def fuzz_settings(ci_examples: int) -> settings:
    return settings(
        max_examples=EXPLORING_BATCH if exploring else ci_examples,
        derandomize=not exploring,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def repeat(run: Callable[[], None], budget: Budget) -> None:
    """Run the @given test once (CI), or batch after batch until the budget is spent."""
    run()
    while exploring and not budget.spent():
        run()
