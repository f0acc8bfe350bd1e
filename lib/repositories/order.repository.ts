/**
 * The orders store: the only code that reads or writes the `orders` collection. It loads documents
 * as `Order` aggregates (models/order.ts) and saves an aggregate guarded by the status it was loaded
 * in — every transition changes the status, so 0 documents modified means someone else moved the
 * order meanwhile: `OrderConflictError` — together with the events its command raised, through the
 * outbox, in the caller's transaction. Besides: the pages of the API, the payment-timeout sweep's
 * candidates and the counts by status.
 */
import { OrdermeshError } from "../errors";
import { NEWEST_FIRST, afterCursor, pageOf, type CursorPage } from "../newest-first";
import { publishRaised, type OutboxTransaction } from "../outbox/outbox";
import type { Collection, Doc, DocumentStore, Filter, Transaction } from "../store/store.port";
import {
  ORDER_STATUSES,
  Order,
  type OrderEvent,
  type OrderOutcome,
  type OrderState,
  type OrderStatus,
  type OrderView,
} from "../../models/order";

/** Orders, one per (customer, idempotency key). */
export const ORDERS_COLLECTION = "orders";

/** A stored order: the aggregate's snapshot (`_id` = its id) plus the key it was placed with. */
interface OrderDoc extends Doc, Omit<OrderState, "id"> {
  idempotencyKey: string;
}

/** Fields of the state that may be absent; a save removes those the aggregate no longer has. */
const OPTIONAL_FIELDS = ["paymentId", "cancelReason"] as const satisfies readonly (keyof OrderState)[];

/** The order changed since it was loaded: load it again and decide again. */
export class OrderConflictError extends OrdermeshError {
  constructor(orderId: string, loadedStatus: OrderStatus) {
    super("ORDER_CONFLICT", `order ${orderId} was not saved: it is no longer ${loadedStatus}`, {
      retryable: true,
      data: { orderId, loadedStatus },
    });
  }
}

/** One page of the API's order list. */
export interface OrderPageQuery {
  /** Only this customer's orders. */
  customerId?: string;
  status?: OrderStatus;
  /** The `nextCursor` of the previous page (400 `INVALID_CURSOR` when it is not one). */
  cursor?: string;
  limit: number;
}

/** What a command did to a loaded order. */
export interface OrderUpdate {
  order: Order;
  outcome: OrderOutcome;
}

export class OrderRepository {
  /** The status each aggregate handed out was loaded in: the guard of its save. */
  private readonly loaded = new WeakMap<Order, OrderStatus>();

  /** `store`: the service's own store, read when first needed (a transaction's writes need none). */
  constructor(private readonly store: () => DocumentStore) {}

  /** Create the indexes (idempotent). */
  async prepare(): Promise<void> {
    await this.store().createIndex(ORDERS_COLLECTION, {
      name: "customer_idempotency_key",
      keys: { customerId: 1, idempotencyKey: 1 },
      unique: true,
    });
    await this.store().createIndex(ORDERS_COLLECTION, {
      name: "customer_created",
      keys: { customerId: 1, createdAt: -1 },
    });
    await this.store().createIndex(ORDERS_COLLECTION, {
      name: "status_due",
      keys: { status: 1, paymentDueAt: 1 },
    });
  }

  // ── reads ─────────────────────────────────────────────────────────────────────────────────────

  /** Order `id`, or null. */
  async findById(id: string, tx?: Transaction): Promise<Order | null> {
    return this.hydrate(await this.orders(tx).findOne({ _id: id }));
  }

  /** The order `customerId` placed with `idempotencyKey`, or null. */
  async findByIdempotencyKey(customerId: string, idempotencyKey: string): Promise<Order | null> {
    return this.hydrate(await this.orders().findOne({ customerId, idempotencyKey }));
  }

  /** Orders newest first, by cursor, as callers see them. */
  async page(query: OrderPageQuery): Promise<CursorPage<OrderView>> {
    const conditions: Filter[] = [];
    if (query.customerId !== undefined) conditions.push({ customerId: query.customerId });
    if (query.status !== undefined) conditions.push({ status: query.status });
    if (query.cursor !== undefined) conditions.push(afterCursor(query.cursor, "string"));
    const filter: Filter = conditions.length === 0 ? {} : { $and: conditions };
    const docs = await this.orders().find(filter, { sort: NEWEST_FIRST, limit: query.limit + 1 });
    return pageOf(docs, query.limit, (doc) => Order.fromState(stateOf(doc)).toView());
  }

  /** Ids of up to `limit` orders still unpaid past their deadline at `now`, the longest overdue first. */
  async overdueIds(now: Date, limit: number): Promise<string[]> {
    const docs = await this.orders().find(
      { status: "PENDING_PAYMENT", paymentDueAt: { $lt: now.toISOString() } },
      { sort: { paymentDueAt: 1 }, limit, projection: { _id: 1 } },
    );
    return docs.map((doc) => doc._id);
  }

  /** How many orders are in each status. */
  async countByStatus(): Promise<Record<OrderStatus, number>> {
    const orders = this.orders();
    const counts = await Promise.all(ORDER_STATUSES.map((status) => orders.countDocuments({ status })));
    return Object.fromEntries(ORDER_STATUSES.map((status, i) => [status, counts[i] ?? 0])) as Record<
      OrderStatus,
      number
    >;
  }

  // ── writes, in the caller's transaction ───────────────────────────────────────────────────────

  /**
   * Insert a new order placed with `idempotencyKey`, with the events its placing raised. A second
   * order for the same (customer, key) — or the same id — is a `DuplicateKeyError`.
   */
  async add(
    tx: OutboxTransaction,
    order: Order,
    idempotencyKey: string,
    events: readonly OrderEvent[],
  ): Promise<void> {
    const state = order.toState();
    await this.orders(tx).insertOne(docOf(state, idempotencyKey));
    this.loaded.set(order, state.status);
    await publishRaised(tx, { type: "order", id: order.id }, events);
  }

  /**
   * Save `order` (loaded by this repository) with the events its command raised, guarded by the
   * status it was loaded in. Unchanged and nothing raised: nothing is written.
   */
  async save(tx: OutboxTransaction, order: Order, events: readonly OrderEvent[]): Promise<void> {
    const loadedStatus = this.loaded.get(order);
    if (loadedStatus === undefined) throw new Error(`order ${order.id} was not loaded by this repository`);
    if (order.status !== loadedStatus) {
      const { id: _id, ...fields } = order.toState();
      const absent = OPTIONAL_FIELDS.filter((field) => fields[field] === undefined);
      const result = await this.orders(tx).updateOne(
        { _id: order.id, status: loadedStatus },
        {
          $set: fields,
          ...(absent.length === 0 ? {} : { $unset: Object.fromEntries(absent.map((f) => [f, ""])) }),
        },
      );
      if (result.modifiedCount === 0) throw new OrderConflictError(order.id, loadedStatus);
      this.loaded.set(order, order.status);
    }
    await publishRaised(tx, { type: "order", id: order.id }, events);
  }

  /**
   * Load order `id`, run `command` on it, and save it with the events raised. Null when there is no
   * such order. A command that throws (a refusal) writes nothing.
   */
  async update(
    tx: OutboxTransaction,
    id: string,
    command: (order: Order) => OrderOutcome,
  ): Promise<OrderUpdate | null> {
    const order = await this.findById(id, tx);
    if (order === null) return null;
    const outcome = command(order);
    await this.save(tx, order, outcome.events);
    return { order, outcome };
  }

  // ── helpers ───────────────────────────────────────────────────────────────────────────────────

  private orders(tx?: Transaction): Collection<OrderDoc> {
    return (tx ?? this.store()).collection<OrderDoc>(ORDERS_COLLECTION);
  }

  private hydrate(doc: OrderDoc | null): Order | null {
    if (doc === null) return null;
    const order = Order.fromState(stateOf(doc));
    this.loaded.set(order, order.status);
    return order;
  }
}

function docOf(state: OrderState, idempotencyKey: string): OrderDoc {
  const { id, ...rest } = state;
  return { _id: id, ...rest, idempotencyKey };
}

function stateOf(doc: OrderDoc): OrderState {
  const { _id, idempotencyKey: _key, ...rest } = doc;
  return { id: _id, ...rest };
}
