/**
 * The notification aggregate: one message telling one customer about one event on one channel, and
 * its way to the customer (docs/notifications.md). The words are ./notification-template.
 *
 *   pending ──claim──▶ sending ──sent──────────────────────────────▶ sent   (final)
 *      ▲                  │ failed, attempts < maxAttempts ──▶ failed ──(due) claim──▶ sending …
 *      │                  │ failed, attempts = maxAttempts ──▶ dead
 *      │                  │ rejected by the provider ────────▶ dead    (at once)
 *      │                  │ deferred (the breaker refused it) ▶ back to pending | failed, no attempt
 *      └─────replay─────────────────────────────────────────── dead
 *   a late sent beats dead: dead ──sent──▶ sent
 *
 * "sending" is not a stored status: it is a pending or failed notification under a live lease
 * (`leaseOwner`, `leaseUntil`). The stored statuses, which callers see, stay pending, failed, sent and
 * dead. The sender takes leases in bulk through the one claim protocol (lib/work/lease-claim.ts) with
 * the condition `isClaimable` states here; `claim` is the same move on one notification.
 *
 * Only the lease holder records a failure, a rejection or a deferral: after its lease lapsed another
 * sender may hold the notification, and that one's outcome counts. A `sent` is recorded whoever sent
 * it, even over `dead`: the provider's answer proves the customer got the message, and the same
 * notification id (the provider's idempotency key) makes every resend the same message.
 *
 * Every transition refuses an illegal move with a `NotificationError` (stable `code`) and then
 * changes nothing; it returns the domain events it raises. These stay inside the notifications
 * service (they tell its sender when to look again and what to log): none belongs to the event
 * catalog of the bus (./events).
 */
import { retryDelayMs } from "./backoff";
import type { EventType, PayloadOf } from "./events";

/** Stored statuses: pending → sent, or failed (retried) → … → dead. "sending" is a lease (above). */
export const NOTIFICATION_STATUSES = ["pending", "failed", "sent", "dead"] as const;
export type NotificationStatus = (typeof NOTIFICATION_STATUSES)[number];

/** Statuses a sender may claim, once due and not leased. */
export const SENDABLE_STATUSES = ["pending", "failed"] as const satisfies readonly NotificationStatus[];
export type SendableStatus = (typeof SENDABLE_STATUSES)[number];

/** Channels a notification goes out on; one notification per (event, channel). */
export const NOTIFICATION_CHANNELS = ["email", "sms"] as const;
export type NotificationChannel = (typeof NOTIFICATION_CHANNELS)[number];

/** The events customers are told about. */
export const NOTIFIED_EVENT_TYPES = [
  "order.created",
  "order.paid",
  "order.cancelled",
  "payment.refunded",
] as const satisfies readonly EventType[];
export type NotifiedEventType = (typeof NOTIFIED_EVENT_TYPES)[number];

/** One notified event: its type and its (v1) payload. An `EventEnvelope` of these types is one. */
export type NotifiedEvent = {
  [T in NotifiedEventType]: { type: T; payload: PayloadOf<T> };
}[NotifiedEventType];

export function isNotifiedEventType(type: unknown): type is NotifiedEventType {
  return typeof type === "string" && (NOTIFIED_EVENT_TYPES as readonly string[]).includes(type);
}

/** A rendered message: e-mails have a subject; `to` is `customer:<customerId>`. */
export interface NotificationMessage {
  channel: NotificationChannel;
  to: string;
  subject?: string;
  body: string;
}

/** What the provider is handed: the message and the notification id, its idempotency key. */
export interface OutgoingNotification extends NotificationMessage {
  id: string;
}

export type NotificationErrorCode =
  /** The event cannot be put into words (e.g. an amount in a currency we do not know). */
  | "UNRENDERABLE_EVENT"
  /** A notification created without an id, a recipient or a body. */
  | "INVALID_NOTIFICATION"
  /** Sent is final: nothing happens to a sent notification any more. */
  | "NOTIFICATION_ALREADY_SENT"
  /** Only a dead notification can be replayed. */
  | "NOTIFICATION_NOT_DEAD"
  /** Claimed while not due, leased by a live lease, or not pending/failed. */
  | "NOTIFICATION_NOT_CLAIMABLE"
  /** An outcome recorded by a sender that does not hold the lease (any more). */
  | "NOTIFICATION_LEASE_LOST"
  /** Any other move the life cycle above does not have (e.g. a failure recorded on a dead one). */
  | "ILLEGAL_NOTIFICATION_TRANSITION";

/** A rule of notifications was broken; `code` is stable across process boundaries. */
export class NotificationError extends Error {
  constructor(
    readonly code: NotificationErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "NotificationError";
  }
}

/** The aggregate's snapshot: what is stored, field for field (`id` is the stored `_id`). */
export interface NotificationState {
  readonly id: string;
  readonly eventId: string;
  /** The event type it tells about. */
  readonly type: NotifiedEventType;
  readonly orderId: string;
  readonly customerId: string;
  readonly channel: NotificationChannel;
  readonly to: string;
  readonly subject?: string;
  readonly body: string;
  readonly status: NotificationStatus;
  /** Sends tried whose outcome was recorded (a send the breaker refused is not one). */
  readonly attempts: number;
  /** When a sender may (re)try; pending and failed only. */
  readonly nextAttemptAt?: Date;
  readonly lastError?: string;
  /** The sender holding the notification, and until when. */
  readonly leaseOwner?: string;
  readonly leaseUntil?: Date;
  readonly providerMessageId?: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly sentAt?: Date;
  readonly deadAt?: Date;
}

/** When to try again, and when to give up. */
export interface RetryPolicy {
  /** Failed sends before a notification is dead (≥ 1). */
  maxAttempts: number;
  /** Retry delay after n failures: random in [0, min(backoffMaxMs, backoffBaseMs·2^(n-1))]. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Uniform in [0, 1); Math.random unless a test fixes it. */
  random?: () => number;
}

/** The domain events of a notification (in-process only, see the module comment). */
export type NotificationEvent =
  | {
      type: "NotificationSent";
      notificationId: string;
      attempts: number;
      providerMessageId: string;
      /** It had been given up on: a late `sent` beat `dead`. */
      wasDead: boolean;
    }
  | { type: "NotificationSendFailed"; notificationId: string; attempts: number; error: string; retryAt: Date }
  | { type: "NotificationSendDeferred"; notificationId: string; retryAt: Date }
  | {
      type: "NotificationDied";
      notificationId: string;
      attempts: number;
      reason: "rejected" | "attempts_exhausted";
      error: string;
    }
  | { type: "NotificationReplayed"; notificationId: string };

export interface CreateNotification {
  /** The notification id (a UUIDv7), also the provider's idempotency key. */
  id: string;
  event: NotifiedEvent & { id: string };
  message: NotificationMessage;
  now: Date;
}

/** The optional fields a transition may clear. */
type Clearable =
  "nextAttemptAt" | "lastError" | "leaseOwner" | "leaseUntil" | "providerMessageId" | "sentAt" | "deadAt";

export class Notification {
  private constructor(private state: NotificationState) {}

  /** A new notification, pending and due at once. Raises nothing: nobody but its sender cares yet. */
  static create(command: CreateNotification): Notification {
    const { id, event, message, now } = command;
    if (id.length === 0) throw invalid("a notification needs an id");
    if (message.to.length === 0) throw invalid("a notification needs a recipient", { id });
    if (message.body.length === 0) throw invalid("a notification needs a body", { id });
    return new Notification({
      id,
      eventId: event.id,
      type: event.type,
      orderId: event.payload.orderId,
      customerId: event.payload.customerId,
      channel: message.channel,
      to: message.to,
      ...(message.subject === undefined ? {} : { subject: message.subject }),
      body: message.body,
      status: "pending",
      attempts: 0,
      nextAttemptAt: now,
      createdAt: now,
      updatedAt: now,
    });
  }

  /** Rebuild from a stored snapshot. */
  static fromState(state: NotificationState): Notification {
    return new Notification(copyOf(state));
  }

  get id(): string {
    return this.state.id;
  }

  get status(): NotificationStatus {
    return this.state.status;
  }

  get attempts(): number {
    return this.state.attempts;
  }

  /** A copy of the current snapshot. */
  toState(): NotificationState {
    return copyOf(this.state);
  }

  /** What to hand the provider. */
  outgoing(): OutgoingNotification {
    const { id, channel, to, subject, body } = this.state;
    return { id, channel, to, ...(subject === undefined ? {} : { subject }), body };
  }

  /** Pending or failed, due at `now`, and under no live lease: a sender may take it. */
  isClaimable(now: Date): boolean {
    const { status, nextAttemptAt, leaseUntil } = this.state;
    return (
      isSendable(status) &&
      nextAttemptAt !== undefined &&
      nextAttemptAt.getTime() <= now.getTime() &&
      (leaseUntil === undefined || leaseUntil.getTime() <= now.getTime())
    );
  }

  /** Being sent: pending or failed under a live lease. */
  isSending(now: Date): boolean {
    const { status, leaseUntil } = this.state;
    return isSendable(status) && leaseUntil !== undefined && leaseUntil.getTime() > now.getTime();
  }

  /** pending | failed → sending: `owner` leases it until `leaseUntil`. Raises nothing. */
  claim(owner: string, leaseUntil: Date, now: Date): NotificationEvent[] {
    if (this.state.status === "sent") throw this.alreadySent("claim");
    if (!this.isClaimable(now)) {
      throw new NotificationError(
        "NOTIFICATION_NOT_CLAIMABLE",
        `notification ${this.state.id} is ${this.state.status}${this.state.leaseOwner === undefined ? "" : `, leased by ${this.state.leaseOwner}`}: not claimable now`,
        { id: this.state.id, status: this.state.status },
      );
    }
    // as the store-side claim does: the lease alone, so a sender's claim never looks like a change
    this.state = { ...this.state, leaseOwner: owner, leaseUntil };
    return [];
  }

  /**
   * The provider accepted it: sent, whoever sent it and whatever happened meanwhile — even over
   * dead (a late sent beats dead). Counts the attempt and releases any lease.
   */
  recordSent(receipt: { providerMessageId: string }, now: Date): NotificationEvent[] {
    if (this.state.status === "sent") throw this.alreadySent("record a send of");
    const wasDead = this.state.status === "dead";
    const attempts = this.state.attempts + 1;
    this.state = {
      ...cleared(this.state, "leaseOwner", "leaseUntil", "nextAttemptAt", "deadAt"),
      status: "sent",
      attempts,
      providerMessageId: receipt.providerMessageId,
      sentAt: now,
      updatedAt: now,
    };
    return [
      {
        type: "NotificationSent",
        notificationId: this.state.id,
        attempts,
        providerMessageId: receipt.providerMessageId,
        wasDead,
      },
    ];
  }

  /**
   * A send by `owner` failed and may succeed later: the attempt counts; failed with a retry after
   * full-jitter backoff, or dead once `maxAttempts` sends failed.
   */
  recordFailure(owner: string, error: string, now: Date, policy: RetryPolicy): NotificationEvent[] {
    this.requireHeldBy(owner, "record a failed send of");
    const attempts = this.state.attempts + 1;
    if (attempts >= policy.maxAttempts) return this.die(attempts, "attempts_exhausted", error, now);
    const retryAt = new Date(
      now.getTime() + retryDelayMs(attempts, policy.backoffBaseMs, policy.backoffMaxMs, policy.random),
    );
    this.state = {
      ...cleared(this.state, "leaseOwner", "leaseUntil"),
      status: "failed",
      attempts,
      lastError: error,
      nextAttemptAt: retryAt,
      updatedAt: now,
    };
    return [{ type: "NotificationSendFailed", notificationId: this.state.id, attempts, error, retryAt }];
  }

  /** The provider refused the message (sending it again cannot help): dead at once. */
  recordRejection(owner: string, error: string, now: Date): NotificationEvent[] {
    this.requireHeldBy(owner, "record a rejection of");
    return this.die(this.state.attempts + 1, "rejected", error, now);
  }

  /**
   * The send was never attempted (the breaker refused it): no attempt counts; the lease is released
   * and the notification is due again after `delayMs`, in the status it had.
   */
  defer(owner: string, now: Date, delayMs: number): NotificationEvent[] {
    this.requireHeldBy(owner, "defer");
    const retryAt = new Date(now.getTime() + Math.max(0, delayMs));
    this.state = {
      ...cleared(this.state, "leaseOwner", "leaseUntil"),
      nextAttemptAt: retryAt,
      updatedAt: now,
    };
    return [{ type: "NotificationSendDeferred", notificationId: this.state.id, retryAt }];
  }

  /** An operator's replay: dead → pending, due now, with a fresh attempt budget. */
  replay(now: Date): NotificationEvent[] {
    if (this.state.status !== "dead") {
      throw new NotificationError(
        "NOTIFICATION_NOT_DEAD",
        `notification ${this.state.id} is ${this.state.status}; only a dead notification can be replayed`,
        { id: this.state.id, status: this.state.status },
      );
    }
    this.state = {
      ...cleared(this.state, "deadAt", "leaseOwner", "leaseUntil"),
      status: "pending",
      attempts: 0,
      nextAttemptAt: now,
      updatedAt: now,
    };
    return [{ type: "NotificationReplayed", notificationId: this.state.id }];
  }

  private die(
    attempts: number,
    reason: "rejected" | "attempts_exhausted",
    error: string,
    now: Date,
  ): NotificationEvent[] {
    this.state = {
      ...cleared(this.state, "leaseOwner", "leaseUntil", "nextAttemptAt"),
      status: "dead",
      attempts,
      lastError: error,
      deadAt: now,
      updatedAt: now,
    };
    return [{ type: "NotificationDied", notificationId: this.state.id, attempts, reason, error }];
  }

  /** Outcomes other than `sent` are the lease holder's to record. */
  private requireHeldBy(owner: string, what: string): void {
    const { id, status, leaseOwner } = this.state;
    if (status === "sent") throw this.alreadySent(what);
    if (status === "dead") {
      throw new NotificationError(
        "ILLEGAL_NOTIFICATION_TRANSITION",
        `cannot ${what} notification ${id}: it is dead`,
        { id, status },
      );
    }
    if (leaseOwner !== owner) {
      throw new NotificationError(
        "NOTIFICATION_LEASE_LOST",
        `cannot ${what} notification ${id} as ${owner}: ${leaseOwner === undefined ? "nobody" : leaseOwner} holds it`,
        { id, status, owner, ...(leaseOwner === undefined ? {} : { leaseOwner }) },
      );
    }
  }

  private alreadySent(what: string): NotificationError {
    return new NotificationError(
      "NOTIFICATION_ALREADY_SENT",
      `cannot ${what} notification ${this.state.id}: it is sent`,
      { id: this.state.id, status: "sent" },
    );
  }
}

/** Pending or failed: a sender may take it once due. */
export function isSendable(status: NotificationStatus): status is SendableStatus {
  return (SENDABLE_STATUSES as readonly NotificationStatus[]).includes(status);
}

/**
 * A deep copy: the snapshot is flat, so copying its dates is enough. (Not structuredClone: its
 * dates would belong to another realm under test runners that sandbox modules.)
 */
function copyOf(state: NotificationState): NotificationState {
  const copy: Record<string, unknown> = { ...state };
  for (const [key, value] of Object.entries(copy)) {
    if (value instanceof Date) copy[key] = new Date(value.getTime());
  }
  return copy as unknown as NotificationState;
}

function cleared(state: NotificationState, ...keys: Clearable[]): NotificationState {
  const copy: Partial<Record<keyof NotificationState, unknown>> = { ...state };
  for (const key of keys) delete copy[key];
  return copy as NotificationState;
}

function invalid(message: string, details: Record<string, unknown> = {}): NotificationError {
  return new NotificationError("INVALID_NOTIFICATION", message, details);
}
