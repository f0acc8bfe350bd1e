/**
 * Circuit breakers (opossum) for everything outside our control: the payment provider, the
 * notification provider. A breaker counts failures over a rolling window; past the threshold it
 * opens and fails calls at once with `BreakerOpenError` (code `BREAKER_OPEN`, retryable), then
 * lets one probe through after `resetTimeoutMs` (half-open) and closes when the probe succeeds.
 *
 * `isFailure` decides which errors count: a card decline (HTTP 4xx) is the provider working as
 * intended and must never open the breaker. State changes are reported to `onStateChange` (the
 * breaker mixin broadcasts them) and counted in `stats()`.
 */
import CircuitBreaker from "opossum";
import { BreakerOpenError, CallTimeoutError } from "./errors";

export type BreakerState = "closed" | "open" | "halfOpen";

export interface BreakerOptions {
  /** Shown in errors, logs and stats, e.g. `psp`. */
  name: string;
  /** A call taking longer fails with `CallTimeoutError` (default 5 s). */
  timeoutMs?: number;
  /** Percentage of failed calls in the window that opens the breaker (default 50). */
  errorThresholdPercentage?: number;
  /** Calls needed in the window before the breaker may open (default 10). */
  volumeThreshold?: number;
  /** How long the breaker stays open before a half-open probe (default 10 s). */
  resetTimeoutMs?: number;
  /** Length of the rolling statistics window (default 10 s). */
  rollingWindowMs?: number;
  /** Whether an error counts against the breaker (default: every error). */
  isFailure?: (err: unknown) => boolean;
  onStateChange?: (change: BreakerStateChange) => void;
}

export interface BreakerStateChange {
  breaker: string;
  from: BreakerState;
  to: BreakerState;
  at: string;
}

export interface BreakerStats {
  name: string;
  state: BreakerState;
  /** Calls made through the breaker in the rolling window (attempted or rejected); likewise below. */
  fires: number;
  successes: number;
  /** Errors that counted against the breaker. */
  failures: number;
  /** Errors that did not count (e.g. declines). */
  ignored: number;
  timeouts: number;
  /** Calls refused because the breaker was open. */
  rejects: number;
  /** How many times it went into each state since start. */
  transitions: Record<BreakerState, number>;
}

const DEFAULTS = {
  timeoutMs: 5000,
  errorThresholdPercentage: 50,
  volumeThreshold: 10,
  resetTimeoutMs: 10_000,
  rollingWindowMs: 10_000,
};

/** One guarded dependency. `fire(fn)` runs `fn` under the breaker. */
export class Breaker {
  readonly name: string;
  private readonly breaker: CircuitBreaker<[() => Promise<unknown>], unknown>;
  private readonly timeoutMs: number;
  private readonly transitions: Record<BreakerState, number> = { closed: 0, open: 0, halfOpen: 0 };
  private current: BreakerState = "closed";
  private ignored = 0;

  constructor(private readonly options: BreakerOptions) {
    this.name = options.name;
    this.timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
    const isFailure = options.isFailure ?? (() => true);
    this.breaker = new CircuitBreaker((fn: () => Promise<unknown>) => fn(), {
      name: options.name,
      timeout: this.timeoutMs,
      errorThresholdPercentage: options.errorThresholdPercentage ?? DEFAULTS.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold ?? DEFAULTS.volumeThreshold,
      resetTimeout: options.resetTimeoutMs ?? DEFAULTS.resetTimeoutMs,
      rollingCountTimeout: options.rollingWindowMs ?? DEFAULTS.rollingWindowMs,
      rollingCountBuckets: 10,
      // opossum: true from the filter means "do not count this error"
      errorFilter: (err: unknown) => {
        const counts = isFailure(err);
        if (!counts) this.ignored += 1;
        return !counts;
      },
    });
    this.breaker.on("open", () => this.moveTo("open"));
    this.breaker.on("halfOpen", () => this.moveTo("halfOpen"));
    this.breaker.on("close", () => this.moveTo("closed"));
  }

  get state(): BreakerState {
    return this.current;
  }

  /**
   * Run `fn` under the breaker. Rejects with `BreakerOpenError` when open, `CallTimeoutError`
   * after `timeoutMs` (the call itself is not cancelled: pass an AbortSignal to it for that),
   * or `fn`'s own error.
   */
  async fire<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return (await this.breaker.fire(fn)) as T;
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (code === "EOPENBREAKER") throw new BreakerOpenError(this.name);
      if (code === "ETIMEDOUT" && CircuitBreaker.isOurError(err as Error))
        throw new CallTimeoutError(this.name, this.timeoutMs);
      throw err;
    }
  }

  stats(): BreakerStats {
    const s = this.breaker.stats;
    return {
      name: this.name,
      state: this.current,
      fires: s.fires,
      successes: s.successes,
      failures: s.failures,
      ignored: this.ignored,
      timeouts: s.timeouts,
      rejects: s.rejects,
      transitions: { ...this.transitions },
    };
  }

  /** Stop its timers; later calls are refused. */
  shutdown(): void {
    this.breaker.shutdown();
  }

  private moveTo(to: BreakerState): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    this.transitions[to] += 1;
    this.options.onStateChange?.({ breaker: this.name, from, to, at: new Date().toISOString() });
  }
}
