// Workers through a real dukatd: serving a queue with upstream results, progress, errors and
// retries, cancellation and timeouts through the AbortSignal, the concurrency bound, and a
// worker outliving its daemon.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  connect,
  dispatch,
  type DispatchTask,
  type Event,
  NonRetryableError,
} from "../src/index.js";
import { gate, sharedDaemon, text, until } from "./dukatd.js";

const { client } = await sharedDaemon();

/** Resolves with the signal's reason once it aborts. */
function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(signal.reason), { once: true }),
  );
}

test("a worker serves a queue: payloads in, results out, upstream results passed on", async () => {
  const seen: string[] = [];
  const worker = client.worker(
    "shout",
    async (task) => {
      seen.push(`${task.taskId}#${task.attempt}`);
      const upstream = task.upstreamResults.map((u) => `${u.taskId}:${u.state}:${text(u.payload)}`);
      return Buffer.from([text(task.payload).toUpperCase(), ...upstream].join(" "));
    },
    { concurrency: 4, workerId: "shouter" },
  );
  try {
    await worker.untilConnected();
    assert.ok(worker.connected);
    const { queues } = await client.status();
    assert.deepEqual(
      queues.find((q) => q.name === "shout"),
      { name: "shout", workers: 1, slots: 4 },
    );
    const handle = await client.submit([
      dispatch("hello", "shout", "hello"),
      dispatch("world", "shout", new TextEncoder().encode("world"), { dependencies: ["hello"] }),
    ]);

    const done = await handle.wait();

    assert.equal(done.state, "SUCCEEDED");
    const results = done.tasks.map((t) =>
      t.result?.type === "dispatch" ? text(t.result.payload) : "",
    );
    assert.deepEqual(results, ["HELLO", "WORLD hello:SUCCEEDED:HELLO"]);
    assert.deepEqual(seen, ["hello#1", "world#1"]);
    assert.equal(worker.completed, 2);
  } finally {
    await worker.stop();
  }
  assert.equal(worker.connected, false);
});

test("progress reports reach watchers while the attempt runs", async () => {
  const release = gate();
  const worker = client.worker("progress", async (task) => {
    task.reportProgress(0.25, "started");
    task.reportProgress(0.5, "halfway"); // the latest report of a batch is the one sent
    await release.promise;
    assert.throws(() => task.reportProgress(2), RangeError);
    return new Uint8Array();
  });
  try {
    const handle = await client.submit([dispatch("long", "progress")]);
    const progress: Event[] = [];
    for await (const event of handle.watch()) {
      if (event.type === "TaskProgress") {
        progress.push(event);
        release.open(); // seen before the attempt ended: sent as it was reported
      }
    }
    assert.deepEqual(
      progress.map((e) => (e.type === "TaskProgress" ? [e.taskId, e.fraction, e.message] : [])),
      [["long", 0.5, "halfway"]],
    );
    assert.equal((await handle.wait()).state, "SUCCEEDED");
  } finally {
    await worker.stop();
  }
});

test("a cancel aborts the handler's signal with the daemon's reason, and frees its slot", async () => {
  const reasons: unknown[] = [];
  const started = gate();
  const worker = client.worker(
    "cancel",
    async (task, signal) => {
      if (text(task.payload) === "hold") {
        started.open();
        reasons.push(await aborted(signal));
        return Buffer.from("too late"); // dropped: the attempt was taken back
      }
      return Buffer.from("ok");
    },
    { concurrency: 1 },
  );
  try {
    const held = await client.submit([dispatch("held", "cancel", "hold")]);
    await started.promise;

    await held.cancel({ reason: "changed my mind" });

    assert.equal((await held.wait()).state, "CANCELLED");
    await until("the handler saw the abort", () => reasons.length === 1);
    const [reason] = reasons;
    assert.ok(reason instanceof DOMException && reason.name === "AbortError", String(reason));
    assert.ok(reason.message, "the abort says why");
    // Its one slot is free again: the next task runs.
    const next = await client.submit([dispatch("next", "cancel", "go")]);
    assert.equal((await next.wait()).state, "SUCCEEDED");
  } finally {
    await worker.stop();
  }
});

test("a task's timeout aborts the handler's signal; the retry then succeeds", async () => {
  const reasons: unknown[] = [];
  const worker = client.worker("slow", async (task, signal) => {
    if (task.attempt === 1) {
      assert.ok(task.timeout !== undefined && task.timeout > 0 && task.timeout <= 300);
      reasons.push(await aborted(signal));
      throw signal.reason;
    }
    return Buffer.from(`attempt ${task.attempt}`);
  });
  try {
    const handle = await client.submit([
      dispatch("slow", "slow", "", { timeout: 300, retry: { maxAttempts: 2, initialBackoff: 1 } }),
    ]);
    const retrying: string[] = [];
    for await (const event of handle.watch()) {
      if (event.type === "TaskStateChanged" && event.state === "RETRYING") {
        retrying.push(event.message);
      }
    }

    const done = await handle.wait();

    assert.equal(done.state, "SUCCEEDED");
    const [slow] = done.tasks;
    assert.equal(slow?.attempts, 2);
    assert.equal(slow?.result?.type === "dispatch" && text(slow.result.payload), "attempt 2");
    assert.equal(retrying.length, 1);
    assert.match(retrying[0] ?? "", /timed out/);
    // The worker's own timer (a TimeoutError) or the daemon's cancel (an AbortError), whichever
    // came first: they are due at the same moment.
    const [reason] = reasons;
    assert.ok(reason instanceof DOMException, String(reason));
    assert.ok(["TimeoutError", "AbortError"].includes(reason.name), reason.name);
  } finally {
    await worker.stop();
  }
});

test("a handler's error fails the attempt: retried by policy, never for a NonRetryableError", async () => {
  const worker = client.worker("errors", async (task) => {
    const kind = text(task.payload);
    if (kind === "flaky" && task.attempt === 1) throw new Error("try again");
    if (kind === "fatal") throw new NonRetryableError("no point retrying");
    if (kind === "not bytes") return "a string" as unknown as Uint8Array;
    return Buffer.from(`${kind} on attempt ${task.attempt}`);
  });
  try {
    const retry = { maxAttempts: 3, initialBackoff: 1 };
    const handle = await client.submit([
      dispatch("flaky", "errors", "flaky", { retry }),
      dispatch("fatal", "errors", "fatal", { retry }),
      dispatch("not-bytes", "errors", "not bytes"),
    ]);

    const done = await handle.wait();

    const [flaky, fatal, notBytes] = done.tasks;
    assert.equal(flaky?.state, "SUCCEEDED");
    assert.equal(flaky?.attempts, 2);
    assert.equal(fatal?.state, "FAILED");
    assert.equal(fatal?.attempts, 1);
    assert.match(fatal?.error ?? "", /NonRetryableError: no point retrying/);
    assert.equal(fatal?.failure?.type, "NonRetryableError");
    assert.equal(fatal?.failure?.message, "no point retrying");
    assert.equal(notBytes?.state, "FAILED");
    assert.match(notBytes?.error ?? "", /TypeError: .*Uint8Array/);
  } finally {
    await worker.stop();
  }
});

test("a retryable callback that throws fails its attempt without retry, and the worker goes on", async () => {
  const worker = client.worker(
    "undecided",
    async (task) => {
      if (text(task.payload) === "fails") throw new Error("it failed");
      return Buffer.from("fine");
    },
    {
      retryable: () => {
        throw new Error("cannot tell");
      },
    },
  );
  try {
    const handle = await client.submit([
      dispatch("fails", "undecided", "fails", { retry: { maxAttempts: 3, initialBackoff: 1 } }),
      dispatch("after", "undecided", "ok", { dependencies: [] }),
    ]);

    const done = await handle.wait();

    const [fails, after] = done.tasks;
    assert.equal(fails?.state, "FAILED");
    assert.equal(fails?.attempts, 1);
    assert.match(fails?.error ?? "", /it failed/);
    assert.equal(after?.state, "SUCCEEDED");
  } finally {
    await worker.stop();
  }
});

test("a worker never runs more attempts at once than its concurrency", async () => {
  let now = 0;
  let peak = 0;
  const worker = client.worker(
    "bounded",
    async (task: DispatchTask) => {
      now += 1;
      peak = Math.max(peak, now);
      await new Promise((resolve) => setTimeout(resolve, 2));
      now -= 1;
      return task.payload;
    },
    { concurrency: 3 },
  );
  try {
    const tasks = Array.from({ length: 30 }, (_, i) => dispatch(`t${i}`, "bounded", `${i}`));
    const done = await (await client.submit(tasks)).wait();

    assert.equal(done.taskCounts.SUCCEEDED, 30);
    assert.equal(peak, 3);
  } finally {
    await worker.stop();
  }
});

test("stop aborts the attempts running: interrupted, they go to the next worker", async () => {
  const started = gate();
  const reasons: unknown[] = [];
  const first = client.worker("handover", async (_task, signal) => {
    started.open();
    reasons.push(await aborted(signal));
    return new Uint8Array();
  });
  const handle = await client.submit([dispatch("moved", "handover")]); // no retry: not needed
  await started.promise;

  await first.stop();
  const second = client.worker("handover", async (task) => Buffer.from(`#${task.attempt}`));
  try {
    const done = await handle.wait();

    assert.equal(done.state, "SUCCEEDED");
    assert.equal(
      done.tasks[0]?.result?.type === "dispatch" && text(done.tasks[0].result.payload),
      "#2",
    );
    assert.equal(done.tasks[0]?.interruptions, 1, "interrupted, not failed");
    assert.equal(reasons.length, 1);
  } finally {
    await second.stop();
  }
});

test("maxInterruptions 0: a task whose worker leaves fails rather than running again", async () => {
  const started = gate();
  const leaving = client.worker("once", async (_task, signal) => {
    started.open();
    await aborted(signal);
    return new Uint8Array();
  });
  const handle = await client.submit([dispatch("once", "once", "", { maxInterruptions: 0 })]);
  await started.promise;

  await leaving.stop();
  const done = await handle.wait();

  assert.equal(done.state, "FAILED");
  assert.equal(done.tasks[0]?.failure?.type, "TaskInterruptedError");
});

test("a task on a queue nobody serves says what it waits for, until a worker comes", async () => {
  const handle = await client.submit([dispatch("lonely", "nobody-yet")]);
  let waiting: Event | undefined;
  for await (const event of handle.watch()) {
    if (event.type === "TaskWaiting") {
      waiting = event;
      break;
    }
  }
  assert.equal(waiting?.type, "TaskWaiting");
  assert.equal(waiting.taskId, "lonely");
  assert.equal(waiting.queue, "nobody-yet");
  assert.match(waiting.waitingFor, /nobody-yet/);
  const [ready] = (await handle.get()).tasks;
  assert.equal(ready?.state, "READY");
  assert.equal(ready?.waitingForQueue, "nobody-yet");
  assert.equal(ready?.waitingFor, waiting.waitingFor);

  const worker = client.worker("nobody-yet", async (task) => task.payload);
  try {
    const done = await handle.wait();
    assert.equal(done.state, "SUCCEEDED");
    assert.equal(done.tasks[0]?.waitingFor, "");
  } finally {
    await worker.stop();
  }
});
