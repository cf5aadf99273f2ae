// How the client rides out a daemon that is briefly gone (restarting, draining, a new socket):
// the policy, and one run of retries under it. The same defaults and jitter as the Python
// client's (dukat/client/_reconnect.py).

/** Retries of calls that failed with UNAVAILABLE. Only calls safe to repeat are retried:
 * Submit with its request id, reads, Cancel, a watch resumed from its last sequence. Times in
 * milliseconds. */
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
}

/** A whole policy, every default filled in and checked. */
export type ReconnectPolicy = Required<Reconnect>;

/** The default for calls. */
export const CALL_RECONNECT: ReconnectPolicy = Object.freeze({
  initialBackoff: 50,
  maxBackoff: 2_000,
  multiplier: 2,
  giveUpAfter: 30_000,
});

/** A worker's default: first try 100 ms after a loss, waits doubling to 5 s, never giving up. */
export const WORKER_RECONNECT: ReconnectPolicy = Object.freeze({
  initialBackoff: 100,
  maxBackoff: 5_000,
  multiplier: 2,
  giveUpAfter: null,
});

/** `reconnect` over `defaults`, checked: a RangeError names what is wrong. */
export function reconnectPolicy(
  reconnect: Reconnect | undefined,
  defaults: ReconnectPolicy,
): ReconnectPolicy {
  const policy: ReconnectPolicy = { ...defaults, ...definedOnly(reconnect ?? {}) };
  const { initialBackoff, maxBackoff, multiplier, giveUpAfter } = policy;
  if (!(0 <= initialBackoff && initialBackoff <= maxBackoff)) {
    throw new RangeError(
      `need 0 <= initialBackoff <= maxBackoff, not ${initialBackoff} and ${maxBackoff}`,
    );
  }
  if (!(multiplier >= 1)) {
    throw new RangeError(`multiplier must be at least 1, not ${multiplier}`);
  }
  if (giveUpAfter !== null && !(giveUpAfter >= 0)) {
    throw new RangeError(`giveUpAfter must be 0 or more (or null), not ${giveUpAfter}`);
  }
  return Object.freeze(policy);
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** One run of retries under a policy: `await backoff.wait()`, or give up (false). */
export class Backoff {
  private started: number | null = null;
  private next: number;

  constructor(readonly policy: ReconnectPolicy) {
    this.next = policy.initialBackoff;
  }

  /** True from the first wait until a reset: an outage is being ridden out. */
  get retrying(): boolean {
    return this.started !== null;
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
    const limit = this.policy.giveUpAfter;
    if (limit !== null && now - this.started >= limit) {
      return false;
    }
    // Full jitter: many clients of one restarted daemon do not come back in step.
    let delay = this.next * (0.5 + Math.random() / 2);
    if (limit !== null) {
      delay = Math.min(delay, Math.max(0, this.started + limit - now));
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
