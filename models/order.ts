/**
 * The order aggregate (DESIGN §4). Every transition is a method that refuses an illegal move with a
 * typed error; each change is appended to the status history.
 *
 *   PENDING_PAYMENT → PAID → SHIPPED → DELIVERED
 *   PENDING_PAYMENT | PAID → CANCELLED   (a paid order cancelled is refunded)
 */
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

  /** A new order waiting for payment. Lines: 1..100, distinct SKUs, quantity 1..1000, one currency. */
  static place(command: PlaceOrder): Order {
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
    return new Order({
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
  }

  /** Rebuild from a stored snapshot. */
  static fromState(state: OrderState): Order {
    return new Order(state);
  }

  get id(): string {
    return this.state.id;
  }

  get status(): OrderStatus {
    return this.state.status;
  }

  get total(): Money {
    return this.state.total;
  }

  /** A copy of the current snapshot. */
  toState(): OrderState {
    return structuredClone(this.state);
  }

  /** The payment was captured. Only a pending order can be paid. */
  markPaid(paymentId: string, now: Date): void {
    this.transition(["PENDING_PAYMENT"], "PAID", now);
    this.state = { ...this.state, paymentId };
  }

  ship(now: Date): void {
    this.transition(["PAID"], "SHIPPED", now);
  }

  deliver(now: Date): void {
    this.transition(["SHIPPED"], "DELIVERED", now);
  }

  /**
   * Cancel a pending or paid order. Returns whether money must be given back (the order was paid).
   */
  cancel(reason: CancelReason, now: Date): { refundDue: boolean } {
    const wasPaid = this.state.status === "PAID";
    this.transition(["PENDING_PAYMENT", "PAID"], "CANCELLED", now, reason);
    this.state = { ...this.state, cancelReason: reason };
    return { refundDue: wasPaid };
  }

  /** True when the order is still unpaid past its deadline. */
  isPaymentOverdue(now: Date): boolean {
    return this.state.status === "PENDING_PAYMENT" && now.getTime() > Date.parse(this.state.paymentDueAt);
  }

  private transition(from: readonly OrderStatus[], to: OrderStatus, now: Date, reason?: string): void {
    if (!from.includes(this.state.status)) {
      throw new OrderError(
        "ILLEGAL_ORDER_TRANSITION",
        `order ${this.state.id} cannot go from ${this.state.status} to ${to}`,
        {
          orderId: this.state.id,
          from: this.state.status,
          to,
        },
      );
    }
    const at = now.toISOString();
    const change: StatusChange = reason === undefined ? { status: to, at } : { status: to, at, reason };
    this.state = {
      ...this.state,
      status: to,
      updatedAt: at,
      statusHistory: [...this.state.statusHistory, change],
    };
  }
}

function invalid(message: string, details: Record<string, unknown> = {}): OrderError {
  return new OrderError("INVALID_ORDER", message, details);
}
