/**
 * Names that cross a process boundary — HTTP headers, broadcast events — in one place, so that
 * producers and consumers can never spell them differently. Metric names have their own module,
 * lib/metrics/metric-names.ts.
 */

/** HTTP headers ordermesh reads or writes, lower-case as node:http hands them over (names are case-insensitive). */
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
  /** `Bearer <JWT>` credentials of the caller. */
  authorization: "authorization",
  /** Challenge sent with a 401: how to authenticate. */
  wwwAuthenticate: "www-authenticate",
  /** Media type of a body. */
  contentType: "content-type",
  /** Length of a body in bytes. */
  contentLength: "content-length",
  /** Chunked (or otherwise encoded) framing of a body without a length. */
  transferEncoding: "transfer-encoding",
  /** Set to `close` on an answer after which the connection ends. */
  connection: "connection",
  /** Methods a path serves, sent with a 405. */
  allow: "allow",
  /** Client addresses added by proxies, read only behind trusted ones. */
  forwardedFor: "x-forwarded-for",
  /** Where a created resource lives. */
  location: "location",
  /** Seconds to wait before retrying (429, 503). */
  retryAfter: "retry-after",
  /** What is left of a rate-limit quota (IETF draft "RateLimit header fields for HTTP"). */
  rateLimit: "ratelimit",
  /** The rate-limit quota of a class of request (same draft). */
  rateLimitPolicy: "ratelimit-policy",
  /** The method a CORS preflight asks about. */
  accessControlRequestMethod: "access-control-request-method",
  /** Caching rules of an answer. */
  cacheControl: "cache-control",
  /** Where an answer may load content from, and who may frame it. */
  contentSecurityPolicy: "content-security-policy",
  /** `nosniff`: the declared content type is the only one. */
  contentTypeOptions: "x-content-type-options",
  /** Whether a page may be framed (older browsers; CSP frame-ancestors for newer ones). */
  frameOptions: "x-frame-options",
  /** How much of the URL a browser passes on as the referrer. */
  referrerPolicy: "referrer-policy",
} as const;

/** Moleculer events broadcast between nodes (not domain events: those go through the outbox). */
export const BROADCASTS = {
  /** A circuit breaker changed state; payload `BreakerStateChange` (lib/breaker.ts). */
  breakerStateChanged: "breaker.stateChanged",
} as const;

/** Roles a principal may hold (README, "HTTP API (v1)"). */
export const ROLES = ["customer", "admin"] as const;
export type Role = (typeof ROLES)[number];
