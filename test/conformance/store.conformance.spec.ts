/**
 * The document-store port's contract, run against every adapter: the embedded engine always, MongoDB
 * whenever MONGO_URL points at a replica set.
 *
 * A few cases need what only the embedded engine offers and run on it alone: serializable isolation
 * (MongoDB transactions are snapshot isolation: write skew and phantoms are possible there), a TTL
 * sweep interval short enough for a test (MongoDB's TTL monitor runs every 60 s), and file-level
 * behaviour (the exclusive lock, a size limit, close waiting for queued commits).
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";
import type { EmbeddedStoreOptions } from "../../lib/store/embedded/embedded.adapter";
import { MongoDocumentStore } from "../../lib/store/mongodb.adapter";
import type { Collection, Doc, DocumentStore, Filter, Transaction } from "../../lib/store/store.port";
import { waitFor } from "../support/wait";

/** Polls `condition` until it holds; fails naming `what` after `timeoutMs`. */

/** A promise and the function that resolves it. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Resolves once `parties` callers have arrived. */
function barrier(parties: number): () => Promise<void> {
  let arrived = 0;
  const all = deferred();
  return () => {
    arrived++;
    if (arrived >= parties) all.resolve();
    return all.promise;
  };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function ids(docs: Doc[]): string[] {
  return docs.map((d) => d._id);
}

function sortedIds(docs: Doc[]): string[] {
  return ids(docs).sort();
}

interface AdapterUnderTest {
  name: string;
  /** Serializable isolation (reads validated at commit); MongoDB offers snapshot isolation. */
  serializable: boolean;
  /** The embedded engine's own file-level behaviour and TTL sweeper. */
  embedded: boolean;
  setUp(): Promise<void>;
  /** An opened store; the same `name` reaches the same data (after the previous store was closed). */
  open(name: string, options?: Partial<EmbeddedStoreOptions>): Promise<DocumentStore>;
  /** Closes a store and deletes its data. */
  destroy(store: DocumentStore): Promise<void>;
  tearDown(): Promise<void>;
}

function embeddedAdapter(): AdapterUnderTest {
  let dir: string | undefined;
  const folder = (): string => {
    if (dir === undefined) throw new Error("set up first");
    return dir;
  };
  return {
    name: "embedded",
    serializable: true,
    embedded: true,
    async setUp() {
      dir = mkdtempSync(join(tmpdir(), "ordermesh-store-conformance-"));
    },
    async open(name, options = {}) {
      const store = new EmbeddedDocumentStore({
        file: join(folder(), `${name}.db`),
        ttlSweepIntervalMs: 25,
        ...options,
      });
      await store.open();
      return store;
    },
    async destroy(store) {
      await store.close();
    },
    async tearDown() {
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function mongoAdapter(url: string): AdapterUnderTest {
  const run = randomUUID().slice(0, 8);
  return {
    name: "mongodb",
    serializable: false,
    embedded: false,
    async setUp() {},
    async open(name) {
      const store = new MongoDocumentStore({ url, database: `ordermesh_conformance_${run}_${name}` });
      await store.open();
      return store;
    },
    async destroy(store) {
      if (store instanceof MongoDocumentStore) await store.dropDatabase();
      await store.close();
    },
    async tearDown() {},
  };
}

const adapters: AdapterUnderTest[] = [embeddedAdapter()];
const mongoUrl = process.env.MONGO_URL;
if (mongoUrl !== undefined && mongoUrl !== "") adapters.push(mongoAdapter(mongoUrl));
else
  process.stderr.write(
    "\n(store conformance: MONGO_URL not set, running against the embedded engine only)\n\n",
  );

describe.each(adapters)("document store port on $name", (adapter) => {
  let store: DocumentStore;
  let collections = 0;
  /** A collection no other case uses. */
  const fresh = <T extends Doc = Doc>(): Collection<T> => store.collection<T>(`c${++collections}`);
  const serializableIt = adapter.serializable ? it : it.skip;
  const embeddedIt = adapter.embedded ? it : it.skip;

  beforeAll(async () => {
    await adapter.setUp();
    store = await adapter.open("shared");
  });
  afterAll(async () => {
    await adapter.destroy(store);
    await adapter.tearDown();
  });

  describe("documents", () => {
    it("generates a string _id when absent and returns the stored document", async () => {
      const c = fresh();
      const { insertedId } = await c.insertOne({ name: "a", qty: 1 });
      expect(typeof insertedId).toBe("string");
      expect(insertedId.length).toBeGreaterThan(0);
      expect(await c.findOne({ _id: insertedId })).toEqual({ _id: insertedId, name: "a", qty: 1 });
    });

    it("keeps a given _id and refuses a second document with it", async () => {
      const c = fresh();
      expect(await c.insertOne({ _id: "k1", v: 1 })).toEqual({ insertedId: "k1" });
      await expect(c.insertOne({ _id: "k1", v: 2 })).rejects.toMatchObject({
        code: "DUPLICATE_KEY",
        data: { index: "_id_", keyValue: { _id: "k1" } },
      });
      expect(await c.find({})).toEqual([{ _id: "k1", v: 1 }]);
    });

    it("refuses an _id that is not a string", async () => {
      const c = fresh();
      await expect(c.insertOne({ _id: 5 } as unknown as Doc)).rejects.toMatchObject({
        code: "INVALID_DOCUMENT",
      });
      expect(await c.countDocuments()).toBe(0);
    });

    it("refuses field names starting with $ or containing a dot, and values that cannot be stored", async () => {
      const c = fresh();
      const bad: unknown[] = [
        { $set: 1 },
        { nested: { $where: "x" } },
        { "a.b": 1 },
        { n: Number.NaN },
        { n: Number.POSITIVE_INFINITY },
        { f: () => 1 },
        { list: [1, undefined, 2] },
        { when: new Date(Number.NaN) },
        { big: BigInt(1) },
        { map: new Map() },
      ];
      for (const doc of bad) {
        await expect(c.insertOne(doc as Doc)).rejects.toMatchObject({ code: "INVALID_DOCUMENT" });
      }
      expect(await c.countDocuments()).toBe(0);
    });

    it("inserts many documents and returns their ids in order", async () => {
      const c = fresh();
      const { insertedIds } = await c.insertMany([{ _id: "a", n: 1 }, { n: 2 }, { _id: "c", n: 3 }]);
      expect(insertedIds).toHaveLength(3);
      expect(insertedIds[0]).toBe("a");
      expect(insertedIds[2]).toBe("c");
      expect(typeof insertedIds[1]).toBe("string");
      expect((await c.find({}, { sort: { n: 1 } })).map((d) => d._id)).toEqual(insertedIds);
    });

    it("inserts nothing of an insertMany when two of its documents share an _id", async () => {
      const c = fresh();
      await expect(c.insertMany([{ _id: "x" }, { _id: "y" }, { _id: "x" }])).rejects.toMatchObject({
        code: "DUPLICATE_KEY",
      });
      expect(await c.countDocuments()).toBe(0);
    });

    it("inserts nothing of an insertMany when one document duplicates an existing one", async () => {
      const c = fresh();
      await c.insertOne({ _id: "old" });
      await expect(c.insertMany([{ _id: "new1" }, { _id: "old" }, { _id: "new2" }])).rejects.toMatchObject({
        code: "DUPLICATE_KEY",
      });
      expect(ids(await c.find({}))).toEqual(["old"]);
    });

    it("finds every match, and findOne returns null when nothing matches", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "1", kind: "a" },
        { _id: "2", kind: "b" },
        { _id: "3", kind: "a" },
      ]);
      expect(sortedIds(await c.find({ kind: "a" }))).toEqual(["1", "3"]);
      expect(await c.findOne({ kind: "zzz" })).toBeNull();
      expect(await c.find({ kind: "zzz" })).toEqual([]);
    });

    it("counts all documents or the matching ones", async () => {
      const c = fresh();
      await c.insertMany(range(7).map((i) => ({ i, even: i % 2 === 0 })));
      expect(await c.countDocuments()).toBe(7);
      expect(await c.countDocuments({ even: true })).toBe(4);
      expect(await c.countDocuments({ i: { $gte: 5 } })).toBe(2);
    });

    it("skips and limits", async () => {
      const c = fresh();
      await c.insertMany(range(10).map((i) => ({ _id: `d${i}`, i })));
      expect((await c.find({}, { sort: { i: 1 }, skip: 3, limit: 4 })).map((d) => d.i)).toEqual([3, 4, 5, 6]);
      expect((await c.find({}, { sort: { i: -1 }, limit: 2 })).map((d) => d.i)).toEqual([9, 8]);
      expect(await c.find({}, { sort: { i: 1 }, skip: 20 })).toEqual([]);
      expect(await c.find({}, { limit: 3 })).toHaveLength(3);
    });

    it("deletes one match with deleteOne and every match with deleteMany", async () => {
      const c = fresh();
      await c.insertMany(range(6).map((i) => ({ _id: `d${i}`, group: i < 4 ? "x" : "y" })));
      expect(await c.deleteOne({ group: "x" })).toEqual({ deletedCount: 1 });
      expect(await c.countDocuments({ group: "x" })).toBe(3);
      expect(await c.deleteMany({ group: "x" })).toEqual({ deletedCount: 3 });
      expect(await c.deleteMany({ group: "x" })).toEqual({ deletedCount: 0 });
      expect(sortedIds(await c.find({}))).toEqual(["d4", "d5"]);
    });

    it("round-trips Dates at the top level, nested and in arrays, also after reopening", async () => {
      const name = `dates${collections++}`;
      const first = await adapter.open(name);
      const at = new Date("2024-02-29T12:34:56.789Z");
      const doc = {
        _id: "d",
        at,
        nested: { deeper: { when: new Date(0) } },
        list: [new Date(86_400_000), { x: new Date(-1) }],
        text: "2024-02-29T12:34:56.789Z",
      };
      await first.collection("dates").insertOne(doc);
      const read = await first.collection("dates").findOne({ _id: "d" });
      expect(read).toEqual(doc);
      expect(read?.at).toBeInstanceOf(Date);
      expect(read?.text).toBe("2024-02-29T12:34:56.789Z");
      await first.close();
      const second = await adapter.open(name);
      try {
        const again = await second.collection("dates").findOne({ at });
        expect(again).toEqual(doc);
        expect((again?.nested as { deeper: { when: unknown } }).deeper.when).toBeInstanceOf(Date);
      } finally {
        await adapter.destroy(second);
      }
    });

    it("hands out copies: mutating a result or the inserted input never changes the store", async () => {
      const c = fresh();
      const input = { _id: "m", tags: ["a"], inner: { n: 1 }, at: new Date(1000) };
      await c.insertOne(input);
      input.tags.push("from-input");
      input.inner.n = 99;
      input.at.setTime(5);
      const first = (await c.findOne({ _id: "m" })) as Doc & typeof input;
      first.tags.push("from-result");
      first.inner.n = 42;
      first.at.setTime(7);
      const [listed] = (await c.find({ _id: "m" })) as Array<Doc & typeof input>;
      (listed as Doc & typeof input).tags.length = 0;
      const updated = (await c.findOneAndUpdate(
        { _id: "m" },
        { $set: { x: 1 } },
        { returnDocument: "after" },
      )) as Doc & typeof input;
      updated.inner.n = -1;
      expect(await c.findOne({ _id: "m" })).toEqual({
        _id: "m",
        tags: ["a"],
        inner: { n: 1 },
        at: new Date(1000),
        x: 1,
      });
    });
  });

  describe("updates", () => {
    it("updateOne changes only the first match and reports matched and modified counts", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "1", k: "x", n: 0 },
        { _id: "2", k: "x", n: 0 },
      ]);
      expect(await c.updateOne({ k: "x" }, { $inc: { n: 1 } })).toEqual({
        matchedCount: 1,
        modifiedCount: 1,
        upsertedId: null,
      });
      expect((await c.find({ k: "x" })).map((d) => d.n).sort()).toEqual([0, 1]);
      expect(await c.updateOne({ k: "none" }, { $inc: { n: 1 } })).toEqual({
        matchedCount: 0,
        modifiedCount: 0,
        upsertedId: null,
      });
    });

    it("reports modifiedCount 0 for an update that changes nothing", async () => {
      const c = fresh();
      await c.insertOne({ _id: "1", n: 5, tags: ["a"] });
      expect(await c.updateOne({ _id: "1" }, { $set: { n: 5 }, $addToSet: { tags: "a" } })).toEqual({
        matchedCount: 1,
        modifiedCount: 0,
        upsertedId: null,
      });
    });

    it("updateMany changes every match", async () => {
      const c = fresh();
      await c.insertMany(range(5).map((i) => ({ _id: `d${i}`, odd: i % 2 === 1, seen: false })));
      expect(await c.updateMany({ odd: true }, { $set: { seen: true } })).toEqual({
        matchedCount: 2,
        modifiedCount: 2,
        upsertedId: null,
      });
      expect(sortedIds(await c.find({ seen: true }))).toEqual(["d1", "d3"]);
    });

    it("upserts from the filter's equality fields, $set and $setOnInsert", async () => {
      const c = fresh();
      const result = await c.updateOne(
        { sku: "A-1", "meta.kind": "widget", qty: { $gte: 0 } },
        { $set: { price: 10 }, $setOnInsert: { createdBy: "upsert" }, $inc: { qty: 3 } },
        { upsert: true },
      );
      expect(result.matchedCount).toBe(0);
      expect(result.modifiedCount).toBe(0);
      expect(typeof result.upsertedId).toBe("string");
      const doc = await c.findOne({ _id: result.upsertedId as string });
      expect(doc).toEqual({
        _id: result.upsertedId,
        sku: "A-1",
        meta: { kind: "widget" },
        price: 10,
        createdBy: "upsert",
        qty: 3,
      });
    });

    it("applies $set but not $setOnInsert when an upsert finds a match", async () => {
      const c = fresh();
      await c.insertOne({ _id: "u", sku: "B", price: 1 });
      const result = await c.updateOne(
        { sku: "B" },
        { $set: { price: 2 }, $setOnInsert: { createdBy: "upsert" } },
        { upsert: true },
      );
      expect(result).toEqual({ matchedCount: 1, modifiedCount: 1, upsertedId: null });
      expect(await c.findOne({ sku: "B" })).toEqual({ _id: "u", sku: "B", price: 2 });
    });

    it("upserts with the _id given in the filter", async () => {
      const c = fresh();
      const result = await c.updateOne({ _id: "by-id" }, { $set: { v: 1 } }, { upsert: true });
      expect(result.upsertedId).toBe("by-id");
      expect(await c.findOne({ _id: "by-id" })).toEqual({ _id: "by-id", v: 1 });
    });

    it("upserts one document with updateMany when nothing matches", async () => {
      const c = fresh();
      const result = await c.updateMany({ group: "g" }, { $set: { flag: true } }, { upsert: true });
      expect(result.matchedCount).toBe(0);
      expect(typeof result.upsertedId).toBe("string");
      expect(await c.find({}, { projection: { _id: 0 } })).toEqual([{ group: "g", flag: true }]);
    });

    it("findOneAndUpdate returns the document before the update by default, after when asked", async () => {
      const c = fresh();
      await c.insertOne({ _id: "f", n: 1 });
      expect(await c.findOneAndUpdate({ _id: "f" }, { $inc: { n: 1 } })).toEqual({ _id: "f", n: 1 });
      expect(
        await c.findOneAndUpdate({ _id: "f" }, { $inc: { n: 1 } }, { returnDocument: "before" }),
      ).toEqual({
        _id: "f",
        n: 2,
      });
      expect(await c.findOneAndUpdate({ _id: "f" }, { $inc: { n: 1 } }, { returnDocument: "after" })).toEqual(
        {
          _id: "f",
          n: 4,
        },
      );
      expect(await c.findOne({ _id: "f" })).toEqual({ _id: "f", n: 4 });
    });

    it("findOneAndUpdate with upsert returns null before, the new document after", async () => {
      const c = fresh();
      expect(await c.findOneAndUpdate({ key: "a" }, { $set: { v: 1 } }, { upsert: true })).toBeNull();
      const after = await c.findOneAndUpdate(
        { key: "b" },
        { $set: { v: 2 } },
        { upsert: true, returnDocument: "after" },
      );
      expect(after).toMatchObject({ key: "b", v: 2 });
      expect(typeof after?._id).toBe("string");
      expect(await c.countDocuments()).toBe(2);
    });

    it("findOneAndUpdate takes the first document in sort order and applies the projection", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "late", status: "pending", at: 30, payload: "x" },
        { _id: "early", status: "pending", at: 10, payload: "y" },
        { _id: "mid", status: "pending", at: 20, payload: "z" },
        { _id: "done", status: "done", at: 1, payload: "w" },
      ]);
      const claimed = await c.findOneAndUpdate(
        { status: "pending" },
        { $set: { status: "claimed" } },
        { sort: { at: 1 }, returnDocument: "after", projection: { status: 1, at: 1 } },
      );
      expect(claimed).toEqual({ _id: "early", status: "claimed", at: 10 });
      const newest = await c.findOneAndUpdate(
        { status: "pending" },
        { $set: { status: "claimed" } },
        { sort: { at: -1 } },
      );
      expect(newest?._id).toBe("late");
      expect(sortedIds(await c.find({ status: "pending" }))).toEqual(["mid"]);
    });

    it("findOneAndUpdate returns null and changes nothing when nothing matches", async () => {
      const c = fresh();
      await c.insertOne({ _id: "a", n: 1 });
      expect(await c.findOneAndUpdate({ n: 2 }, { $set: { n: 3 } })).toBeNull();
      expect(await c.find({})).toEqual([{ _id: "a", n: 1 }]);
    });

    it("$set creates nested paths, replaces values, and $unset removes fields", async () => {
      const c = fresh();
      await c.insertOne({ _id: "s", a: { keep: true, drop: 1 }, top: "x", gone: 1 });
      await c.updateOne(
        { _id: "s" },
        {
          $set: { "a.b.c": 1, top: { now: "object" }, list: [1, { d: new Date(3) }] },
          $unset: { "a.drop": "", gone: "", missing: "" },
        },
      );
      expect(await c.findOne({ _id: "s" })).toEqual({
        _id: "s",
        a: { keep: true, b: { c: 1 } },
        top: { now: "object" },
        list: [1, { d: new Date(3) }],
      });
    });

    it("$inc adds to numbers, also negative amounts, and creates missing fields", async () => {
      const c = fresh();
      await c.insertOne({ _id: "i", n: 10, nested: { m: 1.5 } });
      await c.updateOne({ _id: "i" }, { $inc: { n: -3, "nested.m": 1, fresh: 2 } });
      expect(await c.findOne({ _id: "i" })).toEqual({ _id: "i", n: 7, nested: { m: 2.5 }, fresh: 2 });
    });

    it("refuses $inc on a non-number and $push on a non-array, leaving the document unchanged", async () => {
      const c = fresh();
      await c.insertOne({ _id: "t", s: "text", n: 1, notList: 3 });
      await expect(c.updateOne({ _id: "t" }, { $inc: { n: 1, s: 1 } })).rejects.toMatchObject({
        code: "INVALID_DOCUMENT",
      });
      await expect(c.updateOne({ _id: "t" }, { $push: { notList: 1 } })).rejects.toMatchObject({
        code: "INVALID_DOCUMENT",
      });
      await expect(c.updateOne({ _id: "t" }, { $set: { "s.inner": 1 } })).rejects.toMatchObject({
        code: "INVALID_DOCUMENT",
      });
      expect(await c.findOne({ _id: "t" })).toEqual({ _id: "t", s: "text", n: 1, notList: 3 });
    });

    it("refuses an updateMany entirely when one of its documents cannot be updated", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "1", n: 1 },
        { _id: "2", n: "two" },
        { _id: "3", n: 3 },
      ]);
      await expect(c.updateMany({}, { $inc: { n: 1 } })).rejects.toMatchObject({ code: "INVALID_DOCUMENT" });
      expect((await c.find({}, { sort: { _id: 1 } })).map((d) => d.n)).toEqual([1, "two", 3]);
    });

    it("$push appends a value or each of $each, creating the array when missing", async () => {
      const c = fresh();
      await c.insertOne({ _id: "p", list: [1] });
      await c.updateOne({ _id: "p" }, { $push: { list: 2, created: { a: 1 } } });
      await c.updateOne({ _id: "p" }, { $push: { list: { $each: [3, [4], { five: 5 }] } } });
      expect(await c.findOne({ _id: "p" })).toEqual({
        _id: "p",
        list: [1, 2, 3, [4], { five: 5 }],
        created: [{ a: 1 }],
      });
    });

    it("$pull removes equal values, values matching a condition, and embedded documents matching a filter", async () => {
      const c = fresh();
      await c.insertOne({
        _id: "q",
        tags: ["a", "b", "a", "c"],
        scores: [1, 5, 8, 10, 3],
        items: [
          { sku: "A", qty: 1 },
          { sku: "B", qty: 2 },
          { sku: "A", qty: 3 },
        ],
      });
      await c.updateOne(
        { _id: "q" },
        { $pull: { tags: "a", scores: { $gte: 5, $lt: 10 }, items: { sku: "A", qty: { $gt: 2 } } } },
      );
      expect(await c.findOne({ _id: "q" })).toEqual({
        _id: "q",
        tags: ["b", "c"],
        scores: [1, 10, 3],
        items: [
          { sku: "A", qty: 1 },
          { sku: "B", qty: 2 },
        ],
      });
      await c.updateOne({ _id: "q" }, { $pull: { scores: { $in: [1, 3] }, absent: 1 } });
      expect((await c.findOne({ _id: "q" }))?.scores).toEqual([10]);
    });

    it("$addToSet adds only values not yet present, also with $each", async () => {
      const c = fresh();
      await c.insertOne({ _id: "s", tags: ["a"] });
      await c.updateOne({ _id: "s" }, { $addToSet: { tags: "a", created: "x" } });
      await c.updateOne({ _id: "s" }, { $addToSet: { tags: { $each: ["b", "a", "c", "b"] } } });
      expect(await c.findOne({ _id: "s" })).toEqual({ _id: "s", tags: ["a", "b", "c"], created: ["x"] });
    });

    it("$min and $max keep the smaller or larger value, for numbers and Dates", async () => {
      const c = fresh();
      await c.insertOne({ _id: "m", lo: 5, hi: 5, first: new Date(5000), last: new Date(5000) });
      await c.updateOne(
        { _id: "m" },
        { $min: { lo: 3, first: new Date(1000), newLo: 7 }, $max: { hi: 4, last: new Date(9000) } },
      );
      expect(await c.findOne({ _id: "m" })).toEqual({
        _id: "m",
        lo: 3,
        hi: 5,
        first: new Date(1000),
        last: new Date(9000),
        newLo: 7,
      });
    });

    it("refuses a replacement document", async () => {
      const c = fresh();
      await c.insertOne({ _id: "r", a: 1 });
      await expect(c.updateOne({ _id: "r" }, { a: 2 })).rejects.toMatchObject({ code: "UNSUPPORTED_QUERY" });
      await expect(c.updateMany({ _id: "r" }, { $set: { b: 1 }, a: 2 })).rejects.toMatchObject({
        code: "UNSUPPORTED_QUERY",
      });
      await expect(c.findOneAndUpdate({ _id: "r" }, {})).rejects.toMatchObject({ code: "UNSUPPORTED_QUERY" });
      expect(await c.findOne({ _id: "r" })).toEqual({ _id: "r", a: 1 });
    });

    it("refuses to change _id", async () => {
      const c = fresh();
      await c.insertOne({ _id: "fixed" });
      for (const update of [{ $set: { _id: "other" } }, { $unset: { _id: "" } }, { $inc: { "_id.x": 1 } }]) {
        await expect(c.updateOne({ _id: "fixed" }, update)).rejects.toMatchObject({
          code: "INVALID_DOCUMENT",
        });
      }
      expect(await c.find({})).toEqual([{ _id: "fixed" }]);
    });

    it("refuses an update whose operators touch overlapping paths", async () => {
      const c = fresh();
      await c.insertOne({ _id: "o", a: { b: 1 } });
      await expect(c.updateOne({ _id: "o" }, { $set: { a: 1 }, $inc: { "a.b": 1 } })).rejects.toMatchObject({
        code: "INVALID_DOCUMENT",
      });
      await expect(
        c.updateOne({ _id: "o" }, { $set: { "a.b": 2 }, $unset: { "a.b": "" } }),
      ).rejects.toMatchObject({
        code: "INVALID_DOCUMENT",
      });
    });
  });

  describe("filters", () => {
    let c: Collection;
    beforeAll(async () => {
      c = fresh();
      await c.insertMany([
        {
          _id: "n1",
          n: 1,
          s: "apple",
          tags: ["red", "fruit"],
          at: new Date("2024-01-01"),
          meta: { color: "red", w: 3 },
        },
        {
          _id: "n2",
          n: 2,
          s: "banana",
          tags: ["yellow", "fruit"],
          at: new Date("2024-06-01"),
          meta: { color: "yellow" },
        },
        { _id: "n3", n: 3, s: "cherry", tags: [], at: new Date("2025-01-01"), meta: null },
        { _id: "s1", n: "3", s: "Date", tags: "single" },
        {
          _id: "x1",
          n: null,
          items: [
            { sku: "A", qty: 1 },
            { sku: "B", qty: 5 },
          ],
        },
        { _id: "x2", items: [{ sku: "C" }, { sku: "A", qty: 9 }], grid: [[1, 2], [3]] },
      ]);
    });
    const match = async (filter: Filter): Promise<string[]> => sortedIds(await c.find(filter));

    it("matches implicit equality and $eq, on top-level and dotted paths", async () => {
      expect(await match({ s: "apple" })).toEqual(["n1"]);
      expect(await match({ n: { $eq: 2 } })).toEqual(["n2"]);
      expect(await match({ "meta.color": "yellow" })).toEqual(["n2"]);
      expect(await match({ "meta.w": 3, n: 1 })).toEqual(["n1"]);
      expect(await match({ n: 3 })).toEqual(["n3"]);
      expect(await match({ n: "3" })).toEqual(["s1"]);
    });

    it("matches $ne also on documents without the field", async () => {
      expect(await match({ s: { $ne: "apple" } })).toEqual(["n2", "n3", "s1", "x1", "x2"]);
      expect(await match({ "meta.color": { $ne: "red" } })).toEqual(["n2", "n3", "s1", "x1", "x2"]);
    });

    it("compares with $gt/$gte/$lt/$lte only values of the operand's type", async () => {
      expect(await match({ n: { $gt: 1 } })).toEqual(["n2", "n3"]);
      expect(await match({ n: { $gte: 1, $lt: 3 } })).toEqual(["n1", "n2"]);
      expect(await match({ n: { $lte: 2 } })).toEqual(["n1", "n2"]);
      expect(await match({ n: { $gt: "2" } })).toEqual(["s1"]);
    });

    it("compares strings in binary order and Dates by time", async () => {
      expect(await match({ s: { $gte: "b", $lt: "c" } })).toEqual(["n2"]);
      expect(await match({ s: { $lt: "a" } })).toEqual(["s1"]);
      expect(await match({ at: { $gte: new Date("2024-03-01") } })).toEqual(["n2", "n3"]);
      expect(await match({ at: { $lt: new Date("2024-03-01") } })).toEqual(["n1"]);
      expect(await match({ at: new Date("2024-06-01") })).toEqual(["n2"]);
    });

    it("matches $in and $nin, where null stands for a missing field too", async () => {
      expect(await match({ n: { $in: [1, 3, "x"] } })).toEqual(["n1", "n3"]);
      expect(await match({ n: { $in: [null] } })).toEqual(["x1", "x2"]);
      expect(await match({ n: { $nin: [1, 2, null] } })).toEqual(["n3", "s1"]);
      expect(await match({ tags: { $in: ["fruit"] } })).toEqual(["n1", "n2"]);
      expect(await match({ n: { $in: [] } })).toEqual([]);
    });

    it("matches $exists", async () => {
      expect(await match({ meta: { $exists: true } })).toEqual(["n1", "n2", "n3"]);
      expect(await match({ n: { $exists: false } })).toEqual(["x2"]);
      expect(await match({ "meta.w": { $exists: true } })).toEqual(["n1"]);
      expect(await match({ "items.qty": { $exists: true } })).toEqual(["x1", "x2"]);
    });

    it("combines conditions with $and and $or", async () => {
      expect(await match({ $or: [{ n: 1 }, { s: "Date" }] })).toEqual(["n1", "s1"]);
      expect(await match({ $and: [{ n: { $gte: 1 } }, { n: { $lte: 2 } }] })).toEqual(["n1", "n2"]);
      expect(await match({ tags: "fruit", $or: [{ n: 2 }, { $and: [{ s: "apple" }, { n: 1 }] }] })).toEqual([
        "n1",
        "n2",
      ]);
    });

    it("negates a condition with $not, which also matches documents without the field", async () => {
      expect(await match({ n: { $not: { $gte: 2 } } })).toEqual(["n1", "s1", "x1", "x2"]);
    });

    it("matches an array field when any element matches a scalar condition", async () => {
      expect(await match({ tags: "red" })).toEqual(["n1"]);
      expect(await match({ tags: "single" })).toEqual(["s1"]);
      expect(await match({ "items.qty": { $gt: 4 } })).toEqual(["x1", "x2"]);
      expect(await match({ "items.qty": { $lt: 2 } })).toEqual(["x1"]);
      expect(await match({ grid: [3] })).toEqual(["x2"]);
      expect(await match({ grid: 3 })).toEqual([]);
    });

    it("matches an array operand against the whole array, in order", async () => {
      expect(await match({ tags: ["red", "fruit"] })).toEqual(["n1"]);
      expect(await match({ tags: ["fruit", "red"] })).toEqual([]);
      expect(await match({ tags: [] })).toEqual(["n3"]);
    });

    it("reaches into arrays of embedded documents with dotted paths", async () => {
      expect(await match({ "items.sku": "A" })).toEqual(["x1", "x2"]);
      expect(await match({ "items.sku": "C" })).toEqual(["x2"]);
      expect(await match({ "items.sku": { $in: ["B", "C"] } })).toEqual(["x1", "x2"]);
    });

    it("matches null against null and missing fields only", async () => {
      expect(await match({ n: null })).toEqual(["x1", "x2"]);
      expect(await match({ meta: null })).toEqual(["n3", "s1", "x1", "x2"]);
      expect(await match({ n: { $ne: null } })).toEqual(["n1", "n2", "n3", "s1"]);
    });

    it("matches embedded documents exactly, field order included", async () => {
      expect(await match({ meta: { color: "yellow" } })).toEqual(["n2"]);
      expect(await match({ meta: { color: "red" } })).toEqual([]);
      expect(await match({ meta: { w: 3, color: "red" } })).toEqual([]);
      expect(await match({ meta: { color: "red", w: 3 } })).toEqual(["n1"]);
    });
  });

  describe("sort and projection", () => {
    it("sorts by several keys, each ascending or descending", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "a", g: 2, n: 1 },
        { _id: "b", g: 1, n: 1 },
        { _id: "c", g: 2, n: 3 },
        { _id: "d", g: 1, n: 2 },
      ]);
      expect(ids(await c.find({}, { sort: { g: 1, n: -1 } }))).toEqual(["d", "b", "c", "a"]);
      expect(ids(await c.find({}, { sort: { g: -1, n: 1 } }))).toEqual(["a", "c", "b", "d"]);
    });

    it("sorts a missing or null field before numbers ascending and after them descending", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "num", v: 1, k: 1 },
        { _id: "missing", k: 2 },
        { _id: "neg", v: -5, k: 3 },
        { _id: "null", v: null, k: 4 },
      ]);
      expect(ids(await c.find({}, { sort: { v: 1, k: 1 } }))).toEqual(["missing", "null", "neg", "num"]);
      expect(ids(await c.find({}, { sort: { v: -1, k: 1 } }))).toEqual(["num", "neg", "missing", "null"]);
    });

    it("sorts mixed types in MongoDB's order: null < numbers < strings < objects < booleans < dates", async () => {
      const c = fresh();
      const values: Array<[string, unknown]> = [
        ["date", new Date(0)],
        ["str-a", "a"],
        ["true", true],
        ["obj", { x: 1 }],
        ["n-neg", -1],
        ["str-B", "B"],
        ["false", false],
        ["null", null],
        ["n-frac", 2.5],
        ["str-10", "10"],
        ["n-ten", 10],
      ];
      await c.insertMany(values.map(([_id, v]) => ({ _id, v })));
      const expected = [
        "null",
        "n-neg",
        "n-frac",
        "n-ten",
        "str-10",
        "str-B",
        "str-a",
        "obj",
        "false",
        "true",
        "date",
      ];
      expect(ids(await c.find({}, { sort: { v: 1 } }))).toEqual(expected);
      expect(ids(await c.find({}, { sort: { v: -1 } }))).toEqual([...expected].reverse());
      expect(ids(await c.find({}, { sort: { v: 1 }, limit: 4 }))).toEqual(expected.slice(0, 4));
      expect(ids(await c.find({}, { sort: { v: -1 }, skip: 2, limit: 3 }))).toEqual(
        [...expected].reverse().slice(2, 5),
      );
    });

    it("sorts an array field by its smallest element ascending and its largest descending", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "a", v: [5, 1] },
        { _id: "b", v: [3] },
        { _id: "c", v: 2 },
        { _id: "d", v: [0, 10] },
      ]);
      expect(ids(await c.find({}, { sort: { v: 1 } }))).toEqual(["d", "a", "c", "b"]);
      expect(ids(await c.find({}, { sort: { v: -1 } }))).toEqual(["d", "a", "b", "c"]);
    });

    it("sorts by a dotted path", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "a", m: { at: new Date(3) } },
        { _id: "b", m: { at: new Date(1) } },
        { _id: "c", m: { at: new Date(2) } },
      ]);
      expect(ids(await c.find({}, { sort: { "m.at": 1 } }))).toEqual(["b", "c", "a"]);
    });

    it("includes fields (and _id unless excluded), also by dotted paths", async () => {
      const c = fresh();
      await c.insertOne({ _id: "p", a: 1, b: { x: 1, y: 2 }, c: [{ k: 1, z: 0 }, { k: 2 }], d: 4 });
      expect(await c.findOne({ _id: "p" }, { projection: { a: 1, "b.y": 1 } })).toEqual({
        _id: "p",
        a: 1,
        b: { y: 2 },
      });
      expect(await c.findOne({ _id: "p" }, { projection: { "c.k": 1, _id: 0 } })).toEqual({
        c: [{ k: 1 }, { k: 2 }],
      });
      expect(await c.find({ _id: "p" }, { projection: { d: 1 } })).toEqual([{ _id: "p", d: 4 }]);
    });

    it("excludes fields, and _id: 0 removes the id", async () => {
      const c = fresh();
      await c.insertOne({ _id: "p", a: 1, b: { x: 1, y: 2 }, d: 4 });
      expect(await c.findOne({ _id: "p" }, { projection: { a: 0, "b.x": 0 } })).toEqual({
        _id: "p",
        b: { y: 2 },
        d: 4,
      });
      expect(await c.findOne({ _id: "p" }, { projection: { _id: 0 } })).toEqual({
        a: 1,
        b: { x: 1, y: 2 },
        d: 4,
      });
    });

    it("refuses a projection mixing inclusion and exclusion", async () => {
      const c = fresh();
      await expect(c.find({}, { projection: { a: 1, b: 0 } })).rejects.toMatchObject({
        code: "UNSUPPORTED_QUERY",
      });
    });
  });

  describe("the subset is enforced", () => {
    const unsupportedFilters: Array<[string, Filter]> = [
      ["$regex", { name: { $regex: "^a" } }],
      ["a RegExp literal", { name: /^a/ }],
      ["$where", { $where: "this.a > 1" }],
      ["$expr", { $expr: { $gt: ["$a", 1] } }],
      ["$elemMatch", { items: { $elemMatch: { qty: 1 } } }],
      ["$size", { items: { $size: 2 } }],
      ["$type", { a: { $type: "string" } }],
      ["$nor", { $nor: [{ a: 1 }] }],
      ["$text", { $text: { $search: "x" } }],
      ["$all", { tags: { $all: ["a"] } }],
      ["$mod", { n: { $mod: [2, 0] } }],
      ["an array index path", { "items.0.sku": "A" }],
      ["operators mixed with fields", { a: { $gt: 1, b: 2 } }],
    ];
    it.each(unsupportedFilters)("refuses the filter operator %s", async (_label, filter) => {
      const c = fresh();
      await c.insertOne({ _id: "x", name: "abc", items: [{ qty: 1 }], a: 2, tags: ["a"], n: 2 });
      await expect(c.find(filter)).rejects.toMatchObject({ code: "UNSUPPORTED_QUERY" });
      await expect(c.countDocuments(filter)).rejects.toMatchObject({ code: "UNSUPPORTED_QUERY" });
      await expect(c.deleteMany(filter)).rejects.toMatchObject({ code: "UNSUPPORTED_QUERY" });
      expect(await c.countDocuments()).toBe(1);
    });

    const unsupportedUpdates: Array<[string, Record<string, unknown>]> = [
      ["$rename", { $rename: { a: "b" } }],
      ["$mul", { $mul: { a: 2 } }],
      ["$currentDate", { $currentDate: { at: true } }],
      ["$pop", { $pop: { items: 1 } }],
      ["$pullAll", { $pullAll: { items: [1] } }],
      ["$bit", { $bit: { a: { and: 1 } } }],
      ["the positional $", { $set: { "items.$.qty": 2 } }],
      ["the all-positional $[]", { $inc: { "items.$[].qty": 1 } }],
      ["a filtered positional $[x]", { $set: { "items.$[x].qty": 1 } }],
      ["an array index path", { $set: { "items.0.qty": 2 } }],
      ["$push with $slice", { $push: { items: { $each: [1], $slice: 3 } } }],
      ["$push with $position", { $push: { items: { $each: [1], $position: 0 } } }],
    ];
    it.each(unsupportedUpdates)("refuses the update operator %s", async (_label, update) => {
      const c = fresh();
      await c.insertOne({ _id: "x", a: 2, items: [{ qty: 1 }] });
      await expect(c.updateOne({ _id: "x" }, update)).rejects.toMatchObject({ code: "UNSUPPORTED_QUERY" });
      await expect(c.updateMany({}, update)).rejects.toMatchObject({ code: "UNSUPPORTED_QUERY" });
      await expect(c.findOneAndUpdate({ _id: "x" }, update)).rejects.toMatchObject({
        code: "UNSUPPORTED_QUERY",
      });
      expect(await c.findOne({ _id: "x" })).toEqual({ _id: "x", a: 2, items: [{ qty: 1 }] });
    });

    it("refuses sort and projection operators", async () => {
      const c = fresh();
      const unsupported = [
        c.find({}, { sort: { $natural: 1 } }),
        c.find({}, { sort: { a: { $meta: "textScore" } } as unknown as Record<string, 1> }),
        c.find({}, { projection: { items: { $slice: 1 } } as unknown as Record<string, 1> }),
        c.find({}, { projection: { "items.$": 1 } }),
        c.find({}, { projection: { items: { $elemMatch: { qty: 1 } } } as unknown as Record<string, 1> }),
      ];
      for (const call of unsupported) await expect(call).rejects.toMatchObject({ code: "UNSUPPORTED_QUERY" });
    });
  });

  describe("indexes", () => {
    it("refuses a duplicate in a unique index on insert and on update, naming the index and key", async () => {
      const c = fresh();
      const name = await store.createIndex(c.name, { keys: { email: 1 }, unique: true });
      expect(name).toBe("email_1");
      await c.insertOne({ _id: "u1", email: "a@x" });
      await c.insertOne({ _id: "u2", email: "b@x" });
      await expect(c.insertOne({ _id: "u3", email: "a@x" })).rejects.toMatchObject({
        code: "DUPLICATE_KEY",
        data: { collection: c.name, index: "email_1", keyValue: { email: "a@x" } },
      });
      await expect(c.updateOne({ _id: "u2" }, { $set: { email: "a@x" } })).rejects.toMatchObject({
        code: "DUPLICATE_KEY",
        data: { index: "email_1" },
      });
      expect(await c.find({}, { sort: { _id: 1 } })).toEqual([
        { _id: "u1", email: "a@x" },
        { _id: "u2", email: "b@x" },
      ]);
      // A freed key can be taken again.
      await c.updateOne({ _id: "u1" }, { $set: { email: "c@x" } });
      await c.insertOne({ _id: "u3", email: "a@x" });
      expect(await c.countDocuments()).toBe(3);
    });

    it("constrains the combination of a compound unique index, not each field", async () => {
      const c = fresh();
      await store.createIndex(c.name, { keys: { customerId: 1, idempotencyKey: 1 }, unique: true });
      await c.insertMany([
        { customerId: "c1", idempotencyKey: "k1" },
        { customerId: "c1", idempotencyKey: "k2" },
        { customerId: "c2", idempotencyKey: "k1" },
      ]);
      await expect(c.insertOne({ customerId: "c2", idempotencyKey: "k1" })).rejects.toMatchObject({
        code: "DUPLICATE_KEY",
        data: {
          index: "customerId_1_idempotencyKey_1",
          keyValue: { customerId: "c2", idempotencyKey: "k1" },
        },
      });
      expect(await c.countDocuments()).toBe(3);
    });

    it("constrains only documents matching a partial unique index's filter", async () => {
      const c = fresh();
      await store.createIndex(c.name, {
        keys: { sku: 1 },
        unique: true,
        name: "one_active_per_sku",
        partialFilterExpression: { active: true },
      });
      await c.insertMany([
        { sku: "A", active: true },
        { sku: "A", active: false },
        { sku: "A", active: false },
      ]);
      await expect(c.insertOne({ sku: "A", active: true })).rejects.toMatchObject({
        code: "DUPLICATE_KEY",
        data: { index: "one_active_per_sku" },
      });
      await expect(c.updateOne({ active: false }, { $set: { active: true } })).rejects.toMatchObject({
        code: "DUPLICATE_KEY",
      });
      await c.updateOne({ active: true }, { $set: { active: false } });
      await c.updateOne({ active: false }, { $set: { active: true } });
      expect(await c.countDocuments({ active: true })).toBe(1);
    });

    it("refuses to create a unique index over duplicate data, and creates nothing", async () => {
      const c = fresh();
      await c.insertMany([{ v: 1 }, { v: 2 }, { v: 1 }]);
      await expect(store.createIndex(c.name, { keys: { v: 1 }, unique: true })).rejects.toMatchObject({
        code: "DUPLICATE_KEY",
        data: { keyValue: { v: 1 } },
      });
      await c.insertOne({ v: 2 });
      expect(await c.countDocuments({ v: 2 })).toBe(2);
    });

    it("creates an index once: the same spec again is a no-op returning its name", async () => {
      const c = fresh();
      expect(await store.createIndex(c.name, { keys: { a: 1, b: -1 } })).toBe("a_1_b_-1");
      expect(await store.createIndex(c.name, { keys: { a: 1, b: -1 } })).toBe("a_1_b_-1");
      expect(await store.createIndex(c.name, { keys: { t: 1 }, name: "by_t", unique: true })).toBe("by_t");
      expect(await store.createIndex(c.name, { keys: { t: 1 }, name: "by_t", unique: true })).toBe("by_t");
      await c.insertOne({ t: 1 });
      await expect(c.insertOne({ t: 1 })).rejects.toMatchObject({ code: "DUPLICATE_KEY" });
    });

    it("treats a missing field as null in a unique index", async () => {
      const c = fresh();
      await store.createIndex(c.name, { keys: { ext: 1 }, unique: true });
      await c.insertOne({ _id: "first" });
      await expect(c.insertOne({ _id: "second" })).rejects.toMatchObject({ code: "DUPLICATE_KEY" });
      await expect(c.insertOne({ _id: "third", ext: null })).rejects.toMatchObject({ code: "DUPLICATE_KEY" });
      await c.insertOne({ _id: "fourth", ext: "x" });
      expect(await c.countDocuments()).toBe(2);
    });

    it("constrains every element of an array field in a unique index", async () => {
      const c = fresh();
      await store.createIndex(c.name, { keys: { aliases: 1 }, unique: true });
      await c.insertOne({ _id: "a", aliases: ["x", "y", "x"] });
      await expect(c.insertOne({ _id: "b", aliases: ["z", "y"] })).rejects.toMatchObject({
        code: "DUPLICATE_KEY",
        data: { keyValue: { aliases: "y" } },
      });
      await c.insertOne({ _id: "c", aliases: ["z"] });
      expect(await c.countDocuments()).toBe(2);
    });

    it("refuses a duplicate unique key between two documents of one insertMany, inserting neither", async () => {
      const c = fresh();
      await store.createIndex(c.name, { keys: { email: 1 }, unique: true });
      await expect(
        c.insertMany([
          { _id: "1", email: "a@x" },
          { _id: "2", email: "b@x" },
          { _id: "3", email: "a@x" },
        ]),
      ).rejects.toMatchObject({ code: "DUPLICATE_KEY", data: { index: "email_1" } });
      expect(await c.countDocuments()).toBe(0);
    });

    it("refuses a document with arrays in two fields of one compound index, and stays usable", async () => {
      const c = fresh();
      await store.createIndex(c.name, { keys: { a: 1, b: 1 } });
      await c.insertOne({ _id: "ok", a: [1, 2], b: 1 });
      await expect(c.insertOne({ _id: "bad", a: [1, 2], b: [3, 4] })).rejects.toMatchObject({
        code: "INVALID_DOCUMENT",
      });
      await expect(c.updateOne({ _id: "ok" }, { $set: { b: [5, 6] } })).rejects.toMatchObject({
        code: "INVALID_DOCUMENT",
      });
      await c.insertOne({ _id: "after", a: 3, b: [1, 2] });
      expect(sortedIds(await c.find({ a: { $gte: 1 } }))).toEqual(["after", "ok"]);
    });

    it("refuses an upsert that would duplicate a unique key", async () => {
      const c = fresh();
      await store.createIndex(c.name, { keys: { code: 1 }, unique: true });
      await c.insertOne({ _id: "a", code: "X", kind: "one" });
      await expect(
        c.updateOne({ kind: "two" }, { $set: { code: "X" } }, { upsert: true }),
      ).rejects.toMatchObject({ code: "DUPLICATE_KEY" });
      expect(await c.countDocuments()).toBe(1);
    });

    it("returns the same results with and without indexes", async () => {
      const plain = fresh();
      const indexed = fresh();
      await store.createIndex(indexed.name, { keys: { tag: 1 } });
      await store.createIndex(indexed.name, { keys: { a: 1, b: 1 } });
      await store.createIndex(indexed.name, { keys: { "items.sku": 1 } });
      await store.createIndex(indexed.name, { keys: { at: -1 } });
      const docs = [
        { _id: "1", tag: "x", a: 1, b: 1, items: [{ sku: "A" }], at: new Date(1) },
        { _id: "2", tag: "y", a: 1, b: 2, items: [{ sku: "B" }, { sku: "A" }], at: new Date(2) },
        { _id: "3", tag: null, a: 2, b: 1, items: [], at: new Date(1) },
        { _id: "4", a: 1, items: [{ qty: 1 }] },
        { _id: "5", tag: ["x", "z"], a: [1, 3], b: 2, items: [{ sku: "C" }] },
        { _id: "6", tag: 5, a: "1", b: 1 },
      ];
      await plain.insertMany(docs);
      await indexed.insertMany(docs);
      const filters: Filter[] = [
        { tag: "x" },
        { tag: null },
        { tag: { $in: ["y", null, 5] } },
        { tag: { $eq: "z" } },
        { "items.sku": "A" },
        { "items.sku": null },
        { a: 1 },
        { a: 1, b: 2 },
        { a: 1, b: { $gt: 1 } },
        { $and: [{ tag: "x" }, { a: 1 }] },
        { a: "1" },
        { at: new Date(1) },
        { tag: "x", $or: [{ b: 2 }, { a: 1 }] },
      ];
      for (const filter of filters) {
        const expected = sortedIds(await plain.find(filter));
        expect({ filter, ids: sortedIds(await indexed.find(filter)) }).toEqual({ filter, ids: expected });
        expect(await indexed.countDocuments(filter)).toBe(expected.length);
      }
      // And after updates that move documents between index keys.
      await indexed.updateMany({ tag: "x" }, { $set: { tag: "moved" } });
      await plain.updateMany({ tag: "x" }, { $set: { tag: "moved" } });
      expect(sortedIds(await indexed.find({ tag: "moved" }))).toEqual(
        sortedIds(await plain.find({ tag: "moved" })),
      );
      expect(await indexed.find({ tag: "x" })).toEqual([]);
    });

    embeddedIt("removes documents whose TTL-indexed date has passed, and only those", async () => {
      const c = fresh();
      await store.createIndex(c.name, { keys: { expiresAt: 1 }, expireAfterSeconds: 0 });
      await c.insertMany([
        { _id: "expired", expiresAt: new Date(Date.now() - 1000) },
        { _id: "expired-array", expiresAt: [new Date(Date.now() + 3_600_000), new Date(Date.now() - 1000)] },
        { _id: "future", expiresAt: new Date(Date.now() + 3_600_000) },
        { _id: "not-a-date", expiresAt: "2000-01-01" },
        { _id: "no-field" },
      ]);
      await waitFor("expired documents to be swept", async () => (await c.countDocuments()) === 3);
      expect(sortedIds(await c.find({}))).toEqual(["future", "no-field", "not-a-date"]);
    });

    embeddedIt("uses expireAfterSeconds relative to the indexed date", async () => {
      const c = fresh();
      await store.createIndex(c.name, { keys: { createdAt: 1 }, expireAfterSeconds: 3600 });
      await c.insertMany([
        { _id: "old", createdAt: new Date(Date.now() - 3_601_000) },
        { _id: "recent", createdAt: new Date(Date.now() - 60_000) },
      ]);
      await waitFor("the old document to be swept", async () => (await c.countDocuments()) === 1);
      expect(ids(await c.find({}))).toEqual(["recent"]);
    });
  });

  describe("transactions", () => {
    it("makes a committed transaction's writes to several collections visible, and returns its value", async () => {
      const orders = fresh();
      const outbox = fresh();
      const result = await store.transaction(async (tx) => {
        await tx.collection(orders.name).insertOne({ _id: "o1", status: "PENDING" });
        await tx.collection(outbox.name).insertOne({ _id: "e1", type: "order.created", aggregateId: "o1" });
        return "done";
      });
      expect(result).toBe("done");
      expect(await orders.findOne({ _id: "o1" })).toEqual({ _id: "o1", status: "PENDING" });
      expect(await outbox.findOne({ _id: "e1" })).toMatchObject({ type: "order.created" });
    });

    it("rolls back every collection when the body throws, and rethrows the error", async () => {
      const a = fresh();
      const b = fresh();
      await a.insertOne({ _id: "keep", n: 1 });
      const failure = new Error("business rule says no");
      let runs = 0;
      await expect(
        store.transaction(async (tx) => {
          runs++;
          await tx.collection(a.name).updateOne({ _id: "keep" }, { $set: { n: 2 } });
          await tx.collection(a.name).insertOne({ _id: "new" });
          await tx.collection(b.name).insertOne({ _id: "other" });
          await tx.collection(a.name).deleteOne({ _id: "keep" });
          throw failure;
        }),
      ).rejects.toBe(failure);
      expect(runs).toBe(1);
      expect(await a.find({})).toEqual([{ _id: "keep", n: 1 }]);
      expect(await b.countDocuments()).toBe(0);
    });

    it("keeps uncommitted writes invisible outside the transaction", async () => {
      const c = fresh();
      await c.insertOne({ _id: "a", v: 1 });
      const written = deferred();
      const release = deferred();
      const tx = store.transaction(async (t) => {
        await t.collection(c.name).updateOne({ _id: "a" }, { $set: { v: 2 } });
        await t.collection(c.name).insertOne({ _id: "b" });
        written.resolve();
        await release.promise;
      });
      await written.promise;
      expect(await c.findOne({ _id: "a" })).toEqual({ _id: "a", v: 1 });
      expect(await c.countDocuments()).toBe(1);
      expect(await c.findOne({ _id: "b" })).toBeNull();
      release.resolve();
      await tx;
      expect(await c.findOne({ _id: "a" })).toEqual({ _id: "a", v: 2 });
      expect(await c.countDocuments()).toBe(2);
    });

    it("reads its own writes: inserts, updates and deletes, also through queries", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "a", k: 1 },
        { _id: "b", k: 1 },
      ]);
      await store.createIndex(c.name, { keys: { k: 1 } });
      const seen = await store.transaction(async (tx) => {
        const t = tx.collection(c.name);
        await t.insertOne({ _id: "c", k: 1 });
        await t.updateOne({ _id: "a" }, { $set: { k: 2 } });
        await t.deleteOne({ _id: "b" });
        return {
          k1: sortedIds(await t.find({ k: 1 })),
          k2: sortedIds(await t.find({ k: 2 })),
          count: await t.countDocuments(),
          b: await t.findOne({ _id: "b" }),
        };
      });
      expect(seen).toEqual({ k1: ["c"], k2: ["a"], count: 2, b: null });
    });

    it("reads one consistent snapshot even while other transactions commit", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "x", n: 50 },
        { _id: "y", n: 50 },
      ]);
      let moved = false;
      const total = await store.transaction(async (tx) => {
        const x = (await tx.collection(c.name).findOne({ _id: "x" })) as Doc & { n: number };
        if (!moved) {
          moved = true;
          await store.transaction(async (other) => {
            await other.collection(c.name).updateOne({ _id: "x" }, { $inc: { n: -10 } });
            await other.collection(c.name).updateOne({ _id: "y" }, { $inc: { n: 10 } });
          });
        }
        const y = (await tx.collection(c.name).findOne({ _id: "y" })) as Doc & { n: number };
        return x.n + y.n;
      });
      expect(moved).toBe(true);
      expect(total).toBe(100);
      expect((await c.find({}, { sort: { _id: 1 } })).map((d) => d.n)).toEqual([40, 60]);
    });

    it("conserves the total across 200 concurrent read-modify-write transfers", async () => {
      const c = fresh<Doc & { n: number }>();
      await c.insertMany([
        { _id: "x", n: 1000 },
        { _id: "y", n: 1000 },
      ]);
      await Promise.all(
        range(200).map((i) =>
          store.transaction(async (tx) => {
            const t = tx.collection<Doc & { n: number }>(c.name);
            const [from, to] = i % 2 === 0 ? ["x", "y"] : ["y", "x"];
            const a = (await t.findOne({ _id: from })) as Doc & { n: number };
            const b = (await t.findOne({ _id: to })) as Doc & { n: number };
            await t.updateOne({ _id: from }, { $set: { n: a.n - 1 } });
            await t.updateOne({ _id: to }, { $set: { n: b.n + 1 } });
          }),
        ),
      );
      const docs = await c.find({}, { sort: { _id: 1 } });
      expect(docs.map((d) => d.n)).toEqual([1000, 1000]);
    });

    it("lets exactly 20 of 50 concurrent conditional decrements succeed on a quantity of 20", async () => {
      const c = fresh<Doc & { qty: number }>();
      await c.insertOne({ _id: "sku", qty: 20 });
      const results = await Promise.all(
        range(50).map(() => c.updateOne({ _id: "sku", qty: { $gte: 1 } }, { $inc: { qty: -1 } })),
      );
      expect(results.filter((r) => r.modifiedCount === 1)).toHaveLength(20);
      expect(results.filter((r) => r.matchedCount === 0)).toHaveLength(30);
      expect((await c.findOne({ _id: "sku" }))?.qty).toBe(0);
    });

    it("lets one of two concurrent transactions inserting the same unique key commit; the other gets DuplicateKeyError", async () => {
      const c = fresh();
      await store.createIndex(c.name, { keys: { key: 1 }, unique: true });
      // Both start before either inserts (on MongoDB the second insert then meets a write conflict
      // and is retried by the driver; here both insert and the second fails validation at commit).
      const bothStarted = barrier(2);
      const attempt = (who: string): Promise<string> => {
        let first = true;
        return store.transaction(async (tx) => {
          if (first) {
            first = false;
            await bothStarted();
          }
          await tx.collection(c.name).insertOne({ key: "K", who });
          return who;
        });
      };
      const outcomes = await Promise.allSettled([attempt("a"), attempt("b")]);
      const fulfilled = outcomes.filter((o) => o.status === "fulfilled");
      const rejected = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected");
      expect(fulfilled).toHaveLength(1);
      expect(rejected).toHaveLength(1);
      expect(rejected[0]?.reason).toMatchObject({ code: "DUPLICATE_KEY" });
      expect(await c.countDocuments({ key: "K" })).toBe(1);
    });

    it("aborts the transaction when an operation fails, even if the body catches the error", async () => {
      // MongoDB aborts a transaction on the server after a write error such as a duplicate key; the
      // port makes that the rule everywhere, so no adapter can commit half of a failed operation.
      const c = fresh();
      await c.insertOne({ _id: "taken" });
      let caught = "";
      await expect(
        store.transaction(async (tx) => {
          const t = tx.collection(c.name);
          await t.insertOne({ _id: "before" });
          try {
            await t.insertMany([{ _id: "half" }, { _id: "taken" }]);
          } catch (error) {
            caught = (error as { code?: string }).code ?? "";
          }
          return "body finished";
        }),
      ).rejects.toMatchObject({ code: "DUPLICATE_KEY" });
      expect(caught).toBe("DUPLICATE_KEY");
      expect(await c.find({})).toEqual([{ _id: "taken" }]);
    });

    it("does not abort the transaction for a request refused before it runs (outside the subset)", async () => {
      const c = fresh();
      const result = await store.transaction(async (tx) => {
        const t = tx.collection(c.name);
        await t.insertOne({ _id: "kept" });
        await expect(t.find({ name: { $regex: "x" } })).rejects.toMatchObject({ code: "UNSUPPORTED_QUERY" });
        await t.insertOne({ _id: "also-kept" });
        return "ok";
      });
      expect(result).toBe("ok");
      expect(sortedIds(await c.find({}))).toEqual(["also-kept", "kept"]);
    });

    serializableIt("prevents write skew (each transaction reads both rows and changes one)", async () => {
      const c = fresh();
      await c.insertMany([
        { _id: "alice", onCall: true },
        { _id: "bob", onCall: true },
      ]);
      const bothRead = barrier(2);
      const goOffCall = (who: string): Promise<boolean> => {
        let first = true;
        return store.transaction(async (tx) => {
          const t = tx.collection(c.name);
          const onCall = await t.countDocuments({ onCall: true });
          if (first) {
            first = false;
            await bothRead();
          }
          if (onCall < 2) return false;
          await t.updateOne({ _id: who }, { $set: { onCall: false } });
          return true;
        });
      };
      const results = await Promise.all([goOffCall("alice"), goOffCall("bob")]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await c.countDocuments({ onCall: true })).toBe(1);
    });

    serializableIt("makes a phantom insert conflict with a predicate read (no double booking)", async () => {
      const c = fresh();
      const bothChecked = barrier(2);
      const book = (who: string): Promise<boolean> => {
        let first = true;
        return store.transaction(async (tx) => {
          const t = tx.collection(c.name);
          const taken = await t.findOne({ room: "A", slot: 9 });
          if (first) {
            first = false;
            await bothChecked();
          }
          if (taken !== null) return false;
          await t.insertOne({ room: "A", slot: 9, who });
          return true;
        });
      };
      const results = await Promise.all([book("x"), book("y")]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await c.countDocuments({ room: "A", slot: 9 })).toBe(1);
    });

    serializableIt(
      "gives up with TransactionConflictError once maxRetryTimeMs is spent, committing nothing",
      async () => {
        const c = fresh();
        await c.insertOne({ _id: "hot", n: 0 });
        let attempts = 0;
        await expect(
          store.transaction(
            async (tx) => {
              attempts++;
              await tx.collection(c.name).findOne({ _id: "hot" });
              // Someone else changes what this transaction read before it can commit — every time.
              await store.collection(c.name).updateOne({ _id: "hot" }, { $inc: { n: 1 } });
              await tx.collection(c.name).insertOne({ attempt: attempts });
            },
            { maxRetryTimeMs: 150 },
          ),
        ).rejects.toMatchObject({ code: "TRANSACTION_CONFLICT", retryable: true });
        expect(attempts).toBeGreaterThan(1);
        expect(await c.countDocuments({ attempt: { $exists: true } })).toBe(0);
        expect((await c.findOne({ _id: "hot" }))?.n).toBe(attempts);
      },
    );

    serializableIt(
      "does not conflict on a sorted, limited read when a later document is inserted",
      async () => {
        const c = fresh();
        await c.insertMany(range(5).map((i) => ({ _id: `e${i}`, status: "pending", at: i })));
        let attempts = 0;
        let inserted = false;
        const claimed = await store.transaction(async (tx) => {
          attempts++;
          const batch = await tx
            .collection(c.name)
            .find({ status: "pending" }, { sort: { at: 1 }, limit: 2 });
          if (!inserted) {
            inserted = true;
            await store.collection(c.name).insertOne({ _id: "late", status: "pending", at: 99 });
          }
          for (const doc of batch)
            await tx.collection(c.name).updateOne({ _id: doc._id }, { $set: { status: "claimed" } });
          return ids(batch);
        });
        expect(claimed).toEqual(["e0", "e1"]);
        expect(attempts).toBe(1);
        expect(await c.countDocuments({ status: "pending" })).toBe(4);
      },
    );

    it("refuses to use a transaction handle after the transaction has ended", async () => {
      const c = fresh();
      let leaked: Transaction | undefined;
      await store.transaction(async (tx) => {
        leaked = tx;
        await tx.collection(c.name).insertOne({ _id: "in" });
      });
      await expect(
        (leaked as Transaction).collection(c.name).insertOne({ _id: "late" }),
      ).rejects.toBeDefined();
      expect(await c.findOne({ _id: "late" })).toBeNull();
    });
  });

  describe("lifecycle", () => {
    it("answers ping while open; after close every call throws AdapterClosedError, and close is idempotent", async () => {
      const own = await adapter.open(`closing${++collections}`);
      await own.ping();
      await own.collection("c").insertOne({ _id: "a" });
      if (adapter.embedded) await own.close();
      else await adapter.destroy(own);
      await own.close();
      await expect(own.ping()).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
      await expect(own.collection("c").findOne({})).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
      await expect(own.collection("c").insertOne({})).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
      await expect(own.transaction(async () => 1)).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
      await expect(own.createIndex("c", { keys: { a: 1 } })).rejects.toMatchObject({
        code: "ADAPTER_CLOSED",
      });
    });

    embeddedIt("refuses to open a file another store holds open", async () => {
      const name = `locked${++collections}`;
      const holder = await adapter.open(name);
      try {
        await expect(adapter.open(name)).rejects.toMatchObject({ code: "UNAVAILABLE" });
        await holder.collection("c").insertOne({ _id: "still-works" });
      } finally {
        await holder.close();
      }
      const next = await adapter.open(name);
      expect(await next.collection("c").findOne({ _id: "still-works" })).toEqual({ _id: "still-works" });
      await next.close();
    });

    embeddedIt("close waits for commits already requested, and they are durable", async () => {
      const name = `draining${++collections}`;
      const first = await adapter.open(name);
      const writes = range(20).map((i) => first.collection("c").insertOne({ _id: `w${i}` }));
      await first.close();
      await expect(Promise.all(writes)).resolves.toHaveLength(20);
      const second = await adapter.open(name);
      expect(await second.collection("c").countDocuments()).toBe(20);
      await second.close();
    });

    embeddedIt(
      "rejects a commit the file cannot hold with UnavailableError, without sinking the others of its group",
      async () => {
        const name = `full${++collections}`;
        const small = await adapter.open(name, { maxSizeBytes: 96 * 1024 });
        try {
          const c = small.collection("c");
          const ok = c.insertOne({ _id: "small", v: 1 });
          const tooBig = c.insertOne({ _id: "big", blob: "x".repeat(512 * 1024) });
          const alsoOk = small.transaction(async (tx) => {
            await tx.collection("d").insertOne({ _id: "other" });
          });
          await expect(tooBig).rejects.toMatchObject({ code: "UNAVAILABLE" });
          await expect(ok).resolves.toEqual({ insertedId: "small" });
          await expect(alsoOk).resolves.toBeUndefined();
          expect(await c.findOne({ _id: "big" })).toBeNull();
          expect(sortedIds(await c.find({}))).toEqual(["small"]);
          await c.insertOne({ _id: "later" });
        } finally {
          await small.close();
        }
        const reopened = await adapter.open(name);
        expect(sortedIds(await reopened.collection("c").find({}))).toEqual(["later", "small"]);
        expect(await reopened.collection("d").countDocuments()).toBe(1);
        await reopened.close();
      },
    );
  });
});
