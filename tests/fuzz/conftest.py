"""The fuzzed daemon: a real dukatd, journaled, exec allowed, keeping few finished jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.dukatd.daemon_process import DaemonProcess, daemons, short_tmp
from tests.fuzz.dukat_strategies import CUSTOM_RESOURCE

__all__ = ["MAX_MESSAGE_BYTES", "daemons", "fuzzed_daemon", "short_tmp"]

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Smaller than the default: requests over it cost less to make, and replies near it come
sooner (a daemon must never make one it cannot send)."""


@pytest.fixture
def fuzzed_daemon(daemons: Callable[..., DaemonProcess], short_tmp: Path) -> DaemonProcess:
    daemon = daemons(
        "--allow-exec",
        "--retain-finished-jobs",
        "20",
        "--max-message-bytes",
        str(MAX_MESSAGE_BYTES),
        "--resource",
        f"{CUSTOM_RESOURCE}=2",
        state_dir=short_tmp / "state",
    )
    return asyncio.run(daemon.serving())
