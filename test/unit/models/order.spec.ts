import fc from "fast-check";
import { ORDER_STATUSES, Order, type OrderStatus } from "../../../models/order";
import { aLine, anOrder } from "../../builders/order.builder";

const t0 = new Date("2026-11-20T10:00:00.000Z");
const later = (ms: number): Date => new Date(t0.getTime() + ms);

describe("order aggregate", () => {
  it("is placed pending payment with its total, deadline and first history entry", () => {
    const order = anOrder()
      .withItems(aLine("A", 2, 1999), aLine("B", 1, 500))
      .placedAt(t0, 60_000)
      .build();
    const state = order.toState();
    expect(state.status).toBe("PENDING_PAYMENT");
    expect(state.total).toEqual({ minor: 4498, currency: "USD" });
    expect(state.paymentDueAt).toBe("2026-11-20T10:01:00.000Z");
    expect(state.statusHistory).toEqual([{ status: "PENDING_PAYMENT", at: t0.toISOString() }]);
  });

  it("totals JPY orders in whole yen", () => {
    expect(
      anOrder()
        .withItems(aLine("T", 3, 1200, "JPY"))
        .build().total,
    ).toEqual({ minor: 3600, currency: "JPY" });
  });

  it.each([
    ["no lines", []],
    ["quantity 0", [aLine("A", 0)]],
    ["quantity 1001", [aLine("A", 1001)]],
    ["a fractional quantity", [aLine("A", 1.5)]],
    ["a SKU twice", [aLine("A"), aLine("A")]],
    ["two currencies", [aLine("A", 1, 100, "USD"), aLine("B", 1, 100, "EUR")]],
    ["101 lines", Array.from({ length: 101 }, (_, i) => aLine(`S${i}`))],
  ])("refuses an order with %s", (_label, items) => {
    expect(() =>
      anOrder()
        .withItems(...items)
        .build(),
    ).toThrow(expect.objectContaining({ code: "INVALID_ORDER" }));
  });

  it("goes pending → paid → shipped → delivered, recording each step", () => {
    const order = anOrder().placedAt(t0).build();
    order.markPaid("pay-1", later(1000));
    order.ship(later(2000));
    order.deliver(later(3000));
    const state = order.toState();
    expect(state.status).toBe("DELIVERED");
    expect(state.paymentId).toBe("pay-1");
    expect(state.statusHistory.map((h) => h.status)).toEqual([
      "PENDING_PAYMENT",
      "PAID",
      "SHIPPED",
      "DELIVERED",
    ]);
    expect(state.updatedAt).toBe(later(3000).toISOString());
  });

  it("cancels a pending order without a refund, and a paid one with a refund", () => {
    const pending = anOrder().build();
    expect(pending.cancel("payment_failed", later(1))).toEqual({ refundDue: false });
    expect(pending.toState()).toMatchObject({ status: "CANCELLED", cancelReason: "payment_failed" });
    expect(pending.toState().statusHistory.at(-1)).toMatchObject({
      status: "CANCELLED",
      reason: "payment_failed",
    });

    const paid = anOrder().build();
    paid.markPaid("pay-1", later(1));
    expect(paid.cancel("customer_request", later(2))).toEqual({ refundDue: true });
  });

  it.each<[string, (o: Order) => void, (o: Order) => void]>([
    ["pay a cancelled order", (o) => o.cancel("admin_request", t0), (o) => o.markPaid("p", t0)],
    ["pay twice", (o) => o.markPaid("p", t0), (o) => o.markPaid("p", t0)],
    ["ship an unpaid order", () => undefined, (o) => o.ship(t0)],
    ["deliver a paid order", (o) => o.markPaid("p", t0), (o) => o.deliver(t0)],
    [
      "cancel a shipped order",
      (o) => (o.markPaid("p", t0), o.ship(t0)),
      (o) => o.cancel("customer_request", later(1)),
    ],
    ["cancel twice", (o) => o.cancel("payment_timeout", t0), (o) => o.cancel("payment_timeout", later(1))],
  ])("refuses to %s with a typed error and leaves the order unchanged", (_label, setUp, illegal) => {
    const order = anOrder().build();
    setUp(order);
    const before = order.toState();
    expect(() => illegal(order)).toThrow(expect.objectContaining({ code: "ILLEGAL_ORDER_TRANSITION" }));
    expect(order.toState()).toEqual(before);
  });

  it("is overdue only while unpaid past its deadline", () => {
    const order = anOrder().placedAt(t0, 60_000).build();
    expect(order.isPaymentOverdue(later(60_000))).toBe(false);
    expect(order.isPaymentOverdue(later(60_001))).toBe(true);
    order.markPaid("p", later(70_000));
    expect(order.isPaymentOverdue(later(120_000))).toBe(false);
  });

  it("never reaches a state outside the machine, whatever the sequence of commands", () => {
    const allowed: Record<OrderStatus, OrderStatus[]> = {
      PENDING_PAYMENT: ["PAID", "CANCELLED"],
      PAID: ["SHIPPED", "CANCELLED"],
      SHIPPED: ["DELIVERED"],
      DELIVERED: [],
      CANCELLED: [],
    };
    const command = fc.constantFrom("pay", "ship", "deliver", "cancel");
    fc.assert(
      fc.property(fc.array(command, { maxLength: 12 }), (commands) => {
        const order = anOrder().build();
        for (const c of commands) {
          try {
            if (c === "pay") order.markPaid("p", t0);
            else if (c === "ship") order.ship(t0);
            else if (c === "deliver") order.deliver(t0);
            else order.cancel("customer_request", t0);
          } catch (err) {
            expect(err).toMatchObject({ code: "ILLEGAL_ORDER_TRANSITION" });
          }
        }
        const history = order.toState().statusHistory.map((h) => h.status);
        for (let i = 1; i < history.length; i++) {
          expect(allowed[history[i - 1] as OrderStatus]).toContain(history[i]);
        }
        expect(ORDER_STATUSES).toContain(order.status);
        expect(history.at(-1)).toBe(order.status);
      }),
    );
  });

  it("round-trips through its stored snapshot, and snapshots are copies", () => {
    const order = anOrder().build();
    order.markPaid("p", later(5));
    const state = order.toState();
    expect(Order.fromState(JSON.parse(JSON.stringify(state))).toState()).toEqual(state);
    (state.statusHistory as unknown as unknown[]).push("tampered");
    expect(order.toState().statusHistory).toHaveLength(2);
  });
});
