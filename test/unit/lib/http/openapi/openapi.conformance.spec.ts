import { ApiContract, coverageProblems } from "../../../../../lib/http/openapi/openapi.conformance";
import { buildOpenApiDocument, servedAliases } from "../../../../../lib/http/openapi/openapi.document";
import { aGateway, ajvCompile } from "../../../../support/openapi";

const gateway = aGateway();
const document = buildOpenApiDocument(gateway);
const served = servedAliases(gateway).map((alias) => ({
  methods: alias.method.toUpperCase(),
  fullPath: alias.path,
}));

const at = "2030-01-02T03:04:05.678Z";
const usd = (minor: number) => ({ minor, currency: "USD" });
const anOrder = () => ({
  id: "0f0e0d0c-0b0a-8908-8706-050403020100",
  customerId: "alice",
  status: "PENDING_PAYMENT",
  items: [{ sku: "MUG-BLUE", quantity: 2, unitPrice: usd(1299) }],
  total: usd(2598),
  paymentMethod: "pm_card_visa",
  paymentDueAt: at,
  statusHistory: [{ status: "PENDING_PAYMENT", at }],
  createdAt: at,
  updatedAt: at,
});

function answer(status: number, body: unknown, headers: Record<string, string> = {}) {
  const all = new Headers({
    "content-type": "application/json; charset=utf-8",
    "x-request-id": "r-1",
    ...headers,
  });
  return { status, headers: all, body };
}

describe("API contract checks", () => {
  const contract = new ApiContract(document, ajvCompile());

  it("finds no gap when the served aliases are exactly the documented operations", () => {
    expect(coverageProblems(document, served)).toEqual([]);
  });

  it("catches a route served without documentation, and an operation documented but not served", () => {
    const problems = coverageProblems(document, [
      ...served.filter((alias) => alias.fullPath !== "/livez"),
      { methods: "DELETE", fullPath: "/api/v1/orders/:id" },
    ]);
    expect(problems).toEqual([
      "served but not documented: DELETE /api/v1/orders/{id}",
      "documented but not served: GET /livez",
    ]);
  });

  it("accepts an answer the document allows", () => {
    const created = answer(201, anOrder(), { location: "/api/v1/orders/x" });
    expect(contract.problemsOf("POST", "/api/v1/orders", created)).toEqual([]);
    expect(contract.problemsOf("GET", "/api/v1/orders/abc?x=1", answer(200, anOrder()))).toEqual([]);
    const error = {
      error: {
        code: "ORDER_NOT_FOUND",
        message: "order abc not found",
        details: { id: "abc" },
        requestId: "r-1",
      },
    };
    expect(contract.problemsOf("GET", "/api/v1/orders/abc", answer(404, error))).toEqual([]);
  });

  it("catches a body that does not match its schema", () => {
    const { status: _status, ...withoutStatus } = anOrder();
    expect(contract.problemsOf("GET", "/api/v1/orders/abc", answer(200, withoutStatus))).toEqual([
      "GET /api/v1/orders/abc → 200: body: / must have required property 'status'",
    ]);
    const extra = { ...anOrder(), internalNote: "do not show" };
    expect(contract.problemsOf("GET", "/api/v1/orders/abc", answer(200, extra))).toEqual([
      'GET /api/v1/orders/abc → 200: body: / has the undocumented property "internalNote"',
    ]);
    const floatMoney = { ...anOrder(), total: { minor: 25.98, currency: "USD" } };
    expect(contract.problemsOf("GET", "/api/v1/orders/abc", answer(200, floatMoney))).toEqual([
      "GET /api/v1/orders/abc → 200: body: /total/minor must be integer",
    ]);
    const leaky = { error: { code: "INTERNAL", message: "x", requestId: "r-1", stack: "at foo.ts:1" } };
    expect(contract.problemsOf("GET", "/api/v1/orders/abc", answer(404, leaky))).toEqual([
      'GET /api/v1/orders/abc → 404: body: /error has the undocumented property "stack"',
    ]);
  });

  it("catches an undocumented status, a missing required header and an undocumented media type", () => {
    expect(contract.problemsOf("GET", "/api/v1/orders/abc", answer(418, {}))).toEqual([
      "GET /api/v1/orders/abc → 418: status not documented for /api/v1/orders/{id}",
    ]);
    expect(contract.problemsOf("POST", "/api/v1/orders", answer(201, anOrder()))).toEqual([
      "POST /api/v1/orders → 201: required header Location missing",
    ]);
    const limited = answer(
      429,
      { error: { code: "RATE_LIMITED", message: "slow down", requestId: "r-1" } },
      { "retry-after": "1" },
    );
    expect(contract.problemsOf("POST", "/api/v1/orders", limited)).toEqual([
      "POST /api/v1/orders → 429: required header RateLimit-Policy missing",
      "POST /api/v1/orders → 429: required header RateLimit missing",
    ]);
    const html = answer(200, "<p>hi</p>", { "content-type": "text/html" });
    expect(contract.problemsOf("GET", "/api/v1/orders/abc", html)).toEqual([
      'GET /api/v1/orders/abc → 200: content type "text/html" not documented (application/json)',
    ]);
    expect(contract.problemsOf("GET", "/api/v1/nothing", answer(404, {}))).toEqual([
      "GET /api/v1/nothing → 404: no documented operation",
    ]);
  });

  it("lists the schemas a strict validator refuses, e.g. a misspelt keyword", () => {
    expect(contract.schemaProblems()).toEqual([]);
    const misspelt = structuredClone(document);
    Object.assign(misspelt.components.schemas.Money as object, { minProperties: 2, maxProperites: 2 });
    expect(new ApiContract(misspelt, ajvCompile()).schemaProblems()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^components\.schemas\.Money: strict mode: unknown keyword: "maxProperites"/),
      ]),
    );
  });
});
