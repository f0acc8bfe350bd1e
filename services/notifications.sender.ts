/**
 * The notification sender: claims due notifications with a lease, hands each to the provider
 * behind the `notify` breaker, and records the outcome on the aggregate (models/notification.ts),
 * saved through the repository. One runs in every notifications instance; several share a store.
 *
 * While the breaker is open it claims nothing; half-open, one notification at a time (the probe).
 * The provider is never called inside a transaction, and the notification id is its idempotency
 * key, so a resend after a crash or a lost answer reaches the customer once.
 */
import type { Breaker } from "../lib/breaker";
import { dateOf, type Clock } from "../lib/clock";
import type { NotificationProvider, SendReceipt } from "../lib/notify/notify.port";
import type { NotificationRepository } from "../lib/repositories/notification.repository";
import { LeaseWorker, type LeaseWorkerStats } from "../lib/work/lease-worker";
import type { Notification, NotificationEvent, NotificationState, RetryPolicy } from "../models/notification";

export interface SenderLogger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** The sender's part of the service settings (docs/notifications.md). */
export interface SenderSettings {
  pollIntervalMs: number;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  maxInFlight: number;
  leaseMs: number;
  sendTimeoutMs: number;
}

export interface SenderOptions {
  repository: NotificationRepository;
  provider: NotificationProvider;
  breaker: Breaker;
  /** Id of this sender (`<nodeID>:<service>`); unique among the live senders of a store. */
  owner: string;
  clock: Clock;
  logger: SenderLogger;
  settings: SenderSettings;
}

/** The breaker's timeout exceeds the provider's own by this much, so the provider's fires first. */
export const BREAKER_GRACE_MS = 1000;

/** How one send ended. */
type Outcome =
  | { kind: "sent"; receipt: SendReceipt }
  /** Rejected by the provider: dead at once. */
  | { kind: "rejected"; error: string }
  /** Failed, may succeed later: counted, retried with backoff (dead at maxAttempts). */
  | { kind: "failed"; error: string }
  /** Refused by the open breaker: never attempted, retried later without counting. */
  | { kind: "deferred" };

/** Codes of an outcome that is no longer this sender's to record (the aggregate refused it). */
const NOT_MINE = new Set([
  "NOTIFICATION_ALREADY_SENT",
  "NOTIFICATION_LEASE_LOST",
  "ILLEGAL_NOTIFICATION_TRANSITION",
]);

/** Tries to record one outcome (a store error, or a sent meeting a change made meanwhile). */
const RECORD_TRIES = 3;

/**
 * The sender: the one lease-claiming worker (lib/work/lease-worker.ts) claiming through the
 * repository, with the breaker as its room and the aggregate deciding each outcome.
 */
export class NotificationSender {
  private readonly options: SenderOptions;
  private readonly policy: RetryPolicy;
  private readonly worker: LeaseWorker<Notification>;
  private stopped = false;

  constructor(options: SenderOptions) {
    this.options = options;
    const { repository, breaker, owner, clock, logger, settings } = options;
    const { maxAttempts, backoffBaseMs, backoffMaxMs } = settings;
    this.policy = { maxAttempts, backoffBaseMs, backoffMaxMs };
    this.worker = new LeaseWorker<Notification>({
      name: "notification sender",
      owner,
      clock,
      logger,
      maxInFlight: settings.maxInFlight,
      pollIntervalMs: settings.pollIntervalMs,
      // open: every send would be refused, claim nothing; half-open: one at a time, the probe
      room: (inFlight) => {
        if (breaker.state === "open") return 0;
        if (breaker.state === "halfOpen") return Math.max(0, 1 - inFlight);
        return Infinity;
      },
      key: (notification) => notification.id,
      claim: (limit, held) =>
        repository.claimDue({ limit, owner, now: dateOf(clock), leaseMs: settings.leaseMs, exclude: held }),
      process: (notification) => this.process(notification),
      // each send is bounded by the breaker's timeout
      stopTimeoutMs: settings.sendTimeoutMs + 2 * BREAKER_GRACE_MS,
    });
  }

  start(): void {
    this.worker.start();
  }

  /** Look for due notifications now. Many calls coalesce. */
  wake(): void {
    this.worker.wake();
  }

  /**
   * Stop claiming and let sends in flight finish. A send cut short keeps its lease until it
   * expires; then another sender resends it under the same id.
   */
  async stop(): Promise<void> {
    await this.worker.stop();
    this.stopped = true;
  }

  /** Resolves once nothing is in flight and the latest claim found nothing due. */
  idle(): Promise<void> {
    return this.worker.idle();
  }

  stats(): LeaseWorkerStats {
    return this.worker.stats();
  }

  // -- one notification ---------------------------------------------------------------------------

  /** Send one claimed notification and record how it went. */
  private async process(claimed: Notification): Promise<void> {
    const outcome = await this.send(claimed);
    await this.record(claimed, outcome);
  }

  private async send(notification: Notification): Promise<Outcome> {
    const { provider, breaker } = this.options;
    const message = notification.outgoing();
    try {
      return { kind: "sent", receipt: await breaker.fire(() => provider.send(message)) };
    } catch (err) {
      const code = codeOf(err);
      if (code === "BREAKER_OPEN") return { kind: "deferred" };
      if (code === "NOTIFY_REJECTED") return { kind: "rejected", error: errorText(err) };
      return { kind: "failed", error: errorText(err) };
    }
  }

  /**
   * Record `outcome` on the notification as claimed, and save it guarded by the claim. When it
   * changed meanwhile (NOTIFICATION_CONFLICT), a `sent` is recorded over what is stored now — the
   * provider's answer is proof, even over dead — while any other outcome was the lease holder's to
   * write, and this sender no longer is. A write that fails is tried again a few times; given up
   * on, the lease expires and the notification is sent again under the same id, which the provider
   * deduplicates.
   */
  private async record(claimed: Notification, outcome: Outcome): Promise<void> {
    const { repository, logger } = this.options;
    for (let tries = 1; ; tries++) {
      try {
        // after a failed try, read it again as it is stored now
        const current = tries === 1 ? claimed : await repository.load(claimed.id);
        if (current === null) return;
        const loaded = current.toState();
        const events = this.apply(current, outcome);
        await repository.save(current, loaded);
        this.react(loaded, events);
        return;
      } catch (err) {
        const code = codeOf(err);
        // the aggregate refused: sent already, or no longer this sender's to record
        if (typeof code === "string" && NOT_MINE.has(code)) return;
        // changed since claimed: only a sent is recorded over what is stored now
        if (code === "NOTIFICATION_CONFLICT" && outcome.kind !== "sent") return;
        if (tries >= RECORD_TRIES || this.stopped) {
          logger.warn(
            `[notifications] could not record the ${outcome.kind} outcome of ${claimed.id} (${errorText(err)}); its lease will expire and it will be sent again`,
          );
          return;
        }
        if (code !== "NOTIFICATION_CONFLICT") await delay(50 * 2 ** tries);
      }
    }
  }

  /** The aggregate's move for `outcome`; it refuses one that is no longer this sender's to record. */
  private apply(notification: Notification, outcome: Outcome): NotificationEvent[] {
    const { owner, clock, settings } = this.options;
    const now = dateOf(clock);
    switch (outcome.kind) {
      case "sent":
        return notification.recordSent(outcome.receipt, now);
      case "failed":
        return notification.recordFailure(owner, outcome.error, now, this.policy);
      case "rejected":
        return notification.recordRejection(owner, outcome.error, now);
      case "deferred":
        // never attempted: back in the pool, due after the next poll
        return notification.defer(owner, now, settings.pollIntervalMs);
    }
  }

  /** What the sender does about the events raised: look again when a retry falls due; tell about the dead. */
  private react(notification: NotificationState, events: NotificationEvent[]): void {
    for (const event of events) {
      switch (event.type) {
        case "NotificationSendFailed":
        case "NotificationSendDeferred":
          this.worker.wakeAt(event.retryAt.getTime());
          break;
        case "NotificationDied":
          this.options.logger.error(
            `[notifications] ${event.notificationId} (${notification.type} ${notification.channel} for ${notification.customerId}) is dead after ${event.attempts} attempt(s); last error: ${event.error}. Replay it once the cause is fixed.`,
          );
          break;
        case "NotificationSent":
          if (event.wasDead) {
            this.options.logger.info(
              `[notifications] ${event.notificationId} was given up on, then its late send was confirmed: sent`,
            );
          }
          break;
        case "NotificationReplayed":
          break;
      }
    }
  }
}

/** The stable code of an error; branch on it, never on `instanceof`. */
export function codeOf(err: unknown): unknown {
  if (typeof err !== "object" || err === null) return undefined;
  return (err as { code?: unknown }).code;
}

export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = codeOf(err);
  return typeof code === "string" ? `${code}: ${err.message}` : err.message;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
