"""A Python worker (`dukat.client`) serving a queue until it is killed.

    python shout_worker.py ADDRESS QUEUE

For the TypeScript client's cross-language test: TypeScript submits, Python serves. Prints
`ready` once the daemon has welcomed it.
"""

import asyncio
import sys

import dukat
from dukat.client import DispatchTask


async def shout(task: DispatchTask) -> bytes:
    task.report_progress(0.5, "shouting in python")
    upstream = b" ".join(result.payload for result in task.upstream_results)
    return b" ".join(filter(None, (task.payload.upper(), upstream)))


async def main(address: str, queue: str) -> None:
    async with dukat.connect(address) as client, client.worker(queue, shout, 4) as worker:
        await worker.connected.wait()
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
