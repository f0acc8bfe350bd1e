import fc from "fast-check";
import { EVENT_CATALOG } from "../../../models/events";
import {
  ORDER_STATUSES,
  Order,
  type CancelReason,
  type OrderEvent,
  type OrderOutcome,
  type OrderStatus,
} from "../../../models/order";
import { aLine, anOrder } from "../../builders/order.builder";

const t0 = new Date("2026-11-20T10:00:00.000Z");
const later = (ms: number): Date => new Date(t0.getTime() + ms);

/** The `order.cancelled` the default order (ord-1, cus-1, one line of 10.00 USD) raises. */
function cancelledEvent(reason: CancelReason, previousStatus: "PENDING_PAYMENT" | "PAID"): OrderEvent {
  return {
    type: "order.cancelled",
    payload: {
      orderId: "ord-1",
      customerId: "cus-1",
      reason,
      previousStatus,
      total: { minor: 1000, currency: "USD" },
    },
  };
}

/** Problems of an event's payload against the event catalog (none: it is publishable as is). */
function catalogIssues(event: OrderEvent): unknown[] {
  return EVENT_CATALOG[event.type][1].check(event.payload);
}

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
    expect(pending.cancel("payment_failed", later(1))).toEqual({
      refundDue: false,
      events: [cancelledEvent("payment_failed", "PENDING_PAYMENT")],
    });
    expect(pending.toState()).toMatchObject({ status: "CANCELLED", cancelReason: "payment_failed" });
    expect(pending.toState().statusHistory.at(-1)).toMatchObject({
      status: "CANCELLED",
      reason: "payment_failed",
    });

    const paid = anOrder().build();
    paid.markPaid("pay-1", later(1));
    expect(paid.cancel("customer_request", later(2))).toEqual({
      refundDue: true,
      events: [cancelledEvent("customer_request", "PAID")],
    });
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

describe("order events", () => {
  it("placing raises order.created with the order's lines, total, payment method and deadline", () => {
    const { order, events } = anOrder()
      .withId("ord-7")
      .forCustomer("alice")
      .paidWith("pm_card_slow")
      .withItems(aLine("MUG", 2, 1250), aLine("TEA", 1, 500))
      .placedAt(t0, 60_000)
      .place();
    expect(events).toEqual([
      {
        type: "order.created",
        payload: {
          orderId: "ord-7",
          customerId: "alice",
          items: [
            { sku: "MUG", quantity: 2, unitPrice: { minor: 1250, currency: "USD" } },
            { sku: "TEA", quantity: 1, unitPrice: { minor: 500, currency: "USD" } },
          ],
          total: { minor: 3000, currency: "USD" },
          paymentMethod: "pm_card_slow",
          paymentDueAt: "2026-11-20T10:01:00.000Z",
        },
      },
    ]);
    expect(events.map(catalogIssues)).toEqual([[]]);
    // the payload is a copy: changing it changes nothing in the order
    const [created] = events;
    if (created?.type !== "order.created") throw new Error("expected order.created");
    (created.payload.items[0] as { quantity: number }).quantity = 99;
    (created.payload.total as { minor: number }).minor = 1;
    expect(order.toState().items[0]?.quantity).toBe(2);
    expect(order.total.minor).toBe(3000);
  });

  it("markPaid raises order.paid with the payment and the total", () => {
    const order = anOrder()
      .withItems(aLine("A", 3, 700))
      .build();
    const events = order.markPaid("pay-9", later(1));
    expect(events).toEqual([
      {
        type: "order.paid",
        payload: {
          orderId: "ord-1",
          customerId: "cus-1",
          paymentId: "pay-9",
          total: { minor: 2100, currency: "USD" },
        },
      },
    ]);
    expect(events.map(catalogIssues)).toEqual([[]]);
  });

  it("cancel raises order.cancelled with the reason and the status it left", () => {
    const pending = anOrder().build();
    const paid = anOrder().paid().build();
    const fromPending = pending.cancel("payment_timeout", later(1)).events;
    const fromPaid = paid.cancel("admin_request", later(5000)).events;
    expect(fromPending).toEqual([cancelledEvent("payment_timeout", "PENDING_PAYMENT")]);
    expect(fromPaid).toEqual([cancelledEvent("admin_request", "PAID")]);
    expect([...fromPending, ...fromPaid].map(catalogIssues)).toEqual([[], []]);
  });

  it("shipping and delivering raise nothing (no event of the catalog says so)", () => {
    const order = anOrder().paid().build();
    expect(order.ship(later(2000))).toEqual([]);
    expect(order.deliver(later(3000))).toEqual([]);
  });

  it("shows callers its snapshot as a view", () => {
    const order = anOrder().paid("pay-3").build();
    const { id, ...state } = order.toState();
    expect(order.toView()).toEqual({ id, ...state });
    const cancelled = anOrder().cancelled("payment_failed").build();
    expect(cancelled.toView()).toMatchObject({ status: "CANCELLED", cancelReason: "payment_failed" });
    expect(cancelled.toView()).not.toHaveProperty("paymentId");
  });
});

describe("order tolerance: what a capture, a failure, a cancellation or the deadline does in each state", () => {
  type Stage = "pending" | "paid" | "shipped" | "delivered" | "cancelled" | "cancelled after paid";
  const orderIn = (stage: Stage): Order => {
    const builder = anOrder().placedAt(t0, 60_000);
    if (stage === "paid") builder.paid("pay-1");
    if (stage === "shipped") builder.shipped("pay-1");
    if (stage === "delivered") builder.delivered("pay-1");
    if (stage === "cancelled") builder.cancelled("customer_request");
    if (stage === "cancelled after paid") builder.cancelled("customer_request", "pay-1");
    return builder.build();
  };
  const capture = (paymentId: string) => (o: Order) => o.recordCapture(paymentId, later(10_000));
  const failure = (o: Order) => o.recordPaymentFailure(later(10_000));
  const cancellation = (o: Order) => o.requestCancellation("customer_request", later(10_000));
  const deadline = (ms: number) => (o: Order) => o.expireIfOverdue(later(ms));

  it.each<[string, Stage, (o: Order) => OrderOutcome, string, boolean]>([
    ["a second capture of the same payment", "paid", capture("pay-1"), "ALREADY_PAID", false],
    ["a capture of the paying payment, shipped", "shipped", capture("pay-1"), "ALREADY_PAID", false],
    ["a capture of the paying payment, delivered", "delivered", capture("pay-1"), "ALREADY_PAID", false],
    ["a capture of another payment", "paid", capture("pay-2"), "PAID_BY_ANOTHER_PAYMENT", true],
    ["a capture after cancellation", "cancelled", capture("pay-1"), "CAPTURED_AFTER_CANCELLATION", true],
    [
      "the paying capture again after cancellation",
      "cancelled after paid",
      capture("pay-1"),
      "ALREADY_PAID",
      false,
    ],
    [
      "another capture after a paid order was cancelled",
      "cancelled after paid",
      capture("pay-2"),
      "CAPTURED_AFTER_CANCELLATION",
      true,
    ],
    ["a payment failure of a paid order", "paid", failure, "NOT_AWAITING_PAYMENT", false],
    ["a payment failure of a cancelled order", "cancelled", failure, "ALREADY_CANCELLED", false],
    ["a cancellation of a cancelled order", "cancelled", cancellation, "ALREADY_CANCELLED", false],
    [
      "a cancellation of a paid order cancelled already",
      "cancelled after paid",
      cancellation,
      "ALREADY_CANCELLED",
      false,
    ],
    ["the deadline before it passed", "pending", deadline(60_000), "NOT_OVERDUE", false],
    ["the deadline of a paid order", "paid", deadline(120_000), "NOT_AWAITING_PAYMENT", false],
    ["the deadline of a cancelled order", "cancelled", deadline(120_000), "ALREADY_CANCELLED", false],
  ])(
    "%s leaves the order as it is (%s): code, reason, no event",
    (_label, stage, command, code, refundDue) => {
      const order = orderIn(stage);
      const before = order.toState();
      const outcome = command(order);
      expect(outcome).toEqual({ changed: false, code, reason: expect.any(String), events: [], refundDue });
      expect(order.toState()).toEqual(before);
    },
  );

  it.each<[string, Stage, (o: Order) => OrderOutcome, OrderStatus, OrderEvent["type"], boolean]>([
    ["a capture pays a pending order", "pending", capture("pay-1"), "PAID", "order.paid", false],
    ["a payment failure cancels a pending order", "pending", failure, "CANCELLED", "order.cancelled", false],
    [
      "a cancellation cancels a pending order",
      "pending",
      cancellation,
      "CANCELLED",
      "order.cancelled",
      false,
    ],
    [
      "a cancellation cancels a paid order, refund due",
      "paid",
      cancellation,
      "CANCELLED",
      "order.cancelled",
      true,
    ],
    [
      "the deadline once passed cancels a pending order",
      "pending",
      deadline(60_001),
      "CANCELLED",
      "order.cancelled",
      false,
    ],
  ])("%s", (_label, stage, command, status, type, refundDue) => {
    const order = orderIn(stage);
    const outcome = command(order);
    expect(outcome).toMatchObject({ changed: true, refundDue });
    expect(outcome.events.map((e) => e.type)).toEqual([type]);
    expect(order.status).toBe(status);
  });

  it("names the cancel reason of each command in its order.cancelled", () => {
    const reasonOf = (outcome: OrderOutcome): unknown =>
      outcome.events[0]?.type === "order.cancelled" ? outcome.events[0].payload.reason : undefined;
    expect(reasonOf(orderIn("pending").recordPaymentFailure(later(1)))).toBe("payment_failed");
    expect(reasonOf(orderIn("pending").expireIfOverdue(later(60_001)))).toBe("payment_timeout");
    expect(reasonOf(orderIn("pending").requestCancellation("admin_request", later(1)))).toBe("admin_request");
    expect(orderIn("paid").recordCapture("pay-1", later(1))).toMatchObject({ changed: false });
  });

  it.each<[Stage]>([["shipped"], ["delivered"]])(
    "refuses a cancellation of a %s order with a typed error and leaves it unchanged",
    (stage) => {
      const order = orderIn(stage);
      const before = order.toState();
      expect(() => order.requestCancellation("customer_request", later(1))).toThrow(
        expect.objectContaining({ code: "ILLEGAL_ORDER_TRANSITION" }),
      );
      expect(order.toState()).toEqual(before);
    },
  );

  it("keeps its promises whatever messages arrive, in whatever order, however often", () => {
    const command = fc.oneof(
      fc.record({ kind: fc.constant("capture" as const), paymentId: fc.constantFrom("pay-1", "pay-2") }),
      fc.record({ kind: fc.constant("fail" as const) }),
      fc.record({
        kind: fc.constant("cancel" as const),
        reason: fc.constantFrom<CancelReason>("customer_request", "admin_request"),
      }),
      fc.record({ kind: fc.constant("deadline" as const), atMs: fc.integer({ min: 0, max: 120_000 }) }),
      fc.record({ kind: fc.constant("ship" as const) }),
      fc.record({ kind: fc.constant("deliver" as const) }),
    );
    fc.assert(
      fc.property(fc.array(command, { maxLength: 20 }), (commands) => {
        const placed = anOrder().placedAt(t0, 60_000).place();
        const { order } = placed;
        const raised: OrderEvent[] = [...placed.events];
        let everCancelled = false;
        for (const c of commands) {
          const before = order.toState();
          let outcome: OrderOutcome | undefined;
          try {
            if (c.kind === "capture") outcome = order.recordCapture(c.paymentId, later(1));
            else if (c.kind === "fail") outcome = order.recordPaymentFailure(later(1));
            else if (c.kind === "cancel") outcome = order.requestCancellation(c.reason, later(1));
            else if (c.kind === "deadline") outcome = order.expireIfOverdue(later(c.atMs));
            else if (c.kind === "ship") raised.push(...order.ship(later(1)));
            else raised.push(...order.deliver(later(1)));
          } catch (err) {
            // a refusal changes nothing
            expect(err).toMatchObject({ code: "ILLEGAL_ORDER_TRANSITION" });
            expect(order.toState()).toEqual(before);
          }
          if (outcome !== undefined) {
            raised.push(...outcome.events);
            // a command that changes nothing raises nothing
            if (!outcome.changed) expect(order.toState()).toEqual(before);
            else expect(outcome.events).toHaveLength(1);
          }
          // a cancelled order is never paid (nor anything else again)
          if (everCancelled) expect(order.status).toBe("CANCELLED");
          everCancelled ||= order.status === "CANCELLED";
        }

        const count = (type: OrderEvent["type"]): number => raised.filter((e) => e.type === type).length;
        const state = order.toState();
        const history = state.statusHistory.map((h) => h.status);
        // every event is publishable as it is
        expect(raised.flatMap(catalogIssues)).toEqual([]);
        // created once, first
        expect(raised[0]?.type).toBe("order.created");
        expect(count("order.created")).toBe(1);
        // paid at most once, by the payment it records
        expect(count("order.paid")).toBeLessThanOrEqual(1);
        expect(count("order.paid")).toBe(history.includes("PAID") ? 1 : 0);
        const paid = raised.find((e) => e.type === "order.paid");
        if (paid?.type === "order.paid") expect(paid.payload.paymentId).toBe(state.paymentId);
        // exactly one order.cancelled per cancelled order, none otherwise
        expect(count("order.cancelled")).toBe(order.status === "CANCELLED" ? 1 : 0);
        // no order.paid after an order.cancelled
        const cancelledAt = raised.findIndex((e) => e.type === "order.cancelled");
        if (cancelledAt >= 0) expect(raised.slice(cancelledAt + 1)).toEqual([]);
        // the events tell the final status
        const cancelled = raised[cancelledAt];
        if (cancelled?.type === "order.cancelled") {
          expect(cancelled.payload.reason).toBe(state.cancelReason);
          expect(cancelled.payload.previousStatus).toBe(
            count("order.paid") === 1 ? "PAID" : "PENDING_PAYMENT",
          );
        } else if (order.status === "PENDING_PAYMENT") {
          expect(raised.map((e) => e.type)).toEqual(["order.created"]);
        } else {
          expect(["PAID", "SHIPPED", "DELIVERED"]).toContain(order.status);
          expect(raised.map((e) => e.type)).toEqual(["order.created", "order.paid"]);
        }
      }),
    );
  });
});
