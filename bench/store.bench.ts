/**
 * Embedded document store throughput: transactions that insert one document into each of two
 * collections (an entity and its outbox row), at synchronous=full and normal, with 1, 16 and 64
 * concurrent writers, against a baseline of raw node:sqlite doing the same two INSERTs in its own
 * BEGIN/COMMIT per transaction on the same settings. Then the outbox relay's query over a large
 * collection, with and without an index on `status`.
 *
 *   npm run bench -- store        (or: node dist/bench/store.bench.js)
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { EmbeddedDocumentStore } from "../lib/store/embedded/embedded.adapter";
import type { Measurement } from "./report";
import { nowMs, printReport, progress } from "./report";

type Synchronous = "full" | "normal";

const WRITERS = [1, 16, 64];
/** Transactions per case: enough for stable figures, small enough for a 2-core machine. */
const TRANSACTIONS: Record<Synchronous, number> = { full: 20_000, normal: 40_000 };
const WARMUP = 2_000;

/** A document shaped like an order and its outbox event. */
function pair(seq: number): { entity: Record<string, unknown>; event: Record<string, unknown> } {
  const orderId = randomUUID();
  const at = new Date();
  return {
    entity: {
      _id: orderId,
      customerId: `c${seq % 1000}`,
      status: "PENDING_PAYMENT",
      items: [{ sku: `sku-${seq % 50}`, quantity: 1 + (seq % 3), price: { minor: 1999, currency: "USD" } }],
      createdAt: at,
    },
    event: {
      _id: randomUUID(),
      type: "order.created",
      aggregateId: orderId,
      status: "pending",
      occurredAt: at,
      attempts: 0,
      payload: { orderId, total: { minor: 1999, currency: "USD" } },
    },
  };
}

/** Raw node:sqlite: the same two INSERTs, one BEGIN/COMMIT per transaction, same file settings. */
function rawSqlite(dir: string, synchronous: Synchronous, transactions: number): Measurement {
  const db = new DatabaseSync(join(dir, `raw-${synchronous}.db`));
  db.exec("PRAGMA locking_mode = EXCLUSIVE");
  db.exec("PRAGMA journal_mode = WAL");
  db.exec(`PRAGMA synchronous = ${synchronous.toUpperCase()}`);
  db.exec(
    "CREATE TABLE docs (coll TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (coll, id))",
  );
  const insert = db.prepare("INSERT INTO docs (coll, id, body) VALUES (?, ?, ?)");
  const begin = db.prepare("BEGIN IMMEDIATE");
  const commit = db.prepare("COMMIT");
  const once = (seq: number): void => {
    const { entity, event } = pair(seq);
    begin.run();
    insert.run("orders", entity._id as string, JSON.stringify(entity));
    insert.run("outbox", event._id as string, JSON.stringify(event));
    commit.run();
  };
  for (let i = 0; i < WARMUP; i++) once(-i - 1);
  const latencies: number[] = [];
  const started = nowMs();
  for (let i = 0; i < transactions; i++) {
    const t0 = nowMs();
    once(i);
    latencies.push(nowMs() - t0);
  }
  const elapsedMs = nowMs() - started;
  db.close();
  return {
    name: `raw node:sqlite, 1 tx per COMMIT (${synchronous})`,
    operations: transactions,
    elapsedMs,
    latenciesMs: latencies,
  };
}

/** The embedded store with `writers` concurrent loops, `transactions` in total. */
async function embedded(
  dir: string,
  synchronous: Synchronous,
  writers: number,
  transactions: number,
): Promise<Measurement> {
  const store = new EmbeddedDocumentStore({
    file: join(dir, `embedded-${synchronous}-${writers}.db`),
    synchronous,
  });
  await store.open();
  let issued = 0;
  const latencies: number[] = [];
  const label = `embedded ${synchronous}, ${writers} writers`;
  const loop = async (total: number, record: boolean): Promise<void> => {
    while (issued < total) {
      const seq = issued++;
      const { entity, event } = pair(seq);
      const t0 = nowMs();
      await store.transaction(async (tx) => {
        await tx.collection("orders").insertOne(entity);
        await tx.collection("outbox").insertOne(event);
      });
      if (record) {
        latencies.push(nowMs() - t0);
        if (latencies.length % 5000 === 0) progress(label, latencies.length, transactions);
      }
    }
  };
  await Promise.all(Array.from({ length: writers }, () => loop(WARMUP, false)));
  issued = 0;
  const started = nowMs();
  await Promise.all(Array.from({ length: writers }, () => loop(transactions, true)));
  const elapsedMs = nowMs() - started;
  await store.close();
  return { name: label, operations: transactions, elapsedMs, latenciesMs: latencies };
}

/** The relay's query — pending rows, oldest first, 100 at a time — over a collection of `size` rows. */
async function relayQuery(dir: string, size: number, indexed: boolean): Promise<Measurement> {
  const store = new EmbeddedDocumentStore({
    file: join(dir, `relay-${indexed ? "indexed" : "plain"}.db`),
    synchronous: "normal",
  });
  await store.open();
  if (indexed) await store.createIndex("outbox", { keys: { status: 1, occurredAt: 1 } });
  const outbox = store.collection("outbox");
  const chunk = 5000;
  for (let i = 0; i < size; i += chunk) {
    await outbox.insertMany(
      Array.from({ length: Math.min(chunk, size - i) }, (_, k) => ({
        ...pair(i + k).event,
        // 1% still pending, the rest published: the common steady state.
        status: (i + k) % 100 === 0 ? "pending" : "published",
        occurredAt: new Date(1_700_000_000_000 + i + k),
      })),
    );
  }
  const queries = indexed ? 2000 : 50;
  const latencies: number[] = [];
  const started = nowMs();
  for (let q = 0; q < queries; q++) {
    const t0 = nowMs();
    const rows = await outbox.find({ status: "pending" }, { sort: { occurredAt: 1 }, limit: 100 });
    latencies.push(nowMs() - t0);
    if (rows.length !== 100) throw new Error(`relay query returned ${rows.length} rows`);
  }
  const elapsedMs = nowMs() - started;
  await store.close();
  return {
    name: `relay query over ${size} rows, ${indexed ? "index on status" : "no index"}`,
    operations: queries,
    elapsedMs,
    latenciesMs: latencies,
  };
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "ordermesh-store-bench-"));
  try {
    for (const synchronous of ["full", "normal"] as const) {
      const transactions = TRANSACTIONS[synchronous];
      const rows: Measurement[] = [rawSqlite(dir, synchronous, transactions)];
      for (const writers of WRITERS) rows.push(await embedded(dir, synchronous, writers, transactions));
      printReport(
        `embedded store: 2-document transactions, synchronous=${synchronous} (ops = transactions)`,
        rows,
        rows[0]?.name,
      );
    }
    printReport("embedded store: outbox relay query (find pending, sort occurredAt, limit 100)", [
      await relayQuery(dir, 100_000, false),
      await relayQuery(dir, 100_000, true),
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) void run();
