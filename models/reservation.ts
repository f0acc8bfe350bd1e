/**
 * The reservation aggregate (docs/inventory.md): the units one order holds, from the moment
 * `reserve` takes them until the order is paid (they are sold) or cancelled (they go back on sale).
 * Every decision is a method that takes `now`, refuses an illegal move with an `InventoryError`
 * (a stable `code`; the reservation is left unchanged) and returns what it decided: the stock moves
 * to apply, one per line, and the events it raises. Every status change goes through the
 * transition table of models/inventory.ts (`RESERVATION_TRANSITIONS`).
 *
 *   reserve          → held until now + TTL  (or OUT_OF_STOCK / UNKNOWN_SKU, nothing held)
 *   order.created    held → bound; released → bound again (rebind) when stock allows, else the
 *                    shortfalls are recorded as `unfulfilled`; an order with no reservation at
 *                    all gets a released one of the event's lines (`nothingHeld`) first
 *   order.paid       held | bound → committed
 *   order.cancelled  held | bound → released; committed → released (sold units back on sale);
 *                    already released → the cancellation is noted, so a late order.created
 *                    reserves nothing
 *   hold expiry      held, past `holdUntil` → released (`expired`)
 *
 * An order event that meets a state where it makes no sense changes nothing (`unchanged`): events
 * of different types are not ordered, and each may be delivered more than once.
 */
import type { EventType, PayloadOf } from "./events";
import {
  InventoryError,
  RESERVATION_TRANSITIONS,
  canTransition,
  checkRequest,
  holdDeadline,
  nextStatus,
  planReservation,
  sameRequest,
  type PricedStock,
  type RequestedLine,
  type ReservationLine,
  type ReservationStatus,
  type ReservationTransition,
  type Shortfall,
  type Stock,
  type StockMove,
} from "./inventory";

/** Why a reservation was released: the `release` action, the hold sweeper, or its order's cancellation. */
export type ReleaseReason = "released" | "expired" | "order_cancelled";

/** `order.created` met a released reservation and the stock could not serve it again. */
export interface Unfulfilled {
  readonly at: Date;
  readonly shortfalls: readonly Shortfall[];
}

/** What is stored: the reservation of one order. */
export interface ReservationState {
  readonly orderId: string;
  readonly lines: readonly ReservationLine[];
  readonly status: ReservationStatus;
  /** A `held` reservation is released by the sweeper after this. */
  readonly holdUntil: Date;
  readonly customerId?: string;
  readonly releaseReason?: ReleaseReason;
  /** `order.cancelled` was seen: an `order.created` arriving later must not reserve again. */
  readonly orderCancelledAt?: Date;
  readonly unfulfilled?: Unfulfilled;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly boundAt?: Date;
  readonly committedAt?: Date;
  readonly releasedAt?: Date;
  /** How many times it was saved: the store's optimistic guard (decisions never change it). */
  readonly version: number;
}

/** One stock move a decision asks for: `move` of `quantity` units of `sku`. */
export interface StockChange {
  readonly sku: string;
  readonly move: StockMove;
  readonly quantity: number;
}

/**
 * The event types a reservation raises: those of the catalog named `reservation.*` or
 * `inventory.*`. The v1 catalog (README, "Events: outbox and inbox") has none, since inventory listens to orders and tells
 * nobody, so every decision returns an empty `events` today; the repository publishes whatever
 * a decision returns through the outbox, in the transaction that saves it.
 */
export type ReservationEventType = Extract<EventType, `reservation.${string}` | `inventory.${string}`>;

/** One raised event: its type and its (v1) payload, exactly as published. */
export type ReservationEvent = {
  [T in ReservationEventType]: { readonly type: T; readonly payload: PayloadOf<T> };
}[ReservationEventType];

/** What a decision came to. `changed` false: nothing to save, no move, no event. */
export interface ReservationDecision<O extends string = string> {
  readonly outcome: O;
  readonly changed: boolean;
  /** Stock moves to apply with the save, each guarded by its source counter. */
  readonly moves: readonly StockChange[];
  readonly events: readonly ReservationEvent[];
}

/** A reservation as `reserve` answers it. */
export interface ReservationView {
  orderId: string;
  status: ReservationStatus;
  items: ReservationLine[];
}

/** A reservation just made, and the decision that made it. */
export interface NewReservation<O extends string> {
  readonly reservation: Reservation;
  readonly decision: ReservationDecision<O>;
}

export type OrderCreatedOutcome =
  /** held → bound. */
  | "bound"
  /** released (or none) → bound: the units are reserved again. */
  | "rebound"
  /** released, and the stock cannot serve it again: the shortfalls are recorded. */
  | "unfulfilled"
  /** released after `order.cancelled`: nothing is reserved. */
  | "already_cancelled"
  /** bound or committed already. */
  | "unchanged";

export type OrderPaidOutcome = "committed" | "unchanged";

export type OrderCancelledOutcome =
  /** held or bound → released. */
  | "released"
  /** committed → released, sold units back on sale. */
  | "restored"
  /** released already: the cancellation is noted against a late `order.created`. */
  | "cancellation_noted"
  | "unchanged";

export interface HoldCommand {
  orderId: string;
  items: readonly RequestedLine[];
  /** Price and counters of the requested SKUs; a SKU missing here is unknown. */
  products: ReadonlyMap<string, PricedStock>;
  now: Date;
  holdTtlMs: number;
}

export interface OrderCreatedCommand {
  customerId: string;
  /** Counters of the SKUs of `linesToReserveAgain()` (none needed otherwise). */
  products: ReadonlyMap<string, Stock>;
  now: Date;
}

const STATUS_TIME = {
  held: "createdAt",
  bound: "boundAt",
  committed: "committedAt",
  released: "releasedAt",
} as const satisfies Record<ReservationStatus, keyof ReservationState>;

const NO_EVENTS: readonly ReservationEvent[] = [];

type Writable<T> = { -readonly [K in keyof T]: T[K] };

export class Reservation {
  private constructor(private state: ReservationState) {}

  /**
   * `reserve`: hold every requested line at the product's current price until `now + holdTtlMs`,
   * or nothing. Throws `INVALID_RESERVATION` (malformed request), `UNKNOWN_SKU` (`details.skus`),
   * then `OUT_OF_STOCK` (`details.items`: every short line).
   */
  static hold(command: HoldCommand): NewReservation<"held"> {
    const { orderId, products, now } = command;
    const requested = checkRequest(command.items);
    const plan = planReservation(products, requested);
    if (plan.unknown.length > 0)
      throw new InventoryError("UNKNOWN_SKU", `unknown SKU: ${plan.unknown.join(", ")}`, {
        skus: plan.unknown,
      });
    if (plan.shortfalls.length > 0) throw outOfStock(plan.shortfalls);
    const lines = requested.map(({ sku, quantity }) => ({
      sku,
      quantity,
      unitPrice: { ...(products.get(sku) as PricedStock).price },
    }));
    const reservation = new Reservation({
      orderId,
      lines,
      status: "held",
      holdUntil: holdDeadline(now, command.holdTtlMs),
      createdAt: new Date(now),
      updatedAt: new Date(now),
      version: 0,
    });
    return { reservation, decision: decided("held", reservation.linesMoved("reserve")) };
  }

  /**
   * The reservation of an order that has none at all when its `order.created` arrives (its hold
   * was never stored, or is gone): a released one of the event's lines, which `onOrderCreated`
   * then reserves again when stock allows.
   */
  static nothingHeld(orderId: string, lines: readonly ReservationLine[], now: Date): Reservation {
    return new Reservation({
      orderId,
      lines: copyOf(lines),
      status: "released",
      holdUntil: new Date(now),
      createdAt: new Date(now),
      updatedAt: new Date(now),
      releasedAt: new Date(now),
      version: 0,
    });
  }

  /** Rebuild from a stored snapshot. */
  static fromState(state: ReservationState): Reservation {
    return new Reservation(copyOf(state));
  }

  get orderId(): string {
    return this.state.orderId;
  }

  get status(): ReservationStatus {
    return this.state.status;
  }

  get lines(): readonly ReservationLine[] {
    return this.state.lines;
  }

  /** Whether `order.created` found no stock for it after its hold was released. */
  get isUnfulfilled(): boolean {
    return this.state.unfulfilled !== undefined;
  }

  /** What `reserve` answers. */
  toView(): ReservationView {
    const { orderId, status, lines } = this.toState();
    return { orderId, status, items: [...lines] };
  }

  /** A copy of the current snapshot. */
  toState(): ReservationState {
    return copyOf(this.state);
  }

  /**
   * A second `reserve` for the same order gets the same reservation, unless it was released
   * (`RESERVATION_RELEASED`) or other items are asked for (`RESERVATION_MISMATCH`).
   */
  confirmRepeat(requested: readonly RequestedLine[]): void {
    const { orderId, status, lines } = this.state;
    if (status === "released")
      throw new InventoryError("RESERVATION_RELEASED", `the reservation of order ${orderId} was released`, {
        orderId,
        reason: this.state.releaseReason,
      });
    if (!sameRequest(lines, requested))
      throw new InventoryError(
        "RESERVATION_MISMATCH",
        `order ${orderId} already has a reservation for other items`,
        { orderId, reserved: lines.map(({ sku, quantity }) => ({ sku, quantity })) },
      );
  }

  /** The lines `order.created` would reserve again: those of a released reservation whose order was not cancelled. */
  linesToReserveAgain(): readonly ReservationLine[] {
    const { status, orderCancelledAt, lines } = this.state;
    return status === "released" && orderCancelledAt === undefined ? lines : [];
  }

  /** The order exists: bind the hold; a released one is reserved again when stock allows. */
  onOrderCreated(command: OrderCreatedCommand): ReservationDecision<OrderCreatedOutcome> {
    const { customerId, products, now } = command;
    const { status } = this.state;
    if (status === "held") return decided("bound", this.transition("bind", now, { customerId }));
    if (status !== "released") return unchanged();
    if (this.state.orderCancelledAt !== undefined) return unchanged("already_cancelled");
    const shortfalls = shortfallsOf(products, this.state.lines);
    if (shortfalls.length > 0) {
      // retrying cannot create stock: recorded for an operator (restock, or cancel the order)
      this.state = {
        ...this.state,
        unfulfilled: { at: new Date(now), shortfalls },
        customerId,
        updatedAt: new Date(now),
      };
      return decided("unfulfilled", []);
    }
    return decided(
      "rebound",
      this.transition("rebind", now, { customerId }, ["releaseReason", "releasedAt"]),
    );
  }

  /** The order was paid: held or bound units are sold (a payment may be seen before `order.created`). */
  onOrderPaid(now: Date): ReservationDecision<OrderPaidOutcome> {
    if (!canTransition(this.state.status, "commit")) return unchanged();
    return decided("committed", this.transition("commit", now));
  }

  /** The order was cancelled: its units go back on sale, whether held, bound or sold (it never shipped). */
  onOrderCancelled(now: Date): ReservationDecision<OrderCancelledOutcome> {
    const cancelled = {
      orderCancelledAt: this.state.orderCancelledAt ?? new Date(now),
      releaseReason: "order_cancelled",
    } as const;
    if (canTransition(this.state.status, "release"))
      return decided("released", this.transition("release", now, cancelled));
    if (canTransition(this.state.status, "restore"))
      return decided("restored", this.transition("restore", now, cancelled));
    if (this.state.orderCancelledAt !== undefined) return unchanged();
    this.state = { ...this.state, orderCancelledAt: new Date(now), updatedAt: new Date(now) };
    return decided("cancellation_noted", []);
  }

  /** Whether the sweeper may release it: still held, and `holdUntil` has passed. */
  isHoldExpired(now: Date): boolean {
    return this.state.status === "held" && this.state.holdUntil.getTime() < now.getTime();
  }

  /** The hold ran out before `order.created`: release it. Only a held reservation past `holdUntil`. */
  expire(now: Date): ReservationDecision<"expired"> {
    const { orderId, status, holdUntil } = this.state;
    if (status !== "held")
      throw new InventoryError("ILLEGAL_RESERVATION_TRANSITION", `a ${status} reservation does not expire`, {
        status,
        transition: "expire",
      });
    if (!this.isHoldExpired(now))
      throw new InventoryError(
        "HOLD_NOT_EXPIRED",
        `the hold of order ${orderId} runs until ${holdUntil.toISOString()}`,
        { orderId, holdUntil: holdUntil.toISOString() },
      );
    return decided("expired", this.transition("release", now, { releaseReason: "expired" }));
  }

  /**
   * The `release` action (the orders service's compensation): give the units back. Released
   * already → unchanged; committed → `RESERVATION_COMMITTED`.
   */
  release(now: Date): ReservationDecision<"released" | "unchanged"> {
    if (this.state.status === "released") return unchanged();
    this.refuseUnless("release", "RESERVATION_COMMITTED");
    return decided("released", this.transition("release", now, { releaseReason: "released" }));
  }

  /** The `commit` action: sell the units. Committed already → unchanged; released → `RESERVATION_RELEASED`. */
  commit(now: Date): ReservationDecision<"committed" | "unchanged"> {
    if (this.state.status === "committed") return unchanged();
    this.refuseUnless("commit", "RESERVATION_RELEASED");
    return decided("committed", this.transition("commit", now));
  }

  /** Throws `code` when `transition` is not allowed from the current status. */
  private refuseUnless(
    transition: ReservationTransition,
    code: "RESERVATION_COMMITTED" | "RESERVATION_RELEASED",
  ): void {
    const { orderId, status } = this.state;
    if (!canTransition(status, transition))
      throw new InventoryError(
        code,
        `the reservation of order ${orderId} is ${status}: it cannot ${transition}`,
        { orderId, status },
      );
  }

  /**
   * Moves the reservation by `transition` of the table (`ILLEGAL_RESERVATION_TRANSITION` when not
   * allowed), stamping the time of its new status; returns the stock moves it implies.
   */
  private transition(
    transition: ReservationTransition,
    now: Date,
    patch: Partial<ReservationState> = {},
    drop: readonly ("releaseReason" | "releasedAt")[] = [],
  ): StockChange[] {
    const status = nextStatus(this.state.status, transition);
    const next: Writable<ReservationState> = {
      ...this.state,
      ...patch,
      status,
      updatedAt: new Date(now),
      [STATUS_TIME[status]]: new Date(now),
    };
    for (const field of drop) delete next[field];
    this.state = next;
    const move = RESERVATION_TRANSITIONS[transition].stock;
    return move === undefined ? [] : this.linesMoved(move);
  }

  private linesMoved(move: StockMove): StockChange[] {
    return this.state.lines.map(({ sku, quantity }) => ({ sku, move, quantity }));
  }
}

/** Every line the stock cannot serve; an unknown SKU has nothing available. */
export function shortfallsOf(
  products: ReadonlyMap<string, Stock>,
  lines: readonly RequestedLine[],
): Shortfall[] {
  const plan = planReservation(products, lines);
  return [
    ...plan.unknown.map((sku) => ({
      sku,
      requested: lines.find((line) => line.sku === sku)?.quantity ?? 0,
      available: 0,
    })),
    ...plan.shortfalls,
  ];
}

function outOfStock(shortfalls: readonly Shortfall[]): InventoryError {
  return new InventoryError(
    "OUT_OF_STOCK",
    `not enough stock for ${shortfalls.map((s) => s.sku).join(", ")}`,
    {
      items: shortfalls.map(({ sku, requested, available }) => ({ sku, requested, available })),
    },
  );
}

/**
 * A deep copy with Dates as Dates of this realm (`structuredClone` makes them in the host's realm,
 * which a store running in a test's sandbox refuses to take for Dates).
 */
function copyOf<T>(value: T): T {
  if (Object.prototype.toString.call(value) === "[object Date]")
    return new Date((value as Date).getTime()) as T;
  if (Array.isArray(value)) return value.map((item: unknown) => copyOf(item)) as T;
  if (typeof value === "object" && value !== null)
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, copyOf(item)])) as T;
  return value;
}

function decided<O extends string>(outcome: O, moves: readonly StockChange[]): ReservationDecision<O> {
  return { outcome, changed: true, moves, events: NO_EVENTS };
}

function unchanged<O extends string = "unchanged">(outcome = "unchanged" as O): ReservationDecision<O> {
  return { outcome, changed: false, moves: [], events: NO_EVENTS };
}
