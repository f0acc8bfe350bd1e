import {
  buildOpenApiDocument,
  openApiDocumentOf,
  servedAliases,
  type GatewaySchema,
} from "../../../../../lib/http/openapi/openapi.document";
import { COMPONENT_SCHEMAS } from "../../../../../lib/http/openapi/openapi.schemas";
import type { OperationObject } from "../../../../../lib/http/openapi/openapi.types";
import { NOTIFICATION_STATUSES } from "../../../../../models/notification";
import { PAYMENT_STATUSES } from "../../../../../models/payment";
import { ID_PARAM, aGateway, codeOf } from "../../../../support/openapi";

function operation(
  doc: ReturnType<typeof buildOpenApiDocument>,
  path: string,
  method: "get" | "post",
): OperationObject {
  const op = doc.paths[path]?.[method];
  if (op === undefined) throw new Error(`${method} ${path} missing`);
  return op;
}

describe("OpenAPI document of the gateway", () => {
  it("turns each alias into an operation: path, query and body parameters from the action's params", () => {
    const doc = buildOpenApiDocument(aGateway());
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toEqual(["/api/v1/orders", "/api/v1/orders/{id}", "/livez"]);

    const get = operation(doc, "/api/v1/orders/{id}", "get");
    expect(get.parameters).toEqual([
      { name: "id", in: "path", required: true, schema: { type: "string", minLength: 1, maxLength: 128 } },
    ]);
    expect(get.security).toEqual([{ bearerAuth: [] }]);

    const list = operation(doc, "/api/v1/orders", "get");
    expect(list.parameters?.map((p) => [p.name, p.in, p.required])).toEqual([
      ["limit", "query", false],
      ["cursor", "query", false],
    ]);
    expect(list.requestBody).toBeUndefined();

    const place = operation(doc, "/api/v1/orders", "post");
    expect(place.requestBody).toEqual({
      required: true,
      content: {
        "application/json": {
          schema: {
            type: "object",
            properties: {
              items: expect.objectContaining({ type: "array" }),
              paymentMethod: { type: "string" },
            },
            required: ["items"],
            additionalProperties: false,
          },
        },
      },
    });
    expect(place.parameters).toEqual([
      expect.objectContaining({ name: "Idempotency-Key", in: "header", required: true }),
    ]);
    expect(operation(doc, "/livez", "get").security).toEqual([]);
  });

  it("derives the errors a route can give, and their headers, from the route", () => {
    const doc = buildOpenApiDocument(aGateway());
    const place = operation(doc, "/api/v1/orders", "post");
    expect(Object.keys(place.responses)).toEqual([
      "201",
      "400",
      "401",
      "403",
      "409",
      "413",
      "415",
      "422",
      "429",
      "503",
    ]);
    expect(place.responses["400"]?.description).toContain("`VALIDATION_ERROR`");
    expect(place.responses["400"]?.description).toContain("`INVALID_JSON`");
    expect(place.responses["201"]?.headers).toMatchObject({
      "X-Request-Id": { $ref: "#/components/headers/X-Request-Id" },
      Location: { $ref: "#/components/headers/Location" },
      "Idempotent-Replayed": { $ref: "#/components/headers/Idempotent-Replayed" },
    });
    const limited = place.responses["429"];
    expect(limited?.description).toContain("`RATE_LIMITED`");
    expect(limited?.headers).toMatchObject({
      "Retry-After": { $ref: "#/components/headers/Retry-After" },
      RateLimit: { required: true },
      "RateLimit-Policy": { required: true },
    });
    expect(place.responses["401"]?.headers).toHaveProperty("WWW-Authenticate");
    expect(place.responses["503"]?.headers).toHaveProperty("Retry-After");
    expect(place.responses["503"]?.content).toEqual({
      "application/json": { schema: { $ref: "#/components/schemas/Error" } },
    });
    // a GET reads no body: no 413 / 415
    expect(Object.keys(operation(doc, "/api/v1/orders", "get").responses)).not.toContain("415");
    // outside the API route: no authentication, no rate limit
    expect(Object.keys(operation(doc, "/livez", "get").responses)).toEqual(["200"]);
  });

  it("refuses an alias whose action the operations table does not document", () => {
    const gateway = aGateway({ "GET /secrets": "gateway.secrets" }, { secrets: { handler: () => [] } });
    expect(codeOf(() => buildOpenApiDocument(gateway))).toBe("UNDOCUMENTED_OPERATION");
    expect(() => buildOpenApiDocument(gateway)).toThrow("GET /api/v1/secrets calls gateway.secrets");
  });

  it("refuses aliases it cannot describe truthfully", () => {
    const cases: [Record<string, string>, Record<string, unknown>, string][] = [
      // a path parameter the params do not check
      [
        { "GET /payments/:orderId": "gateway.listPayments" },
        { listPayments: { params: { $$strict: true } } },
        "UNSUPPORTED_ALIAS",
      ],
      // a query number that text can never satisfy
      [
        { "GET /notifications": "gateway.listNotifications" },
        { listNotifications: { params: { limit: { type: "number", optional: true } } } },
        "UNSUPPORTED_PARAM_RULE",
      ],
      // no method, REST shorthand, a pattern in the path, an action that does not exist
      [{ "/orders/:id": "gateway.getOrder" }, {}, "UNSUPPORTED_ALIAS"],
      [{ "REST /products": "gateway.products" }, {}, "UNSUPPORTED_ALIAS"],
      [{ "GET /orders/:id(\\d+)": "gateway.getOrder" }, {}, "UNSUPPORTED_ALIAS"],
      [
        { "GET /notifications": "gateway.listNotifications" },
        { listNotifications: undefined },
        "UNSUPPORTED_ALIAS",
      ],
      // the gateway as it is: the control case
      [{}, {}, "no error"],
    ];
    for (const [aliases, actions, expected] of cases) {
      const code = codeOf(() => buildOpenApiDocument(aGateway(aliases, actions)));
      expect([aliases, code]).toEqual([aliases, expected]);
    }
    // an operation that needs a token, on a route that never authenticates
    const unauthenticated: GatewaySchema = {
      name: "gateway",
      settings: { routes: [{ path: "/", aliases: { "GET /orders/:id": "gateway.getOrder" } }] },
      actions: { getOrder: { params: { id: ID_PARAM } } },
    };
    expect(codeOf(() => buildOpenApiDocument(unauthenticated))).toBe("UNSUPPORTED_ALIAS");
  });

  it("lists the aliases it serves with their OpenAPI templates", () => {
    expect(servedAliases(aGateway()).map((a) => `${a.method} ${a.path} ${a.template} ${a.action}`)).toEqual([
      "post /api/v1/orders /api/v1/orders gateway.placeOrder",
      "get /api/v1/orders /api/v1/orders gateway.listOrders",
      "get /api/v1/orders/:id /api/v1/orders/{id} gateway.getOrder",
      "get /livez /livez gateway.livez",
    ]);
  });

  it("builds once per schema and hands out a frozen document", () => {
    const gateway = aGateway();
    const first = openApiDocumentOf(gateway);
    expect(openApiDocumentOf(gateway)).toBe(first);
    expect(Object.isFrozen(first.paths)).toBe(true);
    expect(openApiDocumentOf(aGateway())).not.toBe(first);
  });

  it("resolves every schema reference it makes", () => {
    const doc = buildOpenApiDocument(aGateway());
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of refs) {
      const [, section, name] = /#\/components\/(schemas|headers)\/([^"]+)/.exec(ref) ?? [];
      expect([ref, doc.components[section as "schemas" | "headers"]?.[name as string]]).toEqual([
        ref,
        expect.any(Object),
      ]);
    }
  });

  it("documents the payment and notification statuses the models define", () => {
    const status = (schema: unknown) => (schema as { properties: Record<string, unknown> }).properties.status;
    expect(status(COMPONENT_SCHEMAS.Payment)).toEqual({ type: "string", enum: [...PAYMENT_STATUSES] });
    expect(status(COMPONENT_SCHEMAS.Notification)).toEqual({
      type: "string",
      enum: [...NOTIFICATION_STATUSES],
    });
  });
});
