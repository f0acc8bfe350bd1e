/**
 * Names that cross a process boundary — HTTP headers, broadcast events — in one place, so that
 * producers and consumers can never spell them differently. Metric names have their own module,
 * lib/metrics/metric-names.ts.
 */

/** HTTP headers ordermesh reads or writes. */
export const HEADERS = {
  /** Client-chosen key that makes a POST safe to retry (IETF draft "The Idempotency-Key HTTP Header Field"). */
  idempotencyKey: "idempotency-key",
  /** Set on a response replayed from the idempotency store. */
  idempotentReplayed: "idempotent-replayed",
  /** Request id, accepted from the client or generated, echoed on every response. */
  requestId: "x-request-id",
  /** W3C trace context. */
  traceparent: "traceparent",
  /** HMAC signature of a payment-provider webhook: `t=<unix seconds>,v1=<hex>`. */
  pspSignature: "psp-signature",
} as const;

/** Moleculer events broadcast between nodes (not domain events: those go through the outbox). */
export const BROADCASTS = {
  /** A circuit breaker changed state; payload `BreakerStateChange` (lib/breaker.ts). */
  breakerStateChanged: "breaker.stateChanged",
} as const;

/** Roles a principal may hold (DESIGN §6). */
export const ROLES = ["customer", "admin"] as const;
export type Role = (typeof ROLES)[number];
