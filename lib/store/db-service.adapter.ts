/**
 * A `moleculer-db` adapter over the document-store port, for reads. A service gets moleculer-db's
 * `list` / `find` / `count` / `get` actions (paging, `fields`, `populates`, `idField`) on one of
 * its own collections, answered by its own store (`infrastructureOf(broker).store(service.name)`):
 *
 *   mixins: [DbService, InfrastructureMixin({ store: true, bus: true }), OutboxMixin(), InboxMixin()],
 *   adapter: storeDbAdapter("products"),
 *   actions: { create: false, insert: false, update: false, remove: false, list: { cache: false } },
 *
 * - Writes are refused (`WRITES_GO_THROUGH_THE_AGGREGATE`): in ordermesh state changes go through
 *   the domain code and commit with their events through the outbox. Disable moleculer-db's write
 *   actions; an adapter write that slips through fails loudly instead of bypassing the outbox.
 * - Because writes bypass moleculer-db, it never clears its cache: turn `cache` off on the read
 *   actions a service exposes (with the broker's cacher on, they would serve stale data forever).
 * - `query` is the store's MongoDB subset (docs/store.md); anything outside it is a 422
 *   `UNSUPPORTED_QUERY`. `sort` takes moleculer-db's forms ("-createdAt", ["name", "-price"]).
 * - `search` (or `iSearch`) is a case-insensitive substring match over `searchFields` (default: every
 *   top-level field) on string and number values. The subset has no `$regex`, so it is done in memory
 *   over every document matching `query`: meant for small collections such as a catalog.
 * - Connecting: moleculer-db's `started` calls `connect()`, which asks the process's infrastructure
 *   for the service's store: the same shared instance the infrastructure mixin holds, opened by
 *   whichever asks first, so either mixin order works. List DbService first all the same: Moleculer
 *   runs mixin `started` handlers from the last mixin to the first, so a store that cannot open then
 *   fails the start in a mixin listed after DbService, instead of in moleculer-db's connect loop,
 *   which retries every second for ever (and the infrastructure keeps the failed open). `disconnect()`
 *   leaves the store open: the infrastructure owns and closes it.
 */
import { Errors, type Service, type ServiceBroker } from "moleculer";
import { AdapterClosedError } from "../errors";
import { infrastructureOf } from "../infrastructure";
import type { Collection, Doc, DocumentStore, Filter, FindOptions, Sort } from "./store.port";

/** Type of the error every write method throws. */
export const WRITES_REFUSED = "WRITES_GO_THROUGH_THE_AGGREGATE";

/** What moleculer-db hands to `find` and `count` (after its `sanitizeParams`), or a caller directly. */
export interface StoreDbFindParams {
  query?: Filter | null;
  /** "-createdAt", "name -price", "name,-price" or ["name", "-price"]. */
  sort?: string | readonly string[] | null;
  limit?: number | string | null;
  offset?: number | string | null;
  search?: string | null;
  /** moleculer-db's case-insensitive search; the same as `search` here. */
  iSearch?: string | null;
  searchFields?: string | readonly string[] | null;
}

/** A read as the store will run it (`createCursor`). */
export interface StoreDbReadPlan {
  filter: Filter;
  options: FindOptions;
  /** Lower-cased search text, when the read filters in memory. */
  search?: { text: string; fields: string[] | null };
}

/** Errors of the store that mean "the caller asked for something malformed". */
const CLIENT_ERROR_CODES: ReadonlySet<string> = new Set(["UNSUPPORTED_QUERY", "INVALID_DOCUMENT"]);

/**
 * Read-only moleculer-db adapter over one collection of the service's own document store. It follows
 * moleculer-db's runtime contract (src/index.js, memory-adapter.js) rather than `implements DbAdapter`:
 * those typings claim `findOne` / `findById` never resolve to null, which every adapter does.
 */
export class StoreDbAdapter {
  // plain fields, not #private ones: Moleculer deep-clones the schema (and this adapter) per service
  private broker: ServiceBroker | undefined = undefined;
  private service: Service | undefined = undefined;
  private store: DocumentStore | undefined = undefined;

  constructor(readonly collectionName: string) {
    if (typeof collectionName !== "string" || collectionName.length === 0)
      throw new TypeError("storeDbAdapter needs a collection name");
  }

  /** Called by moleculer-db when the service is created. */
  init(broker: ServiceBroker, service: Service): void {
    this.broker = broker;
    this.service = service;
  }

  /** Takes the service's own store from the process's infrastructure (opening it if nobody has yet). */
  async connect(): Promise<void> {
    if (this.broker === undefined || this.service === undefined)
      throw new Error("storeDbAdapter: connect() before init()");
    this.store = await infrastructureOf(this.broker).store(this.service.name);
  }

  /** Forgets the store without closing it: the infrastructure owns it. */
  async disconnect(): Promise<void> {
    this.store = undefined;
  }

  // ── reads ──────────────────────────────────────────────────────────────

  /** Documents matching `query`, sorted, paged, searched. */
  find(params: StoreDbFindParams = {}): Promise<Doc[]> {
    return this.reading(async (collection) => {
      const plan = this.createCursor(params);
      if (plan.search === undefined) return collection.find(plan.filter, plan.options);
      const { skip = 0, limit = 0 } = plan.options;
      const matched = searched(await collection.find(plan.filter, { sort: plan.options.sort }), plan.search);
      return matched.slice(skip, limit > 0 ? skip + limit : undefined);
    });
  }

  /** The first document matching `query`, or null. */
  findOne(query: Filter): Promise<Doc | null> {
    return this.reading((collection) => collection.findOne(query));
  }

  /** The document with this id, or null. */
  findById(id: unknown): Promise<Doc | null> {
    const key = idOf(id);
    if (key === undefined) return Promise.resolve(null);
    return this.reading((collection) => collection.findOne({ _id: key }));
  }

  /** The documents with these ids, in the order asked; missing ones are left out. */
  findByIds(ids: readonly unknown[]): Promise<Doc[]> {
    const keys = [...new Set(ids.map(idOf).filter((key): key is string => key !== undefined))];
    if (keys.length === 0) return Promise.resolve([]);
    return this.reading(async (collection) => {
      const docs = new Map((await collection.find({ _id: { $in: keys } })).map((doc) => [doc._id, doc]));
      return keys.map((key) => docs.get(key)).filter((doc): doc is Doc => doc !== undefined);
    });
  }

  /** How many documents match `query` (and `search`); paging is ignored. */
  count(params: StoreDbFindParams = {}): Promise<number> {
    return this.reading(async (collection) => {
      const plan = this.createCursor({ ...params, limit: null, offset: null, sort: null });
      if (plan.search === undefined) return collection.countDocuments(plan.filter);
      return searched(await collection.find(plan.filter), plan.search).length;
    });
  }

  /** moleculer-db's params as a store read. */
  createCursor(params: StoreDbFindParams): StoreDbReadPlan {
    const filter = params.query ?? {};
    const options: FindOptions = {};
    const sort = sortOf(params.sort);
    if (sort !== undefined) options.sort = sort;
    const limit = Number(params.limit ?? 0);
    const offset = Number(params.offset ?? 0);
    if (Number.isSafeInteger(limit) && limit > 0) options.limit = limit;
    if (Number.isSafeInteger(offset) && offset > 0) options.skip = offset;
    const text = params.search ?? params.iSearch;
    if (typeof text !== "string" || text === "") return { filter, options };
    return { filter, options, search: { text: text.toLowerCase(), fields: listOf(params.searchFields) } };
  }

  // ── writes: refused ────────────────────────────────────────────────────

  insert(_entity: object): Promise<never> {
    return this.refuse("insert");
  }

  insertMany(..._entities: object[]): Promise<never> {
    return this.refuse("insertMany");
  }

  updateMany(_query: Filter, _update: object): Promise<never> {
    return this.refuse("updateMany");
  }

  updateById(_id: string | number, _update: object): Promise<never> {
    return this.refuse("updateById");
  }

  removeMany(_query: Filter): Promise<never> {
    return this.refuse("removeMany");
  }

  removeById(_id: string | number): Promise<never> {
    return this.refuse("removeById");
  }

  clear(): Promise<never> {
    return this.refuse("clear");
  }

  // ── entity shape ───────────────────────────────────────────────────────

  /** Store results are already plain copies. */
  entityToObject(entity: Doc): Doc {
    return entity;
  }

  /** `idField` → `_id`, as moleculer-db expects before a save (writes are refused anyway). */
  beforeSaveTransformID(entity: object, idField: string): object {
    const copy: Record<string, unknown> = { ...entity };
    if (idField !== "_id" && copy[idField] !== undefined) {
      copy._id = copy[idField];
      delete copy[idField];
    }
    return copy;
  }

  /** `_id` → `idField` on a document read. */
  afterRetrieveTransformID(entity: object, idField: string): object {
    const doc = entity as Record<string, unknown>;
    if (idField !== "_id") {
      doc[idField] = doc._id;
      delete doc._id;
    }
    return doc;
  }

  // ── helpers ────────────────────────────────────────────────────────────

  /** Runs a read on the collection; malformed requests become 422 client errors with the store's code. */
  private async reading<R>(read: (collection: Collection) => Promise<R>): Promise<R> {
    if (this.store === undefined) throw new AdapterClosedError(`storeDbAdapter(${this.collectionName})`);
    try {
      return await read(this.store.collection(this.collectionName));
    } catch (err) {
      const { code, message, data } = err as { code?: unknown; message?: unknown; data?: unknown };
      if (typeof code === "string" && CLIENT_ERROR_CODES.has(code))
        throw new Errors.MoleculerClientError(String(message), 422, code, data);
      throw err;
    }
  }

  private async refuse(method: string): Promise<never> {
    throw new Errors.MoleculerError(
      `${method} on "${this.collectionName}" refused: writes go through the domain code and the outbox`,
      500,
      WRITES_REFUSED,
      { collection: this.collectionName, method },
    );
  }
}

/** Mixin value for a service's `adapter`: reads of `collection` in the service's own store. */
export function storeDbAdapter(collection: string): StoreDbAdapter {
  return new StoreDbAdapter(collection);
}

/** Ids are strings in the store; numbers are accepted as their decimal text; anything else matches nothing. */
function idOf(id: unknown): string | undefined {
  if (typeof id === "string") return id;
  if (typeof id === "number" && Number.isFinite(id)) return String(id);
  return undefined;
}

/** A list given as an array or as text separated by commas or spaces. */
function listOf(value: string | readonly string[] | null | undefined): string[] | null {
  if (value === null || value === undefined) return null;
  const items = (typeof value === "string" ? value.split(/[,\s]+/) : [...value]).filter((s) => s !== "");
  return items.length === 0 ? null : items;
}

/** moleculer-db's sort ("-createdAt", ["name", "-price"]) as a store sort: { createdAt: -1 }. */
function sortOf(sort: StoreDbFindParams["sort"]): Sort | undefined {
  const fields = listOf(sort);
  if (fields === null) return undefined;
  const spec: Sort = {};
  for (const field of fields) {
    if (field.startsWith("-")) spec[field.slice(1)] = -1;
    else spec[field.startsWith("+") ? field.slice(1) : field] = 1;
  }
  return spec;
}

/** The documents with a searched field containing the text, case-insensitively. */
function searched(docs: Doc[], search: NonNullable<StoreDbReadPlan["search"]>): Doc[] {
  return docs.filter((doc) => {
    const values = search.fields === null ? Object.values(doc) : search.fields.map((f) => valueAt(doc, f));
    return values.some(
      (value) =>
        (typeof value === "string" || typeof value === "number") &&
        String(value).toLowerCase().includes(search.text),
    );
  });
}

function valueAt(doc: Doc, path: string): unknown {
  let value: unknown = doc;
  for (const segment of path.split(".")) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
    value = (value as Record<string, unknown>)[segment];
  }
  return value;
}
