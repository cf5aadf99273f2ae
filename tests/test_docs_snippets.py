"""The Python snippets of the README and docs/ run as written (each is a whole program),
embedded: those that can also run through a daemon are run so by
tests/dukatd/test_docs_client.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPETS = [
    snippet
    for doc in DOCS
    for snippet in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.DOTALL)
]
EMBEDDED_ENV = {k: v for k, v in os.environ.items() if k != "DUKAT_ADDRESS"}


def test_the_docs_have_python_snippets() -> None:
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_snippet_runs(snippet: str) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", snippet],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=EMBEDDED_ENV,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "a snippet should show its result"
