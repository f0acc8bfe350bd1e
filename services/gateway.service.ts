/**
 * API gateway (moleculer-web): the HTTP API of DESIGN §6 and the probes.
 *
 * Every `/api/v1` alias maps to one of the gateway's own actions, which checks the caller's role,
 * shapes the parameters and calls the domain service; the domain services check ownership again
 * (a call that skips the gateway cannot skip it). Callers authenticate with `Authorization:
 * Bearer <JWT>` (HS256, `JWT_SECRET`); the principal travels in `ctx.meta.user`. Every error
 * leaves through lib/http/error-response.ts as `{ error: { code, message, details?, requestId } }`.
 *
 * The payment provider's webhook has its own route: its body is kept raw, byte for byte, because
 * its HMAC signature covers exactly those bytes.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Errors, type Context, type ServiceSchema } from "moleculer";
import ApiGateway, { type ApiSettingsSchema } from "moleculer-web";
import { AuthenticationError, SUBJECT, issueToken, verifyToken } from "../lib/auth/jwt";
import type { Config } from "../lib/config";
import { HEADERS, ROLES, type Role } from "../lib/constants";
import { ConfigError } from "../lib/errors";
import { errorResponse } from "../lib/http/error-response";
import { idempotent, type IdempotentOutcome } from "../lib/http/idempotency";
import { infrastructureOf } from "../lib/infrastructure";
import { ORDER_ITEMS_PARAM, PAYMENT_METHOD_PARAM } from "../lib/params";
import type { Principal } from "../lib/principal";
import {
  InfrastructureMixin,
  type HealthReport,
  type InfrastructureThis,
} from "../mixins/infrastructure.mixin";
import { SKU_PATTERN } from "../models/inventory";
import { ORDER_STATUSES } from "../models/order";

const { MoleculerClientError } = Errors;

interface GatewayVars extends InfrastructureThis {
  accepting: boolean;
  config: Config;
}

interface ReadinessCheck {
  ok: boolean;
  error?: string;
  nodeID?: string;
}

/** What the HTTP layer leaves in `ctx.meta` for the gateway's actions. */
interface ApiMeta {
  user?: Principal | null;
  idempotencyKey?: string;
  pspSignature?: string;
  $statusCode?: number;
  $location?: string;
  $responseHeaders?: Record<string, string>;
}

type ApiContext<P = Record<string, never>> = Context<P, ApiMeta>;

type Request = IncomingMessage & {
  $ctx?: { requestID?: string; meta: ApiMeta };
  headers: IncomingMessage["headers"];
};

const HEALTH_TIMEOUT_MS = 2000;
const DEV_TOKEN_TTL_SECONDS = 12 * 3600;
const ID = { type: "string", min: 1, max: 128 } as const;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
/** A client's X-Request-Id is kept only when it is short and plain (it ends up in logs). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** Sent with every response: the API serves JSON only, never to be framed, sniffed or cached. */
const SECURITY_HEADERS: Record<string, string> = {
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
  "Cache-Control": "no-store",
};

const GatewayService: ServiceSchema<ApiSettingsSchema, Record<string, never>, GatewayVars> = {
  name: "gateway",
  mixins: [ApiGateway, InfrastructureMixin({ bus: true, kv: true })],

  // ── settings ───────────────────────────────────────────────────────────
  settings: {
    port: 3000,
    ip: "0.0.0.0",
    routes: [
      {
        // raw body: the signature covers the exact bytes
        path: "/api/v1/payments/webhook",
        mappingPolicy: "restrict",
        mergeParams: false,
        aliases: { "POST /": "gateway.paymentWebhook" },
        bodyParsers: { json: false, urlencoded: false, raw: { type: () => true, limit: "64kb" } },
        onBeforeCall(ctx: Context, _route: unknown, req: IncomingMessage): void {
          const signature = req.headers[HEADERS.pspSignature];
          (ctx.meta as ApiMeta).pspSignature = typeof signature === "string" ? signature : "";
        },
      },
      {
        path: "/api/v1",
        mappingPolicy: "restrict",
        authentication: true,
        aliases: {
          "POST /orders": "gateway.placeOrder",
          "GET /orders": "gateway.listOrders",
          "GET /orders/:id": "gateway.getOrder",
          "POST /orders/:id/cancel": "gateway.cancelOrder",
          "GET /products": "gateway.listProducts",
          "GET /products/:sku": "gateway.getProduct",
          "PUT /products/:sku": "gateway.upsertProduct",
          "POST /products/:sku/restock": "gateway.restockProduct",
          "GET /payments": "gateway.listPayments",
          "GET /notifications": "gateway.listNotifications",
          "POST /dev/token": "gateway.devToken",
        },
        bodyParsers: { json: { strict: true, limit: "64kb" }, urlencoded: false },
        onBeforeCall(ctx: Context, _route: unknown, req: IncomingMessage): void {
          const key = req.headers[HEADERS.idempotencyKey];
          if (typeof key === "string") (ctx.meta as ApiMeta).idempotencyKey = key;
        },
      },
      {
        path: "/",
        mappingPolicy: "restrict",
        aliases: {
          "GET /livez": "gateway.livez",
          "GET /readyz": "gateway.readyz",
        },
        bodyParsers: { json: false, urlencoded: false },
      },
    ],
    // Every request: a request id (the client's when well-formed, else a new one) that names the
    // call chain and comes back in X-Request-Id and in error bodies; security headers on every answer.
    // moleculer-web calls a function here, though its typings only know the object form
    rootCallOptions: withRequestId as unknown as ApiSettingsSchema["rootCallOptions"],
    // Errors never carry stack traces out of the process.
    log4XXResponses: false,
    onError(req: IncomingMessage, res: ServerResponse, err: Error) {
      const { status, headers, body } = errorResponse(err, (req as Request).$ctx?.requestID ?? "");
      res.setHeader("Content-Type", "application/json; charset=utf-8");
      for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
      if (status === 401) res.setHeader("WWW-Authenticate", 'Bearer realm="ordermesh"');
      res.writeHead(status);
      res.end(JSON.stringify(body));
    },
  },

  // ── actions ────────────────────────────────────────────────────────────
  actions: {
    livez: {
      visibility: "published",
      handler(): { status: "ok" } {
        return { status: "ok" };
      },
    },

    readyz: {
      visibility: "published",
      async handler(ctx: Context<unknown, { $statusCode?: number }>) {
        const checks: Record<string, ReadinessCheck> = {};
        checks.broker = { ok: this.broker.started && this.accepting === true };
        const ping = async (name: string, target: { ping(): Promise<void> } | undefined) => {
          try {
            if (target === undefined) throw new Error("not open");
            await target.ping();
            checks[name] = { ok: true };
          } catch (err) {
            checks[name] = { ok: false, error: message(err) };
          }
        };
        const available = new Set(
          (this.broker.registry.getServiceList({ onlyAvailable: true }) as { name: string }[]).map(
            (svc) => svc.name,
          ),
        );
        await Promise.all([
          ping("bus", this.bus),
          ping("kv", this.kv),
          ...this.config.requiredServices.map(async (service) => {
            if (!available.has(service)) {
              checks[service] = { ok: false, error: "no instance has joined" };
              return;
            }
            try {
              const report = await ctx.call<HealthReport, Record<string, never>>(
                `${service}.health`,
                {},
                { timeout: HEALTH_TIMEOUT_MS },
              );
              checks[service] = { ok: report.healthy, nodeID: report.nodeID };
            } catch (err) {
              checks[service] = { ok: false, error: message(err) };
            }
          }),
        ]);
        const ready = Object.values(checks).every((c) => c.ok);
        if (!ready) ctx.meta.$statusCode = 503;
        return { status: ready ? "ready" : "not_ready", checks };
      },
    },

    // orders
    placeOrder: {
      visibility: "published",
      params: {
        $$strict: true,
        items: ORDER_ITEMS_PARAM,
        paymentMethod: PAYMENT_METHOD_PARAM,
      },
      async handler(ctx: ApiContext<{ items: { sku: string; quantity: number }[]; paymentMethod?: string }>) {
        requireRole(ctx, "customer");
        const key = ctx.meta.idempotencyKey;
        if (key === undefined)
          throw new MoleculerClientError(
            "the Idempotency-Key header is required",
            400,
            "IDEMPOTENCY_KEY_REQUIRED",
          );
        checkIdempotencyKey(key);
        const principal = ctx.meta.user as Principal;
        const outcome = await idempotent(
          this.kv,
          { scope: `${principal.id} POST /api/v1/orders`, key, body: ctx.params },
          async () => ({
            status: 201,
            body: await ctx.call<{ id: string }, typeof ctx.params>("orders.place", ctx.params),
          }),
        );
        respond(ctx, outcome);
        const id = (outcome.body as { id?: unknown }).id;
        if (typeof id === "string") ctx.meta.$location = `/api/v1/orders/${id}`;
        return outcome.body;
      },
    },

    listOrders: {
      visibility: "published",
      params: {
        $$strict: true,
        status: { type: "enum", values: [...ORDER_STATUSES], optional: true },
        limit: { type: "number", integer: true, min: 1, max: 100, optional: true, convert: true },
        cursor: { type: "string", min: 1, max: 512, optional: true },
        customerId: { ...ID, optional: true },
      },
      handler(ctx: ApiContext<{ customerId?: string }>) {
        const principal = requireRole(ctx, "customer", "admin");
        if (ctx.params.customerId !== undefined && !principal.roles.includes("admin"))
          throw new MoleculerClientError(
            "only an admin can list another customer's orders",
            403,
            "FORBIDDEN",
          );
        return ctx.call("orders.listOrders", ctx.params);
      },
    },

    getOrder: {
      visibility: "published",
      params: { $$strict: true, id: ID },
      handler(ctx: ApiContext<{ id: string }>) {
        requireRole(ctx, "customer", "admin");
        return ctx.call("orders.getOrder", ctx.params);
      },
    },

    cancelOrder: {
      visibility: "published",
      params: { $$strict: true, id: ID },
      async handler(ctx: ApiContext<{ id: string }>) {
        const principal = requireRole(ctx, "customer", "admin");
        const key = ctx.meta.idempotencyKey;
        // the key is optional here: cancelling twice is harmless anyway
        if (key === undefined) return ctx.call("orders.cancel", ctx.params);
        checkIdempotencyKey(key);
        const outcome = await idempotent(
          this.kv,
          { scope: `${principal.id} POST /api/v1/orders/:id/cancel`, key, body: ctx.params },
          async () => ({ status: 200, body: await ctx.call("orders.cancel", ctx.params) }),
        );
        respond(ctx, outcome);
        return outcome.body;
      },
    },

    // products (anyone may read)
    listProducts: {
      visibility: "published",
      params: {
        $$strict: true,
        page: { type: "number", integer: true, min: 1, max: 10_000, optional: true, convert: true },
        pageSize: { type: "number", integer: true, min: 1, max: 100, optional: true, convert: true },
      },
      handler(ctx: ApiContext<{ page?: number; pageSize?: number }>) {
        return ctx.call("inventory.listProducts", ctx.params);
      },
    },

    getProduct: {
      visibility: "published",
      params: { $$strict: true, sku: { type: "string", pattern: SKU_PATTERN } },
      handler(ctx: ApiContext<{ sku: string }>) {
        return ctx.call("inventory.getProduct", ctx.params);
      },
    },

    upsertProduct: {
      visibility: "published",
      params: {
        $$strict: true,
        sku: { type: "string", pattern: SKU_PATTERN },
        name: { type: "string", min: 1, max: 200 },
        price: {
          type: "object",
          strict: true,
          props: {
            minor: { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER },
            currency: { type: "string", pattern: /^[A-Z]{3}$/ },
          },
        },
      },
      handler(ctx: ApiContext<{ sku: string }>) {
        requireRole(ctx, "admin");
        return ctx.call("inventory.upsert", ctx.params);
      },
    },

    restockProduct: {
      visibility: "published",
      params: {
        $$strict: true,
        sku: { type: "string", pattern: SKU_PATTERN },
        quantity: { type: "number", integer: true, min: 1, max: 1_000_000 },
      },
      handler(ctx: ApiContext<{ sku: string; quantity: number }>) {
        requireRole(ctx, "admin");
        return ctx.call("inventory.restock", ctx.params);
      },
    },

    // payments
    listPayments: {
      visibility: "published",
      params: { $$strict: true, orderId: ID },
      async handler(ctx: ApiContext<{ orderId: string }>) {
        requireRole(ctx, "customer", "admin");
        // someone else's order is ORDER_NOT_FOUND here too
        await ctx.call("orders.getOrder", { id: ctx.params.orderId });
        return ctx.call("payments.list", ctx.params);
      },
    },

    benchPing: {
      visibility: "published",
      handler(ctx: ApiContext) {
        return ctx.call("orders.ping");
      },
    },

    paymentWebhook: {
      visibility: "published",
      async handler(ctx: ApiContext<{ body?: unknown }>) {
        const raw = ctx.params.body;
        const body = Buffer.isBuffer(raw) ? raw.toString("utf8") : typeof raw === "string" ? raw : "";
        return ctx.call("payments.webhook", { body, signature: ctx.meta.pspSignature ?? "" });
      },
    },

    // notifications
    listNotifications: {
      visibility: "published",
      params: {
        $$strict: true,
        limit: { type: "number", integer: true, min: 1, max: 100, optional: true, convert: true },
        cursor: { type: "string", min: 1, max: 512, optional: true },
      },
      handler(ctx: ApiContext<{ limit?: number; cursor?: string }>) {
        requireRole(ctx, "customer");
        return ctx.call("notifications.list", ctx.params);
      },
    },

    // development tokens
    devToken: {
      visibility: "published",
      params: {
        $$strict: true,
        sub: { type: "string", pattern: SUBJECT },
        roles: {
          type: "array",
          min: 1,
          max: ROLES.length,
          unique: true,
          optional: true,
          items: { type: "enum", values: [...ROLES] },
        },
      },
      handler(ctx: ApiContext<{ sub: string; roles?: Role[] }>): { token: string; expiresIn: number } {
        if (!this.config.authDevTokens) throw new MoleculerClientError("not found", 404, "NOT_FOUND");
        const secret = this.config.jwtSecret as string;
        const token = issueToken(
          { sub: ctx.params.sub, roles: ctx.params.roles ?? ["customer"] },
          { secret, expiresInSeconds: DEV_TOKEN_TTL_SECONDS },
        );
        return { token, expiresIn: DEV_TOKEN_TTL_SECONDS };
      },
    },
  },

  // ── methods ────────────────────────────────────────────────────────────
  methods: {
    /** moleculer-web's hook: the principal of a Bearer token, null without one; 401 for a bad one. */
    authenticate(_ctx: Context, _route: unknown, req: Request): Principal | null {
      const header = req.headers.authorization;
      if (header === undefined || header === "") return null;
      const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header);
      if (match === null)
        throw new AuthenticationError("UNAUTHORIZED", "expected Authorization: Bearer <token>");
      return verifyToken(match[1] as string, { secret: this.config.jwtSecret as string });
    },
  },

  // ── lifecycle ──────────────────────────────────────────────────────────
  created() {
    this.config = infrastructureOf(this.broker).config;
    this.settings.port = this.config.port;
    this.accepting = true;
    if (process.env.ORDERMESH_BENCH_ROUTES === "true") {
      // bench/orders.bench.ts only: the same-run ceiling, a trivial call through the gateway
      (this as unknown as { addRoute(route: unknown): void }).addRoute({
        path: "/_bench",
        mappingPolicy: "restrict",
        aliases: { "GET /ping": "gateway.benchPing" },
        bodyParsers: { json: false, urlencoded: false },
      });
    }
    if (this.config.jwtSecret === undefined) {
      throw new ConfigError("JWT_SECRET", "the gateway needs it to verify tokens (at least 16 characters)");
    }
  },

  async stopped() {
    this.accepting = false;
  },
};

/** moleculer-web's per-request hook: fix the request id, set the id and security headers. */
function withRequestId(options: { requestID?: unknown }, _req: IncomingMessage, res: ServerResponse): void {
  const given = typeof options.requestID === "string" ? options.requestID : "";
  const requestID = REQUEST_ID.test(given) ? given : randomUUID();
  options.requestID = requestID;
  res.setHeader("X-Request-Id", requestID);
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
}

/** The caller, who must hold one of `roles`: 401 without a token, 403 with the wrong role. */
function requireRole(ctx: ApiContext<unknown>, ...roles: Role[]): Principal {
  const user = ctx.meta.user;
  if (user === undefined || user === null)
    throw new MoleculerClientError("a Bearer token is required", 401, "UNAUTHORIZED");
  if (!roles.some((role) => user.roles.includes(role)))
    throw new MoleculerClientError(`this needs the role ${roles.join(" or ")}`, 403, "FORBIDDEN");
  return user;
}

function checkIdempotencyKey(key: string): void {
  if (!IDEMPOTENCY_KEY.test(key))
    throw new MoleculerClientError(
      "Idempotency-Key must be 1 to 255 printable ASCII characters",
      400,
      "INVALID_IDEMPOTENCY_KEY",
    );
}

/** Status of an idempotent call, and the replay header when it was answered from the store. */
function respond(ctx: ApiContext<unknown>, outcome: IdempotentOutcome<unknown>): void {
  ctx.meta.$statusCode = outcome.status;
  if (outcome.replayed) ctx.meta.$responseHeaders = { "Idempotent-Replayed": "true" };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export default GatewayService;
