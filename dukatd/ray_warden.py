"""The warden of one Ray worker process's exec tasks: `python -m dukatd.ray_warden`.

Started by `dukatd.ray_remote` in the worker, with a pipe as its stdin. It forks at once and
its first process exits, so it is nobody's child: a Ray that kills the worker's children
when the worker ends does not kill it with them. It then reads lines, `+PGID` when a task's
process group starts and `-PGID` when it is gone; when the pipe ends (the worker exited or
was killed, however) it SIGKILLs every group still listed, and exits. A task's processes
end with the attempt that started them, even when the Ray worker dies under it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def main() -> None:
    if os.fork() > 0:
        os._exit(0)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        with contextlib.suppress(ValueError):
            pgid = int(line[1:])
            if line.startswith(b"+"):
                groups.add(pgid)
            elif line.startswith(b"-"):
                groups.discard(pgid)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
