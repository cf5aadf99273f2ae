"""dukatd welcoming workers with other heartbeat terms than its fixed 10 s and 30 s.

    python dukatd_heartbeat.py INTERVAL TIMEOUT [dukatd flags...]

For the TypeScript client's tests of heartbeats and of a silent daemon, which would take half
a minute each on the real terms. Everything else is dukatd's own `main`.
"""

import functools
import sys

from dukatd.__main__ import main  # first: it sets up the environment grpc reads on import

import dukatd.app  # noqa: E402
from dukatd.work_hub import WorkerHub  # noqa: E402

interval, timeout, *flags = sys.argv[1:]
dukatd.app.WorkerHub = functools.partial(  # type: ignore[misc]
    WorkerHub, heartbeat_interval=float(interval), heartbeat_timeout=float(timeout)
)
sys.exit(main(flags))
