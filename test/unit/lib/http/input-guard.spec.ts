import { MAX_INPUT_DEPTH, checkInputShape, checkScalarQuery } from "../../../../lib/http/input-guard";

const nested = (depth: number): unknown => {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
};

describe("input guard", () => {
  it("refuses prototype keys at any level, as JSON.parse leaves them", () => {
    for (const body of [
      '{"__proto__":{}}',
      '{"items":[{"constructor":{"prototype":1}}]}',
      '{"a":{"prototype":1}}',
    ])
      expect(() => checkInputShape(JSON.parse(body), "body")).toThrow(
        expect.objectContaining({ code: 400, type: "VALIDATION_ERROR" }),
      );
    expect(() => checkInputShape({ items: [{ sku: "MUG-BLUE", quantity: 1 }] }, "body")).not.toThrow();
  });

  it("refuses nesting beyond the limit without recursing, and names where", () => {
    expect(() => checkInputShape({ items: nested(MAX_INPUT_DEPTH - 2) }, "body")).not.toThrow();
    expect(() => checkInputShape({ items: nested(MAX_INPUT_DEPTH) }, "body")).toThrow(
      expect.objectContaining({
        type: "VALIDATION_ERROR",
        data: [expect.objectContaining({ type: "depth" })],
      }),
    );
    // far deeper than any call stack would survive
    expect(() => checkInputShape({ sub: nested(200_000) }, "body")).toThrow(
      expect.objectContaining({ code: 400 }),
    );
  });

  it("takes only plain values in the query", () => {
    expect(() => checkScalarQuery({ limit: "10", cursor: "abc" })).not.toThrow();
    expect(() => checkScalarQuery({ limit: ["1"] })).toThrow(expect.objectContaining({ code: 400 }));
    expect(() => checkScalarQuery({ a: { b: "c" } })).toThrow(expect.objectContaining({ code: 400 }));
  });
});
