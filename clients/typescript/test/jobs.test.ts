// Jobs through a real dukatd: submit, watch, wait, cancel, get, list; and the daemon's
// refusals read through the client's own errors.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  connect,
  dispatch,
  type Event,
  exec,
  FailedPreconditionError,
  InvalidArgumentError,
  job,
  type JobSnapshot,
  NotFoundError,
  PermissionDeniedError,
  type TaskStateChanged,
} from "../src/index.js";
import { Dukatd, sharedDaemon, text } from "./dukatd.js";

const { daemon, client } = await sharedDaemon({ args: ["--allow-exec", "--resource", "seats=2"] });

async function collect(events: AsyncIterable<Event>): Promise<Event[]> {
  const seen: Event[] = [];
  for await (const event of events) seen.push(event);
  return seen;
}

function taskChanges(events: readonly Event[]): TaskStateChanged[] {
  return events.filter((e): e is TaskStateChanged => e.type === "TaskStateChanged");
}

test("a diamond DAG of exec tasks is watched from its first event to its terminal one", async () => {
  const handle = await client.submit(
    job(
      [
        exec("top", ["sh", "-c", "echo top"]),
        exec("left", ["sh", "-c", "echo left"], { dependencies: ["top"], resources: { cpu: 0.5 } }),
        exec("right", ["sh", "-c", "echo right >&2"], {
          dependencies: ["top"],
          resources: { seats: 1 },
        }),
        exec("bottom", ["sh", "-c", "echo $WHO", "sh"], {
          dependencies: ["left", "right"],
          env: { WHO: "bottom" },
          retry: { maxAttempts: 2, initialBackoff: 10 },
          timeout: 10_000,
        }),
      ],
      { labels: { test: "diamond" } },
    ),
  );

  const events = await collect(handle.watch());

  assert.deepEqual(
    events.map((e) => e.sequence),
    events.map((_, i) => i + 1),
  );
  const last = events.at(-1);
  assert.equal(last?.type, "JobStateChanged");
  assert.equal(last.state, "SUCCEEDED");
  const ended = (id: string): number =>
    taskChanges(events).findIndex((e) => e.taskId === id && e.state === "SUCCEEDED");
  const started = (id: string): number =>
    taskChanges(events).findIndex((e) => e.taskId === id && e.state === "RUNNING");
  assert.ok(ended("top") < started("left") && ended("top") < started("right"));
  assert.ok(ended("left") < started("bottom") && ended("right") < started("bottom"));
  const output = events.flatMap((e) =>
    e.type === "TaskOutput" ? [`${e.taskId} ${e.stream} ${e.text.trim()}`] : [],
  );
  assert.deepEqual(output.sort(), [
    "bottom stdout bottom",
    "left stdout left",
    "right stderr right",
    "top stdout top",
  ]);

  const done = await handle.wait();
  assert.equal(done.state, "SUCCEEDED");
  assert.equal(done.lastSequence, events.length);
  assert.deepEqual(done.labels, { test: "diamond" });
  assert.deepEqual(
    done.tasks.map((t) => t.id),
    ["top", "left", "right", "bottom"],
  );
  const bottom = done.tasks[3]?.result;
  assert.equal(bottom?.type, "exec");
  assert.equal(Buffer.from(bottom.stdout).toString(), "bottom\n");
  assert.equal(done.taskCounts.SUCCEEDED, 4);
  assert.deepEqual(await client.getJob(handle.jobId), done);
});

/** A job of a running task and its dependent, cancelled once the first runs. */
async function cancelledWhileRunning(reason: string): Promise<JobSnapshot> {
  const handle = await client.submit([
    exec("slow", ["sleep", "30"]),
    exec("after", ["true"], { dependencies: ["slow"] }),
  ]);
  for await (const event of handle.watch()) {
    if (event.type === "TaskStateChanged" && event.state === "RUNNING") break;
  }
  assert.equal(await client.cancel(handle.jobId, { reason }), 2);
  assert.equal(await handle.cancel({ reason: "again" }), 0); // idempotent
  return client.wait(handle.jobId);
}

test("cancel a running job: every task ends CANCELLED, a repeat cancels nothing", async () => {
  const done = await cancelledWhileRunning("no longer needed");

  assert.equal(done.state, "CANCELLED");
  assert.deepEqual(
    done.tasks.map((t) => [t.id, t.state]),
    [
      ["slow", "CANCELLED"],
      ["after", "CANCELLED"],
    ],
  );
});

test("cancel with a reason: the cancelled tasks' errors and the job's message say it", async () => {
  const done = await cancelledWhileRunning("no longer needed");

  assert.match(done.message, /no longer needed/);
  assert.match(done.tasks[0]?.error ?? "", /no longer needed/);
});

test("cancel some tasks: they and their downstream, the rest runs on", async () => {
  const handle = await client.submit([
    exec("gate", ["sleep", "30"]),
    exec("downstream", ["true"], { dependencies: ["gate"] }),
    exec("independent", ["true"]),
  ]);

  assert.equal(await handle.cancel({ taskIds: ["gate"], reason: "skip it" }), 2);
  const done = await handle.wait();

  assert.equal(done.state, "CANCELLED");
  assert.deepEqual(Object.fromEntries(done.tasks.map((t) => [t.id, t.state])), {
    gate: "CANCELLED",
    downstream: "CANCELLED",
    independent: "SUCCEEDED",
  });
});

test("a cycle is refused with InvalidArgumentError naming it in a field violation", async () => {
  const cycle = job([
    exec("a", ["true"], { dependencies: ["c"] }),
    exec("b", ["true"], { dependencies: ["a"] }),
    exec("c", ["true"], { dependencies: ["b"] }),
  ]);

  const error = await client.submit(cycle).then(
    () => assert.fail("a cycle was accepted"),
    (error: unknown) => error,
  );

  assert.ok(error instanceof InvalidArgumentError, String(error));
  assert.equal(error.codeName, "INVALID_ARGUMENT");
  assert.match(error.message, /cycle/);
  assert.equal(error.violations.length, 1);
  const [violation] = error.violations;
  assert.match(violation?.field ?? "", /^job\.tasks\[\d\]\.dependencies/);
  assert.match(violation?.description ?? "", /dependency cycle: (\w -> ){3}\w/);
});

test("the same cycle is reported the same way by every daemon", async () => {
  const cycle = [
    dispatch("a", "q", "", { dependencies: ["c"] }),
    dispatch("b", "q", "", { dependencies: ["a"] }),
    dispatch("c", "q", "", { dependencies: ["b"] }),
  ];
  const reported = [];
  for (const seed of ["0", "1"]) {
    await using other = await Dukatd.start({ env: { PYTHONHASHSEED: seed } });
    await using submitter = connect(other.address);
    const error = await submitter.submit(cycle).catch((e: unknown) => e);
    assert.ok(error instanceof InvalidArgumentError, String(error));
    reported.push(error.violations);
  }

  assert.deepEqual(reported[0], reported[1]);
});

test("several problems come back as several violations, each naming its field", async () => {
  const error = await client
    .submit([
      exec("", ["true"]),
      exec("x", ["true"], { resources: { cpu: 5 }, dependencies: ["nowhere"] }),
    ])
    .catch((e: unknown) => e);

  assert.ok(error instanceof InvalidArgumentError, String(error));
  const fields = error.violations.map((v) => v.field);
  assert.ok(fields.length >= 2, JSON.stringify(error.violations));
  assert.ok(
    fields.every((f) => f.startsWith("job.tasks[")),
    JSON.stringify(fields),
  );
});

test("an unknown job is NotFoundError, from every call that names it", async () => {
  for (const call of [
    () => client.getJob("no-such-job"),
    () => client.cancel("no-such-job"),
    () => client.wait("no-such-job"),
    async () => {
      for await (const _ of client.watch("no-such-job"));
    },
  ]) {
    await assert.rejects(call, (error: unknown) => {
      assert.ok(error instanceof NotFoundError, String(error));
      assert.equal(error.codeName, "NOT_FOUND");
      return true;
    });
  }
});

test("listJobs pages through the jobs, filtered by state and labels", async () => {
  const label = { batch: `list-${process.pid}` };
  const handles = [];
  for (let i = 0; i < 5; i++) {
    handles.push(
      await client.submit(job([exec("t", ["true"])], { labels: { ...label, i: `${i}` } })),
    );
  }
  for (const handle of handles) await handle.wait();

  const listed = [];
  for await (const found of client.listJobs({ labels: label, state: "SUCCEEDED", pageSize: 2 })) {
    listed.push(found);
  }

  assert.deepEqual(
    listed.map((j) => j.jobId),
    handles.map((h) => h.jobId).reverse(), // newest first
  );
  assert.ok(listed.every((j) => j.tasks.length === 0 && j.taskCounts.SUCCEEDED === 1));
  const none = [];
  for await (const found of client.listJobs({ labels: label, state: ["FAILED", "CANCELLED"] })) {
    none.push(found);
  }
  assert.deepEqual(none, []);
});

test("watch after a sequence gives only the events after it", async () => {
  const handle = await client.submit([exec("one", ["true"]), exec("two", ["true"])]);
  const all = await collect(handle.watch());

  const rest = await collect(handle.watch({ afterSequence: 3 }));

  assert.deepEqual(rest, all.slice(3));
  assert.throws(() => handle.watch({ afterSequence: -1 }), RangeError);
});

test("a failed task fails the job, with its error in words and as data", async () => {
  const handle = await client.submit([
    exec("fails", ["sh", "-c", "echo out; echo broken >&2; exit 3"]),
    exec("skipped", ["true"], { dependencies: ["fails"] }),
  ]);

  const done = await handle.wait();

  assert.equal(done.state, "FAILED");
  const [fails, skipped] = done.tasks;
  assert.equal(fails?.state, "FAILED");
  assert.match(fails?.error ?? "", /exited with code 3; stderr ends: broken/);
  assert.deepEqual(fails?.failure && { ...fails.failure, stdout: text(fails.failure.stdout) }, {
    type: "TaskProcessError",
    message: "'sh' exited with code 3; stderr ends: broken",
    exitCode: 3,
    signal: 0,
    stdout: "out\n",
    stderr: Buffer.from("broken\n"),
  });
  assert.equal(skipped?.state, "SKIPPED");
  assert.equal(skipped?.failure, undefined);
});

test("rerun: what succeeded is carried over, the rest runs again", async () => {
  const broken = [
    exec("fetch", ["sh", "-c", "echo fetched"]),
    exec("load", ["sh", "-c", "exit 1"], { dependencies: ["fetch"] }),
  ];
  const first = await client.submit(broken);
  assert.equal((await first.wait()).state, "FAILED");

  const fixed = [broken[0]!, exec("load", ["true"], { dependencies: ["fetch"] })];
  const second = await client.rerun(first.jobId, fixed);
  const done = await second.wait();

  assert.notEqual(second.jobId, first.jobId);
  assert.equal(done.state, "SUCCEEDED");
  assert.deepEqual(
    done.tasks.map((t) => [t.id, t.carriedFrom]),
    [
      ["fetch", first.jobId],
      ["load", ""],
    ],
  );
  const fetch = done.tasks[0]?.result;
  assert.equal(fetch?.type === "exec" && text(fetch.stdout), "fetched\n");
  // The same again, with the old job's own spec: it fails again, having run only `load`.
  const third = await first.rerun();
  assert.equal((await third.wait()).state, "FAILED");
});

test("rerun of a job still running, or unknown, is refused", async () => {
  const running = await client.submit([exec("slow", ["sleep", "30"])]);
  try {
    await assert.rejects(client.rerun(running.jobId), FailedPreconditionError);
    await assert.rejects(client.rerun("no-such-job"), NotFoundError);
  } finally {
    await running.cancel();
  }
});

test("exec on a daemon without --allow-exec is PermissionDeniedError", async () => {
  const strict = await Dukatd.start();
  const other = connect(strict.address);
  try {
    await assert.rejects(other.submit([exec("x", ["true"])]), PermissionDeniedError);
  } finally {
    await other.close();
    await strict.stop();
  }
});

test("status() says what the daemon is and holds", async () => {
  const status = await client.status();

  assert.match(status.version, /\d/);
  assert.deepEqual(status.listen, [daemon.address]);
  assert.equal(status.stateDir, undefined, "--ephemeral keeps nothing");
  assert.equal(status.allowExec, true);
  assert.ok(status.startedAt !== undefined && status.startedAt <= new Date());
  assert.deepEqual(
    status.resources.find((r) => r.name === "seats"),
    { name: "seats", capacity: 2, used: 0 },
  );
});
