/**
 * inventory service: stock per SKU and the reservations of orders (docs/inventory.md).
 * The rules are the model's: stock moves in models/inventory.ts, the reservation decisions in
 * models/reservation.ts. The repositories (lib/repositories/product.repository.ts and
 * reservation.repository.ts) write a decision, its guarded stock moves and its events in one store
 * transaction. Here: validate, translate each call or event into a decision, map the result.
 *
 * - `reserve` holds all lines of an order or none, idempotent by order id; the hold expires after
 *   `holdTtlMs` unless `order.created` binds it. A sweeper releases expired holds.
 * - The inbox binds (`order.created`), commits (`order.paid`) and releases (`order.cancelled`).
 * - Reads: moleculer-db's `list` / `get` over the `products` collection (store adapter underneath),
 *   `listProducts`, `getProduct` (every counter for an admin), `stockReport`. Admin writes: `upsert`,
 *   `restock`.
 *
 * Settings (tests shorten them): `holdTtlMs` (default 15 min), `sweepIntervalMs` (5 s), `sweepBatch`.
 * Time comes from `this.clock`.
 */
import { asClientError } from "../lib/http/error-response";
import {
  ID_PARAM,
  ORDER_ITEMS_PARAM,
  PRODUCT_PARAMS,
  PRODUCT_UPSERT_PARAMS,
  RESTOCK_PARAMS,
} from "../lib/params";
import DbService from "moleculer-db";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import { DEMO_CATALOG } from "../lib/catalog/demo-catalog";
import { dateOf } from "../lib/clock";
import { PermanentError } from "../lib/errors";
import { infrastructureOf } from "../lib/infrastructure";
import { PeriodicTask } from "../lib/periodic-task";
import { isAdmin, principalOf } from "../lib/principal";
import { PRODUCTS_COLLECTION, ProductRepository } from "../lib/repositories/product.repository";
import { ReservationRepository } from "../lib/repositories/reservation.repository";
import { storeDbAdapter } from "../lib/store/db-service.adapter";
import { InboxMixin, type WithSubscriptions } from "../mixins/inbox.mixin";
import { InfrastructureMixin, type InfrastructureThis } from "../mixins/infrastructure.mixin";
import { OutboxMixin, type OutboxThis } from "../mixins/outbox.mixin";
import {
  PRODUCT_FIELDS,
  applyMove,
  checkRequest,
  productAdminViewOf,
  productViewOf,
  stockReportOf,
  visibleProductFields,
  type ProductAdminView,
  type ProductView,
  type RequestedLine,
  type ReservationLine,
  type ReservationStatus,
  type StockReport,
} from "../models/inventory";
import { money, type Money } from "../models/money";
import { Reservation, type ReservationView } from "../models/reservation";

const { MoleculerClientError, MoleculerError, MoleculerRetryableError } = Errors;

/** What `release` and `commit` answer; `none` when `release` found no reservation. */
export interface ReservationStatusView {
  orderId: string;
  status: ReservationStatus | "none";
}

export type { ProductAdminView, ProductView, StockReport } from "../models/inventory";
export type { ReservationView } from "../models/reservation";

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
  products: ProductRepository;
  reservations: ReservationRepository;
  sweeper: PeriodicTask | undefined;
}

interface InventoryMethods {
  reserveStock(ctx: Context<ReserveParams>): Promise<ReservationView>;
  settle(ctx: Context<{ orderId: string }>, command: "release" | "commit"): Promise<ReservationStatusView>;
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
  adapter: storeDbAdapter(PRODUCTS_COLLECTION),

  // ── settings ───────────────────────────────────────────────────────────
  settings: {
    idField: "sku",
    // the most `list` and `get` may show; a hook narrows it to the public view but for admins
    fields: [...PRODUCT_FIELDS.admin],
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
    list: { visibility: "public", cache: false, hooks: { before: visibleFields } },
    get: { visibility: "public", cache: false, hooks: { before: visibleFields } },

    /** Reserve every line for an order, or none. Idempotent by `orderId`. */
    reserve: {
      visibility: "public",
      params: {
        orderId: ID_PARAM,
        items: ORDER_ITEMS_PARAM,
      },
      handler(ctx: Context<ReserveParams>): Promise<ReservationView> {
        return this.reserveStock(ctx);
      },
    },

    /** Give a reservation's units back. Unknown order → status `none`; a committed one → 409. */
    release: {
      visibility: "public",
      params: { orderId: ID_PARAM },
      handler(ctx: Context<{ orderId: string }>): Promise<ReservationStatusView> {
        return this.settle(ctx, "release");
      },
    },

    /** Sell a reservation's units. Unknown order → 404; a released one → 409. */
    commit: {
      visibility: "public",
      params: { orderId: ID_PARAM },
      handler(ctx: Context<{ orderId: string }>): Promise<ReservationStatusView> {
        return this.settle(ctx, "commit");
      },
    },

    /** Create a product with no stock, or change its name and price. Admins and internal callers. */
    upsert: {
      visibility: "public",
      params: PRODUCT_UPSERT_PARAMS,
      async handler(
        ctx: Context<{ sku: string; name: string; price: { minor: number; currency: string } }>,
      ): Promise<ProductAdminView> {
        requireAdmin(ctx);
        const { sku, name } = ctx.params;
        const price = priceOf(ctx.params.price);
        // MongoDB: two upserts of a new SKU at once; the loser's second attempt updates
        const product = await onceMoreOnDuplicate(() =>
          this.transaction((tx) => this.products.upsert(tx, { sku, name, price }, dateOf(this.clock)), ctx),
        );
        return productAdminViewOf(product);
      },
    },

    /** Goods received: available += quantity, received += quantity. Admins and internal callers. */
    restock: {
      visibility: "public",
      params: RESTOCK_PARAMS,
      async handler(ctx: Context<{ sku: string; quantity: number }>): Promise<ProductAdminView> {
        requireAdmin(ctx);
        const { sku, quantity } = ctx.params;
        const product = await callerErrors(() =>
          this.transaction(async (tx) => {
            const current = await this.products.find(tx, sku);
            if (current === null) return null;
            applyMove(current, "restock", quantity); // the model's rules, before the write
            await this.products.applyMoves(tx, [{ sku, move: "restock", quantity }], dateOf(this.clock));
            return this.products.find(tx, sku);
          }, ctx),
        );
        if (product === null) throw productNotFound(sku);
        return productAdminViewOf(product);
      },
    },

    /** A product: `{ sku, name, price, available }`, with every counter for an admin. */
    getProduct: {
      visibility: "public",
      params: PRODUCT_PARAMS,
      async handler(ctx: Context<{ sku: string }>): Promise<ProductView | ProductAdminView> {
        const product = await this.products.find(this.store, ctx.params.sku);
        if (product === null) throw productNotFound(ctx.params.sku);
        return isAdmin(principalOf(ctx)) ? productAdminViewOf(product) : productViewOf(product);
      },
    },

    /**
     * The catalog by page (moleculer-db's `list`): `{ rows, total, page, pageSize, totalPages }`,
     * rows in the public view, or with every counter for an admin.
     */
    listProducts: {
      visibility: "public",
      params: {
        page: { type: "number", integer: true, min: 1, optional: true, convert: true },
        pageSize: { type: "number", integer: true, min: 1, optional: true, convert: true },
        sort: { type: "string", optional: true },
        search: { type: "string", max: 200, optional: true },
      },
      async handler(ctx: Context<Record<string, unknown>>): Promise<unknown> {
        const { page, pageSize, sort, search } = ctx.params;
        const admin = isAdmin(principalOf(ctx));
        const params = {
          ...(page === undefined ? {} : { page }),
          ...(pageSize === undefined ? {} : { pageSize }),
          ...(sort === undefined ? {} : { sort }),
          ...(search === undefined ? {} : { search, searchFields: ["sku", "name"] }),
          ...(admin ? { fields: PRODUCT_FIELDS.admin } : {}),
        };
        const listed = await ctx.call<{ rows: Record<string, unknown>[] }, object>(
          `${this.fullName}.list`,
          params,
        );
        return admin ? { ...listed, rows: listed.rows.map(adminRowOf) } : listed;
      },
    },

    /** Every SKU's counters and whether `available + reserved + sold = received` holds for each. */
    stockReport: {
      visibility: "public",
      async handler(): Promise<StockReport> {
        const [products, census] = await Promise.all([
          this.products.all(this.store),
          this.reservations.census(this.store),
        ]);
        return stockReportOf(products, census);
      },
    },
  },

  // ── subscriptions ──────────────────────────────────────────────────────
  subscriptions: {
    "order.created": {
      /** The order exists: bind its hold; a hold released before the event arrived is reserved again. */
      async handler(event, tx) {
        const { orderId, customerId, items } = event.payload;
        const now = dateOf(this.clock);
        const reservation =
          (await this.reservations.load(tx, orderId)) ??
          Reservation.nothingHeld(orderId, linesOfEvent(orderId, items), now);
        const skus = reservation.linesToReserveAgain().map((line) => line.sku);
        const products = await this.products.findMany(tx, skus);
        const decision = reservation.onOrderCreated({ customerId, products, now });
        await this.reservations.save(tx, reservation, decision, now);
        const { outcome } = decision;
        if (outcome === "unchanged")
          this.logger.debug(`order.created for ${orderId}: reservation already ${reservation.status}`);
        else if (outcome === "already_cancelled")
          this.logger.debug(`order.created for ${orderId}: the order was already cancelled`);
        else if (outcome === "rebound")
          this.logger.info(
            `order ${orderId} arrived after its hold was released; its stock is reserved again`,
          );
        else if (outcome === "unfulfilled")
          // known gap: the order stays without stock; operators find it in stockReport.unfulfilled
          this.logger.error(
            `order ${orderId} was created after its hold was released and the stock cannot serve it again`,
            { orderId, shortfalls: reservation.toState().unfulfilled?.shortfalls },
          );
      },
    },

    "order.paid": {
      /** Paid: the reserved units are sold. */
      async handler(event, tx) {
        const { orderId } = event.payload;
        const now = dateOf(this.clock);
        const found = await this.reservations.load(tx, orderId);
        if (found === null) {
          this.logger.debug(`order.paid for ${orderId}: reservation missing, nothing to commit`);
          return;
        }
        const decision = found.onOrderPaid(now);
        if (!decision.changed && found.isUnfulfilled)
          this.logger.error(`order ${orderId} was paid but its stock could not be reserved`, { orderId });
        else if (!decision.changed)
          this.logger.debug(`order.paid for ${orderId}: reservation ${found.status}, nothing to commit`);
        await this.reservations.save(tx, found, decision, now);
      },
    },

    "order.cancelled": {
      /** Cancelled: held or bound units go back; units sold to a paid, never-shipped order too. */
      async handler(event, tx) {
        const { orderId } = event.payload;
        const now = dateOf(this.clock);
        const found = await this.reservations.load(tx, orderId);
        if (found === null) {
          this.logger.debug(`order.cancelled for ${orderId}: no reservation`);
          return;
        }
        const decision = found.onOrderCancelled(now);
        if (!decision.changed)
          this.logger.debug(`order.cancelled for ${orderId}: reservation already released`);
        await this.reservations.save(tx, found, decision, now);
      },
    },
  },

  // ── methods ────────────────────────────────────────────────────────────
  methods: {
    async reserveStock(ctx: Context<ReserveParams>): Promise<ReservationView> {
      const { orderId } = ctx.params;
      const items = await callerErrors(async () => checkRequest(ctx.params.items));
      const attempt = (): Promise<ReservationView> =>
        this.transaction(async (tx) => {
          const now = dateOf(this.clock);
          const found = await this.reservations.load(tx, orderId);
          if (found !== null) {
            found.confirmRepeat(items);
            return found.toView();
          }
          const products = await this.products.findMany(
            tx,
            items.map((line) => line.sku),
          );
          const holdTtlMs = this.settings.holdTtlMs;
          const { reservation, decision } = Reservation.hold({ orderId, items, products, now, holdTtlMs });
          await this.reservations.save(tx, reservation, decision, now);
          return reservation.toView();
        }, ctx);
      // MongoDB: a concurrent reserve of the same order inserted first; the next attempt finds it
      return callerErrors(() => onceMoreOnDuplicate(attempt), "reserve");
    },

    settle(ctx: Context<{ orderId: string }>, command: "release" | "commit"): Promise<ReservationStatusView> {
      const { orderId } = ctx.params;
      return callerErrors(() =>
        this.transaction(async (tx): Promise<ReservationStatusView> => {
          const now = dateOf(this.clock);
          const found = await this.reservations.load(tx, orderId);
          if (found === null) {
            if (command === "release") return { orderId, status: "none" };
            throw new MoleculerClientError(
              `no reservation for order ${orderId}`,
              404,
              "RESERVATION_NOT_FOUND",
              { orderId },
            );
          }
          const decision = command === "release" ? found.release(now) : found.commit(now);
          await this.reservations.save(tx, found, decision, now);
          return { orderId, status: found.status };
        }, ctx),
      );
    },

    /** Releases `held` reservations whose hold has passed; each in its own transaction. */
    async sweepExpiredHolds(): Promise<number> {
      const due = await this.reservations.dueHolds(this.store, dateOf(this.clock), this.settings.sweepBatch);
      let released = 0;
      for (const orderId of due) {
        try {
          const done = await this.transaction(async (tx) => {
            const now = dateOf(this.clock);
            const found = await this.reservations.load(tx, orderId);
            // another instance (or order.created) may have got there first
            if (found === null || !found.isHoldExpired(now)) return false;
            await this.reservations.save(tx, found, found.expire(now), now);
            return true;
          });
          if (done) released += 1;
        } catch (err) {
          this.logger.error(`releasing the expired hold of ${orderId} failed; the next sweep retries`, err);
        }
      }
      if (released > 0) this.logger.info(`released ${released} expired hold(s)`);
      return released;
    },

    /** Seeds DEMO_CATALOG into an empty products collection, in one transaction. */
    async seedDemoCatalog(): Promise<void> {
      try {
        const seeded = await this.transaction((tx) =>
          this.products.seedIfEmpty(tx, DEMO_CATALOG, dateOf(this.clock)),
        );
        if (seeded > 0) this.logger.info(`seeded the demo catalog: ${seeded} products`);
      } catch (err) {
        // another instance seeded at the same moment (MongoDB); the catalog is there either way
        if (codeOf(err) !== "DUPLICATE_KEY") throw err;
      }
    },
  },

  // ── lifecycle ──────────────────────────────────────────────────────────
  created() {
    this.products = new ProductRepository();
    this.reservations = new ReservationRepository(this.products);
    this.sweeper = undefined;
  },

  async started() {
    await this.reservations.prepare(this.store);
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

// ── helpers ────────────────────────────────────────────────────────────

/** Hook of `list` and `get`: the public view, unless an admin asks for more (`fields`). */
function visibleFields(ctx: Context<{ fields?: string | string[] }>): void {
  ctx.params.fields = visibleProductFields(isAdmin(principalOf(ctx)), ctx.params.fields);
}

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

/**
 * Runs `work`, turning what it throws into what a caller gets: a model refusal → a client error of
 * the same code (the one mapper, lib/http/error-response.ts); a failed stock guard → 503 `STOCK_CHANGED` while reserving (the stock moved since
 * it was read: retry), else 500 `STOCK_INCONSISTENT` (the counters disagree with the reservation);
 * a reservation changed meanwhile → 503 `RESERVATION_CHANGED`.
 */
async function callerErrors<R>(work: () => Promise<R>, during?: "reserve"): Promise<R> {
  try {
    return await work();
  } catch (err) {
    const refusal = asClientError(err);
    if (refusal !== err) throw refusal;
    const { code, message, data } = (err ?? {}) as {
      code?: unknown;
      message?: unknown;
      data?: { move?: unknown; skus?: unknown };
    };
    if (code === "STOCK_GUARD_FAILED" && during === "reserve")
      throw new MoleculerRetryableError("stock changed during the reservation", 503, "STOCK_CHANGED", {
        skus: data?.skus,
      });
    if (code === "STOCK_GUARD_FAILED")
      throw new MoleculerError(String(message), 500, "STOCK_INCONSISTENT", data);
    if (code === "RESERVATION_CHANGED")
      throw new MoleculerRetryableError(String(message), 503, "RESERVATION_CHANGED");
    throw err;
  }
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

/** A row of `list` in the admin view: its times as ISO strings (Dates in process, strings over the wire). */
function adminRowOf(row: Record<string, unknown>): Record<string, unknown> {
  const iso = (value: unknown): unknown => (value instanceof Date ? value.toISOString() : value);
  return { ...row, createdAt: iso(row.createdAt), updatedAt: iso(row.updatedAt) };
}

export default InventoryService;
