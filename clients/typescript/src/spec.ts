// What a client submits, in the engine's words: a job of tasks, each an exec or a dispatch
// action with its options. Plain objects; `exec`, `dispatch` and `job` make them. Every
// duration here is in milliseconds, as everywhere in this client.
import type { TriggerRule } from "./states.js";

/** Run a program as a subprocess of the daemon (only when it runs with --allow-exec). */
export interface ExecAction {
  readonly type: "exec";
  /** The program and its arguments; argv[0] is looked up on the daemon's PATH. */
  readonly argv: readonly string[];
  /** Added to the environment the daemon gives tasks. */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory; default: the daemon's. */
  readonly cwd?: string;
  /** Written to the process's standard input, which is then closed. */
  readonly stdin?: Uint8Array | string;
}

/** Hand the task to a worker serving `queue` (`client.worker`). */
export interface DispatchAction {
  readonly type: "dispatch";
  readonly queue: string;
  /** Opaque input for the worker (a string travels as UTF-8). */
  readonly payload?: Uint8Array | string;
  /** How to read the payload, a media type such as "application/json". */
  readonly contentType?: string;
}

/** Attempts and exponential backoff with a cap and jitter; unset fields take the daemon's
 * defaults (1 attempt, 1 s, 60 s, 2, 0.2). */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  readonly maxAttempts: number;
  /** Wait before the second attempt, ms. */
  readonly initialBackoff?: number;
  /** The longest wait between two attempts, ms. */
  readonly maxBackoff?: number;
  /** How much each wait grows over the previous one. */
  readonly multiplier?: number;
  /** Spread of each wait as a fraction of it, 0 to 1. */
  readonly jitter?: number;
}

/** Amounts of resources a task holds while it runs, by name: the daemon's built-in kinds
 * `cpu`, `memory`, `network`, `disk` and `gpu` (capacity 1.0 each unless told otherwise), any
 * other name one of its custom resources (`--resource seats=4`). */
export type Resources = Readonly<Record<string, number>>;

/** Options of a task, whatever its action. */
export interface TaskOptions {
  /** What the task does, in words, for people. */
  readonly description?: string;
  /** Ids of the tasks of the same job that must end before this one runs. */
  readonly dependencies?: readonly string[];
  /** What it holds while it runs; all of it is taken at once or none. */
  readonly resources?: Resources;
  /** How the task is retried: a policy, or just its number of attempts. Default: one
   * attempt. */
  readonly retry?: RetryPolicy | number;
  /** How long one attempt may run, ms; default no limit. */
  readonly timeout?: number;
  /** Name of the daemon's circuit breaker guarding the task's downstream. */
  readonly breaker?: string;
  /** While the breaker is open: wait for it to half-open rather than fail the attempt. */
  readonly waitForBreaker?: boolean;
  /** Higher runs first among the job's ready tasks. */
  readonly priority?: number;
  /** When the task may run, given how its dependencies ended; default ALL_SUCCESS. */
  readonly triggerRule?: TriggerRule;
  /** Free-form key/value labels, for people and tools. */
  readonly labels?: Readonly<Record<string, string>>;
  /** How many interrupted attempts the task is run again after (an attempt lost through no
   * fault of the task: the daemon restarted, its worker left); they do not count against
   * `retry`. Default the daemon's, 3; 0: the task runs at most once. */
  readonly maxInterruptions?: number;
}

/** One task of a job. */
export interface TaskSpec extends TaskOptions {
  /** Unique within the job; other tasks name it in their dependencies. */
  readonly id: string;
  readonly action: ExecAction | DispatchAction;
}

/** Options of a whole job. */
export interface JobOptions {
  /** Free-form key/value labels, for `listJobs` filters and for people. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Cancel the rest of the job as soon as one task fails (after its retries). */
  readonly failFast?: boolean;
  /** At most this many of the job's tasks in flight at once; default: no limit of its own. */
  readonly maxConcurrency?: number;
}

/** A DAG of tasks, submitted whole: the daemon accepts every task or none. */
export interface JobSpec extends JobOptions {
  readonly tasks: readonly TaskSpec[];
}

/** A task that runs `argv` on the daemon's host: `exec("build", ["make", "all"])`. */
export function exec(
  id: string,
  argv: readonly string[],
  options: TaskOptions & Omit<ExecAction, "type" | "argv"> = {},
): TaskSpec {
  const { env, cwd, stdin, ...task } = options;
  return { ...task, id, action: { type: "exec", argv, env, cwd, stdin } };
}

/** A task a worker serving `queue` runs: `dispatch("resize", "images", payload)`. */
export function dispatch(
  id: string,
  queue: string,
  payload: Uint8Array | string = new Uint8Array(),
  options: TaskOptions & { readonly contentType?: string } = {},
): TaskSpec {
  const { contentType, ...task } = options;
  return { ...task, id, action: { type: "dispatch", queue, payload, contentType } };
}

/** A job of `tasks`: `job([exec(...), dispatch(...)], { labels: { team: "data" } })`. */
export function job(tasks: readonly TaskSpec[], options: JobOptions = {}): JobSpec {
  return { ...options, tasks };
}
