/**
 * The key-value port's contract, run against every adapter: memory always, Redis against a
 * redis-server this suite starts (skipped loudly without the binary, failing under CI=true).
 */
import type { KeyValueStore } from "../../lib/kv/kv.port";
import { MemoryKeyValueStore } from "../../lib/kv/memory.adapter";
import { RedisKeyValueStore } from "../../lib/kv/redis.adapter";
import type { Requirement } from "../support/infra";
import { freePort } from "../support/ports";
import { redisServerBinary, startRedisServer, type RedisServer } from "../support/redis-server";
import { waitFor } from "../support/wait";

/** Polls `condition` until it holds; fails naming `what` after `timeoutMs`. */

/** The promise's own outcome, or a rejection saying it was still pending after `ms`. */
async function settleWithin<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves to whether the call succeeded. */
async function succeeds(call: () => Promise<unknown>): Promise<boolean> {
  try {
    await call();
    return true;
  } catch {
    return false;
  }
}

interface Environment {
  /** A new, unopened store; stores from one environment never see each other's keys. */
  create(): KeyValueStore;
  /** The server behind the store, for adapters that have one. */
  server?: RedisServer;
  teardown(): Promise<void>;
}

interface AdapterCase {
  name: "memory" | "redis";
  needs: Requirement;
  setup(): Promise<Environment>;
}

const alwaysAvailable: Requirement = { describe, path: null };
let prefixes = 0;

const adapters: AdapterCase[] = [
  {
    name: "memory",
    needs: alwaysAvailable,
    setup: async () => ({ create: () => new MemoryKeyValueStore(), teardown: async () => undefined }),
  },
  {
    name: "redis",
    needs: redisServerBinary,
    setup: async () => {
      const server = await startRedisServer();
      return {
        server,
        create: () => new RedisKeyValueStore({ url: server.url, keyPrefix: `conformance:${++prefixes}:` }),
        teardown: () => server.stop(),
      };
    },
  },
];

describe.each(adapters)("key-value port on $name", ({ name, needs, setup }) => {
  needs.describe("conformance", () => {
    let environment: Environment | undefined;
    let store: KeyValueStore;

    const env = (): Environment => {
      if (environment === undefined) throw new Error("environment not set up");
      return environment;
    };

    beforeAll(async () => {
      environment = await setup();
    });
    afterAll(async () => {
      await environment?.teardown();
    });
    beforeEach(async () => {
      store = env().create();
      await store.open();
    });
    afterEach(async () => {
      await store.close();
    });

    describe("get and set", () => {
      it("returns null for a key never set", async () => {
        expect(await store.get("never")).toBeNull();
      });

      it("returns what was set, and a second set replaces it", async () => {
        await store.set("k", "one");
        expect(await store.get("k")).toBe("one");
        await store.set("k", "two");
        expect(await store.get("k")).toBe("two");
      });

      it("keeps a key set without TTL (ttl -1) and reports null as the ttl of an absent key", async () => {
        await store.set("k", "v");
        expect(await store.ttl("k")).toBe(-1);
        expect(await store.ttl("absent")).toBeNull();
      });

      it("expires a key once its TTL has passed", async () => {
        await store.set("k", "v", 500);
        expect(await store.get("k")).toBe("v");
        const ttl = await store.ttl("k");
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(500);
        await waitFor("the key to expire", async () => (await store.get("k")) === null);
        expect(await store.ttl("k")).toBeNull();
      });

      it("drops an earlier TTL when set again without one", async () => {
        await store.set("k", "v", 60_000);
        await store.set("k", "w");
        expect(await store.ttl("k")).toBe(-1);
        expect(await store.get("k")).toBe("w");
      });

      it("rejects a TTL that is not a positive whole number of milliseconds", async () => {
        for (const ttl of [0, -5, 1.5, Number.NaN]) {
          await expect(store.set("k", "v", ttl)).rejects.toThrow(RangeError);
          await expect(store.setIfAbsent("k", "v", ttl)).rejects.toThrow(RangeError);
        }
        expect(await store.get("k")).toBeNull();
      });
    });

    describe("setIfAbsent", () => {
      it("sets an absent key with its TTL and refuses a present one", async () => {
        expect(await store.setIfAbsent("k", "first", 60_000)).toBe(true);
        expect(await store.setIfAbsent("k", "second", 60_000)).toBe(false);
        expect(await store.get("k")).toBe("first");
        const ttl = await store.ttl("k");
        expect(ttl).toBeGreaterThan(30_000);
        expect(ttl).toBeLessThanOrEqual(60_000);
      });

      it("lets exactly one of 100 concurrent callers win, and keeps the winner's value", async () => {
        const results = await Promise.all(
          Array.from({ length: 100 }, (_, i) => store.setIfAbsent("race", `caller-${i}`, 60_000)),
        );
        const winners = results.flatMap((won, i) => (won ? [i] : []));
        expect(winners).toHaveLength(1);
        expect(await store.get("race")).toBe(`caller-${winners[0]}`);
      });

      it("succeeds again once the key has expired", async () => {
        expect(await store.setIfAbsent("k", "first", 200)).toBe(true);
        await waitFor("the key to expire", async () => (await store.get("k")) === null);
        expect(await store.setIfAbsent("k", "second", 60_000)).toBe(true);
        expect(await store.get("k")).toBe("second");
      });
    });

    describe("compareAndSet", () => {
      it("replaces a value equal to the expected one and keeps its remaining TTL", async () => {
        await store.set("k", "old", 60_000);
        expect(await store.compareAndSet("k", "old", "new")).toBe(true);
        expect(await store.get("k")).toBe("new");
        const ttl = await store.ttl("k");
        expect(ttl).toBeGreaterThan(30_000);
        expect(ttl).toBeLessThanOrEqual(60_000);
      });

      it("replaces the TTL when given one", async () => {
        await store.set("k", "old", 60_000);
        expect(await store.compareAndSet("k", "old", "new", 2_000)).toBe(true);
        const replaced = await store.ttl("k");
        expect(replaced).toBeGreaterThan(1_000);
        expect(replaced).toBeLessThanOrEqual(2_000);

        await store.set("unlimited", "old");
        expect(await store.compareAndSet("unlimited", "old", "new", 2_000)).toBe(true);
        expect(await store.ttl("unlimited")).toBeGreaterThan(0);
      });

      it("refuses when the value differs, leaving value and TTL alone", async () => {
        await store.set("k", "actual", 60_000);
        expect(await store.compareAndSet("k", "something else", "new", 1_000)).toBe(false);
        expect(await store.get("k")).toBe("actual");
        expect(await store.ttl("k")).toBeGreaterThan(30_000);
      });

      it("with expected null, creates an absent key (with its TTL) and refuses a present one", async () => {
        expect(await store.compareAndSet("k", null, "created", 60_000)).toBe(true);
        expect(await store.get("k")).toBe("created");
        expect(await store.ttl("k")).toBeGreaterThan(30_000);
        expect(await store.compareAndSet("k", null, "again")).toBe(false);
        expect(await store.get("k")).toBe("created");
      });

      it("refuses when a value is expected but the key is absent", async () => {
        expect(await store.compareAndSet("k", "anything", "new")).toBe(false);
        expect(await store.get("k")).toBeNull();
      });

      it("lets exactly one of 100 concurrent swaps from the same value win", async () => {
        await store.set("k", "v0");
        const results = await Promise.all(
          Array.from({ length: 100 }, (_, i) => store.compareAndSet("k", "v0", `v1-${i}`)),
        );
        const winners = results.flatMap((won, i) => (won ? [i] : []));
        expect(winners).toHaveLength(1);
        expect(await store.get("k")).toBe(`v1-${winners[0]}`);
      });
    });

    describe("delete", () => {
      it("deletes unconditionally and reports whether the key was there", async () => {
        await store.set("k", "v");
        expect(await store.delete("k")).toBe(true);
        expect(await store.get("k")).toBeNull();
        expect(await store.delete("k")).toBe(false);
      });

      it("deletes only when the value equals the expected one", async () => {
        await store.set("k", "mine");
        expect(await store.delete("k", "theirs")).toBe(false);
        expect(await store.get("k")).toBe("mine");
        expect(await store.delete("k", "mine")).toBe(true);
        expect(await store.get("k")).toBeNull();
        expect(await store.delete("k", "mine")).toBe(false);
      });
    });

    describe("increment", () => {
      it("starts an absent key from 0 and gives it the TTL (or none)", async () => {
        expect(await store.increment("with-ttl", 5, 60_000)).toBe(5);
        const ttl = await store.ttl("with-ttl");
        expect(ttl).toBeGreaterThan(30_000);
        expect(ttl).toBeLessThanOrEqual(60_000);

        expect(await store.increment("plain")).toBe(1);
        expect(await store.ttl("plain")).toBe(-1);
      });

      it("adds to an existing key (negative steps too) and keeps its TTL", async () => {
        expect(await store.increment("k", 1, 60_000)).toBe(1);
        expect(await store.increment("k", -3, 1_000)).toBe(-2);
        expect(await store.get("k")).toBe("-2");
        expect(await store.ttl("k")).toBeGreaterThan(30_000);

        await store.set("no-ttl", "10");
        expect(await store.increment("no-ttl", 2, 1_000)).toBe(12);
        expect(await store.ttl("no-ttl")).toBe(-1);
      });

      it("sums concurrent increments exactly, each caller seeing its own intermediate value", async () => {
        const seen = await Promise.all(
          Array.from({ length: 200 }, () => store.increment("counter", 1, 60_000)),
        );
        expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));

        const steps = Array.from({ length: 100 }, (_, i) => (i % 7) - 3);
        await Promise.all(steps.map((by) => store.increment("mixed", by)));
        expect(await store.get("mixed")).toBe(String(steps.reduce((sum, by) => sum + by, 0)));
      });

      it("refuses to count on a value that is not an integer, and a step that is not one", async () => {
        await store.set("k", "abc");
        await expect(store.increment("k")).rejects.toMatchObject({ code: "INVALID_DOCUMENT" });
        expect(await store.get("k")).toBe("abc");
        await expect(store.increment("n", 1.5)).rejects.toThrow(RangeError);
        expect(await store.get("n")).toBeNull();
      });
    });

    describe("token bucket", () => {
      it("admits a burst up to capacity, then denies with a positive retryAfterMs", async () => {
        // 0.01 tokens/s: nothing refills while the test runs
        const taken = [];
        for (let i = 0; i < 5; i++) taken.push(await store.takeTokens("bucket", 5, 0.01));
        expect(taken.map((t) => t.allowed)).toEqual([true, true, true, true, true]);
        expect(taken.map((t) => t.remaining)).toEqual([4, 3, 2, 1, 0]);

        const denied = await store.takeTokens("bucket", 5, 0.01);
        expect(denied.allowed).toBe(false);
        expect(denied.remaining).toBe(0);
        // one token at 0.01/s takes 100 s
        expect(denied.retryAfterMs).toBeGreaterThan(90_000);
        expect(denied.retryAfterMs).toBeLessThanOrEqual(100_000);
      });

      it("refills over time, never above capacity", async () => {
        // 20 tokens/s: one every 50 ms
        expect((await store.takeTokens("bucket", 2, 20, 2)).allowed).toBe(true);
        const denied = await store.takeTokens("bucket", 2, 20);
        expect(denied.allowed).toBe(false);
        expect(denied.retryAfterMs).toBeGreaterThan(0);
        expect(denied.retryAfterMs).toBeLessThanOrEqual(50);
        await waitFor("a token to refill", async () => (await store.takeTokens("bucket", 2, 20)).allowed);

        // 10 tokens at 10/s, one taken: full again after 100 ms, and the key lives 1 s. A second
        // bucket measures 300 ms, which would refill 3 tokens into a bucket without a cap.
        expect(await store.takeTokens("capped", 10, 10)).toMatchObject({ allowed: true, remaining: 9 });
        expect((await store.takeTokens("timer", 3, 10, 3)).allowed).toBe(true);
        await waitFor("300 ms of refill", async () => (await store.takeTokens("timer", 3, 10, 3)).allowed);
        expect(await store.takeTokens("capped", 10, 10)).toMatchObject({ allowed: true, remaining: 9 });
      });

      it("takes `cost` tokens at once and waits for the whole cost", async () => {
        expect(await store.takeTokens("bucket", 10, 0.01, 4)).toMatchObject({ allowed: true, remaining: 6 });
        expect(await store.takeTokens("bucket", 10, 0.01, 4)).toMatchObject({ allowed: true, remaining: 2 });
        const denied = await store.takeTokens("bucket", 10, 0.01, 4);
        expect(denied).toMatchObject({ allowed: false, remaining: 2 });
        // two tokens missing at 0.01/s: 200 s
        expect(denied.retryAfterMs).toBeGreaterThan(190_000);
        expect(denied.retryAfterMs).toBeLessThanOrEqual(200_000);
        expect(await store.takeTokens("bucket", 10, 0.01, 2)).toMatchObject({ allowed: true, remaining: 0 });
      });

      it("never admits more than capacity to 100 concurrent takers", async () => {
        const results = await Promise.all(
          Array.from({ length: 100 }, () => store.takeTokens("bucket", 10, 0.001)),
        );
        const admitted = results.filter((r) => r.allowed);
        expect(admitted).toHaveLength(10);
        expect(admitted.map((r) => r.remaining).sort((a, b) => a - b)).toEqual([
          0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
        ]);
        for (const r of results.filter((r) => !r.allowed)) expect(r.retryAfterMs).toBeGreaterThan(0);
      });

      it("lets an untouched bucket expire after the time a full refill takes", async () => {
        await store.takeTokens("bucket", 2, 0.5);
        // 2 tokens at 0.5/s: 4 s
        const ttl = await store.ttl("bucket");
        expect(ttl).toBeGreaterThan(2_000);
        expect(ttl).toBeLessThanOrEqual(4_000);
      });

      it("rejects a cost above capacity and parameters that are not positive", async () => {
        await expect(store.takeTokens("bucket", 5, 1, 6)).rejects.toThrow(RangeError);
        await expect(store.takeTokens("bucket", 0, 1)).rejects.toThrow(RangeError);
        await expect(store.takeTokens("bucket", 5, 0)).rejects.toThrow(RangeError);
        await expect(store.takeTokens("bucket", 5, 1, 0)).rejects.toThrow(RangeError);
        await expect(store.takeTokens("bucket", 5, 1, 1.5)).rejects.toThrow(RangeError);
        expect(await store.ttl("bucket")).toBeNull();
      });

      it("keeps strings and buckets apart", async () => {
        await store.set("text", "x");
        await expect(store.takeTokens("text", 5, 1)).rejects.toMatchObject({ code: "INVALID_DOCUMENT" });
        await store.takeTokens("bucket", 5, 1);
        await expect(store.get("bucket")).rejects.toMatchObject({ code: "INVALID_DOCUMENT" });
        await expect(store.increment("bucket")).rejects.toMatchObject({ code: "INVALID_DOCUMENT" });
        expect(await store.setIfAbsent("bucket", "x", 1_000)).toBe(false);
        expect(await store.delete("bucket")).toBe(true);
      });
    });

    describe("lifecycle", () => {
      it("answers ping while open and refuses every call after close", async () => {
        await expect(store.ping()).resolves.toBeUndefined();
        await store.close();
        await expect(store.ping()).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
        await expect(store.get("k")).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
        await expect(store.takeTokens("b", 1, 1)).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
        await store.close();
      });

      it("refuses calls before open", async () => {
        const unopened = env().create();
        await expect(unopened.get("k")).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
        await unopened.close();
      });
    });

    if (name === "redis") {
      describe("redis only", () => {
        const server = (): RedisServer => {
          const s = env().server;
          if (s === undefined) throw new Error("no server in this environment");
          return s;
        };

        it("keeps stores with different key prefixes apart", async () => {
          const other = env().create();
          await other.open();
          try {
            await store.set("shared-name", "mine");
            expect(await other.get("shared-name")).toBeNull();
          } finally {
            await other.close();
          }
        });

        it("counts bucket time on the server, so a client with a skewed clock gets the same answer", async () => {
          const prefix = `skew:${Date.now()}:`;
          const honest = new RedisKeyValueStore({ url: server().url, keyPrefix: prefix });
          const skewed = new RedisKeyValueStore({ url: server().url, keyPrefix: prefix });
          await Promise.all([honest.open(), skewed.open()]);
          try {
            expect((await honest.takeTokens("bucket", 2, 0.001, 2)).allowed).toBe(true);
            // an hour ahead, a client-side clock would see 3.6 tokens refilled
            const hourAhead = Date.now() + 3_600_000;
            const clock = jest.spyOn(Date, "now").mockReturnValue(hourAhead);
            let fromSkewed;
            try {
              fromSkewed = await skewed.takeTokens("bucket", 2, 0.001);
            } finally {
              clock.mockRestore();
            }
            expect(fromSkewed.allowed).toBe(false);
            expect(fromSkewed.remaining).toBe(0);
          } finally {
            await Promise.all([honest.close(), skewed.close()]);
          }
        });

        it("rejects open() with UNAVAILABLE naming the URL when nothing listens", async () => {
          const url = `redis://127.0.0.1:${await freePort()}`;
          const nowhere = new RedisKeyValueStore({ url, connectTimeoutMs: 2_000 });
          const error = await settleWithin(nowhere.open(), 5_000).catch((e: unknown) => e);
          expect(error).toMatchObject({ code: "UNAVAILABLE" });
          expect((error as Error).message).toContain(url);
          await nowhere.close();
        });

        it("rejects ping() with UNAVAILABLE while Redis hangs, and answers again when it resumes", async () => {
          server().pause();
          try {
            await expect(settleWithin(store.ping(), 5_000)).rejects.toMatchObject({ code: "UNAVAILABLE" });
          } finally {
            server().resume();
          }
          await waitFor("ping to succeed", () => succeeds(() => store.ping()));
        });

        it("rejects every call with UNAVAILABLE promptly while Redis is dead", async () => {
          await store.set("k", "v");
          await server().kill();
          try {
            const calls: Array<() => Promise<unknown>> = [
              () => store.get("k"),
              () => store.set("k", "w"),
              () => store.setIfAbsent("other", "v", 1_000),
              () => store.compareAndSet("k", "v", "w"),
              () => store.delete("k", "v"),
              () => store.increment("n"),
              () => store.ttl("k"),
              () => store.takeTokens("bucket", 5, 1),
              () => store.ping(),
            ];
            for (const call of calls) {
              // a hang (not a slow rejection) is the failure: 5 s is far above any reconnect delay
              await expect(settleWithin(call(), 5_000)).rejects.toMatchObject({ code: "UNAVAILABLE" });
            }
          } finally {
            await server().restart();
          }
        });

        it("works again after Redis restarts, without a new adapter", async () => {
          expect(await store.compareAndSet("k", null, "before", 60_000)).toBe(true);
          await server().kill();
          await server().restart();
          await waitFor("the adapter to reconnect", () => succeeds(() => store.ping()), 10_000);
          // the restarted server is empty and has no scripts cached
          expect(await store.get("k")).toBeNull();
          expect(await store.compareAndSet("k", null, "after", 60_000)).toBe(true);
          expect(await store.get("k")).toBe("after");
          expect(await store.increment("n", 2, 60_000)).toBe(2);
          expect(await store.takeTokens("bucket", 3, 1)).toMatchObject({ allowed: true, remaining: 2 });
        });
      });
    }
  });
});
