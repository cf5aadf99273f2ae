// What a worker's handler is given: one attempt of a dispatch task (as the Python client's
// DispatchTask, dukat/client/_dispatch.py).
import { milliseconds, TASK_STATES } from "./convert.js";
import type { TaskAssignment } from "./gen/dukat/v1/work.js";
import type { TaskState } from "./states.js";

/** How one dependency of the task ended. */
export interface UpstreamResult {
  readonly taskId: string;
  /** Its terminal state (not SUCCEEDED only under trigger rule ALL_DONE). */
  readonly state: TaskState;
  /** What it returned, when it was a dispatch task that succeeded. */
  readonly payload: Uint8Array;
  readonly contentType: string;
  /** Why it did not succeed, in words. */
  readonly error: string;
}

/** Where a task's progress reports go (the worker batches them). */
export type ProgressSink = (
  task: DispatchTask,
  fraction: number | undefined,
  message: string,
) => void;

/** One attempt of a dispatch task given to this worker; `attempt` is its fencing token. */
export class DispatchTask {
  readonly jobId: string;
  readonly taskId: string;
  readonly attempt: number;
  readonly queue: string;
  /** The task's input, as submitted. */
  readonly payload: Uint8Array;
  readonly contentType: string;
  /** How each dependency ended, in the order of the task's dependencies. */
  readonly upstreamResults: readonly UpstreamResult[];
  /** Milliseconds this attempt may run (the signal aborts after); undefined: no limit. */
  readonly timeout: number | undefined;
  /** The worker's key of the attempt: job, attempt and task, NUL-separated (job ids and
   * attempt numbers hold no NUL, so it is unambiguous). */
  readonly key: string;
  readonly #progress: ProgressSink;

  constructor(assignment: TaskAssignment, progress: ProgressSink) {
    this.jobId = assignment.jobId;
    this.taskId = assignment.taskId;
    this.attempt = assignment.attempt;
    this.queue = assignment.queue;
    this.payload = assignment.payload;
    this.contentType = assignment.contentType;
    this.upstreamResults = assignment.upstreamResults.map((upstream) => ({
      taskId: upstream.taskId,
      state: TASK_STATES.fromProto(upstream.state),
      payload: upstream.payload,
      contentType: upstream.contentType,
      error: upstream.error,
    }));
    this.timeout = assignment.timeout === undefined ? undefined : milliseconds(assignment.timeout);
    this.key = attemptKey(assignment.jobId, assignment.taskId, assignment.attempt);
    this.#progress = progress;
  }

  /** Say how far the attempt is (0 to 1) and/or what it is doing. Batched: sent with the
   * worker's next update, the latest report per attempt only. */
  reportProgress(fraction?: number, message = ""): void {
    if (fraction !== undefined && !(fraction >= 0 && fraction <= 1)) {
      throw new RangeError(`progress fraction must be between 0 and 1, not ${fraction}`);
    }
    this.#progress(this, fraction, String(message));
  }

  /** The upstream result of the dependency `taskId`; undefined if it is not one. */
  upstream(taskId: string): UpstreamResult | undefined {
    return this.upstreamResults.find((upstream) => upstream.taskId === taskId);
  }
}

export function attemptKey(jobId: string, taskId: string, attempt: number): string {
  return `${jobId}\0${attempt}\0${taskId}`;
}
