import fc from "fast-check";
import {
  array,
  formatIssues,
  integer,
  isoTimestamp,
  literal,
  object,
  optional,
  string,
} from "../../../models/schema";

describe("schema", () => {
  const line = object({
    sku: string({ pattern: /^[A-Z0-9-]{1,32}$/ }),
    quantity: integer({ min: 1, max: 1000 }),
    note: optional(string({ maxLength: 10 })),
  });
  const order = object({
    items: array(line, { minItems: 1, maxItems: 3 }),
    status: literal("NEW", "PAID"),
    at: isoTimestamp(),
  });

  it("accepts a valid value and reports nothing", () => {
    expect(
      order.check({ items: [{ sku: "A-1", quantity: 2 }], status: "NEW", at: "2026-01-31T12:00:00.000Z" }),
    ).toEqual([]);
  });

  it("reports every problem with its path", () => {
    const issues = order.check({ items: [{ sku: "a", quantity: 0, extra: 1 }], status: "LOST" });
    expect(issues.map((i) => i.path).sort()).toEqual([
      "at",
      "items[0].extra",
      "items[0].quantity",
      "items[0].sku",
      "status",
    ]);
    expect(formatIssues(issues)).toContain("items[0].quantity must be between 1 and 1000");
  });

  it("refuses unknown fields, missing fields, wrong types and bounds", () => {
    expect(line.check({ sku: "A", quantity: 1, status: "PAID" })).toEqual([
      { path: "status", message: "is not allowed" },
    ]);
    expect(line.check({ sku: "A" })).toEqual([{ path: "quantity", message: "is required" }]);
    expect(line.check({ sku: "A", quantity: 1.5 })[0]?.path).toBe("quantity");
    expect(line.check({ sku: "A", quantity: 1, note: "far too long a note" })[0]?.path).toBe("note");
    expect(order.check({ items: [], status: "NEW", at: "2026-01-31T12:00:00.000Z" })[0]?.message).toContain(
      "at least 1",
    );
    expect(line.check(null)).toEqual([{ path: "", message: "must be an object" }]);
    expect(line.check([1])).toEqual([{ path: "", message: "must be an object" }]);
  });

  it("accepts only canonical UTC timestamps", () => {
    expect(isoTimestamp().check("2026-01-31T12:00:00Z")).toHaveLength(1);
    expect(isoTimestamp().check("2026-02-28T23:59:59.999Z")).toEqual([]);
    expect(isoTimestamp().check("2026-02-31T12:00:00.000Z")).toHaveLength(1);
    expect(isoTimestamp().check("2026-13-01T12:00:00.000Z")).toHaveLength(1);
  });

  it("never throws, whatever it is given", () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        expect(Array.isArray(order.check(value))).toBe(true);
      }),
    );
  });

  it("describes itself for documentation", () => {
    expect(line.describe).toMatchObject({
      type: "object",
      additionalProperties: false,
      required: ["sku", "quantity"],
    });
  });
});
