// RemoteBreaker: one of the daemon's named circuit breakers, shared by every process on the host
// whatever its language (CircuitBreakerService Acquire/Record), as the Python client's
// RemoteBreaker (dukat/client/_breaker.py).
//
// `breaker.run(fn)` guards a call: refused, it throws CircuitBreakerError (with retryAfter);
// allowed, it runs fn and records its outcome: success, or failure for an error it throws. An
// abort (an error named "AbortError", as an aborted fetch or signal throws) records nothing
// but gives the permit back: it says nothing about the downstream. When the daemon cannot be
// told an outcome, that is logged, not thrown: the guarded call's outcome stays the caller's.
import { BREAKER_STATES, milliseconds } from "./convert.js";
import type { Connection } from "./connection.js";
import { CircuitBreakerError, DaemonError } from "./errors.js";
import { CallOutcome } from "./gen/dukat/v1/breaker.js";
import type { BreakerState } from "./states.js";

/** Leave to make one call through a breaker: report how it went, exactly once. */
export class Permit {
  private reported = false;

  /** @internal made by RemoteBreaker.acquire */
  constructor(
    private readonly breaker: RemoteBreaker,
    private readonly generation: bigint,
  ) {}

  /** The call succeeded. */
  success(): Promise<void> {
    return this.record(CallOutcome.CALL_OUTCOME_SUCCESS);
  }

  /** The call failed (`error` travels as words, for the reason of a transition). */
  failure(error?: unknown): Promise<void> {
    return this.record(CallOutcome.CALL_OUTCOME_FAILURE, describe(error));
  }

  /** The call was not made (or was aborted): counts neither way. */
  release(): Promise<void> {
    return this.record(CallOutcome.CALL_OUTCOME_RELEASE);
  }

  private async record(outcome: CallOutcome, error = ""): Promise<void> {
    if (this.reported) {
      throw new TypeError(`breaker '${this.breaker.name}': this permit's outcome was reported`);
    }
    this.reported = true;
    await this.breaker.record(this.generation, outcome, error);
  }
}

/** The daemon's breaker `name` (created there with its defaults on first acquire). */
export class RemoteBreaker {
  private lastState: BreakerState = "CLOSED";
  private lastRetryAfter = 0;

  constructor(
    private readonly connection: Connection,
    readonly name: string,
  ) {
    if (typeof name !== "string" || !name) {
      throw new TypeError(`a breaker needs a name, not ${JSON.stringify(name)}`);
    }
  }

  /** The state the daemon reported last (CLOSED before any call). */
  get state(): BreakerState {
    return this.lastState;
  }

  /** Milliseconds until trial calls, as the daemon said when it last refused one. */
  get retryAfter(): number {
    return this.lastState === "OPEN" ? this.lastRetryAfter : 0;
  }

  /** Ask the daemon for the breaker's state now (GetBreaker; NotFoundError for a breaker it
   * has not made yet). */
  async refresh(): Promise<BreakerState> {
    const breakers = this.connection.breakers;
    const { breaker } = await this.connection.call(breakers.getBreaker.bind(breakers), {
      name: this.name,
    });
    this.lastState = BREAKER_STATES.fromProto(breaker?.state ?? 0);
    this.lastRetryAfter = milliseconds(breaker?.retryAfter);
    return this.lastState;
  }

  /** Ask to make one call: a permit to report the outcome with, or undefined if refused. */
  async acquire(): Promise<Permit | undefined> {
    const breakers = this.connection.breakers;
    // Not retried: a lost answer may have taken one of a half-open breaker's trial slots.
    const response = await this.connection.call(
      breakers.acquire.bind(breakers),
      { name: this.name },
      { idempotent: false },
    );
    this.lastState = BREAKER_STATES.fromProto(response.state);
    this.lastRetryAfter = milliseconds(response.retryAfter);
    return response.allowed ? new Permit(this, response.permit) : undefined;
  }

  /** Run `call` through the breaker (see the module comment); resolves or throws as it does,
   * or throws CircuitBreakerError when the breaker refuses it. */
  async run<T>(call: () => Promise<T> | T): Promise<T> {
    const permit = await this.acquire();
    if (permit === undefined) throw this.refused();
    let value: T;
    try {
      value = await call();
    } catch (error) {
      await this.quietly(isAbort(error) ? permit.release() : permit.failure(error));
      throw error;
    }
    await this.quietly(permit.success());
    return value;
  }

  /** Close the breaker on the daemon and clear its counters (for every process). */
  async reset(): Promise<void> {
    const breakers = this.connection.breakers;
    const { breaker } = await this.connection.call(breakers.resetBreaker.bind(breakers), {
      name: this.name,
    });
    this.lastState = BREAKER_STATES.fromProto(breaker?.state ?? 0);
  }

  /** The error for a call the daemon did not allow, saying why. */
  refused(): CircuitBreakerError {
    return new CircuitBreakerError(this.name, this.retryAfter, this.lastState === "HALF_OPEN");
  }

  /** @internal Record: not retried, counting one failure twice could open the breaker. */
  async record(generation: bigint, outcome: CallOutcome, error: string): Promise<void> {
    const breakers = this.connection.breakers;
    const response = await this.connection.call(
      breakers.record.bind(breakers),
      { name: this.name, permit: generation, outcome, error: error.slice(0, 1000) },
      { idempotent: false },
    );
    this.lastState = BREAKER_STATES.fromProto(response.state);
  }

  // Throwing here would turn a call that succeeded into one that looks failed (and may be
  // repeated), or hide the call's own error: the breaker's bookkeeping is not the caller's.
  private async quietly(recording: Promise<void>): Promise<void> {
    try {
      await recording;
    } catch (error) {
      if (!(error instanceof DaemonError)) throw error;
      this.connection.logger.warn(`breaker '${this.name}': outcome not recorded: ${error.message}`);
    }
  }
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}

function describe(error: unknown): string {
  if (error === undefined) return "";
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
