/**
 * The event catalog (README, "Events: outbox and inbox"; docs/outbox.md): the envelope every event travels in, the v1 event types and the
 * schema of each payload. Validated when an event is published (outbox) and when it is consumed
 * (inbox). A breaking change to a payload is a new version, added beside the old one.
 */
import {
  array,
  integer,
  isoTimestamp,
  literal,
  object,
  optional,
  string,
  type Infer,
  type Schema,
  type SchemaIssue,
} from "./schema";
import { SKU_PATTERN } from "./inventory";

/** Money on the wire: integer minor units and an ISO 4217 code. */
export const moneySchema = object({
  minor: integer({ min: 0 }),
  currency: string({ pattern: /^[A-Z]{3}$/ }),
});

const id = string({ minLength: 1, maxLength: 128 });
const sku = string({ pattern: SKU_PATTERN });

/** Payload schemas by event type and version. */
export const EVENT_CATALOG = {
  "order.created": {
    1: object({
      orderId: id,
      customerId: id,
      items: array(object({ sku, quantity: integer({ min: 1, max: 1000 }), unitPrice: moneySchema }), {
        minItems: 1,
        maxItems: 100,
      }),
      total: moneySchema,
      paymentMethod: string({ minLength: 1, maxLength: 64 }),
      paymentDueAt: isoTimestamp(),
    }),
  },
  "order.paid": {
    1: object({ orderId: id, customerId: id, paymentId: id, total: moneySchema }),
  },
  "order.cancelled": {
    1: object({
      orderId: id,
      customerId: id,
      reason: literal("payment_failed", "payment_timeout", "customer_request", "admin_request"),
      previousStatus: literal("PENDING_PAYMENT", "PAID"),
      total: moneySchema,
    }),
  },
  "payment.captured": {
    1: object({ paymentId: id, orderId: id, customerId: id, amount: moneySchema, providerPaymentId: id }),
  },
  "payment.failed": {
    1: object({
      paymentId: id,
      orderId: id,
      customerId: id,
      reason: string({ minLength: 1, maxLength: 500 }),
      declineCode: optional(string({ maxLength: 64 })),
    }),
  },
  "payment.refunded": {
    1: object({ paymentId: id, orderId: id, customerId: id, amount: moneySchema, refundId: id }),
  },
} as const satisfies Record<string, Record<number, Schema<unknown>>>;

export type EventType = keyof typeof EVENT_CATALOG;
export const EVENT_TYPES = Object.keys(EVENT_CATALOG) as EventType[];

/** The payload of the latest (v1) version of an event type. */
export type PayloadOf<T extends EventType> = Infer<(typeof EVENT_CATALOG)[T][1]>;

/** Every event, on the wire and in the outbox. `id` is the outbox row id and the dedupe key. */
export interface EventEnvelope<T extends EventType = EventType> {
  id: string;
  type: T;
  version: number;
  /** ISO 8601 UTC. */
  occurredAt: string;
  aggregateType: string;
  aggregateId: string;
  /** W3C trace context of the producing span. */
  traceparent?: string;
  payload: PayloadOf<T>;
}

/** Subject of an event type on the bus: `events.<type>`. */
export function subjectOf(type: EventType): string {
  return `events.${type}`;
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** Whether `value` has the form of a W3C `traceparent` header, as the envelope requires. */
export function isTraceparent(value: unknown): value is string {
  return typeof value === "string" && TRACEPARENT.test(value);
}

const envelopeShape = object({
  id: string({ minLength: 1, maxLength: 128 }),
  type: literal(...EVENT_TYPES),
  version: integer({ min: 1, max: 1000 }),
  occurredAt: isoTimestamp(),
  aggregateType: string({ minLength: 1, maxLength: 64 }),
  aggregateId: string({ minLength: 1, maxLength: 128 }),
  traceparent: optional(string({ pattern: TRACEPARENT })),
  // checked against the catalog below
  payload: { describe: { type: "object" }, check: () => [] } as Schema<unknown>,
});

/** Problems with an envelope, its type, its version and its payload; none → a valid `EventEnvelope`. */
export function envelopeIssues(value: unknown): SchemaIssue[] {
  const issues = envelopeShape.check(value);
  if (issues.length > 0) return issues;
  const envelope = value as { type: EventType; version: number; payload: unknown };
  const versions = EVENT_CATALOG[envelope.type] as Record<number, Schema<unknown> | undefined>;
  const schema = versions[envelope.version];
  if (schema === undefined)
    return [{ path: "version", message: `${envelope.type} has no version ${envelope.version}` }];
  return schema.check(envelope.payload, "payload");
}

export function isEventEnvelope(value: unknown): value is EventEnvelope {
  return envelopeIssues(value).length === 0;
}
