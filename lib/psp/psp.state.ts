/**
 * Durable state of the payment-provider simulator: intents, refunds, idempotency records and the
 * webhook deliveries still owed, in one SQLite file (`<dataDir>/psp/psp.db`, WAL, synchronous FULL),
 * so that a restarted simulator keeps every charge, finishes the intents it left `processing` and
 * delivers the webhooks it still owed. Every change of the simulator runs in `transaction()`, so an
 * effect, its idempotency record and its webhook commit together.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { PaymentIntent, PspEvent, Refund } from "./psp.port";

/** A stored intent: the object the API returns, plus when a `processing` intent succeeds. */
export interface StoredIntent {
  intent: PaymentIntent;
  /** Epoch ms at which a `processing` intent becomes `succeeded`; null once settled. */
  settleAt: number | null;
}

/** A stored answer to a request made with an `Idempotency-Key`. */
export interface IdempotencyRecord {
  key: string;
  /** Hash of method, path and canonical body: a key reused for another request is refused. */
  requestHash: string;
  status: number;
  body: string;
}

export type WebhookStatus = "pending" | "delivered" | "failed" | "dropped" | "skipped";

/** One webhook event and the state of its delivery. */
export interface WebhookRecord {
  id: string;
  type: string;
  /** The event's JSON, exactly the bytes posted (and signed). */
  body: string;
  status: WebhookStatus;
  attempts: number;
  /** Epoch ms of the next attempt, while pending. */
  nextAttemptAt: number | null;
  lastError: string | null;
}

interface Row {
  [column: string]: unknown;
}

export class PspState {
  private db: DatabaseSync | null = null;
  private depth = 0;

  constructor(private readonly dataDir: string) {}

  /** The database file. */
  get file(): string {
    return join(this.dataDir, "psp", "psp.db");
  }

  open(): void {
    if (this.db !== null) return;
    mkdirSync(join(this.dataDir, "psp"), { recursive: true });
    const db = new DatabaseSync(this.file, { timeout: 1000 });
    try {
      const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode?: string } | undefined;
      if (mode?.journal_mode !== "wal")
        throw new Error(`could not enable WAL (journal_mode=${String(mode?.journal_mode)})`);
      db.exec("PRAGMA synchronous = FULL");
      db.exec(`
        CREATE TABLE IF NOT EXISTS intents (
          id TEXT PRIMARY KEY,
          body TEXT NOT NULL,
          status TEXT NOT NULL,
          settle_at INTEGER,
          refunded INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS intents_settle ON intents (settle_at) WHERE settle_at IS NOT NULL;
        CREATE TABLE IF NOT EXISTS refunds (
          id TEXT PRIMARY KEY,
          intent_id TEXT NOT NULL,
          body TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS idempotency (
          key TEXT PRIMARY KEY,
          request_hash TEXT NOT NULL,
          status INTEGER NOT NULL,
          body TEXT NOT NULL,
          created_at INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS webhooks (
          id TEXT PRIMARY KEY,
          seq INTEGER NOT NULL,
          type TEXT NOT NULL,
          body TEXT NOT NULL,
          status TEXT NOT NULL,
          attempts INTEGER NOT NULL DEFAULT 0,
          next_attempt_at INTEGER,
          last_error TEXT
        );
        CREATE INDEX IF NOT EXISTS webhooks_pending ON webhooks (status, next_attempt_at);
      `);
    } catch (err) {
      db.close();
      throw err;
    }
    this.db = db;
  }

  close(): void {
    this.db?.close();
    this.db = null;
  }

  get isOpen(): boolean {
    return this.db !== null;
  }

  /** Run `fn` in one SQLite transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T {
    const db = this.handle();
    if (this.depth > 0) return fn();
    db.exec("BEGIN IMMEDIATE");
    this.depth = 1;
    try {
      const result = fn();
      db.exec("COMMIT");
      return result;
    } catch (err) {
      db.exec("ROLLBACK");
      throw err;
    } finally {
      this.depth = 0;
    }
  }

  // -- intents ------------------------------------------------------------------------------------

  getIntent(id: string): StoredIntent | null {
    const row = this.handle().prepare("SELECT body, settle_at FROM intents WHERE id = ?").get(id) as
      Row | undefined;
    if (row === undefined) return null;
    return { intent: JSON.parse(String(row.body)) as PaymentIntent, settleAt: nullableNumber(row.settle_at) };
  }

  putIntent(stored: StoredIntent): void {
    this.handle()
      .prepare(
        `INSERT INTO intents (id, body, status, settle_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET body = excluded.body, status = excluded.status, settle_at = excluded.settle_at`,
      )
      .run(stored.intent.id, JSON.stringify(stored.intent), stored.intent.status, stored.settleAt);
  }

  /** Intents still to settle, soonest first. */
  unsettled(): { id: string; settleAt: number }[] {
    const rows = this.handle()
      .prepare("SELECT id, settle_at FROM intents WHERE settle_at IS NOT NULL ORDER BY settle_at")
      .all() as Row[];
    return rows.map((row) => ({ id: String(row.id), settleAt: Number(row.settle_at) }));
  }

  listIntents(): PaymentIntent[] {
    const rows = this.handle().prepare("SELECT body FROM intents ORDER BY rowid").all() as Row[];
    return rows.map((row) => JSON.parse(String(row.body)) as PaymentIntent);
  }

  // -- refunds ------------------------------------------------------------------------------------

  /** Minor units refunded so far on an intent. */
  refundedOf(intentId: string): number {
    const row = this.handle().prepare("SELECT refunded FROM intents WHERE id = ?").get(intentId) as
      Row | undefined;
    return row === undefined ? 0 : Number(row.refunded);
  }

  addRefund(refund: Refund): void {
    const db = this.handle();
    db.prepare("INSERT INTO refunds (id, intent_id, body) VALUES (?, ?, ?)").run(
      refund.id,
      refund.payment_intent,
      JSON.stringify(refund),
    );
    db.prepare("UPDATE intents SET refunded = refunded + ? WHERE id = ?").run(
      refund.amount,
      refund.payment_intent,
    );
  }

  getRefund(id: string): Refund | null {
    const row = this.handle().prepare("SELECT body FROM refunds WHERE id = ?").get(id) as Row | undefined;
    return row === undefined ? null : (JSON.parse(String(row.body)) as Refund);
  }

  listRefunds(): Refund[] {
    const rows = this.handle().prepare("SELECT body FROM refunds ORDER BY rowid").all() as Row[];
    return rows.map((row) => JSON.parse(String(row.body)) as Refund);
  }

  // -- idempotency --------------------------------------------------------------------------------

  getIdempotency(key: string): IdempotencyRecord | null {
    const row = this.handle()
      .prepare("SELECT key, request_hash, status, body FROM idempotency WHERE key = ?")
      .get(key) as Row | undefined;
    if (row === undefined) return null;
    return {
      key: String(row.key),
      requestHash: String(row.request_hash),
      status: Number(row.status),
      body: String(row.body),
    };
  }

  putIdempotency(record: IdempotencyRecord): void {
    this.handle()
      .prepare("INSERT INTO idempotency (key, request_hash, status, body, created_at) VALUES (?, ?, ?, ?, ?)")
      .run(record.key, record.requestHash, record.status, record.body, Date.now());
  }

  // -- webhooks -----------------------------------------------------------------------------------

  addWebhook(event: PspEvent, status: WebhookStatus, nextAttemptAt: number | null): WebhookRecord {
    const body = JSON.stringify(event);
    const db = this.handle();
    const seq = Number(
      (db.prepare("SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM webhooks").get() as Row).seq,
    );
    db.prepare(
      "INSERT INTO webhooks (id, seq, type, body, status, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
    ).run(event.id, seq, event.type, body, status, nextAttemptAt);
    return { id: event.id, type: event.type, body, status, attempts: 0, nextAttemptAt, lastError: null };
  }

  getWebhook(id: string): WebhookRecord | null {
    const row = this.handle().prepare("SELECT * FROM webhooks WHERE id = ?").get(id) as Row | undefined;
    return row === undefined ? null : webhookOf(row);
  }

  /** Pending deliveries, in the order their events happened. */
  pendingWebhooks(): WebhookRecord[] {
    const rows = this.handle()
      .prepare("SELECT * FROM webhooks WHERE status = 'pending' ORDER BY seq")
      .all() as Row[];
    return rows.map(webhookOf);
  }

  listWebhooks(): WebhookRecord[] {
    const rows = this.handle().prepare("SELECT * FROM webhooks ORDER BY seq").all() as Row[];
    return rows.map(webhookOf);
  }

  updateWebhook(
    id: string,
    change: {
      status: WebhookStatus;
      attempts: number;
      nextAttemptAt: number | null;
      lastError: string | null;
    },
  ): void {
    this.handle()
      .prepare(
        "UPDATE webhooks SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
      )
      .run(change.status, change.attempts, change.nextAttemptAt, change.lastError, id);
  }

  /** Counts for `/_sim/stats`. */
  counts(): { intents: number; refunds: number; webhooks: Record<WebhookStatus, number> } {
    const db = this.handle();
    const count = (sql: string): number => Number((db.prepare(sql).get() as Row).n);
    const webhooks: Record<WebhookStatus, number> = {
      pending: 0,
      delivered: 0,
      failed: 0,
      dropped: 0,
      skipped: 0,
    };
    for (const row of db.prepare("SELECT status, COUNT(*) AS n FROM webhooks GROUP BY status").all() as Row[])
      webhooks[String(row.status) as WebhookStatus] = Number(row.n);
    return {
      intents: count("SELECT COUNT(*) AS n FROM intents"),
      refunds: count("SELECT COUNT(*) AS n FROM refunds"),
      webhooks,
    };
  }

  private handle(): DatabaseSync {
    if (this.db === null) throw new Error("the simulator's state is closed");
    return this.db;
  }
}

function nullableNumber(value: unknown): number | null {
  return value === null || value === undefined ? null : Number(value);
}

function webhookOf(row: Row): WebhookRecord {
  return {
    id: String(row.id),
    type: String(row.type),
    body: String(row.body),
    status: String(row.status) as WebhookStatus,
    attempts: Number(row.attempts),
    nextAttemptAt: nullableNumber(row.next_attempt_at),
    lastError: row.last_error === null || row.last_error === undefined ? null : String(row.last_error),
  };
}
