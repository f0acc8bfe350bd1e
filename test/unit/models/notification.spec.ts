import fc from "fast-check";
import { EVENT_CATALOG } from "../../../models/events";
import {
  NOTIFICATION_CHANNELS,
  NOTIFIED_EVENT_TYPES,
  SMS_MAX_LENGTH,
  formatAmount,
  isNotifiedEventType,
  recipientOf,
  renderNotification,
  renderNotifications,
  shortRef,
  type NotifiedEvent,
} from "../../../models/notification";

const ORDER_ID = "0193a4f2-7c1e-7a3b-9c2d-5e6f7a8b9c0d";

function created(overrides: Partial<Extract<NotifiedEvent, { type: "order.created" }>["payload"]> = {}) {
  return {
    type: "order.created" as const,
    payload: {
      orderId: ORDER_ID,
      customerId: "cus-1",
      items: [{ sku: "SKU-1", quantity: 2, unitPrice: { minor: 1249, currency: "USD" } }],
      total: { minor: 2498, currency: "USD" },
      paymentMethod: "pm_card_visa",
      paymentDueAt: "2030-01-01T00:15:00.000Z",
      ...overrides,
    },
  };
}

const paid = (total = { minor: 2498, currency: "USD" }): NotifiedEvent => ({
  type: "order.paid",
  payload: { orderId: ORDER_ID, customerId: "cus-1", paymentId: "pay-1", total },
});

const cancelled = (
  reason: "payment_failed" | "payment_timeout" | "customer_request" | "admin_request",
  previousStatus: "PENDING_PAYMENT" | "PAID",
): NotifiedEvent => ({
  type: "order.cancelled",
  payload: {
    orderId: ORDER_ID,
    customerId: "cus-1",
    reason,
    previousStatus,
    total: { minor: 2498, currency: "USD" },
  },
});

const refunded = (amount = { minor: 2498, currency: "USD" }): NotifiedEvent => ({
  type: "payment.refunded",
  payload: { paymentId: "pay-1", orderId: ORDER_ID, customerId: "cus-1", amount, refundId: "re_1" },
});

describe("notification rendering", () => {
  it("formats amounts from minor units with the currency's symbol or code", () => {
    expect(formatAmount({ minor: 2498, currency: "USD" })).toBe("$24.98");
    expect(formatAmount({ minor: 5, currency: "USD" })).toBe("$0.05");
    expect(formatAmount({ minor: 123456789, currency: "USD" })).toBe("$1,234,567.89");
    expect(formatAmount({ minor: 1500, currency: "JPY" })).toBe("¥1,500");
    expect(formatAmount({ minor: 7, currency: "JPY" })).toBe("¥7");
    expect(formatAmount({ minor: 700, currency: "EUR" })).toBe("€7.00");
    expect(formatAmount({ minor: 1250, currency: "BHD" })).toBe("BHD 1.250");
    expect(formatAmount({ minor: 1250, currency: "CHF" })).toBe("CHF 12.50");
    expect(formatAmount({ minor: -1205, currency: "USD" })).toBe("-$12.05");
  });

  it("refuses a currency whose decimals it does not know rather than guess them", () => {
    expect(() => formatAmount({ minor: 100, currency: "XYZ" })).toThrow(
      expect.objectContaining({ code: "UNRENDERABLE_EVENT" }),
    );
    expect(() => renderNotification(paid({ minor: 100, currency: "XYZ" }), "sms")).toThrow(
      expect.objectContaining({ code: "UNRENDERABLE_EVENT" }),
    );
  });

  it("confirms a new order: count of items, total, and that payment is awaited", () => {
    const [email, sms] = renderNotifications(created());

    expect(sms).toEqual({
      channel: "sms",
      to: "customer:cus-1",
      body: "Order 0193a4f2… confirmed: 2 items, total $24.98. We are waiting for your payment.",
    });
    expect(email?.channel).toBe("email");
    expect(email?.to).toBe("customer:cus-1");
    expect(email?.subject).toBe("Order 0193a4f2… confirmed: $24.98");
    expect(email?.body).toContain(`Thank you for your order ${ORDER_ID}.`);
    expect(email?.body).toContain("2 × SKU-1 at $12.49 each");
    expect(email?.body).toContain("Total: $24.98 (2 items).");
    expect(email?.body).toContain("Orders not paid by 2030-01-01 00:15 UTC are cancelled.");
  });

  it("counts quantities, not lines, and says '1 item' for one", () => {
    const one = renderNotification(
      created({
        items: [{ sku: "A", quantity: 1, unitPrice: { minor: 150000, currency: "JPY" } }],
        total: { minor: 150000, currency: "JPY" },
      }),
      "sms",
    );
    const many = renderNotification(
      created({
        items: [
          { sku: "A", quantity: 3, unitPrice: { minor: 100, currency: "USD" } },
          { sku: "B", quantity: 4, unitPrice: { minor: 100, currency: "USD" } },
        ],
        total: { minor: 700, currency: "USD" },
      }),
      "sms",
    );

    expect(one.body).toBe(
      "Order 0193a4f2… confirmed: 1 item, total ¥150,000. We are waiting for your payment.",
    );
    expect(many.body).toContain("7 items, total $7.00");
  });

  it("tells a payment, a refund and each kind of cancellation apart", () => {
    expect(renderNotification(paid(), "sms").body).toBe(
      "Order 0193a4f2… paid: we received $24.98. Thank you!",
    );
    expect(renderNotification(paid(), "email").subject).toBe("Order 0193a4f2… paid");
    expect(renderNotification(refunded({ minor: 1500, currency: "JPY" }), "email")).toMatchObject({
      subject: "Refund of ¥1,500 for order 0193a4f2…",
      body: expect.stringContaining(`We refunded ¥1,500 for order ${ORDER_ID} (refund re_1).`),
    });
    expect(renderNotification(cancelled("payment_failed", "PENDING_PAYMENT"), "sms").body).toBe(
      "Order 0193a4f2… cancelled: your payment did not go through. You have not been charged.",
    );
    expect(renderNotification(cancelled("customer_request", "PAID"), "sms").body).toBe(
      "Order 0193a4f2… cancelled: you asked us to cancel it. Your payment of $24.98 will be refunded.",
    );
    expect(renderNotification(cancelled("payment_timeout", "PENDING_PAYMENT"), "email").body).toContain(
      "we did not receive your payment in time",
    );
    expect(renderNotification(cancelled("admin_request", "PAID"), "email").body).toContain(
      "our team had to cancel it",
    );
  });

  it("addresses every channel to the customer id and gives only e-mails a subject", () => {
    for (const event of [created(), paid(), cancelled("payment_failed", "PENDING_PAYMENT"), refunded()]) {
      const messages = renderNotifications(event as NotifiedEvent);
      expect(messages.map((m) => m.channel)).toEqual([...NOTIFICATION_CHANNELS]);
      expect(messages.every((m) => m.to === recipientOf("cus-1"))).toBe(true);
      expect(messages.find((m) => m.channel === "sms")?.subject).toBeUndefined();
      expect(messages.find((m) => m.channel === "email")?.subject).toEqual(expect.any(String));
    }
  });

  it("renders every notified event that fits the catalog into an SMS of at most 160 characters", () => {
    const id = fc.string({ minLength: 1, maxLength: 128 });
    const currency = fc.constantFrom("USD", "EUR", "GBP", "CHF", "JPY", "KRW", "BHD", "KWD");
    const amount = fc.record({ minor: fc.maxSafeNat(), currency });
    const event: fc.Arbitrary<NotifiedEvent> = fc.oneof(
      fc.record({
        type: fc.constant("order.created" as const),
        payload: fc.record({
          orderId: id,
          customerId: id,
          items: fc.array(
            fc.record({
              sku: fc.constant("SKU-1"),
              quantity: fc.integer({ min: 1, max: 1000 }),
              unitPrice: amount,
            }),
            { minLength: 1, maxLength: 100 },
          ),
          total: amount,
          paymentMethod: fc.constant("pm_card_visa"),
          paymentDueAt: fc.constant("2030-01-01T00:15:00.000Z"),
        }),
      }),
      fc.record({
        type: fc.constant("order.paid" as const),
        payload: fc.record({ orderId: id, customerId: id, paymentId: id, total: amount }),
      }),
      fc.record({
        type: fc.constant("order.cancelled" as const),
        payload: fc.record({
          orderId: id,
          customerId: id,
          reason: fc.constantFrom(
            "payment_failed" as const,
            "payment_timeout" as const,
            "customer_request" as const,
            "admin_request" as const,
          ),
          previousStatus: fc.constantFrom("PENDING_PAYMENT" as const, "PAID" as const),
          total: amount,
        }),
      }),
      fc.record({
        type: fc.constant("payment.refunded" as const),
        payload: fc.record({ paymentId: id, orderId: id, customerId: id, amount, refundId: id }),
      }),
    );

    fc.assert(
      fc.property(event, (e) => {
        expect(EVENT_CATALOG[e.type][1].check(e.payload)).toEqual([]);
        const sms = renderNotification(e, "sms");
        expect(Array.from(sms.body).length).toBeLessThanOrEqual(SMS_MAX_LENGTH);
        // nothing was cut: the fixed words and the short order id always fit
        expect(sms.body.endsWith("…")).toBe(false);
        expect(sms.body).toContain(shortRef(e.payload.orderId));
      }),
    );
  });

  it("renders the same words every time (a rerun transaction stores the same message)", () => {
    expect(renderNotifications(created())).toEqual(renderNotifications(created()));
  });

  it("knows which event types it notifies about", () => {
    expect([...NOTIFIED_EVENT_TYPES]).toEqual([
      "order.created",
      "order.paid",
      "order.cancelled",
      "payment.refunded",
    ]);
    expect(isNotifiedEventType("order.paid")).toBe(true);
    expect(isNotifiedEventType("payment.captured")).toBe(false);
    expect(shortRef("ord-1")).toBe("ord-1");
  });
});
