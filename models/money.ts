/**
 * Money: integer minor units and an ISO 4217 currency, never floats (README, "HTTP API (v1)"). Arithmetic stays
 * in safe integers; mixing currencies, overflow and fractional minor units are errors. Percentages
 * are basis points with half-even rounding. Parse and format only at the edges.
 */

/** Minor-unit exponent per currency we trade in. */
export const CURRENCY_EXPONENTS = {
  USD: 2,
  EUR: 2,
  GBP: 2,
  CHF: 2,
  JPY: 0,
  KRW: 0,
  BHD: 3,
  KWD: 3,
} as const;

export type Currency = keyof typeof CURRENCY_EXPONENTS;

/** Wire form: `{ "minor": 1999, "currency": "USD" }`. */
export interface Money {
  readonly minor: number;
  readonly currency: Currency;
}

/** A money rule was broken; `code` is stable across process boundaries. */
export class MoneyError extends Error {
  constructor(
    readonly code: "CURRENCY_MISMATCH" | "UNKNOWN_CURRENCY" | "INVALID_AMOUNT" | "AMOUNT_OVERFLOW",
    message: string,
  ) {
    super(message);
    this.name = "MoneyError";
  }
}

export function isCurrency(value: unknown): value is Currency {
  return typeof value === "string" && Object.hasOwn(CURRENCY_EXPONENTS, value);
}

/** Money from integer minor units. */
export function money(minor: number, currency: string): Money {
  if (!isCurrency(currency)) throw new MoneyError("UNKNOWN_CURRENCY", `unknown currency "${currency}"`);
  return { minor: checked(minor), currency };
}

export function zero(currency: Currency): Money {
  return { minor: 0, currency };
}

export function add(a: Money, b: Money): Money {
  sameCurrency(a, b);
  return { minor: checked(a.minor + b.minor), currency: a.currency };
}

export function subtract(a: Money, b: Money): Money {
  sameCurrency(a, b);
  return { minor: checked(a.minor - b.minor), currency: a.currency };
}

/** `a × quantity` for a whole quantity. */
export function multiply(a: Money, quantity: number): Money {
  if (!Number.isSafeInteger(quantity))
    throw new MoneyError("INVALID_AMOUNT", `quantity ${quantity} is not an integer`);
  return { minor: checked(a.minor * quantity), currency: a.currency };
}

/** Sum of amounts in one currency; the empty sum is zero in `currency`. */
export function sum(amounts: readonly Money[], currency: Currency): Money {
  return amounts.reduce((total, m) => add(total, m), zero(currency));
}

/** `a × basisPoints / 10 000`, rounded half to even (banker's rounding). 1 % = 100 bp. */
export function percentage(a: Money, basisPoints: number): Money {
  if (!Number.isSafeInteger(basisPoints)) {
    throw new MoneyError("INVALID_AMOUNT", `basis points ${basisPoints} is not an integer`);
  }
  const product = BigInt(a.minor) * BigInt(basisPoints);
  return { minor: checked(Number(divideHalfEven(product, 10_000n))), currency: a.currency };
}

export function equals(a: Money, b: Money): boolean {
  return a.currency === b.currency && a.minor === b.minor;
}

export function compare(a: Money, b: Money): -1 | 0 | 1 {
  sameCurrency(a, b);
  return a.minor < b.minor ? -1 : a.minor > b.minor ? 1 : 0;
}

/** Parse a decimal string such as "19.99" in `currency`; more decimals than the currency has is an error. */
export function parse(text: string, currency: string): Money {
  if (!isCurrency(currency)) throw new MoneyError("UNKNOWN_CURRENCY", `unknown currency "${currency}"`);
  const exponent = CURRENCY_EXPONENTS[currency];
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (match === null) throw new MoneyError("INVALID_AMOUNT", `"${text}" is not a decimal amount`);
  const [, sign = "", whole = "0", fraction = ""] = match;
  if (fraction.length > exponent) {
    throw new MoneyError("INVALID_AMOUNT", `"${text}" has more than ${exponent} decimals for ${currency}`);
  }
  const digits = BigInt(whole + fraction.padEnd(exponent, "0"));
  const minor = Number(sign === "-" ? -digits : digits);
  return { minor: checked(minor), currency };
}

/** Plain decimal text, e.g. `19.99`, `1999` (JPY), `1.999` (BHD). */
export function format(a: Money): string {
  const exponent = CURRENCY_EXPONENTS[a.currency];
  const negative = a.minor < 0;
  const digits = String(Math.abs(a.minor)).padStart(exponent + 1, "0");
  const whole = exponent === 0 ? digits : digits.slice(0, -exponent);
  const fraction = exponent === 0 ? "" : `.${digits.slice(-exponent)}`;
  return `${negative ? "-" : ""}${whole}${fraction}`;
}

function checked(minor: number): number {
  if (!Number.isInteger(minor))
    throw new MoneyError("INVALID_AMOUNT", `minor units must be an integer, got ${minor}`);
  if (!Number.isSafeInteger(minor))
    throw new MoneyError("AMOUNT_OVERFLOW", `amount ${minor} is beyond safe integers`);
  // no negative zero (-1 × 0): it would survive JSON as 0 and break equality before that
  return minor === 0 ? 0 : minor;
}

function sameCurrency(a: Money, b: Money): void {
  if (a.currency !== b.currency) {
    throw new MoneyError("CURRENCY_MISMATCH", `cannot combine ${a.currency} with ${b.currency}`);
  }
}

/** n / d rounded half to even, for d > 0. */
function divideHalfEven(n: bigint, d: bigint): bigint {
  const quotient = n / d; // truncates toward zero
  const remainder = n - quotient * d;
  const twice = (remainder < 0n ? -remainder : remainder) * 2n;
  if (twice < d) return quotient;
  const away = quotient + (n < 0n ? -1n : 1n);
  if (twice > d) return away;
  return quotient % 2n === 0n ? quotient : away;
}
