"""bench/journal.py, smoke-run tiny (`--quick`), so that the script does not rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_journal_benchmark_runs() -> None:
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "bench/journal.py", "--quick"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr
    for line in ("journal vs ephemeral", "journal/full vs ephemeral", "no-ledger vs ephemeral"):
        assert line in completed.stdout
    assert "peak RSS" in completed.stdout
