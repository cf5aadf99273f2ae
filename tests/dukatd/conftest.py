"""Fixtures of the daemon's tests: real dukatd processes (tests/dukatd/daemon_process.py)."""

from tests.dukatd.daemon_process import daemons, short_tmp

__all__ = ["daemons", "short_tmp"]
