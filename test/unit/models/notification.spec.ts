import fc from "fast-check";
import { EVENT_CATALOG } from "../../../models/events";
import {
  NOTIFICATION_CHANNELS,
  NOTIFIED_EVENT_TYPES,
  Notification,
  NotificationError,
  isNotifiedEventType,
  type NotificationErrorCode,
  type NotificationEvent,
  type NotifiedEvent,
  type RetryPolicy,
} from "../../../models/notification";
import {
  SMS_MAX_LENGTH,
  formatAmount,
  recipientOf,
  renderNotification,
  renderNotifications,
  shortRef,
} from "../../../models/notification-template";
import {
  LEASE_MS,
  SENDER,
  T0,
  TEST_POLICY,
  aNotification,
  aPaidEvent,
} from "../../builders/notification.builder";

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

// ── the aggregate ────────────────────────────────────────────────────────

const at = (ms: number): Date => new Date(T0.getTime() + ms);

/** Runs `move`, expects it to throw `code`, and checks that nothing changed. */
function expectRefused(notification: Notification, code: NotificationErrorCode, move: () => unknown): void {
  const before = notification.toState();
  expect(move).toThrow(expect.objectContaining({ code, name: "NotificationError" }));
  expect(notification.toState()).toEqual(before);
}

describe("notification aggregate", () => {
  it("is created pending, due at once, with the message and the event it tells about", () => {
    const notification = aNotification().onChannel("email").build();
    const state = notification.toState();
    expect(state).toEqual({
      id: "ntf-1",
      eventId: "evt-1",
      type: "order.paid",
      orderId: "ord-1",
      customerId: "cus-1",
      channel: "email",
      to: "customer:cus-1",
      subject: expect.stringMatching(/^Order ord-1 paid$/),
      body: expect.any(String),
      status: "pending",
      attempts: 0,
      nextAttemptAt: T0,
      createdAt: T0,
      updatedAt: T0,
    });
    expect(notification.outgoing()).toEqual({
      id: "ntf-1",
      channel: "email",
      to: "customer:cus-1",
      subject: state.subject,
      body: state.body,
    });
    expect(notification.isClaimable(T0)).toBe(true);
    expect(notification.isClaimable(at(-1))).toBe(false);
    expect(notification.isSending(T0)).toBe(false);
    expect(aNotification().build().outgoing()).not.toHaveProperty("subject");
  });

  it.each([
    ["no id", { id: "" }],
    ["no recipient", { message: { channel: "sms" as const, to: "", body: "b" } }],
    ["no body", { message: { channel: "sms" as const, to: "customer:c", body: "" } }],
  ])("refuses a notification with %s", (_label, override) => {
    expect(() =>
      Notification.create({
        id: "ntf-1",
        event: aPaidEvent(),
        message: { channel: "sms", to: "customer:c", body: "b" },
        now: T0,
        ...override,
      }),
    ).toThrow(expect.objectContaining({ code: "INVALID_NOTIFICATION" }));
  });

  it("is claimed by one sender at a time: pending → sending under a lease, free again when it lapses", () => {
    const notification = aNotification().build();
    const leaseUntil = at(LEASE_MS);

    expect(notification.claim("a", leaseUntil, T0)).toEqual([]);

    expect(notification.toState()).toMatchObject({ status: "pending", leaseOwner: "a", leaseUntil });
    // the claim alone: not a change anybody sees
    expect(notification.toState().updatedAt).toEqual(T0);
    expect(notification.isSending(at(LEASE_MS - 1))).toBe(true);
    expectRefused(notification, "NOTIFICATION_NOT_CLAIMABLE", () =>
      notification.claim("b", at(2 * LEASE_MS), at(LEASE_MS - 1)),
    );
    expect(notification.isSending(at(LEASE_MS))).toBe(false);
    notification.claim("b", at(2 * LEASE_MS), at(LEASE_MS));
    expect(notification.toState().leaseOwner).toBe("b");
  });

  it("records a send: sent, the attempt counted, the provider's id kept, the lease released", () => {
    const notification = aNotification().claimedBy("a").build();

    const events = notification.recordSent({ providerMessageId: "msg_9" }, at(5000));

    expect(events).toEqual([
      {
        type: "NotificationSent",
        notificationId: "ntf-1",
        attempts: 1,
        providerMessageId: "msg_9",
        wasDead: false,
      },
    ]);
    const state = notification.toState();
    expect(state).toMatchObject({
      status: "sent",
      attempts: 1,
      providerMessageId: "msg_9",
      sentAt: at(5000),
    });
    for (const field of ["leaseOwner", "leaseUntil", "nextAttemptAt", "deadAt"])
      expect(state).not.toHaveProperty(field);
    expect(state.updatedAt).toEqual(at(5000));
  });

  it("records a failed send: failed, counted, retried after the backoff, the lease released", () => {
    const notification = aNotification().claimedBy("a").build();
    const policy = { ...TEST_POLICY, random: () => 0.5 };

    const events = notification.recordFailure("a", "NOTIFY_UNAVAILABLE: HTTP 500", at(5000), policy);

    // after 1 failure the delay is random in [0, 1000): half of it here
    expect(events).toEqual([
      {
        type: "NotificationSendFailed",
        notificationId: "ntf-1",
        attempts: 1,
        error: "NOTIFY_UNAVAILABLE: HTTP 500",
        retryAt: at(5500),
      },
    ]);
    const state = notification.toState();
    expect(state).toMatchObject({
      status: "failed",
      attempts: 1,
      lastError: "NOTIFY_UNAVAILABLE: HTTP 500",
      nextAttemptAt: at(5500),
    });
    expect(state).not.toHaveProperty("leaseOwner");
    expect(notification.isClaimable(at(5499))).toBe(false);
    expect(notification.isClaimable(at(5500))).toBe(true);
  });

  it("is dead once maxAttempts sends failed, and says why", () => {
    const notification = aNotification().failedTimes(2).claimedBy().build();

    const events = notification.recordFailure(SENDER, "NOTIFY_UNAVAILABLE: timeout", at(60_000), TEST_POLICY);

    expect(events).toEqual([
      {
        type: "NotificationDied",
        notificationId: "ntf-1",
        attempts: 3,
        reason: "attempts_exhausted",
        error: "NOTIFY_UNAVAILABLE: timeout",
      },
    ]);
    const state = notification.toState();
    expect(state).toMatchObject({ status: "dead", attempts: 3, deadAt: at(60_000) });
    expect(state).not.toHaveProperty("nextAttemptAt");
    expect(state).not.toHaveProperty("leaseOwner");
    expect(notification.isClaimable(at(10 ** 9))).toBe(false);
  });

  it("is dead at once when the provider rejects the message", () => {
    const notification = aNotification().claimedBy().build();

    const events = notification.recordRejection(SENDER, "NOTIFY_REJECTED: HTTP 400", at(2000));

    expect(events).toEqual([
      {
        type: "NotificationDied",
        notificationId: "ntf-1",
        attempts: 1,
        reason: "rejected",
        error: "NOTIFY_REJECTED: HTTP 400",
      },
    ]);
    expect(notification.toState()).toMatchObject({
      status: "dead",
      attempts: 1,
      lastError: "NOTIFY_REJECTED: HTTP 400",
    });
  });

  it.each([
    ["a pending", aNotification().claimedBy(), "pending"],
    ["a failed", aNotification().failedTimes(1).claimedBy(), "failed"],
  ] as const)(
    "defers %s notification the breaker refused: no attempt counted, due again later",
    (_l, builder, status) => {
      const notification = builder.build();
      const attempts = notification.attempts;

      const events = notification.defer(SENDER, at(10_000), 400);

      expect(events).toEqual([
        { type: "NotificationSendDeferred", notificationId: "ntf-1", retryAt: at(10_400) },
      ]);
      const state = notification.toState();
      expect(state).toMatchObject({ status, attempts, nextAttemptAt: at(10_400) });
      expect(state).not.toHaveProperty("leaseOwner");
      expect(state).not.toHaveProperty("leaseUntil");
    },
  );

  it("replays a dead notification: pending, due now, a fresh attempt budget, the last error kept", () => {
    const notification = aNotification().rejected().build();

    const events = notification.replay(at(90_000));

    expect(events).toEqual([{ type: "NotificationReplayed", notificationId: "ntf-1" }]);
    const state = notification.toState();
    expect(state).toMatchObject({
      status: "pending",
      attempts: 0,
      nextAttemptAt: at(90_000),
      lastError: "NOTIFY_REJECTED: HTTP 400",
      updatedAt: at(90_000),
    });
    expect(state).not.toHaveProperty("deadAt");
    expect(notification.isClaimable(at(90_000))).toBe(true);
  });

  it("lets a late sent beat dead: a send whose lease lapsed still counts once it is answered", () => {
    const notification = aNotification().build();
    // sender a takes it; its send hangs past its lease, and sender b takes over and gives up
    notification.claim("a", at(LEASE_MS), T0);
    for (let i = 0; i < TEST_POLICY.maxAttempts; i++) {
      const now = at(LEASE_MS + i * 1000);
      notification.claim("b", at(LEASE_MS + i * 1000 + LEASE_MS), now);
      notification.recordFailure("b", "NOTIFY_UNAVAILABLE: HTTP 503", now, TEST_POLICY);
    }
    expect(notification.status).toBe("dead");
    // a's failure would not count now: b held it last
    expectRefused(notification, "ILLEGAL_NOTIFICATION_TRANSITION", () =>
      notification.recordFailure("a", "late failure", at(60_000), TEST_POLICY),
    );

    const events = notification.recordSent({ providerMessageId: "msg_late" }, at(60_000));

    expect(events).toEqual([
      {
        type: "NotificationSent",
        notificationId: "ntf-1",
        attempts: 4,
        providerMessageId: "msg_late",
        wasDead: true,
      },
    ]);
    const state = notification.toState();
    expect(state).toMatchObject({ status: "sent", providerMessageId: "msg_late", sentAt: at(60_000) });
    expect(state).not.toHaveProperty("deadAt");
  });

  it("takes outcomes other than sent only from the sender holding the lease", () => {
    const mine = aNotification().claimedBy("a").build();
    expectRefused(mine, "NOTIFICATION_LEASE_LOST", () => mine.recordFailure("b", "e", at(2000), TEST_POLICY));
    expectRefused(mine, "NOTIFICATION_LEASE_LOST", () => mine.recordRejection("b", "e", at(2000)));
    expectRefused(mine, "NOTIFICATION_LEASE_LOST", () => mine.defer("b", at(2000), 100));

    const unclaimed = aNotification().build();
    expectRefused(unclaimed, "NOTIFICATION_LEASE_LOST", () =>
      unclaimed.recordFailure("a", "e", at(2000), TEST_POLICY),
    );

    const dead = aNotification().rejected().build();
    expectRefused(dead, "ILLEGAL_NOTIFICATION_TRANSITION", () => dead.defer(SENDER, at(9000), 100));
    expectRefused(dead, "ILLEGAL_NOTIFICATION_TRANSITION", () => dead.recordRejection(SENDER, "e", at(9000)));
    expectRefused(dead, "NOTIFICATION_NOT_CLAIMABLE", () => dead.claim(SENDER, at(99_000), at(9000)));
  });

  it("keeps a sent notification sent: every other move is refused and changes nothing", () => {
    const sent = aNotification().sent().build();
    expectRefused(sent, "NOTIFICATION_ALREADY_SENT", () =>
      sent.recordSent({ providerMessageId: "again" }, at(9000)),
    );
    expectRefused(sent, "NOTIFICATION_ALREADY_SENT", () =>
      sent.recordFailure(SENDER, "e", at(9000), TEST_POLICY),
    );
    expectRefused(sent, "NOTIFICATION_ALREADY_SENT", () => sent.recordRejection(SENDER, "e", at(9000)));
    expectRefused(sent, "NOTIFICATION_ALREADY_SENT", () => sent.defer(SENDER, at(9000), 100));
    expectRefused(sent, "NOTIFICATION_ALREADY_SENT", () => sent.claim(SENDER, at(99_000), at(9000)));
    expectRefused(sent, "NOTIFICATION_NOT_DEAD", () => sent.replay(at(9000)));
  });

  it.each([
    ["pending", aNotification()],
    ["failed", aNotification().failedTimes(1)],
    ["sending", aNotification().claimedBy()],
  ])("refuses to replay a %s notification", (_label, builder) => {
    const notification = builder.build();
    expectRefused(notification, "NOTIFICATION_NOT_DEAD", () => notification.replay(at(9000)));
  });

  it("hands out copies: a snapshot changed outside changes nothing inside", () => {
    const state = aNotification().build().toState();
    const notification = Notification.fromState(state);
    (state as { status: string }).status = "sent";
    (state.createdAt as Date).setTime(0);
    expect(notification.toState()).toMatchObject({ status: "pending", createdAt: T0 });
    const copy = notification.toState();
    (copy as { attempts: number }).attempts = 99;
    expect(notification.attempts).toBe(0);
  });

  describe("retry schedule", () => {
    it("waits random in [0, min(backoffMaxMs, backoffBaseMs·2^(n-1))] after the n-th failure", () => {
      const policy = { maxAttempts: 50, backoffBaseMs: 100, backoffMaxMs: 5000 };
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 49 }),
          fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
          (failures, r) => {
            const notification = aNotification()
              .withPolicy({ ...policy, random: () => 0 })
              .failedTimes(failures - 1)
              .claimedBy()
              .build();
            const now = at(10 ** 7);
            const [event] = notification.recordFailure(SENDER, "e", now, { ...policy, random: () => r });
            if (event?.type !== "NotificationSendFailed") throw new Error(`unexpected ${event?.type}`);
            const delay = event.retryAt.getTime() - now.getTime();
            const ceiling = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** (failures - 1));
            expect(delay).toBeGreaterThanOrEqual(0);
            expect(delay).toBeLessThan(ceiling);
            expect(notification.toState().nextAttemptAt).toEqual(event.retryAt);
          },
        ),
      );
    });

    it("grows: the ceilings are 1 s, 2 s, 4 s … capped at backoffMaxMs", () => {
      const almostOne = { ...TEST_POLICY, maxAttempts: 10, backoffMaxMs: 5000, random: () => 0.999_999 };
      const delays: number[] = [];
      const notification = aNotification().build();
      let now = T0;
      for (let i = 0; i < 9; i++) {
        notification.claim(SENDER, new Date(now.getTime() + LEASE_MS), now);
        const [event] = notification.recordFailure(SENDER, "e", now, almostOne);
        if (event?.type !== "NotificationSendFailed") throw new Error("not a failure");
        delays.push(event.retryAt.getTime() - now.getTime());
        now = event.retryAt;
      }
      expect(delays).toEqual([999, 1999, 3999, 4999, 4999, 4999, 4999, 4999, 4999]);
    });
  });

  describe("over random sequences of claims, outcomes, lapses and replays", () => {
    type Command =
      | { kind: "advance"; ms: number }
      | { kind: "claim"; sender: number }
      | { kind: "sent"; sender: number }
      | { kind: "failed"; sender: number }
      | { kind: "rejected"; sender: number }
      | { kind: "deferred"; sender: number }
      | { kind: "replay" };

    const commands = (senders: number): fc.Arbitrary<Command[]> => {
      const sender = fc.integer({ min: 0, max: senders - 1 });
      // weighted so that runs reach the corners: leases lapsing, budgets running out, late answers
      const outcome = <K extends "sent" | "failed" | "rejected" | "deferred">(kind: K, weight: number) => ({
        arbitrary: fc.record({ kind: fc.constant(kind), sender }),
        weight,
      });
      // a lease lapses mid-send, another sender runs out the budget, then the first send is answered
      const lateAnswer = fc
        .tuple(sender, sender)
        .filter(([a, b]) => a !== b)
        .map(([a, b]): Command[] => [
          { kind: "claim", sender: a },
          { kind: "advance", ms: LEASE_MS },
          ...Array.from({ length: 5 }, (): Command[] => [
            { kind: "claim", sender: b },
            { kind: "failed", sender: b },
          ]).flat(),
          { kind: "sent", sender: a },
        ]);
      return fc
        .array(
          fc.oneof(
            {
              arbitrary: fc.record({
                kind: fc.constant("advance" as const),
                ms: fc.oneof(fc.constant(LEASE_MS), fc.integer({ min: 0, max: 2 * LEASE_MS })),
              }),
              weight: 2,
            },
            { arbitrary: fc.record({ kind: fc.constant("claim" as const), sender }), weight: 4 },
            outcome("failed", 3),
            outcome("sent", 1),
            outcome("rejected", 1),
            outcome("deferred", 1),
            { arbitrary: fc.record({ kind: fc.constant("replay" as const) }), weight: 1 },
            ...(senders > 1 ? [{ arbitrary: lateAnswer, weight: 1 }] : []),
          ),
          { maxLength: 40 },
        )
        .map((steps) => steps.flat());
    };

    /**
     * Plays `script`. A sender reports an outcome only for a send it started (a claim it made), as
     * the real sender does, and at most once per send; its lease may have lapsed meanwhile. Returns
     * the events raised, after checking the invariants at every step.
     */
    function play(script: Command[], senders: number, policy: RetryPolicy): NotificationEvent[] {
      const notification = aNotification().build();
      const sending = new Set<number>();
      const raised: NotificationEvent[] = [];
      let now = T0.getTime();
      let wasSent = false;
      for (const command of script) {
        if (command.kind === "advance") {
          now += command.ms;
          continue;
        }
        if (command.kind !== "claim" && command.kind !== "replay" && !sending.has(command.sender)) continue;
        const before = notification.toState();
        const owner = `sender-${"sender" in command ? command.sender : 0}`;
        const date = new Date(now);
        let events: NotificationEvent[];
        try {
          switch (command.kind) {
            case "claim":
              if (sending.has(command.sender)) continue;
              events = notification.claim(owner, new Date(now + LEASE_MS), date);
              sending.add(command.sender);
              break;
            case "sent":
              sending.delete(command.sender);
              events = notification.recordSent({ providerMessageId: `msg-${owner}` }, date);
              break;
            case "failed":
              sending.delete(command.sender);
              events = notification.recordFailure(owner, "e", date, policy);
              break;
            case "rejected":
              sending.delete(command.sender);
              events = notification.recordRejection(owner, "e", date);
              break;
            case "deferred":
              sending.delete(command.sender);
              events = notification.defer(owner, date, 400);
              break;
            case "replay":
              events = notification.replay(date);
              break;
          }
        } catch (err) {
          // a refused move names its code and changes nothing
          expect(err).toBeInstanceOf(NotificationError);
          expect(notification.toState()).toEqual(before);
          events = [];
        }
        raised.push(...events);
        const state = notification.toState();
        // never both sent and dead; sent is final
        if (wasSent) expect(state).toEqual(before);
        wasSent ||= state.status === "sent";
        if (state.status === "sent") {
          expect(state).not.toHaveProperty("deadAt");
          expect(state.sentAt).toBeInstanceOf(Date);
        }
        if (state.status === "dead") {
          expect(state.deadAt).toBeInstanceOf(Date);
          expect(state).not.toHaveProperty("nextAttemptAt");
          expect(state).not.toHaveProperty("leaseOwner");
        }
        if (state.status === "pending" || state.status === "failed")
          expect(state.nextAttemptAt).toBeInstanceOf(Date);
        // attempts stay within the budget; the one exception is a late sent over dead: the send that
        // was in flight when it died
        const limit =
          state.status === "sent" && wasSentLate(raised) ? policy.maxAttempts + 1 : policy.maxAttempts;
        expect(state.attempts).toBeLessThanOrEqual(limit);
      }
      seen.add(notification.status);
      if (wasSentLate(raised)) seen.add("late sent");
      return raised;
    }

    /** What the runs reached, so that a property is not satisfied by runs that never got there. */
    const seen = new Set<string>();
    beforeEach(() => seen.clear());

    function wasSentLate(raised: NotificationEvent[]): boolean {
      return raised.some((e) => e.type === "NotificationSent" && e.wasDead);
    }

    it("one sender: never both sent and dead, attempts never exceed maxAttempts, sent is final", () => {
      fc.assert(
        fc.property(commands(1), fc.integer({ min: 1, max: 5 }), (script, maxAttempts) => {
          const policy = { ...TEST_POLICY, maxAttempts };
          const events = play(script, 1, policy);
          // with one sender, nothing is ever sent late
          expect(wasSentLate(events)).toBe(false);
          const sent = events.findIndex((e) => e.type === "NotificationSent");
          if (sent >= 0) expect(events.slice(sent + 1)).toEqual([]);
        }),
        { numRuns: 500 },
      );
      expect([...seen].sort()).toEqual(["dead", "failed", "pending", "sent"]);
    });

    it("senders whose leases lapse: one send counts, a late sent beats dead, no outcome after sent", () => {
      fc.assert(
        fc.property(commands(3), fc.integer({ min: 1, max: 5 }), (script, maxAttempts) => {
          const events = play(script, 3, { ...TEST_POLICY, maxAttempts });
          expect(events.filter((e) => e.type === "NotificationSent").length).toBeLessThanOrEqual(1);
          const sent = events.findIndex((e) => e.type === "NotificationSent");
          if (sent >= 0) expect(events.slice(sent + 1)).toEqual([]);
        }),
        { numRuns: 500 },
      );
      expect(seen).toContain("late sent");
    });
  });
});
