/**
 * The claim protocol (lib/work/lease-claim.ts) against the embedded store, alone and driven by the
 * lease worker: leases are exclusive, expire on the clock, and two workers on one store process
 * each document exactly once.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../../lib/clock";
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";
import type { Doc, DocumentStore, Filter } from "../../lib/store/store.port";
import {
  ClaimCandidates,
  RELEASE_LEASE,
  claimWithLease,
  notLeased,
  renewLeases,
  type LeaseClaim,
  type Leased,
} from "../../lib/work/lease-claim";
import { LeaseWorker } from "../../lib/work/lease-worker";

interface Task extends Doc, Leased {
  status: "todo" | "done";
  dueAt: Date;
  doneBy?: string;
  runs: number;
}

const TASKS = "tasks";
const LEASE_MS = 10_000;

const spec: LeaseClaim = {
  collection: TASKS,
  due: (now: Date): Filter => ({ status: "todo", dueAt: { $lte: now } }),
  sort: { dueAt: 1, _id: 1 },
  leaseMs: LEASE_MS,
};

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe("claimWithLease on the embedded store", () => {
  let dir: string;
  let store: DocumentStore;
  let clock: ManualClock;
  let counter = 0;
  const workers: LeaseWorker<Task>[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-lease-claim-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    store = new EmbeddedDocumentStore({ file: join(dir, `store-${counter++}.db`) });
    await store.open();
    await store.createIndex(TASKS, { keys: { status: 1, dueAt: 1, _id: 1 } });
    clock = new ManualClock(Date.parse("2026-01-01T00:00:00Z"));
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    await store.close();
  });

  const now = (): Date => new Date(clock.now());
  const tasks = () => store.collection<Task>(TASKS);

  /** `n` tasks due one millisecond apart, the last at `at` (default: now), ids t000…; returns the ids. */
  async function seed(n: number, at = clock.now(), prefix = "t"): Promise<string[]> {
    const ids = Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, "0")}`);
    await tasks().insertMany(
      ids.map((_id, i) => ({ _id, status: "todo" as const, dueAt: new Date(at - n + 1 + i), runs: 0 })),
    );
    return ids;
  }

  it("leases due, unleased documents in order, and skips a live lease until it expires", async () => {
    const ids = await seed(5);
    await tasks().insertOne({ _id: "later", status: "todo", dueAt: new Date(clock.now() + 60_000), runs: 0 });

    const first = await claimWithLease<Task>(store, spec, { limit: 2, owner: "a", now: now() });
    expect(first.map((t) => t._id)).toEqual(ids.slice(0, 2));
    for (const task of first) {
      expect(task).toMatchObject({ leaseOwner: "a", leaseUntil: new Date(clock.now() + LEASE_MS) });
      // what came back is what is stored
      expect(await tasks().findOne({ _id: task._id })).toEqual(task);
    }

    // another owner gets the rest of what is due, never what "a" holds, nor what is not due
    const second = await claimWithLease<Task>(store, spec, { limit: 10, owner: "b", now: now() });
    expect(second.map((t) => t._id)).toEqual(ids.slice(2));
    expect(await claimWithLease<Task>(store, spec, { limit: 10, owner: "c", now: now() })).toEqual([]);

    // one millisecond before the leases end, nothing; at their end, they are free again
    clock.advance(LEASE_MS - 1);
    expect(await claimWithLease<Task>(store, spec, { limit: 10, owner: "c", now: now() })).toEqual([]);
    clock.advance(1);
    const retaken = await claimWithLease<Task>(store, spec, { limit: 10, owner: "c", now: now() });
    expect(retaken.map((t) => t._id)).toEqual(ids);
    expect(retaken.every((t) => t.leaseOwner === "c")).toBe(true);
  });

  it("skips excluded ids, sets alsoSet fields with the lease, and frees a released lease at once", async () => {
    const ids = await seed(4);
    const charger: LeaseClaim = {
      ...spec,
      // due again when the lease ends, as the payment charger does
      alsoSet: (leaseUntil) => ({ dueAt: leaseUntil }),
    };
    const claimed = await claimWithLease<Task>(store, charger, {
      limit: 2,
      owner: "a",
      now: now(),
      exclude: new Set([ids[0] as string]),
    });
    expect(claimed.map((t) => t._id)).toEqual(ids.slice(1, 3));
    const leaseUntil = new Date(clock.now() + LEASE_MS);
    expect(claimed[0]).toMatchObject({ dueAt: leaseUntil, leaseUntil, leaseOwner: "a" });
    expect(await tasks().findOne({ _id: ids[1] })).toEqual(claimed[0]);

    await tasks().updateOne({ _id: ids[1], leaseOwner: "a" }, { $unset: { ...RELEASE_LEASE } });
    await tasks().updateOne({ _id: ids[1] }, { $set: { dueAt: now() } });
    const again = await claimWithLease<Task>(store, charger, { limit: 10, owner: "b", now: now() });
    expect(again.map((t) => t._id).sort()).toEqual([ids[0], ids[1], ids[3]].sort());
  });

  it("matches the notLeased filter with the store's own query language", async () => {
    await seed(3);
    await tasks().updateOne(
      { _id: "t000" },
      { $set: { leaseOwner: "x", leaseUntil: new Date(clock.now() + 1) } },
    );
    await tasks().updateOne({ _id: "t001" }, { $set: { leaseOwner: "x", leaseUntil: now() } });
    const free = await tasks().find(notLeased(now()), { sort: { _id: 1 } });
    expect(free.map((t) => t._id)).toEqual(["t001", "t002"]);
  });

  it("keeps a due condition's own $or", async () => {
    await seed(3);
    await tasks().updateOne({ _id: "t001" }, { $set: { status: "done" } });
    await tasks().updateOne(
      { _id: "t002" },
      { $set: { leaseOwner: "x", leaseUntil: new Date(clock.now() + 1) } },
    );
    const either: LeaseClaim = {
      ...spec,
      due: (at) => ({ $or: [{ status: "todo" }, { status: "done" }], dueAt: { $lte: at } }),
    };
    const claimed = await claimWithLease<Task>(store, either, { limit: 10, owner: "a", now: now() });
    expect(claimed.map((t) => t._id)).toEqual(["t000", "t001"]);
  });

  it("renews only the leases the owner still holds", async () => {
    const ids = await seed(3);
    await claimWithLease<Task>(store, spec, { limit: 2, owner: "a", now: now() });
    await claimWithLease<Task>(store, spec, { limit: 1, owner: "b", now: now() });
    clock.advance(5_000);
    expect(await renewLeases(store, spec, { ids, owner: "a", now: now() })).toBe(2);
    const rows = new Map((await tasks().find({})).map((t) => [t._id, t]));
    expect(rows.get("t000")?.leaseUntil).toEqual(new Date(clock.now() + LEASE_MS));
    expect(rows.get("t002")).toMatchObject({
      leaseOwner: "b",
      leaseUntil: new Date(clock.now() - 5_000 + LEASE_MS),
    });
  });

  it("serves several claims from one scan of candidates, re-checking each in its transaction", async () => {
    const ids = await seed(10);
    const candidates = new ClaimCandidates(5);
    const first = await claimWithLease<Task>(store, spec, { limit: 2, owner: "a", now: now(), candidates });
    expect(first.map((t) => t._id)).toEqual(ids.slice(0, 2));
    expect(candidates.ids).toEqual(ids.slice(2, 10));
    expect(candidates.full).toBe(true);

    // meanwhile another owner takes two of the kept candidates
    await claimWithLease<Task>(store, spec, { limit: 1, owner: "b", now: now() }).then((taken) =>
      expect(taken.map((t) => t._id)).toEqual([ids[2]]),
    );
    const second = await claimWithLease<Task>(store, spec, { limit: 3, owner: "a", now: now(), candidates });
    expect(second.map((t) => t._id)).toEqual(ids.slice(3, 6));
    // what is left of the scan, then a fresh scan that finds nothing more: fewer than asked
    const third = await claimWithLease<Task>(store, spec, { limit: 10, owner: "a", now: now(), candidates });
    expect(third.map((t) => t._id)).toEqual(ids.slice(6));
    expect(candidates.ids).toEqual([]);
    expect(candidates.full).toBe(false);
  });

  it("gives each document to one of many claims made at the same moment", async () => {
    const ids = await seed(60);
    const owners = ["a", "b", "c", "d"];
    const results = await Promise.all(
      owners.flatMap((owner) =>
        [0, 1, 2].map(() => claimWithLease<Task>(store, spec, { limit: 7, owner, now: now() })),
      ),
    );
    const claimed = results.flat();
    expect(claimed).toHaveLength(new Set(claimed.map((t) => t._id)).size);
    const stored = new Map((await tasks().find({})).map((t) => [t._id, t]));
    for (const task of claimed) expect(stored.get(task._id)?.leaseOwner).toBe(task.leaseOwner);
    expect(claimed.length).toBeLessThanOrEqual(ids.length);
  });

  describe("driven by two lease workers", () => {
    function worker(
      owner: string,
      process: (task: Task) => Promise<void>,
      options: { maxInFlight?: number; candidates?: ClaimCandidates } = {},
    ): LeaseWorker<Task> {
      const w = new LeaseWorker<Task>({
        name: "test tasks",
        owner,
        clock,
        logger: silent,
        maxInFlight: options.maxInFlight ?? 4,
        pollIntervalMs: 3_600_000,
        stopTimeoutMs: 5_000,
        key: (task) => task._id,
        claim: (limit, held) =>
          claimWithLease<Task>(store, spec, {
            limit,
            owner,
            now: now(),
            exclude: held,
            ...(options.candidates === undefined ? {} : { candidates: options.candidates }),
          }),
        process,
      });
      workers.push(w);
      return w;
    }

    /** Record a run and finish the task, guarded by the lease. */
    async function finish(task: Task, owner: string): Promise<void> {
      const result = await tasks().updateOne(
        { _id: task._id, status: "todo", leaseOwner: owner },
        { $set: { status: "done", doneBy: owner }, $inc: { runs: 1 }, $unset: { ...RELEASE_LEASE } },
      );
      if (result.modifiedCount !== 1) throw new Error(`lost the lease of ${task._id}`);
    }

    it("never process the same document at once, and process each exactly once", async () => {
      const ids = await seed(300);
      const running = new Set<string>();
      const overlaps: string[] = [];
      const runs = new Map<string, number>();
      // the first items are held until both workers have some in flight: one alone holds at most 4
      let waiting = 0;
      let openGate: () => void = () => undefined;
      const bothBusy = new Promise<void>((resolve) => (openGate = resolve));
      const process = (owner: string) => async (task: Task) => {
        if (running.has(task._id)) overlaps.push(task._id);
        running.add(task._id);
        runs.set(task._id, (runs.get(task._id) ?? 0) + 1);
        try {
          if (++waiting >= 5) openGate();
          await bothBusy;
          await new Promise((resolve) => setImmediate(resolve));
          await finish(task, owner);
        } finally {
          running.delete(task._id);
        }
      };
      const a = worker("a", process("a"));
      const b = worker("b", process("b"), { candidates: new ClaimCandidates(4) });
      a.start();
      b.start();
      await Promise.all([a.idle(), b.idle()]);
      // each may have gone idle before the other's last items were done: once more, both at rest
      a.wake();
      b.wake();
      await Promise.all([a.idle(), b.idle()]);

      expect(overlaps).toEqual([]);
      expect(await tasks().countDocuments({ status: "done" })).toBe(300);
      expect([...runs.values()].every((n) => n === 1)).toBe(true);
      expect(runs.size).toBe(ids.length);
      const [byA, byB] = [a.stats().processed, b.stats().processed];
      expect(byA + byB).toBe(300);
      expect(byA).toBeGreaterThan(0);
      expect(byB).toBeGreaterThan(0);
      expect(a.stats().processFailures + b.stats().processFailures).toBe(0);
    });

    it("takes a document again after leaseMs when its processing threw", async () => {
      await seed(1);
      let attempts = 0;
      const w = worker("a", async (task) => {
        attempts++;
        if (attempts === 1) throw new Error("crashed halfway");
        await finish(task, "a");
      });
      w.start();
      await w.idle();
      expect(attempts).toBe(1);
      expect(await tasks().findOne({ _id: "t000" })).toMatchObject({ status: "todo", leaseOwner: "a" });

      // a second worker looks while the lease holds: nothing for it
      const other = worker("b", async (task) => finish(task, "b"));
      other.start();
      await other.idle();
      expect(other.stats().claimed).toBe(0);

      clock.advance(LEASE_MS);
      w.wake();
      await w.idle();
      expect(attempts).toBe(2);
      expect(await tasks().findOne({ _id: "t000" })).toMatchObject({ status: "done", doneBy: "a", runs: 1 });
    });
  });
});
