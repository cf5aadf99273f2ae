// What a daemon says of itself (DaemonService.GetStatus) and of its breakers
// (CircuitBreakerService.ListBreakers), as the Python client's dukat.daemon_status.
import type { CircuitBreaker } from "./gen/dukat/v1/breaker.js";
import type { DaemonStatus as DaemonStatusProto } from "./gen/dukat/v1/daemon.js";
import { BREAKER_STATES, milliseconds } from "./convert.js";
import type { BreakerState } from "./states.js";

/** One resource of the daemon's pool: how much there is, how much is held now. */
export interface ResourceStatus {
  readonly name: string;
  readonly capacity: number;
  readonly used: number;
}

/** A queue of dispatch tasks: the workers connected that serve it, and their slots. */
export interface QueueStatus {
  readonly name: string;
  readonly workers: number;
  readonly slots: number;
}

/** A daemon at one moment. */
export interface DaemonStatus {
  readonly version: string;
  readonly startedAt: Date | undefined;
  /** The addresses it serves, as given to --listen. */
  readonly listen: readonly string[];
  /** Its journal's directory; undefined when it keeps nothing (--ephemeral). */
  readonly stateDir: string | undefined;
  readonly allowExec: boolean;
  readonly maxConcurrency: number;
  readonly tasksRunning: number;
  readonly jobsLive: number;
  readonly jobsFinished: number;
  readonly resources: readonly ResourceStatus[];
  readonly queues: readonly QueueStatus[];
}

/** How a breaker decides, every default filled in (durations in ms). */
export interface BreakerConfig {
  readonly failureThreshold: number;
  readonly timeout: number;
  readonly halfOpenMaxCalls: number;
  readonly successThreshold: number;
  readonly failureRateThreshold: number;
  readonly windowSize: number;
}

/** A named breaker at one moment, as the daemon shows it. */
export interface BreakerStatus {
  readonly name: string;
  readonly state: BreakerState;
  readonly config: BreakerConfig;
  readonly consecutiveFailures: number;
  /** While OPEN: ms until trial calls are let through; 0 otherwise. */
  readonly retryAfter: number;
}

export function daemonStatusFromProto(status: DaemonStatusProto): DaemonStatus {
  return {
    version: status.version,
    startedAt: status.startedAt,
    listen: status.listen,
    stateDir: status.stateDir || undefined,
    allowExec: status.allowExec,
    maxConcurrency: status.maxConcurrency,
    tasksRunning: status.tasksRunning,
    jobsLive: status.jobsLive,
    jobsFinished: status.jobsFinished,
    resources: status.resources.map(({ name, capacity, used }) => ({ name, capacity, used })),
    queues: status.queues.map(({ name, workers, slots }) => ({ name, workers, slots })),
  };
}

export function breakerStatusFromProto(breaker: CircuitBreaker): BreakerStatus {
  const config = breaker.config;
  return {
    name: breaker.name,
    state: BREAKER_STATES.fromProto(breaker.state),
    config: {
      failureThreshold: config?.failureThreshold ?? 0,
      timeout: milliseconds(config?.timeout),
      halfOpenMaxCalls: config?.halfOpenMaxCalls ?? 0,
      successThreshold: config?.successThreshold ?? 0,
      failureRateThreshold: config?.failureRateThreshold ?? 0,
      windowSize: config?.windowSize ?? 0,
    },
    consecutiveFailures: breaker.consecutiveFailures,
    retryAfter: milliseconds(breaker.retryAfter),
  };
}
