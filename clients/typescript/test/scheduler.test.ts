// The generated TypeScript code and @grpc/grpc-js against a real dukatd on a unix socket: unary
// calls (Submit, GetJob), a server stream (Watch) and a bidi stream (Work). A proof of codegen
// and transport, not a client API.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Metadata } from "@grpc/grpc-js";

import type { Event } from "../src/gen/dukat/v1/event.js";
import { type Job, JobState, TaskSpec, TaskState } from "../src/gen/dukat/v1/job.js";
import {
  GetJobRequest,
  SubmitRequest,
  WatchRequest,
  type WatchResponse,
  WorkRequest,
  type WorkResponse,
} from "../src/gen/dukat/v1/scheduler.js";
import { WorkResult } from "../src/gen/dukat/v1/work.js";
import { Dukatd } from "./dukatd.js";

const WITHIN_MS = 20_000;
let daemon: Dukatd;

before(async () => {
  daemon = await Dukatd.serving(["--allow-exec"]);
});

after(async () => {
  await daemon?.stop();
});

function deadline(): Date {
  return new Date(Date.now() + WITHIN_MS);
}

function submit(...tasks: TaskSpec[]): Promise<string> {
  const request = SubmitRequest.create({ job: { tasks } });
  return new Promise((resolve, reject) =>
    daemon.client.submit(request, new Metadata(), { deadline: deadline() }, (error, reply) =>
      error ? reject(error) : resolve(reply.jobId),
    ),
  );
}

function getJob(jobId: string): Promise<Job> {
  const request = GetJobRequest.create({ jobId });
  return new Promise((resolve, reject) =>
    daemon.client.getJob(request, new Metadata(), { deadline: deadline() }, (error, reply) =>
      error ? reject(error) : resolve(reply.job!),
    ),
  );
}

/** Every event of the job, from the first to the terminal one (Watch ends after it). */
async function watch(jobId: string): Promise<Event[]> {
  const request = WatchRequest.create({ jobId, afterSequence: 0n });
  const events: Event[] = [];
  for await (const reply of daemon.client.watch(request, { deadline: deadline() })) {
    events.push(...(reply as WatchResponse).events);
  }
  return events;
}

function jobStates(events: Event[]): JobState[] {
  return events.flatMap((e) => (e.kind?.$case === "jobState" ? [e.kind.value.state] : []));
}

function execTask(id: string, argv: string[], dependencies: string[] = []): TaskSpec {
  return TaskSpec.create({ id, dependencies, action: { $case: "exec", value: { argv } } });
}

test("an exec job of two tasks runs, and Watch streams it to its terminal event", async () => {
  const jobId = await submit(
    execTask("true", ["/bin/true"]),
    execTask("hi", ["sh", "-c", "echo hi"], ["true"]),
  );

  const events = await watch(jobId);

  assert.deepEqual(
    events.map((e) => e.sequence),
    events.map((_, i) => BigInt(i + 1)),
  );
  assert.equal(jobStates(events).at(-1), JobState.JOB_STATE_SUCCEEDED);
  const succeeded = events.flatMap((e) =>
    e.kind?.$case === "taskState" && e.kind.value.state === TaskState.TASK_STATE_SUCCEEDED
      ? [e.kind.value.taskId]
      : [],
  );
  assert.deepEqual(succeeded, ["true", "hi"]);
  const output = events.flatMap((e) =>
    e.kind?.$case === "output" ? [[e.kind.value.taskId, e.kind.value.text.trim()]] : [],
  );
  assert.deepEqual(output, [["hi", "hi"]]);
  const job = await getJob(jobId);
  assert.equal(job.state, JobState.JOB_STATE_SUCCEEDED);
  assert.deepEqual(
    job.tasks.map((t) => [t.id, t.state]),
    [
      ["true", TaskState.TASK_STATE_SUCCEEDED],
      ["hi", TaskState.TASK_STATE_SUCCEEDED],
    ],
  );
});

test("a worker on the Work stream runs a dispatch task and its result reaches GetJob", async () => {
  const queue = "ts-proof";
  const jobId = await submit(
    TaskSpec.create({
      id: "dispatched",
      action: { $case: "dispatch", value: { queue, payload: Buffer.from("ping") } },
    }),
  );
  const watched = watch(jobId);

  const work = daemon.client.work({ deadline: deadline() });
  const hello = { workerId: "ts", queues: [queue], maxInFlight: 1 };
  work.write(WorkRequest.create({ kind: { $case: "hello", value: hello } }));
  let welcomed = false;
  for await (const reply of work) {
    const { welcome, assignments } = reply as WorkResponse;
    welcomed ||= welcome !== undefined;
    for (const task of assignments) {
      assert.equal(Buffer.from(task.payload).toString(), "ping");
      const result = WorkResult.create({
        jobId: task.jobId,
        taskId: task.taskId,
        attempt: task.attempt,
        outcome: { $case: "success", value: { payload: Buffer.from("pong") } },
      });
      work.write(WorkRequest.create({ kind: { $case: "update", value: { results: [result] } } }));
    }
    if (assignments.length > 0) {
      work.end(); // the daemon then ends the stream
    }
  }
  const events = await watched;

  assert.ok(welcomed);
  assert.equal(jobStates(events).at(-1), JobState.JOB_STATE_SUCCEEDED);
  const result = (await getJob(jobId)).tasks[0]?.result?.kind;
  assert.equal(result?.$case, "dispatch");
  assert.equal(Buffer.from(result.value.payload).toString(), "pong");
});
