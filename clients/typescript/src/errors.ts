// Every error the client throws. A failed call becomes the DaemonError subclass named after its
// gRPC status (as the Python client's dukat.errors), with the status's google.rpc.BadRequest
// violations decoded for INVALID_ARGUMENT.
//
//   DukatError
//    ├── DaemonError                 the daemon answered with an error status; `code` (the
//    │    │                          grpc status number), `codeName` ("NOT_FOUND"), `details`
//    │    ├── InvalidArgumentError    `violations` (google.rpc.BadRequest), `taskId`
//    │    ├── NotFoundError
//    │    ├── PermissionDeniedError
//    │    ├── UnauthenticatedError
//    │    ├── ResourceExhaustedError
//    │    ├── FailedPreconditionError
//    │    ├── DeadlineExceededError
//    │    └── UnavailableError        not reachable, or draining (after the client's retries)
//    └── CircuitBreakerError          a call the daemon's breaker refused; `retryAfter` (ms)
//
// NonRetryableError is for a worker's handler to throw: the attempt fails without retries.
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";

import { badRequestViolations, type FieldViolation } from "./status-details.js";

export type { FieldViolation } from "./status-details.js";

/** Base class of every error this client throws. */
export class DukatError extends Error {
  override get name(): string {
    return this.constructor.name;
  }
}

/** The daemon answered a call with an error status. */
export class DaemonError extends DukatError {
  /** The gRPC status code (grpc-js `status`). */
  readonly code: status;
  /** Its name, as the daemon's docs spell it: "NOT_FOUND". */
  readonly codeName: string;
  /** The status message (also the error's message). */
  readonly details: string;
  /** The call's trailing metadata. */
  readonly metadata: Metadata;

  /** `message`: the error's message when it says more than the status's `details`. */
  constructor(
    details: string,
    code: status = status.UNKNOWN,
    metadata = new Metadata(),
    message?: string,
  ) {
    const codeName = status[code] ?? String(code);
    super(message ?? (details || `the daemon answered ${codeName}`));
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.metadata = metadata;
  }
}

/** INVALID_ARGUMENT: the daemon rejected the request; nothing of it was applied. */
export class InvalidArgumentError extends DaemonError {
  /** The field violations the daemon sent (google.rpc.BadRequest), with paths as the request
   * names them: `job.tasks[3].dependencies[0]`. */
  readonly violations: readonly FieldViolation[];
  /** The offending task, when the daemon named one. */
  readonly taskId: string | undefined;

  constructor(details: string, code: status, metadata: Metadata) {
    super(details, code, metadata);
    const trailer = metadata.get("grpc-status-details-bin")[0];
    this.violations = trailer instanceof Buffer ? badRequestViolations(trailer) : [];
    this.taskId = taskIdOf(details);
  }
}

/** NOT_FOUND: an unknown job, task or breaker (or one the daemon no longer holds). */
export class NotFoundError extends DaemonError {}
/** PERMISSION_DENIED: the daemon does not allow this (exec tasks when exec is off). */
export class PermissionDeniedError extends DaemonError {}
/** UNAUTHENTICATED: the daemon wants a bearer token, and none or the wrong one came. */
export class UnauthenticatedError extends DaemonError {}
/** RESOURCE_EXHAUSTED: a limit of the daemon (message size, open watch streams, ...). */
export class ResourceExhaustedError extends DaemonError {}
/** FAILED_PRECONDITION: the request does not fit the state things are in. */
export class FailedPreconditionError extends DaemonError {}
/** DEADLINE_EXCEEDED: the call ran past its deadline. */
export class DeadlineExceededError extends DaemonError {}
/** UNAVAILABLE: the daemon cannot be reached, or is draining, and stayed so through the
 * client's reconnect attempts. */
export class UnavailableError extends DaemonError {}

type DaemonErrorClass = new (details: string, code: status, metadata: Metadata) => DaemonError;

/** The class of each status code; every other code is a plain DaemonError carrying it. */
export const ERRORS_BY_CODE: ReadonlyMap<status, DaemonErrorClass> = new Map<
  status,
  DaemonErrorClass
>([
  [status.INVALID_ARGUMENT, InvalidArgumentError],
  [status.NOT_FOUND, NotFoundError],
  [status.PERMISSION_DENIED, PermissionDeniedError],
  [status.UNAUTHENTICATED, UnauthenticatedError],
  [status.RESOURCE_EXHAUSTED, ResourceExhaustedError],
  [status.FAILED_PRECONDITION, FailedPreconditionError],
  [status.DEADLINE_EXCEEDED, DeadlineExceededError],
  [status.UNAVAILABLE, UnavailableError],
]);

/** The DaemonError for a failed call (grpc-js's ServiceError), with its details decoded. */
export function fromServiceError(error: ServiceError): DaemonError {
  const kind = ERRORS_BY_CODE.get(error.code) ?? DaemonError;
  const translated = new kind(error.details ?? "", error.code, error.metadata ?? new Metadata());
  return Object.assign(translated, { cause: error });
}

/** True for an error grpc-js gives a failed call (a status code and details). */
export function isServiceError(error: unknown): error is ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceError>).code === "number" &&
    "details" in error
  );
}

/** A breaker refused the call: open (`retryAfter` ms until trial calls), or half-open with its
 * trial calls taken. */
export class CircuitBreakerError extends DukatError {
  readonly breaker: string;
  readonly retryAfter: number;
  readonly halfOpen: boolean;

  constructor(breaker: string, retryAfter: number, halfOpen = false) {
    const wait = Math.max(0, retryAfter);
    super(
      halfOpen
        ? `circuit breaker '${breaker}' is half-open and its trial calls are taken`
        : `circuit breaker '${breaker}' is open; next trial call in ${(wait / 1000).toFixed(1)}s`,
    );
    this.breaker = breaker;
    this.retryAfter = wait;
    this.halfOpen = halfOpen;
  }
}

/** Thrown by a worker's handler: the attempt fails and is not retried, whatever attempts the
 * task's retry policy has left (the worker knows when no attempt can help). */
export class NonRetryableError extends DukatError {}

// The daemon's messages start "task 'x': ..." when a task is at fault (dukatd.status): the wire
// has no field for it.
function taskIdOf(details: string): string | undefined {
  const match = /^task (['"])(.*?)\1:/.exec(details);
  return match?.[2];
}
