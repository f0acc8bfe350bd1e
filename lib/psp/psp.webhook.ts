/**
 * A provider webhook as the payments service receives it (the raw body and the `Psp-Signature`
 * header, from the gateway): verified (lib/psp/psp.signature.ts), parsed, and translated into the
 * payment aggregate's commands. docs/payments.md, "Webhooks".
 */
import type { Payment, PaymentEvent } from "../../models/payment";
import { verifySignature, type SignatureFailure } from "./psp.signature";
import { providerIntentOf, providerRefundOf, type PspEvent } from "./psp.port";

/** Provider event types the payments service acts on; others are acknowledged and ignored. */
export const APPLIED_EVENT_TYPES: ReadonlySet<string> = new Set([
  "payment_intent.succeeded",
  "payment_intent.payment_failed",
  "charge.refunded",
]);

export type WebhookReading =
  | { ok: true; event: PspEvent }
  | { ok: false; code: "INVALID_SIGNATURE"; reason: SignatureFailure }
  | { ok: false; code: "INVALID_WEBHOOK"; why: string };

export interface ReadWebhookOptions {
  body: string;
  signature: string | undefined;
  /** Every secret currently accepted (more than one while a secret is rolled). */
  secrets: readonly string[];
  toleranceSeconds: number;
  /** Now, in ms since the epoch (the service's clock). */
  now: number;
}

/** Check the signature, then the shape `{ id, type, data: { object: { id, object } } }`. */
export function readWebhook(options: ReadWebhookOptions): WebhookReading {
  const verdict = verifySignature({
    header: options.signature,
    rawBody: options.body,
    secrets: options.secrets,
    toleranceSeconds: options.toleranceSeconds,
    now: Math.floor(options.now / 1000),
  });
  if (!verdict.ok) return { ok: false, code: "INVALID_SIGNATURE", reason: verdict.code };
  let value: unknown;
  try {
    value = JSON.parse(options.body);
  } catch {
    return { ok: false, code: "INVALID_WEBHOOK", why: "the body is not JSON" };
  }
  const event = value as Partial<PspEvent> | null;
  const object = (event?.data as { object?: unknown } | undefined)?.object as
    { id?: unknown; object?: unknown } | undefined;
  if (
    typeof event !== "object" ||
    event === null ||
    typeof event.id !== "string" ||
    event.id.length === 0 ||
    event.id.length > 255 ||
    typeof event.type !== "string" ||
    typeof object !== "object" ||
    object === null ||
    typeof object.id !== "string" ||
    typeof object.object !== "string"
  ) {
    return {
      ok: false,
      code: "INVALID_WEBHOOK",
      why: "the body is not a provider event ({ id, type, data: { object } })",
    };
  }
  return { ok: true, event: event as PspEvent };
}

/**
 * Which payment an event is about: the `paymentId` we put in an intent's metadata, and the
 * provider's payment id (a refund names its intent).
 */
export function paymentRefOf(event: PspEvent): { paymentId?: string; providerPaymentId?: string } {
  const object = event.data.object;
  const paymentId = object.object === "payment_intent" ? object.metadata?.paymentId : undefined;
  const providerPaymentId = object.object === "refund" ? object.payment_intent : object.id;
  return {
    ...(typeof paymentId === "string" && paymentId.length > 0 ? { paymentId } : {}),
    ...(typeof providerPaymentId === "string" && providerPaymentId.length > 0 ? { providerPaymentId } : {}),
  };
}

/** Apply an event the service acts on to its payment; returns the events raised. */
export function applyProviderEvent(payment: Payment, event: PspEvent, now: Date): PaymentEvent[] {
  const object = event.data.object;
  if (event.type === "charge.refunded" && object.object === "refund")
    return payment.refunded(providerRefundOf(object), now);
  if (object.object === "payment_intent") return payment.applyIntent(providerIntentOf(object), now);
  return [];
}
