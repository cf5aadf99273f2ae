"""The journal: what dukatd has accepted and done, in SQLite, so a restart loses nothing.

One database file, `journal.sqlite3` in the state directory, in WAL mode, written by one
thread of its own. The event loop never waits on the disk: the scheduler's listener queues
each event (a deque append, no lock), and the writer thread commits what has gathered as one
transaction — a group commit, so a burst of ten thousand events is a handful of commits.
Callers that must not go on before something is on disk await `sync()` (or `settled()`),
which returns once everything queued before it is committed; one waiting makes the writer
commit at once, and what queues up meanwhile goes in the next commit. While nobody waits,
only watchers do (they see events once committed), and a group gathers for up to
`commit_delay`: a steady trickle of events makes a commit per many tasks rather than one per
task, each a WAL append (and an fsync).

The parts, one job each:

    schema      the file: opened, checked, set up, upgraded in place (`MIGRATIONS`)
    codec       the encoding of events and task changes (below), the one place that maps
                the engine's records to it and back
    legacy      what older dukatds wrote, read by the migrations
    operations  what the loop queues for the writer: one small record per kind
    writer      the writer thread: group commit, a transaction per group (a short method
                per kind of operation), the quota of new jobs, trimming, vacuum
    loader      reading every job back at start, for `Scheduler.restore`
    journal     `Journal`: the loop's side (queue, `sync`, publishing what is committed)

The engine holds every job's events back from watchers until the writer has committed them
(`Scheduler(hold_events=True)`, published as each commit lands): no client can have seen a
state that a crash takes back, so sequence numbers after a restart continue without a gap.

Durability: `sync="normal"` (the default) writes each commit to the WAL without an fsync: it
survives a crash or `kill -9` of the daemon (the kernel holds it), and the last commits may be
lost on power loss; `"full"` fsyncs the WAL at each commit, which survives power loss too, at
a disk flush per commit — and every task start waits for one (see `settled`).

A commit that fails (a full disk, `max_bytes` reached, an I/O error, no memory left) is
retried with backoff; the jobs in it were never started, so their Submits fail instead
(`JournalWriteError`), and nothing else is lost while the writer keeps trying. With
`max_bytes`, new jobs may fill only `ACCEPT_SHARE` of it: a job that would go beyond is left
out of its commit (its Submit fails, `check_accepted`) and the rest is kept for the events of
the jobs accepted before, which must still be written for them to finish — a journal filled
up to its limit by Submits would refuse those too, and they could never end.

Finished jobs leave the journal when the scheduler drops them (its retention); freed pages go
back to the file system a chunk at a time (incremental vacuum), and the WAL is truncated at
each checkpoint beyond `journal_size_limit`, so the file stays bounded under a steady load.

The on-disk format (schema 4)
-----------------------------

Tables:

- `jobs`: every accepted job: row id, job id, request id, creation time, and its state (a
  `JobState` name: "pending", "running", "succeeded", "failed", "cancelled"), message and
  end when they change (its last event sequence is its newest event chunk's);
- `job_specs`: its spec, the `dukat.v1.JobSpec` message as submitted (apart: SQLite
  rewrites a whole row, blob included, at each update);
- `task_changes`: per job and commit, one row (a blob, below) listing the changes of its
  tasks in that commit; recovery folds them in order, the last change of a task winning. A
  rerun's tasks carried over from the job it reruns are written with its acceptance, in the
  same transaction: a rerun never comes back without them;
- `event_chunks`: per job and commit, one row (a blob) of its events, with the first and
  last sequence, for watchers that resume after a restart; the chunks older than twice
  `event_log_length` events are deleted as the job goes on;
- `cancels`: cancel requests, replayed on recovery (a task being stopped when the daemon
  died must not run again): JSON, a list of task ids (none: the whole job), or with a
  reason `{"task_ids": [...], "reason": "..."}`;
- `breakers`: breaker settings configured over the API: name, and JSON of the engine's
  `CircuitBreakerConfig` fields.

A blob is one format byte (1), then a pickle (protocol 5) of a list of tuples of plain
values only — str, bytes, int, float, None, tuples — read back by an unpickler that
refuses any class (`codec`). States are named as the rows' are ("running", "retrying", ...:
the values of `TaskState` and `JobState`). The records of `event_chunks`, by kind (the
field numbers of the `kind` oneof of `dukat.v1.Event`):

    kind  event (dukat.v1)   record
    5     job_state          (5, sequence, time, job state, message)
    6     task_state         (6, sequence, time, task id, task state, attempt, message)
    7     progress           (7, sequence, time, task id, fraction or None, message)
    8     output             (8, sequence, time, task id, stream, text)
    10    task_waiting       (10, sequence, time, task id, waiting for, queue)

The changes of `task_changes`, by shape:

    (task id, "running", attempt, started at)                      an attempt started
    (task id, "retrying", attempt, interruptions)                  between two attempts
    (task id, state, attempt, None, finished at, message, result)  ended: succeeded,
                                                                   cancelled or skipped
    (task id, "failed", attempt, None, finished at, message, failure, interruptions)
    (task id, "succeeded", attempts, started at, finished at, message, result,
     interruptions, carried from job id)                           carried over by a rerun

A result or failure is what the daemon's `encode_result` made of it (`dukatd.recovery`):
("dispatch", payload, content type), ("exec", exit code, stdout, stderr), or ("failure",
type, message, exit code, signal, stdout, stderr); None when there is none.

Versions: `PRAGMA user_version` is the schema's, upgraded in place by `schema.MIGRATIONS`,
every step due in one transaction (a crash during an upgrade leaves the file as it was).
Schema 1 had a row per task and per event; 3 (dukatd 0.1.0) packed them per commit as
pickles of the engine's own objects, named by their Python class paths; 4 rewrites those as
plain values (`legacy` reads them by the names they had, from a fixed table). A later
encoding takes the next format byte, and the code reading this one stays; a file of a newer
schema than this dukatd knows is refused, with what to do.
"""

from __future__ import annotations

from dukat.errors import JournalError, JournalWriteError
from dukatd.journal.journal import ACCEPT_SHARE, Journal
from dukatd.journal.loader import RecoveredJob
from dukatd.journal.schema import SCHEMA_VERSION
from dukatd.journal.writer import CommitTimes

__all__ = [
    "ACCEPT_SHARE",
    "JOURNAL_FILE",
    "SCHEMA_VERSION",
    "CommitTimes",
    "Journal",
    "JournalError",
    "JournalWriteError",
    "RecoveredJob",
]

JOURNAL_FILE = "journal.sqlite3"
