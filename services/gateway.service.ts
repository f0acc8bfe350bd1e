/**
 * API gateway (moleculer-web): the HTTP API of DESIGN §6 and the probes.
 *
 * Every `/api/v1` alias maps to one of the gateway's own actions, which checks the caller's role,
 * shapes the parameters and calls the domain service; the domain services check ownership again
 * (a call that skips the gateway cannot skip it). Callers authenticate with `Authorization:
 * Bearer <JWT>` (HS256 with `JWT_SECRET`; RS256/ES256 with the keys at `JWKS_URL`); the principal
 * travels in `ctx.meta.user`. Every error leaves through lib/http/error-response.ts as
 * `{ error: { code, message, details?, requestId } }`.
 *
 * The payment provider's webhook has its own route: its body is kept raw, byte for byte, because
 * its HMAC signature covers exactly those bytes.
 *
 * The edge, in the order a request meets it (docs/architecture.md, "The gateway's edge"): node's
 * parser and REQUEST_TIMEOUT, request id and security headers, OPTIONS, body parsing (JSON only,
 * 64 KiB, UTF-8, uncompressed), the input shape guard, authentication, the rate limit (`authorize`),
 * then the action's strict parameter schema. Mixins add /metrics (HttpMetricsMixin) and the drain
 * on SIGTERM with /startupz (GracefulHttpMixin); /openapi.json is built from this very schema.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { Errors, type Context, type ServiceSchema } from "moleculer";
import ApiGateway, { type ApiSettingsSchema } from "moleculer-web";
import { AuthenticationError, SUBJECT, issueToken } from "../lib/auth/jwt";
import { createTokenVerifier, type TokenVerifier } from "../lib/auth/token-verifier";
import type { Config } from "../lib/config";
import { HEADERS, ROLES, type Role } from "../lib/constants";
import { ConfigError } from "../lib/errors";
import { errorResponse } from "../lib/http/error-response";
import { idempotent, type IdempotentOutcome } from "../lib/http/idempotency";
import { checkInputShape, checkScalarQuery, verifyUtf8 } from "../lib/http/input-guard";
import {
  DOCS_ASSET_NAMES,
  DOCS_PAGE,
  DOCS_PAGE_CONTENT_TYPE,
  DOCS_PAGE_HEADERS,
  docsAsset,
  type DocsAssetName,
} from "../lib/http/openapi/docs.page";
import { openApiDocumentOf, type GatewaySchema } from "../lib/http/openapi/openapi.document";
import type { OpenApiDocument } from "../lib/http/openapi/openapi.types";
import {
  ClientAddressResolver,
  RateLimiter,
  callerKey,
  rateClassOf,
  type RateDecision,
} from "../lib/http/rate-limit";
import { infrastructureOf } from "../lib/infrastructure";
import { ORDER_ITEMS_PARAM, PAYMENT_METHOD_PARAM } from "../lib/params";
import type { Principal } from "../lib/principal";
import { GracefulHttpMixin } from "../mixins/graceful-http.mixin";
import { HttpMetricsMixin } from "../mixins/http-metrics.mixin";
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
  rateLimiter: RateLimiter;
  clientAddress: ClientAddressResolver;
  tokens: TokenVerifier;
}

/** The part of moleculer-web's alias the gateway reads. */
interface Alias {
  method: string;
  fullPath: string;
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
  mixins: [ApiGateway, InfrastructureMixin({ bus: true, kv: true }), HttpMetricsMixin(), GracefulHttpMixin()],

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
        bodyParsers: {
          json: false,
          urlencoded: false,
          raw: { type: () => true, limit: "64kb", inflate: false },
        },
        onBeforeCall(ctx: Context, _route: unknown, req: IncomingMessage): void {
          const signature = req.headers[HEADERS.pspSignature];
          (ctx.meta as ApiMeta).pspSignature = typeof signature === "string" ? signature : "";
        },
      },
      {
        path: "/api/v1",
        mappingPolicy: "restrict",
        authentication: true,
        // after authentication: the rate limit (per principal, else per client address)
        authorization: true,
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
        // compressed bodies are refused (415), not inflated; JSON text must be UTF-8
        bodyParsers: {
          json: { strict: true, limit: "64kb", inflate: false, verify: verifyUtf8 },
          urlencoded: false,
        },
        onBeforeCall(ctx: Context, _route: unknown, req: IncomingMessage & ParsedInput): void {
          requireJsonBody(req);
          // before the validator, which cannot see a merged `__proto__` nor survive any depth
          checkInputShape(req.body, "body");
          checkInputShape(req.query, "query");
          checkScalarQuery(req.query);
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
          "GET /startupz": "gateway.startupz",
          "GET /metrics": "gateway.metrics",
          "GET /openapi.json": "gateway.openapi",
          "GET /docs": "gateway.docs",
          "GET /docs/:file": "gateway.docsAsset",
        },
        bodyParsers: { json: false, urlencoded: false },
      },
    ],
    // OPTIONS never reaches an action (moleculer-web would route it as the method it names)
    use: [refuseOptions],
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
                // untracked: a timed-out call to a frozen node must not hold up this broker's stop
                { timeout: HEALTH_TIMEOUT_MS, tracking: false },
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
          {
            secret,
            expiresInSeconds: DEV_TOKEN_TTL_SECONDS,
            issuer: this.config.jwtIssuer,
            audience: this.config.jwtAudience,
          },
        );
        return { token, expiresIn: DEV_TOKEN_TTL_SECONDS };
      },
    },

    // the API's description, built from this schema (lib/http/openapi), and its page
    openapi: {
      visibility: "published",
      handler(): OpenApiDocument {
        return openApiDocumentOf(this.schema as unknown as GatewaySchema);
      },
    },

    docs: {
      visibility: "published",
      handler(ctx: Context<unknown, { $responseType?: string; $responseHeaders?: Record<string, string> }>) {
        ctx.meta.$responseType = DOCS_PAGE_CONTENT_TYPE;
        // the page's own policy (same origin, no inline script) instead of the API's deny-all one
        ctx.meta.$responseHeaders = { ...DOCS_PAGE_HEADERS };
        return DOCS_PAGE;
      },
    },

    docsAsset: {
      visibility: "published",
      params: { $$strict: true, file: { type: "enum", values: DOCS_ASSET_NAMES } },
      handler(ctx: Context<{ file: DocsAssetName }, { $responseType?: string }>): Buffer {
        const asset = docsAsset(ctx.params.file);
        ctx.meta.$responseType = asset.contentType;
        return asset.body;
      },
    },
  },

  // ── methods ────────────────────────────────────────────────────────────
  methods: {
    /**
     * moleculer-web's hook after authentication: take a token from the caller's bucket for this
     * class of request; 429 RATE_LIMITED with Retry-After when it is empty. A key-value store that
     * does not answer lets the request through (logged): limits protect the service, they must
     * not take it down with them.
     */
    async authorize(ctx: ApiContext, _route: unknown, req: Request, res: ServerResponse, alias: Alias) {
      const caller = callerKey(
        ctx.meta.user?.id,
        this.clientAddress.resolve(req.socket.remoteAddress, req.headers["x-forwarded-for"]),
      );
      let decision: RateDecision | null;
      try {
        decision = await this.rateLimiter.take(rateClassOf(alias.method, alias.fullPath), caller);
      } catch (err) {
        this.logger.warn(`rate limit not checked (key-value store: ${message(err)})`);
        return;
      }
      if (decision === null) return;
      for (const [name, value] of Object.entries(decision.headers)) res.setHeader(name, value);
      if (!decision.allowed)
        throw new MoleculerClientError("too many requests; retry later", 429, "RATE_LIMITED", {
          retryAfterSeconds: decision.retryAfterSeconds,
        });
    },

    /**
     * moleculer-web's hook (awaited): the principal of a Bearer token, null without one; 401 for a
     * bad one, 503 when the identity provider's keys cannot be fetched.
     */
    async authenticate(_ctx: Context, _route: unknown, req: Request): Promise<Principal | null> {
      const header = req.headers.authorization;
      if (header === undefined || header === "") return null;
      const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header);
      if (match === null)
        throw new AuthenticationError("UNAUTHORIZED", "expected Authorization: Bearer <token>");
      return this.tokens.verify(match[1] as string);
    },
  },

  // ── lifecycle ──────────────────────────────────────────────────────────
  created() {
    this.config = infrastructureOf(this.broker).config;
    this.clientAddress = new ClientAddressResolver(this.config.trustedProxies);
    if (this.config.corsOrigins.length > 0) allowOrigins(this, this.config.corsOrigins);
    this.settings.port = this.config.port;
    guardServer((this as unknown as { server: Server }).server, this.config.requestTimeoutMs);
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
    this.tokens = createTokenVerifier({
      secret: this.config.jwtSecret,
      jwksUrl: this.config.jwksUrl,
      issuer: this.config.jwtIssuer,
      audience: this.config.jwtAudience,
      jwks: {
        onFetchFailed: (err) =>
          this.logger.warn(`JWKS not fetched (${message(err)}); the last good key set, if any, stays in use`),
      },
    });
  },

  started() {
    // the key-value store is open now (the infrastructure mixin starts first)
    this.rateLimiter = new RateLimiter(this.kv, this.config.rateLimits);
  },

  async stopped() {
    this.accepting = false;
    this.tokens.close();
  },
};

/**
 * moleculer-web's per-request hook, called with the gateway as `this`: fix the request id, set the
 * id and security headers, bound the whole call chain by REQUEST_TIMEOUT, and carry a well-formed
 * W3C `traceparent` into `ctx.meta`, where services and the outbox pass it on.
 */
function withRequestId(
  this: { config: Config },
  options: { requestID?: unknown; timeout?: number; meta?: Record<string, unknown> },
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const given = typeof options.requestID === "string" ? options.requestID : "";
  const requestID = REQUEST_ID.test(given) ? given : randomUUID();
  options.requestID = requestID;
  options.timeout = this.config.requestTimeoutMs;
  const traceparent = req.headers[HEADERS.traceparent];
  if (typeof traceparent === "string" && isTraceparent(traceparent))
    options.meta = { ...options.meta, traceparent: traceparent.toLowerCase() };
  res.setHeader("X-Request-Id", requestID);
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
}

/** W3C Trace Context: version 00, non-zero trace and parent ids. */
function isTraceparent(value: string): boolean {
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/i.exec(value);
  return match !== null && !/^0+$/.test(match[1] as string) && !/^0+$/.test(match[2] as string);
}

/** What moleculer-web's body and query parsing leave on the request. */
interface ParsedInput {
  body?: unknown;
  query?: unknown;
}

/**
 * Global middleware: a CORS preflight goes on to moleculer-web's CORS handling when the route has
 * CORS; any other OPTIONS is 405, before routing could map it onto an action.
 */
function refuseOptions(
  req: IncomingMessage & { $route?: { cors?: unknown } },
  _res: ServerResponse,
  next: (err?: unknown) => void,
): void {
  if (req.method !== "OPTIONS") return next();
  // moleculer-web leaves `cors` null on a route without CORS
  const preflight = Boolean(req.$route?.cors) && req.headers["access-control-request-method"] !== undefined;
  if (preflight) return next();
  next(new MoleculerClientError("OPTIONS is not served here", 405, "METHOD_NOT_ALLOWED"));
}

/**
 * The HTTP server moleculer-web created (it listens later, in `started`): slow clients must send
 * their headers and the whole request within REQUEST_TIMEOUT (408), checked often enough for that
 * to hold; what node's parser refuses (huge headers, bytes that are no URL, a timeout) is answered
 * in the error envelope too.
 */
function guardServer(server: Server, requestTimeoutMs: number): void {
  server.requestTimeout = requestTimeoutMs;
  server.headersTimeout = Math.min(requestTimeoutMs, 10_000);
  // read when the server starts listening; node's default (30 s) would let a timeout run that late
  // (the typings know it only as a createServer option)
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.min(
    30_000,
    Math.max(250, Math.floor(requestTimeoutMs / 4)),
  );
  server.on("clientError", answerClientError);
}

/** node:http's `clientError`: a request its parser refused gets the error envelope, then the socket closes. */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (!socket.writable || err.code === "ECONNRESET") {
    socket.destroy();
    return;
  }
  const [status, code, reason] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "HEADERS_TOO_LARGE", "Request Header Fields Too Large"]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "REQUEST_TIMEOUT", "Request Timeout"]
        : [400, "BAD_REQUEST", "Bad Request"];
  const requestId = randomUUID();
  const body = JSON.stringify({
    error: {
      code,
      message: status === 400 ? "the request is not valid HTTP" : reason.toLowerCase(),
      requestId,
    },
  });
  const headers = [
    `HTTP/1.1 ${status} ${reason}`,
    "Content-Type: application/json; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    `X-Request-Id: ${requestId}`,
    ...Object.entries(SECURITY_HEADERS).map(([name, value]) => `${name}: ${value}`),
    "Connection: close",
  ];
  socket.end(`${headers.join("\r\n")}\r\n\r\n${body}`);
}

/** A body on a JSON route must say it is JSON: anything else is 415, not silently ignored. */
function requireJsonBody(req: IncomingMessage): void {
  const length = req.headers["content-length"];
  const hasBody = (length !== undefined && length !== "0") || req.headers["transfer-encoding"] !== undefined;
  if (!hasBody) return;
  const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (type === "application/json" || /^application\/[a-z0-9.+-]+\+json$/.test(type)) return;
  throw new MoleculerClientError(
    "the body must be JSON (Content-Type: application/json)",
    415,
    "UNSUPPORTED_MEDIA_TYPE",
    { contentType: type === "" ? null : type.slice(0, 100) },
  );
}

/**
 * CORS for browsers on the allowed origins, on the API route only: preflights answered 204, the
 * allowed origin echoed, a request from any other origin refused 403 ORIGIN_NOT_ALLOWED.
 */
function allowOrigins(gateway: unknown, origins: readonly string[]): void {
  // moleculer-web built its routes before this service's created(); set CORS on the API one
  const routes = (gateway as { routes: { opts: { path: string }; cors?: unknown }[] }).routes;
  const api = routes.find((route) => route.opts.path === "/api/v1");
  if (api === undefined) throw new Error("the /api/v1 route is missing");
  api.cors = {
    origin: [...origins],
    methods: ["GET", "POST", "PUT"],
    allowedHeaders: [
      "Authorization",
      "Content-Type",
      HEADERS.idempotencyKey,
      "X-Request-Id",
      HEADERS.traceparent,
    ],
    exposedHeaders: [
      "X-Request-Id",
      "Location",
      "Idempotent-Replayed",
      "Retry-After",
      "RateLimit",
      "RateLimit-Policy",
    ],
    credentials: false,
    maxAge: 600,
  };
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
