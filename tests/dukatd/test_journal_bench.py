"""bench/journal.py and bench/journal_codec.py, smoke-run tiny, so that they do not rot."""

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


def test_the_journal_codec_benchmark_runs() -> None:
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "bench/journal_codec.py", "--events", "300"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    for line in ("pickled records", "plain tuples", "dukat.v1.Event"):
        assert line in completed.stdout
