/**
 * Builders for reservations in tests: `aReservation().withItems(aRequest("A", 2)).bound().build()`.
 * A reservation is always built through the aggregate's own decisions, from a hold against enough
 * stock, so it is one the model could have reached.
 */
import { initialStock, type PricedStock, type RequestedLine, type Stock } from "../../models/inventory";
import { money, type Money } from "../../models/money";
import { Reservation } from "../../models/reservation";

/** When built reservations are held, unless told otherwise. */
export const T0 = new Date("2026-11-20T10:00:00.000Z");

/** `ms` after `T0`. */
export function after(ms: number, from: Date = T0): Date {
  return new Date(from.getTime() + ms);
}

export function aRequest(sku = "SKU-1", quantity = 1): RequestedLine {
  return { sku, quantity };
}

/** A product with `available` units (all received, none reserved or sold) at `price`. */
export function aProduct(available: number, price: Money = money(1000, "USD")): PricedStock {
  const stock: Stock =
    available === 0 ? { available: 0, reserved: 0, sold: 0, received: 0 } : initialStock(available);
  return { ...stock, price };
}

/** Products by SKU: a number is that many units at the default price. */
export function productsOf(entries: Record<string, number | PricedStock>): Map<string, PricedStock> {
  return new Map(
    Object.entries(entries).map(([sku, entry]) => [sku, typeof entry === "number" ? aProduct(entry) : entry]),
  );
}

type Step = (reservation: Reservation, now: Date) => void;

class ReservationBuilder {
  private orderId = "ord-1";
  private customerId = "cus-1";
  private items: RequestedLine[] = [aRequest("SKU-1", 2)];
  private now = T0;
  private holdTtlMs = 15 * 60_000;
  private readonly steps: Step[] = [];

  forOrder(orderId: string): this {
    this.orderId = orderId;
    return this;
  }

  withItems(...items: RequestedLine[]): this {
    this.items = items;
    return this;
  }

  heldAt(now: Date, holdTtlMs = this.holdTtlMs): this {
    this.now = now;
    this.holdTtlMs = holdTtlMs;
    return this;
  }

  /** `order.created` seen. */
  bound(): this {
    return this.then((r, now) => r.onOrderCreated({ customerId: this.customerId, products: new Map(), now }));
  }

  /** `order.paid` seen. */
  committed(): this {
    return this.then((r, now) => r.onOrderPaid(now));
  }

  /** Released by the `release` action. */
  released(): this {
    return this.then((r, now) => r.release(now));
  }

  /** Released by the sweeper once the hold ran out. */
  expired(): this {
    return this.then((r) => r.expire(after(this.holdTtlMs + 1, this.now)));
  }

  /** `order.cancelled` seen. */
  cancelled(): this {
    return this.then((r, now) => r.onOrderCancelled(now));
  }

  build(): Reservation {
    const products = productsOf(Object.fromEntries(this.items.map((line) => [line.sku, 1000])));
    const { reservation } = Reservation.hold({
      orderId: this.orderId,
      items: this.items,
      products,
      now: this.now,
      holdTtlMs: this.holdTtlMs,
    });
    for (const step of this.steps) step(reservation, this.now);
    return reservation;
  }

  private then(step: Step): this {
    this.steps.push(step);
    return this;
  }
}

export function aReservation(): ReservationBuilder {
  return new ReservationBuilder();
}
