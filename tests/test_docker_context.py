"""The image is built from what the Dockerfile copies, and nothing else: that much must be a
package pip can build (pyproject's readme and licence file included). No Docker engine runs
here, so the same `pip` step runs on a copy of the build context the Dockerfile makes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def copied() -> list[str]:
    """What the Dockerfile's COPY lines take from the context."""
    sources: list[str] = []
    for line in re.findall(r"^COPY (.+)$", DOCKERFILE, re.M):
        sources.extend(line.split()[:-1])  # the last word is the destination
    return sources


def test_the_dockerfile_copies_what_the_package_is_built_from(tmp_path: Path) -> None:
    context = tmp_path / "src"
    context.mkdir()
    for source in copied():
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, context / source)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("dukat-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    # The licence pyproject names travels with the package (setuptools only warns without it).
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    assert "dukatd/__main__.py" in names


def test_the_build_context_leaves_out_what_the_image_does_not_need() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for heavy in (".git", ".venv", ".venv-peers", ".tools", "clients", "tests", "bench"):
        assert heavy in ignored, heavy
