"""What encoding a journal's events costs the writer thread, per event, same run.

    python bench/journal_codec.py [--events 30000]

The writer encodes every event of every job (three per task: READY, RUNNING, SUCCEEDED),
holding the GIL that the daemon's loop needs, so its cost per event is what a journal's
encoding is chosen by. Encoded here, a chunk of TaskStateChanged records per commit as the
writer packs them:

    pickled records   dukatd 0.1.0's blobs: the engine's records pickled as they are, event
                      classes and enum members named by their class paths
    plain tuples      today's (`dukatd.journal.codec.encode_events`): each record as plain
                      values, then pickled, with the format byte
    dukat.v1.Event    a contract message per event, serialized, the messages pickled

ns/event is the best of 5 repeats. The figures that count are `bench/journal.py`'s (the whole
daemon); this one says why the encoding is what it is.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dukat.core.events import TaskStateChanged
from dukat.core.states import TaskState
from dukat.v1 import event_pb2, job_pb2
from dukatd.journal import codec

_PROTO_STATES = {
    TaskState.READY: job_pb2.TASK_STATE_READY,
    TaskState.RUNNING: job_pb2.TASK_STATE_RUNNING,
    TaskState.SUCCEEDED: job_pb2.TASK_STATE_SUCCEEDED,
}


def records(count: int) -> list[tuple[object, ...]]:
    now = time.time()
    states = (TaskState.READY, TaskState.RUNNING, TaskState.SUCCEEDED)
    return [
        (TaskStateChanged, n + 1, now, f"t{n // 3}", states[n % 3], 1, "") for n in range(count)
    ]


def pickled(chunk: list[tuple[object, ...]]) -> bytes:
    return pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)


def plain(chunk: list[tuple[object, ...]]) -> bytes:
    return codec.encode_events(chunk)


def messages(chunk: list[tuple[object, ...]]) -> bytes:
    encoded = []
    for _, sequence, moment, task_id, state, attempt, message in chunk:
        event = event_pb2.Event(
            sequence=sequence,
            task_state=event_pb2.TaskStateChanged(
                task_id=task_id, state=_PROTO_STATES[state], attempt=attempt, message=message
            ),
        )
        event.time.FromNanoseconds(int(moment * 1e9))
        encoded.append(event.SerializeToString())
    return pickle.dumps(encoded, protocol=pickle.HIGHEST_PROTOCOL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    args = parser.parse_args()
    chunk = records(args.events)
    print(f"journal codec: {args.events:,} TaskStateChanged records, best of 5")
    for name, encode in (
        ("pickled records", pickled),
        ("plain tuples", plain),
        ("dukat.v1.Event", messages),
    ):
        seconds = min(timeit.repeat(lambda e=encode: e(chunk), number=1, repeat=5))
        size = len(encode(chunk))
        print(
            f"  {name:<16} {seconds / len(chunk) * 1e9:6.0f} ns/event"
            f"   {size / len(chunk):5.1f} bytes/event"
        )


if __name__ == "__main__":
    main()
