import fc from "fast-check";
import { MemoryKeyValueStore } from "../../../lib/kv/memory.adapter";

/** A clock that moves only when told to. */
class ManualClock {
  private t = 1_700_000_000_000;
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

describe("memory key-value store", () => {
  let clock: ManualClock;
  let store: MemoryKeyValueStore;

  beforeEach(async () => {
    clock = new ManualClock();
    store = new MemoryKeyValueStore({ now: clock.now });
    await store.open();
  });
  afterEach(async () => {
    await store.close();
  });

  describe("expiry", () => {
    it("keeps a key until its TTL has elapsed, to the millisecond", async () => {
      await store.set("k", "v", 1_000);
      clock.advance(999);
      expect(await store.get("k")).toBe("v");
      expect(await store.ttl("k")).toBe(1);
      clock.advance(1);
      expect(await store.get("k")).toBeNull();
      expect(await store.ttl("k")).toBeNull();
    });

    it("counts the TTL down with the clock", async () => {
      await store.set("k", "v", 10_000);
      expect(await store.ttl("k")).toBe(10_000);
      clock.advance(2_500);
      expect(await store.ttl("k")).toBe(7_500);
    });

    it("compareAndSet keeps the remaining TTL, or restarts it when given one", async () => {
      await store.set("k", "a", 10_000);
      clock.advance(4_000);
      expect(await store.compareAndSet("k", "a", "b")).toBe(true);
      expect(await store.ttl("k")).toBe(6_000);
      expect(await store.compareAndSet("k", "b", "c", 9_000)).toBe(true);
      expect(await store.ttl("k")).toBe(9_000);
    });

    it("treats an expired key as absent for conditional writes", async () => {
      await store.set("k", "old", 100);
      clock.advance(100);
      expect(await store.compareAndSet("k", "old", "new")).toBe(false);
      expect(await store.compareAndSet("k", null, "new", 1_000)).toBe(true);
      expect(await store.setIfAbsent("k", "other", 1_000)).toBe(false);
      clock.advance(1_000);
      expect(await store.setIfAbsent("k", "other", 1_000)).toBe(true);
    });

    it("sets the TTL of a counter only when an increment creates it", async () => {
      expect(await store.increment("n", 1, 5_000)).toBe(1);
      clock.advance(3_000);
      expect(await store.increment("n", 1, 5_000)).toBe(2);
      expect(await store.ttl("n")).toBe(2_000);
      clock.advance(2_000);
      expect(await store.increment("n", 1, 5_000)).toBe(1);
      expect(await store.ttl("n")).toBe(5_000);
    });

    it("sweeps expired keys without reads, and stops sweeping on close", async () => {
      jest.useFakeTimers();
      try {
        const swept = new MemoryKeyValueStore({ now: clock.now, sweepIntervalMs: 1_000 });
        await swept.open();
        await swept.set("a", "1", 500);
        await swept.set("b", "2", 500);
        await swept.set("forever", "3");
        clock.advance(500);
        expect(swept.size).toBe(3);
        jest.advanceTimersByTime(1_000);
        expect(swept.size).toBe(1);
        expect(await swept.get("forever")).toBe("3");
        await swept.close();
        expect(jest.getTimerCount()).toBe(0);
      } finally {
        jest.useRealTimers();
      }
    });
  });

  describe("token bucket", () => {
    it("denies the first take past capacity with the exact wait for one token", async () => {
      // capacity 10, 2 tokens/s: one token every 500 ms
      for (let left = 9; left >= 0; left--) {
        expect(await store.takeTokens("b", 10, 2)).toMatchObject({ allowed: true, remaining: left });
      }
      expect(await store.takeTokens("b", 10, 2)).toEqual({ allowed: false, remaining: 0, retryAfterMs: 500 });
      clock.advance(499);
      expect(await store.takeTokens("b", 10, 2)).toEqual({ allowed: false, remaining: 0, retryAfterMs: 1 });
      clock.advance(1);
      expect(await store.takeTokens("b", 10, 2)).toEqual({ allowed: true, remaining: 0, retryAfterMs: 500 });
    });

    it("reports no wait while the bucket still holds the cost", async () => {
      expect(await store.takeTokens("b", 10, 2, 3)).toEqual({ allowed: true, remaining: 7, retryAfterMs: 0 });
    });

    it("refills fractionally and never above capacity", async () => {
      expect(await store.takeTokens("b", 4, 2, 4)).toMatchObject({ allowed: true, remaining: 0 });
      clock.advance(750); // 1.5 tokens
      expect(await store.takeTokens("b", 4, 2)).toEqual({ allowed: true, remaining: 0, retryAfterMs: 250 });
      clock.advance(3_600_000);
      expect(await store.takeTokens("b", 4, 2)).toEqual({ allowed: true, remaining: 3, retryAfterMs: 0 });
    });

    it("waits for the whole cost, not one token", async () => {
      expect(await store.takeTokens("b", 10, 1, 8)).toMatchObject({ allowed: true, remaining: 2 });
      expect(await store.takeTokens("b", 10, 1, 5)).toEqual({
        allowed: false,
        remaining: 2,
        retryAfterMs: 3_000,
      });
      clock.advance(2_999);
      expect(await store.takeTokens("b", 10, 1, 5)).toMatchObject({ allowed: false, retryAfterMs: 1 });
      clock.advance(1);
      expect(await store.takeTokens("b", 10, 1, 5)).toMatchObject({ allowed: true, remaining: 0 });
    });

    it("handles slow rates: 0.5 tokens/s means two seconds per token", async () => {
      await store.takeTokens("b", 1, 0.5);
      expect(await store.takeTokens("b", 1, 0.5)).toEqual({
        allowed: false,
        remaining: 0,
        retryAfterMs: 2_000,
      });
    });

    it("counts refills accumulated across denied takes as whole tokens", async () => {
      // 0.7 + 0.1 + 0.1 + 0.1 is 0.9999999999999999 in floating point; a second has passed all the same
      await store.takeTokens("b", 1, 1);
      for (const step of [700, 100, 100]) {
        clock.advance(step);
        expect((await store.takeTokens("b", 1, 1)).allowed).toBe(false);
      }
      clock.advance(100);
      expect(await store.takeTokens("b", 1, 1)).toMatchObject({ allowed: true, remaining: 0 });
    });

    it("forgets a bucket left alone for a full refill, which is then full again", async () => {
      await store.takeTokens("b", 10, 2, 10);
      expect(await store.ttl("b")).toBe(5_000);
      clock.advance(5_000);
      expect(await store.ttl("b")).toBeNull();
      expect(await store.takeTokens("b", 10, 2)).toMatchObject({ allowed: true, remaining: 9 });
    });

    it("admits exactly when retryAfterMs says, however the wait is split across denied takes", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 100 }),
          fc.double({ min: 0.01, max: 5_000, noNaN: true }),
          fc.integer({ min: 1, max: 100 }),
          fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 5 }),
          async (capacity, refillPerSecond, rawCost, cuts) => {
            const cost = Math.min(rawCost, capacity);
            const bucket = new MemoryKeyValueStore({ now: clock.now });
            await bucket.open();
            try {
              expect((await bucket.takeTokens("b", capacity, refillPerSecond, capacity)).allowed).toBe(true);
              const denied = await bucket.takeTokens("b", capacity, refillPerSecond, cost);
              expect(denied.allowed).toBe(false);
              const wait = denied.retryAfterMs;
              expect(wait).toBeGreaterThan(0);
              // spend wait - 1 ms in random slices, taking (and being denied) after each
              const marks = [...new Set(cuts.map((c) => Math.floor(c * (wait - 1))))].sort((a, b) => a - b);
              let spent = 0;
              for (const mark of [...marks, wait - 1]) {
                clock.advance(mark - spent);
                spent = mark;
                expect((await bucket.takeTokens("b", capacity, refillPerSecond, cost)).allowed).toBe(false);
              }
              clock.advance(1);
              expect((await bucket.takeTokens("b", capacity, refillPerSecond, cost)).allowed).toBe(true);
            } finally {
              await bucket.close();
            }
          },
        ),
      );
    });

    it("takes a smaller capacity into account at once", async () => {
      await store.takeTokens("b", 10, 1);
      expect(await store.takeTokens("b", 3, 1)).toMatchObject({ allowed: true, remaining: 2 });
    });
  });

  describe("lifecycle", () => {
    it("refuses calls before open", async () => {
      const unopened = new MemoryKeyValueStore({ now: clock.now });
      await expect(unopened.set("k", "v")).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
    });
  });
});
