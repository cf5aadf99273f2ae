"""docs/configuration.md, docs/daemon.md and the Dockerfile agree with the daemon they
describe."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from dukatd.options import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
DAEMON = (ROOT / "docs" / "daemon.md").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_the_configuration_lists_every_flag_with_its_variable_and_default():
    rows = {
        match[1]: (match[2], match[3].strip())
        for match in re.finditer(
            r"^\| `(--[a-z-]+)[^`]*` \| `([A-Z_]+)` \|([^|]*)\|", CONFIGURATION, re.M
        )
    }
    for option in OPTIONS:
        if option.flag is None:
            continue
        assert option.flag in rows, f"{option.flag} is missing from docs/configuration.md"
        env, default = rows[option.flag]
        assert env == option.env
        assert option.help.endswith(f"Default: {default}"), (option.flag, default)


def test_the_docs_describe_the_token_and_the_ttl_as_enforced():
    for doc in (DAEMON, CONFIGURATION):
        assert "Not yet" not in doc  # both were refused or ignored once, and said so here
    assert "| UNAUTHENTICATED |" in DAEMON
    assert "authorization: Bearer <token>" in DAEMON
    assert "`--finished-job-ttl DURATION`" in CONFIGURATION
    assert "--finished-job-ttl" in DAEMON[DAEMON.index("## Finished jobs") :]


def test_the_example_configuration_file_reads_as_documented():
    from dukatd.config import parse_args

    example = ROOT / "examples" / "dukatd.toml"
    assert example.read_text().strip() in CONFIGURATION  # shown whole
    config = parse_args(["--config", str(example)], environ={})
    assert config.allow_exec and config.max_concurrency == 32
    assert config.resources["licence"] == 4
    assert set(config.breakers) == {"payments", "search"}


def test_the_dockerfile_runs_the_console_script_and_probes_with_dukatd_health():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dukatd"] == "dukatd.__main__:main"
    assert 'ENTRYPOINT ["dukatd"]' in DOCKERFILE
    assert "STOPSIGNAL SIGTERM" in DOCKERFILE
    assert '"-m", "dukatd.health"' in DOCKERFILE
    assert (ROOT / "dukatd" / "health.py").exists()
    # The image is built from the packages setuptools finds, and the readme pyproject names.
    for copied in ("COPY dukat ./dukat", "COPY dukatd ./dukatd", "README.md"):
        assert copied in DOCKERFILE
    assert "pip install '.[daemon,cli]'" in DOCKERFILE


def test_the_daemon_doc_gives_the_bounds_the_wire_checks():
    from dukat import convert
    from dukat.core.spec import DEFAULT_MAX_INTERRUPTIONS, MAX_INTERRUPTIONS
    from dukatd.job_pages import MAX_PAGE_TOKEN

    section = DAEMON[DAEMON.index("## What a request may carry") :]
    table = section[: section.index("\n\n", section.index("| what |"))]
    days = convert.MAX_DURATION // 86_400
    for number in (
        f"{days} days",
        f"{convert.MAX_NAME} characters",
        f"{convert.MAX_BREAKER_NAME} characters",
        f"{convert.MAX_TEXT:,} characters",
        f"{convert.MAX_LABELS} labels",
        f"values of {convert.MAX_LABEL_VALUE:,} characters",
        f"{convert.MAX_ARGV:,} items of {convert.MAX_ARG:,} characters",
        f"{convert.MAX_ENV:,} variables",
        f"{convert.MAX_PATH:,} characters",
        f"{convert.MAX_RESOURCES} requirements",
        f"1 to {convert.MAX_WINDOW:,}",
        f"1 to {convert.MAX_QUEUES:,} queues",
        f"at most {MAX_PAGE_TOKEN} characters",
        f"`max_interruptions` 0 to {MAX_INTERRUPTIONS} (unset: {DEFAULT_MAX_INTERRUPTIONS})",
    ):
        assert number in table, number
