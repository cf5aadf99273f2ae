// The one place the generated protobuf types meet the client's own: specs out, jobs and events
// in; durations (milliseconds here, Duration on the wire) and the enum tables.
import { CircuitBreakerState } from "./gen/dukat/v1/breaker.js";
import type { Duration } from "./gen/google/protobuf/duration.js";
import type { Event as EventProto } from "./gen/dukat/v1/event.js";
import { OutputStream } from "./gen/dukat/v1/event.js";
import {
  type Job,
  JobState as JobStateProto,
  type JobSpec as JobSpecProto,
  ResourceType,
  type RetryPolicy as RetryPolicyProto,
  type TaskCounts as TaskCountsProto,
  TaskState as TaskStateProto,
  type TaskResultValue,
  type TaskSpec as TaskSpecProto,
  type TaskStatus as TaskStatusProto,
  TriggerRule as TriggerRuleProto,
} from "./gen/dukat/v1/job.js";
import type { Event, JobSnapshot, TaskCounts, TaskResult, TaskStatus } from "./results.js";
import type { JobSpec, Resources, RetryPolicy, TaskSpec } from "./spec.js";
import type { BreakerState, JobState, TaskState, TriggerRule } from "./states.js";

// -- durations and bytes --------------------------------------------------------------------

/** Milliseconds as a Duration (exact to the nanosecond; negative ones too, for the daemon to
 * reject in its own words). */
export function duration(ms: number): Duration {
  if (!Number.isFinite(ms)) {
    throw new RangeError(`a duration must be a finite number of milliseconds, not ${ms}`);
  }
  const nanosTotal = BigInt(Math.round(ms * 1e6));
  const seconds = nanosTotal / 1_000_000_000n; // truncates: nanos take the sign of seconds
  return { seconds, nanos: Number(nanosTotal - seconds * 1_000_000_000n) };
}

/** A Duration in milliseconds; an unset one (proto3: absent) as 0. */
export function milliseconds(value: Duration | undefined): number {
  return value === undefined ? 0 : Number(value.seconds) * 1000 + value.nanos / 1e6;
}

/** Bytes as the generated code holds them (a Buffer over the same memory, no copy); a string
 * as UTF-8. */
export function toBuffer(value: Uint8Array | string | undefined): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  if (typeof value === "string") return Buffer.from(value, "utf8");
  if (Buffer.isBuffer(value)) return value;
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

// -- enums ----------------------------------------------------------------------------------

/** One client enum (string literals) <-> one proto enum; UNSPECIFIED (0) is never a member. */
class EnumTable<Name extends string> {
  private readonly byName: ReadonlyMap<Name, number>;
  private readonly byNumber: ReadonlyMap<number, Name>;

  constructor(
    readonly protoName: string,
    proto: Record<string, string | number>,
    prefix: string,
  ) {
    const pairs = Object.entries(proto).filter(
      (entry): entry is [string, number] =>
        typeof entry[1] === "number" && entry[1] !== 0 && entry[0].startsWith(prefix),
    );
    this.byName = new Map(
      pairs.map(([name, number]) => [name.slice(prefix.length) as Name, number]),
    );
    this.byNumber = new Map(
      pairs.map(([name, number]) => [number, name.slice(prefix.length) as Name]),
    );
  }

  toProto(name: Name): number {
    const number = this.byName.get(name);
    if (number === undefined) {
      throw new TypeError(`${this.protoName} has no ${JSON.stringify(name)}`);
    }
    return number;
  }

  fromProto(number: number): Name {
    const name = this.byNumber.get(number);
    if (name === undefined) {
      throw new TypeError(`the daemon sent ${this.protoName} ${number}, unknown to this client`);
    }
    return name;
  }
}

export const JOB_STATES = new EnumTable<JobState>("JobState", JobStateProto, "JOB_STATE_");
export const TASK_STATES = new EnumTable<TaskState>("TaskState", TaskStateProto, "TASK_STATE_");
export const BREAKER_STATES = new EnumTable<BreakerState>(
  "CircuitBreakerState",
  CircuitBreakerState,
  "CIRCUIT_BREAKER_STATE_",
);
const TRIGGER_RULES = new EnumTable<TriggerRule>("TriggerRule", TriggerRuleProto, "TRIGGER_RULE_");
const BUILT_IN_RESOURCES: ReadonlyMap<string, ResourceType> = new Map([
  ["cpu", ResourceType.RESOURCE_TYPE_CPU],
  ["memory", ResourceType.RESOURCE_TYPE_MEMORY],
  ["network", ResourceType.RESOURCE_TYPE_NETWORK],
  ["disk", ResourceType.RESOURCE_TYPE_DISK],
  ["gpu", ResourceType.RESOURCE_TYPE_GPU],
]);

// -- specs: client -> proto -----------------------------------------------------------------

/** The proto JobSpec of a job (or of a bare list of tasks). */
export function jobSpecToProto(job: JobSpec | readonly TaskSpec[]): JobSpecProto {
  const spec: JobSpec = isTaskList(job) ? { tasks: job } : job;
  return {
    tasks: spec.tasks.map(taskSpecToProto),
    labels: { ...spec.labels },
    failFast: spec.failFast ?? false,
    maxConcurrency: spec.maxConcurrency ?? 0,
  };
}

function isTaskList(job: JobSpec | readonly TaskSpec[]): job is readonly TaskSpec[] {
  return Array.isArray(job);
}

function taskSpecToProto(task: TaskSpec): TaskSpecProto {
  const action = task.action;
  return {
    id: task.id,
    description: task.description ?? "",
    dependencies: [...(task.dependencies ?? [])],
    resources: resourcesToProto(task.resources ?? {}),
    circuitBreaker: task.breaker ?? "",
    waitForBreaker: task.waitForBreaker ?? false,
    retry: task.retry === undefined ? undefined : retryToProto(task.retry),
    timeout: task.timeout === undefined ? undefined : duration(task.timeout),
    priority: task.priority ?? 0,
    triggerRule: task.triggerRule === undefined ? 0 : TRIGGER_RULES.toProto(task.triggerRule),
    labels: { ...task.labels },
    maxInterruptions: task.maxInterruptions,
    action:
      action.type === "exec"
        ? {
            $case: "exec",
            value: {
              argv: [...action.argv],
              env: { ...action.env },
              cwd: action.cwd ?? "",
              stdin: toBuffer(action.stdin),
            },
          }
        : {
            $case: "dispatch",
            value: {
              queue: action.queue,
              payload: toBuffer(action.payload),
              contentType: action.contentType ?? "",
            },
          },
  };
}

function resourcesToProto(resources: Resources): TaskSpecProto["resources"] {
  return Object.entries(resources).map(([name, amount]) => {
    const type = BUILT_IN_RESOURCES.get(name);
    return type === undefined
      ? { type: ResourceType.RESOURCE_TYPE_CUSTOM, amount, name }
      : { type, amount, name: "" };
  });
}

function retryToProto(retry: RetryPolicy | number): RetryPolicyProto {
  const policy = typeof retry === "number" ? { maxAttempts: retry } : retry;
  return {
    maxAttempts: policy.maxAttempts,
    initialBackoff:
      policy.initialBackoff === undefined ? undefined : duration(policy.initialBackoff),
    maxBackoff: policy.maxBackoff === undefined ? undefined : duration(policy.maxBackoff),
    multiplier: policy.multiplier ?? 0,
    jitter: policy.jitter,
  };
}

// -- jobs and events: proto -> client -------------------------------------------------------

export function jobFromProto(job: Job): JobSnapshot {
  return {
    jobId: job.jobId,
    state: JOB_STATES.fromProto(job.state),
    tasks: job.tasks.map(taskStatusFromProto),
    labels: job.labels,
    createdAt: job.createdAt,
    finishedAt: job.finishedAt,
    lastSequence: Number(job.lastSequence),
    message: job.message,
    taskCounts: taskCountsFromProto(job.taskCounts),
  };
}

export function taskStatusFromProto(task: TaskStatusProto): TaskStatus {
  return {
    id: task.id,
    state: TASK_STATES.fromProto(task.state),
    attempts: task.attempts,
    interruptions: task.interruptions,
    error: task.error,
    startedAt: task.startedAt,
    finishedAt: task.finishedAt,
    progress: task.progress,
    progressMessage: task.progressMessage,
    description: task.description,
    result: taskResultFromProto(task.result),
    failure: task.failure && { ...task.failure },
    waitingFor: task.waitingFor,
    waitingForQueue: task.waitingForQueue,
    carriedFrom: task.carriedFrom,
  };
}

/** A task's result; undefined for none, and for a kind newer than this client. */
export function taskResultFromProto(result: TaskResultValue | undefined): TaskResult | undefined {
  const kind = result?.kind;
  if (kind?.$case === "dispatch") {
    return { type: "dispatch", payload: kind.value.payload, contentType: kind.value.contentType };
  }
  if (kind?.$case === "exec") {
    const { exitCode, stdout, stderr } = kind.value;
    return { type: "exec", exitCode, stdout, stderr };
  }
  return undefined;
}

function taskCountsFromProto(counts: TaskCountsProto | undefined): TaskCounts {
  return {
    PENDING: counts?.pending ?? 0,
    READY: counts?.ready ?? 0,
    RUNNING: counts?.running ?? 0,
    RETRYING: counts?.retrying ?? 0,
    SUCCEEDED: counts?.succeeded ?? 0,
    FAILED: counts?.failed ?? 0,
    CANCELLED: counts?.cancelled ?? 0,
    SKIPPED: counts?.skipped ?? 0,
  };
}

/** The client's event for a job's Event message; undefined for a breaker transition (which
 * belongs to no job) and for a kind newer than this client (event.proto: skip those). */
export function eventFromProto(message: EventProto): Event | undefined {
  const head = { sequence: Number(message.sequence), jobId: message.jobId, time: message.time };
  const kind = message.kind;
  switch (kind?.$case) {
    case "jobState":
      return {
        type: "JobStateChanged",
        ...head,
        state: JOB_STATES.fromProto(kind.value.state),
        message: kind.value.message,
      };
    case "taskState":
      return {
        type: "TaskStateChanged",
        ...head,
        taskId: kind.value.taskId,
        state: TASK_STATES.fromProto(kind.value.state),
        attempt: kind.value.attempt,
        message: kind.value.message,
      };
    case "progress":
      return {
        type: "TaskProgress",
        ...head,
        taskId: kind.value.taskId,
        fraction: kind.value.fraction,
        message: kind.value.message,
      };
    case "output":
      return {
        type: "TaskOutput",
        ...head,
        taskId: kind.value.taskId,
        stream: kind.value.stream === OutputStream.OUTPUT_STREAM_STDERR ? "stderr" : "stdout",
        text: kind.value.text,
      };
    case "taskWaiting":
      return {
        type: "TaskWaiting",
        ...head,
        taskId: kind.value.taskId,
        waitingFor: kind.value.waitingFor,
        queue: kind.value.queue,
      };
    case "snapshot":
      return kind.value.job === undefined
        ? undefined
        : { type: "Snapshot", ...head, job: jobFromProto(kind.value.job) };
    default:
      return undefined;
  }
}
