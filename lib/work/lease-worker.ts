/**
 * The one lease-claiming work loop, used by the outbox relay, the notification sender and the
 * payment charger. It claims due items in batches (usually with `claimWithLease`, lib/work/
 * lease-claim.ts), processes at most `maxInFlight` at once, and claims again:
 *
 * - at once while the last claim came back full (a backlog), once `refillBatch` slots are free;
 * - on `wake()` (a commit that added work; a wake during a claim is kept for the next one);
 * - when a `wakeAt` time falls due on its clock (a retry), and at least every `pollIntervalMs`;
 * - once more when the last item of a claim that found work is done, so that "nothing in flight
 *   and the latest claim found nothing" (`idle()`) is reached without waiting for a poll.
 *
 * Time is read only from `clock`; poll, renewal and stop bounds are real timers, `unref()`ed and
 * cleared on stop. A `process` that throws is logged; the item's lease lapses and it is claimed
 * again. Guarantees and tuning: docs/outbox.md ("The lease-claiming worker").
 */
import type { Clock } from "../clock";

export interface WorkerLogger {
  info(...a: unknown[]): void;
  warn(...a: unknown[]): void;
  error(...a: unknown[]): void;
}

export interface LeaseWorkerOptions<T> {
  /** Names the loop in logs: "outbox relay", "notification sender", "payment charger". */
  name: string;
  /** This instance's lease owner id. */
  owner: string;
  clock: Clock;
  logger: WorkerLogger;
  /** Most items processed at once. */
  maxInFlight: number;
  /** With items in flight, claim again only once this many slots are free (default max(1, ⌊maxInFlight/4⌋)). */
  refillBatch?: number;
  /** Most items asked for in one claim (default maxInFlight). A claim that fills it means more may be due. */
  claimBatch?: number;
  /** Look for work at least this often (ms) without a wake. */
  pollIntervalMs: number;
  /** A further cap on what may be claimed now, read before each claim: breaker open → 0, half-open → 1 − in flight. Default: no cap. */
  room?: (inFlight: number) => number;
  /** The item's id. */
  key(item: T): string;
  /** Lease up to `limit` due items to `owner`, none of `held` (in flight here). Usually `claimWithLease`. */
  claim(limit: number, held: ReadonlySet<string>): Promise<T[]>;
  /** Take one claimed item to its outcome and record it. A throw is logged; the item's lease lapses and it is claimed again. */
  process(item: T): Promise<void>;
  /** How long stop() waits for items in flight (ms). */
  stopTimeoutMs: number;
  /**
   * Extend the leases of the items in flight every `everyMs` (real time), for processing that may
   * outlive a lease (usually `renewLeases` of lease-claim.ts). Default: leases are not renewed.
   */
  renew?: { everyMs: number; run(held: ReadonlySet<string>): Promise<void> };
}

/** What `stats()` reports, counted since the worker was created. */
export interface LeaseWorkerStats {
  /** Claims made (successful or not). */
  claims: number;
  /** Items the claims returned. */
  claimed: number;
  /** Items whose `process` resolved. */
  processed: number;
  /** Items whose `process` threw. */
  processFailures: number;
  /** Claims that threw. */
  claimFailures: number;
  /** Items in flight now. */
  inFlight: number;
}

/** Timed wakes kept at most; later ones fall back on the poll. */
const MAX_WAKE_TIMES = 64;
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class LeaseWorker<T> {
  private readonly options: LeaseWorkerOptions<T>;
  private readonly refillBatch: number;
  private readonly claimBatch: number;
  private state: "new" | "running" | "stopping" | "stopped" = "new";
  /** Keys of the items in flight (what claims must skip), and their runs. */
  private readonly held = new Set<string>();
  private readonly runs = new Map<string, Promise<void>>();
  /** A wake arrived since the loop last claimed; cleared when it claims. */
  private requested = false;
  /** The last claim filled its limit: more may be due. */
  private backlog = false;
  private claiming = false;
  /** Items the latest claim found; undefined until a claim succeeded since start. */
  private lastFound: number | undefined;
  /** Resumes the parked loop; `room`: it waits for a slot (an item finishing), else for work. */
  private parked: { reason: "work" | "room"; resume: () => void } | undefined;
  private loopDone: Promise<void> = Promise.resolve();
  private stopping: Promise<void> | undefined;
  /** Clock times at which to wake, earliest first. */
  private wakeTimes: number[] = [];
  private wakeTimer: { at: number; timer: NodeJS.Timeout } | undefined;
  private unlisten: (() => void) | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewing = false;
  private idleWaiters: (() => void)[] = [];
  private readonly counters = { claims: 0, claimed: 0, processed: 0, processFailures: 0, claimFailures: 0 };

  constructor(options: LeaseWorkerOptions<T>) {
    for (const key of ["maxInFlight", "pollIntervalMs", "stopTimeoutMs"] as const) {
      const value = options[key];
      const minimum = key === "maxInFlight" ? 1 : 0;
      if (!Number.isInteger(value) || value < minimum) {
        throw new RangeError(`${options.name}: ${key} must be an integer ≥ ${minimum}, got ${value}`);
      }
    }
    if (typeof options.owner !== "string" || options.owner.length === 0) {
      throw new RangeError(`${options.name}: owner must be a non-empty string`);
    }
    this.options = options;
    this.refillBatch = bounded(
      options.refillBatch ?? Math.max(1, Math.floor(options.maxInFlight / 4)),
      options.maxInFlight,
      "refillBatch",
      options.name,
    );
    this.claimBatch = bounded(
      options.claimBatch ?? options.maxInFlight,
      Infinity,
      "claimBatch",
      options.name,
    );
  }

  get inFlight(): number {
    return this.held.size;
  }

  /** Whether the worker is claiming (started, not stopping). */
  get running(): boolean {
    return this.state === "running";
  }

  start(): void {
    if (this.state === "running") return;
    if (this.state === "stopping") throw new Error(`${this.label}: start() while stopping`);
    this.state = "running";
    this.stopping = undefined;
    this.requested = true;
    this.backlog = false;
    this.lastFound = undefined;
    this.unlisten = this.options.clock.onAdvance?.(() => this.fireDueWakes());
    const renew = this.options.renew;
    if (renew !== undefined) {
      this.renewTimer = setInterval(() => void this.renewLeases(), Math.max(1, renew.everyMs));
      this.renewTimer.unref();
    }
    this.loopDone = this.loop();
  }

  /** There may be work now. Many calls coalesce; a wake that arrives during a claim is not lost. */
  wake(): void {
    if (this.state !== "running") return;
    this.requested = true;
    this.parked?.resume();
  }

  /** Wake when clock time `at` falls due; moving a ManualClock past `at` wakes at once. */
  wakeAt(at: number): void {
    if (this.state !== "running") return;
    if (at <= this.options.clock.now()) {
      this.wake();
      return;
    }
    const times = this.wakeTimes;
    let i = times.length;
    while (i > 0 && (times[i - 1] as number) > at) i--;
    if (times[i - 1] === at) return;
    times.splice(i, 0, at);
    // the latest are dropped first: the poll still finds their work
    if (times.length > MAX_WAKE_TIMES) times.length = MAX_WAKE_TIMES;
    this.armWakeTimer();
  }

  /** Stop claiming, wait ≤ stopTimeoutMs for items in flight. Idempotent. */
  stop(): Promise<void> {
    if (this.state === "new" || this.state === "stopped") return Promise.resolve();
    this.stopping ??= this.shutDown();
    return this.stopping;
  }

  /** Resolves the next time the worker is idle: nothing in flight and its latest claim found nothing. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stats(): LeaseWorkerStats {
    return { ...this.counters, inFlight: this.held.size };
  }

  // -- the loop -----------------------------------------------------------------------------------

  private async loop(): Promise<void> {
    const { maxInFlight, room } = this.options;
    while (this.state === "running") {
      if (!this.requested && !this.backlog) {
        await this.park("work");
        continue;
      }
      const allowed = Math.min(maxInFlight - this.held.size, room?.(this.held.size) ?? Infinity);
      // refill in batches: a claim reads the due set, so one claim per freed slot would cost a
      // scan per item exactly when the backlog is longest
      if (allowed <= 0 || (this.held.size > 0 && allowed < this.refillBatch)) {
        if (this.held.size === 0) {
          // nothing may be claimed now (an open breaker): as if a claim found nothing
          this.requested = false;
          this.backlog = false;
          this.lastFound = 0;
          this.settleIdle();
        }
        await this.park(this.held.size > 0 ? "room" : "work");
        continue;
      }
      const limit = Math.min(allowed, this.claimBatch);
      this.requested = false;
      this.claiming = true;
      this.counters.claims++;
      let items: T[];
      try {
        items = await this.options.claim(limit, this.held);
      } catch (err) {
        this.counters.claimFailures++;
        this.claiming = false;
        this.backlog = false;
        this.lastFound = undefined;
        this.options.logger.warn(
          `[${this.options.name}] ${this.options.owner}: claiming failed: ${errorText(err)}`,
        );
        // try again on a wake or at the next poll, not at once
        await this.park("work");
        continue;
      }
      this.claiming = false;
      this.counters.claimed += items.length;
      this.backlog = items.length >= limit;
      this.lastFound = items.length;
      // claimed while stop() began: processed all the same (stop waits for them), never dropped
      for (const item of items) this.launch(item);
      this.settleIdle();
    }
  }

  /**
   * Wait for a wake, a timed wake or the poll (which counts as a wake); for `room`, also for an
   * item to finish.
   */
  private park(reason: "work" | "room"): Promise<void> {
    if (this.state !== "running") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.requested = true;
        resume();
      }, this.options.pollIntervalMs);
      timer.unref();
      const resume = (): void => {
        clearTimeout(timer);
        if (this.parked?.resume === resume) this.parked = undefined;
        resolve();
      };
      this.parked = { reason, resume };
    });
  }

  private launch(item: T): void {
    const key = this.options.key(item);
    // already in flight here (a custom claim returned it again): never processed twice at once
    if (this.held.has(key)) return;
    this.held.add(key);
    let running: Promise<void>;
    try {
      running = this.options.process(item);
    } catch (err) {
      running = Promise.reject(err);
    }
    const run = running
      .then(
        () => {
          this.counters.processed++;
        },
        (err: unknown) => {
          this.counters.processFailures++;
          this.options.logger.error(
            `[${this.options.name}] ${this.options.owner}: processing ${key} failed; it is claimed again once its lease lapses: ${errorText(err)}`,
          );
        },
      )
      .finally(() => {
        this.held.delete(key);
        this.runs.delete(key);
        // drained after a claim that found work: look once more rather than wait for the poll
        if (this.held.size === 0 && (this.lastFound ?? 0) > 0 && this.state === "running") {
          this.requested = true;
          this.parked?.resume();
        } else if (this.parked?.reason === "room") {
          this.parked.resume();
        }
        this.settleIdle();
      });
    this.runs.set(key, run);
  }

  // -- idle -----------------------------------------------------------------------------------------

  private isIdle(): boolean {
    if (this.held.size > 0) return false;
    if (this.state !== "running") return true;
    return !this.claiming && !this.requested && !this.backlog && this.lastFound === 0;
  }

  private settleIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  // -- timed wakes --------------------------------------------------------------------------------

  private armWakeTimer(): void {
    const next = this.wakeTimes[0];
    if (this.wakeTimer !== undefined) {
      if (this.wakeTimer.at === next) return;
      clearTimeout(this.wakeTimer.timer);
      this.wakeTimer = undefined;
    }
    if (next === undefined || this.state !== "running") return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, next - this.options.clock.now()));
    const timer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.fireDueWakes();
    }, delay);
    timer.unref();
    this.wakeTimer = { at: next, timer };
  }

  /** Wake for every timed wake that has fallen due on the clock; re-arm for the next one. */
  private fireDueWakes(): void {
    if (this.state !== "running") return;
    const now = this.options.clock.now();
    let due = false;
    while (this.wakeTimes.length > 0 && (this.wakeTimes[0] as number) <= now) {
      this.wakeTimes.shift();
      due = true;
    }
    if (due) this.wake();
    // a clock that is not the real time (a manual one) re-arms until it is moved past the time
    if (this.wakeTimer === undefined || this.wakeTimer.at !== this.wakeTimes[0]) this.armWakeTimer();
  }

  // -- renewal and stop -----------------------------------------------------------------------------

  private async renewLeases(): Promise<void> {
    const renew = this.options.renew;
    if (renew === undefined || this.renewing || this.held.size === 0) return;
    this.renewing = true;
    try {
      await renew.run(new Set(this.held));
    } catch (err) {
      this.options.logger.warn(
        `[${this.options.name}] ${this.options.owner}: renewing leases failed: ${errorText(err)}`,
      );
    } finally {
      this.renewing = false;
    }
  }

  private async shutDown(): Promise<void> {
    this.state = "stopping";
    this.unlisten?.();
    this.unlisten = undefined;
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer.timer);
    this.wakeTimer = undefined;
    this.wakeTimes = [];
    this.parked?.resume();
    await this.loopDone;
    if (this.runs.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        Promise.allSettled([...this.runs.values()]).then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), this.options.stopTimeoutMs);
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        this.options.logger.warn(
          `[${this.options.name}] ${this.options.owner}: stopped with ${this.held.size} items unfinished; their leases lapse and they are claimed again`,
        );
      }
    }
    // renewed while stop() waited for the items in flight; not after
    if (this.renewTimer !== undefined) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
    this.state = "stopped";
    this.settleIdle();
  }

  private get label(): string {
    return `${this.options.name} ${this.options.owner}`;
  }
}

function bounded(value: number, max: number, name: string, worker: string): number {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${worker}: ${name} must be an integer in [1, ${max}], got ${value}`);
  }
  return value;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
