/**
 * notifications service: tells customers about their orders (DESIGN §4). On `order.created`,
 * `order.paid`, `order.cancelled` and `payment.refunded` it renders one message per channel
 * (models/notification.ts) and stores it as a `pending` notification in the inbox transaction —
 * one per (event, channel), ever, by a unique index. A sender loop in every instance then claims
 * due notifications with a lease, sends them through the provider (lib/notify) behind the `notify`
 * circuit breaker, and records the outcome:
 *
 *   pending ──sent──▶ sent
 *      │ retryable failure: attempts+1, backoff with jitter
 *      ▼
 *   failed ──▶ (retried) … ──attempts = maxAttempts──▶ dead ──replay──▶ pending
 *   rejected by the provider (4xx) ─────────────────▶ dead at once
 *
 * A send refused by the open breaker was never attempted: it counts no attempt and is retried
 * later. The provider is never called inside a transaction (the inbox may rerun it); the
 * notification id is the provider's idempotency key, so a resend after a crash or a lost answer
 * reaches the customer once. Details and settings: docs/notifications.md.
 */
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import type { Breaker } from "../lib/breaker";
import { PermanentError } from "../lib/errors";
import { infrastructureOf } from "../lib/infrastructure";
import { NEWEST_FIRST, afterCursor, pageOf, type CursorPage } from "../lib/newest-first";
import { LoopSignals } from "../lib/loop-signals";
import { createNotificationProvider } from "../lib/notify";
import type { NotificationProvider, OutboundMessage, SendReceipt } from "../lib/notify/notify.port";
import type { OutboxTransaction } from "../lib/outbox/outbox";
import { retryDelayMs } from "../models/backoff";
import { isAdmin, principalOf, type Principal } from "../lib/principal";
import type { Collection, Doc, DocumentStore, Filter } from "../lib/store/store.port";
import { BreakerMixin, type BreakerThis } from "../mixins/breaker.mixin";
import { InboxMixin, type WithSubscriptions } from "../mixins/inbox.mixin";
import { InfrastructureMixin, type InfrastructureThis } from "../mixins/infrastructure.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { uuidv7 } from "../models/ids";
import {
  NOTIFICATION_STATUSES,
  type NotificationChannel,
  type NotificationStatus,
  type NotifiedEvent,
  type NotifiedEventType,
} from "../models/notification";
import { renderNotifications, type RenderedNotification } from "../models/notification-template";

const { MoleculerClientError } = Errors;

/** Collection of notifications in the notifications store. */
const NOTIFICATIONS = "notifications";

/** Statuses the sender picks up (when due and not leased). */
const SENDABLE: NotificationStatus[] = ["pending", "failed"];

/** A stored notification; `_id` is the notification id and the provider's idempotency key. */
export interface NotificationDoc extends Doc {
  eventId: string;
  /** The event type it tells about. */
  type: NotifiedEventType;
  orderId: string;
  customerId: string;
  channel: NotificationChannel;
  to: string;
  subject?: string;
  body: string;
  status: NotificationStatus;
  /** Sends tried (a send refused by the open breaker is not one). */
  attempts: number;
  /** When the sender may (re)try; pending and failed only. */
  nextAttemptAt?: Date;
  lastError?: string;
  /** Sender instance holding the notification, and until when. */
  leaseOwner?: string;
  leaseUntil?: Date;
  providerMessageId?: string;
  createdAt: Date;
  updatedAt: Date;
  sentAt?: Date;
  deadAt?: Date;
}

/** A notification as callers see it. */
export interface NotificationView {
  id: string;
  eventId: string;
  orderId: string;
  type: NotifiedEventType;
  channel: NotificationChannel;
  status: NotificationStatus;
  subject?: string;
  body: string;
  attempts: number;
  /** ISO 8601 UTC. */
  createdAt: string;
  sentAt?: string;
}

/** A dead notification, for operators: the view plus whose it is and why it died. */
export interface DeadNotificationView extends NotificationView {
  customerId: string;
  lastError?: string;
  deadAt?: string;
}

export type NotificationPage = CursorPage<NotificationView>;

/** Notifications by status. */
export type NotificationStats = Record<NotificationStatus, number>;

/** Tuning of the sender and its breaker (docs/notifications.md); tests shorten them. */
export interface NotificationsSettings {
  /** Look for due notifications at least this often (ms). */
  pollIntervalMs: number;
  /** Failed sends before a notification is dead. */
  maxAttempts: number;
  /** Retry delay after n failures: random in [0, min(backoffMaxMs, backoffBaseMs·2^(n-1))]. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Sends in flight at most, per instance. */
  maxInFlight: number;
  /** How long a claim holds a notification (ms); must outlast a send (2 × (sendTimeoutMs + 1 s) at least). */
  leaseMs: number;
  /** Timeout of one send (ms); the breaker gives up 1 s later. */
  sendTimeoutMs: number;
  /** Breaker: calls in the window before it may open, failure percentage that opens it, open time, window. */
  breakerVolumeThreshold: number;
  breakerErrorThresholdPercentage: number;
  breakerResetTimeoutMs: number;
  breakerRollingWindowMs: number;
}

interface NotificationsVars {
  provider: NotificationProvider | undefined;
  sender: NotificationSender | undefined;
  nudge: NodeJS.Timeout | undefined;
}

interface NotificationsMethods {
  notifications(): Collection<NotificationDoc>;
  recordNotifications(event: NotifiedEvent & { id: string }, tx: OutboxTransaction): Promise<void>;
  nudgeSender(): void;
}

type NotificationsThis = Service<NotificationsSettings> &
  InfrastructureThis &
  BreakerThis &
  NotificationsVars &
  NotificationsMethods;

interface ListParams {
  limit?: number;
  cursor?: string;
  customerId?: string;
}

const NotificationsService: ServiceSchema<
  NotificationsSettings,
  NotificationsMethods,
  NotificationsVars,
  NotificationsThis
> &
  WithSubscriptions<NotificationsThis> = {
  name: "notifications",
  mixins: [InfrastructureMixin({ store: true, bus: true }), OutboxMixin(), InboxMixin(), BreakerMixin()],

  // ── settings ───────────────────────────────────────────────────────────
  settings: {
    pollIntervalMs: 400,
    maxAttempts: 8,
    backoffBaseMs: 1000,
    backoffMaxMs: 5 * 60_000,
    maxInFlight: 16,
    leaseMs: 15_000,
    sendTimeoutMs: 5000,
    breakerVolumeThreshold: 10,
    breakerErrorThresholdPercentage: 50,
    breakerResetTimeoutMs: 10_000,
    breakerRollingWindowMs: 10_000,
  },

  // ── actions ────────────────────────────────────────────────────────────
  actions: {
    /**
     * The caller's notifications, newest first, by cursor. An admin may name a `customerId`; an
     * internal call (no user) must.
     */
    list: {
      visibility: "public",
      params: {
        $$strict: true,
        limit: { type: "number", integer: true, min: 1, max: 100, optional: true, convert: true },
        cursor: { type: "string", min: 1, max: 512, optional: true },
        customerId: { type: "string", min: 1, max: 128, optional: true },
      },
      async handler(ctx: Context<ListParams>): Promise<NotificationPage> {
        const customerId = ownerOf(principalOf(ctx), ctx.params.customerId);
        const limit = ctx.params.limit ?? 20;
        const conditions: Filter[] = [{ customerId }];
        if (ctx.params.cursor !== undefined) conditions.push(afterCursor(ctx.params.cursor, "date"));
        const docs = await this.notifications().find(
          { $and: conditions },
          { sort: NEWEST_FIRST, limit: limit + 1 },
        );
        return pageOf(docs, limit, viewOf);
      },
    },

    /** Notifications by status (operators). */
    stats: {
      visibility: "public",
      async handler(ctx: Context): Promise<NotificationStats> {
        requireOperator(ctx);
        const notifications = this.notifications();
        const counts = await Promise.all(
          NOTIFICATION_STATUSES.map((status) => notifications.countDocuments({ status })),
        );
        return Object.fromEntries(
          NOTIFICATION_STATUSES.map((status, i) => [status, counts[i] ?? 0]),
        ) as NotificationStats;
      },
    },

    /** Dead notifications, most recently dead first (operators). */
    dead: {
      visibility: "public",
      params: {
        $$strict: true,
        limit: { type: "number", integer: true, min: 1, max: 1000, optional: true, convert: true },
      },
      async handler(ctx: Context<{ limit?: number }>): Promise<DeadNotificationView[]> {
        requireOperator(ctx);
        const docs = await this.notifications().find(
          { status: "dead" },
          { sort: { deadAt: -1, _id: -1 }, limit: ctx.params.limit ?? 50 },
        );
        return docs.map(deadViewOf);
      },
    },

    /** Make a dead notification pending again, with a fresh attempt budget (operators). */
    replay: {
      visibility: "public",
      params: { $$strict: true, id: { type: "string", min: 1, max: 128 } },
      async handler(ctx: Context<{ id: string }>): Promise<NotificationView> {
        requireOperator(ctx);
        const { id } = ctx.params;
        const now = new Date();
        // read and change in one transaction: the answer is the notification as replayed
        const replayed = await this.store.transaction(async (tx) => {
          const notifications = tx.collection<NotificationDoc>(NOTIFICATIONS);
          const doc = await notifications.findOne({ _id: id });
          if (doc === null) {
            throw new MoleculerClientError(`notification ${id} not found`, 404, "NOTIFICATION_NOT_FOUND", {
              id,
            });
          }
          if (doc.status !== "dead") {
            throw new MoleculerClientError(
              `notification ${id} is ${doc.status}; only a dead notification can be replayed`,
              409,
              "NOTIFICATION_NOT_DEAD",
              { id, status: doc.status },
            );
          }
          await notifications.updateOne(
            { _id: id, status: "dead" },
            {
              $set: { status: "pending", attempts: 0, nextAttemptAt: now, updatedAt: now },
              $unset: { deadAt: "", leaseOwner: "", leaseUntil: "" },
            },
          );
          return { ...doc, status: "pending" as const, attempts: 0, nextAttemptAt: now, updatedAt: now };
        });
        this.logger.info(`dead notification ${id} replayed`);
        this.sender?.wake();
        return viewOf(replayed);
      },
    },
  },

  // ── subscriptions ──────────────────────────────────────────────────────
  subscriptions: {
    "order.created": {
      handler(event, tx) {
        return this.recordNotifications(event, tx);
      },
    },
    "order.paid": {
      handler(event, tx) {
        return this.recordNotifications(event, tx);
      },
    },
    "order.cancelled": {
      handler(event, tx) {
        return this.recordNotifications(event, tx);
      },
    },
    "payment.refunded": {
      handler(event, tx) {
        return this.recordNotifications(event, tx);
      },
    },
  },

  // ── methods ────────────────────────────────────────────────────────────
  methods: {
    notifications(): Collection<NotificationDoc> {
      return this.store.collection<NotificationDoc>(NOTIFICATIONS);
    },

    /**
     * Store one pending notification per channel for `event`, inside the inbox transaction. Only
     * writes through `tx`: the body may run again. A (event, channel) already stored is left alone.
     */
    async recordNotifications(
      this: NotificationsThis,
      event: NotifiedEvent & { id: string },
      tx: OutboxTransaction,
    ): Promise<void> {
      let messages: RenderedNotification[];
      try {
        messages = renderNotifications(event);
      } catch (err) {
        // the event cannot be put into words; redelivering it changes nothing
        if ((err as { code?: unknown }).code === "UNRENDERABLE_EVENT") {
          throw new PermanentError(`${event.type} ${event.id}: ${(err as Error).message}`, {
            eventId: event.id,
            type: event.type,
          });
        }
        throw err;
      }
      const notifications = tx.collection<NotificationDoc>(NOTIFICATIONS);
      const now = new Date();
      for (const message of messages) {
        const existing = await notifications.findOne(
          { eventId: event.id, channel: message.channel },
          { projection: { _id: 1 } },
        );
        if (existing !== null) continue;
        await notifications.insertOne({
          _id: uuidv7(),
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
      this.nudgeSender();
    },

    /**
     * Ask the sender to look soon. Called from the inbox transaction, before its commit: the look is
     * deferred a little so that it usually finds the new rows; the poll finds them otherwise.
     */
    nudgeSender(): void {
      if (this.nudge !== undefined) return;
      this.nudge = setTimeout(() => {
        this.nudge = undefined;
        this.sender?.wake();
      }, NUDGE_DELAY_MS);
      this.nudge.unref();
    },
  },

  // ── lifecycle ──────────────────────────────────────────────────────────
  created() {
    this.provider = undefined;
    this.sender = undefined;
    this.nudge = undefined;
  },

  async started() {
    const settings = this.settings;
    const minimumLease = 2 * (settings.sendTimeoutMs + BREAKER_GRACE_MS);
    if (settings.leaseMs < minimumLease) {
      throw new Error(
        `${this.name}: settings.leaseMs (${settings.leaseMs}) must be at least 2 × (sendTimeoutMs + ${BREAKER_GRACE_MS}) = ${minimumLease}`,
      );
    }
    const infra = infrastructureOf(this.broker);
    const store = await infra.store(this.name);
    await ensureIndexes(store);
    this.provider = createNotificationProvider(infra.config, { timeoutMs: settings.sendTimeoutMs });
    const breaker = this.createBreaker({
      name: "notify",
      timeoutMs: settings.sendTimeoutMs + BREAKER_GRACE_MS,
      volumeThreshold: settings.breakerVolumeThreshold,
      errorThresholdPercentage: settings.breakerErrorThresholdPercentage,
      resetTimeoutMs: settings.breakerResetTimeoutMs,
      rollingWindowMs: settings.breakerRollingWindowMs,
      // the provider refusing one message is the provider working: it never opens the breaker
      isFailure: (err) => codeOf(err) !== "NOTIFY_REJECTED",
    });
    this.sender = new NotificationSender({
      notifications: store.collection<NotificationDoc>(NOTIFICATIONS),
      store,
      provider: this.provider,
      breaker,
      owner: `${this.broker.nodeID}:${this.fullName}`,
      logger: this.logger,
      settings,
    });
    this.sender.start();
    this.logger.info(`notifications go out through the ${this.provider.kind} provider`);
  },

  async stopped() {
    if (this.nudge !== undefined) clearTimeout(this.nudge);
    this.nudge = undefined;
    await this.sender?.stop();
    this.sender = undefined;
    await this.provider?.close();
    this.provider = undefined;
  },
};

/** A nudge from the inbox handler looks this much later (after the commit, usually). */
const NUDGE_DELAY_MS = 20;

/** The breaker's timeout exceeds the provider's own by this much, so the provider's fires first. */
const BREAKER_GRACE_MS = 1000;

async function ensureIndexes(store: DocumentStore): Promise<void> {
  // one notification per (event, channel), ever
  await store.createIndex(NOTIFICATIONS, {
    name: "event_channel",
    keys: { eventId: 1, channel: 1 },
    unique: true,
  });
  await store.createIndex(NOTIFICATIONS, {
    name: "status_next_attempt",
    keys: { status: 1, nextAttemptAt: 1 },
  });
  await store.createIndex(NOTIFICATIONS, {
    name: "customer_created",
    keys: { customerId: 1, createdAt: -1, _id: -1 },
  });
}

// ── the sender ───────────────────────────────────────────────────────────

export interface SenderLogger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

export interface SenderOptions {
  store: DocumentStore;
  notifications: Collection<NotificationDoc>;
  provider: NotificationProvider;
  breaker: Breaker;
  /** Id of this sender (`<nodeID>:<service>`); unique among the live senders of a store. */
  owner: string;
  logger: SenderLogger;
  settings: NotificationsSettings;
}

/** How one send ended. */
type Outcome =
  | { kind: "sent"; receipt: SendReceipt }
  /** Rejected by the provider: dead at once. */
  | { kind: "rejected"; error: string }
  /** Failed, may succeed later: counted, retried with backoff (dead at maxAttempts). */
  | { kind: "failed"; error: string }
  /** Refused by the open breaker: never attempted, retried later without counting. */
  | { kind: "deferred" };

/**
 * Claims due notifications with a lease (as the outbox relay does with its rows, see
 * lib/outbox/outbox.relay.ts), sends them with at most `maxInFlight` in flight, and records each
 * outcome. While the breaker is open it claims nothing; half-open, one notification at a time (the
 * probe). Exported for tests that run several senders on one store.
 */
export class NotificationSender {
  private readonly options: SenderOptions;
  private state: "new" | "running" | "stopping" | "stopped" = "new";
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly signals = new LoopSignals(() => this.state === "running", Date.now);
  private loopDone: Promise<void> = Promise.resolve();

  constructor(options: SenderOptions) {
    this.options = options;
  }

  start(): void {
    if (this.state !== "new") return;
    this.state = "running";
    this.signals.requested = true;
    this.loopDone = this.loop();
  }

  /** Look for due notifications now. Many calls coalesce. */
  wake(): void {
    this.signals.wake();
  }

  /**
   * Stop claiming and let sends in flight finish (each is bounded by the breaker's timeout). A send
   * cut short keeps its lease until it expires; then another sender resends it under the same id.
   */
  async stop(): Promise<void> {
    if (this.state !== "running") return;
    this.state = "stopping";
    this.signals.release();
    await this.loopDone;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.inFlight.values()),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.settings.sendTimeoutMs + 2 * BREAKER_GRACE_MS);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    this.state = "stopped";
  }

  // -- the claim loop -------------------------------------------------------------------------

  private async loop(): Promise<void> {
    const { settings, breaker, logger, owner } = this.options;
    while (this.state === "running") {
      // open: every send would be refused; wait for the half-open probe
      if (breaker.state === "open") {
        this.signals.requested = false;
        await this.signals.wait("work", settings.pollIntervalMs);
        continue;
      }
      const room =
        breaker.state === "halfOpen"
          ? Math.max(0, 1 - this.inFlight.size)
          : settings.maxInFlight - this.inFlight.size;
      // refill in batches: a claim reads the whole due set, so one claim per freed slot would cost
      // a scan per notification exactly when the backlog is longest
      if (room <= 0 || (room < refillBatch(settings.maxInFlight) && this.inFlight.size > 0)) {
        await this.signals.wait("room");
        continue;
      }
      this.signals.requested = false;
      let claimed: NotificationDoc[];
      try {
        claimed = await this.claim(room);
      } catch (err) {
        logger.warn(`[notifications] sender ${owner}: claiming failed: ${errorText(err)}`);
        await this.signals.wait("work", settings.pollIntervalMs);
        continue;
      }
      for (const doc of claimed) this.launch(doc);
      if (claimed.length === room || this.signals.requested) continue;
      await this.signals.wait("work", settings.pollIntervalMs);
    }
  }

  /** Pending or failed, due, and not leased (or its lease has expired). */
  private dueFilter(now: Date): Filter {
    return {
      status: { $in: SENDABLE },
      nextAttemptAt: { $lte: now },
      $or: [{ leaseUntil: { $exists: false } }, { leaseUntil: { $lte: now } }],
    };
  }

  /**
   * Lease up to `limit` due notifications, oldest due first. The candidates are read outside a
   * transaction; the lease is taken in one, with the due condition repeated, so that a notification
   * claimed meanwhile by another sender is skipped (a concurrent claim conflicts and re-reads).
   */
  private async claim(limit: number): Promise<NotificationDoc[]> {
    const { store, notifications, owner, settings } = this.options;
    const now = new Date();
    const due = this.dueFilter(now);
    const found = await notifications.find(due, {
      sort: { nextAttemptAt: 1, _id: 1 },
      limit,
      projection: { _id: 1 },
    });
    const ids = found.map((doc) => doc._id).filter((id) => !this.inFlight.has(id));
    if (ids.length === 0) return [];
    const leaseUntil = new Date(now.getTime() + settings.leaseMs);
    return store.transaction(async (tx) => {
      const collection = tx.collection<NotificationDoc>(NOTIFICATIONS);
      const docs = await collection.find({ _id: { $in: ids }, ...due });
      if (docs.length === 0) return docs;
      const result = await collection.updateMany(
        { _id: { $in: docs.map((doc) => doc._id) }, ...due },
        { $set: { leaseOwner: owner, leaseUntil } },
      );
      if (result.modifiedCount !== docs.length) {
        // isolation would have to be broken for this; claim nothing rather than what someone holds
        throw new Error(
          `leased ${result.modifiedCount} of ${docs.length} notifications read in one transaction`,
        );
      }
      return docs.map((doc) => ({ ...doc, leaseOwner: owner, leaseUntil }));
    });
  }

  private launch(doc: NotificationDoc): void {
    const running = this.send(doc)
      .catch((err: unknown) => {
        this.options.logger.error(`[notifications] sending ${doc._id} failed unexpectedly`, err);
      })
      .finally(() => {
        this.inFlight.delete(doc._id);
        this.signals.signal("room");
      });
    this.inFlight.set(doc._id, running);
  }

  // -- one send ---------------------------------------------------------------------------------

  private async send(doc: NotificationDoc): Promise<void> {
    const { provider, breaker } = this.options;
    const message: OutboundMessage = {
      id: doc._id,
      channel: doc.channel,
      to: doc.to,
      ...(doc.subject === undefined ? {} : { subject: doc.subject }),
      body: doc.body,
    };
    let outcome: Outcome;
    try {
      outcome = { kind: "sent", receipt: await breaker.fire(() => provider.send(message)) };
    } catch (err) {
      const code = codeOf(err);
      if (code === "BREAKER_OPEN") outcome = { kind: "deferred" };
      else if (code === "NOTIFY_REJECTED") outcome = { kind: "rejected", error: errorText(err) };
      else outcome = { kind: "failed", error: errorText(err) };
    }
    await this.record(doc, outcome);
  }

  /**
   * Write the outcome, retrying the write a few times. Given up on, the lease expires and the
   * notification is sent again under the same id, which the provider deduplicates.
   */
  private async record(doc: NotificationDoc, outcome: Outcome): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.write(doc, outcome);
        return;
      } catch (err) {
        if (attempt >= 3 || this.state === "stopped") {
          this.options.logger.warn(
            `[notifications] could not record the ${outcome.kind} outcome of ${doc._id} (${errorText(err)}); its lease will expire and it will be sent again`,
          );
          return;
        }
        await delay(50 * 2 ** attempt);
      }
    }
  }

  private async write(doc: NotificationDoc, outcome: Outcome): Promise<void> {
    const { notifications, owner, settings, logger } = this.options;
    const now = new Date();
    const mine = { _id: doc._id, status: { $in: SENDABLE }, leaseOwner: owner };
    const releaseLease = { leaseOwner: "", leaseUntil: "" };
    switch (outcome.kind) {
      case "sent": {
        // the provider's answer is proof: it wins even over a notification given up on meanwhile
        await notifications.updateOne(
          { _id: doc._id, status: { $in: [...SENDABLE, "dead"] } },
          {
            $set: {
              status: "sent",
              providerMessageId: outcome.receipt.providerMessageId,
              sentAt: now,
              updatedAt: now,
            },
            $inc: { attempts: 1 },
            $unset: { ...releaseLease, nextAttemptAt: "", deadAt: "" },
          },
        );
        return;
      }
      case "deferred": {
        // never attempted: back in the pool, due after the next poll
        const nextAttemptAt = new Date(now.getTime() + settings.pollIntervalMs);
        await notifications.updateOne(mine, {
          $set: { nextAttemptAt, updatedAt: now },
          $unset: releaseLease,
        });
        this.signals.wakeAt(nextAttemptAt.getTime());
        return;
      }
      case "rejected":
      case "failed": {
        const attempts = doc.attempts + 1;
        const dead = outcome.kind === "rejected" || attempts >= settings.maxAttempts;
        const update = dead
          ? {
              $set: { status: "dead", attempts, lastError: outcome.error, deadAt: now, updatedAt: now },
              $unset: { ...releaseLease, nextAttemptAt: "" },
            }
          : {
              $set: {
                status: "failed",
                attempts,
                lastError: outcome.error,
                nextAttemptAt: new Date(
                  now.getTime() + retryDelayMs(attempts, settings.backoffBaseMs, settings.backoffMaxMs),
                ),
                updatedAt: now,
              },
              $unset: releaseLease,
            };
        const result = await notifications.updateOne(mine, update);
        // 0: the lease lapsed and another sender holds it now; its outcome is that sender's to write
        if (result.modifiedCount === 0) return;
        if (dead) {
          logger.error(
            `[notifications] ${doc._id} (${doc.type} ${doc.channel} for ${doc.customerId}) is dead after ${attempts} attempt(s); last error: ${outcome.error}. Replay it once the cause is fixed.`,
          );
        } else {
          const at = (update.$set as { nextAttemptAt: Date }).nextAttemptAt.getTime();
          this.signals.wakeAt(at);
        }
        return;
      }
    }
  }
}

// ── helpers ──────────────────────────────────────────────────────────────

/** Whose notifications a caller lists: a customer their own; an admin anyone's (default own); an internal call must say. */
function ownerOf(principal: Principal | undefined, customerId: string | undefined): string {
  if (principal === undefined) {
    if (customerId === undefined) {
      throw new MoleculerClientError(
        "customerId is required when there is no calling user",
        400,
        "CUSTOMER_ID_REQUIRED",
      );
    }
    return customerId;
  }
  if (isAdmin(principal) && customerId !== undefined) return customerId;
  return principal.id;
}

/** Operator actions: internal calls (REPL, other services) and admins. */
function requireOperator(ctx: Context): void {
  const principal = principalOf(ctx);
  if (principal !== undefined && !isAdmin(principal)) {
    throw new MoleculerClientError("only an operator may do this", 403, "FORBIDDEN");
  }
}

/** How many free slots a sender waits for before it claims again (while some sends are in flight). */
function refillBatch(maxInFlight: number): number {
  return Math.max(1, Math.floor(maxInFlight / 2));
}

function viewOf(doc: NotificationDoc): NotificationView {
  return {
    id: doc._id,
    eventId: doc.eventId,
    orderId: doc.orderId,
    type: doc.type,
    channel: doc.channel,
    status: doc.status,
    ...(doc.subject === undefined ? {} : { subject: doc.subject }),
    body: doc.body,
    attempts: doc.attempts,
    createdAt: doc.createdAt.toISOString(),
    ...(doc.sentAt === undefined ? {} : { sentAt: doc.sentAt.toISOString() }),
  };
}

function deadViewOf(doc: NotificationDoc): DeadNotificationView {
  return {
    ...viewOf(doc),
    customerId: doc.customerId,
    ...(doc.lastError === undefined ? {} : { lastError: doc.lastError }),
    ...(doc.deadAt === undefined ? {} : { deadAt: doc.deadAt.toISOString() }),
  };
}

/** The stable code of an error; branch on it, never on `instanceof`. */
function codeOf(err: unknown): unknown {
  if (typeof err !== "object" || err === null) return undefined;
  return (err as { code?: unknown }).code;
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = codeOf(err);
  return typeof code === "string" ? `${code}: ${err.message}` : err.message;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export default NotificationsService;
