/**
 * The embedded engine answers a sorted, limited query from a compound index's order (equality on the
 * first path, sort on the second, an upper bound to stop at) exactly as it answers it by scanning:
 * generated documents and changes are applied to two collections, one with the index and one
 * without, and every generated query must return the same documents in the same order from both —
 * also after multikey documents turn the index order off, inside transactions with writes of their
 * own, and after a restart rebuilds the index from the file.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";
import type { Doc, Filter, Sort } from "../../lib/store/store.port";

const INDEXED = "indexed";
const PLAIN = "plain";
const STATUSES = ["pending", "failed", "sent"] as const;
const DATES = [0, 1, 2, 3, 4, 5].map((n) => new Date(Date.UTC(2026, 10, 21, 0, 0, n)));

/** A value to sort by: mostly dates, some numbers, strings, null, missing — and, rarely, an array. */
const sortValue = (allowArrays: boolean) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...DATES) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 5 }) },
    { weight: 1, arbitrary: fc.constantFrom("a", "b") },
    { weight: 1, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: allowArrays ? 1 : 0, arbitrary: fc.array(fc.constantFrom(...DATES), { maxLength: 2 }) },
  );

type Change =
  { kind: "put"; id: number; status: string | undefined; at: unknown } | { kind: "delete"; id: number };

const change = (allowArrays: boolean): fc.Arbitrary<Change> =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("put" as const),
        id: fc.integer({ min: 0, max: 24 }),
        status: fc.option(fc.constantFrom(...STATUSES), { nil: undefined }),
        at: sortValue(allowArrays),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("delete" as const), id: fc.integer({ min: 0, max: 24 }) }),
    },
  );

interface Query {
  filter: Filter;
  sort: Sort;
  limit: number;
  skip: number;
}

const query: fc.Arbitrary<Query> = fc.record({
  filter: fc.oneof(
    fc.constantFrom(...STATUSES).map((status): Filter => ({ status })),
    fc.subarray([...STATUSES], { minLength: 1 }).map((statuses): Filter => ({ status: { $in: statuses } })),
    fc
      .tuple(fc.subarray([...STATUSES], { minLength: 1 }), fc.constantFrom(...DATES), fc.boolean())
      .map(([statuses, bound, strict]): Filter => ({
        status: { $in: statuses },
        at: strict ? { $lt: bound } : { $lte: bound },
      })),
    fc
      .tuple(fc.constantFrom(...STATUSES), fc.integer({ min: 0, max: 5 }))
      .map(([status, bound]): Filter => ({ $and: [{ status }, { at: { $lte: bound } }] })),
    fc.constant({ status: null } as Filter),
  ),
  sort: fc.constantFrom<Sort>({ at: 1 }, { at: 1, _id: 1 }),
  limit: fc.integer({ min: 1, max: 6 }),
  skip: fc.integer({ min: 0, max: 2 }),
});

describe("embedded store: sorted queries in index order", () => {
  let dir: string;
  let file: string;
  let store: EmbeddedDocumentStore;

  async function open(): Promise<void> {
    store = new EmbeddedDocumentStore({ file, synchronous: "normal" });
    await store.open();
  }

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-index-order-"));
    file = join(dir, "store.db");
    await open();
    await store.createIndex(INDEXED, { name: "status_at", keys: { status: 1, at: 1 } });
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function apply(changes: readonly Change[]): Promise<void> {
    for (const c of changes) {
      for (const name of [INDEXED, PLAIN]) {
        const collection = store.collection(name);
        const id = `d${String(c.id).padStart(2, "0")}`;
        if (c.kind === "delete") await collection.deleteOne({ _id: id });
        else {
          const doc: Record<string, unknown> = { _id: id };
          if (c.status !== undefined) doc.status = c.status;
          if (c.at !== undefined) doc.at = c.at;
          await collection.deleteOne({ _id: id });
          await collection.insertOne(doc as Doc);
        }
      }
    }
  }

  async function sameAnswers(queries: readonly Query[]): Promise<void> {
    for (const q of queries) {
      const options = { sort: q.sort, limit: q.limit, skip: q.skip };
      const fromIndex = await store.collection(INDEXED).find(q.filter, options);
      const fromScan = await store.collection(PLAIN).find(q.filter, options);
      expect({ query: q, ids: fromIndex.map((d) => d._id) }).toEqual({
        query: q,
        ids: fromScan.map((d) => d._id),
      });
    }
  }

  it("returns what a scan returns, for generated documents, changes and queries", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(change(false), { minLength: 1, maxLength: 60 }),
        fc.array(query, { minLength: 1, maxLength: 8 }),
        async (changes, queries) => {
          await apply(changes);
          await sameAnswers(queries);
        },
      ),
      { numRuns: 150, seed: 20261121 },
    );
  });

  it("still returns what a scan returns once a multikey document turns the order off", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(change(true), { minLength: 1, maxLength: 60 }),
        fc.array(query, { minLength: 1, maxLength: 8 }),
        async (changes, queries) => {
          await apply(changes);
          await sameAnswers(queries);
        },
      ),
      { numRuns: 100, seed: 20261122 },
    );
  });

  it("sees its own writes inside a transaction, and the order survives a restart", async () => {
    await apply(
      DATES.map(
        (at, i) => ({ kind: "put", id: i, status: i % 2 === 0 ? "pending" : "failed", at }) as Change,
      ),
    );
    const sort = { at: 1, _id: 1 } as const;
    const claimed = await store.transaction(async (tx) => {
      // an uncommitted write that sorts first must be seen by the same transaction
      await tx.collection(INDEXED).insertOne({ _id: "early", status: "pending", at: new Date(0) });
      return tx.collection(INDEXED).find({ status: { $in: ["pending", "failed"] } }, { sort, limit: 2 });
    });
    expect(claimed.map((d) => d._id)).toEqual(["early", "d00"]);

    // a transaction reads its snapshot: a row committed by someone else meanwhile is not in its page
    const snapshot = await store.transaction(async (tx) => {
      await tx.collection(INDEXED).findOne({ _id: "d01" });
      await store.collection(INDEXED).insertOne({ _id: "earlier", status: "pending", at: new Date(-1) });
      return tx.collection(INDEXED).find({ status: "pending" }, { sort, limit: 2 });
    });
    expect(snapshot.map((d) => d._id)).toEqual(["early", "d00"]);
    await store.collection(INDEXED).deleteOne({ _id: "earlier" });

    await store.close();
    await open();
    const filter = { status: "pending", at: { $lte: DATES[4] } };
    expect((await store.collection(INDEXED).find(filter, { sort, limit: 10 })).map((d) => d._id)).toEqual([
      "early",
      "d00",
      "d02",
      "d04",
    ]);
  });
});
