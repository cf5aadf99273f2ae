// What a client reads back, in the engine's words (dukat.core.results and events): a job as it
// stands, its tasks, their results, and the events of its life.
import type { JobState, TaskState } from "./states.js";

/** What a task that succeeded gave: a worker's payload, or how an exec task's process ended. */
export type TaskResult =
  | { readonly type: "dispatch"; readonly payload: Uint8Array; readonly contentType: string }
  | {
      readonly type: "exec";
      readonly exitCode: number;
      /** The end of the process's standard output (the daemon keeps a bounded tail). */
      readonly stdout: Uint8Array;
      readonly stderr: Uint8Array;
    };

/** Why a task FAILED, as data: its last attempt's error. */
export interface TaskFailure {
  /** The error's kind: a dispatch task's WorkError.type as its worker sent it; else the
   * daemon's error class (TaskProcessError, TaskTimeoutError, CircuitBreakerError,
   * TaskInterruptedError). */
  readonly type: string;
  /** The error in words, without its type. */
  readonly message: string;
  /** An exec task's process that exited non-zero: its status; 0 otherwise. */
  readonly exitCode: number;
  /** The signal that killed an exec task's process; 0 when none did. */
  readonly signal: number;
  /** The ends of what the process wrote (getJob and wait only). */
  readonly stdout: Uint8Array;
  readonly stderr: Uint8Array;
}

/** A task at one moment. */
export interface TaskStatus {
  readonly id: string;
  readonly state: TaskState;
  /** Attempts started so far (the current one included), the interrupted ones too. */
  readonly attempts: number;
  /** Of the attempts, those interrupted (the daemon restarted, the worker left): they count
   * against the task's maxInterruptions, not its retry policy. */
  readonly interruptions: number;
  /** The error of the last failed attempt, or why the task was skipped or cancelled. */
  readonly error: string;
  readonly startedAt: Date | undefined;
  readonly finishedAt: Date | undefined;
  /** The latest progress reported by the running attempt, 0 to 1. */
  readonly progress: number | undefined;
  readonly progressMessage: string;
  readonly description: string;
  /** What the task gave, when it SUCCEEDED (getJob and wait only: never in events). */
  readonly result: TaskResult | undefined;
  /** Why it failed, when it FAILED (`error` says it in words). */
  readonly failure: TaskFailure | undefined;
  /** What a READY task waits for when it may never come by itself: "a worker for queue 'q'
   * (none connected)"; empty otherwise (getJob and wait only). */
  readonly waitingFor: string;
  /** The dispatch queue `waitingFor` is about (start a worker serving it); empty otherwise. */
  readonly waitingForQueue: string;
  /** The job this task's outcome comes from when a rerun carried it over (it SUCCEEDED there
   * and did not run here: attempts, times and result are that job's); empty otherwise. */
  readonly carriedFrom: string;
}

/** How many of a job's tasks are in each state. */
export type TaskCounts = Readonly<Record<TaskState, number>>;

/** A job at one moment. */
export interface JobSnapshot {
  readonly jobId: string;
  readonly state: JobState;
  /** Every task, in submission order; empty from listJobs (see taskCounts), and from wait()
   * when the daemon's retention dropped the job before it could be read. */
  readonly tasks: readonly TaskStatus[];
  readonly labels: Readonly<Record<string, string>>;
  readonly createdAt: Date | undefined;
  readonly finishedAt: Date | undefined;
  /** The sequence of the job's latest event: watch after it to follow on from here. */
  readonly lastSequence: number;
  /** Why the job is in its state, in words. */
  readonly message: string;
  readonly taskCounts: TaskCounts;
}

interface EventHead {
  /** Position in the job's event log: from 1, consecutive within a job. */
  readonly sequence: number;
  readonly jobId: string;
  /** When it happened (the daemon's clock). */
  readonly time: Date | undefined;
}

/** The job changed state. */
export interface JobStateChanged extends EventHead {
  readonly type: "JobStateChanged";
  readonly state: JobState;
  readonly message: string;
}

/** A task changed state. */
export interface TaskStateChanged extends EventHead {
  readonly type: "TaskStateChanged";
  readonly taskId: string;
  readonly state: TaskState;
  /** The attempt this change belongs to, from 1; 0 before the first. */
  readonly attempt: number;
  readonly message: string;
}

/** A running task said how far it got. */
export interface TaskProgress extends EventHead {
  readonly type: "TaskProgress";
  readonly taskId: string;
  /** 0 to 1; undefined when the task only says what it is doing. */
  readonly fraction: number | undefined;
  readonly message: string;
}

/** A task wrote output (exec tasks: whole lines of stdout or stderr). */
export interface TaskOutput extends EventHead {
  readonly type: "TaskOutput";
  readonly taskId: string;
  readonly stream: "stdout" | "stderr";
  readonly text: string;
}

/** A READY task waits for something that may never come by itself: a worker for its dispatch
 * queue when none is connected. Once per task (and daemon run); its state does not change. */
export interface TaskWaiting extends EventHead {
  readonly type: "TaskWaiting";
  readonly taskId: string;
  /** In words: "a worker for queue 'q' (none connected)". */
  readonly waitingFor: string;
  /** The dispatch queue it waits on a worker of; empty for another wait. */
  readonly queue: string;
}

/** The whole job, instead of events the daemon no longer holds. */
export interface Snapshot extends EventHead {
  readonly type: "Snapshot";
  readonly job: JobSnapshot;
}

/** One thing that happened to a job; `type` says which. */
export type Event =
  | JobStateChanged
  | TaskStateChanged
  | TaskProgress
  | TaskOutput
  | TaskWaiting
  | Snapshot;
