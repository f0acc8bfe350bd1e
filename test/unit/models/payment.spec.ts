import fc from "fast-check";
import {
  PAYMENT_STATUSES,
  Payment,
  retryDelay,
  type CallFailure,
  type ChargeOutcome,
  type PaymentEvent,
  type PaymentStatus,
  type RefundOutcome,
} from "../../../models/payment";
import { PROVIDER_ID, T0, aPayment, aPolicy, at } from "../../builders/payment.builder";

const policy = aPolicy({
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  webhookWaitMs: 5_000,
  pollBackoffMaxMs: 60_000,
  maxRefundRejections: 3,
});
const now = at(1000);
const iso = (ms: number): string => at(ms).toISOString();
const statuses = (p: Payment): PaymentStatus[] => p.toState().history.map((h) => h.status);
const identity = { paymentId: "pay-1", orderId: "ord-1", customerId: "cus-1" };

const unanswered = (mayHaveActed: boolean): CallFailure => ({
  kind: "unanswered",
  error: "no answer within 4000 ms",
  mayHaveActed,
});
const notSent: CallFailure = { kind: "not-sent", error: "breaker open" };
const rejected: CallFailure = { kind: "rejected", error: "provider refused (400 charge_not_refundable)" };

describe("payment aggregate", () => {
  describe("creation", () => {
    it("is created pending, due at once, with its first history entry", () => {
      const state = aPayment()
        .forAmount(4200)
        .tracedBy("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .build()
        .toState();
      expect(state).toMatchObject({
        id: "pay-1",
        orderId: "ord-1",
        status: "pending",
        amount: { minor: 4200, currency: "USD" },
        cancelRequested: false,
        attempts: 0,
        nextAttemptAt: T0.toISOString(),
        version: 0,
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      });
      expect(state.history).toEqual([{ status: "pending", at: T0.toISOString() }]);
    });

    it("makes a cancelled placeholder for an order cancelled before its payment existed", () => {
      const placeholder = Payment.forCancelledOrder({
        id: "pay-2",
        orderId: "ord-2",
        customerId: "cus-2",
        amount: { minor: 100, currency: "EUR" },
        now: T0,
      });
      expect(placeholder.toState()).toMatchObject({
        status: "cancelled",
        paymentMethod: "none",
        cancelRequested: true,
      });
      expect(placeholder.nextAttemptAt).toBeUndefined();
      expect(() => placeholder.startCharge(now)).toThrow(
        expect.objectContaining({ code: "ILLEGAL_PAYMENT_TRANSITION" }),
      );
    });

    it.each([
      ["a fractional amount", { amount: { minor: 1.5, currency: "USD" as const } }],
      ["a negative amount", { amount: { minor: -1, currency: "USD" as const } }],
      ["no order", { orderId: "" }],
      ["no payment method", { paymentMethod: "" }],
    ])("refuses a payment with %s", (_label, override) => {
      expect(() =>
        Payment.create({
          id: "p",
          orderId: "o",
          customerId: "c",
          amount: { minor: 100, currency: "USD" },
          paymentMethod: "pm_card_visa",
          now: T0,
          ...override,
        }),
      ).toThrow(expect.objectContaining({ code: "INVALID_PAYMENT" }));
    });
  });

  describe("charging", () => {
    it("waits for the webhook once the provider accepted the charge", () => {
      const payment = aPayment().charging().build();
      const events = payment.recordChargeOutcome(
        { kind: "processing", providerPaymentId: "pi_9" },
        now,
        policy,
      );
      expect(events).toEqual([]);
      expect(payment.toState()).toMatchObject({
        status: "processing",
        providerPaymentId: "pi_9",
        chargeInFlight: false,
        chargeUncertain: false,
        pollAttempts: 0,
        nextAttemptAt: iso(1000 + 5000),
      });
    });

    it("captures at once and raises payment.captured", () => {
      const payment = aPayment().forAmount(4200).charging().build();
      const events = payment.recordChargeOutcome(
        { kind: "succeeded", providerPaymentId: "pi_9" },
        now,
        policy,
      );
      expect(events).toEqual([
        {
          type: "payment.captured",
          payload: { ...identity, amount: { minor: 4200, currency: "USD" }, providerPaymentId: "pi_9" },
        },
      ]);
      expect(payment.status).toBe("captured");
      expect(payment.nextAttemptAt).toBeUndefined();
      expect(statuses(payment)).toEqual(["pending", "captured"]);
    });

    it("fails a declined charge with its reason and decline code", () => {
      const payment = aPayment().charging().build();
      const events = payment.recordChargeOutcome(
        {
          kind: "declined",
          reason: "Your card was declined.",
          declineCode: "generic_decline",
          providerPaymentId: "pi_d",
        },
        now,
        policy,
      );
      expect(events).toEqual([
        {
          type: "payment.failed",
          payload: { ...identity, reason: "Your card was declined.", declineCode: "generic_decline" },
        },
      ]);
      expect(payment.toState()).toMatchObject({
        status: "failed",
        declineCode: "generic_decline",
        failureReason: "Your card was declined.",
        providerPaymentId: "pi_d",
      });
      expect(payment.nextAttemptAt).toBeUndefined();
    });

    it("clips what a failure says to what the event allows", () => {
      const payment = aPayment().charging().build();
      const [event] = payment.recordChargeOutcome(
        { kind: "declined", reason: "x".repeat(900), declineCode: "c".repeat(100) },
        now,
        policy,
      );
      expect(event?.type).toBe("payment.failed");
      const payload = event?.payload as { reason: string; declineCode: string };
      expect(payload.reason).toHaveLength(500);
      expect(payload.declineCode).toHaveLength(64);
      const blank = aPayment().charging().build();
      expect(
        blank.recordChargeOutcome({ kind: "declined", reason: "" }, now, policy)[0]?.payload,
      ).toMatchObject({
        reason: "payment failed",
      });
    });

    it("fails a charge the provider refused, without a decline code", () => {
      const payment = aPayment().charging().build();
      const events = payment.recordChargeOutcome(rejected, now, policy);
      expect(events).toEqual([
        {
          type: "payment.failed",
          payload: { ...identity, reason: `the provider refused the charge: ${rejected.error}` },
        },
      ]);
    });

    it("retries an unanswered charge with full-jitter backoff, counting attempts", () => {
      const payment = aPayment().charging().build();
      payment.recordChargeOutcome(unanswered(true), now, policy);
      expect(payment.toState()).toMatchObject({
        status: "pending",
        attempts: 1,
        chargeInFlight: false,
        chargeUncertain: true,
        lastError: "no answer within 4000 ms",
        // attempt 1: ceiling 500 ms, jitter at its midpoint
        nextAttemptAt: iso(1000 + 250),
      });
      payment.startCharge(at(2000));
      payment.recordChargeOutcome(unanswered(false), at(2000), policy);
      // attempt 2: ceiling 1000 ms; still uncertain: the first attempt may have charged
      expect(payment.toState()).toMatchObject({
        attempts: 2,
        chargeUncertain: true,
        nextAttemptAt: iso(2000 + 500),
      });
    });

    it("asks again soon, without counting an attempt, when the breaker kept the call from going out", () => {
      const payment = aPayment().charging().build();
      payment.recordChargeOutcome(notSent, now, policy);
      expect(payment.toState()).toMatchObject({
        status: "pending",
        attempts: 0,
        chargeUncertain: false,
        nextAttemptAt: iso(1000 + 500 + 250),
      });
    });

    it("counts a charge left in flight by a crash as uncertain", () => {
      const payment = aPayment().charging().build();
      payment.startCharge(at(20_000));
      expect(payment.toState()).toMatchObject({ chargeInFlight: true, chargeUncertain: true });
      payment.recordChargeOutcome(unanswered(false), at(20_001), policy);
      expect(payment.toState().chargeUncertain).toBe(true);
    });
  });

  describe("confirmation: webhooks and polls", () => {
    it("captures on a succeeded intent, and a capture reported again changes nothing", () => {
      const payment = aPayment().processing().build();
      expect(payment.applyIntent({ id: PROVIDER_ID, status: "succeeded" }, now)).toHaveLength(1);
      const before = payment.toState();
      expect(payment.applyIntent({ id: PROVIDER_ID, status: "succeeded" }, at(2000))).toEqual([]);
      expect(payment.capture(PROVIDER_ID, at(3000))).toEqual([]);
      expect(payment.toState()).toEqual(before);
      expect(statuses(payment)).toEqual(["pending", "processing", "captured"]);
    });

    it("refuses a second intent for a captured payment", () => {
      const payment = aPayment().captured().build();
      const before = payment.toState();
      expect(() => payment.capture("pi_other", now)).toThrow(
        expect.objectContaining({ code: "PAYMENT_ALREADY_CAPTURED" }),
      );
      expect(payment.toState()).toEqual(before);
    });

    it("fails on a declined intent with the provider's reason, once", () => {
      const payment = aPayment().processing().build();
      const events = payment.applyIntent(
        {
          id: PROVIDER_ID,
          status: "requires_payment_method",
          failure: { message: "declined", code: "insufficient_funds" },
        },
        now,
      );
      expect(events).toEqual([
        {
          type: "payment.failed",
          payload: { ...identity, reason: "declined", declineCode: "insufficient_funds" },
        },
      ]);
      expect(payment.applyIntent({ id: PROVIDER_ID, status: "canceled" }, at(2000))).toEqual([]);
    });

    it("polls again later, doubling the wait up to its ceiling, while the intent is processing", () => {
      const payment = aPayment().processing().build();
      payment.recordPoll({ intent: { id: PROVIDER_ID, status: "processing" } }, now, policy);
      expect(payment.toState()).toMatchObject({
        status: "processing",
        pollAttempts: 1,
        nextAttemptAt: iso(1000 + 10_000),
      });
      payment.recordPoll({ failure: unanswered(false) }, at(2000), policy);
      expect(payment.toState()).toMatchObject({
        pollAttempts: 2,
        nextAttemptAt: iso(2000 + 20_000),
        lastError: "no answer within 4000 ms",
      });
      for (let i = 0; i < 5; i++) payment.recordPoll({ failure: notSent }, at(3000), policy);
      expect(payment.nextAttemptAt).toBe(at(3000 + 60_000).getTime());
    });

    it("settles a processing payment from a poll's answer", () => {
      const payment = aPayment().processing().build();
      const events = payment.recordPoll({ intent: { id: PROVIDER_ID, status: "succeeded" } }, now, policy);
      expect(events.map((e) => e.type)).toEqual(["payment.captured"]);
      expect(payment.toState().pollAttempts).toBe(0);
    });
  });

  describe("cancellation", () => {
    it("cancels a payment never sent to the provider", () => {
      const payment = aPayment().build();
      expect(payment.requestCancellation(now)).toEqual([]);
      expect(payment.toState()).toMatchObject({ status: "cancelled", cancelRequested: true });
      expect(payment.nextAttemptAt).toBeUndefined();
    });

    it.each([
      ["a charge in flight", aPayment().charging()],
      ["a charge whose outcome is unknown", aPayment().charging()],
      ["a charge awaiting confirmation", aPayment().processing()],
    ])("notes the cancellation of %s, and refunds what it captures", (label, builder) => {
      const payment = builder.build();
      if (label.includes("unknown")) payment.recordChargeOutcome(unanswered(true), now, policy);
      const status = payment.status;
      payment.requestCancellation(at(2000));
      expect(payment.toState()).toMatchObject({ status, cancelRequested: true });

      if (status === "pending") payment.startCharge(at(3000));
      const events =
        status === "pending"
          ? payment.recordChargeOutcome(
              { kind: "succeeded", providerPaymentId: PROVIDER_ID },
              at(4000),
              policy,
            )
          : payment.applyIntent({ id: PROVIDER_ID, status: "succeeded" }, at(4000));
      expect(events.map((e) => e.type)).toEqual(["payment.captured"]);
      expect(payment.status).toBe("refunding");
      expect(payment.nextAttemptAt).toBe(at(4000).getTime());
      expect(statuses(payment).slice(-2)).toEqual(["captured", "refunding"]);
    });

    it("cancels a payment whose failed charge certainly did nothing", () => {
      const payment = aPayment().charging().withCancellationRequested().build();
      payment.recordChargeOutcome(unanswered(false), now, policy);
      expect(payment.status).toBe("cancelled");
    });

    it("keeps asking about a cancelled payment whose charge may have landed", () => {
      const payment = aPayment().charging().withCancellationRequested().build();
      payment.recordChargeOutcome(unanswered(true), now, policy);
      expect(payment.toState()).toMatchObject({
        status: "pending",
        cancelRequested: true,
        chargeUncertain: true,
      });
    });

    it("refunds a captured payment", () => {
      const payment = aPayment().captured().build();
      expect(payment.requestCancellation(now)).toEqual([]);
      expect(payment.toState()).toMatchObject({ status: "refunding", cancelRequested: true, attempts: 0 });
      expect(payment.nextAttemptAt).toBe(now.getTime());
    });

    it("refunds a capture that lands on a cancelled payment", () => {
      const payment = aPayment().cancelled().build();
      const events = payment.capture("pi_late", now);
      expect(events.map((e) => e.type)).toEqual(["payment.captured"]);
      expect(payment.toState()).toMatchObject({ status: "refunding", providerPaymentId: "pi_late" });
    });

    it.each([
      ["failed", aPayment().failed()],
      ["refunding", aPayment().refunding()],
      ["cancelled", aPayment().cancelled()],
    ])("changes nothing when the payment is %s", (_label, builder) => {
      const payment = builder.build();
      const before = payment.toState();
      expect(payment.requestCancellation(now)).toEqual([]);
      expect(payment.toState()).toEqual(before);
    });
  });

  describe("refunds", () => {
    it("records the refund and raises payment.refunded with the provider's amount", () => {
      const payment = aPayment().forAmount(3100).refunding().build();
      const events = payment.recordRefundOutcome(
        { kind: "refunded", id: "re_1", amountMinor: 3100 },
        now,
        policy,
      );
      expect(events).toEqual([
        {
          type: "payment.refunded",
          payload: { ...identity, amount: { minor: 3100, currency: "USD" }, refundId: "re_1" },
        },
      ]);
      expect(payment.toState()).toMatchObject({ status: "refunded", refundId: "re_1" });
      expect(statuses(payment).slice(-3)).toEqual(["captured", "refunding", "refunded"]);
      expect(payment.refunded({ id: "re_1", amountMinor: 3100 }, at(2000))).toEqual([]);
    });

    it("retries an unanswered refund, and waits longest after a refusal", () => {
      const payment = aPayment().refunding().build();
      payment.recordRefundOutcome(unanswered(true), now, policy);
      expect(payment.toState()).toMatchObject({
        status: "refunding",
        attempts: 1,
        nextAttemptAt: iso(1000 + 250),
      });
      payment.recordRefundOutcome(rejected, at(2000), policy);
      expect(payment.toState()).toMatchObject({
        attempts: 2,
        refundRejections: 1,
        nextAttemptAt: iso(2000 + 30_000),
      });
    });

    it("parks a refund refused maxRefundRejections times as refund_dead, and still takes a refund made later", () => {
      const payment = aPayment().refunding().build();
      payment.recordRefundOutcome(rejected, at(1), policy);
      payment.recordRefundOutcome(notSent, at(2), policy);
      payment.recordRefundOutcome(rejected, at(3), policy);
      expect(payment.status).toBe("refunding");
      payment.recordRefundOutcome(rejected, at(4), policy);
      expect(payment.toState()).toMatchObject({
        status: "refund_dead",
        refundRejections: 3,
        lastError: rejected.error,
      });
      expect(payment.nextAttemptAt).toBeUndefined();
      expect(payment.requestCancellation(at(5))).toEqual([]);

      const events = payment.refunded({ id: "re_manual", amountMinor: 2599 }, at(6));
      expect(events.map((e) => e.type)).toEqual(["payment.refunded"]);
      expect(statuses(payment).slice(-3)).toEqual(["refunding", "refund_dead", "refunded"]);
    });

    it("records a refund the provider reports for a captured payment", () => {
      const payment = aPayment().captured().build();
      expect(payment.refunded({ id: "re_2", amountMinor: 100 }, now)[0]?.payload).toMatchObject({
        amount: { minor: 100, currency: "USD" },
      });
      expect(statuses(payment).slice(-2)).toEqual(["refunding", "refunded"]);
    });
  });

  it.each<[string, () => Payment, (p: Payment) => unknown, string]>([
    [
      "start a charge while processing",
      () => aPayment().processing().build(),
      (p) => p.startCharge(now),
      "ILLEGAL_PAYMENT_TRANSITION",
    ],
    [
      "record a charge outcome of a captured payment",
      () => aPayment().captured().build(),
      (p) => p.recordChargeOutcome({ kind: "processing", providerPaymentId: "pi_x" }, now, policy),
      "ILLEGAL_PAYMENT_TRANSITION",
    ],
    [
      "record a poll of a pending payment",
      () => aPayment().build(),
      (p) => p.recordPoll({ failure: notSent }, now, policy),
      "ILLEGAL_PAYMENT_TRANSITION",
    ],
    [
      "record a refund outcome of a captured payment",
      () => aPayment().captured().build(),
      (p) => p.recordRefundOutcome({ kind: "refunded", id: "re", amountMinor: 1 }, now, policy),
      "ILLEGAL_PAYMENT_TRANSITION",
    ],
    [
      "refund a pending payment",
      () => aPayment().build(),
      (p) => p.requestRefund(now),
      "ILLEGAL_PAYMENT_TRANSITION",
    ],
    [
      "record a refund of a processing payment",
      () => aPayment().processing().build(),
      (p) => p.refunded({ id: "re", amountMinor: 1 }, now),
      "ILLEGAL_PAYMENT_TRANSITION",
    ],
    [
      "fail a captured payment",
      () => aPayment().captured().build(),
      (p) => p.fail("late decline", undefined, undefined, now),
      "ILLEGAL_PAYMENT_TRANSITION",
    ],
    [
      "capture a failed payment",
      () => aPayment().failed().build(),
      (p) => p.capture(PROVIDER_ID, now),
      "ILLEGAL_PAYMENT_TRANSITION",
    ],
    [
      "capture a refunded payment under another intent",
      () => aPayment().refunding().build(),
      (p) => p.capture("pi_2", now),
      "PAYMENT_ALREADY_CAPTURED",
    ],
  ])("refuses to %s with a typed error and leaves the payment unchanged", (_label, build, illegal, code) => {
    const payment = build();
    const before = payment.toState();
    expect(() => illegal(payment)).toThrow(expect.objectContaining({ name: "PaymentError", code }));
    expect(payment.toState()).toEqual(before);
  });

  it("round-trips through its stored snapshot, and snapshots are copies", () => {
    const payment = aPayment().refunding().build();
    const state = payment.toState();
    expect(Payment.fromState(JSON.parse(JSON.stringify(state))).toState()).toEqual(state);
    (state.history as unknown as unknown[]).push("tampered");
    expect(payment.toState().history).toHaveLength(3);
    expect(payment.toView()).toEqual({
      id: "pay-1",
      orderId: "ord-1",
      status: "refunding",
      amount: { minor: 2599, currency: "USD" },
      paymentMethod: "pm_card_visa",
      providerPaymentId: PROVIDER_ID,
      createdAt: T0.toISOString(),
      updatedAt: at(1).toISOString(),
      history: payment.toState().history,
    });
  });

  describe("retry policy", () => {
    it("draws full jitter under a doubling ceiling, capped, from the injected random source", () => {
      const top = aPolicy({ backoffBaseMs: 100, backoffMaxMs: 1000, random: () => 0.999 });
      expect([1, 2, 3, 4, 5, 10].map((n) => retryDelay(unanswered(true), n, top))).toEqual([
        99, 199, 399, 799, 999, 999,
      ]);
      expect(retryDelay(unanswered(true), 3, aPolicy({ backoffBaseMs: 100, random: () => 0 }))).toBe(0);
      expect(retryDelay(notSent, 7, top)).toBe(100 + 99);
      expect(retryDelay(rejected, 1, top)).toBe(1000);
    });
  });

  // ── properties over random command sequences ─────────────────────────────────────────────────

  /** One command the outside world can give a payment, in any order. */
  type Command =
    | { c: "startCharge" }
    | { c: "chargeOutcome"; outcome: ChargeOutcome }
    | { c: "poll"; answer: "processing" | "succeeded" | "declined" | "failure" }
    | { c: "webhookSucceeded"; intent: string }
    | { c: "webhookFailed"; intent: string }
    | { c: "cancelOrder" }
    | { c: "refundOutcome"; outcome: RefundOutcome }
    | { c: "webhookRefunded" };

  const intentId = fc.constantFrom("pi_1", "pi_2");
  const failure: fc.Arbitrary<CallFailure> = fc.oneof(
    fc.constant(notSent),
    fc.boolean().map(unanswered),
    fc.constant(rejected),
  );
  const chargeOutcome: fc.Arbitrary<ChargeOutcome> = fc.oneof(
    intentId.map((id) => ({ kind: "processing" as const, providerPaymentId: id })),
    intentId.map((id) => ({ kind: "succeeded" as const, providerPaymentId: id })),
    fc.constant({ kind: "declined" as const, reason: "declined", declineCode: "generic_decline" }),
    failure,
  );
  const refundOutcome: fc.Arbitrary<RefundOutcome> = fc.oneof(
    fc.constant({ kind: "refunded" as const, id: "re_1", amountMinor: 2599 }),
    failure,
  );
  const command: fc.Arbitrary<Command> = fc.oneof(
    fc.constant({ c: "startCharge" as const }),
    chargeOutcome.map((outcome) => ({ c: "chargeOutcome" as const, outcome })),
    fc
      .constantFrom("processing", "succeeded", "declined", "failure")
      .map((answer) => ({ c: "poll" as const, answer })),
    intentId.map((intent) => ({ c: "webhookSucceeded" as const, intent })),
    intentId.map((intent) => ({ c: "webhookFailed" as const, intent })),
    fc.constant({ c: "cancelOrder" as const }),
    refundOutcome.map((outcome) => ({ c: "refundOutcome" as const, outcome })),
    fc.constant({ c: "webhookRefunded" as const }),
  );

  function run(payment: Payment, cmd: Command, when: Date): PaymentEvent[] {
    switch (cmd.c) {
      case "startCharge":
        return payment.startCharge(when);
      case "chargeOutcome":
        return payment.recordChargeOutcome(cmd.outcome, when, policy);
      case "poll": {
        const id = payment.providerPaymentId ?? "pi_1";
        if (cmd.answer === "failure") return payment.recordPoll({ failure: unanswered(false) }, when, policy);
        const status = cmd.answer === "declined" ? "requires_payment_method" : cmd.answer;
        return payment.recordPoll({ intent: { id, status } }, when, policy);
      }
      case "webhookSucceeded":
        return payment.applyIntent({ id: cmd.intent, status: "succeeded" }, when);
      case "webhookFailed":
        return payment.applyIntent({ id: cmd.intent, status: "requires_payment_method" }, when);
      case "cancelOrder":
        return payment.requestCancellation(when);
      case "refundOutcome":
        return payment.recordRefundOutcome(cmd.outcome, when, policy);
      case "webhookRefunded":
        return payment.refunded({ id: "re_1", amountMinor: 2599 }, when);
    }
  }

  /** Apply `cmd`; an illegal one must throw a typed error and leave the payment exactly as it was. */
  function attempt(payment: Payment, cmd: Command, when: Date): PaymentEvent[] {
    const before = payment.toState();
    try {
      return run(payment, cmd, when);
    } catch (err) {
      expect(err).toMatchObject({ name: "PaymentError", code: expect.stringMatching(/^[A-Z_]+$/) });
      expect(payment.toState()).toEqual(before);
      return [];
    }
  }

  /**
   * What the charger does until nothing is due: charge, poll, refund, each with the next scripted
   * answer; once the script runs out the provider settles (succeeds, refuses refunds).
   */
  function settle(payment: Payment, script: Command[], events: PaymentEvent[], start: number): void {
    let step = start;
    const next = <K extends Command["c"]>(c: K): Extract<Command, { c: K }> | undefined => {
      const index = script.findIndex((cmd) => cmd.c === c);
      return index < 0 ? undefined : (script.splice(index, 1)[0] as Extract<Command, { c: K }>);
    };
    for (let guard = 0; guard < 200 && payment.nextAttemptAt !== undefined; guard++) {
      const when = at(++step * 1000);
      if (payment.status === "pending") {
        events.push(...payment.startCharge(when));
        const outcome = next("chargeOutcome")?.outcome ?? { kind: "succeeded", providerPaymentId: "pi_1" };
        events.push(...attempt(payment, { c: "chargeOutcome", outcome }, when));
      } else if (payment.status === "processing") {
        events.push(...attempt(payment, next("poll") ?? { c: "poll", answer: "succeeded" }, when));
      } else if (payment.status === "refunding") {
        const outcome = next("refundOutcome")?.outcome ?? rejected;
        events.push(...attempt(payment, { c: "refundOutcome", outcome }, when));
      }
    }
  }

  const count = (events: PaymentEvent[], type: PaymentEvent["type"]): number =>
    events.filter((e) => e.type === type).length;

  it("never captures twice, and an illegal command throws a code and changes nothing", () => {
    fc.assert(
      fc.property(fc.array(command, { maxLength: 40 }), (commands) => {
        const payment = aPayment().build();
        const events: PaymentEvent[] = [];
        commands.forEach((cmd, i) => events.push(...attempt(payment, cmd, at(i * 1000))));

        expect(count(events, "payment.captured")).toBeLessThanOrEqual(1);
        expect(count(events, "payment.refunded")).toBeLessThanOrEqual(1);
        expect(count(events, "payment.captured") + count(events, "payment.failed")).toBeLessThanOrEqual(1);
        const captured = events.find((e) => e.type === "payment.captured");
        if (captured !== undefined)
          expect(payment.providerPaymentId).toBe(
            (captured.payload as { providerPaymentId: string }).providerPaymentId,
          );
        expect(PAYMENT_STATUSES).toContain(payment.status);
        expect(statuses(payment).at(-1)).toBe(payment.status);
      }),
      { numRuns: 500 },
    );
  });

  it("ends refunded or refund_dead when its order is cancelled after a capture, whatever the order of events", () => {
    fc.assert(
      fc.property(
        fc.array(command, { maxLength: 30 }),
        fc.array(command, { maxLength: 30 }),
        fc.array(command, { maxLength: 20 }),
        (before, after, script) => {
          const payment = aPayment().build();
          const events: PaymentEvent[] = [];
          let step = 0;
          for (const cmd of before) events.push(...attempt(payment, cmd, at(++step * 1000)));
          events.push(...attempt(payment, { c: "cancelOrder" }, at(++step * 1000)));
          for (const cmd of after) events.push(...attempt(payment, cmd, at(++step * 1000)));
          settle(payment, [...script], events, step);

          const captured = count(events, "payment.captured") === 1;
          if (captured) {
            expect(["refunded", "refund_dead"]).toContain(payment.status);
          } else {
            expect(["cancelled", "failed"]).toContain(payment.status);
          }
          expect(payment.nextAttemptAt).toBeUndefined();
          expect(count(events, "payment.refunded")).toBe(payment.status === "refunded" ? 1 : 0);
        },
      ),
      { numRuns: 500 },
    );
  });
});
