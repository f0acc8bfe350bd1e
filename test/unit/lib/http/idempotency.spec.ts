import {
  canonicalJson,
  fingerprintOf,
  idempotencyKeyOf,
  replayHeaders,
} from "../../../../lib/http/idempotency";

describe("request fingerprints", () => {
  it("ignore key order at every depth, and nothing else", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}',
    );
    expect(fingerprintOf({ items: [{ sku: "A", quantity: 1 }] })).toBe(
      fingerprintOf({ items: [{ quantity: 1, sku: "A" }] }),
    );
    expect(fingerprintOf({ items: [{ sku: "A", quantity: 1 }] })).not.toBe(
      fingerprintOf({ items: [{ sku: "A", quantity: 2 }] }),
    );
    expect(fingerprintOf([1, 2])).not.toBe(fingerprintOf([2, 1]));
  });
});

describe("the Idempotency-Key header", () => {
  it("is taken when it is 1 to 255 printable ASCII characters", () => {
    expect(idempotencyKeyOf("order-1", "required")).toBe("order-1");
    expect(idempotencyKeyOf("~!x".repeat(85), "optional")).toBe("~!x".repeat(85));
  });

  it("is 400 IDEMPOTENCY_KEY_REQUIRED when a route needs one and there is none", () => {
    expect(() => idempotencyKeyOf(undefined, "required")).toThrow(
      expect.objectContaining({ code: 400, type: "IDEMPOTENCY_KEY_REQUIRED" }),
    );
    expect(idempotencyKeyOf(undefined, "optional")).toBeUndefined();
  });

  it("is 400 INVALID_IDEMPOTENCY_KEY when malformed, required or not", () => {
    for (const key of ["", "a b", "x".repeat(256), "caf\u00e9", "a\tb"])
      for (const need of ["required", "optional"] as const)
        expect(() => idempotencyKeyOf(key, need)).toThrow(
          expect.objectContaining({ code: 400, type: "INVALID_IDEMPOTENCY_KEY" }),
        );
  });

  it("marks a replayed answer, and only that", () => {
    expect(replayHeaders({ replayed: true, status: 201, body: {} })).toEqual({
      "Idempotent-Replayed": "true",
    });
    expect(replayHeaders({ replayed: false, status: 201, body: {} })).toBeUndefined();
  });
});
