import { convertParams, convertRule } from "../../../../../lib/http/openapi/params.converter";
import { ORDER_ITEMS_PARAM, PAYMENT_METHOD_PARAM } from "../../../../../lib/params";
import { codeOf } from "../../../../support/openapi";

describe("fastest-validator params as JSON Schema", () => {
  it("converts strings with limits and a pattern", () => {
    expect(convertRule({ type: "string", min: 1, max: 64, pattern: /^[A-Z]{3}$/ }, "p")).toEqual({
      schema: { type: "string", minLength: 1, maxLength: 64, pattern: "^[A-Z]{3}$" },
      optional: false,
      acceptsText: true,
    });
    expect(convertRule({ type: "string", length: 3, empty: false }, "p").schema).toEqual({
      type: "string",
      minLength: 3,
      maxLength: 3,
    });
  });

  it("converts integers and numbers, and notes whether text converts to them", () => {
    const limit = convertRule(
      { type: "number", integer: true, min: 1, max: 100, optional: true, convert: true },
      "p",
    );
    expect(limit).toEqual({
      schema: { type: "integer", minimum: 1, maximum: 100 },
      optional: true,
      acceptsText: true,
    });
    const price = convertRule({ type: "number", positive: true }, "p");
    expect(price).toEqual({
      schema: { type: "number", exclusiveMinimum: 0 },
      optional: false,
      acceptsText: false,
    });
  });

  it("converts enums, arrays and strict objects, nested", () => {
    expect(
      convertRule(
        {
          type: "array",
          min: 1,
          max: 2,
          unique: true,
          optional: true,
          items: { type: "enum", values: ["customer", "admin"] },
        },
        "p",
      ),
    ).toEqual({
      schema: {
        type: "array",
        minItems: 1,
        maxItems: 2,
        uniqueItems: true,
        items: { type: "string", enum: ["customer", "admin"] },
      },
      optional: true,
      acceptsText: false,
    });
    expect(convertRule(ORDER_ITEMS_PARAM, "items").schema).toEqual({
      type: "array",
      minItems: 1,
      maxItems: 100,
      items: {
        type: "object",
        properties: {
          sku: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$" },
          quantity: { type: "integer", minimum: 1, maximum: 1000 },
        },
        required: ["sku", "quantity"],
        additionalProperties: false,
      },
    });
  });

  it('keeps an object open unless it is strict, and `strict: "remove"` open too', () => {
    const props = { a: { type: "string" }, b: { type: "number", optional: true } };
    expect(convertRule({ type: "object", props }, "p").schema).toEqual({
      type: "object",
      properties: { a: { type: "string" }, b: { type: "number" } },
      required: ["a"],
    });
    expect(convertRule({ type: "object", strict: "remove", props }, "p").schema).not.toHaveProperty(
      "additionalProperties",
    );
  });

  it("reads $$strict at the top level and a default as optional", () => {
    const converted = convertParams(
      {
        $$strict: true,
        items: ORDER_ITEMS_PARAM,
        paymentMethod: PAYMENT_METHOD_PARAM,
        page: { type: "number", default: 1 },
      },
      "action",
    );
    expect(converted.closed).toBe(true);
    expect(Object.keys(converted.properties)).toEqual(["items", "paymentMethod", "page"]);
    expect(converted.properties.paymentMethod?.optional).toBe(true);
    expect(converted.properties.page).toMatchObject({
      optional: true,
      schema: { type: "number", default: 1 },
    });
    expect(convertParams({ a: { type: "string" } }, "action").closed).toBe(false);
  });

  it("refuses, at build time, every rule it does not know", () => {
    const refused: unknown[] = [
      { type: "email" },
      { type: "string", trim: true },
      { type: "number", integer: true, mnimum: 1 },
      { type: "array", items: { type: "uuid" } },
      { type: "object", props: { when: { type: "date" } } },
      { type: "string", pattern: /^a$/i },
      { type: "enum", values: [] },
      { type: "number", max: Infinity },
      "string|min:3",
      [{ type: "string" }, { type: "number" }],
      { optional: true },
    ];
    for (const rule of refused)
      expect([rule, codeOf(() => convertRule(rule, "p"))]).toEqual([rule, "UNSUPPORTED_PARAM_RULE"]);
    expect(codeOf(() => convertParams({ $$async: true }, "action"))).toBe("UNSUPPORTED_PARAM_RULE");
    expect(codeOf(() => convertParams({ $$strict: "yes" }, "action"))).toBe("UNSUPPORTED_PARAM_RULE");
  });

  it("names where the unknown rule is", () => {
    expect(() =>
      convertParams(
        { items: { type: "array", items: { type: "object", props: { at: { type: "date" } } } } },
        "gateway.x params",
      ),
    ).toThrow('gateway.x params.items[].at: cannot describe the rule type "date"');
  });
});
