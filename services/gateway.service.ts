/**
 * API gateway (moleculer-web): the HTTP API of the README ("HTTP API (v1)") and the probes.
 *
 * Every `/api/v1` alias maps to one of the gateway's own actions, which checks the caller's role,
 * shapes the parameters (lib/params.ts, shared with the services) and calls the domain service; the
 * domain services check ownership again (a call that skips the gateway cannot skip it). Callers
 * authenticate with `Authorization: Bearer <JWT>` (HS256 with `JWT_SECRET`; RS256/ES256 with the
 * keys at `JWKS_URL`); the principal travels in `ctx.meta.user`. Every error leaves through
 * lib/http/error-response.ts as `{ error: { code, message, details?, requestId } }`.
 *
 * The edge, in the order a request meets it (docs/architecture.md, "The gateway's edge"), each step
 * in lib/http/: node's parser and REQUEST_TIMEOUT (client-error.ts), request id and security headers
 * (request-id.ts), OPTIONS and CORS (cors.ts), body parsing (body-guard.ts: JSON only, 64 KiB,
 * UTF-8, uncompressed; the webhook's body raw, because its HMAC covers exactly those bytes), the
 * input shape guard (input-guard.ts), authentication (access.ts), the rate limit (`authorize`,
 * rate-limit.ts), then the action's strict parameter schema. Mixins add /metrics (HttpMetricsMixin)
 * and the drain on SIGTERM with /startupz (GracefulHttpMixin); /openapi.json is built from this
 * very schema.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { Errors, type Context, type ServiceSchema } from "moleculer";
import ApiGateway, { type ApiSettingsSchema } from "moleculer-web";
import { SUBJECT, issueToken } from "../lib/auth/jwt";
import { createTokenVerifier, type TokenVerifier } from "../lib/auth/token-verifier";
import type { Config } from "../lib/config";
import { HEADERS, ROLES, type Role } from "../lib/constants";
import { ConfigError } from "../lib/errors";
import { bearerTokenOf, requireRole } from "../lib/http/access";
import type { ApiAlias, ApiContext, ApiRequest } from "../lib/http/api-context";
import { JSON_BODY, NO_BODY, RAW_BODY, rawBodyText, requireJsonBody } from "../lib/http/body-guard";
import { guardServer } from "../lib/http/client-error";
import { allowOrigins, refuseOptions } from "../lib/http/cors";
import { sendError } from "../lib/http/error-response";
import { idempotencyKeyOf, idempotent, replayHeaders, type IdempotentOutcome } from "../lib/http/idempotency";
import { checkInputShape, checkScalarQuery } from "../lib/http/input-guard";
import { API_DESCRIPTION_ACTIONS } from "../lib/http/openapi/docs.actions";
import {
  ClientAddressResolver,
  RateLimiter,
  callerKey,
  enforce,
  rateClassOf,
  type RateDecision,
} from "../lib/http/rate-limit";
import { readinessOf } from "../lib/http/readiness";
import { requestCallOptions } from "../lib/http/request-id";
import { infrastructureOf } from "../lib/infrastructure";
import {
  CATALOG_PAGE_PARAMS,
  NOTIFICATION_LIST_PARAMS,
  ORDER_LIST_PARAMS,
  ORDER_PARAMS,
  PAYMENT_LIST_PARAMS,
  PLACE_ORDER_PARAMS,
  PRODUCT_PARAMS,
  PRODUCT_UPSERT_PARAMS,
  RESTOCK_PARAMS,
} from "../lib/params";
import type { Principal } from "../lib/principal";
import { GracefulHttpMixin } from "../mixins/graceful-http.mixin";
import { HttpMetricsMixin } from "../mixins/http-metrics.mixin";
import {
  InfrastructureMixin,
  type HealthReport,
  type InfrastructureThis,
} from "../mixins/infrastructure.mixin";

const { MoleculerClientError } = Errors;

interface GatewayVars extends InfrastructureThis {
  accepting: boolean;
  config: Config;
  rateLimiter: RateLimiter;
  clientAddress: ClientAddressResolver;
  tokens: TokenVerifier;
}

/** Longest a required service's `health` may take before /readyz counts it as failed. */
const HEALTH_TIMEOUT_MS = 2000;
const DEV_TOKEN_TTL_SECONDS = 12 * 3600;

const GatewayService: ServiceSchema<ApiSettingsSchema, Record<string, never>, GatewayVars> = {
  name: "gateway",
  mixins: [ApiGateway, InfrastructureMixin({ bus: true, kv: true }), HttpMetricsMixin(), GracefulHttpMixin()],

  // ── settings ───────────────────────────────────────────────────────────
  settings: {
    port: 3000,
    ip: "0.0.0.0",
    routes: [
      {
        path: "/api/v1/payments/webhook",
        mappingPolicy: "restrict",
        mergeParams: false,
        aliases: { "POST /": "gateway.paymentWebhook" },
        bodyParsers: RAW_BODY,
        onBeforeCall(ctx: ApiContext<unknown>, _route: unknown, req: IncomingMessage): void {
          const signature = req.headers[HEADERS.pspSignature];
          ctx.meta.pspSignature = typeof signature === "string" ? signature : "";
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
        bodyParsers: JSON_BODY,
        onBeforeCall(ctx: ApiContext<unknown>, _route: unknown, req: ApiRequest): void {
          requireJsonBody(req.headers);
          // before the validator, which cannot see a merged `__proto__` nor survive any depth
          checkInputShape(req.body, "body");
          checkInputShape(req.query, "query");
          checkScalarQuery(req.query);
          const key = req.headers[HEADERS.idempotencyKey];
          if (typeof key === "string") ctx.meta.idempotencyKey = key;
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
        bodyParsers: NO_BODY,
      },
    ],
    use: [refuseOptions],
    // every request: request id, security headers, REQUEST_TIMEOUT, traceparent (set in `created`)
    rootCallOptions: undefined,
    // errors never carry stack traces out of the process
    log4XXResponses: false,
    onError: sendError,
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
      async handler(ctx: ApiContext) {
        const services = this.broker.registry.getServiceList({ onlyAvailable: true }) as { name: string }[];
        const { ready, checks } = await readinessOf({
          accepting: this.broker.started && this.accepting === true,
          adapters: { bus: this.bus, kv: this.kv },
          requiredServices: this.config.requiredServices,
          availableServices: new Set(services.map((service) => service.name)),
          // untracked: a timed-out call to a frozen node must not hold up this broker's stop
          health: (service) =>
            ctx.call<HealthReport, Record<string, never>>(
              `${service}.health`,
              {},
              { timeout: HEALTH_TIMEOUT_MS, tracking: false },
            ),
        });
        if (!ready) ctx.meta.$statusCode = 503;
        return { status: ready ? "ready" : "not_ready", checks };
      },
    },

    // orders
    placeOrder: {
      visibility: "published",
      params: PLACE_ORDER_PARAMS,
      async handler(ctx: ApiContext<{ items: { sku: string; quantity: number }[]; paymentMethod?: string }>) {
        const principal = requireRole(ctx.meta.user, "customer");
        const key = idempotencyKeyOf(ctx.meta.idempotencyKey, "required");
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
      params: ORDER_LIST_PARAMS,
      handler(ctx: ApiContext<{ customerId?: string }>) {
        const principal = requireRole(ctx.meta.user, "customer", "admin");
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
      params: ORDER_PARAMS,
      handler(ctx: ApiContext<{ id: string }>) {
        requireRole(ctx.meta.user, "customer", "admin");
        return ctx.call("orders.getOrder", ctx.params);
      },
    },

    cancelOrder: {
      visibility: "published",
      params: ORDER_PARAMS,
      async handler(ctx: ApiContext<{ id: string }>) {
        const principal = requireRole(ctx.meta.user, "customer", "admin");
        // the key is optional here: cancelling twice is harmless anyway
        const key = idempotencyKeyOf(ctx.meta.idempotencyKey, "optional");
        if (key === undefined) return ctx.call("orders.cancel", ctx.params);
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
      params: CATALOG_PAGE_PARAMS,
      handler(ctx: ApiContext<{ page?: number; pageSize?: number }>) {
        return ctx.call("inventory.listProducts", ctx.params);
      },
    },

    getProduct: {
      visibility: "published",
      params: PRODUCT_PARAMS,
      handler(ctx: ApiContext<{ sku: string }>) {
        return ctx.call("inventory.getProduct", ctx.params);
      },
    },

    upsertProduct: {
      visibility: "published",
      params: PRODUCT_UPSERT_PARAMS,
      handler(ctx: ApiContext<{ sku: string }>) {
        requireRole(ctx.meta.user, "admin");
        return ctx.call("inventory.upsert", ctx.params);
      },
    },

    restockProduct: {
      visibility: "published",
      params: RESTOCK_PARAMS,
      handler(ctx: ApiContext<{ sku: string; quantity: number }>) {
        requireRole(ctx.meta.user, "admin");
        return ctx.call("inventory.restock", ctx.params);
      },
    },

    // payments
    listPayments: {
      visibility: "published",
      params: PAYMENT_LIST_PARAMS,
      async handler(ctx: ApiContext<{ orderId: string }>) {
        requireRole(ctx.meta.user, "customer", "admin");
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
        const body = rawBodyText(ctx.params.body);
        return ctx.call("payments.webhook", { body, signature: ctx.meta.pspSignature ?? "" });
      },
    },

    // notifications
    listNotifications: {
      visibility: "published",
      params: NOTIFICATION_LIST_PARAMS,
      handler(ctx: ApiContext<{ limit?: number; cursor?: string }>) {
        requireRole(ctx.meta.user, "customer");
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

    // the API's description, built from this schema, and its page
    ...API_DESCRIPTION_ACTIONS,
  },

  // ── methods ────────────────────────────────────────────────────────────
  methods: {
    /**
     * moleculer-web's hook after authentication: take a token from the caller's bucket for this
     * class of request; 429 RATE_LIMITED with Retry-After when it is empty. A key-value store that
     * does not answer lets the request through (logged): limits protect the service, they must
     * not take it down with them.
     */
    async authorize(
      ctx: ApiContext,
      _route: unknown,
      req: IncomingMessage,
      res: ServerResponse,
      alias: ApiAlias,
    ) {
      const address = this.clientAddress.resolve(req.socket.remoteAddress, req.headers[HEADERS.forwardedFor]);
      let decision: RateDecision | null;
      try {
        decision = await this.rateLimiter.take(
          rateClassOf(alias.method, alias.fullPath),
          callerKey(ctx.meta.user?.id, address),
        );
      } catch (err) {
        this.logger.warn(`rate limit not checked (key-value store: ${message(err)})`);
        return;
      }
      enforce(decision, res);
    },

    /**
     * moleculer-web's hook (awaited): the principal of a Bearer token, null without one; 401 for a
     * bad one, 503 when the identity provider's keys cannot be fetched.
     */
    async authenticate(_ctx: Context, _route: unknown, req: IncomingMessage): Promise<Principal | null> {
      const token = bearerTokenOf(req.headers);
      return token === null ? null : this.tokens.verify(token);
    },
  },

  // ── lifecycle ──────────────────────────────────────────────────────────
  created() {
    this.config = infrastructureOf(this.broker).config;
    if (this.config.jwtSecret === undefined)
      throw new ConfigError("JWT_SECRET", "the gateway needs it to verify tokens (at least 16 characters)");
    this.settings.port = this.config.port;
    // moleculer-web calls a function here, though its typings only know the object form
    this.settings.rootCallOptions = requestCallOptions(
      this.config.requestTimeoutMs,
    ) as unknown as ApiSettingsSchema["rootCallOptions"];
    // moleculer-web built its routes before this service's created(): CORS goes on the API one
    const { routes, server } = this as unknown as {
      routes: Parameters<typeof allowOrigins>[0];
      server: Server;
    };
    if (this.config.corsOrigins.length > 0) allowOrigins(routes, "/api/v1", this.config.corsOrigins);
    guardServer(server, this.config.requestTimeoutMs);
    this.clientAddress = new ClientAddressResolver(this.config.trustedProxies);
    if (process.env.ORDERMESH_BENCH_ROUTES === "true") {
      // bench/orders.bench.ts only: the same-run ceiling, a trivial call through the gateway
      (this as unknown as { addRoute(route: unknown): void }).addRoute({
        path: "/_bench",
        mappingPolicy: "restrict",
        aliases: { "GET /ping": "gateway.benchPing" },
        bodyParsers: NO_BODY,
      });
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

/** Status of an idempotent call, and the replay header when it was answered from the store. */
function respond(ctx: ApiContext<unknown>, outcome: IdempotentOutcome<unknown>): void {
  ctx.meta.$statusCode = outcome.status;
  const headers = replayHeaders(outcome);
  if (headers !== undefined) ctx.meta.$responseHeaders = headers;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export default GatewayService;
