import { canonicalJson, fingerprintOf } from "../../../../lib/http/idempotency";

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
