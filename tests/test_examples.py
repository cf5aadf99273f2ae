"""The examples run as written and show what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_async_processing_tour_runs_and_shows_each_feature() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / "async_processing.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "join           succeeded" in out  # dependencies and resources
    assert "flaky          succeeded  attempts=3" in out  # retries
    assert "CLOSED -> OPEN" in out and "HALF_OPEN -> CLOSED" in out  # the breaker recovers
    assert "load           skipped" in out and "cleanup        succeeded" in out
    assert "slow: got CancelledError" in out and "after_slow     cancelled" in out
    assert "% crunching" in out  # progress
