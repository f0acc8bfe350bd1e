/**
 * JSON Schemas (2020-12) of what the API answers: the views the domain services return, the probe
 * answers and the error envelope. Enumerations come from the models where they live there; the
 * payment and notification statuses are owned by their services (which lib/ may not import), so a
 * unit test holds these copies equal to the originals.
 *
 * `additionalProperties: false` wherever the service builds the object field by field (a view), so
 * a field added without documentation fails the contract test; open where the shape is not ours.
 */
import { CURRENCY_EXPONENTS } from "../../../models/money";
import {
  NOTIFICATION_CHANNELS,
  NOTIFICATION_STATUSES,
  NOTIFIED_EVENT_TYPES,
} from "../../../models/notification";
import { CANCEL_REASONS, ORDER_LIMITS, ORDER_STATUSES } from "../../../models/order";
import { SKU_PATTERN } from "../../../models/inventory";
import { PAYMENT_STATUSES } from "../../../models/payment";
import type { JsonSchema } from "./openapi.types";

/** A `$ref` to one of the schemas below. */
export function schemaRef(name: SchemaName): JsonSchema {
  return ref(name);
}

const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });

const text = (description?: string): JsonSchema => ({
  type: "string",
  ...(description === undefined ? {} : { description }),
});
const instant = (description: string): JsonSchema => ({ type: "string", format: "date-time", description });
const count = (description: string): JsonSchema => ({ type: "integer", minimum: 0, description });

/** An object whose every listed property is required except `optional` ones; nothing else allowed. */
function closedObject(
  properties: Record<string, JsonSchema>,
  optional: readonly string[] = [],
  description?: string,
): JsonSchema {
  return {
    type: "object",
    ...(description === undefined ? {} : { description }),
    properties,
    required: Object.keys(properties).filter((name) => !optional.includes(name)),
    additionalProperties: false,
  };
}

const ORDER_FIELDS_DOC = "An order as its owner (or an admin) sees it.";

/** Every component schema of the document, by name. */
export const COMPONENT_SCHEMAS = {
  Money: closedObject(
    {
      minor: { type: "integer", description: "Integer minor units (cents, pence…; yen are whole)." },
      currency: { type: "string", enum: Object.keys(CURRENCY_EXPONENTS), description: "ISO 4217 code." },
    },
    [],
    "An amount: integer minor units and a currency, never a float.",
  ),
  Sku: { type: "string", pattern: SKU_PATTERN.source, description: "Stock-keeping unit." },
  OrderLine: closedObject({
    sku: ref("Sku"),
    quantity: { type: "integer", minimum: 1, maximum: ORDER_LIMITS.maxQuantity },
    unitPrice: ref("Money"),
  }),
  StatusChange: closedObject(
    {
      status: { type: "string", enum: [...ORDER_STATUSES] },
      at: instant("When the order entered this status."),
      reason: text("Why, for a cancellation."),
    },
    ["reason"],
  ),
  Order: closedObject(
    {
      id: text("Order id; the same for every retry with the same Idempotency-Key."),
      customerId: text(),
      status: { type: "string", enum: [...ORDER_STATUSES] },
      items: { type: "array", minItems: 1, maxItems: ORDER_LIMITS.maxLines, items: ref("OrderLine") },
      total: ref("Money"),
      paymentMethod: text(),
      paymentDueAt: instant("An unpaid order is cancelled (payment_timeout) after this instant."),
      paymentId: text("Set once the payment is captured."),
      cancelReason: { type: "string", enum: [...CANCEL_REASONS] },
      statusHistory: { type: "array", minItems: 1, items: ref("StatusChange") },
      createdAt: instant("Placed at."),
      updatedAt: instant("Last status change."),
    },
    ["paymentId", "cancelReason"],
    ORDER_FIELDS_DOC,
  ),
  OrderPage: closedObject({
    items: { type: "array", items: ref("Order"), description: "Newest first." },
    nextCursor: {
      type: ["string", "null"],
      description: "Pass as `cursor` for the next page; null on the last.",
    },
  }),
  Product: closedObject(
    {
      sku: ref("Sku"),
      name: text(),
      price: ref("Money"),
      available: count("Units on sale now."),
    },
    [],
    "A product as anyone sees it.",
  ),
  ProductAdmin: closedObject(
    {
      sku: ref("Sku"),
      name: text(),
      price: ref("Money"),
      available: count("Units on sale now."),
      reserved: count("Units held for unpaid orders."),
      sold: count("Units of paid orders."),
      received: count("Units ever received; available + reserved + sold = received."),
      createdAt: instant("Created at."),
      updatedAt: instant("Last change of the product or its stock."),
    },
    [],
    "A product as an admin sees it: every stock counter.",
  ),
  ProductPage: closedObject({
    rows: { type: "array", items: { oneOf: [ref("Product"), ref("ProductAdmin")] } },
    total: count("Products in the catalog."),
    page: { type: "integer", minimum: 1 },
    pageSize: { type: "integer", minimum: 1 },
    totalPages: count("Pages of this size."),
  }),
  Payment: closedObject(
    {
      id: text("Payment id, also the provider's idempotency key."),
      orderId: text(),
      status: { type: "string", enum: [...PAYMENT_STATUSES] },
      amount: ref("Money"),
      paymentMethod: text(),
      providerPaymentId: text("The provider's payment intent."),
      declineCode: text("Why the provider declined."),
      refundId: text("The provider's refund."),
      createdAt: instant("Created at."),
      updatedAt: instant("Last change."),
      history: {
        type: "array",
        items: closedObject({
          status: { type: "string", enum: [...PAYMENT_STATUSES] },
          at: instant("When the payment entered this status."),
        }),
      },
    },
    ["providerPaymentId", "declineCode", "refundId"],
  ),
  PaymentList: closedObject({
    items: { type: "array", items: ref("Payment"), description: "Oldest first." },
  }),
  Notification: closedObject(
    {
      id: text(),
      eventId: text("The event it tells about."),
      orderId: text(),
      type: { type: "string", enum: [...NOTIFIED_EVENT_TYPES] },
      channel: { type: "string", enum: [...NOTIFICATION_CHANNELS] },
      status: { type: "string", enum: [...NOTIFICATION_STATUSES] },
      subject: text("E-mail only."),
      body: text(),
      attempts: count("Sends tried so far."),
      createdAt: instant("Created at."),
      sentAt: instant("Sent at."),
    },
    ["subject", "sentAt"],
  ),
  NotificationPage: closedObject({
    items: { type: "array", items: ref("Notification"), description: "Newest first." },
    nextCursor: {
      type: ["string", "null"],
      description: "Pass as `cursor` for the next page; null on the last.",
    },
  }),
  DevToken: closedObject({
    token: text("A JWT for `Authorization: Bearer`."),
    expiresIn: { type: "integer", minimum: 1, description: "Seconds until it expires." },
  }),
  ProviderEvent: {
    type: "object",
    description: "An event of the payment provider, as it signs it (other fields are kept).",
    properties: {
      id: { type: "string", minLength: 1, maxLength: 255 },
      type: text("e.g. payment_intent.succeeded, charge.refunded"),
      created: { type: "integer" },
      data: {
        type: "object",
        properties: {
          object: {
            type: "object",
            properties: { id: text(), object: text("payment_intent or refund") },
            required: ["id", "object"],
          },
        },
        required: ["object"],
      },
    },
    required: ["id", "type", "data"],
  },
  WebhookAck: closedObject(
    {
      received: { const: true },
      duplicate: { const: true, description: "This event was applied before; nothing changed." },
      ignored: { const: true, description: "Not an event (or payment) this service acts on." },
    },
    ["duplicate", "ignored"],
  ),
  Liveness: closedObject({ status: { const: "ok" } }),
  Readiness: closedObject({
    status: { type: "string", enum: ["ready", "not_ready"] },
    checks: {
      type: "object",
      description: "One entry per dependency: broker, bus, kv and every required service.",
      additionalProperties: closedObject({ ok: { type: "boolean" }, error: text(), nodeID: text() }, [
        "error",
        "nodeID",
      ]),
    },
  }),
  Startup: {
    type: "object",
    properties: { status: { type: "string", enum: ["started", "starting"] } },
    required: ["status"],
  },
  ApiDescription: {
    type: "object",
    description: "This document (OpenAPI 3.1).",
    properties: {
      openapi: { type: "string", pattern: "^3\\.1\\.\\d+$" },
      info: { type: "object" },
      paths: { type: "object" },
    },
    required: ["openapi", "info", "paths"],
  },
  Error: closedObject(
    {
      error: closedObject(
        {
          code: { type: "string", pattern: "^[A-Z][A-Z0-9_]*$", description: "Stable; branch on it." },
          message: text("For people; may change."),
          details: { description: "Depends on the code, e.g. the lines short of stock for OUT_OF_STOCK." },
          requestId: text("The X-Request-Id of the answer."),
        },
        ["details"],
      ),
    },
    [],
    "Every error the API answers.",
  ),
} satisfies Record<string, JsonSchema>;

export type SchemaName = keyof typeof COMPONENT_SCHEMAS;
