/**
 * orders service: places orders (DESIGN §4), answers for them, cancels them, and moves them on
 * when payments report. Every state change commits together with its event through the outbox.
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
import { createHash } from "node:crypto";
import DbService from "moleculer-db";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import { PermanentError } from "../lib/errors";
import { infrastructureOf } from "../lib/infrastructure";
import { afterCursor, pageOf, type CursorPage } from "../lib/newest-first";
import { PeriodicTask } from "../lib/periodic-task";
import { ORDER_ITEMS_PARAM, PAYMENT_METHOD_PARAM } from "../lib/params";
import type { OutboxTransaction } from "../lib/outbox/outbox";
import { canSee, isAdmin, principalOf, type Principal } from "../lib/principal";
import { storeDbAdapter } from "../lib/store/db-service.adapter";
import type { Collection, Doc, Filter } from "../lib/store/store.port";
import { InboxMixin, type WithSubscriptions } from "../mixins/inbox.mixin";
import { InfrastructureMixin, type InfrastructureThis } from "../mixins/infrastructure.mixin";
import { OutboxMixin, type OutboxThis } from "../mixins/outbox.mixin";
import type { Money } from "../models/money";
import {
  ORDER_STATUSES,
  Order,
  type CancelReason,
  type OrderLine,
  type OrderState,
  type OrderStatus,
} from "../models/order";

const { MoleculerClientError } = Errors;

/** Collection of orders in the orders store. */
const ORDERS = "orders";
const DEFAULT_PAYMENT_METHOD = "pm_card_visa";

/** A stored order: the aggregate's snapshot plus the key it was placed with. */
interface OrderDoc extends Doc, Omit<OrderState, "id"> {
  idempotencyKey: string;
}

/** An order as callers see it. */
export interface OrderView {
  id: string;
  customerId: string;
  status: OrderStatus;
  items: OrderLine[];
  total: Money;
  paymentMethod: string;
  paymentDueAt: string;
  paymentId?: string;
  cancelReason?: CancelReason;
  statusHistory: OrderState["statusHistory"];
  createdAt: string;
  updatedAt: string;
}

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

interface ReservedLine {
  sku: string;
  quantity: number;
  unitPrice: Money;
}

interface OrdersSettings {
  idField: string;
  pageSize: number;
  maxPageSize: number;
  sweepIntervalMs: number;
  sweepBatch: number;
}

interface OrdersVars {
  adapter: OrdersReadAdapter;
  sweeper: PeriodicTask | undefined;
}

/** The part of moleculer-db's adapter the reads use. */
interface OrdersReadAdapter {
  find(params: { query?: Filter; sort?: string[]; limit?: number; offset?: number }): Promise<unknown[]>;
  findById(id: string): Promise<unknown>;
}

interface OrdersMethods {
  orders(): Collection<OrderDoc>;
  placeOrder(ctx: Context<CreateParams, CreateMeta>): Promise<OrderView>;
  sweepOverdue(): Promise<number>;
  changeOrder(
    orderId: string,
    change: (order: Order) => void,
    tx: OutboxTransaction,
  ): Promise<{ order: Order; changed: boolean } | null>;
}

type OrdersThis = Service<OrdersSettings> & InfrastructureThis & OutboxThis & OrdersVars & OrdersMethods;

const OrdersService: ServiceSchema<OrdersSettings, OrdersMethods, OrdersVars, OrdersThis> &
  WithSubscriptions<OrdersThis> & { adapter: unknown } = {
  name: "orders",
  // moleculer-db's typings describe its schema as a class; it is a plain mixin object
  mixins: [
    DbService as unknown as Partial<ServiceSchema>,
    InfrastructureMixin({ store: true, bus: true }),
    OutboxMixin(),
    InboxMixin(),
  ],
  adapter: storeDbAdapter(ORDERS),

  // ── settings ───────────────────────────────────────────────────────────
  settings: {
    idField: "_id",
    pageSize: 20,
    maxPageSize: 100,
    sweepIntervalMs: 1000,
    sweepBatch: 100,
  },

  // ── actions ────────────────────────────────────────────────────────────
  actions: {
    // generic writes of moleculer-db are off: orders change only through the aggregate
    create: false,
    insert: false,
    update: false,
    remove: false,
    find: { visibility: "protected", cache: false },
    count: { visibility: "protected" },
    list: { visibility: "protected", cache: false },
    get: { visibility: "protected", cache: false },

    /** Place an order for the calling customer. Needs `ctx.meta.idempotencyKey`. */
    place: {
      visibility: "public",
      params: {
        $$strict: true,
        items: ORDER_ITEMS_PARAM,
        paymentMethod: PAYMENT_METHOD_PARAM,
      },
      handler(ctx: Context<CreateParams, CreateMeta>): Promise<OrderView> {
        return this.placeOrder(ctx);
      },
    },

    /** One order; someone else's is ORDER_NOT_FOUND. */
    getOrder: {
      visibility: "public",
      params: { $$strict: true, id: { type: "string", min: 1, max: 128 } },
      async handler(ctx: Context<{ id: string }>): Promise<OrderView> {
        const doc = await findById(this, ctx.params.id);
        if (doc === null || !canSee(principalOf(ctx), doc.customerId)) throw orderNotFound(ctx.params.id);
        return viewOf(doc);
      },
    },

    /** The caller's orders (an admin's: everyone's, or one customer's), newest first, by cursor. */
    listOrders: {
      visibility: "public",
      params: {
        $$strict: true,
        status: { type: "enum", values: [...ORDER_STATUSES], optional: true },
        limit: { type: "number", integer: true, min: 1, max: 100, optional: true, convert: true },
        cursor: { type: "string", min: 1, max: 512, optional: true },
        customerId: { type: "string", min: 1, max: 128, optional: true },
      },
      async handler(
        this: OrdersThis,
        ctx: Context<{ status?: OrderStatus; limit?: number; cursor?: string; customerId?: string }>,
      ): Promise<OrderPage> {
        const principal = principalOf(ctx);
        const { status, cursor, customerId } = ctx.params;
        const limit = ctx.params.limit ?? 20;
        const conditions: Filter[] = [];
        const owner = ownerFilter(principal, customerId);
        if (owner !== undefined) conditions.push({ customerId: owner });
        if (status !== undefined) conditions.push({ status });
        if (cursor !== undefined) conditions.push(afterCursor(cursor, "string"));
        const query: Filter = conditions.length === 0 ? {} : { $and: conditions };
        // read through moleculer-db's adapter (store port underneath)
        const docs = (await this.adapter.find({
          query,
          sort: ["-createdAt", "-_id"],
          limit: limit + 1,
        })) as OrderDoc[];
        return pageOf(docs, limit, viewOf);
      },
    },

    /** Cancel an order: pending → cancelled; paid → cancelled, and payments refunds. Repeating it is harmless. */
    cancel: {
      visibility: "public",
      params: { $$strict: true, id: { type: "string", min: 1, max: 128 } },
      async handler(ctx: Context<{ id: string }>): Promise<OrderView> {
        const principal = principalOf(ctx);
        const reason: CancelReason = isAdmin(principal) ? "admin_request" : "customer_request";
        const { id } = ctx.params;
        const result = await this.transaction(async (tx) => {
          const orders = tx.collection<OrderDoc>(ORDERS);
          const doc = await orders.findOne({ _id: id });
          if (doc === null || !canSee(principal, doc.customerId)) throw orderNotFound(id);
          // a repeated cancel answers with the cancelled order
          if (doc.status === "CANCELLED") return doc;
          const order = Order.fromState(stateOf(doc));
          const previousStatus = order.status;
          try {
            order.cancel(reason, new Date());
          } catch (err) {
            throw asClientError(err);
          }
          const next = docOf(order.toState(), doc.idempotencyKey);
          await orders.updateOne({ _id: id, status: previousStatus }, { $set: fieldsOf(next) });
          await tx.publish({
            type: "order.cancelled",
            aggregateType: "order",
            aggregateId: id,
            payload: {
              orderId: id,
              customerId: doc.customerId,
              reason,
              previousStatus: previousStatus as "PENDING_PAYMENT" | "PAID",
              total: doc.total,
            },
          });
          return { ...next, _id: id };
        }, ctx);
        return viewOf(result);
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
      async handler(): Promise<Record<OrderStatus, number>> {
        const orders = this.orders();
        const counts = await Promise.all(ORDER_STATUSES.map((status) => orders.countDocuments({ status })));
        return Object.fromEntries(ORDER_STATUSES.map((status, i) => [status, counts[i] ?? 0])) as Record<
          OrderStatus,
          number
        >;
      },
    },
  },

  // ── subscriptions ──────────────────────────────────────────────────────
  subscriptions: {
    "payment.captured": {
      async handler(event, tx) {
        const { orderId, paymentId } = event.payload;
        const result = await this.changeOrder(
          orderId,
          (order) => {
            // a capture for an order already cancelled: payments refunds it, the order stays cancelled
            if (order.status === "PENDING_PAYMENT") order.markPaid(paymentId, new Date());
          },
          tx,
        );
        if (result === null) throw unknownOrder(orderId, event.type);
        if (!result.changed) {
          this.logger.debug(`payment.captured for ${orderId} in ${result.order.status}: nothing to do`);
          return;
        }
        const state = result.order.toState();
        await tx.publish({
          type: "order.paid",
          aggregateType: "order",
          aggregateId: orderId,
          payload: { orderId, customerId: state.customerId, paymentId, total: state.total },
        });
      },
    },

    "payment.failed": {
      async handler(event, tx) {
        const { orderId } = event.payload;
        const result = await this.changeOrder(
          orderId,
          (order) => {
            if (order.status === "PENDING_PAYMENT") order.cancel("payment_failed", new Date());
          },
          tx,
        );
        if (result === null) throw unknownOrder(orderId, event.type);
        if (!result.changed) return;
        const state = result.order.toState();
        await tx.publish({
          type: "order.cancelled",
          aggregateType: "order",
          aggregateId: orderId,
          payload: {
            orderId,
            customerId: state.customerId,
            reason: "payment_failed",
            previousStatus: "PENDING_PAYMENT",
            total: state.total,
          },
        });
      },
    },
  },

  // ── methods ────────────────────────────────────────────────────────────
  methods: {
    orders(): Collection<OrderDoc> {
      return this.store.collection<OrderDoc>(ORDERS);
    },

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
      const existing = await this.orders().findOne({ customerId, idempotencyKey: key });
      if (existing !== null) {
        ctx.meta.$statusCode = 201;
        return viewOf(existing);
      }

      const orderId = orderIdFor(customerId, key);
      const reservation = await ctx.call<
        { items: ReservedLine[] },
        { orderId: string; items: CreateParams["items"] }
      >("inventory.reserve", { orderId, items: ctx.params.items });

      let order: Order;
      try {
        order = Order.place({
          id: orderId,
          customerId,
          items: reservation.items,
          paymentMethod: ctx.params.paymentMethod ?? DEFAULT_PAYMENT_METHOD,
          now: new Date(),
          paymentTimeoutMs: infrastructureOf(this.broker).config.orderPaymentTimeoutMs,
        }).order;
      } catch (err) {
        await releaseQuietly(this, ctx, orderId);
        throw asClientError(err);
      }

      const state = order.toState();
      try {
        await this.transaction(async (tx) => {
          await tx.collection<OrderDoc>(ORDERS).insertOne(docOf(state, key));
          await tx.publish({
            type: "order.created",
            aggregateType: "order",
            aggregateId: orderId,
            payload: {
              orderId,
              customerId,
              items: state.items.map((line) => ({ ...line })),
              total: state.total,
              paymentMethod: state.paymentMethod,
              paymentDueAt: state.paymentDueAt,
            },
          });
        }, ctx);
      } catch (err) {
        if ((err as { code?: unknown }).code === "DUPLICATE_KEY") {
          // the same request, placed concurrently, won: answer with its order (same id, same reservation)
          const winner = await this.orders().findOne({ customerId, idempotencyKey: key });
          if (winner !== null) {
            ctx.meta.$statusCode = 201;
            return viewOf(winner);
          }
        }
        await releaseQuietly(this, ctx, orderId);
        throw err;
      }
      ctx.meta.$statusCode = 201;
      return viewOf({ ...docOf(state, key), _id: orderId });
    },

    async changeOrder(
      this: OrdersThis,
      orderId: string,
      change: (order: Order) => void,
      tx: OutboxTransaction,
    ): Promise<{ order: Order; changed: boolean } | null> {
      const orders = tx.collection<OrderDoc>(ORDERS);
      const doc = await orders.findOne({ _id: orderId });
      if (doc === null) return null;
      const order = Order.fromState(stateOf(doc));
      const before = order.status;
      change(order);
      if (order.status === before) return { order, changed: false };
      await orders.updateOne(
        { _id: orderId, status: before },
        { $set: fieldsOf(docOf(order.toState(), doc.idempotencyKey)) },
      );
      return { order, changed: true };
    },

    async sweepOverdue(): Promise<number> {
      const now = new Date();
      const overdue = await this.orders().find(
        { status: "PENDING_PAYMENT", paymentDueAt: { $lt: now.toISOString() } },
        { sort: { paymentDueAt: 1 }, limit: this.settings.sweepBatch, projection: { _id: 1 } },
      );
      let cancelled = 0;
      for (const { _id } of overdue) {
        // each order in its own transaction: another instance sweeping the same order finds it
        // already cancelled (or paid) and does nothing
        const done = await this.transaction(async (tx) => {
          const result = await this.changeOrder(
            _id,
            (order) => {
              if (order.isPaymentOverdue(now)) order.cancel("payment_timeout", now);
            },
            tx,
          );
          if (result === null || !result.changed) return false;
          const state = result.order.toState();
          await tx.publish({
            type: "order.cancelled",
            aggregateType: "order",
            aggregateId: _id,
            payload: {
              orderId: _id,
              customerId: state.customerId,
              reason: "payment_timeout",
              previousStatus: "PENDING_PAYMENT",
              total: state.total,
            },
          });
          return true;
        });
        if (done) cancelled += 1;
      }
      if (cancelled > 0) this.logger.info(`cancelled ${cancelled} order(s) unpaid past their deadline`);
      return cancelled;
    },
  },

  // ── lifecycle ──────────────────────────────────────────────────────────
  created() {
    this.sweeper = undefined;
  },

  async started() {
    const store = await infrastructureOf(this.broker).store(this.name);
    await store.createIndex(ORDERS, {
      name: "customer_idempotency_key",
      keys: { customerId: 1, idempotencyKey: 1 },
      unique: true,
    });
    await store.createIndex(ORDERS, { name: "customer_created", keys: { customerId: 1, createdAt: -1 } });
    await store.createIndex(ORDERS, { name: "status_due", keys: { status: 1, paymentDueAt: 1 } });
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

/** One order through moleculer-db's adapter (the store port underneath). */
async function findById(service: OrdersThis, id: string): Promise<OrderDoc | null> {
  const found = (await service.adapter.findById(id)) as OrderDoc | null | undefined;
  return found ?? null;
}

/** The order id for (customer, idempotency key): a retried request always meets its own reservation and order. */
function orderIdFor(customerId: string, key: string): string {
  const hex = createHash("sha256").update(`${customerId}\u0000${key}`).digest("hex");
  // RFC 9562 layout, version 8 (custom), variant 10
  const variant = ((parseInt(hex.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function docOf(state: OrderState, idempotencyKey: string): OrderDoc {
  const { id, ...rest } = state;
  return { _id: id, ...rest, idempotencyKey } as OrderDoc;
}

/** Everything but `_id`, for a `$set`. */
function fieldsOf(doc: OrderDoc): Omit<OrderDoc, "_id"> {
  const { _id, ...fields } = doc;
  return fields;
}

function stateOf(doc: OrderDoc): OrderState {
  const { _id, idempotencyKey: _key, ...rest } = doc;
  return { id: _id, ...rest } as OrderState;
}

function viewOf(doc: OrderDoc): OrderView {
  const state = stateOf(doc);
  return {
    id: state.id,
    customerId: state.customerId,
    status: state.status,
    items: state.items.map((line) => ({ ...line })),
    total: state.total,
    paymentMethod: state.paymentMethod,
    paymentDueAt: state.paymentDueAt,
    ...(state.paymentId === undefined ? {} : { paymentId: state.paymentId }),
    ...(state.cancelReason === undefined ? {} : { cancelReason: state.cancelReason }),
    statusHistory: state.statusHistory,
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
  };
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

/** The aggregate's refusals as client errors: illegal transition → 409, invalid order → 422. */
function asClientError(err: unknown): unknown {
  const { code, message, details } = err as { code?: unknown; message?: unknown; details?: unknown };
  if (code === "ILLEGAL_ORDER_TRANSITION")
    return new MoleculerClientError(String(message), 409, code, details);
  if (code === "INVALID_ORDER") return new MoleculerClientError(String(message), 422, code, details);
  return err;
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
