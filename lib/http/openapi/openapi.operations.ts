/**
 * What the gateway's schema cannot say about each operation, keyed by the action an alias calls:
 * summary, tag, who may call it, extra request headers and body, the success answers, and the
 * error codes particular to it. Everything else — paths, path/query/body parameters, and the
 * errors implied by the route (validation, authentication, body parsing, rate limits) — the
 * builder reads from the gateway's routes and params (openapi.document.ts). An alias whose action
 * is missing here fails the build: nothing is served undocumented.
 */
import { HEADERS } from "../../constants";
import { spelled } from "../headers";
import { schemaRef } from "./openapi.schemas";
import type { JsonSchema, ParameterObject, RequestBodyObject } from "./openapi.types";

/** Error statuses an operation may document; each answers the `Error` envelope. */
export const ERROR_STATUSES = [400, 401, 403, 404, 409, 413, 415, 422, 429, 503] as const;
export type ErrorStatus = (typeof ERROR_STATUSES)[number];

/** Tags, in the order the docs page shows them. */
export const TAGS = {
  orders: "Placing, reading and cancelling orders.",
  products: "The catalog: prices, availability, and stock for admins.",
  payments: "Payments of an order, and the provider's webhook.",
  notifications: "Messages sent to the customer about their orders.",
  development: "Helpers for local development; off in production.",
  probes: "Liveness, readiness and startup for orchestrators; Prometheus metrics.",
  documentation: "This description and its page.",
} as const;
export type Tag = keyof typeof TAGS;

/** Who may call: a bearer token required, one that changes the answer, or none at all. */
export type Access = "bearer" | "optional-bearer" | "none";

/** Response headers of `components.headers` an answer may add to X-Request-Id. */
export type ResponseHeader = typeof HEADERS.location | typeof HEADERS.idempotentReplayed;

/** A non-error answer: its media types (null schema for binary content) and extra headers. */
export interface AnswerDoc {
  description: string;
  content: Record<string, JsonSchema | null>;
  headers?: readonly ResponseHeader[];
}

export interface OperationDoc {
  summary: string;
  description?: string;
  tag: Tag;
  access: Access;
  /** The `Idempotency-Key` request header, when the operation reads one. */
  idempotencyKey?: "required" | "optional";
  /** Request headers other than Idempotency-Key and Authorization. */
  headers?: readonly ParameterObject[];
  /** The body, for an action that reads its body without `params` (a raw body). */
  rawBody?: RequestBodyObject;
  answers: Readonly<Record<number, AnswerDoc>>;
  /** Error codes particular to the operation, by status (those implied by the route are added). */
  errors?: Readonly<Partial<Record<ErrorStatus, readonly string[]>>>;
}

const json = (schema: JsonSchema): Record<string, JsonSchema> => ({ "application/json": schema });
const UNAVAILABLE = ["SERVICE_UNAVAILABLE"] as const;
const FORBIDDEN = ["FORBIDDEN"] as const;

/** The documentation of every action an alias may call, by action name. */
export const OPERATIONS: Readonly<Record<string, OperationDoc>> = {
  // orders
  "gateway.placeOrder": {
    summary: "Place an order",
    description:
      "Reserves every line or none, then creates the order waiting for payment. Retrying with the same " +
      "`Idempotency-Key` and body answers the stored response (`Idempotent-Replayed: true`) and never " +
      "places a second order.",
    tag: "orders",
    access: "bearer",
    idempotencyKey: "required",
    answers: {
      201: {
        description: "The order, waiting for payment.",
        content: json(schemaRef("Order")),
        headers: [HEADERS.location, HEADERS.idempotentReplayed],
      },
    },
    errors: {
      400: ["IDEMPOTENCY_KEY_REQUIRED", "INVALID_IDEMPOTENCY_KEY"],
      403: ["FORBIDDEN (only a customer places orders)"],
      409: ["OUT_OF_STOCK (details.items: sku, requested, available)", "IDEMPOTENCY_KEY_IN_FLIGHT"],
      422: ["UNKNOWN_SKU", "INVALID_ORDER", "IDEMPOTENCY_KEY_REUSED"],
      503: UNAVAILABLE,
    },
  },
  "gateway.listOrders": {
    summary: "List orders",
    description:
      "A customer's own orders; an admin's: everyone's, or one customer's with `customerId`. Newest " +
      "first, by cursor.",
    tag: "orders",
    access: "bearer",
    answers: { 200: { description: "One page of orders.", content: json(schemaRef("OrderPage")) } },
    errors: {
      400: ["INVALID_CURSOR"],
      403: ["FORBIDDEN (customerId is for admins)"],
      503: UNAVAILABLE,
    },
  },
  "gateway.getOrder": {
    summary: "Get an order",
    description: "Someone else's order is 404, not 403.",
    tag: "orders",
    access: "bearer",
    answers: { 200: { description: "The order.", content: json(schemaRef("Order")) } },
    errors: { 403: FORBIDDEN, 404: ["ORDER_NOT_FOUND"], 503: UNAVAILABLE },
  },
  "gateway.cancelOrder": {
    summary: "Cancel an order",
    description:
      "Pending → cancelled; paid → cancelled and refunded. Cancelling a cancelled order answers it " +
      "again. An `Idempotency-Key` is optional: with one, a retry gets the first answer replayed.",
    tag: "orders",
    access: "bearer",
    idempotencyKey: "optional",
    answers: {
      200: {
        description: "The cancelled order.",
        content: json(schemaRef("Order")),
        headers: [HEADERS.idempotentReplayed],
      },
    },
    errors: {
      400: ["INVALID_IDEMPOTENCY_KEY"],
      403: FORBIDDEN,
      404: ["ORDER_NOT_FOUND"],
      409: ["ILLEGAL_ORDER_TRANSITION (shipped or delivered)", "IDEMPOTENCY_KEY_IN_FLIGHT"],
      422: ["IDEMPOTENCY_KEY_REUSED"],
      503: UNAVAILABLE,
    },
  },

  // products
  "gateway.listProducts": {
    summary: "List products",
    description: "Anyone sees price and availability; an admin also every stock counter.",
    tag: "products",
    access: "optional-bearer",
    answers: { 200: { description: "One page of the catalog.", content: json(schemaRef("ProductPage")) } },
    errors: { 503: UNAVAILABLE },
  },
  "gateway.getProduct": {
    summary: "Get a product",
    description: "Anyone sees price and availability; an admin also every stock counter.",
    tag: "products",
    access: "optional-bearer",
    answers: {
      200: {
        description: "The product.",
        content: json({ oneOf: [schemaRef("Product"), schemaRef("ProductAdmin")] }),
      },
    },
    errors: { 404: ["PRODUCT_NOT_FOUND"], 503: UNAVAILABLE },
  },
  "gateway.upsertProduct": {
    summary: "Create or change a product",
    description: "A new product starts with no stock; an existing one keeps its stock.",
    tag: "products",
    access: "bearer",
    answers: { 200: { description: "The product as stored.", content: json(schemaRef("ProductAdmin")) } },
    errors: { 403: ["FORBIDDEN (admins only)"], 422: ["INVALID_PRICE (unknown currency)"], 503: UNAVAILABLE },
  },
  "gateway.restockProduct": {
    summary: "Receive stock",
    description: "available += quantity and received += quantity.",
    tag: "products",
    access: "bearer",
    answers: { 200: { description: "The product as stored.", content: json(schemaRef("ProductAdmin")) } },
    errors: {
      403: ["FORBIDDEN (admins only)"],
      404: ["PRODUCT_NOT_FOUND"],
      422: ["INVALID_QUANTITY"],
      503: UNAVAILABLE,
    },
  },

  // payments
  "gateway.listPayments": {
    summary: "List the payments of an order",
    tag: "payments",
    access: "bearer",
    answers: {
      200: { description: "The payments, with their history.", content: json(schemaRef("PaymentList")) },
    },
    errors: { 403: FORBIDDEN, 404: ["ORDER_NOT_FOUND"], 503: UNAVAILABLE },
  },
  "gateway.paymentWebhook": {
    summary: "Payment provider webhook",
    description:
      "For the payment provider only. The body is read raw: `Psp-Signature` is an HMAC-SHA256 of " +
      "`<t>.<exact body bytes>`, valid for 5 minutes. Each event applies once; a repeat is acknowledged.",
    tag: "payments",
    access: "none",
    headers: [
      {
        name: spelled(HEADERS.pspSignature),
        in: "header",
        required: true,
        description: "`t=<unix seconds>,v1=<hex HMAC-SHA256>`; several v1 entries while a secret is rotated.",
        schema: { type: "string", maxLength: 4096 },
      },
    ],
    rawBody: {
      description: "The provider's event, byte for byte as signed.",
      required: true,
      content: { "application/json": { schema: schemaRef("ProviderEvent") } },
    },
    answers: { 200: { description: "Received.", content: json(schemaRef("WebhookAck")) } },
    errors: { 400: ["INVALID_SIGNATURE", "INVALID_WEBHOOK"], 503: UNAVAILABLE },
  },

  // notifications
  "gateway.listNotifications": {
    summary: "List my notifications",
    tag: "notifications",
    access: "bearer",
    answers: {
      200: { description: "One page of notifications.", content: json(schemaRef("NotificationPage")) },
    },
    errors: { 400: ["INVALID_CURSOR"], 403: ["FORBIDDEN (customers only)"], 503: UNAVAILABLE },
  },

  // development
  "gateway.devToken": {
    summary: "Issue a development token",
    description:
      "Only when `AUTH_DEV_TOKENS=true`, never in production; 404 otherwise. Roles default to customer.",
    tag: "development",
    access: "none",
    answers: { 200: { description: "A signed token.", content: json(schemaRef("DevToken")) } },
    errors: { 404: ["NOT_FOUND (dev tokens are off)"], 503: UNAVAILABLE },
  },

  // probes
  "gateway.livez": {
    summary: "Liveness",
    tag: "probes",
    access: "none",
    answers: { 200: { description: "The process is alive.", content: json(schemaRef("Liveness")) } },
  },
  "gateway.readyz": {
    summary: "Readiness",
    description:
      "Ready when the broker runs, the bus and the key-value store answer and every required service is healthy.",
    tag: "probes",
    access: "none",
    answers: {
      200: { description: "Ready to serve.", content: json(schemaRef("Readiness")) },
      503: { description: "Not ready; the failing checks say why.", content: json(schemaRef("Readiness")) },
    },
  },
  "gateway.startupz": {
    summary: "Startup",
    description: "Started once every local service finished starting; never false again afterwards.",
    tag: "probes",
    access: "none",
    answers: {
      200: { description: "Started.", content: json(schemaRef("Startup")) },
      503: { description: "Still starting.", content: json(schemaRef("Startup")) },
    },
  },
  "gateway.metrics": {
    summary: "Prometheus metrics",
    description: "Text exposition format 0.0.4: HTTP, outbox, inbox and breaker metrics of the cluster.",
    tag: "probes",
    access: "none",
    answers: { 200: { description: "The metrics.", content: { "text/plain": { type: "string" } } } },
  },

  // documentation
  "gateway.openapi": {
    summary: "This API description",
    tag: "documentation",
    access: "none",
    answers: { 200: { description: "OpenAPI 3.1.", content: json(schemaRef("ApiDescription")) } },
  },
  "gateway.docs": {
    summary: "The API description as a page",
    tag: "documentation",
    access: "none",
    answers: { 200: { description: "An HTML page.", content: { "text/html": { type: "string" } } } },
  },
  "gateway.docsAsset": {
    summary: "A file of the docs page",
    description: "Scripts, styles and icons of /docs, served from this process (no third-party host).",
    tag: "documentation",
    access: "none",
    answers: {
      200: {
        description: "The file.",
        content: { "text/css": { type: "string" }, "text/javascript": { type: "string" }, "image/png": null },
      },
    },
  },
};
