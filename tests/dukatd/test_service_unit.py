"""systemd/: `systemd-analyze verify` accepts the unit, which agrees with the
daemon's defaults (stop timeout above the drain, a watchdog, the directories it expects)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dukatd.config import Config

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "dukatd.service"
SYSUSERS = SYSTEMD / "dukatd.sysusers"


def service_section() -> dict[str, str]:
    # strict=False: systemd allows a key more than once; the last one wins, as here.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(UNIT)
    return dict(parser["Service"])


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, f"unexpected time span {value!r}"
    return int(match[1]) * (60 if match[2] == "min" else 1)


def test_the_unit_agrees_with_the_daemon():
    service = service_section()
    defaults = Config(listen=("unix:/run/dukatd/dukatd.sock",))
    assert service["Type"] == "notify"
    assert service["KillMode"] == "mixed"
    assert service["RuntimeDirectory"] == "dukatd"
    assert service["StateDirectory"] == "dukatd"
    # The drain must end before systemd escalates to SIGKILL, with room for the journal flush.
    drain = defaults.shutdown_grace + defaults.kill_grace
    assert seconds(service["TimeoutStopSec"]) >= 2 * drain
    assert seconds(service["WatchdogSec"]) > 0
    assert service["OOMPolicy"] == "continue"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd provides it)",
)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # verify checks that ExecStart's program exists: point it at this Python, which does.
    unit = tmp_path / "dukatd.service"
    text = UNIT.read_text()
    unit.write_text(
        text.replace("ExecStart=/usr/local/bin/dukatd", f"ExecStart={sys.executable} -m dukatd")
    )
    assert unit.read_text() != text
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys and bad values are only warnings (exit 0): any line about our unit fails.
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if "dukatd.service" in line
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert complaints == []


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None,
    reason="systemd-sysusers is not installed (apt-get install systemd provides it)",
)
def test_the_sysusers_snippet_makes_the_user_and_group_the_unit_runs_as(tmp_path):
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    service = service_section()
    users = {
        line.split(":")[0]: line for line in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    groups = [line.split(":")[0] for line in (tmp_path / "etc/group").read_text().splitlines()]
    assert service["User"] in users and service["Group"] in groups
    # Its home is the unit's state directory; it cannot log in.
    home, shell = users[service["User"]].split(":")[5:7]
    assert home == f"/var/lib/{service['StateDirectory']}"
    assert shell == "/usr/sbin/nologin"
