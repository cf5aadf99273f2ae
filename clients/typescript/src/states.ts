// The engine's states, in its words (dukat.core.states), as string literals.

/** Where a task is in its life: PENDING -> READY -> RUNNING -> a terminal state (SUCCEEDED,
 * FAILED, CANCELLED, SKIPPED), with RETRYING between attempts. */
export type TaskState =
  | "PENDING"
  | "READY"
  | "RUNNING"
  | "RETRYING"
  | "SUCCEEDED"
  | "FAILED"
  | "CANCELLED"
  | "SKIPPED";

/** A job is RUNNING until every task has ended, then SUCCEEDED, FAILED or CANCELLED. */
export type JobState = "PENDING" | "RUNNING" | "SUCCEEDED" | "FAILED" | "CANCELLED";

/** When a task may run, given how its dependencies ended: every one succeeded (the default),
 * or every one ended whatever the outcome (clean-up steps). */
export type TriggerRule = "ALL_SUCCESS" | "ALL_DONE";

/** A circuit breaker's state. */
export type BreakerState = "CLOSED" | "OPEN" | "HALF_OPEN";

const TERMINAL: ReadonlySet<string> = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"]);

/** True for the states nothing comes after. */
export function isTerminal(state: JobState | TaskState): boolean {
  return TERMINAL.has(state);
}
