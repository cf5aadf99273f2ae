"""Every link of the README and the docs leads somewhere in this repository: a file that
exists, and a heading that exists in it (GitHub's anchors). Nothing links outside the
checkout, where a clone would find nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    {
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "clients").glob("*.md"),
        *(ROOT / "clients").glob("*/README.md"),
    }
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of `page`: lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return [target for target in LINK.findall(text) if not target.startswith(("http", "mailto:"))]


def test_there_are_pages_and_links() -> None:
    assert len(PAGES) >= 10 and sum(len(links(page)) for page in PAGES) >= 40


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_link_of_the_page_resolves(page: Path) -> None:
    for target in links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.is_relative_to(ROOT), f"{target}: outside the repository"
        assert linked.exists(), f"{target}: no such file"
        if anchor:
            assert linked.suffix == ".md", f"{target}: an anchor into a file that is not a page"
            assert anchor in anchors(linked), f"{target}: no such heading"
