/**
 * Builders for payments in tests: `aPayment().forAmount(4200).captured().build()`. Each stage is
 * reached through the aggregate's own transitions, never by writing a state.
 */
import { money } from "../../models/money";
import { DEFAULT_RETRY_POLICY, Payment, type PaymentRetryPolicy } from "../../models/payment";

export const T0 = new Date("2026-11-20T10:00:00.000Z");

/** `T0` plus `ms`. */
export function at(ms: number): Date {
  return new Date(T0.getTime() + ms);
}

/** A retry policy with the jitter fixed at its midpoint, so delays are exact. */
export function aPolicy(overrides: Partial<PaymentRetryPolicy> = {}): PaymentRetryPolicy {
  return { ...DEFAULT_RETRY_POLICY, random: () => 0.5, ...overrides };
}

export const PROVIDER_ID = "pi_1";

type Stage = "pending" | "charging" | "processing" | "captured" | "refunding" | "failed" | "cancelled";

class PaymentBuilder {
  private id = "pay-1";
  private orderId = "ord-1";
  private customerId = "cus-1";
  private minor = 2599;
  private currency = "USD";
  private paymentMethod = "pm_card_visa";
  private traceparent: string | undefined;
  private stage: Stage = "pending";
  private cancelRequested = false;

  withId(id: string): this {
    this.id = id;
    return this;
  }

  forOrder(orderId: string, customerId = this.customerId): this {
    this.orderId = orderId;
    this.customerId = customerId;
    return this;
  }

  forAmount(minor: number, currency = this.currency): this {
    this.minor = minor;
    this.currency = currency;
    return this;
  }

  paidWith(paymentMethod: string): this {
    this.paymentMethod = paymentMethod;
    return this;
  }

  tracedBy(traceparent: string): this {
    this.traceparent = traceparent;
    return this;
  }

  /** A charge request is out at the provider. */
  charging(): this {
    this.stage = "charging";
    return this;
  }

  /** Accepted by the provider, awaiting its confirmation. */
  processing(): this {
    this.stage = "processing";
    return this;
  }

  captured(): this {
    this.stage = "captured";
    return this;
  }

  /** Captured, then its order cancelled. */
  refunding(): this {
    this.stage = "refunding";
    return this;
  }

  failed(): this {
    this.stage = "failed";
    return this;
  }

  /** Cancelled before any charge. */
  cancelled(): this {
    this.stage = "cancelled";
    return this;
  }

  /** Its order was cancelled while the payment was charging or processing. */
  withCancellationRequested(): this {
    this.cancelRequested = true;
    return this;
  }

  build(): Payment {
    const payment = Payment.create({
      id: this.id,
      orderId: this.orderId,
      customerId: this.customerId,
      amount: money(this.minor, this.currency),
      paymentMethod: this.paymentMethod,
      now: T0,
      ...(this.traceparent === undefined ? {} : { traceparent: this.traceparent }),
    });
    const policy = aPolicy();
    const step = at(1);
    switch (this.stage) {
      case "pending":
        break;
      case "charging":
        payment.startCharge(step);
        break;
      case "processing":
        payment.startCharge(step);
        payment.recordChargeOutcome({ kind: "processing", providerPaymentId: PROVIDER_ID }, step, policy);
        break;
      case "captured":
      case "refunding":
        payment.startCharge(step);
        payment.recordChargeOutcome({ kind: "succeeded", providerPaymentId: PROVIDER_ID }, step, policy);
        if (this.stage === "refunding") payment.requestCancellation(step);
        break;
      case "failed":
        payment.startCharge(step);
        payment.recordChargeOutcome(
          { kind: "declined", reason: "Your card was declined.", declineCode: "generic_decline" },
          step,
          policy,
        );
        break;
      case "cancelled":
        payment.requestCancellation(step);
        break;
    }
    if (this.cancelRequested) payment.requestCancellation(step);
    return payment;
  }
}

export function aPayment(): PaymentBuilder {
  return new PaymentBuilder();
}
