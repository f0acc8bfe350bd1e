import fc from "fast-check";
import {
  add,
  compare,
  format,
  money,
  multiply,
  parse,
  percentage,
  subtract,
  sum,
  zero,
  type Money,
} from "../../../models/money";

const currency = fc.constantFrom("USD" as const, "JPY" as const, "BHD" as const);
const amountIn = (c: "USD" | "JPY" | "BHD") =>
  fc.integer({ min: -1e12, max: 1e12 }).map((minor): Money => ({ minor, currency: c }));

describe("money", () => {
  it("knows each currency's exponent when parsing and formatting", () => {
    expect(parse("19.99", "USD")).toEqual({ minor: 1999, currency: "USD" });
    expect(parse("1999", "JPY")).toEqual({ minor: 1999, currency: "JPY" });
    expect(parse("1.999", "BHD")).toEqual({ minor: 1999, currency: "BHD" });
    expect(format(money(5, "USD"))).toBe("0.05");
    expect(format(money(-1205, "USD"))).toBe("-12.05");
    expect(format(money(1999, "JPY"))).toBe("1999");
    expect(format(money(7, "BHD"))).toBe("0.007");
  });

  it.each([
    ["19.999", "USD", "INVALID_AMOUNT"],
    ["1.5", "JPY", "INVALID_AMOUNT"],
    ["abc", "USD", "INVALID_AMOUNT"],
    ["1e3", "USD", "INVALID_AMOUNT"],
    ["10", "XYZ", "UNKNOWN_CURRENCY"],
  ])("refuses to parse %s %s", (text, c, code) => {
    expect(() => parse(text, c)).toThrow(expect.objectContaining({ code }));
  });

  it("refuses floats, mixed currencies and overflow", () => {
    expect(() => money(19.99, "USD")).toThrow(expect.objectContaining({ code: "INVALID_AMOUNT" }));
    expect(() => add(money(1, "USD"), money(1, "EUR"))).toThrow(
      expect.objectContaining({ code: "CURRENCY_MISMATCH" }),
    );
    expect(() => compare(money(1, "USD"), money(1, "JPY"))).toThrow(
      expect.objectContaining({ code: "CURRENCY_MISMATCH" }),
    );
    expect(() => multiply(money(Number.MAX_SAFE_INTEGER, "USD"), 2)).toThrow(
      expect.objectContaining({ code: "AMOUNT_OVERFLOW" }),
    );
    expect(() => multiply(money(100, "USD"), 1.5)).toThrow(
      expect.objectContaining({ code: "INVALID_AMOUNT" }),
    );
  });

  it("rounds percentages half to even in basis points", () => {
    expect(percentage(money(1000, "USD"), 1250).minor).toBe(125); // 12.5 % exact
    expect(percentage(money(5, "USD"), 5000).minor).toBe(2); // 2.5 → 2
    expect(percentage(money(15, "USD"), 5000).minor).toBe(8); // 7.5 → 8
    expect(percentage(money(-5, "USD"), 5000).minor).toBe(-2); // -2.5 → -2
    expect(percentage(money(1, "USD"), 4999).minor).toBe(0); // 0.4999 → 0
    expect(percentage(money(1, "USD"), 5001).minor).toBe(1); // 0.5001 → 1
  });

  it("sums lines, zero for none", () => {
    expect(sum([money(100, "USD"), money(250, "USD")], "USD")).toEqual(money(350, "USD"));
    expect(sum([], "JPY")).toEqual(zero("JPY"));
  });

  it("obeys the arithmetic laws", () => {
    fc.assert(
      fc.property(
        currency.chain((c) => fc.tuple(amountIn(c), amountIn(c), amountIn(c))),
        ([a, b, c]) => {
          expect(add(a, b)).toEqual(add(b, a));
          expect(add(add(a, b), c)).toEqual(add(a, add(b, c)));
          expect(subtract(add(a, b), b)).toEqual(a);
          expect(add(a, zero(a.currency))).toEqual(a);
        },
      ),
    );
  });

  it("multiplies as repeated addition and round-trips through text", () => {
    fc.assert(
      fc.property(
        currency.chain((c) => fc.tuple(amountIn(c), fc.integer({ min: 0, max: 50 }))),
        ([a, n]) => {
          expect(multiply(a, n)).toEqual(
            sum(
              Array.from({ length: n }, () => a),
              a.currency,
            ),
          );
          expect(parse(format(a), a.currency)).toEqual(a);
        },
      ),
    );
  });

  it("never lets a percentage drift more than half a minor unit from the exact value", () => {
    fc.assert(
      fc.property(fc.integer({ min: -1e9, max: 1e9 }), fc.integer({ min: 0, max: 100_000 }), (minor, bp) => {
        const result = percentage(money(minor, "USD"), bp).minor;
        const exactTimes10k = minor * bp;
        expect(Math.abs(result * 10_000 - exactTimes10k)).toBeLessThanOrEqual(5_000);
      }),
    );
  });
});
