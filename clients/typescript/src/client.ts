// connect() and Client: the daemon's scheduler from TypeScript, in the engine's words, as the
// Python client's (dukat/client/_client.py).
import { RemoteBreaker } from "./breaker.js";
import { type ConnectOptions, Connection } from "./connection.js";
import { JOB_STATES, jobFromProto } from "./convert.js";
import {
  type BreakerStatus,
  breakerStatusFromProto,
  type DaemonStatus,
  daemonStatusFromProto,
} from "./daemon-status.js";
import { ListJobsRequest } from "./gen/dukat/v1/scheduler.js";
import {
  type CancelOptions,
  JobHandle,
  type SubmitOptions,
  submitJob,
  type WatchOptions,
} from "./jobs.js";
import type { Event, JobSnapshot } from "./results.js";
import type { JobSpec, TaskSpec } from "./spec.js";
import type { JobState } from "./states.js";
import { type Handler, Worker, type WorkerOptions } from "./worker.js";

/** Filters of `listJobs`. */
export interface ListJobsOptions {
  /** Only jobs in this state, or in one of these. */
  readonly state?: JobState | readonly JobState[];
  /** Only jobs having every one of these labels. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Jobs per call; default the daemon's. */
  readonly pageSize?: number;
}

/** A connection to one dukatd, made by `connect()`. No call is made until the first one: a
 * daemon that is not there shows then, as UnavailableError once the reconnect policy gives up. */
export class Client {
  private readonly remoteBreakers = new Map<string, RemoteBreaker>();
  private readonly workers = new Set<Worker>();

  /** @internal made by connect() */
  constructor(private readonly connection: Connection) {}

  /** The address dialled (`unix:/path` or `host:port`). */
  get address(): string {
    return this.connection.address;
  }

  /** Submit a whole job; the daemon accepts all of it or throws InvalidArgumentError. */
  submit(job: JobSpec | readonly TaskSpec[], options: SubmitOptions = {}): Promise<JobHandle> {
    return submitJob(this.connection, job, options);
  }

  /**
   * Run the finished job `jobId` again from where it failed: a new job, whose handle this
   * resolves to, that carries over what succeeded in it and runs the rest.
   *
   * `job`: a corrected spec (left out: the old job's own). A task is carried over, SUCCEEDED
   * at once with its result (`TaskStatus.carriedFrom` names `jobId`), when it SUCCEEDED in the
   * old job with the same action, dependencies, trigger rule and labels, and each of its
   * upstreams is carried over too; the others run, so those downstream of a task that runs
   * again run again. NotFoundError when the daemon no longer holds the old job (its
   * retention), FailedPreconditionError while it still runs.
   */
  rerun(
    jobId: string,
    job?: JobSpec | readonly TaskSpec[],
    options: SubmitOptions = {},
  ): Promise<JobHandle> {
    return this.job(jobId).rerun(job, options);
  }

  /** A handle to a job by id (no call is made; a wrong id shows on first use). */
  job(jobId: string): JobHandle {
    return new JobHandle(this.connection, jobId);
  }

  /** The job now, with every task and result; NotFoundError for an id the daemon lacks. */
  getJob(jobId: string): Promise<JobSnapshot> {
    return this.job(jobId).get();
  }

  /** The job's events, live, to its terminal event, resumed across daemon restarts
   * (`JobHandle.watch`). */
  watch(jobId: string, options: WatchOptions = {}): AsyncGenerator<Event, void, undefined> {
    return this.job(jobId).watch(options);
  }

  /** Wait for the job to end; the job then (`JobHandle.wait`). */
  wait(jobId: string): Promise<JobSnapshot> {
    return this.job(jobId).wait();
  }

  /** Cancel a job, or some of its tasks and their downstream; how many tasks this cancelled. */
  cancel(jobId: string, options: CancelOptions = {}): Promise<number> {
    return this.job(jobId).cancel(options);
  }

  /** Jobs, newest first, without their tasks (see `taskCounts`), a page fetched at a time. */
  async *listJobs(options: ListJobsOptions = {}): AsyncGenerator<JobSnapshot, void, undefined> {
    const states = options.state === undefined ? [] : [options.state].flat();
    const request = ListJobsRequest.create({
      states: states.map((state) => JOB_STATES.toProto(state)),
      labels: { ...options.labels },
      pageSize: options.pageSize ?? 0,
    });
    const scheduler = this.connection.scheduler;
    for (;;) {
      const response = await this.connection.call(scheduler.listJobs.bind(scheduler), request);
      for (const job of response.jobs) yield jobFromProto(job);
      if (!response.nextPageToken) return;
      request.pageToken = response.nextPageToken;
    }
  }

  /** The daemon's version, start time, addresses and capacity in use (GetStatus). */
  async status(): Promise<DaemonStatus> {
    const daemon = this.connection.daemon;
    const response = await this.connection.call(daemon.getStatus.bind(daemon), {});
    if (response.status === undefined) throw new TypeError("GetStatus answered no status");
    return daemonStatusFromProto(response.status);
  }

  /** Every breaker the daemon knows, sorted by name (ListBreakers). */
  async breakers(): Promise<BreakerStatus[]> {
    const breakers = this.connection.breakers;
    const response = await this.connection.call(breakers.listBreakers.bind(breakers), {});
    return response.breakers.map(breakerStatusFromProto);
  }

  /** The daemon's circuit breaker `name`, shared by every process on the host; one object
   * per name and client. */
  breaker(name: string): RemoteBreaker {
    let breaker = this.remoteBreakers.get(name);
    if (breaker === undefined) {
      breaker = new RemoteBreaker(this.connection, name);
      this.remoteBreakers.set(name, breaker);
    }
    return breaker;
  }

  /** A worker serving the dispatch tasks of `queues` with `handler`, from now until
   * `worker.stop()` or `worker.drain()` (see Worker). */
  worker(
    queues: string | readonly string[],
    handler: Handler,
    options: WorkerOptions = {},
  ): Worker {
    const worker = new Worker(this.connection, queues, handler, options);
    this.workers.add(worker);
    const forget = (): void => void this.workers.delete(worker);
    worker.done.then(forget, forget);
    return worker;
  }

  /** Stop this client's workers and close the channel; calls still running end with an
   * error. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.workers].map((worker) => worker.stop()));
    this.connection.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A client of the daemon at `address`: `unix:/path/to/dukatd.sock` or `host:port`; empty:
 * $DUKAT_ADDRESS, else the socket dukatd listens on by default. No call is made here.
 */
export function connect(address?: string, options: ConnectOptions = {}): Client {
  return new Client(new Connection(address, options));
}
