/**
 * notifications service: tells customers about their orders (docs/notifications.md). On `order.created`,
 * `order.paid`, `order.cancelled` and `payment.refunded` it renders one message per channel
 * (models/notification-template.ts) and creates a pending `Notification` for each in the inbox
 * transaction — one per (event, channel), ever (lib/repositories/notification.repository.ts). The
 * sender of every instance (./notifications.sender.ts) then sends them through the provider
 * (lib/notify) behind the `notify` circuit breaker. What happens to a notification on the way —
 * sent, failed and retried, dead, replayed, and a late sent beating dead — is the aggregate's
 * (models/notification.ts). Details and settings: docs/notifications.md.
 */
import { CUSTOMER_FILTER_PARAM, ID_PARAM, NOTIFICATION_LIST_PARAMS } from "../lib/params";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import { dateOf } from "../lib/clock";
import { PermanentError } from "../lib/errors";
import { infrastructureOf } from "../lib/infrastructure";
import type { CursorPage } from "../lib/newest-first";
import { createNotificationProvider } from "../lib/notify";
import type { NotificationProvider } from "../lib/notify/notify.port";
import type { OutboxTransaction } from "../lib/outbox/outbox";
import { isAdmin, principalOf, type Principal } from "../lib/principal";
import { NotificationRepository, type NotificationCounts } from "../lib/repositories/notification.repository";
import { BreakerMixin, type BreakerThis } from "../mixins/breaker.mixin";
import { InboxMixin, type WithSubscriptions } from "../mixins/inbox.mixin";
import { InfrastructureMixin, type InfrastructureThis } from "../mixins/infrastructure.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { uuidv7 } from "../models/ids";
import {
  Notification,
  type NotificationChannel,
  type NotificationState,
  type NotificationStatus,
  type NotifiedEvent,
  type NotifiedEventType,
} from "../models/notification";
import { renderNotifications, type RenderedNotification } from "../models/notification-template";
import { BREAKER_GRACE_MS, NotificationSender, codeOf, type SenderSettings } from "./notifications.sender";

const { MoleculerClientError } = Errors;

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
export type NotificationStats = NotificationCounts;

/** Tuning of the sender and its breaker (docs/notifications.md); tests shorten them. */
export interface NotificationsSettings extends SenderSettings {
  /** Breaker: calls in the window before it may open, failure percentage that opens it, open time, window. */
  breakerVolumeThreshold: number;
  breakerErrorThresholdPercentage: number;
  breakerResetTimeoutMs: number;
  breakerRollingWindowMs: number;
}

interface NotificationsVars {
  repository: NotificationRepository;
  provider: NotificationProvider | undefined;
  sender: NotificationSender | undefined;
  nudge: NodeJS.Timeout | undefined;
}

interface NotificationsMethods {
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
      params: { ...NOTIFICATION_LIST_PARAMS, customerId: CUSTOMER_FILTER_PARAM },
      async handler(ctx: Context<ListParams>): Promise<NotificationPage> {
        const customerId = ownerOf(principalOf(ctx), ctx.params.customerId);
        const page = await this.repository.pageForCustomer(customerId, {
          limit: ctx.params.limit ?? 20,
          ...(ctx.params.cursor === undefined ? {} : { cursor: ctx.params.cursor }),
        });
        return { items: page.items.map(viewOf), nextCursor: page.nextCursor };
      },
    },

    /** Notifications by status (operators). */
    stats: {
      visibility: "public",
      handler(ctx: Context): Promise<NotificationStats> {
        requireOperator(ctx);
        return this.repository.countByStatus();
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
        return (await this.repository.dead(ctx.params.limit ?? 50)).map(deadViewOf);
      },
    },

    /** Make a dead notification pending again, with a fresh attempt budget (operators). */
    replay: {
      visibility: "public",
      params: { $$strict: true, id: ID_PARAM },
      async handler(ctx: Context<{ id: string }>): Promise<NotificationView> {
        requireOperator(ctx);
        const { id } = ctx.params;
        const now = dateOf(this.clock);
        // read and change in one transaction: the answer is the notification as replayed
        const replayed = await this.store.transaction(async (tx) => {
          const notification = await this.repository.load(id, tx);
          if (notification === null) {
            throw new MoleculerClientError(`notification ${id} not found`, 404, "NOTIFICATION_NOT_FOUND", {
              id,
            });
          }
          const loaded = notification.toState();
          try {
            notification.replay(now);
          } catch (err) {
            if (codeOf(err) !== "NOTIFICATION_NOT_DEAD") throw err;
            const { message, details } = err as Error & { details?: Record<string, unknown> };
            throw new MoleculerClientError(message, 409, "NOTIFICATION_NOT_DEAD", details);
          }
          await this.repository.save(notification, loaded, tx);
          return notification.toState();
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
    /**
     * Create one pending notification per channel for `event`, inside the inbox transaction. Only
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
        if (codeOf(err) === "UNRENDERABLE_EVENT") {
          throw new PermanentError(`${event.type} ${event.id}: ${(err as Error).message}`, {
            eventId: event.id,
            type: event.type,
          });
        }
        throw err;
      }
      const now = dateOf(this.clock);
      for (const message of messages) {
        const notification = Notification.create({ id: uuidv7(now.getTime()), event, message, now });
        await this.repository.createOnce(notification, tx);
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
    this.repository = new NotificationRepository(await infra.store(this.name));
    await this.repository.ensureIndexes();
    this.provider = createNotificationProvider(infra.config, {
      timeoutMs: settings.sendTimeoutMs,
      clock: this.clock,
    });
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
      repository: this.repository,
      provider: this.provider,
      breaker,
      owner: `${this.broker.nodeID}:${this.fullName}`,
      clock: this.clock,
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

function viewOf(state: NotificationState): NotificationView {
  return {
    id: state.id,
    eventId: state.eventId,
    orderId: state.orderId,
    type: state.type,
    channel: state.channel,
    status: state.status,
    ...(state.subject === undefined ? {} : { subject: state.subject }),
    body: state.body,
    attempts: state.attempts,
    createdAt: state.createdAt.toISOString(),
    ...(state.sentAt === undefined ? {} : { sentAt: state.sentAt.toISOString() }),
  };
}

function deadViewOf(state: NotificationState): DeadNotificationView {
  return {
    ...viewOf(state),
    customerId: state.customerId,
    ...(state.lastError === undefined ? {} : { lastError: state.lastError }),
    ...(state.deadAt === undefined ? {} : { deadAt: state.deadAt.toISOString() }),
  };
}

export default NotificationsService;
