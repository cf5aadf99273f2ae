"""clients/README.md read as the tests need it: its sections and their fenced blocks."""

from __future__ import annotations

import re

from tests.clients.programs import REPO

__all__ = ["README", "blocks", "section"]

README = (REPO / "clients" / "README.md").read_text()


def section(heading: str, text: str = README) -> str:
    """The lines under `heading` (`## Title`), up to the next heading of its level or above;
    a `#` line inside a fenced block is a comment, not a heading."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines(keepends=True)
    start = lines.index(f"{heading}\n") + 1
    fenced = False
    for end in range(start, len(lines)):
        line = lines[end]
        fenced ^= line.startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", line):
            return "".join(lines[start:end])
    return "".join(lines[start:])


def blocks(language: str, text: str = README) -> list[str]:
    """The fenced blocks of `language` (```sh), in order, each as its lines end to end."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)
