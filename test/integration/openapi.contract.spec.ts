/**
 * The HTTP API against its own description (/openapi.json), over real HTTP with every service on
 * one broker: (a) the served aliases and the documented operations are the same set, (b) the
 * document is valid OpenAPI 3.1 and every schema in it compiles under a strict JSON Schema 2020-12
 * validator, (c) every operation, called on its happy path and its main error cases, answers a
 * documented status with the documented headers and a body matching its schema.
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import type { ServiceBroker } from "moleculer";
import { issueToken } from "../../lib/auth/jwt";
import type { Role } from "../../lib/constants";
import {
  ApiContract,
  coverageProblems,
  documentedOperations,
  operationKey,
  type AliasListing,
} from "../../lib/http/openapi/openapi.conformance";
import { servedAliases, type GatewaySchema } from "../../lib/http/openapi/openapi.document";
import type { OpenApiDocument } from "../../lib/http/openapi/openapi.types";
import { signPayload } from "../../lib/psp/psp.signature";
import type { PspSimulator } from "../../lib/psp/psp.simulator";
import { startGatewayNode, type GatewayNode, type GatewayNodeOptions } from "../support/gateway-node";
import { ajvCompile } from "../support/openapi";
import { waitFor } from "../support/wait";

const JWT_SECRET = "openapi-contract-secret-0123456789";
const WEBHOOK_SECRET = "whsec_openapi_contract_0123456789";
const REPO_ROOT = join(__dirname, "..", "..");

/**
 * The official OpenAPI 3.1 schema check of @seriousme/openapi-schema-validator (which also resolves
 * every `$ref`). The package is ES-module only, so it runs in a child Node process.
 */
function validateOpenApi(document: OpenApiDocument): { valid: boolean; errors?: unknown } {
  const script = [
    'import { Validator } from "@seriousme/openapi-schema-validator";',
    'let input = "";',
    "for await (const chunk of process.stdin) input += chunk;",
    "const validator = new Validator();",
    "const result = await validator.validate(JSON.parse(input));",
    "process.stdout.write(JSON.stringify({ ...result, version: validator.version ?? null }));",
  ].join("\n");
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: REPO_ROOT,
    input: JSON.stringify(document),
    encoding: "utf8",
  });
  return JSON.parse(out) as { valid: boolean; errors?: unknown };
}

interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

interface CallOptions {
  token?: string;
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as is (with the content type given in `headers`). */
  raw?: string;
  headers?: Record<string, string>;
}

/** A client that holds every answer to the document and remembers which operations it reached. */
class ContractClient {
  readonly problems: string[] = [];
  readonly exercised = new Set<string>();

  constructor(
    readonly base: string,
    private readonly contract: ApiContract,
  ) {}

  token(sub: string, roles: Role[] = ["customer"]): string {
    return issueToken({ sub, roles }, { secret: JWT_SECRET });
  }

  async call(method: string, path: string, options: CallOptions = {}): Promise<Answer> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined = options.raw;
    if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
      signal: AbortSignal.timeout(30_000),
    });
    const type = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
    let parsed: unknown;
    if (type === "application/json") {
      const text = await res.text();
      parsed = text === "" ? null : JSON.parse(text);
    } else if (type.startsWith("text/")) {
      parsed = await res.text();
    } else {
      await res.arrayBuffer();
    }
    const answer = { status: res.status, headers: res.headers, body: parsed };
    this.problems.push(...this.contract.problemsOf(method, path, answer));
    const found = this.contract.operationFor(method, path);
    if (found !== undefined) this.exercised.add(operationKey(method, found.template));
    return answer;
  }
}

/** The error code of an answer in the envelope. */
function codeOf(answer: Answer): unknown {
  return (answer.body as { error?: { code?: unknown } } | null)?.error?.code;
}

describe("OpenAPI contract of the HTTP API", () => {
  const nodes: GatewayNode<PspSimulator | undefined>[] = [];

  /** Every service on one broker, with this suite's secrets. */
  async function startBroker(options: GatewayNodeOptions): Promise<{ broker: ServiceBroker; base: string }> {
    const node = await startGatewayNode({
      name: "openapi",
      jwtSecret: JWT_SECRET,
      webhookSecret: WEBHOOK_SECRET,
      ...options,
    });
    nodes.push(node);
    return { broker: node.broker, base: node.url };
  }

  function gatewaySchemaOf(broker: ServiceBroker): GatewaySchema {
    const gateway = broker.getLocalService("gateway");
    if (gateway === undefined) throw new Error("no gateway");
    return gateway.schema as unknown as GatewaySchema;
  }

  async function documentOf(base: string): Promise<OpenApiDocument> {
    const res = await fetch(`${base}/openapi.json`);
    expect(res.status).toBe(200);
    return (await res.json()) as OpenApiDocument;
  }

  afterEach(async () => {
    for (const node of nodes.splice(0)) await node.stop();
  });

  describe("the document", () => {
    let broker: ServiceBroker;
    let document: OpenApiDocument;

    beforeEach(async () => {
      const started = await startBroker({ simulator: false });
      broker = started.broker;
      document = await documentOf(started.base);
    });

    it("(a) documents every alias the gateway serves, and serves every operation it documents", async () => {
      const aliases = await broker.call<AliasListing[], Record<string, never>>("gateway.listAliases", {});
      expect(aliases.length).toBeGreaterThanOrEqual(19);
      expect(coverageProblems(document, aliases)).toEqual([]);
      // the same from the schema: settings.routes, alias by alias
      const fromRoutes = servedAliases(gatewaySchemaOf(broker)).map((a) => operationKey(a.method, a.path));
      expect(fromRoutes.sort()).toEqual(documentedOperations(document).sort());
      expect(documentedOperations(document)).toEqual(
        expect.arrayContaining([
          "POST /api/v1/orders",
          "GET /livez",
          "GET /readyz",
          "GET /startupz",
          "GET /metrics",
          "GET /openapi.json",
          "GET /docs",
        ]),
      );
    });

    it("(b) is valid OpenAPI 3.1, and every schema in it compiles under strict JSON Schema 2020-12", () => {
      const verdict = validateOpenApi(document);
      expect(verdict).toEqual({ valid: true, version: "3.1" });
      expect(document.openapi).toMatch(/^3\.1\.\d+$/);
      expect(new ApiContract(document, ajvCompile()).schemaProblems()).toEqual([]);
    });
  });

  it("(c) answers every operation as documented, on its happy path and its main error cases", async () => {
    const { broker, base } = await startBroker({ devTokens: true });
    const document = await documentOf(base);
    const api = new ContractClient(base, new ApiContract(document, ajvCompile()));
    const admin = api.token("ops", ["admin"]);
    const bob = api.token("bob");

    // probes and documentation
    for (const path of ["/livez", "/readyz", "/startupz", "/metrics", "/openapi.json", "/docs"])
      expect([path, (await api.call("GET", path)).status]).toEqual([path, 200]);
    for (const file of ["swagger-ui.css", "swagger-ui-bundle.js", "docs.js", "favicon-32x32.png"])
      expect([file, (await api.call("GET", `/docs/${file}`)).status]).toEqual([file, 200]);
    expect((await api.call("GET", "/docs/..%2Fpackage.json")).status).toBe(400);

    // development tokens
    const issued = await api.call("POST", "/api/v1/dev/token", { json: { sub: "alice" } });
    expect(issued.status).toBe(200);
    const alice = (issued.body as { token: string }).token;
    expect(
      (await api.call("POST", "/api/v1/dev/token", { json: { sub: "alice", roles: ["root"] } })).status,
    ).toBe(400);

    // products
    expect((await api.call("GET", "/api/v1/products?pageSize=5")).status).toBe(200);
    expect((await api.call("GET", "/api/v1/products?pageSize=0")).status).toBe(400);
    const badToken = await api.call("GET", "/api/v1/products", {
      headers: { authorization: "Bearer not.a.token" },
    });
    expect([badToken.status, codeOf(badToken)]).toEqual([401, "UNAUTHORIZED"]);
    expect((await api.call("GET", "/api/v1/products/MUG-BLUE")).status).toBe(200);
    const counters = await api.call("GET", "/api/v1/products/MUG-BLUE", { token: admin });
    expect(counters.body).toHaveProperty("received");
    expect(codeOf(await api.call("GET", "/api/v1/products/NO-SUCH-SKU"))).toBe("PRODUCT_NOT_FOUND");
    expect((await api.call("GET", "/api/v1/products/bad%20sku")).status).toBe(400);

    const product = { name: "Contract mug", price: { minor: 999, currency: "EUR" } };
    expect(
      (await api.call("PUT", "/api/v1/products/CONTRACT-1", { token: admin, json: product })).status,
    ).toBe(200);
    expect(
      (await api.call("PUT", "/api/v1/products/CONTRACT-1", { token: alice, json: product })).status,
    ).toBe(403);
    const badPrice = { ...product, price: { minor: 1, currency: "XXX" } };
    expect(
      codeOf(await api.call("PUT", "/api/v1/products/CONTRACT-1", { token: admin, json: badPrice })),
    ).toBe("INVALID_PRICE");
    expect(
      (await api.call("PUT", "/api/v1/products/CONTRACT-1", { token: admin, json: { name: "x" } })).status,
    ).toBe(400);
    const asText = await api.call("PUT", "/api/v1/products/CONTRACT-1", {
      token: admin,
      raw: JSON.stringify(product),
      headers: { "content-type": "text/plain" },
    });
    expect(asText.status).toBe(415);
    const broken = await api.call("PUT", "/api/v1/products/CONTRACT-1", {
      token: admin,
      raw: '{"name": ',
      headers: { "content-type": "application/json" },
    });
    expect(codeOf(broken)).toBe("INVALID_JSON");
    const huge = { ...product, name: "x".repeat(70 * 1024) };
    expect((await api.call("PUT", "/api/v1/products/CONTRACT-1", { token: admin, json: huge })).status).toBe(
      413,
    );
    const restock = (sku: string, token: string, quantity: number) =>
      api.call("POST", `/api/v1/products/${sku}/restock`, { token, json: { quantity } });
    expect((await restock("CONTRACT-1", admin, 5)).status).toBe(200);
    expect(codeOf(await restock("NO-SUCH-SKU", admin, 5))).toBe("PRODUCT_NOT_FOUND");
    expect((await restock("CONTRACT-1", alice, 5)).status).toBe(403);
    expect((await restock("CONTRACT-1", admin, 0)).status).toBe(400);

    // orders
    const place = (token: string | undefined, items: unknown, key?: string) =>
      api.call("POST", "/api/v1/orders", {
        ...(token === undefined ? {} : { token }),
        json: { items },
        ...(key === undefined ? {} : { headers: { "idempotency-key": key } }),
      });
    const mug = [{ sku: "MUG-BLUE", quantity: 1 }];
    const first = await place(alice, mug, "contract-1");
    expect(first.status).toBe(201);
    const orderId = (first.body as { id: string }).id;
    const replayed = await place(alice, mug, "contract-1");
    expect([replayed.status, replayed.headers.get("idempotent-replayed")]).toEqual([201, "true"]);
    expect(codeOf(await place(alice, [{ sku: "MUG-BLUE", quantity: 2 }], "contract-1"))).toBe(
      "IDEMPOTENCY_KEY_REUSED",
    );
    expect(codeOf(await place(alice, mug))).toBe("IDEMPOTENCY_KEY_REQUIRED");
    expect(codeOf(await place(alice, [{ sku: "NO-SUCH-SKU", quantity: 1 }], randomUUID()))).toBe(
      "UNKNOWN_SKU",
    );
    expect(codeOf(await place(alice, [{ sku: "CONTRACT-1", quantity: 1000 }], randomUUID()))).toBe(
      "OUT_OF_STOCK",
    );
    expect(codeOf(await place(alice, [], randomUUID()))).toBe("VALIDATION_ERROR");
    expect((await place(admin, mug, randomUUID())).status).toBe(403);
    expect((await place(undefined, mug, randomUUID())).status).toBe(401);
    const second = await place(alice, [{ sku: "MUG-RED", quantity: 1 }], "contract-2");
    expect(second.status).toBe(201);
    const secondId = (second.body as { id: string }).id;

    expect((await api.call("GET", "/api/v1/orders?limit=1", { token: alice })).status).toBe(200);
    expect((await api.call("GET", "/api/v1/orders?customerId=bob", { token: alice })).status).toBe(403);
    expect(codeOf(await api.call("GET", "/api/v1/orders?cursor=garbage", { token: alice }))).toBe(
      "INVALID_CURSOR",
    );
    expect(
      (await api.call("GET", "/api/v1/orders?customerId=alice&status=PENDING_PAYMENT", { token: admin }))
        .status,
    ).toBe(200);
    expect((await api.call("GET", `/api/v1/orders/${orderId}`, { token: alice })).status).toBe(200);
    expect(codeOf(await api.call("GET", `/api/v1/orders/${orderId}`, { token: bob }))).toBe(
      "ORDER_NOT_FOUND",
    );

    // payments (once the payment exists) and the provider's webhook
    await waitFor(
      "the payment of the order",
      async () =>
        (await broker.call<{ items: unknown[] }, { orderId: string }>("payments.list", { orderId })).items
          .length > 0,
      10_000,
    );
    expect((await api.call("GET", `/api/v1/payments?orderId=${orderId}`, { token: alice })).status).toBe(200);
    expect((await api.call("GET", `/api/v1/payments?orderId=${orderId}`, { token: admin })).status).toBe(200);
    expect(codeOf(await api.call("GET", `/api/v1/payments?orderId=${orderId}`, { token: bob }))).toBe(
      "ORDER_NOT_FOUND",
    );
    expect((await api.call("GET", "/api/v1/payments", { token: alice })).status).toBe(400);

    const event = JSON.stringify({
      id: `evt_contract_${randomUUID()}`,
      type: "customer.created",
      created: Math.floor(Date.now() / 1000),
      data: { object: { id: "cus_contract", object: "customer" } },
    });
    const webhook = (raw: string, signature?: string) =>
      api.call("POST", "/api/v1/payments/webhook", {
        raw,
        headers: {
          "content-type": "application/json",
          ...(signature === undefined ? {} : { "psp-signature": signature }),
        },
      });
    const signed = signPayload(WEBHOOK_SECRET, event, Math.floor(Date.now() / 1000));
    expect((await webhook(event, signed)).body).toEqual({ received: true, ignored: true });
    expect((await webhook(event, signed)).body).toEqual({ received: true, duplicate: true });
    expect(codeOf(await webhook(event))).toBe("INVALID_SIGNATURE");
    expect((await webhook("x".repeat(70 * 1024), signed)).status).toBe(413);

    // cancelling
    const cancel = (id: string, token: string, key?: string) =>
      api.call("POST", `/api/v1/orders/${id}/cancel`, {
        token,
        ...(key === undefined ? {} : { headers: { "idempotency-key": key } }),
      });
    expect((await cancel(orderId, alice, "cancel-1")).status).toBe(200);
    expect((await cancel(orderId, alice, "cancel-1")).headers.get("idempotent-replayed")).toBe("true");
    expect(codeOf(await cancel(secondId, alice, "cancel-1"))).toBe("IDEMPOTENCY_KEY_REUSED");
    expect(codeOf(await cancel(secondId, bob))).toBe("ORDER_NOT_FOUND");
    expect(codeOf(await cancel("no-such-order", alice))).toBe("ORDER_NOT_FOUND");
    expect((await cancel(secondId, admin)).status).toBe(200);

    // notifications (once some were written)
    await waitFor(
      "alice's notifications",
      async () =>
        (
          await broker.call<{ items: unknown[] }, { customerId: string }>("notifications.list", {
            customerId: "alice",
          })
        ).items.length > 0,
      10_000,
    );
    const notes = await api.call("GET", "/api/v1/notifications?limit=2", { token: alice });
    expect((notes.body as { items: unknown[] }).items.length).toBeGreaterThan(0);
    expect((await api.call("GET", "/api/v1/notifications", { token: admin })).status).toBe(403);
    expect((await api.call("GET", "/api/v1/notifications?limit=0", { token: alice })).status).toBe(400);

    expect(api.problems).toEqual([]);
    expect([...api.exercised].sort()).toEqual(documentedOperations(document).sort());
  }, 60_000);

  it("(c) answers rate limits, foreign origins, switched-off dev tokens and an unready cluster as documented", async () => {
    const { broker, base } = await startBroker({
      simulator: false,
      env: {
        // one read, then a refill so slow that the next read is refused
        RATE_LIMIT_READS: "0.01:1",
        CORS_ORIGINS: "https://shop.example.com",
      },
    });
    const api = new ContractClient(base, new ApiContract(await documentOf(base), ajvCompile()));

    expect((await api.call("GET", "/api/v1/products")).status).toBe(200);
    const limited = await api.call("GET", "/api/v1/products");
    expect([limited.status, codeOf(limited)]).toEqual([429, "RATE_LIMITED"]);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    const foreign = await api.call("GET", "/api/v1/products/MUG-BLUE", {
      headers: { origin: "https://elsewhere.example.com" },
    });
    expect(codeOf(foreign)).toBe("ORIGIN_NOT_ALLOWED");
    expect(codeOf(await api.call("POST", "/api/v1/dev/token", { json: { sub: "alice" } }))).toBe("NOT_FOUND");

    const orders = broker.getLocalService("orders");
    if (orders === undefined) throw new Error("orders service missing");
    await broker.destroyService(orders);
    const unready = await api.call("GET", "/readyz");
    expect([unready.status, (unready.body as { status: string }).status]).toEqual([503, "not_ready"]);

    expect(api.problems).toEqual([]);
  });
});
