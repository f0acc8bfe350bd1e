/**
 * The durable side of the embedded store: one SQLite file (WAL mode) holding every document and
 * index definition. The file is opened with an exclusive lock, so a second process (or a second store
 * in this process) cannot open it while it is in use — two in-memory working sets over one file would
 * silently diverge.
 * WAL and synchronous levels: https://www.sqlite.org/wal.html, https://www.sqlite.org/pragma.html#pragma_synchronous
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { StatementSync } from "node:sqlite";
import { UnavailableError } from "../../errors";
import type { Doc, IndexSpec } from "../store.port";
import { decodeDoc, decodeValue, encodeDoc, encodeValue } from "./codec";
import type { WriteRecord } from "./engine";

/** Version of the file layout; a newer file is refused rather than misread. */
const FORMAT_VERSION = 1;

export interface SqliteStorageOptions {
  file: string;
  synchronous: "full" | "normal";
  /** Refuse writes that would grow the file past this size (SQLite `max_page_count`). */
  maxSizeBytes?: number;
}

/** A stored index definition. */
export interface StoredIndex {
  collection: string;
  name: string;
  spec: IndexSpec;
}

interface Statements {
  begin: StatementSync;
  commit: StatementSync;
  rollback: StatementSync;
  upsert: StatementSync;
  remove: StatementSync;
  saveIndex: StatementSync;
  ping: StatementSync;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class SqliteStorage {
  private db: DatabaseSync | null = null;
  private statements: Statements | null = null;

  constructor(private readonly options: SqliteStorageOptions) {}

  /** Opens (creating when missing) and locks the file. Throws `UnavailableError` when it cannot. */
  open(): void {
    const { file, synchronous, maxSizeBytes } = this.options;
    let db: DatabaseSync | undefined;
    try {
      mkdirSync(dirname(file), { recursive: true });
      db = new DatabaseSync(file, { timeout: 0 });
      // Exclusive locking before WAL: the lock is held until close and the WAL index lives in heap memory.
      db.exec("PRAGMA locking_mode = EXCLUSIVE");
      const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode?: string } | undefined;
      if (mode?.journal_mode !== "wal")
        throw new Error(`could not enable WAL (journal_mode=${String(mode?.journal_mode)})`);
      db.exec(`PRAGMA synchronous = ${synchronous === "full" ? "FULL" : "NORMAL"}`);
      db.exec("BEGIN IMMEDIATE");
      const version = (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version;
      if (version > FORMAT_VERSION) {
        throw new Error(`file format ${version} is newer than this engine understands (${FORMAT_VERSION})`);
      }
      db.exec(`
        CREATE TABLE IF NOT EXISTS docs (
          coll TEXT NOT NULL,
          id TEXT NOT NULL,
          body TEXT NOT NULL,
          PRIMARY KEY (coll, id)
        );
        CREATE TABLE IF NOT EXISTS indexes (
          coll TEXT NOT NULL,
          name TEXT NOT NULL,
          spec TEXT NOT NULL,
          PRIMARY KEY (coll, name)
        );
        PRAGMA user_version = ${FORMAT_VERSION};
      `);
      db.exec("COMMIT");
      if (maxSizeBytes !== undefined) {
        const pageSize = (db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size;
        db.exec(`PRAGMA max_page_count = ${Math.max(1, Math.floor(maxSizeBytes / pageSize))}`);
      }
    } catch (error) {
      try {
        db?.close();
      } catch {
        // already failing; the original error is the one to report
      }
      throw new UnavailableError(`cannot open store file ${file}: ${describe(error)}`, { file }, error);
    }
    this.db = db;
    this.statements = {
      begin: db.prepare("BEGIN IMMEDIATE"),
      commit: db.prepare("COMMIT"),
      rollback: db.prepare("ROLLBACK"),
      upsert: db.prepare(
        "INSERT INTO docs (coll, id, body) VALUES (?, ?, ?) ON CONFLICT (coll, id) DO UPDATE SET body = excluded.body",
      ),
      remove: db.prepare("DELETE FROM docs WHERE coll = ? AND id = ?"),
      saveIndex: db.prepare("INSERT INTO indexes (coll, name, spec) VALUES (?, ?, ?)"),
      ping: db.prepare("SELECT 1 AS ok"),
    };
  }

  private get handle(): { db: DatabaseSync; statements: Statements } {
    if (this.db === null || this.statements === null) throw new UnavailableError("store file is not open");
    return { db: this.db, statements: this.statements };
  }

  /** Every stored index definition. */
  loadIndexes(): StoredIndex[] {
    const rows = this.handle.db.prepare("SELECT coll, name, spec FROM indexes ORDER BY rowid").all();
    return rows.map((row) => ({
      collection: row.coll as string,
      name: row.name as string,
      spec: decodeValue(row.spec as string) as IndexSpec,
    }));
  }

  /** Calls `visit` with every stored document, in insertion order. */
  loadDocuments(visit: (collection: string, doc: Doc) => void): void {
    const rows = this.handle.db.prepare("SELECT coll, body FROM docs ORDER BY rowid").iterate();
    for (const row of rows) visit(row.coll as string, decodeDoc(row.body as string));
  }

  /** Writes a group of commits in one SQLite transaction; durable (per `synchronous`) when it returns. */
  write(writes: readonly WriteRecord[]): void {
    const { db, statements } = this.handle;
    statements.begin.run();
    try {
      for (const w of writes) {
        if (w.after === null) statements.remove.run(w.collection, w.id);
        else statements.upsert.run(w.collection, w.id, encodeDoc(w.after));
      }
      statements.commit.run();
    } catch (error) {
      if (db.isTransaction) statements.rollback.run();
      throw error;
    }
  }

  /** Stores an index definition durably. */
  saveIndex(index: StoredIndex): void {
    this.handle.statements.saveIndex.run(index.collection, index.name, encodeValue(index.spec));
  }

  /** Throws when the file cannot be read. */
  ping(): void {
    this.handle.statements.ping.get();
  }

  /** Checkpoints and closes the file (releasing the lock). Idempotent. */
  close(): void {
    const db = this.db;
    this.db = null;
    this.statements = null;
    db?.close();
  }
}
