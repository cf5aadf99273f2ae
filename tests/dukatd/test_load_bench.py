"""bench/load.py, CI-sized: a few seconds of load on a real journaled dukatd must pass.

The script's own checks are the test (every watch ends, every accepted job is terminal or
was dropped after its end, no watch refused, RSS levels off, wait() survives a drop); a
failure prints its table.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CI_SIZE = ["--seconds", "10", "--processes", "2", "--clients", "60", "--workers", "2"]
CI_SIZE += ["--watch-deadline", "15"]


def test_a_short_load_leaves_nothing_behind() -> None:
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "bench/load.py", *CI_SIZE],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "dukatd RSS" in completed.stdout
