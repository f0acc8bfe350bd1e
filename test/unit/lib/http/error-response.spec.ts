import type { IncomingMessage, ServerResponse } from "node:http";
import { Errors } from "moleculer";
import { asClientError, errorResponse, sendError } from "../../../../lib/http/error-response";
import { KeySetUnavailableError } from "../../../../lib/auth/jwks";
import { AuthenticationError } from "../../../../lib/auth/jwt";
import {
  BreakerOpenError,
  DOMAIN_REFUSALS,
  TransactionConflictError,
  refusalStatusOf,
} from "../../../../lib/errors";
import { InventoryError } from "../../../../models/inventory";
import { OrderError } from "../../../../models/order";

describe("error response mapper", () => {
  it("keeps a client error's status, code, message and details", () => {
    const err = new Errors.MoleculerClientError("no stock", 409, "OUT_OF_STOCK", { items: [{ sku: "A" }] });
    expect(errorResponse(err, "r1")).toEqual({
      status: 409,
      headers: {},
      body: {
        error: {
          code: "OUT_OF_STOCK",
          message: "no stock",
          details: { items: [{ sku: "A" }] },
          requestId: "r1",
        },
      },
    });
  });

  it("answers validation errors with 400 and the fields, not the values", () => {
    const err = new Errors.ValidationError("bad", "VALIDATION_ERROR", [
      { field: "items", message: "must be an array", type: "array", actual: "secret" },
    ]);
    const res = errorResponse(err, "r2");
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("VALIDATION_ERROR");
    expect(JSON.stringify(res.body)).not.toContain("secret");
  });

  it("maps body-parser failures to 400 and 413", () => {
    expect(errorResponse({ type: "entity.parse.failed", status: 400 }, "r").status).toBe(400);
    expect(errorResponse({ type: "entity.too.large", status: 413 }, "r").body.error.code).toBe(
      "PAYLOAD_TOO_LARGE",
    );
  });

  it("turns unavailable dependencies into 503 with Retry-After, saying nothing inside", () => {
    const res = errorResponse(new BreakerOpenError("psp"), "r");
    expect(res).toMatchObject({ status: 503, headers: { "Retry-After": "1" } });
    expect(res.body.error.message).not.toContain("psp");
    expect(errorResponse(new Errors.ServiceNotFoundError({ action: "x.y" }), "r").status).toBe(503);
    expect(errorResponse(new Errors.RequestTimeoutError({ action: "x.y", nodeID: "n" }), "r").status).toBe(
      503,
    );
  });

  it("answers 503 with Retry-After when the identity provider's keys cannot be had, 401 for a bad token", () => {
    const cause = new Error("connect ECONNREFUSED 10.0.0.7:8443 https://id.internal/jwks.json");
    const res = errorResponse(new KeySetUnavailableError(cause), "r");
    expect(res).toEqual({
      status: 503,
      headers: { "Retry-After": "1" },
      body: {
        error: {
          code: "SERVICE_UNAVAILABLE",
          message: "temporarily unavailable, retry shortly",
          requestId: "r",
        },
      },
    });
    expect(errorResponse(new AuthenticationError("TOKEN_EXPIRED", "token expired"), "r")).toMatchObject({
      status: 401,
      headers: {},
      body: { error: { code: "TOKEN_EXPIRED", message: "token expired" } },
    });
  });

  it("hides everything about an unexpected error", () => {
    const res = errorResponse(
      new TypeError("cannot read properties of undefined (reading 'x') at /srv/a.ts"),
      "r",
    );
    expect(res.status).toBe(500);
    expect(res.body.error).toEqual({ code: "INTERNAL", message: "internal error", requestId: "r" });
    expect(errorResponse("a string", "r").status).toBe(500);
  });
});

describe("domain refusals", () => {
  it("become client errors with their status, code, message and details", () => {
    const illegal = asClientError(
      new OrderError("ILLEGAL_ORDER_TRANSITION", "cannot cancel a DELIVERED order", { from: "DELIVERED" }),
    );
    expect(illegal).toBeInstanceOf(Errors.MoleculerClientError);
    expect(illegal).toMatchObject({
      code: 409,
      type: "ILLEGAL_ORDER_TRANSITION",
      message: "cannot cancel a DELIVERED order",
      data: { from: "DELIVERED" },
      retryable: false,
    });
    expect(asClientError(new OrderError("INVALID_ORDER", "an order has at most 100 lines"))).toMatchObject({
      code: 422,
      type: "INVALID_ORDER",
    });
    for (const code of ["INVALID_RESERVATION", "INVALID_QUANTITY"] as const)
      expect(asClientError(new InventoryError(code, "no"))).toMatchObject({ code: 422, type: code });
  });

  it("take 409 for any aggregate's illegal transition, listed or not", () => {
    expect(refusalStatusOf("ILLEGAL_RESERVATION_TRANSITION")).toBe(409);
    expect(refusalStatusOf("ILLEGAL_PAYMENT_TRANSITION")).toBe(409);
    expect(refusalStatusOf("ILLEGAL_TRANSITION")).toBeUndefined();
    for (const [code, status] of Object.entries(DOMAIN_REFUSALS)) expect(refusalStatusOf(code)).toBe(status);
  });

  it("leave every other error as it is", () => {
    const conflict = new TransactionConflictError("busy");
    expect(asClientError(conflict)).toBe(conflict);
    const client = new Errors.MoleculerClientError("no stock", 409, "OUT_OF_STOCK");
    expect(asClientError(client)).toBe(client);
    for (const code of ["INVALID_CONFIG", "DUPLICATE_KEY", "constructor", "toString", 422]) {
      const err = Object.assign(new Error("x"), { code });
      expect(asClientError(err)).toBe(err);
    }
    expect(asClientError("text")).toBe("text");
    expect(asClientError(null)).toBeNull();
  });

  it("answer their 4xx in the envelope even when a service let one through unmapped", () => {
    const res = errorResponse(new OrderError("ILLEGAL_ORDER_TRANSITION", "cannot ship", { id: "o1" }), "r");
    expect(res).toEqual({
      status: 409,
      headers: {},
      body: {
        error: {
          code: "ILLEGAL_ORDER_TRANSITION",
          message: "cannot ship",
          details: { id: "o1" },
          requestId: "r",
        },
      },
    });
  });
});

describe("the gateway's error answer", () => {
  const answer = (err: unknown, requestID: string | null = "rid") => {
    const headers: Record<string, string> = {};
    let status = 0;
    let text = "";
    const res = {
      setHeader: (name: string, value: string) => (headers[name] = value),
      writeHead: (code: number) => (status = code),
      end: (body: string) => (text = body),
    } as unknown as ServerResponse;
    sendError({ $ctx: { requestID } } as unknown as IncomingMessage, res, err);
    return { status, headers, body: JSON.parse(text) as unknown };
  };

  it("is JSON with the request's id", () => {
    expect(answer(new Errors.MoleculerClientError("no stock", 409, "OUT_OF_STOCK"))).toEqual({
      status: 409,
      headers: { "Content-Type": "application/json; charset=utf-8" },
      body: { error: { code: "OUT_OF_STOCK", message: "no stock", requestId: "rid" } },
    });
  });

  it("tells a 401 how to authenticate and a 503 when to retry", () => {
    expect(answer(new AuthenticationError("UNAUTHORIZED", "bad token")).headers).toMatchObject({
      "WWW-Authenticate": 'Bearer realm="ordermesh"',
    });
    expect(answer(new BreakerOpenError("psp")).headers).toMatchObject({ "Retry-After": "1" });
  });

  it("sends an empty request id when the request never got one", () => {
    expect(answer(new Error("boom"), null).body).toEqual({
      error: { code: "INTERNAL", message: "internal error", requestId: "" },
    });
  });
});
