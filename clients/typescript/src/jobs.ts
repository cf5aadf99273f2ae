// JobHandle: one job on the daemon; its events (resumed across reconnects), its end, its
// cancellation. The model is the Python client's JobHandle (dukat/client/_jobs.py).
import { randomUUID } from "node:crypto";

import type { Connection } from "./connection.js";
import { eventFromProto, jobFromProto, jobSpecToProto, taskStatusFromProto } from "./convert.js";
import { NotFoundError, ResourceExhaustedError } from "./errors.js";
import type { Job } from "./gen/dukat/v1/job.js";
import { WatchRequest, type WatchResponse } from "./gen/dukat/v1/scheduler.js";
import { Backoff, type ReconnectPolicy } from "./reconnect.js";
import type { Event, JobSnapshot, TaskStatus } from "./results.js";
import type { JobSpec, TaskSpec } from "./spec.js";
import { isTerminal } from "./states.js";

/** How `wait` polls GetJob while the daemon refuses it a Watch (jittered, as retries are). */
const POLL: ReconnectPolicy = Object.freeze({
  initialBackoff: 50,
  maxBackoff: 1_000,
  multiplier: 2,
  giveUpAfter: null,
  connectWithin: null,
});

/** Options of `watch`. */
export interface WatchOptions {
  /** Events with a sequence above this one: 0 (the default) from the start, a snapshot's
   * `lastSequence` to follow on from it, the last one seen to resume. */
  readonly afterSequence?: number;
}

/** Options of `submit` and `rerun`. */
export interface SubmitOptions {
  /** Makes the Submit safe to repeat (default: a fresh one per call): this client retries it
   * when the daemon is briefly unreachable, and the daemon answers a repeat with the job it
   * made the first time. */
  readonly requestId?: string;
}

/** Options of `cancel`. */
export interface CancelOptions {
  /** Why, in words; kept in the cancelled tasks' errors and the job's message. */
  readonly reason?: string;
  /** Cancel these tasks and everything downstream of them; default: the whole job. */
  readonly taskIds?: readonly string[];
}

/** A job submitted to the daemon (or looked up by id): watch it, wait for it, cancel it.
 * Cheap to make: `client.job(jobId)` makes no call. */
export class JobHandle {
  /**
   * @param probe the id of one of the job's tasks, when known (from submit), so that `wait`
   *   can ask for the job's state without all of its tasks.
   */
  constructor(
    private readonly connection: Connection,
    readonly jobId: string,
    private readonly probe = "",
  ) {
    if (!jobId) throw new TypeError("a JobHandle needs the id of a job, not an empty string");
  }

  /** The job now, with every task (GetJob), results and failures' output included. */
  async get(): Promise<JobSnapshot> {
    const job = await this.getJob();
    const snapshot = jobFromProto(job);
    const omitted = job.tasks.filter((task) => task.resultOmitted).map((task) => task.id);
    if (omitted.length === 0) return snapshot;
    const fetched = await this.fetchOmitted(omitted);
    const tasks = snapshot.tasks.map((task) => {
      const whole = fetched.get(task.id);
      return whole === undefined ? task : { ...task, result: whole.result, failure: whole.failure };
    });
    return { ...snapshot, tasks };
  }

  private async getJob(taskIds: readonly string[] = []): Promise<Job> {
    const scheduler = this.connection.scheduler;
    const response = await this.connection.call(scheduler.getJob.bind(scheduler), {
      jobId: this.jobId,
      taskIds: [...taskIds],
    });
    if (response.job === undefined) {
      throw new TypeError(`the daemon answered GetJob for ${this.jobId} without a job`);
    }
    return response.job;
  }

  /** The tasks whose results (or failures' output tails) a GetJob left out, over the
   * daemon's budget, asked for by id: each answer brings as many as fit; one that brings
   * none (a single result bigger than the budget) ends the loop rather than asking forever. */
  private async fetchOmitted(taskIds: string[]): Promise<Map<string, TaskStatus>> {
    const fetched = new Map<string, TaskStatus>();
    while (taskIds.length > 0) {
      const job = await this.getJob(taskIds);
      for (const task of job.tasks) fetched.set(task.id, taskStatusFromProto(task));
      taskIds = job.tasks.filter((task) => task.resultOmitted).map((task) => task.id);
      if (taskIds.length === job.tasks.length) break;
    }
    return fetched;
  }

  /** Run this job, once finished, again from where it failed: `Client.rerun`. */
  rerun(job?: JobSpec | readonly TaskSpec[], options: SubmitOptions = {}): Promise<JobHandle> {
    return submitJob(this.connection, job, { ...options, rerunOf: this.jobId });
  }

  /** Cancel the whole job, or `taskIds` and everything downstream of them. Idempotent;
   * resolves to how many tasks this call cancelled (0 when all had ended). */
  async cancel({ reason = "", taskIds = [] }: CancelOptions = {}): Promise<number> {
    const scheduler = this.connection.scheduler;
    const response = await this.connection.call(scheduler.cancel.bind(scheduler), {
      jobId: this.jobId,
      taskIds: [...taskIds],
      reason,
    });
    return response.cancelledCount;
  }

  /**
   * The job's events after `afterSequence`, live, ending after its terminal event.
   *
   * When the daemon goes away (UNAVAILABLE: a restart, a drain) the watch is opened again, by
   * the client's reconnect policy, after the last sequence yielded: no event twice, none
   * missed. Events the daemon no longer holds come as one Snapshot of the whole job.
   * Breaking out of the loop ends the stream on the daemon.
   */
  watch({ afterSequence = 0 }: WatchOptions = {}): AsyncGenerator<Event, void, undefined> {
    if (!Number.isSafeInteger(afterSequence) || afterSequence < 0) {
      throw new RangeError(`afterSequence must be 0 or more, not ${afterSequence}`);
    }
    return this.events(afterSequence, false);
  }

  /** `watch`; `jobEventsOnly`: the daemon leaves out task events (`wait` needs none). */
  private async *events(afterSequence: number, jobEventsOnly: boolean): AsyncGenerator<Event> {
    let last = afterSequence;
    const connection = this.connection;
    const backoff = connection.backoff();
    for (;;) {
      const request = WatchRequest.create({
        jobId: this.jobId,
        afterSequence: BigInt(last),
        jobEventsOnly,
      });
      const call = connection.scheduler.watch(request, connection.callMetadata());
      try {
        for await (const response of call) {
          connection.reached = true;
          backoff.reset();
          for (const message of (response as WatchResponse).events) {
            const sequence = Number(message.sequence);
            if (sequence <= last) continue; // a replay overlapping what was yielded: never twice
            last = sequence;
            const event = eventFromProto(message);
            if (event !== undefined) yield event;
          }
        }
        return;
      } catch (error) {
        await connection.retryOrThrow(error, backoff); // resumed after `last`: safe to repeat
      } finally {
        call.cancel(); // the consumer stopped early: end the stream on the daemon too
      }
    }
  }

  /**
   * Wait for the job to end (its terminal event on Watch); the job then (GetJob).
   *
   * When the daemon refuses a Watch (RESOURCE_EXHAUSTED: its limits on open streams), polls
   * GetJob instead, every 50 ms at first and at most every second. When the daemon has
   * dropped the job by then (its retention), the job as its events left it: state, message,
   * finishedAt and lastSequence from its terminal event, labels and createdAt from a look
   * before, and no tasks, which went with it.
   */
  async wait(): Promise<JobSnapshot> {
    let probe = this.probe;
    let seen: JobSnapshot;
    if (probe) {
      seen = await this.glance(probe);
    } else {
      const snapshot = await this.get();
      if (isTerminal(snapshot.state)) return snapshot;
      probe = snapshot.tasks[0]?.id ?? ""; // a job has at least one
      seen = withoutTasks(snapshot);
    }
    if (!isTerminal(seen.state)) {
      seen = await this.untilEnd(seen, probe);
    }
    try {
      return await this.get();
    } catch (error) {
      if (error instanceof NotFoundError) return seen; // dropped since it ended
      throw error;
    }
  }

  /** The job now, without its tasks: GetJob asked for one task (`probe`), not all. */
  private async glance(probe: string): Promise<JobSnapshot> {
    return withoutTasks(jobFromProto(await this.getJob([probe])));
  }

  /** The job as it ended: followed on Watch, else polled (see `wait`). */
  private async untilEnd(seen: JobSnapshot, probe: string): Promise<JobSnapshot> {
    try {
      // From the snapshot's sequence on: a 100,000-task job is not replayed from the start.
      for await (const event of this.events(seen.lastSequence, true)) {
        seen = after(seen, event);
      }
      return seen;
    } catch (error) {
      if (!(error instanceof ResourceExhaustedError)) throw error;
    }
    const polls = new Backoff(POLL); // no Watch for us now: poll
    while (!isTerminal(seen.state)) {
      await polls.wait();
      seen = await this.glance(probe);
    }
    return seen;
  }
}

/** Submit `job` (undefined: `rerunOf`'s spec again), with a fresh request id unless given. */
export async function submitJob(
  connection: Connection,
  job: JobSpec | readonly TaskSpec[] | undefined,
  { requestId, rerunOf = "" }: SubmitOptions & { rerunOf?: string } = {},
): Promise<JobHandle> {
  const spec = job === undefined ? undefined : jobSpecToProto(job);
  const scheduler = connection.scheduler;
  const response = await connection.call(scheduler.submit.bind(scheduler), {
    job: spec,
    requestId: requestId || randomUUID(),
    rerunOf,
  });
  return new JobHandle(connection, response.jobId, spec?.tasks[0]?.id ?? "");
}

function withoutTasks(snapshot: JobSnapshot): JobSnapshot {
  return { ...snapshot, tasks: [] };
}

/** The job as `seen`, then `event` (a job event: a state change or a snapshot). */
function after(seen: JobSnapshot, event: Event): JobSnapshot {
  if (event.type === "Snapshot") return withoutTasks(event.job);
  if (event.type === "JobStateChanged") {
    return {
      ...seen,
      state: event.state,
      message: event.message,
      finishedAt: isTerminal(event.state) ? event.time : seen.finishedAt,
      lastSequence: event.sequence,
    };
  }
  return seen;
}
