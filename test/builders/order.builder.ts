/** Builders for domain objects in tests: `anOrder().withItems(...).placedAt(...).build()`. */
import { money } from "../../models/money";
import { Order, type OrderLine } from "../../models/order";

export function aLine(sku = "SKU-1", quantity = 1, minor = 1000, currency = "USD"): OrderLine {
  return { sku, quantity, unitPrice: money(minor, currency) };
}

class OrderBuilder {
  private items: OrderLine[] = [aLine()];
  private now = new Date("2026-11-20T10:00:00.000Z");
  private paymentTimeoutMs = 15 * 60_000;
  private id = "ord-1";
  private customerId = "cus-1";

  withItems(...items: OrderLine[]): this {
    this.items = items;
    return this;
  }

  withId(id: string): this {
    this.id = id;
    return this;
  }

  placedAt(now: Date, paymentTimeoutMs = this.paymentTimeoutMs): this {
    this.now = now;
    this.paymentTimeoutMs = paymentTimeoutMs;
    return this;
  }

  build(): Order {
    return Order.place({
      id: this.id,
      customerId: this.customerId,
      items: this.items,
      paymentMethod: "pm_card_visa",
      now: this.now,
      paymentTimeoutMs: this.paymentTimeoutMs,
    });
  }
}

export function anOrder(): OrderBuilder {
  return new OrderBuilder();
}
