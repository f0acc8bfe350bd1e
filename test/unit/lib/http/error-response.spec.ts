import { Errors } from "moleculer";
import { errorResponse } from "../../../../lib/http/error-response";
import { KeySetUnavailableError } from "../../../../lib/auth/jwks";
import { AuthenticationError } from "../../../../lib/auth/jwt";
import { BreakerOpenError } from "../../../../lib/errors";

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
