/**
 * Stock and reservations (docs/inventory.md). Per SKU the counters always satisfy
 *
 *   available + reserved + sold = received      (every counter a non-negative integer)
 *
 * and they change only by the moves of `STOCK_MOVES`, each a transfer between two counters (or, for
 * a restock, into `available` and `received` together), guarded by "the source holds at least n".
 * A reservation holds the lines of one order (`RESERVATION_TRANSITIONS`):
 *
 *   held → bound (order.created) → committed (order.paid) | released (order.cancelled)
 *   held → committed | released   (paid, released or expired before order.created was seen)
 *   committed → released          (a paid order cancelled before shipping: units back on sale)
 *   released → bound              (order.created after the hold expired, when stock allows)
 *
 * The decisions that move a reservation (on reserve, order events and hold expiry) are the
 * `Reservation` aggregate's, in models/reservation.ts. Pure TypeScript: the product repository
 * (lib/repositories/product.repository.ts) writes each move as one update guarded by `moveGuard`
 * with the increments of `moveIncrements` (docs/inventory.md).
 */
import type { Money } from "./money";

/** SKU syntax, shared with the event catalog. */
export const SKU_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Limits of one reservation and one restock. */
export const INVENTORY_LIMITS = { maxLines: 100, maxQuantity: 1000, maxRestock: 1_000_000 } as const;

/** The counters of one SKU. */
export interface Stock {
  readonly available: number;
  readonly reserved: number;
  readonly sold: number;
  readonly received: number;
}

/** A counter of `Stock`. */
export type StockCounter = keyof Stock;

/** The ways stock may change. */
export type StockMove = "reserve" | "release" | "commit" | "restock" | "returnSold";

/**
 * Each move transfers n units from `from` to `to`; a move without `from` brings new units in and
 * raises `received` with `to`. The guard is always "`from` holds at least n".
 */
export const STOCK_MOVES: Readonly<Record<StockMove, { from: StockCounter | null; to: StockCounter }>> = {
  /** Hold units for an order. */
  reserve: { from: "available", to: "reserved" },
  /** Give held units back. */
  release: { from: "reserved", to: "available" },
  /** The order was paid: held units are sold. */
  commit: { from: "reserved", to: "sold" },
  /** Goods received. */
  restock: { from: null, to: "available" },
  /** A paid order was cancelled before it shipped: its units are on sale again. */
  returnSold: { from: "sold", to: "available" },
};

export type InventoryErrorCode =
  | "INSUFFICIENT_STOCK"
  | "INVALID_QUANTITY"
  | "INVALID_RESERVATION"
  | "ILLEGAL_RESERVATION_TRANSITION"
  /** A requested SKU has no stock record. */
  | "UNKNOWN_SKU"
  /** Some line cannot be served; `details.items` lists every short line. */
  | "OUT_OF_STOCK"
  /** The order already holds a reservation for other items. */
  | "RESERVATION_MISMATCH"
  /** The reservation was released: it cannot be reserved again by request, nor committed. */
  | "RESERVATION_RELEASED"
  /** The reservation was committed: the release action refuses it. */
  | "RESERVATION_COMMITTED"
  /** The hold has not run out yet. */
  | "HOLD_NOT_EXPIRED";

/** A stock or reservation rule was broken; `code` is stable across process boundaries. */
export class InventoryError extends Error {
  constructor(
    readonly code: InventoryErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "InventoryError";
  }
}

/** Stock just received: everything available. */
export function initialStock(quantity: number): Stock {
  return applyMove({ available: 0, reserved: 0, sold: 0, received: 0 }, "restock", quantity);
}

/**
 * The counters after `move` of `n` units. Throws `INVALID_QUANTITY` unless n is a positive safe
 * integer, and `INSUFFICIENT_STOCK` when the source counter holds fewer than n.
 */
export function applyMove(stock: Stock, move: StockMove, n: number): Stock {
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InventoryError("INVALID_QUANTITY", `quantity must be a positive integer, got ${n}`, {
      quantity: n,
    });
  const { from, to } = STOCK_MOVES[move];
  if (from !== null && stock[from] < n) {
    throw new InventoryError("INSUFFICIENT_STOCK", `cannot ${move} ${n}: only ${stock[from]} ${from}`, {
      move,
      requested: n,
      [from]: stock[from],
    });
  }
  const next: Record<StockCounter, number> = { ...stock };
  if (from === null) next.received += n;
  else next[from] -= n;
  next[to] += n;
  if (!Number.isSafeInteger(next.received))
    throw new InventoryError(
      "INVALID_QUANTITY",
      `${move} ${n} would take the counters beyond safe integers`,
      {
        move,
        quantity: n,
      },
    );
  return next;
}

/** No units at all: a product just created. */
export function emptyStock(): Stock {
  return { available: 0, reserved: 0, sold: 0, received: 0 };
}

/**
 * The guard of `move` of `n` units: the counter that must hold at least `n` (a store's filter
 * `{ [counter]: { $gte: atLeast } }`), or null for a restock, which takes from no counter.
 */
export function moveGuard(move: StockMove, n: number): { counter: StockCounter; atLeast: number } | null {
  const { from } = STOCK_MOVES[move];
  return from === null ? null : { counter: from, atLeast: n };
}

/** The counter changes of `move` of `n` units, as increments (a store's `$inc`). */
export function moveIncrements(move: StockMove, n: number): Partial<Record<StockCounter, number>> {
  const { from, to } = STOCK_MOVES[move];
  return from === null ? { [to]: n, received: n } : { [from]: -n, [to]: n };
}

/** Hold n available units. */
export function reserve(stock: Stock, n: number): Stock {
  return applyMove(stock, "reserve", n);
}

/** Give n reserved units back to available. */
export function release(stock: Stock, n: number): Stock {
  return applyMove(stock, "release", n);
}

/** Sell n reserved units. */
export function commit(stock: Stock, n: number): Stock {
  return applyMove(stock, "commit", n);
}

/** Receive n new units. */
export function restock(stock: Stock, n: number): Stock {
  return applyMove(stock, "restock", n);
}

/** Put n sold (but never shipped) units back on sale. */
export function returnSold(stock: Stock, n: number): Stock {
  return applyMove(stock, "returnSold", n);
}

/** `available + reserved + sold = received`, every counter a non-negative safe integer. */
export function stockInvariantHolds(stock: Stock): boolean {
  const counters = [stock.available, stock.reserved, stock.sold, stock.received];
  return (
    counters.every((c) => Number.isSafeInteger(c) && c >= 0) &&
    stock.available + stock.reserved + stock.sold === stock.received
  );
}

// ── reservations ───────────────────────────────────────────────────────

export const RESERVATION_STATUSES = ["held", "bound", "committed", "released"] as const;
/**
 * held: units reserved, waiting for `order.created` (released when the hold expires);
 * bound: the order exists; committed: the order was paid, units sold; released: units given back.
 */
export type ReservationStatus = (typeof RESERVATION_STATUSES)[number];

export type ReservationTransition = "bind" | "commit" | "release" | "restore" | "rebind";

/** Legal moves of a reservation, and the stock move each implies per line. */
export const RESERVATION_TRANSITIONS: Readonly<
  Record<
    ReservationTransition,
    { from: readonly ReservationStatus[]; to: ReservationStatus; stock?: StockMove }
  >
> = {
  /** `order.created`: the order exists; the hold no longer expires. */
  bind: { from: ["held"], to: "bound" },
  /** Paid: held or bound units are sold (a payment may be seen before its order's creation). */
  commit: { from: ["held", "bound"], to: "committed", stock: "commit" },
  /** Cancelled, compensated or expired before payment: units back to available. */
  release: { from: ["held", "bound"], to: "released", stock: "release" },
  /** A paid order cancelled before shipping: sold units back to available. */
  restore: { from: ["committed"], to: "released", stock: "returnSold" },
  /** `order.created` for a hold that had expired: reserve the units again. */
  rebind: { from: ["released"], to: "bound", stock: "reserve" },
};

/** Whether a reservation in `status` may take `transition`. */
export function canTransition(status: ReservationStatus, transition: ReservationTransition): boolean {
  return RESERVATION_TRANSITIONS[transition].from.includes(status);
}

/** The status after `transition`; `ILLEGAL_RESERVATION_TRANSITION` when it is not allowed from `status`. */
export function nextStatus(status: ReservationStatus, transition: ReservationTransition): ReservationStatus {
  if (!canTransition(status, transition)) {
    throw new InventoryError(
      "ILLEGAL_RESERVATION_TRANSITION",
      `a ${status} reservation cannot ${transition}`,
      { status, transition },
    );
  }
  return RESERVATION_TRANSITIONS[transition].to;
}

/** A line asked for. */
export interface RequestedLine {
  readonly sku: string;
  readonly quantity: number;
}

/** A reserved line with the unit price it was reserved at. */
export interface ReservationLine extends RequestedLine {
  readonly unitPrice: Money;
}

/** A product's counters and its current price, as a reservation reads them. */
export interface PricedStock extends Stock {
  readonly price: Money;
}

/** A product of the catalog with its stock counters. */
export interface Product extends PricedStock {
  readonly sku: string;
  readonly name: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A product as anyone sees it: price and availability. */
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

/** The fields of the public view, and of the admin view. */
export const PRODUCT_FIELDS = {
  public: ["sku", "name", "price", "available"],
  admin: ["sku", "name", "price", "available", "reserved", "sold", "received", "createdAt", "updatedAt"],
} as const satisfies Record<string, readonly (keyof ProductAdminView)[]>;

/**
 * The fields of a product to show: those `asked` (the public view when none are) that the caller
 * may see, all of the admin view for an admin, the public view for anyone else.
 */
export function visibleProductFields(admin: boolean, asked?: string | readonly string[]): string[] {
  const allowed: readonly string[] = admin ? PRODUCT_FIELDS.admin : PRODUCT_FIELDS.public;
  if (asked === undefined) return [...PRODUCT_FIELDS.public];
  const fields = typeof asked === "string" ? asked.split(/\s+/) : asked;
  return fields.filter((field) => allowed.includes(field));
}

export function productViewOf(p: Product): ProductView {
  return { sku: p.sku, name: p.name, price: { ...p.price }, available: p.available };
}

export function productAdminViewOf(p: Product): ProductAdminView {
  return {
    ...productViewOf(p),
    reserved: p.reserved,
    sold: p.sold,
    received: p.received,
    createdAt: p.createdAt.toISOString(),
    updatedAt: p.updatedAt.toISOString(),
  };
}

/** Every SKU's counters and whether the invariant holds for each (tests, the REPL). */
export interface StockReport {
  products: (Stock & { sku: string; invariantHolds: boolean })[];
  invariantHolds: boolean;
  reservations: Record<ReservationStatus, number>;
  /** Orders created after their hold expired whose stock could not be reserved again. */
  unfulfilled: number;
}

/** The stock report of these products and reservation counts. */
export function stockReportOf(
  products: readonly (Stock & { sku: string })[],
  reservations: { byStatus: Record<ReservationStatus, number>; unfulfilled: number },
): StockReport {
  const lines = products.map(({ sku, available, reserved, sold, received }) => {
    const stock = { available, reserved, sold, received };
    return { sku, ...stock, invariantHolds: stockInvariantHolds(stock) };
  });
  return {
    products: lines,
    invariantHolds: lines.every((line) => line.invariantHolds),
    reservations: { ...reservations.byStatus },
    unfulfilled: reservations.unfulfilled,
  };
}

/** A line that cannot be served. */
export interface Shortfall {
  readonly sku: string;
  readonly requested: number;
  readonly available: number;
}

/** Checks a request: 1..100 lines, valid and distinct SKUs, quantities 1..1000. Throws `INVALID_RESERVATION`. */
export function checkRequest(lines: readonly RequestedLine[]): RequestedLine[] {
  if (lines.length < 1 || lines.length > INVENTORY_LIMITS.maxLines)
    throw new InventoryError(
      "INVALID_RESERVATION",
      `a reservation has 1 to ${INVENTORY_LIMITS.maxLines} lines, got ${lines.length}`,
    );
  const seen = new Set<string>();
  for (const { sku, quantity } of lines) {
    if (!SKU_PATTERN.test(sku))
      throw new InventoryError("INVALID_RESERVATION", `"${sku}" is not a valid SKU`, { sku });
    if (!Number.isSafeInteger(quantity) || quantity < 1 || quantity > INVENTORY_LIMITS.maxQuantity)
      throw new InventoryError(
        "INVALID_RESERVATION",
        `quantity of ${sku} must be 1..${INVENTORY_LIMITS.maxQuantity}, got ${quantity}`,
        { sku, quantity },
      );
    if (seen.has(sku))
      throw new InventoryError("INVALID_RESERVATION", `${sku} appears on two lines`, { sku });
    seen.add(sku);
  }
  return lines.map(({ sku, quantity }) => ({ sku, quantity }));
}

/** Whether two requests ask for the same quantities of the same SKUs, in any order. */
export function sameRequest(a: readonly RequestedLine[], b: readonly RequestedLine[]): boolean {
  if (a.length !== b.length) return false;
  const quantities = new Map(a.map((line) => [line.sku, line.quantity]));
  return b.every((line) => quantities.get(line.sku) === line.quantity);
}

/** Outcome of planning a reservation of several lines against current stock. */
export interface ReservationPlan {
  /** SKUs without stock records. */
  unknown: string[];
  /** Every line the stock cannot serve. */
  shortfalls: Shortfall[];
  /** Counters after reserving every line (meaningful only when both lists are empty). */
  after: Map<string, Stock>;
}

/** All lines or none: what reserving `lines` against `stocks` would do, without doing it. */
export function planReservation(
  stocks: ReadonlyMap<string, Stock>,
  lines: readonly RequestedLine[],
): ReservationPlan {
  const plan: ReservationPlan = { unknown: [], shortfalls: [], after: new Map(stocks) };
  for (const { sku, quantity } of lines) {
    const stock = plan.after.get(sku);
    if (stock === undefined) {
      plan.unknown.push(sku);
    } else if (stock.available < quantity) {
      plan.shortfalls.push({ sku, requested: quantity, available: stock.available });
    } else {
      plan.after.set(sku, reserve(stock, quantity));
    }
  }
  return plan;
}

/** When a hold taken at `now` expires. */
export function holdDeadline(now: Date, holdTtlMs: number): Date {
  if (!Number.isSafeInteger(holdTtlMs) || holdTtlMs < 1)
    throw new InventoryError("INVALID_QUANTITY", `the hold TTL must be a positive number of ms`, {
      holdTtlMs,
    });
  return new Date(now.getTime() + holdTtlMs);
}
