"""clients/README.md's program, the same in Python, Go and TypeScript: each block is its file,
and each file runs against a real dukatd to the output the README shows."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clients.programs import GO_CLIENT, REPO, TS_CLIENT, run
from tests.clients.readme import README, blocks, section
from tests.dukatd.daemon_process import DaemonProcess

PROGRAMS = {
    "python": REPO / "examples" / "dag.py",
    "go": GO_CLIENT / "examples" / "dag" / "main.go",
    "ts": TS_CLIENT / "examples" / "dag.ts",
}
SHOWN = section("## The same program in each", README)


@pytest.mark.parametrize("language", PROGRAMS)
def test_the_readme_shows_the_program_as_its_file_holds_it(language: str) -> None:
    assert blocks(language, SHOWN) == [PROGRAMS[language].read_text()]


@pytest.mark.parametrize("language", PROGRAMS)
async def test_the_program_prints_what_the_readme_shows(
    language: str,
    daemon: DaemonProcess,
    go_program: Callable[[str], Path],
    typescript: Path,
) -> None:
    argv = {
        "python": lambda: [sys.executable, "-W", "error", PROGRAMS["python"]],
        "go": lambda: [go_program("./examples/dag")],
        "ts": lambda: ["node", typescript / "examples" / "dag.js"],
    }[language]()

    printed = await run(argv, env={"DUKAT_ADDRESS": daemon.address})

    assert [printed] == blocks("text", SHOWN)
