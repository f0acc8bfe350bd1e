/**
 * orders service: places orders (docs/orders.md), answers for them, cancels them, and moves them on
 * when payments report. The rules are the order aggregate's (models/order.ts), which raises the
 * events; every order is read and written through lib/repositories/order.repository.ts, which
 * commits each change together with its events through the outbox.
 *
 * Placing an order: reserve the stock at inventory (all lines or none, idempotent by order id),
 * then ONE transaction inserts the order and publishes `order.created`. The order id is derived
 * from (customer, Idempotency-Key), so a retried request — even after a crash between the two
 * steps, even with every cache lost — reaches the same reservation and the same order; the
 * unique (customerId, idempotencyKey) index makes a second order impossible. When the order
 * cannot be stored, the reservation is released (and inventory's hold TTL covers a crash).
 *
 * Settings (tests shorten them): `sweepIntervalMs` (how often unpaid orders are looked for),
 * `sweepBatch` (how many per sweep). Details: docs/orders.md.
 */
import { asClientError } from "../lib/http/error-response";
import { createHash } from "node:crypto";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import { dateOf } from "../lib/clock";
import { PermanentError } from "../lib/errors";
import { infrastructureOf } from "../lib/infrastructure";
import type { CursorPage } from "../lib/newest-first";
import { ORDER_LIST_PARAMS, ORDER_PARAMS, PLACE_ORDER_PARAMS } from "../lib/params";
import { PeriodicTask } from "../lib/periodic-task";
import { canSee, isAdmin, principalOf, type Principal } from "../lib/principal";
import { OrderRepository } from "../lib/repositories/order.repository";
import { InboxMixin, type WithSubscriptions } from "../mixins/inbox.mixin";
import { InfrastructureMixin, type InfrastructureThis } from "../mixins/infrastructure.mixin";
import { OutboxMixin, type OutboxThis } from "../mixins/outbox.mixin";
import type { Money } from "../models/money";
import {
  Order,
  type CancelReason,
  type OrderOutcome,
  type OrderStatus,
  type OrderView,
  type PlacedOrder,
} from "../models/order";

const { MoleculerClientError } = Errors;

const DEFAULT_PAYMENT_METHOD = "pm_card_visa";

export type { OrderView };
export type OrderPage = CursorPage<OrderView>;

interface CreateParams {
  items: { sku: string; quantity: number }[];
  paymentMethod?: string;
}

interface CreateMeta {
  /** Set by the gateway from the `Idempotency-Key` header. */
  idempotencyKey?: string;
  $statusCode?: number;
}

interface ListParams {
  status?: OrderStatus;
  limit?: number;
  cursor?: string;
  customerId?: string;
}

interface ReservedLine {
  sku: string;
  quantity: number;
  unitPrice: Money;
}

interface OrdersSettings {
  /** Orders on a page when the caller names no `limit`. */
  pageSize: number;
  sweepIntervalMs: number;
  sweepBatch: number;
}

interface OrdersVars {
  orders: OrderRepository;
  sweeper: PeriodicTask | undefined;
}

interface OrdersMethods {
  placeOrder(ctx: Context<CreateParams, CreateMeta>): Promise<OrderView>;
  sweepOverdue(): Promise<number>;
  noteUnchanged(what: string, orderId: string, outcome: OrderOutcome): void;
}

type OrdersThis = Service<OrdersSettings> & InfrastructureThis & OutboxThis & OrdersVars & OrdersMethods;

const OrdersService: ServiceSchema<OrdersSettings, OrdersMethods, OrdersVars, OrdersThis> &
  WithSubscriptions<OrdersThis> = {
  name: "orders",
  mixins: [InfrastructureMixin({ store: true, bus: true }), OutboxMixin(), InboxMixin()],

  // ── settings ───────────────────────────────────────────────────────────
  settings: {
    pageSize: 20,
    sweepIntervalMs: 1000,
    sweepBatch: 100,
  },

  // ── actions ────────────────────────────────────────────────────────────
  actions: {
    /** Place an order for the calling customer. Needs `ctx.meta.idempotencyKey`. */
    place: {
      visibility: "public",
      params: PLACE_ORDER_PARAMS,
      handler(ctx: Context<CreateParams, CreateMeta>): Promise<OrderView> {
        return this.placeOrder(ctx);
      },
    },

    /** One order; someone else's is ORDER_NOT_FOUND. */
    getOrder: {
      visibility: "public",
      params: ORDER_PARAMS,
      async handler(ctx: Context<{ id: string }>): Promise<OrderView> {
        const order = await this.orders.findById(ctx.params.id);
        if (order === null || !canSee(principalOf(ctx), order.customerId)) throw orderNotFound(ctx.params.id);
        return order.toView();
      },
    },

    /** The caller's orders (an admin's: everyone's, or one customer's), newest first, by cursor. */
    listOrders: {
      visibility: "public",
      params: ORDER_LIST_PARAMS,
      handler(ctx: Context<ListParams>): Promise<OrderPage> {
        const { status, cursor, customerId } = ctx.params;
        return this.orders.page({
          customerId: ownerFilter(principalOf(ctx), customerId),
          status,
          cursor,
          limit: ctx.params.limit ?? this.settings.pageSize,
        });
      },
    },

    /** Cancel an order: pending → cancelled; paid → cancelled, and payments refunds. Repeating it is harmless. */
    cancel: {
      visibility: "public",
      params: ORDER_PARAMS,
      async handler(ctx: Context<{ id: string }>): Promise<OrderView> {
        const principal = principalOf(ctx);
        const reason: CancelReason = isAdmin(principal) ? "admin_request" : "customer_request";
        const { id } = ctx.params;
        try {
          const result = await this.transaction(
            (tx) =>
              this.orders.update(tx, id, (order) => {
                if (!canSee(principal, order.customerId)) throw orderNotFound(id);
                // a repeated cancel answers with the cancelled order
                return order.requestCancellation(reason, dateOf(this.clock));
              }),
            ctx,
          );
          if (result === null) throw orderNotFound(id);
          return result.order.toView();
        } catch (err) {
          throw asClientError(err);
        }
      },
    },

    /** Cancel every unpaid order past its deadline now (the sweeper does this on its own). */
    sweep: {
      visibility: "public",
      async handler(): Promise<{ cancelled: number }> {
        return { cancelled: await this.sweepOverdue() };
      },
    },

    /** Orders by status, for the REPL and tests. */
    stats: {
      visibility: "public",
      handler(): Promise<Record<OrderStatus, number>> {
        return this.orders.countByStatus();
      },
    },
  },

  // ── subscriptions ──────────────────────────────────────────────────────
  subscriptions: {
    "payment.captured": {
      async handler(event, tx) {
        const { orderId, paymentId } = event.payload;
        const result = await this.orders.update(tx, orderId, (order) =>
          order.recordCapture(paymentId, dateOf(this.clock)),
        );
        if (result === null) throw unknownOrder(orderId, event.type);
        this.noteUnchanged(event.type, orderId, result.outcome);
      },
    },

    "payment.failed": {
      async handler(event, tx) {
        const { orderId } = event.payload;
        const result = await this.orders.update(tx, orderId, (order) =>
          order.recordPaymentFailure(dateOf(this.clock)),
        );
        if (result === null) throw unknownOrder(orderId, event.type);
        this.noteUnchanged(event.type, orderId, result.outcome);
      },
    },
  },

  // ── methods ────────────────────────────────────────────────────────────
  methods: {
    async placeOrder(ctx: Context<CreateParams, CreateMeta>): Promise<OrderView> {
      const principal = principalOf(ctx);
      if (principal === undefined || !principal.roles.includes("customer")) {
        throw new MoleculerClientError("only a customer can place an order", 403, "FORBIDDEN");
      }
      const key = ctx.meta.idempotencyKey;
      if (typeof key !== "string" || key.length === 0) {
        throw new MoleculerClientError("an Idempotency-Key is required", 400, "IDEMPOTENCY_KEY_REQUIRED");
      }
      const customerId = principal.id;
      const existing = await this.orders.findByIdempotencyKey(customerId, key);
      if (existing !== null) {
        ctx.meta.$statusCode = 201;
        return existing.toView();
      }

      const orderId = orderIdFor(customerId, key);
      const reservation = await ctx.call<
        { items: ReservedLine[] },
        { orderId: string; items: CreateParams["items"] }
      >("inventory.reserve", { orderId, items: ctx.params.items });

      let placed: PlacedOrder;
      try {
        placed = Order.place({
          id: orderId,
          customerId,
          items: reservation.items,
          paymentMethod: ctx.params.paymentMethod ?? DEFAULT_PAYMENT_METHOD,
          now: dateOf(this.clock),
          paymentTimeoutMs: infrastructureOf(this.broker).config.orderPaymentTimeoutMs,
        });
      } catch (err) {
        await releaseQuietly(this, ctx, orderId);
        throw asClientError(err);
      }

      try {
        await this.transaction((tx) => this.orders.add(tx, placed.order, key, placed.events), ctx);
      } catch (err) {
        if ((err as { code?: unknown }).code === "DUPLICATE_KEY") {
          // the same request, placed concurrently, won: answer with its order (same id, same reservation)
          const winner = await this.orders.findByIdempotencyKey(customerId, key);
          if (winner !== null) {
            ctx.meta.$statusCode = 201;
            return winner.toView();
          }
        }
        await releaseQuietly(this, ctx, orderId);
        throw err;
      }
      ctx.meta.$statusCode = 201;
      return placed.order.toView();
    },

    async sweepOverdue(): Promise<number> {
      const now = dateOf(this.clock);
      let cancelled = 0;
      for (const id of await this.orders.overdueIds(now, this.settings.sweepBatch)) {
        // each order in its own transaction: another instance sweeping the same order finds it
        // already cancelled (or paid) and does nothing
        try {
          const result = await this.transaction((tx) =>
            this.orders.update(tx, id, (order) => order.expireIfOverdue(now)),
          );
          if (result?.outcome.changed === true) cancelled += 1;
        } catch (err) {
          // changed by someone else meanwhile: whatever it is now, it is no longer this sweep's
          if ((err as { code?: unknown }).code !== "ORDER_CONFLICT") throw err;
        }
      }
      if (cancelled > 0) this.logger.info(`cancelled ${cancelled} order(s) unpaid past their deadline`);
      return cancelled;
    },

    /** A message the order tolerated: said in the log, louder when money must go back. */
    noteUnchanged(what: string, orderId: string, outcome: OrderOutcome): void {
      if (outcome.changed) return;
      const line = `${what} for ${orderId}: nothing to do (${outcome.code}: ${outcome.reason})`;
      if (outcome.code === "PAID_BY_ANOTHER_PAYMENT") this.logger.warn(line);
      else if (outcome.refundDue) this.logger.info(line);
      else this.logger.debug(line);
    },
  },

  // ── lifecycle ──────────────────────────────────────────────────────────
  created() {
    // built now, not in started(): the inbox may deliver before this service's started() runs
    this.orders = new OrderRepository(() => this.store);
    this.sweeper = undefined;
  },

  async started() {
    await this.orders.prepare();
    this.sweeper = new PeriodicTask({
      what: "sweeping unpaid orders",
      intervalMs: this.settings.sweepIntervalMs,
      run: () => this.sweepOverdue(),
      logger: this.logger,
    });
    this.sweeper.start();
  },

  async stopped() {
    await this.sweeper?.stop();
    this.sweeper = undefined;
  },
};

/** The order id for (customer, idempotency key): a retried request always meets its own reservation and order. */
function orderIdFor(customerId: string, key: string): string {
  const hex = createHash("sha256").update(`${customerId}\u0000${key}`).digest("hex");
  // RFC 9562 layout, version 8 (custom), variant 10
  const variant = ((parseInt(hex.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Whose orders a caller may list: a customer only their own; an admin anyone's; internal calls must say. */
function ownerFilter(principal: Principal | undefined, customerId: string | undefined): string | undefined {
  if (principal === undefined || isAdmin(principal)) return customerId;
  return principal.id;
}

function orderNotFound(id: string): Errors.MoleculerClientError {
  return new MoleculerClientError(`order ${id} not found`, 404, "ORDER_NOT_FOUND", { id });
}

/** An event about an order this service never stored: it cannot become true by retrying. */
function unknownOrder(orderId: string, type: string): PermanentError {
  return new PermanentError(`${type} for unknown order ${orderId}`, { orderId, type });
}

/** Compensation: give the stock back; inventory's hold TTL covers a release that does not get through. */
async function releaseQuietly(
  service: Pick<Service, "logger">,
  ctx: Context,
  orderId: string,
): Promise<void> {
  try {
    await ctx.call("inventory.release", { orderId });
  } catch (err) {
    service.logger.warn(`could not release the reservation of ${orderId}; its hold will expire`, err);
  }
}

export default OrdersService;
