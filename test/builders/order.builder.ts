/**
 * Builders for domain objects in tests: `anOrder().withItems(...).placedAt(...).paid().build()`.
 * Each stage is reached through the aggregate's own transitions, never by writing a state.
 */
import { money } from "../../models/money";
import { Order, type CancelReason, type OrderLine, type PlacedOrder } from "../../models/order";

export function aLine(sku = "SKU-1", quantity = 1, minor = 1000, currency = "USD"): OrderLine {
  return { sku, quantity, unitPrice: money(minor, currency) };
}

type Stage =
  | { status: "PENDING_PAYMENT" }
  | { status: "PAID"; paymentId: string }
  | { status: "SHIPPED"; paymentId: string }
  | { status: "DELIVERED"; paymentId: string }
  | { status: "CANCELLED"; reason: CancelReason; paymentId?: string };

class OrderBuilder {
  private items: OrderLine[] = [aLine()];
  private now = new Date("2026-11-20T10:00:00.000Z");
  private paymentTimeoutMs = 15 * 60_000;
  private id = "ord-1";
  private customerId = "cus-1";
  private paymentMethod = "pm_card_visa";
  private stage: Stage = { status: "PENDING_PAYMENT" };

  withItems(...items: OrderLine[]): this {
    this.items = items;
    return this;
  }

  withId(id: string): this {
    this.id = id;
    return this;
  }

  forCustomer(customerId: string): this {
    this.customerId = customerId;
    return this;
  }

  paidWith(paymentMethod: string): this {
    this.paymentMethod = paymentMethod;
    return this;
  }

  placedAt(now: Date, paymentTimeoutMs = this.paymentTimeoutMs): this {
    this.now = now;
    this.paymentTimeoutMs = paymentTimeoutMs;
    return this;
  }

  /** Paid by `paymentId`, a second after it was placed. */
  paid(paymentId = "pay-1"): this {
    this.stage = { status: "PAID", paymentId };
    return this;
  }

  /** Paid, then shipped. */
  shipped(paymentId = "pay-1"): this {
    this.stage = { status: "SHIPPED", paymentId };
    return this;
  }

  /** Paid, shipped, then delivered. */
  delivered(paymentId = "pay-1"): this {
    this.stage = { status: "DELIVERED", paymentId };
    return this;
  }

  /** Cancelled for `reason`; paid by `paymentId` first when one is given. */
  cancelled(reason: CancelReason = "customer_request", paymentId?: string): this {
    this.stage =
      paymentId === undefined ? { status: "CANCELLED", reason } : { status: "CANCELLED", reason, paymentId };
    return this;
  }

  /** The order, and every event raised on the way to its stage. */
  place(): PlacedOrder {
    const placed = Order.place({
      id: this.id,
      customerId: this.customerId,
      items: this.items,
      paymentMethod: this.paymentMethod,
      now: this.now,
      paymentTimeoutMs: this.paymentTimeoutMs,
    });
    const { order } = placed;
    const events = [...placed.events];
    const step = (n: number): Date => new Date(this.now.getTime() + n * 1000);
    const stage = this.stage;
    if (stage.status !== "PENDING_PAYMENT" && stage.paymentId !== undefined)
      events.push(...order.markPaid(stage.paymentId, step(1)));
    if (stage.status === "SHIPPED" || stage.status === "DELIVERED") events.push(...order.ship(step(2)));
    if (stage.status === "DELIVERED") events.push(...order.deliver(step(3)));
    if (stage.status === "CANCELLED") events.push(...order.cancel(stage.reason, step(2)).events);
    return { order, events };
  }

  build(): Order {
    return this.place().order;
  }
}

export function anOrder(): OrderBuilder {
  return new OrderBuilder();
}
