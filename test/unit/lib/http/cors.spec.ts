import type { IncomingMessage, ServerResponse } from "node:http";
import { allowOrigins, corsOptions, refuseOptions } from "../../../../lib/http/cors";

describe("CORS options", () => {
  it("lets browsers on the allowed origins send the API's headers and read its answers' headers", () => {
    const options = corsOptions(["https://shop.example.com"]);
    expect(options).toEqual({
      origin: ["https://shop.example.com"],
      methods: ["GET", "POST", "PUT"],
      allowedHeaders: ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id", "traceparent"],
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
    });
  });

  it("turns CORS on for the one route named, and says so when it is missing", () => {
    const routes: { opts: { path: string }; cors?: unknown }[] = [
      { opts: { path: "/" } },
      { opts: { path: "/api/v1" } },
    ];
    allowOrigins(routes, "/api/v1", ["https://a.example"]);
    expect(routes[0]?.cors).toBeUndefined();
    expect(routes[1]?.cors).toMatchObject({ origin: ["https://a.example"] });
    expect(() => allowOrigins(routes, "/api/v2", [])).toThrow("the /api/v2 route is missing");
  });
});

describe("OPTIONS", () => {
  const outcome = (method: string, cors: unknown, headers: IncomingMessage["headers"] = {}): unknown => {
    let passed: unknown = "not called";
    const req = { method, headers, $route: { cors } } as unknown as IncomingMessage;
    refuseOptions(req, {} as ServerResponse, (err?: unknown) => (passed = err));
    return passed;
  };
  const preflight = { "access-control-request-method": "POST" };

  it("lets every other method through", () => {
    expect(outcome("GET", null)).toBeUndefined();
    expect(outcome("POST", {})).toBeUndefined();
  });

  it("passes a preflight on to a route with CORS", () => {
    expect(outcome("OPTIONS", { origin: ["https://a.example"] }, preflight)).toBeUndefined();
  });

  it("refuses 405 an OPTIONS that is no preflight, or on a route without CORS", () => {
    const refused = expect.objectContaining({ code: 405, type: "METHOD_NOT_ALLOWED" });
    expect(outcome("OPTIONS", { origin: ["https://a.example"] })).toEqual(refused);
    expect(outcome("OPTIONS", null, preflight)).toEqual(refused);
  });
});
