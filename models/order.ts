/**
 * The order aggregate (docs/orders.md). Every transition is a method that refuses an
 * illegal move with a typed error and returns the events it raises, exactly as the outbox publishes
 * them; each change is appended to the status history.
 *
 *   PENDING_PAYMENT → PAID → SHIPPED → DELIVERED
 *   PENDING_PAYMENT | PAID → CANCELLED   (a paid order cancelled is refunded)
 *
 * What arrives from outside — a capture, a payment failure, a cancellation request, the payment
 * deadline — is a command that also tolerates the repeated and the late: a second capture, a capture
 * after cancellation, a second cancellation leave the order as it is and say why (`OrderOutcome`),
 * so an event handler only has to translate the event into the command.
 */
import type { PayloadOf } from "./events";
import { add, multiply, zero, type Currency, type Money } from "./money";

export const ORDER_STATUSES = ["PENDING_PAYMENT", "PAID", "SHIPPED", "DELIVERED", "CANCELLED"] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export const CANCEL_REASONS = [
  "payment_failed",
  "payment_timeout",
  "customer_request",
  "admin_request",
] as const;
export type CancelReason = (typeof CANCEL_REASONS)[number];

/** Limits of one order. */
export const ORDER_LIMITS = { maxLines: 100, maxQuantity: 1000 } as const;

export interface OrderLine {
  readonly sku: string;
  readonly quantity: number;
  readonly unitPrice: Money;
}

export interface StatusChange {
  readonly status: OrderStatus;
  /** ISO 8601 UTC. */
  readonly at: string;
  readonly reason?: string;
}

/** What is stored and sent: a plain, JSON-safe snapshot of the aggregate. */
export interface OrderState {
  readonly id: string;
  readonly customerId: string;
  readonly items: readonly OrderLine[];
  readonly total: Money;
  readonly status: OrderStatus;
  readonly paymentMethod: string;
  /** After this instant an unpaid order is cancelled (`payment_timeout`). */
  readonly paymentDueAt: string;
  readonly paymentId?: string;
  readonly cancelReason?: CancelReason;
  readonly statusHistory: readonly StatusChange[];
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** An order as callers of the API see it. */
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
  statusHistory: StatusChange[];
  createdAt: string;
  updatedAt: string;
}

/** The events an order raises. */
export type OrderEventType = "order.created" | "order.paid" | "order.cancelled";
/** One raised event: its type and its (v1) payload, exactly as published. */
export type OrderEvent = {
  [T in OrderEventType]: { readonly type: T; readonly payload: PayloadOf<T> };
}[OrderEventType];

/** A new order and the event its placing raised. */
export interface PlacedOrder {
  readonly order: Order;
  readonly events: OrderEvent[];
}

/**
 * Why a command left the order as it was. Each is a message the order tolerates, not a mistake:
 * - `ALREADY_PAID`: the capture that paid it, again;
 * - `PAID_BY_ANOTHER_PAYMENT`: a capture of another payment for an order already paid; the order
 *   keeps its first payment, and the money of the second is not the order's;
 * - `CAPTURED_AFTER_CANCELLATION`: money taken for a cancelled order; payments gives it back when it
 *   learns of the capture (docs/payments.md: money for a cancelled order never stays);
 * - `ALREADY_CANCELLED`: a cancellation, a payment failure or the deadline of a cancelled order;
 * - `NOT_AWAITING_PAYMENT`: a payment failure or the deadline of an order that is paid (or further);
 * - `NOT_OVERDUE`: the deadline looked at before it passed.
 */
export const ORDER_UNCHANGED_CODES = [
  "ALREADY_PAID",
  "PAID_BY_ANOTHER_PAYMENT",
  "CAPTURED_AFTER_CANCELLATION",
  "ALREADY_CANCELLED",
  "NOT_AWAITING_PAYMENT",
  "NOT_OVERDUE",
] as const;
export type OrderUnchangedCode = (typeof ORDER_UNCHANGED_CODES)[number];

/**
 * What a command did: moved the order on and raised `events`, or left it as it was for `code`.
 * `refundDue`: money was taken for this order that must go back — a paid order cancelled, or a
 * capture the order cannot keep.
 */
export type OrderOutcome =
  | { readonly changed: true; readonly events: OrderEvent[]; readonly refundDue: boolean }
  | {
      readonly changed: false;
      readonly code: OrderUnchangedCode;
      /** One line for the log. */
      readonly reason: string;
      readonly events: [];
      readonly refundDue: boolean;
    };

/** A rule of the order was broken; `code` is stable across process boundaries. */
export class OrderError extends Error {
  constructor(
    readonly code: "ILLEGAL_ORDER_TRANSITION" | "INVALID_ORDER",
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "OrderError";
  }
}

export interface PlaceOrder {
  id: string;
  customerId: string;
  items: readonly OrderLine[];
  paymentMethod: string;
  now: Date;
  /** How long the order may wait for its payment. */
  paymentTimeoutMs: number;
}

export class Order {
  private constructor(private state: OrderState) {}

  /**
   * A new order waiting for payment, and its `order.created`. Lines: 1..100, distinct SKUs,
   * quantity 1..1000, one currency.
   */
  static place(command: PlaceOrder): PlacedOrder {
    const { items } = command;
    if (items.length === 0) throw invalid("an order needs at least one line");
    if (items.length > ORDER_LIMITS.maxLines)
      throw invalid(`an order has at most ${ORDER_LIMITS.maxLines} lines`);
    const skus = new Set<string>();
    for (const line of items) {
      if (!Number.isInteger(line.quantity) || line.quantity < 1 || line.quantity > ORDER_LIMITS.maxQuantity) {
        throw invalid(`quantity of ${line.sku} must be 1..${ORDER_LIMITS.maxQuantity}`, { sku: line.sku });
      }
      if (skus.has(line.sku)) throw invalid(`${line.sku} appears on two lines`, { sku: line.sku });
      skus.add(line.sku);
    }
    const currency: Currency = (items[0] as OrderLine).unitPrice.currency;
    const mixed = items.find((line) => line.unitPrice.currency !== currency);
    if (mixed !== undefined) throw invalid(`all lines must be priced in ${currency}`, { sku: mixed.sku });
    if (!(command.paymentTimeoutMs > 0)) throw invalid("the payment timeout must be positive");

    const total = items.reduce(
      (sum, line) => add(sum, multiply(line.unitPrice, line.quantity)),
      zero(currency),
    );
    const at = command.now.toISOString();
    const order = new Order({
      id: command.id,
      customerId: command.customerId,
      items: items.map((line) => ({ ...line, unitPrice: { ...line.unitPrice } })),
      total,
      status: "PENDING_PAYMENT",
      paymentMethod: command.paymentMethod,
      paymentDueAt: new Date(command.now.getTime() + command.paymentTimeoutMs).toISOString(),
      statusHistory: [{ status: "PENDING_PAYMENT", at }],
      createdAt: at,
      updatedAt: at,
    });
    const state = order.state;
    const created: OrderEvent = {
      type: "order.created",
      payload: {
        orderId: state.id,
        customerId: state.customerId,
        items: state.items.map((line) => ({ ...line, unitPrice: { ...line.unitPrice } })),
        total: { ...state.total },
        paymentMethod: state.paymentMethod,
        paymentDueAt: state.paymentDueAt,
      },
    };
    return { order, events: [created] };
  }

  /** Rebuild from a stored snapshot. */
  static fromState(state: OrderState): Order {
    return new Order(structuredClone(state));
  }

  get id(): string {
    return this.state.id;
  }

  get customerId(): string {
    return this.state.customerId;
  }

  get status(): OrderStatus {
    return this.state.status;
  }

  /** The payment that paid it, once paid. */
  get paymentId(): string | undefined {
    return this.state.paymentId;
  }

  get total(): Money {
    return this.state.total;
  }

  /** A copy of the current snapshot. */
  toState(): OrderState {
    return structuredClone(this.state);
  }

  /** What callers of the API see. */
  toView(): OrderView {
    const s = structuredClone(this.state);
    return {
      id: s.id,
      customerId: s.customerId,
      status: s.status,
      items: [...s.items],
      total: s.total,
      paymentMethod: s.paymentMethod,
      paymentDueAt: s.paymentDueAt,
      ...(s.paymentId === undefined ? {} : { paymentId: s.paymentId }),
      ...(s.cancelReason === undefined ? {} : { cancelReason: s.cancelReason }),
      statusHistory: [...s.statusHistory],
      createdAt: s.createdAt,
      updatedAt: s.updatedAt,
    };
  }

  // ── transitions: an illegal move throws ─────────────────────────────────────────────────────

  /** The payment was captured. Only a pending order can be paid; raises `order.paid`. */
  markPaid(paymentId: string, now: Date): OrderEvent[] {
    this.transition(["PENDING_PAYMENT"], "PAID", now);
    this.state = { ...this.state, paymentId };
    const { id, customerId, total } = this.state;
    return [{ type: "order.paid", payload: { orderId: id, customerId, paymentId, total: { ...total } } }];
  }

  ship(now: Date): OrderEvent[] {
    this.transition(["PAID"], "SHIPPED", now);
    return [];
  }

  deliver(now: Date): OrderEvent[] {
    this.transition(["SHIPPED"], "DELIVERED", now);
    return [];
  }

  /**
   * Cancel a pending or paid order; raises `order.cancelled`. `refundDue`: money must be given back
   * (the order was paid).
   */
  cancel(reason: CancelReason, now: Date): { refundDue: boolean; events: OrderEvent[] } {
    const previousStatus = this.state.status;
    if (previousStatus !== "PENDING_PAYMENT" && previousStatus !== "PAID") throw this.illegal("CANCELLED");
    this.transition([previousStatus], "CANCELLED", now, reason);
    this.state = { ...this.state, cancelReason: reason };
    const { id, customerId, total } = this.state;
    return {
      refundDue: previousStatus === "PAID",
      events: [
        {
          type: "order.cancelled",
          payload: { orderId: id, customerId, reason, previousStatus, total: { ...total } },
        },
      ],
    };
  }

  // ── commands from outside: the repeated and the late are tolerated ──────────────────────────

  /** Payment `paymentId` was captured: a pending order is paid; anything else is left as it is. */
  recordCapture(paymentId: string, now: Date): OrderOutcome {
    const { status } = this.state;
    if (status === "PENDING_PAYMENT") return moved(this.markPaid(paymentId, now));
    if (paymentId === this.state.paymentId)
      return unchanged("ALREADY_PAID", `order ${this.id} was paid by ${paymentId} already`);
    if (status === "CANCELLED")
      return unchanged(
        "CAPTURED_AFTER_CANCELLATION",
        `order ${this.id} was cancelled before ${paymentId} was captured: the money goes back`,
        true,
      );
    return unchanged(
      "PAID_BY_ANOTHER_PAYMENT",
      `order ${this.id} was paid by ${String(this.state.paymentId)}, not by ${paymentId}`,
      true,
    );
  }

  /** The payment failed: a pending order is cancelled (`payment_failed`). */
  recordPaymentFailure(now: Date): OrderOutcome {
    return this.cancelWhileAwaitingPayment("payment_failed", now);
  }

  /** The payment deadline: a pending order past it is cancelled (`payment_timeout`). */
  expireIfOverdue(now: Date): OrderOutcome {
    if (this.state.status === "PENDING_PAYMENT" && !this.isPaymentOverdue(now))
      return unchanged("NOT_OVERDUE", `order ${this.id} is due at ${this.state.paymentDueAt}`);
    return this.cancelWhileAwaitingPayment("payment_timeout", now);
  }

  /**
   * Someone asked to cancel: a pending or paid order is cancelled; a cancelled one stays as it is;
   * a shipped or delivered one is refused (`ILLEGAL_ORDER_TRANSITION`).
   */
  requestCancellation(reason: CancelReason, now: Date): OrderOutcome {
    if (this.state.status === "CANCELLED")
      return unchanged("ALREADY_CANCELLED", `order ${this.id} is cancelled already`);
    const { refundDue, events } = this.cancel(reason, now);
    return moved(events, refundDue);
  }

  /** True when the order is still unpaid past its deadline. */
  isPaymentOverdue(now: Date): boolean {
    return this.state.status === "PENDING_PAYMENT" && now.getTime() > Date.parse(this.state.paymentDueAt);
  }

  private cancelWhileAwaitingPayment(reason: CancelReason, now: Date): OrderOutcome {
    const { status } = this.state;
    if (status === "CANCELLED")
      return unchanged("ALREADY_CANCELLED", `order ${this.id} is cancelled already`);
    if (status !== "PENDING_PAYMENT")
      return unchanged("NOT_AWAITING_PAYMENT", `order ${this.id} is ${status}, not waiting for its payment`);
    return moved(this.cancel(reason, now).events);
  }

  private transition(from: readonly OrderStatus[], to: OrderStatus, now: Date, reason?: string): void {
    if (!from.includes(this.state.status)) throw this.illegal(to);
    const at = now.toISOString();
    const change: StatusChange = reason === undefined ? { status: to, at } : { status: to, at, reason };
    this.state = {
      ...this.state,
      status: to,
      updatedAt: at,
      statusHistory: [...this.state.statusHistory, change],
    };
  }

  private illegal(to: OrderStatus): OrderError {
    return new OrderError(
      "ILLEGAL_ORDER_TRANSITION",
      `order ${this.state.id} cannot go from ${this.state.status} to ${to}`,
      { orderId: this.state.id, from: this.state.status, to },
    );
  }
}

function moved(events: OrderEvent[], refundDue = false): OrderOutcome {
  return { changed: true, events, refundDue };
}

function unchanged(code: OrderUnchangedCode, reason: string, refundDue = false): OrderOutcome {
  return { changed: false, code, reason, events: [], refundDue };
}

function invalid(message: string, details: Record<string, unknown> = {}): OrderError {
  return new OrderError("INVALID_ORDER", message, details);
}
