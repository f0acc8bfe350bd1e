import { HEADERS } from "../../../../lib/constants";
import { SECURITY_HEADERS, spelled } from "../../../../lib/http/headers";

describe("header spelling", () => {
  it("spells each name as its specification does", () => {
    expect(spelled(HEADERS.requestId)).toBe("X-Request-Id");
    expect(spelled(HEADERS.idempotencyKey)).toBe("Idempotency-Key");
    expect(spelled(HEADERS.idempotentReplayed)).toBe("Idempotent-Replayed");
    expect(spelled(HEADERS.retryAfter)).toBe("Retry-After");
    expect(spelled(HEADERS.rateLimit)).toBe("RateLimit");
    expect(spelled(HEADERS.rateLimitPolicy)).toBe("RateLimit-Policy");
    expect(spelled(HEADERS.wwwAuthenticate)).toBe("WWW-Authenticate");
    expect(spelled(HEADERS.pspSignature)).toBe("Psp-Signature");
    expect(spelled(HEADERS.traceparent)).toBe("traceparent");
    expect(spelled("CONTENT-TYPE")).toBe("Content-Type");
  });

  it("sends the deny-all security headers", () => {
    expect(SECURITY_HEADERS).toEqual({
      "X-Content-Type-Options": "nosniff",
      "X-Frame-Options": "DENY",
      "Referrer-Policy": "no-referrer",
      "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
      "Cache-Control": "no-store",
    });
  });
});
