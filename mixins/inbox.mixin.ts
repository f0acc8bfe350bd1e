/**
 * Gives a service an idempotent inbox (docs/inbox.md): it declares `subscriptions` at the top of its
 * schema, one per event type, and each event is claimed and handled in one transaction with the
 * handler's writes and follow-up events (lib/inbox/inbox.consumer.ts, docs/inbox.md).
 *
 *   subscriptions: {
 *     "order.created": {
 *       async handler(event, tx, delivery) { … this is the service … },
 *       maxDeliver: 5, backoffMs: [1000, 5000], maxInFlight: 16,
 *     },
 *   },
 *
 * Adds the actions `inboxStats`, `deadLetters`, `replayDeadLetter` and `discardDeadLetter`, which
 * operators call from the REPL.
 */
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import { defineMixin } from "./schema";
import { EVENT_CATALOG, EVENT_TYPES, type EventEnvelope, type EventType } from "../models/events";
import type { DeadLetter, DeadLetterStatus } from "../lib/inbox/dead-letters";
import {
  InboxConsumer,
  type DeliveryInfo,
  type InboxStats,
  type InboxSubscriptions,
  type ReplayResult,
  type SubscriptionSpec,
} from "../lib/inbox/inbox.consumer";
import { infrastructureOf } from "../lib/infrastructure";
import type { OutboxTransaction } from "../lib/outbox/outbox";

/** A subscription as a service declares it; the handler runs with `this` = the service. */
export interface InboxSubscriptionSchema<T extends EventType = EventType, TThis = Service> extends Omit<
  SubscriptionSpec<T>,
  "handler"
> {
  handler(this: TThis, event: EventEnvelope<T>, tx: OutboxTransaction, delivery: DeliveryInfo): Promise<void>;
}

/** The `subscriptions` section of a service schema, by event type. */
export type InboxSubscriptionsSchema<TThis = Service> = {
  [T in EventType]?: InboxSubscriptionSchema<T, TThis>;
};

/** Add to a service's schema type: `const schema: ServiceSchema & WithSubscriptions = { … }`. */
export interface WithSubscriptions<TThis = Service> {
  subscriptions?: InboxSubscriptionsSchema<TThis>;
}

/** What the mixin adds to `this`. */
export interface InboxThis {
  /** The running inbox; undefined before `started` and after `stopped`. */
  inbox: InboxConsumer | undefined;
}

export interface InboxMixinOptions {
  /** How long processed-event claims are kept (default 14 days). */
  processedRetentionMs?: number;
}

/** The outbox mixin's handle, when the service has one. */
interface OutboxHolder {
  outbox?: { wake(): void };
}

const DEAD_LETTER_STATUSES: (DeadLetterStatus | "any")[] = ["dead", "replayed", "discarded", "any"];

/** The declared subscriptions, checked: known event types with a handler each. */
function declaredSubscriptions(service: Service): [EventType, InboxSubscriptionSchema][] {
  const declared = (service.schema as WithSubscriptions).subscriptions ?? {};
  if (typeof declared !== "object" || declared === null)
    throw new Error(`${service.name}: "subscriptions" must be an object keyed by event type`);
  return Object.entries(declared).map(([type, spec]) => {
    if (!(type in EVENT_CATALOG))
      throw new Error(
        `${service.name}: cannot subscribe to "${type}", not an event type of the catalog (${EVENT_TYPES.join(", ")})`,
      );
    if (typeof spec?.handler !== "function")
      throw new Error(`${service.name}: the "${type}" subscription needs a handler`);
    return [type as EventType, spec as InboxSubscriptionSchema];
  });
}

/** Map the inbox's errors to Moleculer's, so the REPL and callers see a client error with its code. */
function asActionError(err: unknown): unknown {
  const { code, message, data } = err as { code?: unknown; message?: unknown; data?: unknown };
  if (code === "DEAD_LETTER_NOT_FOUND")
    return new Errors.MoleculerClientError(String(message), 404, code, data);
  if (code === "DEAD_LETTER_NOT_REPLAYABLE" || code === "INVALID_DEAD_LETTER_STATE")
    return new Errors.MoleculerClientError(String(message), 409, code, data);
  return err;
}

function running(service: Service & InboxThis): InboxConsumer {
  if (service.inbox === undefined)
    throw new Errors.MoleculerRetryableError(
      `${service.name} inbox is not running`,
      503,
      "INBOX_NOT_RUNNING",
    );
  return service.inbox;
}

/** Mixin factory: `mixins: [InfrastructureMixin({ store: true, bus: true }), InboxMixin()]`. */
export function InboxMixin(options: InboxMixinOptions = {}): Partial<ServiceSchema> {
  return defineMixin<InboxThis>({
    // ── actions ──────────────────────────────────────────────────────────
    actions: {
      inboxStats: {
        visibility: "public",
        handler(): Promise<InboxStats> {
          return running(this).stats();
        },
      },
      deadLetters: {
        visibility: "public",
        params: {
          limit: { type: "number", integer: true, positive: true, max: 1000, optional: true, convert: true },
          type: { type: "enum", values: EVENT_TYPES, optional: true },
          status: { type: "enum", values: DEAD_LETTER_STATUSES, optional: true },
        },
        handler(
          ctx: Context<{ limit?: number; type?: EventType; status?: DeadLetterStatus | "any" }>,
        ): Promise<DeadLetter[]> {
          return running(this).listDeadLetters(ctx.params);
        },
      },
      replayDeadLetter: {
        visibility: "public",
        params: { id: { type: "string", min: 1 } },
        async handler(ctx: Context<{ id: string }>): Promise<ReplayResult> {
          try {
            return await running(this).replayDeadLetter(ctx.params.id);
          } catch (err) {
            throw asActionError(err);
          }
        },
      },
      discardDeadLetter: {
        visibility: "public",
        params: { id: { type: "string", min: 1 } },
        async handler(ctx: Context<{ id: string }>): Promise<DeadLetter> {
          try {
            return await running(this).discardDeadLetter(ctx.params.id);
          } catch (err) {
            throw asActionError(err);
          }
        },
      },
    },

    // ── lifecycle ────────────────────────────────────────────────────────
    created() {
      // fails fast on a subscription to an unknown type, before anything starts
      declaredSubscriptions(this);
      this.inbox = undefined;
    },

    async started() {
      const infra = infrastructureOf(this.broker);
      const [store, bus] = await Promise.all([infra.store(this.name), infra.bus()]);
      const subscriptions: Partial<Record<EventType, SubscriptionSpec>> = {};
      for (const [type, spec] of declaredSubscriptions(this)) {
        subscriptions[type] = {
          ...spec,
          handler: (event, tx, delivery) => spec.handler.call(this, event, tx, delivery),
        };
      }
      const inbox = new InboxConsumer({
        store,
        bus,
        consumer: this.name,
        logger: this.logger,
        subscriptions: subscriptions as InboxSubscriptions,
        // follow-up events are waiting in the outbox: let the relay publish them now
        onCommitted: () => (this as unknown as OutboxHolder).outbox?.wake(),
        ...(options.processedRetentionMs === undefined
          ? {}
          : { processedRetentionMs: options.processedRetentionMs }),
      });
      await inbox.start();
      this.inbox = inbox;
    },

    async stopped() {
      const inbox = this.inbox;
      this.inbox = undefined;
      await inbox?.stop();
    },
  });
}
