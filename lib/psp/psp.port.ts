/**
 * The payment-provider port: what ordermesh asks of a payment provider (a Stripe-like subset:
 * payment intents charged under an idempotency key, refunds, signed webhook events) and how each
 * answer maps onto the payment aggregate's commands (models/payment.ts).
 *
 * Contract every adapter honours (test/conformance/psp.conformance.spec.ts):
 * - `createPaymentIntent` with a key already used for the same request answers what it answered
 *   the first time and charges once; a card decline is the `declined` result, not an error;
 * - `createRefund` likewise under its key; a refund beyond what was captured is refused;
 * - failures are typed by `code`: `PSP_UNAVAILABLE` (retryable; `data.outcomeUnknown` false only
 *   when the provider certainly did nothing), `PSP_REJECTED` (a refusal; the same request will not
 *   succeed), `BREAKER_OPEN` (nothing was sent);
 * - the outcome of an accepted charge arrives later as a webhook event (`payment_intent.succeeded`,
 *   `payment_intent.payment_failed`, `charge.refunded`) and can be read with `getPaymentIntent`.
 *
 * Adapters: lib/psp/psp.http.adapter.ts (HTTP; production and the shipped simulator,
 * lib/psp/psp.simulator.ts, which speaks the same API).
 */
import { OrdermeshError } from "../errors";
import type { Money } from "../../models/money";
import type { CallFailure, ChargeOutcome, ProviderIntent, ProviderRefund } from "../../models/payment";

/** A payment intent as the provider returns it. */
export interface PaymentIntent {
  id: string;
  object: "payment_intent";
  /** `processing` → `succeeded`; a decline leaves it in `requires_payment_method`. */
  status: "processing" | "succeeded" | "requires_payment_method" | "canceled";
  /** Integer minor units. */
  amount: number;
  currency: string;
  payment_method: string;
  metadata: Record<string, string>;
  /** Unix seconds. */
  created: number;
  /** Why the last attempt to pay failed (declines). */
  last_payment_error?: ProviderError;
}

/** A refund as the provider returns it. */
export interface Refund {
  id: string;
  object: "refund";
  status: "succeeded" | "pending" | "failed";
  amount: number;
  currency: string;
  payment_intent: string;
  created: number;
}

/** The `error` object of a provider's error answer. */
export interface ProviderError {
  type: string;
  code?: string;
  decline_code?: string;
  message?: string;
  payment_intent?: PaymentIntent;
  [field: string]: unknown;
}

/** A webhook event as the provider posts it. */
export interface PspEvent<T = PaymentIntent | Refund> {
  id: string;
  type: string;
  /** Unix seconds. */
  created: number;
  data: { object: T };
}

/** What creating a payment intent led to. */
export type ChargeResult =
  | { outcome: "processing" | "succeeded"; intent: PaymentIntent }
  | { outcome: "declined"; declineCode: string; message: string; intent?: PaymentIntent };

export interface CreatePaymentIntentRequest {
  /** Makes a retried create safe: the same key always yields the same intent. */
  idempotencyKey: string;
  amount: Money;
  paymentMethod: string;
  metadata?: Record<string, string>;
}

export interface CreateRefundRequest {
  idempotencyKey: string;
  paymentIntentId: string;
  /** Defaults to what remains of the payment. */
  amount?: Money;
}

/** The provider refused the request (4xx other than a decline); retrying the same request cannot help. */
export class PspRequestError extends OrdermeshError {
  constructor(message: string, data: { status: number; error: ProviderError | undefined; path: string }) {
    super("PSP_REJECTED", message, { retryable: false, data });
  }
}

/**
 * The provider could not be reached or failed (5xx, 429, network, timeout). `data.outcomeUnknown` is
 * false only when the request certainly did nothing (429 and 503 say so, a refused connection never
 * delivered it); after a timeout, a reset or another 5xx the provider may have acted on it.
 */
export class PspUnavailableError extends OrdermeshError {
  constructor(message: string, data: Record<string, unknown> & { outcomeUnknown: boolean }, cause?: unknown) {
    super("PSP_UNAVAILABLE", message, { retryable: true, data, cause });
  }
}

/** The calls the payments service makes of a provider. */
export interface PaymentProvider {
  /** Charge: `processing` (confirmation follows by webhook), `succeeded`, or `declined`. */
  createPaymentIntent(request: CreatePaymentIntentRequest): Promise<ChargeResult>;
  /** The intent as the provider holds it now (the poller's question). */
  getPaymentIntent(id: string): Promise<PaymentIntent>;
  /** Give (part of) a succeeded intent back. */
  createRefund(request: CreateRefundRequest): Promise<Refund>;
}

// ── provider answers as the payment aggregate's commands ───────────────────────────────────────

/** A failed call as the aggregate sees it: nothing sent, no usable answer, or a refusal. */
export function callFailureOf(err: unknown): CallFailure {
  const { code, message, data } = (err ?? {}) as { code?: unknown; message?: unknown; data?: unknown };
  const error = typeof message === "string" ? message : String(err);
  if (code === "BREAKER_OPEN") return { kind: "not-sent", error };
  if (code === "PSP_REJECTED") return { kind: "rejected", error };
  // the provider may have acted on it unless it said it did not (429, 503) or never got it (refused)
  const outcomeUnknown = (data as { outcomeUnknown?: unknown } | null | undefined)?.outcomeUnknown;
  return { kind: "unanswered", error, mayHaveActed: outcomeUnknown !== false };
}

/** What a charge request came to: its result, or the failure of the call. */
export function chargeOutcomeOf(answer: { result: ChargeResult } | { error: unknown }): ChargeOutcome {
  if ("error" in answer) return callFailureOf(answer.error);
  const { result } = answer;
  if (result.outcome === "declined")
    return {
      kind: "declined",
      reason: result.message,
      declineCode: result.declineCode,
      ...(result.intent === undefined ? {} : { providerPaymentId: result.intent.id }),
    };
  return { kind: result.outcome, providerPaymentId: result.intent.id };
}

/** The provider's intent as the aggregate reads it. */
export function providerIntentOf(intent: PaymentIntent): ProviderIntent {
  const error = intent.last_payment_error;
  const code = error?.decline_code ?? error?.code;
  return {
    id: intent.id,
    status: intent.status,
    ...(error === undefined
      ? {}
      : {
          failure: {
            ...(error.message === undefined ? {} : { message: error.message }),
            ...(code === undefined ? {} : { code }),
          },
        }),
  };
}

/** The provider's refund as the aggregate reads it. */
export function providerRefundOf(refund: Refund): ProviderRefund {
  return { id: refund.id, amountMinor: refund.amount };
}
