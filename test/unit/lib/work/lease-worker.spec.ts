import { ManualClock, type Clock } from "../../../../lib/clock";
import { LeaseWorker, type LeaseWorkerOptions } from "../../../../lib/work/lease-worker";

interface Item {
  id: string;
}

/** A promise settled from outside. */
function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void; reject(err: unknown): void } {
  let resolve: (value: T) => void = () => undefined;
  let reject: (err: unknown) => void = () => undefined;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Work items with leases in memory, on a clock: a claim takes due items not leased (or whose
 * lease ran out), oldest first, and leases them for `leaseMs`; `done` removes an item.
 */
class Source {
  private readonly items = new Map<string, { leaseUntil: number; dueAt: number }>();
  readonly limits: number[] = [];
  /** Set to hold the next claim, after it read the items, until it resolves. */
  gate: Promise<void> | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly leaseMs = 1_000,
  ) {}

  add(...ids: string[]): void {
    for (const id of ids) this.items.set(id, { leaseUntil: 0, dueAt: this.clock.now() });
  }

  addDueAt(id: string, dueAt: number): void {
    this.items.set(id, { leaseUntil: 0, dueAt });
  }

  done(id: string): void {
    this.items.delete(id);
  }

  get size(): number {
    return this.items.size;
  }

  async claim(limit: number, held: ReadonlySet<string>): Promise<Item[]> {
    this.limits.push(limit);
    const now = this.clock.now();
    const claimed: Item[] = [];
    for (const [id, item] of this.items) {
      if (claimed.length >= limit) break;
      if (held.has(id) || item.dueAt > now || item.leaseUntil > now) continue;
      item.leaseUntil = now + this.leaseMs;
      claimed.push({ id });
    }
    const gate = this.gate;
    this.gate = undefined;
    if (gate !== undefined) await gate;
    return claimed;
  }
}

describe("lease worker", () => {
  const workers: LeaseWorker<Item>[] = [];
  let clock: ManualClock;
  let source: Source;
  let logged: { level: string; text: string }[];

  beforeEach(() => {
    clock = new ManualClock(Date.parse("2026-01-01T00:00:00Z"));
    source = new Source(clock);
    logged = [];
  });
  afterEach(async () => {
    jest.useRealTimers();
    await Promise.all(workers.splice(0).map((w) => w.stop()));
  });

  function worker(
    process: (item: Item) => Promise<void>,
    options: Partial<LeaseWorkerOptions<Item>> = {},
  ): LeaseWorker<Item> {
    const record = (level: string) => (text: unknown) => logged.push({ level, text: String(text) });
    const w = new LeaseWorker<Item>({
      name: "test loop",
      owner: "owner-1",
      clock,
      logger: { info: record("info"), warn: record("warn"), error: record("error") },
      maxInFlight: 4,
      // an hour: nothing in these tests waits for a poll unless it moves fake timers
      pollIntervalMs: 3_600_000,
      stopTimeoutMs: 5_000,
      key: (item) => item.id,
      claim: (limit, held) => source.claim(limit, held),
      process,
      ...options,
    });
    workers.push(w);
    return w;
  }

  /** process() that finishes each item when told, and records what ran. */
  function controlled(): {
    process(item: Item): Promise<void>;
    started: string[];
    finish(id: string): void;
    running(): string[];
  } {
    const pending = new Map<string, ReturnType<typeof deferred>>();
    const started: string[] = [];
    return {
      started,
      process(item) {
        started.push(item.id);
        const d = deferred();
        pending.set(item.id, d);
        return d.promise.then(() => source.done(item.id));
      },
      finish(id) {
        pending.get(id)?.resolve(undefined);
        pending.delete(id);
      },
      running: () => [...pending.keys()],
    };
  }

  async function until(what: string, condition: () => boolean): Promise<void> {
    for (let i = 0; i < 1_000; i++) {
      if (condition()) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
    throw new Error(`never reached: ${what}`);
  }

  it("processes every item exactly once, and refills in batches once refillBatch slots are free", async () => {
    const work = controlled();
    source.add(...Array.from({ length: 10 }, (_, i) => `i${i}`));
    const w = worker((item) => work.process(item), { maxInFlight: 4, refillBatch: 2 });
    w.start();

    await until("4 in flight", () => w.inFlight === 4);
    expect(work.started).toEqual(["i0", "i1", "i2", "i3"]);
    expect(source.limits).toEqual([4]);

    // one free slot is less than a refill batch: no claim
    work.finish("i0");
    await until("i0 done", () => w.stats().processed === 1);
    expect(source.limits).toEqual([4]);
    expect(w.inFlight).toBe(3);

    // two free slots: one claim for both
    work.finish("i1");
    await until("the refill", () => w.inFlight === 4);
    expect(source.limits).toEqual([4, 2]);
    expect(work.started).toEqual(["i0", "i1", "i2", "i3", "i4", "i5"]);

    while (w.stats().processed < 10) {
      for (const id of work.running()) work.finish(id);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await w.idle();
    expect(work.started).toEqual(Array.from({ length: 10 }, (_, i) => `i${i}`));
    expect(source.size).toBe(0);
    expect(w.stats()).toMatchObject({ processed: 10, processFailures: 0, claimFailures: 0, inFlight: 0 });
    expect(w.stats().claimed).toBe(10);
  });

  it("claims at most claimBatch at once, and claims again at once after a full claim", async () => {
    source.add(...Array.from({ length: 7 }, (_, i) => `i${i}`));
    const w = worker(async (item) => source.done(item.id), { maxInFlight: 10, claimBatch: 3 });
    w.start();
    await w.idle();
    expect(source.size).toBe(0);
    // full, full, one short of full (no more due), then looks that found nothing
    expect(source.limits.length).toBeGreaterThanOrEqual(4);
    expect(source.limits.every((limit) => limit === 3)).toBe(true);
    expect(w.stats()).toMatchObject({ claimed: 7, processed: 7 });
  });

  it("keeps a wake that arrives during a claim", async () => {
    const w = worker(async (item) => source.done(item.id));
    const gate = deferred();
    source.gate = gate.promise;
    w.start();
    await until("the first claim", () => source.limits.length === 1);

    // committed and woken while the claim is under way, after it read the store
    source.add("late");
    w.wake();
    gate.resolve();
    await w.idle();

    expect(source.size).toBe(0);
    expect(w.stats()).toMatchObject({ processed: 1 });
  });

  it("claims nothing while room is 0, and claims after a wake once room opens", async () => {
    let room = 0;
    source.add("a", "b");
    const w = worker(async (item) => source.done(item.id), { room: (inFlight) => room - inFlight });
    w.start();
    await w.idle();
    expect(source.limits).toEqual([]);
    expect(source.size).toBe(2);

    // half-open: one at a time
    room = 1;
    w.wake();
    await w.idle();
    expect(source.limits.every((limit) => limit === 1)).toBe(true);
    expect(source.size).toBe(0);
    expect(w.stats().processed).toBe(2);
  });

  it("lets a failed item's lease lapse: it is claimed again once the clock passes leaseMs", async () => {
    let attempts = 0;
    source.add("flaky");
    const w = worker(async (item) => {
      attempts++;
      if (attempts === 1) throw new Error("provider down");
      source.done(item.id);
    });
    w.start();
    await w.idle();
    expect(attempts).toBe(1);
    expect(w.stats()).toMatchObject({ processFailures: 1, processed: 0, inFlight: 0 });
    expect(logged).toContainEqual({
      level: "error",
      text: "[test loop] owner-1: processing flaky failed; it is claimed again once its lease lapses: provider down",
    });

    // still leased: a wake finds nothing
    clock.advance(999);
    w.wake();
    await w.idle();
    expect(attempts).toBe(1);

    clock.advance(1);
    w.wake();
    await w.idle();
    expect(attempts).toBe(2);
    expect(source.size).toBe(0);
  });

  it("resolves idle() only when nothing is in flight and the latest claim found nothing", async () => {
    const work = controlled();
    source.add("a");
    const w = worker((item) => work.process(item));
    let idled = false;
    w.start();
    await until("a in flight", () => w.inFlight === 1);
    const idle = w.idle().then(() => {
      idled = true;
    });

    // a second item arrives while the first is in flight
    source.add("b");
    w.wake();
    await until("b in flight", () => w.inFlight === 2);
    work.finish("a");
    await until("a done", () => w.stats().processed === 1);
    expect(idled).toBe(false);

    work.finish("b");
    await idle;
    expect(w.stats()).toMatchObject({ processed: 2, inFlight: 0 });
    expect(source.size).toBe(0);
    // the last claim, after b was done, found nothing
    expect(source.limits.length).toBeGreaterThanOrEqual(3);
  });

  it("logs a failed claim and claims again on the next wake", async () => {
    const w = worker(async (item) => source.done(item.id), {
      claim: async (limit, held) => {
        if (source.limits.length === 0) {
          source.limits.push(limit);
          throw new Error("store unavailable");
        }
        return source.claim(limit, held);
      },
    });
    source.add("a");
    w.start();
    await until("the failed claim", () => w.stats().claimFailures === 1);
    expect(logged).toContainEqual({
      level: "warn",
      text: "[test loop] owner-1: claiming failed: store unavailable",
    });
    w.wake();
    await w.idle();
    expect(source.size).toBe(0);
  });

  it("stop() waits for the items in flight, then claims nothing more", async () => {
    const work = controlled();
    source.add("a", "b");
    const w = worker((item) => work.process(item));
    w.start();
    await until("2 in flight", () => w.inFlight === 2);

    let stopped = false;
    const stopping = w.stop().then(() => {
      stopped = true;
    });
    source.add("c");
    w.wake();
    work.finish("a");
    await until("a done", () => w.stats().processed === 1);
    expect(stopped).toBe(false);
    work.finish("b");
    await stopping;

    expect(w.stats()).toMatchObject({ processed: 2, inFlight: 0 });
    expect(work.started).toEqual(["a", "b"]);
    expect(source.limits).toEqual([4]);
    await w.stop(); // idempotent
  });

  it("stop() gives up on an item still in flight after stopTimeoutMs", async () => {
    jest.useFakeTimers();
    source.add("stuck");
    const w = worker(() => new Promise<void>(() => undefined), { stopTimeoutMs: 10_000 });
    w.start();
    await jest.advanceTimersByTimeAsync(0);
    expect(w.inFlight).toBe(1);

    let stopped = false;
    const stopping = w.stop().then(() => {
      stopped = true;
    });
    await jest.advanceTimersByTimeAsync(9_999);
    expect(stopped).toBe(false);
    await jest.advanceTimersByTimeAsync(1);
    await stopping;
    expect(logged.map((l) => l.text)).toContain(
      "[test loop] owner-1: stopped with 1 items unfinished; their leases lapse and they are claimed again",
    );
    expect(jest.getTimerCount()).toBe(0);
  });

  it("wakes when a ManualClock is moved past a wakeAt time", async () => {
    const w = worker(async (item) => source.done(item.id));
    w.start();
    await w.idle();
    const claims = w.stats().claims;

    source.addDueAt("retry", clock.now() + 1_000);
    w.wakeAt(clock.now() + 1_000);
    clock.advance(999);
    await w.idle();
    expect(w.stats().claims).toBe(claims);

    clock.advance(1);
    await w.idle();
    expect(w.stats().claims).toBeGreaterThan(claims);
    expect(source.size).toBe(0);
  });

  it("wakes at each of several wakeAt times, and at once for a time already past", async () => {
    const w = worker(async (item) => source.done(item.id));
    w.start();
    await w.idle();
    const start = clock.now();
    source.addDueAt("first", start + 100);
    source.addDueAt("second", start + 200);
    w.wakeAt(start + 200);
    w.wakeAt(start + 100);

    clock.advance(100);
    await w.idle();
    expect(source.size).toBe(1);
    clock.advance(100);
    await w.idle();
    expect(source.size).toBe(0);

    source.add("now");
    w.wakeAt(start);
    await w.idle();
    expect(source.size).toBe(0);
  });

  it("polls every pollIntervalMs with no wake, and at a wakeAt time on the real clock", async () => {
    jest.useFakeTimers({ now: Date.parse("2026-01-01T00:00:00Z") });
    const realClock: Clock = { now: () => Date.now() };
    source = new Source(realClock);
    const w = worker(async (item) => source.done(item.id), { clock: realClock, pollIntervalMs: 1_000 });
    w.start();
    await jest.advanceTimersByTimeAsync(0);
    expect(source.limits).toHaveLength(1);

    source.add("polled");
    await jest.advanceTimersByTimeAsync(999);
    expect(source.size).toBe(1);
    await jest.advanceTimersByTimeAsync(1);
    expect(source.size).toBe(0);

    const claims = source.limits.length;
    source.addDueAt("retry", Date.now() + 300);
    w.wakeAt(Date.now() + 300);
    await jest.advanceTimersByTimeAsync(300);
    expect(source.size).toBe(0);
    expect(source.limits.length).toBeGreaterThan(claims);

    await w.stop();
    expect(jest.getTimerCount()).toBe(0);
  });

  it("renews the leases of the items in flight while they run, and not after stop", async () => {
    jest.useFakeTimers();
    const renewed: string[][] = [];
    const work = controlled();
    source.add("slow");
    const w = worker((item) => work.process(item), {
      renew: { everyMs: 100, run: async (held) => void renewed.push([...held]) },
    });
    w.start();
    await jest.advanceTimersByTimeAsync(0);
    expect(w.inFlight).toBe(1);
    await jest.advanceTimersByTimeAsync(250);
    expect(renewed).toEqual([["slow"], ["slow"]]);
    work.finish("slow");
    await jest.advanceTimersByTimeAsync(100);
    expect(renewed).toHaveLength(2);
    await w.stop();
    expect(jest.getTimerCount()).toBe(0);
  });

  it("refuses bad tuning, and ignores wakes before start and after stop", async () => {
    const base = { process: async () => undefined };
    expect(() => worker(base.process, { maxInFlight: 0 })).toThrow(RangeError);
    expect(() => worker(base.process, { refillBatch: 5 })).toThrow(RangeError);
    expect(() => worker(base.process, { pollIntervalMs: 1.5 })).toThrow(RangeError);
    expect(() => worker(base.process, { owner: "" })).toThrow(RangeError);
    workers.splice(0);

    const w = worker(async (item) => source.done(item.id));
    w.wake();
    w.wakeAt(clock.now());
    await w.idle();
    await w.stop();
    expect(source.limits).toEqual([]);
    source.add("a");
    w.start();
    await w.idle();
    expect(source.size).toBe(0);
    await w.stop();
    source.add("b");
    w.wake();
    await w.idle();
    expect(source.size).toBe(1);
  });
});
