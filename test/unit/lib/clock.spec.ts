import { ManualClock, dateOf, systemClock } from "../../../lib/clock";

describe("clock", () => {
  it("reads the real time from the system clock", () => {
    const before = Date.now();
    const now = systemClock.now();
    expect(now).toBeGreaterThanOrEqual(before);
    expect(now).toBeLessThanOrEqual(Date.now());
  });

  it("moves a manual clock only when told, and tells its listeners each time", () => {
    const clock = new ManualClock(new Date("2026-01-01T00:00:00Z"));
    const seen: number[] = [];
    const off = clock.onAdvance(() => seen.push(clock.now()));
    expect(dateOf(clock).toISOString()).toBe("2026-01-01T00:00:00.000Z");
    clock.advance(1500);
    clock.set(new Date("2026-01-01T00:01:00Z"));
    off();
    clock.advance(1);
    expect(seen).toEqual([Date.parse("2026-01-01T00:00:01.500Z"), Date.parse("2026-01-01T00:01:00Z")]);
    expect(clock.now()).toBe(Date.parse("2026-01-01T00:01:00.001Z"));
  });

  it("refuses to move a manual clock backwards", () => {
    const clock = new ManualClock(1000);
    expect(() => clock.advance(-1)).toThrow(RangeError);
    expect(() => clock.set(999)).toThrow(RangeError);
    expect(clock.now()).toBe(1000);
  });
});
