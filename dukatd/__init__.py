"""dukatd: the dukat sidecar daemon.

`dukatd.run(config)` and `await dukatd.serve(config)` run it as a library (`dukatd.app`);
`python -m dukatd` is the command line. They are loaded on first use, not here: importing
`dukatd` must not import grpc, so that `python -m dukatd` can set GRPC_ENABLE_FORK_SUPPORT
before grpc reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dukatd.app import run, serve

__all__ = ["run", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from dukatd import app

        return getattr(app, name)
    raise AttributeError(f"module 'dukatd' has no attribute {name!r}")
