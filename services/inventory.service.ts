/**
 * inventory service: stock per SKU and the reservations of orders (DESIGN §4, docs/inventory.md).
 * Per SKU, always: available + reserved + sold = received. The rules live in models/inventory.ts;
 * here each stock move is a guarded conditional update (`{ _id: sku, available: { $gte: n } }`), and
 * every change of a reservation and its stock commits in one store transaction.
 *
 * - `reserve` holds all lines of an order or none, idempotent by order id; the hold expires after
 *   `holdTtlMs` unless `order.created` binds it. A sweeper releases expired holds.
 * - The inbox binds (`order.created`), commits (`order.paid`) and releases (`order.cancelled`).
 * - Reads: moleculer-db's `list` / `get` over the `products` collection (store adapter underneath),
 *   `getProduct`, `stockReport`. Admin writes: `upsert`, `restock`.
 *
 * Settings (tests shorten them): `holdTtlMs` (default 15 min), `sweepIntervalMs` (5 s), `sweepBatch`.
 */
import DbService from "moleculer-db";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import { DEMO_CATALOG } from "../lib/catalog/demo-catalog";
import { PermanentError } from "../lib/errors";
import { infrastructureOf } from "../lib/infrastructure";
import { PeriodicTask } from "../lib/periodic-task";
import type { OutboxTransaction } from "../lib/outbox/outbox";
import { isAdmin, principalOf } from "../lib/principal";
import { storeDbAdapter } from "../lib/store/db-service.adapter";
import type { Doc, Filter, Transaction } from "../lib/store/store.port";
import { InboxMixin, type WithSubscriptions } from "../mixins/inbox.mixin";
import { InfrastructureMixin, type InfrastructureThis } from "../mixins/infrastructure.mixin";
import { OutboxMixin, type OutboxThis } from "../mixins/outbox.mixin";
import {
  INVENTORY_LIMITS,
  RESERVATION_STATUSES,
  RESERVATION_TRANSITIONS,
  SKU_PATTERN,
  STOCK_MOVES,
  applyMove,
  canTransition,
  checkRequest,
  holdDeadline,
  initialStock,
  moveIncrements,
  nextStatus,
  planReservation,
  sameRequest,
  stockInvariantHolds,
  type RequestedLine,
  type ReservationLine,
  type ReservationStatus,
  type ReservationTransition,
  type Shortfall,
  type Stock,
  type StockMove,
} from "../models/inventory";
import { money, type Money } from "../models/money";

const { MoleculerClientError, MoleculerError, MoleculerRetryableError } = Errors;

/** Collections of the inventory store. */
const PRODUCTS = "products";
const RESERVATIONS = "reservations";

/** A product and its stock counters; `_id` is the SKU. */
interface ProductDoc extends Doc, Stock {
  sku: string;
  name: string;
  price: Money;
  createdAt: Date;
  updatedAt: Date;
}

/** Why a reservation was released. */
type ReleaseReason = "released" | "expired" | "order_cancelled";

/** The reservation of one order; `_id` is the order id. */
interface ReservationDoc extends Doc {
  orderId: string;
  lines: ReservationLine[];
  status: ReservationStatus;
  /** A `held` reservation is released by the sweeper after this. */
  holdUntil: Date;
  customerId?: string;
  releaseReason?: ReleaseReason;
  /** `order.cancelled` was seen: an `order.created` arriving later must not reserve again. */
  orderCancelledAt?: Date;
  /** `order.created` met a released hold and the stock could not serve it again. */
  unfulfilled?: { at: Date; shortfalls: Shortfall[] };
  createdAt: Date;
  updatedAt: Date;
  boundAt?: Date;
  committedAt?: Date;
  releasedAt?: Date;
}

/** A product as anyone sees it. */
export interface ProductView {
  sku: string;
  name: string;
  price: Money;
  available: number;
}

/** A product as an admin sees it: every counter. */
export interface ProductAdminView extends ProductView {
  reserved: number;
  sold: number;
  received: number;
  createdAt: string;
  updatedAt: string;
}

/** What `reserve` answers. */
export interface ReservationView {
  orderId: string;
  status: ReservationStatus;
  items: ReservationLine[];
}

/** What `release` and `commit` answer; `none` when `release` found no reservation. */
export interface ReservationStatusView {
  orderId: string;
  status: ReservationStatus | "none";
}

/** Every SKU's counters and whether the invariant holds (tests, the REPL). */
export interface StockReport {
  products: (Stock & { sku: string; invariantHolds: boolean })[];
  invariantHolds: boolean;
  reservations: Record<ReservationStatus, number>;
  /** Orders created after their hold expired whose stock could not be reserved again. */
  unfulfilled: number;
}

interface InventorySettings {
  idField: string;
  fields: string[];
  pageSize: number;
  maxPageSize: number;
  /** How long a `held` reservation waits for `order.created`. */
  holdTtlMs: number;
  /** How often expired holds are looked for. */
  sweepIntervalMs: number;
  /** Expired holds released per sweep, at most. */
  sweepBatch: number;
}

interface InventoryVars {
  sweeper: PeriodicTask | undefined;
}

interface InventoryMethods {
  reserveStock(ctx: Context<ReserveParams>): Promise<ReservationView>;
  settleReservation(
    ctx: Context<{ orderId: string }>,
    transition: "release" | "commit",
  ): Promise<ReservationStatusView>;
  sweepExpiredHolds(): Promise<number>;
  seedDemoCatalog(): Promise<void>;
}

type InventoryThis = Service<InventorySettings> &
  InfrastructureThis &
  OutboxThis &
  InventoryVars &
  InventoryMethods;

interface ReserveParams {
  orderId: string;
  items: RequestedLine[];
}

const SKU_PARAM = { type: "string", pattern: SKU_PATTERN } as const;
const ORDER_ID_PARAM = { type: "string", min: 1, max: 128 } as const;

const InventoryService: ServiceSchema<InventorySettings, InventoryMethods, InventoryVars, InventoryThis> &
  WithSubscriptions<InventoryThis> & { adapter: unknown } = {
  name: "inventory",
  // moleculer-db's typings describe its schema as a class; it is a plain mixin object
  mixins: [
    DbService as unknown as Partial<ServiceSchema>,
    InfrastructureMixin({ store: true, bus: true }),
    OutboxMixin(),
    InboxMixin(),
  ],
  adapter: storeDbAdapter(PRODUCTS),

  // ── settings ───────────────────────────────────────────────────────────
  settings: {
    idField: "sku",
    // what `list` and `get` show anyone; admins see the counters through getProduct and stockReport
    fields: ["sku", "name", "price", "available"],
    pageSize: 20,
    maxPageSize: 100,
    holdTtlMs: 15 * 60_000,
    sweepIntervalMs: 5_000,
    sweepBatch: 100,
  },

  // ── actions ────────────────────────────────────────────────────────────
  actions: {
    // stock changes only through the actions below; moleculer-db's generic ones are off
    create: false,
    insert: false,
    update: false,
    remove: false,
    find: false,
    count: false,
    // writes bypass moleculer-db, which therefore never clears its cache: read uncached
    list: { visibility: "public", cache: false },
    get: { visibility: "public", cache: false },

    /** Reserve every line for an order, or none. Idempotent by `orderId`. */
    reserve: {
      visibility: "public",
      params: {
        orderId: ORDER_ID_PARAM,
        items: {
          type: "array",
          min: 1,
          max: INVENTORY_LIMITS.maxLines,
          items: {
            type: "object",
            props: {
              sku: SKU_PARAM,
              quantity: { type: "number", integer: true, min: 1, max: INVENTORY_LIMITS.maxQuantity },
            },
          },
        },
      },
      handler(ctx: Context<ReserveParams>): Promise<ReservationView> {
        return this.reserveStock(ctx);
      },
    },

    /** Give a reservation's units back. Unknown order → status `none`; a committed one → 409. */
    release: {
      visibility: "public",
      params: { orderId: ORDER_ID_PARAM },
      handler(ctx: Context<{ orderId: string }>): Promise<ReservationStatusView> {
        return this.settleReservation(ctx, "release");
      },
    },

    /** Sell a reservation's units. Unknown order → 404; a released one → 409. */
    commit: {
      visibility: "public",
      params: { orderId: ORDER_ID_PARAM },
      handler(ctx: Context<{ orderId: string }>): Promise<ReservationStatusView> {
        return this.settleReservation(ctx, "commit");
      },
    },

    /** Create a product with no stock, or change its name and price. Admins and internal callers. */
    upsert: {
      visibility: "public",
      params: {
        sku: SKU_PARAM,
        name: { type: "string", min: 1, max: 200 },
        price: {
          type: "object",
          props: {
            minor: { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER },
            currency: { type: "string", pattern: /^[A-Z]{3}$/ },
          },
        },
      },
      async handler(
        ctx: Context<{ sku: string; name: string; price: { minor: number; currency: string } }>,
      ): Promise<ProductAdminView> {
        requireAdmin(ctx);
        const { sku, name } = ctx.params;
        const price = priceOf(ctx.params.price);
        // MongoDB: two upserts of a new SKU at once; the loser's second attempt updates
        const product = await onceMoreOnDuplicate(() =>
          this.transaction(async (tx) => {
            const now = new Date();
            const products = tx.collection<ProductDoc>(PRODUCTS);
            await products.updateOne(
              { _id: sku },
              {
                $set: { name, price, updatedAt: now },
                $setOnInsert: { sku, ...noStock(), createdAt: now },
              },
              { upsert: true },
            );
            return products.findOne({ _id: sku });
          }, ctx),
        );
        if (product === null) throw new Error(`product ${sku} vanished after its upsert`);
        return adminViewOf(product);
      },
    },

    /** Goods received: available += quantity, received += quantity. Admins and internal callers. */
    restock: {
      visibility: "public",
      params: {
        sku: SKU_PARAM,
        quantity: { type: "number", integer: true, min: 1, max: INVENTORY_LIMITS.maxRestock },
      },
      async handler(ctx: Context<{ sku: string; quantity: number }>): Promise<ProductAdminView> {
        requireAdmin(ctx);
        const { sku, quantity } = ctx.params;
        const product = await this.transaction(async (tx) => {
          const products = tx.collection<ProductDoc>(PRODUCTS);
          const current = await products.findOne({ _id: sku });
          if (current === null) return null;
          checked(() => applyMove(current, "restock", quantity)); // the model's rules, before the write
          await moveLinesOrThrow(tx, [{ sku, quantity }], "restock", new Date());
          return products.findOne({ _id: sku });
        }, ctx);
        if (product === null) throw productNotFound(sku);
        return adminViewOf(product);
      },
    },

    /** A product: `{ sku, name, price, available }`, with every counter for an admin. */
    getProduct: {
      visibility: "public",
      params: { sku: SKU_PARAM },
      async handler(ctx: Context<{ sku: string }>): Promise<ProductView | ProductAdminView> {
        const product = await this.store.collection<ProductDoc>(PRODUCTS).findOne({ _id: ctx.params.sku });
        if (product === null) throw productNotFound(ctx.params.sku);
        return isAdmin(principalOf(ctx)) ? adminViewOf(product) : viewOf(product);
      },
    },

    /** The catalog by page (moleculer-db's `list`): `{ rows, total, page, pageSize, totalPages }`. */
    listProducts: {
      visibility: "public",
      params: {
        page: { type: "number", integer: true, min: 1, optional: true, convert: true },
        pageSize: { type: "number", integer: true, min: 1, optional: true, convert: true },
        sort: { type: "string", optional: true },
        search: { type: "string", max: 200, optional: true },
      },
      handler(ctx: Context<Record<string, unknown>>): Promise<unknown> {
        const { page, pageSize, sort, search } = ctx.params;
        const params = {
          ...(page === undefined ? {} : { page }),
          ...(pageSize === undefined ? {} : { pageSize }),
          ...(sort === undefined ? {} : { sort }),
          ...(search === undefined ? {} : { search, searchFields: ["sku", "name"] }),
        };
        return ctx.call(`${this.fullName}.list`, params);
      },
    },

    /** Every SKU's counters and whether `available + reserved + sold = received` holds for each. */
    stockReport: {
      visibility: "public",
      async handler(): Promise<StockReport> {
        const [products, reservations] = await Promise.all([
          this.store.collection<ProductDoc>(PRODUCTS).find({}, { sort: { _id: 1 } }),
          this.store
            .collection<ReservationDoc>(RESERVATIONS)
            .find({}, { projection: { status: 1, unfulfilled: 1 } }),
        ]);
        const lines = products.map((p) => {
          const stock = stockOf(p);
          return { sku: p._id, ...stock, invariantHolds: stockInvariantHolds(stock) };
        });
        const counts = Object.fromEntries(RESERVATION_STATUSES.map((s) => [s, 0])) as Record<
          ReservationStatus,
          number
        >;
        for (const r of reservations) counts[r.status] += 1;
        return {
          products: lines,
          invariantHolds: lines.every((l) => l.invariantHolds),
          reservations: counts,
          unfulfilled: reservations.filter((r) => r.unfulfilled !== undefined).length,
        };
      },
    },
  },

  // ── subscriptions ──────────────────────────────────────────────────────
  subscriptions: {
    "order.created": {
      /** The order exists: bind its hold; a hold released before the event arrived is reserved again. */
      async handler(event, tx) {
        const { orderId, customerId, items } = event.payload;
        const now = new Date();
        const found = await tx.collection<ReservationDoc>(RESERVATIONS).findOne({ _id: orderId });
        if (found !== null && found.status !== "released") {
          if (!canTransition(found.status, "bind")) {
            this.logger.debug(`order.created for ${orderId}: reservation already ${found.status}`);
            return;
          }
          await transitionReservation(tx, found, "bind", now, { customerId });
          return;
        }
        if (found?.orderCancelledAt !== undefined) {
          this.logger.debug(`order.created for ${orderId}: the order was already cancelled`);
          return;
        }
        // The hold expired (or was released) before the order's event arrived, or never existed.
        const lines = found?.lines ?? linesOfEvent(orderId, items);
        const shortfalls = await shortfallsOf(tx, lines);
        if (shortfalls.length > 0) {
          // Known gap: the order stays without stock; operators find it in stockReport.unfulfilled.
          this.logger.error(
            `order ${orderId} was created after its hold was released and the stock cannot serve it again`,
            { orderId, shortfalls },
          );
          await recordUnfulfilled(tx, found, { orderId, customerId, lines, shortfalls, now });
          return;
        }
        if (found === null) {
          await moveLinesOrThrow(tx, lines, "reserve", now);
          await tx.collection<ReservationDoc>(RESERVATIONS).insertOne({
            _id: orderId,
            orderId,
            lines,
            status: "bound",
            holdUntil: now,
            customerId,
            createdAt: now,
            updatedAt: now,
            boundAt: now,
          });
        } else {
          await transitionReservation(tx, found, "rebind", now, { customerId }, [
            "releaseReason",
            "releasedAt",
          ]);
        }
        this.logger.info(`order ${orderId} arrived after its hold was released; its stock is reserved again`);
      },
    },

    "order.paid": {
      /** Paid: the reserved units are sold. */
      async handler(event, tx) {
        const { orderId } = event.payload;
        const found = await tx.collection<ReservationDoc>(RESERVATIONS).findOne({ _id: orderId });
        if (found === null || !canTransition(found.status, "commit")) {
          const state = found?.status ?? "missing";
          if (found?.unfulfilled !== undefined)
            this.logger.error(`order ${orderId} was paid but its stock could not be reserved`, { orderId });
          else this.logger.debug(`order.paid for ${orderId}: reservation ${state}, nothing to commit`);
          return;
        }
        await transitionReservation(tx, found, "commit", new Date());
      },
    },

    "order.cancelled": {
      /** Cancelled: held or bound units go back; units sold to a paid, never-shipped order too. */
      async handler(event, tx) {
        const { orderId } = event.payload;
        const now = new Date();
        const found = await tx.collection<ReservationDoc>(RESERVATIONS).findOne({ _id: orderId });
        if (found === null) {
          this.logger.debug(`order.cancelled for ${orderId}: no reservation`);
          return;
        }
        const set = { orderCancelledAt: found.orderCancelledAt ?? now, releaseReason: "order_cancelled" };
        if (canTransition(found.status, "release")) {
          await transitionReservation(tx, found, "release", now, set);
        } else if (canTransition(found.status, "restore")) {
          await transitionReservation(tx, found, "restore", now, set);
        } else if (found.orderCancelledAt === undefined) {
          // already released: remember the cancellation so that a late order.created does not reserve
          await tx
            .collection<ReservationDoc>(RESERVATIONS)
            .updateOne({ _id: orderId }, { $set: { orderCancelledAt: now, updatedAt: now } });
        } else {
          this.logger.debug(`order.cancelled for ${orderId}: reservation already released`);
        }
      },
    },
  },

  // ── methods ────────────────────────────────────────────────────────────
  methods: {
    async reserveStock(ctx: Context<ReserveParams>): Promise<ReservationView> {
      const { orderId } = ctx.params;
      const requested = checked(() => checkRequest(ctx.params.items));
      const holdTtlMs = this.settings.holdTtlMs;
      const attempt = (): Promise<ReservationView> =>
        this.transaction(async (tx) => {
          const now = new Date();
          const reservations = tx.collection<ReservationDoc>(RESERVATIONS);
          const found = await reservations.findOne({ _id: orderId });
          if (found !== null) return existingReservation(found, requested);
          const products = await productsOf(tx, requested);
          const plan = planReservation(stocksOf(products), requested);
          if (plan.unknown.length > 0)
            throw new MoleculerClientError(`unknown SKU: ${plan.unknown.join(", ")}`, 422, "UNKNOWN_SKU", {
              skus: plan.unknown,
            });
          if (plan.shortfalls.length > 0) throw outOfStock(plan.shortfalls);
          const failed = await moveLines(tx, requested, "reserve", now);
          if (failed.length > 0)
            throw new MoleculerRetryableError("stock changed during the reservation", 503, "STOCK_CHANGED", {
              skus: failed,
            });
          const lines = requested.map(({ sku, quantity }) => ({
            sku,
            quantity,
            unitPrice: (products.get(sku) as ProductDoc).price,
          }));
          await reservations.insertOne({
            _id: orderId,
            orderId,
            lines,
            status: "held",
            holdUntil: holdDeadline(now, holdTtlMs),
            createdAt: now,
            updatedAt: now,
          });
          return { orderId, status: "held", items: lines };
        }, ctx);
      // MongoDB: a concurrent reserve of the same order inserted first; the next attempt finds it
      return onceMoreOnDuplicate(attempt);
    },

    settleReservation(
      ctx: Context<{ orderId: string }>,
      transition: "release" | "commit",
    ): Promise<ReservationStatusView> {
      const { orderId } = ctx.params;
      return this.transaction(async (tx) => {
        const found = await tx.collection<ReservationDoc>(RESERVATIONS).findOne({ _id: orderId });
        if (found === null) {
          if (transition === "release") return { orderId, status: "none" };
          throw new MoleculerClientError(
            `no reservation for order ${orderId}`,
            404,
            "RESERVATION_NOT_FOUND",
            {
              orderId,
            },
          );
        }
        const done = RESERVATION_TRANSITIONS[transition].to;
        if (found.status === done) return { orderId, status: done };
        if (!canTransition(found.status, transition)) {
          const type = found.status === "committed" ? "RESERVATION_COMMITTED" : "RESERVATION_RELEASED";
          throw new MoleculerClientError(
            `the reservation of order ${orderId} is ${found.status}: it cannot ${transition}`,
            409,
            type,
            { orderId, status: found.status },
          );
        }
        const set = transition === "release" ? { releaseReason: "released" } : {};
        const status = await transitionReservation(tx, found, transition, new Date(), set);
        return { orderId, status };
      }, ctx);
    },

    /** Releases `held` reservations whose hold has passed; each in its own conditional transaction. */
    async sweepExpiredHolds(): Promise<number> {
      const cutoff = new Date();
      const due = await this.store
        .collection<ReservationDoc>(RESERVATIONS)
        .find(
          { status: "held", holdUntil: { $lt: cutoff } },
          { sort: { holdUntil: 1 }, limit: this.settings.sweepBatch, projection: { _id: 1 } },
        );
      let released = 0;
      for (const { _id } of due) {
        try {
          const done = await this.transaction(async (tx) => {
            // another instance (or order.created) may have got there first
            const found = await tx
              .collection<ReservationDoc>(RESERVATIONS)
              .findOne({ _id, status: "held", holdUntil: { $lt: cutoff } });
            if (found === null) return false;
            await transitionReservation(tx, found, "release", new Date(), { releaseReason: "expired" });
            return true;
          });
          if (done) released += 1;
        } catch (err) {
          this.logger.error(`releasing the expired hold of ${_id} failed; the next sweep retries`, err);
        }
      }
      if (released > 0) this.logger.info(`released ${released} expired hold(s)`);
      return released;
    },

    /** Seeds DEMO_CATALOG into an empty products collection, in one transaction. */
    async seedDemoCatalog(): Promise<void> {
      try {
        const seeded = await this.transaction(async (tx) => {
          const products = tx.collection<ProductDoc>(PRODUCTS);
          if ((await products.countDocuments({})) > 0) return 0;
          const now = new Date();
          await products.insertMany(
            DEMO_CATALOG.map((entry) => ({
              _id: entry.sku,
              sku: entry.sku,
              name: entry.name,
              price: entry.price,
              ...initialStock(entry.quantity),
              createdAt: now,
              updatedAt: now,
            })),
          );
          return DEMO_CATALOG.length;
        });
        if (seeded > 0) this.logger.info(`seeded the demo catalog: ${seeded} products`);
      } catch (err) {
        // another instance seeded at the same moment (MongoDB); the catalog is there either way
        if (codeOf(err) !== "DUPLICATE_KEY") throw err;
      }
    },
  },

  // ── lifecycle ──────────────────────────────────────────────────────────
  created() {
    this.sweeper = undefined;
  },

  async started() {
    await this.store.createIndex(RESERVATIONS, {
      name: "status_hold_until",
      keys: { status: 1, holdUntil: 1 },
    });
    if (infrastructureOf(this.broker).config.seedDemo) await this.seedDemoCatalog();
    this.sweeper = new PeriodicTask({
      what: "sweeping expired holds",
      intervalMs: this.settings.sweepIntervalMs,
      run: () => this.sweepExpiredHolds(),
      logger: this.logger,
    });
    this.sweeper.start();
  },

  async stopped() {
    await this.sweeper?.stop();
    this.sweeper = undefined;
  },
};

// ── store operations (inside a transaction) ────────────────────────────

/** Applies `move` to each line with a guarded update; returns the SKUs whose guard failed. */
async function moveLines(
  tx: Transaction,
  lines: readonly RequestedLine[],
  move: StockMove,
  now: Date,
): Promise<string[]> {
  const { from } = STOCK_MOVES[move];
  const failed: string[] = [];
  for (const { sku, quantity } of lines) {
    const filter: Filter = from === null ? { _id: sku } : { _id: sku, [from]: { $gte: quantity } };
    const result = await tx
      .collection<ProductDoc>(PRODUCTS)
      .updateOne(filter, { $inc: moveIncrements(move, quantity), $set: { updatedAt: now } });
    if (result.modifiedCount !== 1) failed.push(sku);
  }
  return failed;
}

/** `moveLines`, where a failed guard means the counters disagree with the reservation: roll back. */
async function moveLinesOrThrow(
  tx: Transaction,
  lines: readonly RequestedLine[],
  move: StockMove,
  now: Date,
): Promise<void> {
  const failed = await moveLines(tx, lines, move, now);
  if (failed.length > 0)
    throw new MoleculerError(`cannot ${move} stock of ${failed.join(", ")}`, 500, "STOCK_INCONSISTENT", {
      move,
      skus: failed,
    });
}

const STATUS_TIME: Record<ReservationStatus, "createdAt" | "boundAt" | "committedAt" | "releasedAt"> = {
  held: "createdAt",
  bound: "boundAt",
  committed: "committedAt",
  released: "releasedAt",
};

/** Moves a reservation (and its stock) by `transition`, guarded by the status it was read in. */
async function transitionReservation(
  tx: Transaction,
  found: ReservationDoc,
  transition: ReservationTransition,
  now: Date,
  set: Record<string, unknown> = {},
  unset: readonly string[] = [],
): Promise<ReservationStatus> {
  const status = nextStatus(found.status, transition);
  const move = RESERVATION_TRANSITIONS[transition].stock;
  if (move !== undefined) await moveLinesOrThrow(tx, found.lines, move, now);
  const update: Record<string, unknown> = {
    $set: { ...set, status, updatedAt: now, [STATUS_TIME[status]]: now },
  };
  if (unset.length > 0) update.$unset = Object.fromEntries(unset.map((path) => [path, ""]));
  const result = await tx
    .collection<ReservationDoc>(RESERVATIONS)
    .updateOne({ _id: found._id, status: found.status }, update);
  if (result.modifiedCount !== 1)
    throw new MoleculerRetryableError(
      `reservation ${found._id} changed meanwhile`,
      503,
      "RESERVATION_CHANGED",
    );
  return status;
}

/** The products of these lines, by SKU. */
async function productsOf(
  tx: Transaction,
  lines: readonly RequestedLine[],
): Promise<Map<string, ProductDoc>> {
  const docs = await tx
    .collection<ProductDoc>(PRODUCTS)
    .find({ _id: { $in: lines.map((line) => line.sku) } });
  return new Map(docs.map((doc) => [doc._id, doc]));
}

/** Lines the current stock cannot serve (an unknown SKU has nothing available). */
async function shortfallsOf(tx: Transaction, lines: readonly RequestedLine[]): Promise<Shortfall[]> {
  const plan = planReservation(stocksOf(await productsOf(tx, lines)), lines);
  return [
    ...plan.unknown.map((sku) => ({
      sku,
      requested: lines.find((line) => line.sku === sku)?.quantity ?? 0,
      available: 0,
    })),
    ...plan.shortfalls,
  ];
}

/** Notes on the reservation (creating a released one when there was none) that its order got no stock. */
async function recordUnfulfilled(
  tx: OutboxTransaction,
  found: ReservationDoc | null,
  facts: {
    orderId: string;
    customerId: string;
    lines: ReservationLine[];
    shortfalls: Shortfall[];
    now: Date;
  },
): Promise<void> {
  const { orderId, customerId, lines, shortfalls, now } = facts;
  const unfulfilled = { at: now, shortfalls };
  const reservations = tx.collection<ReservationDoc>(RESERVATIONS);
  if (found !== null) {
    await reservations.updateOne({ _id: orderId }, { $set: { unfulfilled, customerId, updatedAt: now } });
    return;
  }
  await reservations.insertOne({
    _id: orderId,
    orderId,
    lines,
    status: "released",
    holdUntil: now,
    customerId,
    unfulfilled,
    createdAt: now,
    updatedAt: now,
    releasedAt: now,
  });
}

// ── helpers ────────────────────────────────────────────────────────────

/** The lines of an `order.created` event; a price in a currency we do not trade in cannot be retried away. */
function linesOfEvent(
  orderId: string,
  items: readonly { sku: string; quantity: number; unitPrice: { minor: number; currency: string } }[],
): ReservationLine[] {
  try {
    return items.map(({ sku, quantity, unitPrice }) => ({
      sku,
      quantity,
      unitPrice: money(unitPrice.minor, unitPrice.currency),
    }));
  } catch (err) {
    throw new PermanentError(`order.created for ${orderId} has an unusable price`, { orderId }, err);
  }
}

/** A second `reserve` for the same order: the same answer, unless it was released or asked differently. */
function existingReservation(found: ReservationDoc, requested: readonly RequestedLine[]): ReservationView {
  const { orderId } = found;
  if (found.status === "released")
    throw new MoleculerClientError(
      `the reservation of order ${orderId} was released`,
      409,
      "RESERVATION_RELEASED",
      { orderId, reason: found.releaseReason },
    );
  if (!sameRequest(found.lines, requested))
    throw new MoleculerClientError(
      `order ${orderId} already has a reservation for other items`,
      409,
      "RESERVATION_MISMATCH",
      { orderId, reserved: found.lines.map(({ sku, quantity }) => ({ sku, quantity })) },
    );
  return { orderId, status: found.status, items: found.lines };
}

function outOfStock(shortfalls: readonly Shortfall[]): Error {
  const skus = shortfalls.map((s) => s.sku).join(", ");
  return new MoleculerClientError(`not enough stock for ${skus}`, 409, "OUT_OF_STOCK", {
    items: shortfalls.map(({ sku, requested, available }) => ({ sku, requested, available })),
  });
}

function productNotFound(sku: string): Error {
  return new MoleculerClientError(`no product ${sku}`, 404, "PRODUCT_NOT_FOUND", { sku });
}

/** Admin actions: an admin, or an internal call (no user). A customer → 403. */
function requireAdmin(ctx: Context): void {
  const user = (ctx.meta as { user?: unknown } | undefined)?.user;
  if (user !== undefined && !isAdmin(principalOf(ctx)))
    throw new MoleculerClientError("this needs the admin role", 403, "FORBIDDEN");
}

/** The price as Money; an unknown currency is a 422. */
function priceOf(price: { minor: number; currency: string }): Money {
  try {
    return money(price.minor, price.currency);
  } catch (err) {
    throw new MoleculerClientError(err instanceof Error ? err.message : String(err), 422, "INVALID_PRICE", {
      price,
    });
  }
}

/** Runs a model check; its InventoryError becomes a 422 with the same code. */
function checked<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    const { code, message, details } = err as { code?: unknown; message?: unknown; details?: unknown };
    if (code === "INVALID_RESERVATION" || code === "INVALID_QUANTITY")
      throw new MoleculerClientError(String(message), 422, code, details);
    throw err;
  }
}

/** Runs `attempt` again once when it lost a race to insert the same `_id` (MongoDB's DUPLICATE_KEY). */
async function onceMoreOnDuplicate<R>(attempt: () => Promise<R>): Promise<R> {
  try {
    return await attempt();
  } catch (err) {
    if (codeOf(err) === "DUPLICATE_KEY") return attempt();
    throw err;
  }
}

function codeOf(err: unknown): unknown {
  return typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
}

function noStock(): Stock {
  return { available: 0, reserved: 0, sold: 0, received: 0 };
}

function stockOf(doc: Stock): Stock {
  return { available: doc.available, reserved: doc.reserved, sold: doc.sold, received: doc.received };
}

function stocksOf(products: ReadonlyMap<string, ProductDoc>): Map<string, Stock> {
  return new Map([...products].map(([sku, doc]) => [sku, stockOf(doc)]));
}

function viewOf(doc: ProductDoc): ProductView {
  return { sku: doc._id, name: doc.name, price: doc.price, available: doc.available };
}

function adminViewOf(doc: ProductDoc): ProductAdminView {
  return {
    ...viewOf(doc),
    reserved: doc.reserved,
    sold: doc.sold,
    received: doc.received,
    createdAt: doc.createdAt.toISOString(),
    updatedAt: doc.updatedAt.toISOString(),
  };
}

export default InventoryService;
