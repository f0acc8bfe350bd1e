/**
 * The products store: the only code that writes the inventory's `products` collection, and the
 * only code that reads it outside moleculer-db's `list` / `get` (which read it through
 * lib/store/db-service.adapter.ts, an adapter that refuses every write).
 *
 * Stock counters change only by the moves of the model (models/inventory.ts): each move is one
 * update whose filter is the move's guard (`moveGuard`: "the source counter holds at least n") and
 * whose `$inc` is `moveIncrements`, so a concurrent move can never overdraw a counter, whatever the
 * store's isolation level; a guard that fails is a `StockGuardError` and the caller's transaction
 * rolls back.
 *
 * Products and reservations have one repository each: products also change alone (upsert, restock,
 * seed) and are read alone (the catalog, the stock report), while a reservation's save applies its
 * stock moves through this repository, in the same transaction.
 */
import { OrdermeshError } from "../errors";
import type { Collection, Doc, DocumentStore, Filter, Transaction } from "../store/store.port";
import {
  emptyStock,
  initialStock,
  moveGuard,
  moveIncrements,
  type Product,
  type StockMove,
} from "../../models/inventory";
import type { Money } from "../../models/money";
import type { StockChange } from "../../models/reservation";

/** Products and their stock counters, `_id` = SKU. */
export const PRODUCTS_COLLECTION = "products";

type Writable<T> = { -readonly [K in keyof T]: T[K] };

/** A product as stored, `_id` = SKU. */
interface ProductDoc extends Doc, Writable<Product> {}

/** A product to seed: its catalog entry and how many units it starts with. */
export interface SeedEntry {
  readonly sku: string;
  readonly name: string;
  readonly price: Money;
  readonly quantity: number;
}

/** Where a read runs: inside a transaction, or directly on the store. */
type Scope = Transaction | DocumentStore;

/** A stock move's guard failed: the counters no longer allow it (a concurrent move got there first). */
export class StockGuardError extends OrdermeshError {
  constructor(
    readonly move: StockMove,
    readonly skus: readonly string[],
  ) {
    super("STOCK_GUARD_FAILED", `cannot ${move} stock of ${skus.join(", ")}`, {
      retryable: true,
      data: { move, skus: [...skus] },
    });
  }
}

export class ProductRepository {
  async find(scope: Scope, sku: string): Promise<Product | null> {
    return recordOf(await products(scope).findOne({ _id: sku }));
  }

  /** The products of these SKUs, by SKU; missing ones are left out. No SKU: no read. */
  async findMany(scope: Scope, skus: readonly string[]): Promise<Map<string, Product>> {
    if (skus.length === 0) return new Map();
    const docs = await products(scope).find({ _id: { $in: [...skus] } });
    return new Map(docs.map((doc) => [doc._id, recordOf(doc) as Product]));
  }

  /** Every product, by SKU. */
  async all(scope: Scope): Promise<Product[]> {
    const docs = await products(scope).find({}, { sort: { _id: 1 } });
    return docs.map((doc) => recordOf(doc) as Product);
  }

  /** Create a product with no stock, or change its name and price (its counters stay). */
  async upsert(
    tx: Transaction,
    product: { sku: string; name: string; price: Money },
    now: Date,
  ): Promise<Product> {
    const { sku, name, price } = product;
    await products(tx).updateOne(
      { _id: sku },
      { $set: { name, price, updatedAt: now }, $setOnInsert: { sku, ...emptyStock(), createdAt: now } },
      { upsert: true },
    );
    const saved = await this.find(tx, sku);
    if (saved === null) throw new Error(`product ${sku} vanished after its upsert`);
    return saved;
  }

  /**
   * Apply each move with its guard. Every move is tried; when some guard failed, throws a
   * `StockGuardError` naming those SKUs, and the caller's transaction must roll back.
   */
  async applyMoves(tx: Transaction, moves: readonly StockChange[], now: Date): Promise<void> {
    const failed: StockChange[] = [];
    for (const change of moves) {
      const { sku, move, quantity } = change;
      const guard = moveGuard(move, quantity);
      const filter: Filter =
        guard === null ? { _id: sku } : { _id: sku, [guard.counter]: { $gte: guard.atLeast } };
      const result = await products(tx).updateOne(filter, {
        $inc: moveIncrements(move, quantity),
        $set: { updatedAt: now },
      });
      if (result.modifiedCount !== 1) failed.push(change);
    }
    const first = failed[0];
    if (first !== undefined)
      throw new StockGuardError(
        first.move,
        failed.map((change) => change.sku),
      );
  }

  /** Insert `entries`, each with all its units available, when there is no product yet; returns how many. */
  async seedIfEmpty(tx: Transaction, entries: readonly SeedEntry[], now: Date): Promise<number> {
    const collection = products(tx);
    if ((await collection.countDocuments({})) > 0) return 0;
    await collection.insertMany(
      entries.map(({ sku, name, price, quantity }) => ({
        _id: sku,
        sku,
        name,
        price,
        ...initialStock(quantity),
        createdAt: now,
        updatedAt: now,
      })),
    );
    return entries.length;
  }
}

function products(scope: Scope): Collection<ProductDoc> {
  return scope.collection<ProductDoc>(PRODUCTS_COLLECTION);
}

function recordOf(doc: ProductDoc | null): Product | null {
  if (doc === null) return null;
  const { _id, name, price, available, reserved, sold, received, createdAt, updatedAt } = doc;
  return { sku: _id, name, price, available, reserved, sold, received, createdAt, updatedAt };
}
