from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import dukat
from dukat.client import Client
from tests.client.daemon import Daemon, running_daemon


@pytest.fixture
async def daemon() -> AsyncIterator[Daemon]:
    async with running_daemon() as d:
        yield d


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[Client]:
    async with dukat.connect(daemon.address) as c:
        yield c
