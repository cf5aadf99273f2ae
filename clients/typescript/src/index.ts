// @dukat/client: the TypeScript client of dukatd, the dukat task runner's daemon.
//
//   const client = connect("unix:/run/dukatd/dukatd.sock");
//   const handle = await client.submit([
//     exec("a", ["true"]),
//     exec("b", ["true"], { dependencies: ["a"] }),
//   ]);
//   for await (const event of handle.watch()) console.log(event.sequence, event.type);
//   const done = await handle.wait();
//
// Plain objects and string states in the engine's words (as the Python client's dukat.client);
// every duration in milliseconds; a failed call throws the DaemonError named after its status.
export { defaultAddress } from "./address.js";
export { Permit, RemoteBreaker } from "./breaker.js";
export { Client, connect, type ListJobsOptions } from "./client.js";
export {
  CLIENT_ID_KEY,
  type ConnectOptions,
  DEFAULT_MAX_MESSAGE_BYTES,
  channelOptions,
  type TlsOptions,
} from "./connection.js";
export type {
  BreakerConfig,
  BreakerStatus,
  DaemonStatus,
  QueueStatus,
  ResourceStatus,
} from "./daemon-status.js";
export { DispatchTask, type UpstreamResult } from "./dispatch-task.js";
export {
  CircuitBreakerError,
  DaemonError,
  DeadlineExceededError,
  DukatError,
  ERRORS_BY_CODE,
  FailedPreconditionError,
  type FieldViolation,
  InvalidArgumentError,
  NonRetryableError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
} from "./errors.js";
export { type CancelOptions, JobHandle, type SubmitOptions, type WatchOptions } from "./jobs.js";
export type { Logger } from "./logger.js";
export { CALL_RECONNECT, type Reconnect, WORKER_RECONNECT } from "./reconnect.js";
export type {
  Event,
  JobSnapshot,
  JobStateChanged,
  Snapshot,
  TaskCounts,
  TaskFailure,
  TaskOutput,
  TaskProgress,
  TaskResult,
  TaskStateChanged,
  TaskStatus,
  TaskWaiting,
} from "./results.js";
export {
  type DispatchAction,
  dispatch,
  type ExecAction,
  exec,
  type JobOptions,
  type JobSpec,
  job,
  type Resources,
  type RetryPolicy,
  type TaskOptions,
  type TaskSpec,
} from "./spec.js";
export {
  type BreakerState,
  isTerminal,
  type JobState,
  type TaskState,
  type TriggerRule,
} from "./states.js";
export { FATAL_CODES, type Handler, Worker, type WorkerOptions } from "./worker.js";
