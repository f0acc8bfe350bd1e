import type { IncomingMessage, ServerResponse } from "node:http";
import {
  isTraceparent,
  requestCallOptions,
  requestIdOf,
  traceparentOf,
  type RootCallOptions,
} from "../../../../lib/http/request-id";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("request id", () => {
  it("keeps a short, plain id the client sent and replaces anything else", () => {
    expect(requestIdOf("order-42:retry.1_A")).toBe("order-42:retry.1_A");
    expect(requestIdOf("x".repeat(128))).toBe("x".repeat(128));
    for (const given of ["x".repeat(129), "", "a b", "a\nb", "<script>", undefined, null, 7, ["a"]])
      expect(requestIdOf(given)).toMatch(UUID);
    expect(requestIdOf(undefined)).not.toBe(requestIdOf(undefined));
  });
});

describe("trace context", () => {
  it("accepts version 00 with non-zero ids only", () => {
    expect(isTraceparent(TRACEPARENT)).toBe(true);
    expect(isTraceparent(TRACEPARENT.toUpperCase())).toBe(true);
    expect(isTraceparent(`00-${"0".repeat(32)}-00f067aa0ba902b7-01`)).toBe(false);
    expect(isTraceparent(`00-4bf92f3577b34da6a3ce929d0e0e4736-${"0".repeat(16)}-01`)).toBe(false);
    expect(isTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")).toBe(false);
    expect(isTraceparent("00-not-a-trace-01")).toBe(false);
    expect(isTraceparent(`${TRACEPARENT}-extra`)).toBe(false);
  });

  it("carries a well-formed traceparent lower-cased, and drops any other", () => {
    expect(traceparentOf({ traceparent: TRACEPARENT.toUpperCase() })).toBe(TRACEPARENT);
    expect(traceparentOf({ traceparent: "00-not-a-trace-01" })).toBeUndefined();
    expect(traceparentOf({})).toBeUndefined();
  });
});

describe("the per-request hook", () => {
  const run = (options: RootCallOptions, headers: IncomingMessage["headers"]) => {
    const set: Record<string, string> = {};
    const res = {
      setHeader: (name: string, value: string) => (set[name] = value),
    } as unknown as ServerResponse;
    requestCallOptions(1500)(options, { headers } as IncomingMessage, res);
    return set;
  };

  it("fixes the id, bounds the call chain, carries the trace and sets the answer's headers", () => {
    const options: RootCallOptions = { requestID: "client-id", meta: { other: 1 } };
    const headers = run(options, { traceparent: TRACEPARENT });
    expect(options).toEqual({
      requestID: "client-id",
      timeout: 1500,
      meta: { other: 1, traceparent: TRACEPARENT },
    });
    expect(headers).toMatchObject({
      "X-Request-Id": "client-id",
      "X-Content-Type-Options": "nosniff",
      "Cache-Control": "no-store",
    });
  });

  it("gives a request without a usable id a new one, the same in the call and on the answer", () => {
    const options: RootCallOptions = { requestID: "not plain" };
    const headers = run(options, { traceparent: "garbage" });
    expect(options.requestID).toMatch(UUID);
    expect(headers["X-Request-Id"]).toBe(options.requestID);
    expect(options.meta).toBeUndefined();
  });
});
