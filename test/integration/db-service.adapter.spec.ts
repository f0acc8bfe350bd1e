/**
 * moleculer-db's DbService over the store adapter, on a real broker built from moleculer.config
 * (embedded store in a temp DATA_DIR): paging, sorting, queries, search, ids, field filtering, and
 * writes refused.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import DbService from "moleculer-db";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { createBrokerOptions } from "../../moleculer.config";
import { loadConfig } from "../../lib/config";
import { infrastructureOf } from "../../lib/infrastructure";
import { WRITES_REFUSED, storeDbAdapter, type StoreDbAdapter } from "../../lib/store/db-service.adapter";
import type { Doc, DocumentStore } from "../../lib/store/store.port";
import { InfrastructureMixin } from "../../mixins/infrastructure.mixin";

interface Item extends Doc {
  sku: string;
  name: string;
  price: number;
  stock: number;
  tags: string[];
  secret: string;
}

const ITEMS: Item[] = [
  {
    _id: "MUG-BLUE",
    sku: "MUG-BLUE",
    name: "Blue Mug",
    price: 1299,
    stock: 5,
    tags: ["mug", "blue"],
    secret: "s1",
  },
  {
    _id: "MUG-RED",
    sku: "MUG-RED",
    name: "Red Mug",
    price: 1299,
    stock: 0,
    tags: ["mug", "red"],
    secret: "s2",
  },
  {
    _id: "TEA-SENCHA",
    sku: "TEA-SENCHA",
    name: "Sencha tea",
    price: 1800,
    stock: 60,
    tags: ["tea"],
    secret: "s3",
  },
  {
    _id: "TEA-EARL",
    sku: "TEA-EARL",
    name: "Earl Grey tea",
    price: 850,
    stock: 150,
    tags: ["tea"],
    secret: "s4",
  },
  {
    _id: "KETTLE",
    sku: "KETTLE",
    name: "Gooseneck kettle",
    price: 5900,
    stock: 25,
    tags: ["blue"],
    secret: "s5",
  },
  { _id: "GRINDER", sku: "GRINDER", name: "Hand grinder", price: 4450, stock: 40, tags: [], secret: "s6" },
  { _id: "WHISK", sku: "WHISK", name: "Matcha whisk", price: 2200, stock: 35, tags: ["tea"], secret: "s7" },
];

/** A catalog read API: moleculer-db over the adapter, writes off, reads uncached. */
function catalogSchema(name: string, extra: Partial<ServiceSchema> = {}): ServiceSchema {
  return {
    name,
    mixins: [DbService as unknown as Partial<ServiceSchema>, InfrastructureMixin({ store: true })],
    adapter: storeDbAdapter("items"),
    settings: {
      idField: "sku",
      fields: ["sku", "name", "price", "stock", "tags"],
      pageSize: 3,
      maxPageSize: 5,
    },
    actions: {
      create: false,
      insert: false,
      update: false,
      remove: false,
      find: { cache: false },
      count: { cache: false },
      list: { cache: false },
      get: { cache: false },
    },
    ...extra,
  } as ServiceSchema;
}

interface Page {
  rows: Record<string, unknown>[];
  total: number;
  page: number;
  pageSize: number;
  totalPages: number;
}

describe("moleculer-db over the store adapter", () => {
  let dir: string;
  let broker: ServiceBroker;
  let store: DocumentStore;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-db-adapter-"));
    const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: "fatal", SERVICES: "inventory" });
    broker = new ServiceBroker({ ...createBrokerOptions(config), logger: false });
    broker.createService(catalogSchema("catalog"));
    await broker.start();
    store = await infrastructureOf(broker).store("catalog");
    await store.collection<Item>("items").insertMany(ITEMS);
  });

  afterAll(async () => {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const list = (params: Record<string, unknown> = {}): Promise<Page> => broker.call("catalog.list", params);
  const find = (params: Record<string, unknown> = {}): Promise<Record<string, unknown>[]> =>
    broker.call("catalog.find", params);
  const skus = (rows: Record<string, unknown>[]): unknown[] => rows.map((row) => row.sku);

  describe("list", () => {
    it("pages with the default page size and counts every page", async () => {
      const first = await list({ sort: "sku" });
      const last = await list({ sort: "sku", page: 3 });

      expect(first).toMatchObject({ total: 7, page: 1, pageSize: 3, totalPages: 3 });
      expect(skus(first.rows)).toEqual(["GRINDER", "KETTLE", "MUG-BLUE"]);
      expect(skus(last.rows)).toEqual(["WHISK"]);
      expect(await list({ sort: "sku", page: 4 })).toMatchObject({ rows: [], total: 7, page: 4 });
    });

    it("caps the page size at maxPageSize", async () => {
      const page = await list({ pageSize: 50 });
      expect(page).toMatchObject({ pageSize: 5, totalPages: 2 });
      expect(page.rows).toHaveLength(5);
    });

    it("sorts ascending and descending, on several fields", async () => {
      expect(skus((await list({ sort: "-stock", pageSize: 3 })).rows)).toEqual([
        "TEA-EARL",
        "TEA-SENCHA",
        "GRINDER",
      ]);
      expect(skus((await list({ sort: "stock", pageSize: 3 })).rows)).toEqual([
        "MUG-RED",
        "MUG-BLUE",
        "KETTLE",
      ]);
      expect(skus((await list({ sort: "price,-sku", pageSize: 4 })).rows)).toEqual([
        "TEA-EARL",
        "MUG-RED",
        "MUG-BLUE",
        "TEA-SENCHA",
      ]);
    });

    it("filters with a query and counts only what matches", async () => {
      const page = await list({ query: { tags: "tea", stock: { $gte: 50 } }, sort: "sku" });
      expect(page).toMatchObject({ total: 2, totalPages: 1 });
      expect(skus(page.rows)).toEqual(["TEA-EARL", "TEA-SENCHA"]);
      // moleculer-db also takes the query as JSON text (query strings)
      expect((await list({ query: JSON.stringify({ tags: "blue" }) })).total).toBe(2);
    });

    it("searches case-insensitively in the given fields, paging the matches", async () => {
      const page = await list({ search: "MUG", searchFields: "name", sort: "sku", pageSize: 1 });
      expect(page).toMatchObject({ total: 2, totalPages: 2 });
      expect(skus(page.rows)).toEqual(["MUG-BLUE"]);
      expect(
        skus((await list({ search: "mug", searchFields: "name", sort: "sku", pageSize: 1, page: 2 })).rows),
      ).toEqual(["MUG-RED"]);
      // without searchFields every top-level string or number value is searched
      expect((await list({ search: "4450" })).total).toBe(1);
      expect((await list({ search: "tea", query: { price: { $lt: 1000 } } })).total).toBe(1);
    });

    it("reads what the store holds now, not a cached answer", async () => {
      const before = await list({ query: { sku: "GRINDER" } });
      await store.collection<Item>("items").updateOne({ _id: "GRINDER" }, { $inc: { stock: 1 } });
      const after = await list({ query: { sku: "GRINDER" } });
      await store.collection<Item>("items").updateOne({ _id: "GRINDER" }, { $inc: { stock: -1 } });

      expect(before.rows[0]?.stock).toBe(40);
      expect(after.rows[0]?.stock).toBe(41);
    });
  });

  describe("find and count", () => {
    it("finds with limit, offset, sort and query", async () => {
      expect(skus(await find({ sort: "-price", limit: 2 }))).toEqual(["KETTLE", "GRINDER"]);
      expect(skus(await find({ sort: "-price", limit: 2, offset: 2 }))).toEqual(["WHISK", "TEA-SENCHA"]);
      expect(skus(await find({ query: { price: 1299 }, sort: "-sku" }))).toEqual(["MUG-RED", "MUG-BLUE"]);
      expect(await find({ query: { sku: "NOTHING" } })).toEqual([]);
    });

    it("counts with a query or a search, ignoring paging", async () => {
      expect(await broker.call("catalog.count", {})).toBe(7);
      expect(await broker.call("catalog.count", { query: { stock: { $gt: 30 } } })).toBe(4);
      expect(await broker.call("catalog.count", { search: "tea", searchFields: ["name"] })).toBe(2);
    });

    it("answers a query outside the store's subset with a 422 naming the operator", async () => {
      await expect(find({ query: { name: { $regex: "Mug" } } })).rejects.toMatchObject({
        code: 422,
        type: "UNSUPPORTED_QUERY",
        data: { operator: "$regex" },
      });
      await expect(broker.call("catalog.count", { query: { $where: "1" } })).rejects.toMatchObject({
        code: 422,
        type: "UNSUPPORTED_QUERY",
      });
    });
  });

  describe("get", () => {
    it("gets one entity by id, with the id under idField and only the allowed fields", async () => {
      const item = await broker.call<Record<string, unknown>, { id: string }>("catalog.get", {
        id: "KETTLE",
      });
      expect(item).toEqual({
        sku: "KETTLE",
        name: "Gooseneck kettle",
        price: 5900,
        stock: 25,
        tags: ["blue"],
      });
      expect(item).not.toHaveProperty("secret");
      expect(item).not.toHaveProperty("_id");
    });

    it("gets several ids in the order asked, leaving out missing ones", async () => {
      const items = await broker.call<Record<string, unknown>[], { id: string[] }>("catalog.get", {
        id: ["WHISK", "NOTHING", "GRINDER"],
      });
      expect(skus(items)).toEqual(["WHISK", "GRINDER"]);
    });

    it("maps several ids to their entities", async () => {
      const mapped = await broker.call<Record<string, Record<string, unknown>>, Record<string, unknown>>(
        "catalog.get",
        { id: ["WHISK", "GRINDER"], mapping: true, fields: ["name"] },
      );
      expect(mapped).toEqual({ WHISK: { name: "Matcha whisk" }, GRINDER: { name: "Hand grinder" } });
    });

    it("projects the requested fields, never beyond the allowed ones", async () => {
      expect(await broker.call("catalog.get", { id: "KETTLE", fields: ["name", "price"] })).toEqual({
        name: "Gooseneck kettle",
        price: 5900,
      });
      expect(await broker.call("catalog.get", { id: "KETTLE", fields: ["name", "secret"] })).toEqual({
        name: "Gooseneck kettle",
      });
      const rows = (await list({ fields: "sku stock", sort: "sku", pageSize: 1 })).rows;
      expect(rows).toEqual([{ sku: "GRINDER", stock: 40 }]);
    });

    it("answers a missing id with moleculer-db's 404 EntityNotFoundError", async () => {
      await expect(broker.call("catalog.get", { id: "NOTHING" })).rejects.toMatchObject({
        name: "EntityNotFoundError",
        code: 404,
        data: { id: "NOTHING" },
      });
    });
  });

  describe("writes", () => {
    it("has no write actions when the service turns them off", async () => {
      for (const action of ["create", "insert", "update", "remove"]) {
        await expect(broker.call(`catalog.${action}`, { sku: "X", name: "x" })).rejects.toMatchObject({
          type: "SERVICE_NOT_FOUND",
        });
      }
    });

    it("refuses every write of the adapter, even through an enabled moleculer-db action", async () => {
      const service = broker.createService(
        catalogSchema("catalog-writable", {
          actions: { find: { cache: false } },
        }),
      );
      await broker.waitForServices("catalog-writable", 5000, 10);
      try {
        const refused = { code: 500, type: WRITES_REFUSED, data: { collection: "items" } };
        await expect(
          broker.call("catalog-writable.create", { sku: "NEW", name: "new" }),
        ).rejects.toMatchObject(refused);
        await expect(
          broker.call("catalog-writable.update", { id: "KETTLE", name: "x" }),
        ).rejects.toMatchObject(refused);
        await expect(broker.call("catalog-writable.remove", { id: "KETTLE" })).rejects.toMatchObject(refused);
        const adapter = (service as unknown as { adapter: StoreDbAdapter }).adapter;
        for (const write of [
          () => adapter.insertMany({ _id: "x" }),
          () => adapter.updateMany({}, { $set: { a: 1 } }),
          () => adapter.removeMany({}),
          () => adapter.clear(),
        ]) {
          await expect(write()).rejects.toMatchObject({ type: WRITES_REFUSED });
        }
      } finally {
        await broker.destroyService(service);
      }
      // nothing was written, and the store outlives the service (disconnect does not close it)
      const writableStore = await infrastructureOf(broker).store("catalog-writable");
      await expect(writableStore.ping()).resolves.toBeUndefined();
      expect(await writableStore.collection("items").countDocuments({})).toBe(0);
    });
  });

  it("connects whichever mixin starts first: the adapter and the infrastructure mixin share one store", async () => {
    // DbService listed last: its started() (and connect) runs before the infrastructure mixin's
    const schema = catalogSchema("catalog-reversed");
    broker.createService({
      ...schema,
      mixins: [InfrastructureMixin({ store: true }), DbService as unknown as Partial<ServiceSchema>],
    });
    await broker.waitForServices("catalog-reversed", 5000, 10);
    const service = broker.getLocalService("catalog-reversed") as unknown as { store: DocumentStore };
    await service.store
      .collection("items")
      .insertOne({ _id: "REV", sku: "REV", name: "r", price: 1, stock: 1 });

    expect(await broker.call("catalog-reversed.get", { id: "REV", fields: ["sku"] })).toEqual({ sku: "REV" });
    expect(service.store).toBe(await infrastructureOf(broker).store("catalog-reversed"));
  });

  it("gives each service built from one schema its own adapter, on that service's own store", async () => {
    const schema = catalogSchema("catalog-other");
    broker.createService(schema);
    await broker.waitForServices("catalog-other", 5000, 10);
    const other = await infrastructureOf(broker).store("catalog-other");
    await other
      .collection("items")
      .insertOne({ _id: "ONLY-HERE", sku: "ONLY-HERE", name: "x", price: 1, stock: 1 });

    const otherPage = await broker.call<Page, Record<string, unknown>>("catalog-other.list", {});
    const ownPage = await list();

    expect(skus(otherPage.rows)).toEqual(["ONLY-HERE"]);
    expect(ownPage.total).toBe(ITEMS.length);
  });
});
