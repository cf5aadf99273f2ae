// Worker: serve dispatch tasks over SchedulerService.Work (the contract: work.proto), as the
// Python client's Worker (dukat/client/_worker.py) does.
//
// One stream at a time: a hello, the daemon's welcome, then assignments and cancels come in
// while results, progress and heartbeats go out, batched both ways: everything that ended or
// progressed in one turn of the event loop goes in one update, and an empty update is sent
// when nothing was for the welcome's heartbeat interval.
//
// A worker outlives its daemon (a restart, an upgrade). When the stream ends, breaks (any
// status but a fatal one), or, from a daemon that heartbeats too (welcome.daemon_heartbeats),
// nothing is heard for the welcome's heartbeat timeout (a daemon stopped or cut off behind a
// connection that looks open), the daemon has taken our tasks back (or will) and runs them
// again (interrupted, not failed): the handlers still running are aborted (their results
// would be for attempts no longer current, on a stream that is gone) and the worker says hello
// again at the same address after a backoff (0.1 s doubling to 5 s, jittered, from the start
// again once a daemon welcomes it), until it is stopped. A status no new stream can change
// (FATAL_CODES: a wrong token, a refused hello, a daemon serving no workers) ends the worker
// with its error.
//
// `drain()` is the other way to stop, for a deploy or a scale-down: the worker tells the daemon
// it is draining (WorkerUpdate.draining), so that it is assigned nothing more, finishes what it
// holds (an assignment already on its way included) and sends the results; the daemon ends the
// stream once it holds nothing, and the worker ends, losing nothing.
import { hostname } from "node:os";

import { type ClientDuplexStream, type ServiceError, status } from "@grpc/grpc-js";

import type { Connection } from "./connection.js";
import { milliseconds } from "./convert.js";
import { attemptKey, DispatchTask } from "./dispatch-task.js";
import { fromServiceError, isServiceError, NonRetryableError, UnavailableError } from "./errors.js";
import { WorkRequest, type WorkResponse } from "./gen/dukat/v1/scheduler.js";
import type { WorkProgress, WorkResult } from "./gen/dukat/v1/work.js";
import { Backoff, type Reconnect, reconnectPolicy, WORKER_RECONNECT } from "./reconnect.js";

/** Runs one attempt of a dispatch task: resolves to its result's bytes, throws to fail it.
 * `signal` aborts when the daemon takes the attempt back (a cancel, the task's timeout) or
 * the worker stops: stop then; whatever the handler gives after is dropped. */
export type Handler = (task: DispatchTask, signal: AbortSignal) => Promise<Uint8Array>;

/** Options of `client.worker`. */
export interface WorkerOptions {
  /** Attempts run at once (the hello's max_in_flight). Default 1. */
  readonly concurrency?: number;
  /** The worker's name in the daemon's logs and metrics; default `<host>-<pid>`. */
  readonly workerId?: string;
  /** Whether a handler's error is worth another attempt (default: yes, but for a
   * NonRetryableError, which never is). */
  readonly retryable?: (error: unknown) => boolean;
  /** The waits between tries to reach a daemon after the stream broke; default 100 ms
   * doubling to 5 s, jittered, never giving up. A `giveUpAfter` ends the worker with an
   * UnavailableError once that long has passed without a daemon. */
  readonly reconnect?: Reconnect;
}

/** Statuses that end a worker: a new stream would get them again. Every other one (a daemon
 * draining or gone, missed heartbeats, a call cut at shutdown) is retried. */
export const FATAL_CODES: ReadonlySet<status> = new Set([
  status.UNAUTHENTICATED,
  status.PERMISSION_DENIED,
  status.INVALID_ARGUMENT,
  status.UNIMPLEMENTED,
]);

/** Milliseconds between heartbeats when the welcome names no interval. */
const DEFAULT_HEARTBEAT = 5_000;

type WorkCall = ClientDuplexStream<WorkRequest, WorkResponse>;

/** One attempt in the handler's hands. */
interface Running {
  readonly task: DispatchTask;
  readonly controller: AbortController;
  timer: NodeJS.Timeout | undefined;
}

/** A promise and its resolvers, for the waits on the worker's life. */
class Deferred<T> {
  readonly promise: Promise<T>;
  resolve!: (value: T) => void;
  reject!: (error: unknown) => void;
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.promise.catch(() => undefined); // rejected with nobody waiting is not an error
  }
}

/** Serves dispatch tasks of its queues from the moment it is made (`client.worker`) until
 * `stop()` or `drain()`. */
export class Worker {
  readonly queues: readonly string[];
  readonly concurrency: number;
  readonly workerId: string;
  /** Settles when the worker has ended: stopped or drained (resolves), or a fatal status
   * (rejects with its DaemonError). */
  readonly done: Promise<void>;
  /** Attempts whose result was handed to a stream. */
  completed = 0;

  private readonly running = new Map<string, Running>();
  private results: WorkResult[] = [];
  private progress = new Map<string, WorkProgress>();
  private readonly retryable: (error: unknown) => boolean;
  private readonly stopping = new AbortController();
  private call: WorkCall | undefined;
  private connectedNow = false;
  private welcomed = new Deferred<void>();
  private draining = false;
  private flushScheduled = false;
  private blocked = false;
  private heartbeatInterval = DEFAULT_HEARTBEAT;
  private heartbeatTimeout = 6 * DEFAULT_HEARTBEAT;
  private heartbeat: NodeJS.Timeout | undefined;
  /** From a daemon that heartbeats: how long its silence may last (0: it proves nothing). */
  private silence = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private lastHeard = 0;
  /** Why the worker ended the stream itself, for the log. */
  private gaveUp: string | undefined;
  private maxResultBytes = 0;

  constructor(
    private readonly connection: Connection,
    queues: string | readonly string[],
    private readonly handler: Handler,
    options: WorkerOptions = {},
  ) {
    this.queues = typeof queues === "string" ? [queues] : [...queues];
    if (this.queues.length === 0 || !this.queues.every((q) => typeof q === "string" && q)) {
      throw new TypeError(
        `a worker serves at least one named queue, not ${JSON.stringify(queues)}`,
      );
    }
    this.concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new RangeError(
        `concurrency must be a whole number of at least 1, not ${this.concurrency}`,
      );
    }
    if (typeof handler !== "function") {
      throw new TypeError("handler must be an async function of a DispatchTask and a signal");
    }
    this.workerId = options.workerId || `${hostname()}-${process.pid}`;
    const retryable = options.retryable ?? (() => true);
    this.retryable = (error) => {
      if (error instanceof NonRetryableError) return false;
      try {
        return retryable(error);
      } catch (thrown) {
        // Its attempt must still end: a callback that cannot decide does not retry.
        this.connection.logger.warn(
          `worker ${this.workerId}: options.retryable threw (${String(thrown)}); not retrying`,
        );
        return false;
      }
    };
    const policy = reconnectPolicy(options.reconnect, WORKER_RECONNECT);
    this.done = this.run(new Backoff(policy));
    this.done.then(
      () => this.welcomed.reject(new Error(`worker ${this.workerId} has ended`)),
      (error: unknown) => {
        this.welcomed.reject(error);
        this.connection.logger.warn(`worker ${this.workerId} ended: ${String(error)}`);
      },
    );
  }

  /** True while a stream is open and welcomed. */
  get connected(): boolean {
    return this.connectedNow;
  }

  /** Attempts running now. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Resolves once a daemon has welcomed the worker (at once if one has and the stream is
   * open); rejects if the worker ends first. */
  untilConnected(): Promise<void> {
    return this.connectedNow ? Promise.resolve() : this.welcomed.promise;
  }

  /** Stop serving now: attempts still running are aborted (interrupted: the daemon runs them
   * again). Resolves when the worker has ended; rejects with the fatal error that ended it
   * before, if one did. */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.call?.cancel();
    return this.done;
  }

  /**
   * Stop taking tasks, finish those held, hand in their results, then stop serving: tells the
   * daemon it is draining (WorkerUpdate.draining: it assigns nothing more), lets every running
   * attempt end (one already on its way too) and sends its result; the daemon ends the stream
   * once the worker holds nothing. Resolves when the worker has ended. Attempts still running
   * after `grace` ms (default: no limit) are aborted as `stop` aborts them: the daemon runs
   * those again. A worker not connected just stops.
   */
  async drain({ grace }: { grace?: number } = {}): Promise<void> {
    if (this.draining || this.stopping.signal.aborted) return this.done;
    this.draining = true;
    if (this.call === undefined || !this.connectedNow) return this.stop();
    this.flush(); // says draining now, with whatever else is ready
    if (grace === undefined) return this.done;
    const timer = setTimeout(() => {
      this.connection.logger.warn(
        `worker ${this.workerId}: the drain's grace of ${grace} ms ran out`,
      );
      void this.stop().catch(() => undefined); // its error, if any, is the drain's too
    }, grace);
    try {
      return await this.done;
    } finally {
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  // -- life -----------------------------------------------------------------------------------

  private async run(backoff: Backoff): Promise<void> {
    const stopped = this.stopping.signal;
    while (!stopped.aborted) {
      let lost: string;
      try {
        await this.serveStream(backoff);
        lost = "the daemon ended the stream";
      } catch (error) {
        if (stopped.aborted || this.connection.isClosed) break;
        if (!isServiceError(error)) throw error;
        if (FATAL_CODES.has(error.code)) throw fromServiceError(error);
        lost = this.gaveUp ?? `${status[error.code]}: ${error.details}`;
      } finally {
        this.endStream();
      }
      if (this.draining || this.connection.isClosed) break;
      // Once per outage as a warning: a daemon away for minutes is one line, not hundreds.
      const say = `worker ${this.workerId}: no stream (${lost}); reconnecting`;
      if (backoff.retrying) this.connection.logger.debug?.(say);
      else this.connection.logger.warn(say);
      if (!(await backoff.wait(stopped))) {
        throw new UnavailableError(
          `no daemon at ${this.connection.address} took the worker back within its reconnect policy`,
          status.UNAVAILABLE,
        );
      }
    }
  }

  /** One stream: resolves when the daemon ends it with OK, rejects with its error status. */
  private serveStream(backoff: Backoff): Promise<void> {
    const call = this.connection.scheduler.work(this.connection.callMetadata());
    this.call = call;
    this.gaveUp = undefined;
    const hello = {
      workerId: this.workerId,
      queues: [...this.queues],
      maxInFlight: this.concurrency,
    };
    call.write(WorkRequest.create({ kind: { $case: "hello", value: hello } }));
    return new Promise<void>((resolve, reject) => {
      let failure: ServiceError | undefined;
      call.on("data", (response: WorkResponse) => {
        this.lastHeard = performance.now();
        if (response.welcome !== undefined && !this.connectedNow) {
          this.welcome(response.welcome, backoff);
        }
        this.take(response);
      });
      call.on("error", (error: ServiceError) => {
        failure = error;
      });
      call.on("status", ({ code }) => {
        if (code === status.OK) resolve();
        else reject(failure ?? new Error(`the Work stream ended with ${status[code]}`));
      });
    });
  }

  private welcome(welcome: NonNullable<WorkResponse["welcome"]>, backoff: Backoff): void {
    this.heartbeatInterval = milliseconds(welcome.heartbeatInterval) || DEFAULT_HEARTBEAT;
    this.heartbeatTimeout = milliseconds(welcome.heartbeatTimeout) || 6 * this.heartbeatInterval;
    this.maxResultBytes = Number(welcome.maxResultBytes);
    if (backoff.retrying) this.connection.logger.info?.(`worker ${this.workerId}: serving again`);
    backoff.reset();
    this.connectedNow = true;
    this.welcomed.resolve();
    this.armHeartbeat();
    // Such a daemon says something every interval: silence past the timeout is a dead stream,
    // whatever the connection under it looks like.
    this.silence = welcome.daemonHeartbeats ? this.heartbeatTimeout : 0;
    if (this.silence > 0 && this.call !== undefined) this.armWatchdog(this.call, this.silence);
  }

  /** The stream is over: its attempts are the daemon's again, its unsent reports void. */
  private endStream(): void {
    clearTimeout(this.heartbeat);
    clearTimeout(this.watchdog);
    this.call?.cancel();
    this.call = undefined;
    if (this.connectedNow) {
      this.connectedNow = false;
      this.welcomed = new Deferred();
    }
    const lost = new DOMException("the worker's stream to the daemon ended", "AbortError");
    for (const running of this.running.values()) {
      clearTimeout(running.timer);
      running.controller.abort(lost);
    }
    this.running.clear();
    this.results = [];
    this.progress.clear();
    this.blocked = false;
  }

  // -- attempts -------------------------------------------------------------------------------

  private take(response: WorkResponse): void {
    for (const assignment of response.assignments) {
      let task: DispatchTask;
      try {
        task = new DispatchTask(assignment, this.onProgress);
      } catch (error) {
        // One this client cannot read (a newer daemon's upstream state): its attempt fails
        // as the handler's would, and the stream and the other attempts go on.
        const { jobId, taskId, attempt } = assignment;
        const message = error instanceof Error ? error.message : String(error);
        const value = { message, type: "UnreadableAssignment", retryable: false };
        this.results.push({ jobId, taskId, attempt, outcome: { $case: "error", value } });
        this.scheduleFlush();
        continue;
      }
      if (this.running.has(task.key)) continue; // the same attempt twice: never run it twice
      const running: Running = { task, controller: new AbortController(), timer: undefined };
      this.running.set(task.key, running);
      if (task.timeout !== undefined) {
        const ms = Math.max(0, task.timeout);
        running.timer = setTimeout(() => {
          const reason = `task ${task.taskId} timed out after ${ms / 1000}s`;
          this.abort(running, new DOMException(reason, "TimeoutError"));
        }, ms);
      }
      void this.runOne(running);
    }
    for (const cancel of response.cancels) {
      const running = this.running.get(attemptKey(cancel.jobId, cancel.taskId, cancel.attempt));
      if (running !== undefined) {
        const reason = cancel.reason || "cancelled by the daemon";
        this.abort(running, new DOMException(reason, "AbortError"));
      }
    }
  }

  private async runOne(running: Running): Promise<void> {
    const { task, controller } = running;
    let result: WorkResult;
    try {
      const payload: unknown = await this.handler(task, controller.signal);
      if (!(payload instanceof Uint8Array)) {
        const kind = payload === null ? "null" : typeof payload;
        throw new TypeError(
          `a worker's handler resolves to a Uint8Array (or Buffer), not ${kind} (task ${task.taskId})`,
        );
      }
      result =
        this.maxResultBytes > 0 && payload.byteLength > this.maxResultBytes
          ? this.failure(task, {
              message: `result of ${payload.byteLength} bytes is over the daemon's limit of ${this.maxResultBytes}`,
              type: "ResultTooLarge",
              retryable: false,
            })
          : success(task, payload);
    } catch (error) {
      result = this.failure(task, {
        message: (error instanceof Error ? error.message || error.name : String(error)) || "failed",
        type: error instanceof Error ? error.name : typeof error,
        retryable: this.retryable(error),
      });
    }
    this.finish(running, result);
  }

  /** The attempt was taken back (a cancel, its timeout): abort its handler and report it at
   * once, since the daemon counts the slot free only when a result comes. */
  private abort(running: Running, reason: DOMException): void {
    running.controller.abort(reason);
    const timedOut = reason.name === "TimeoutError";
    const error = { message: reason.message, type: reason.name, retryable: timedOut };
    this.finish(running, this.failure(running.task, error));
  }

  /** Hand an attempt's result to the next update, unless it was already (its first result
   * counts) or its stream is gone (then nobody will read it). */
  private finish(running: Running, result: WorkResult): void {
    if (this.running.get(running.task.key) !== running) return;
    this.running.delete(running.task.key);
    clearTimeout(running.timer);
    // Its last progress report stays queued: it goes in the same update as the result, and the
    // daemon applies progress first (dukatd.work_hub).
    this.results.push(result);
    this.scheduleFlush();
  }

  private failure(
    task: DispatchTask,
    error: { message: string; type: string; retryable: boolean },
  ): WorkResult {
    return { ...ids(task), outcome: { $case: "error", value: error } };
  }

  private readonly onProgress = (
    task: DispatchTask,
    fraction: number | undefined,
    message: string,
  ): void => {
    // The attempt ended: a late report says nothing. Else the latest report is all that matters.
    if (this.running.get(task.key)?.task !== task) return;
    this.progress.set(task.key, { ...ids(task), fraction, message });
    this.scheduleFlush();
  };

  // -- the updates ----------------------------------------------------------------------------

  /** Send everything ready once this turn of the event loop is over: the handlers that end
   * together (a batch of no-ops, a burst of progress) go in one update. */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.blocked) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Write one update of every result and progress report held (empty: a heartbeat). */
  private flush(): void {
    const call = this.call;
    if (call === undefined || !this.connectedNow) return;
    const results = this.results;
    this.results = [];
    const progress = [...this.progress.values()];
    this.progress.clear();
    const update = { results, progress, draining: this.draining };
    // A message as it is, not WorkRequest.create: that copies every result of the batch.
    const request: WorkRequest = { kind: { $case: "update", value: update } };
    const room = call.write(request);
    this.completed += results.length;
    this.armHeartbeat();
    // Heartbeats and drain() write past a block: one "drain" listener per block, not per write.
    if (!room && !this.blocked) {
      // The transport's buffer is full: hold what comes next until it drains, in one update.
      this.blocked = true;
      call.once("drain", () => {
        if (this.call !== call) return;
        this.blocked = false;
        if (this.results.length > 0 || this.progress.size > 0) this.scheduleFlush();
      });
    }
  }

  private armHeartbeat(): void {
    clearTimeout(this.heartbeat);
    this.heartbeat = setTimeout(() => this.flush(), this.heartbeatInterval);
  }

  /** Give the stream up once the daemon has been silent for `silence` ms (checked when that
   * long has passed since the last message, so a busy stream costs no timer per message). */
  private armWatchdog(call: WorkCall, wait: number): void {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (this.call !== call) return;
      const left = this.lastHeard + this.silence - performance.now();
      if (left > 0) {
        this.armWatchdog(call, left);
        return;
      }
      this.gaveUp = `the daemon sent nothing for ${this.silence} ms, its heartbeat timeout`;
      call.cancel();
    }, wait);
  }
}

function ids(task: DispatchTask): { jobId: string; taskId: string; attempt: number } {
  return { jobId: task.jobId, taskId: task.taskId, attempt: task.attempt };
}

function success(task: DispatchTask, payload: Uint8Array): WorkResult {
  // The generated type says Buffer (env=node), but its encoder writes any Uint8Array: no
  // wrapper is made per result.
  const bytes = payload as Buffer;
  return {
    ...ids(task),
    outcome: { $case: "success", value: { payload: bytes, contentType: "" } },
  };
}
