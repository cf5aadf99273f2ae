// How the client rides out a daemon that is briefly gone (restarting, draining, a new socket):
// the policy, and one run of retries under it. The same defaults, budgets and jitter as the
// Python client's (dukat/client/_reconnect.py).

/**
 * Retries of calls that failed with UNAVAILABLE. Only calls safe to repeat are retried: Submit
 * with its request id, reads, Cancel, a watch resumed from its last sequence. Times in
 * milliseconds.
 *
 * Two budgets: a client that has never reached its daemon gives up after `connectWithin` (a
 * wrong address or a daemon not started is said within seconds, not after the long wait); one
 * that has reached it rides out an outage (a restart, an upgrade) for `giveUpAfter`.
 */
export interface Reconnect {
  /** Before the first retry. Default 50. */
  readonly initialBackoff?: number;
  /** The longest wait between two tries. Default 2,000. */
  readonly maxBackoff?: number;
  /** How much each wait grows over the previous one. Default 2. */
  readonly multiplier?: number;
  /** Without reaching the daemon for this long, the call fails with UnavailableError; null:
   * never give up; 0: do not retry at all. Default 30,000. */
  readonly giveUpAfter?: number | null;
  /** The same, for a client that has not reached the daemon yet (never more than
   * `giveUpAfter`); null: `giveUpAfter` from the first call on. Default 5,000. */
  readonly connectWithin?: number | null;
}

/** A whole policy, every default filled in and checked. */
export type ReconnectPolicy = Required<Reconnect>;

/** The default for calls. */
export const CALL_RECONNECT: ReconnectPolicy = Object.freeze({
  initialBackoff: 50,
  maxBackoff: 2_000,
  multiplier: 2,
  giveUpAfter: 30_000,
  connectWithin: 5_000,
});

/** A worker's default: first try 100 ms after a loss, waits doubling to 5 s, never giving up
 * (a worker keeps trying a daemon that is not there yet as long as one that went away). */
export const WORKER_RECONNECT: ReconnectPolicy = Object.freeze({
  initialBackoff: 100,
  maxBackoff: 5_000,
  multiplier: 2,
  giveUpAfter: null,
  connectWithin: null,
});

/** `reconnect` over `defaults`, checked: a RangeError names what is wrong. */
export function reconnectPolicy(
  reconnect: Reconnect | undefined,
  defaults: ReconnectPolicy,
): ReconnectPolicy {
  const given = Object.entries(reconnect ?? {}).filter(([, value]) => value !== undefined);
  const policy: ReconnectPolicy = { ...defaults, ...Object.fromEntries(given) };
  const { initialBackoff, maxBackoff, multiplier } = policy;
  if (!(0 <= initialBackoff && initialBackoff <= maxBackoff)) {
    throw new RangeError(
      `need 0 <= initialBackoff <= maxBackoff, not ${initialBackoff} and ${maxBackoff}`,
    );
  }
  if (!(multiplier >= 1)) {
    throw new RangeError(`multiplier must be at least 1, not ${multiplier}`);
  }
  for (const name of ["giveUpAfter", "connectWithin"] as const) {
    const value = policy[name];
    if (value !== null && !(value >= 0)) {
      throw new RangeError(`${name} must be 0 or more (or null), not ${value}`);
    }
  }
  return Object.freeze(policy);
}

/** Milliseconds of retries before giving up, for a client that has (not) reached the daemon
 * yet; null: no limit. */
function limit(policy: ReconnectPolicy, reached: boolean): number | null {
  const first = policy.connectWithin;
  const last = policy.giveUpAfter;
  if (reached || first === null) return last;
  return last === null ? first : Math.min(first, last);
}

/** One run of retries under a policy: `await backoff.wait()`, or give up (false). `reached()`:
 * whether the client has reached its daemon yet, for the policy's first budget; without it,
 * only `giveUpAfter` counts. */
export class Backoff {
  private started: number | null = null;
  private next: number;

  constructor(
    readonly policy: ReconnectPolicy,
    private readonly reached?: () => boolean,
  ) {
    this.next = policy.initialBackoff;
  }

  /** True from the first wait until a reset: an outage is being ridden out. */
  get retrying(): boolean {
    return this.started !== null;
  }

  /** Milliseconds since the first wait of this run (0 when not retrying). */
  get waited(): number {
    return this.started === null ? 0 : performance.now() - this.started;
  }

  /** The daemon answered: the next outage starts its own count. */
  reset(): void {
    this.started = null;
    this.next = this.policy.initialBackoff;
  }

  /** Sleep before the next try; false when the policy says to give up instead. `signal`
   * cuts the sleep short (then true: the caller sees its own signal). */
  async wait(signal?: AbortSignal): Promise<boolean> {
    const now = performance.now();
    this.started ??= now;
    const budget = limit(this.policy, this.reached === undefined || this.reached());
    if (budget !== null && now - this.started >= budget) {
      return false;
    }
    // Full jitter: many clients of one restarted daemon do not come back in step.
    let delay = this.next * (0.5 + Math.random() / 2);
    if (budget !== null) {
      delay = Math.min(delay, Math.max(0, this.started + budget - now));
    }
    this.next = Math.min(this.policy.maxBackoff, this.next * this.policy.multiplier);
    await sleep(delay, signal);
    return true;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
