"""dukatd welcoming workers with other heartbeat terms than its fixed 10 s and 30 s.

    python dukatd_heartbeat.py INTERVAL TIMEOUT [dukatd flags...]

For the TypeScript client's tests of heartbeats and of a silent daemon, which would take half
a minute each on the real terms. Everything else is dukatd's own `main`.
"""

import functools
import os
import sys

# As dukatd.__main__ does, before anything imports grpc (dukatd.app does).
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

import dukatd.app
from dukatd.__main__ import main
from dukatd.work_hub import WorkerHub

interval, timeout, *flags = sys.argv[1:]
dukatd.app.WorkerHub = functools.partial(  # type: ignore[misc]
    WorkerHub, heartbeat_interval=float(interval), heartbeat_timeout=float(timeout)
)
sys.exit(main(flags))
