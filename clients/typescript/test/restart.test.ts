// The client outlives its daemon: a journaled dukatd stopped (SIGTERM) and started again on the
// same socket, while a watch goes on from the last sequence it yielded and a Submit is retried.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { connect, type Event, exec, NotFoundError, UnavailableError } from "../src/index.js";
import { Dukatd, until } from "./dukatd.js";

test("a watch resumes after a daemon restart with no gap and no duplicate", async () => {
  await using daemon = await Dukatd.start({
    journaled: true,
    args: ["--allow-exec", "--shutdown-grace", "100ms", "--kill-grace", "100ms"],
  });
  await using client = connect(daemon.address);
  const go = join(daemon.directory, "go");
  const handle = await client.submit([
    exec("before", ["true"]),
    // Runs until the test says go, across the restart (which interrupts it: one retry).
    exec("gate", ["sh", "-c", 'while [ ! -e "$1" ]; do sleep 0.01; done', "sh", go], {
      dependencies: ["before"],
      retry: 2,
    }),
    exec("after", ["true"], { dependencies: ["gate"] }),
  ]);
  const events: Event[] = [];
  const watched = (async () => {
    for await (const event of handle.watch()) events.push(event);
  })();
  const gateRunning = (): boolean =>
    events.some(
      (e) => e.type === "TaskStateChanged" && e.taskId === "gate" && e.state === "RUNNING",
    );
  await until("the gate task runs", gateRunning);
  const beforeRestart = events.length;

  assert.equal(await daemon.terminate(), 0);
  await daemon.restart();
  writeFileSync(go, "");
  await watched;

  assert.deepEqual(
    events.map((e) => e.sequence),
    events.map((_, i) => i + 1),
    "sequences from 1, each once, none missing",
  );
  assert.ok(events.length > beforeRestart + 2, "events from the second daemon came too");
  const last = events.at(-1);
  assert.equal(last?.type, "JobStateChanged");
  assert.equal(last.state, "SUCCEEDED");
  const done = await handle.wait();
  assert.equal(done.lastSequence, last.sequence);
  assert.deepEqual(
    done.tasks.map((t) => [t.id, t.state]),
    [
      ["before", "SUCCEEDED"],
      ["gate", "SUCCEEDED"],
      ["after", "SUCCEEDED"],
    ],
  );
});

test("submit rides out a daemon restart, and its request id makes the repeat safe", async () => {
  await using daemon = await Dukatd.start({ journaled: true, args: ["--allow-exec"] });
  await using client = connect(daemon.address);
  await client.status(); // reached once: an outage is ridden out for giveUpAfter, not connectWithin
  assert.equal(await daemon.terminate(), 0);

  const submitted = client.submit([exec("t", ["true"])], { requestId: "once-only" });
  await daemon.restart(); // while the Submit is being retried
  const handle = await submitted;
  const again = await client.submit([exec("t", ["true"])], { requestId: "once-only" });

  assert.equal(again.jobId, handle.jobId, "the daemon's answer to a repeat: the same job");
  assert.equal((await handle.wait()).state, "SUCCEEDED");
  const jobs = [];
  for await (const found of client.listJobs()) jobs.push(found.jobId);
  assert.deepEqual(jobs, [handle.jobId]);
});

test("a daemon lost and not back within giveUpAfter is said as lost, with its address", async () => {
  await using daemon = await Dukatd.start();
  await using client = connect(daemon.address, { reconnect: { giveUpAfter: 300 } });
  await assert.rejects(client.getJob("unknown"), NotFoundError); // reached: the daemon answered
  assert.equal(await daemon.terminate(), 0);

  const error = await client.getJob("unknown").catch((e: unknown) => e);

  assert.ok(error instanceof UnavailableError, String(error));
  assert.match(error.message, new RegExp(`^lost dukatd at ${daemon.address}, not back for `));
});
