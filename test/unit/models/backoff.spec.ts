import { retryDelayMs } from "../../../models/backoff";

/** Just below 1: the largest value Math.random() can return, near enough. */
const TOP = 1 - Number.EPSILON;

describe("retryDelayMs (full-jitter exponential backoff)", () => {
  it("spans 0 up to base·2^(failures-1)", () => {
    expect(retryDelayMs(1, 500, 60_000, () => 0)).toBe(0);
    expect(retryDelayMs(1, 500, 60_000, () => TOP)).toBe(499);
    expect(retryDelayMs(1, 500, 60_000, () => 0.5)).toBe(250);
  });

  it("doubles its ceiling with each failure", () => {
    const ceilings = [1, 2, 3, 4, 5, 6].map((n) => retryDelayMs(n, 500, 60_000, () => TOP) + 1);
    expect(ceilings).toEqual([500, 1_000, 2_000, 4_000, 8_000, 16_000]);
  });

  it("never exceeds the maximum, however many failures", () => {
    expect(retryDelayMs(8, 500, 60_000, () => TOP)).toBe(59_999);
    expect(retryDelayMs(10_000, 500, 60_000, () => TOP)).toBe(59_999);
    expect(Number.isFinite(retryDelayMs(10_000, 500, 60_000))).toBe(true);
  });

  it("draws uniformly: random delays stay in range and spread over it", () => {
    const samples = Array.from({ length: 2_000 }, () => retryDelayMs(3, 100, 60_000));
    expect(samples.every((d) => Number.isInteger(d) && d >= 0 && d < 400)).toBe(true);
    expect(samples.filter((d) => d < 200).length).toBeGreaterThan(800);
    expect(samples.filter((d) => d >= 200).length).toBeGreaterThan(800);
  });

  it("treats a zero base as no delay", () => {
    expect(retryDelayMs(5, 0, 60_000, () => TOP)).toBe(0);
  });
});
