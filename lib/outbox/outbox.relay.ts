/**
 * The outbox relay: publishes a store's pending outbox rows to the event bus, at least once.
 *
 * - Claims due rows with a lease (a conditional update in a transaction), so two relays on one
 *   store never hold the same row at once; a crashed relay's lease expires and is taken over.
 * - Sends claimed rows in `occurredAt` order with bounded concurrency, and marks a row `published`
 *   only after the bus acknowledged it (marks are written in batches).
 * - A failed publish is retried with full-jitter exponential backoff; at `maxAttempts` the row
 *   becomes `dead`: kept, counted, logged, replayable, never in the way of the rows behind it.
 *
 * Guarantees, failure table and tuning: docs/outbox.md.
 */
import { LoopSignals } from "../loop-signals";
import { subjectOf } from "../../models/events";
import { retryDelayMs } from "../../models/backoff";
import type { EventBus, OutgoingMessage } from "../bus/bus.port";
import type { Collection, DocumentStore, Filter } from "../store/store.port";
import { OUTBOX_COLLECTION, encodeEnvelope, envelopeOf, type OutboxRow } from "./outbox";

/** The subset of a Moleculer / pino / console logger the relay uses. */
export interface RelayLogger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** Fault-injection points for tests. */
export interface OutboxRelayHooks {
  /** Runs after the bus acknowledged row `id` and before the row is queued to be marked published. */
  afterPublish?(id: string): void | Promise<void>;
}

export interface OutboxRelayOptions {
  store: DocumentStore;
  bus: EventBus;
  /** Id of this relay instance (e.g. `<nodeID>:<service>`); unique among the live relays of a store. */
  owner: string;
  logger?: RelayLogger;
  /** Rows claimed at most per claim (default 100). */
  batchSize?: number;
  /** Look for due rows at least this often when nothing wakes the relay (default 1 000 ms). */
  pollIntervalMs?: number;
  /** How long a claim holds a row; renewed while the row is held (default 30 000 ms). */
  leaseMs?: number;
  /** Failed publishes before a row is dead (default 10). */
  maxAttempts?: number;
  /** Retry delays: random in [0, min(backoffMaxMs, backoffBaseMs·2^(failures-1))] (defaults 500 / 60 000 ms). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Published rows are purged this long after publishing (default 7 days); dead rows never. */
  retentionMs?: number;
  /** Publishes in flight at most (default 64). */
  publishConcurrency?: number;
  /** How long `stop()` waits for publishes in flight (default 10 000 ms). */
  stopTimeoutMs?: number;
  /** Clock in epoch milliseconds (tests). */
  now?: () => number;
  hooks?: OutboxRelayHooks;
}

/** Defaults of the tuning options. */
export const OUTBOX_RELAY_DEFAULTS = {
  batchSize: 100,
  pollIntervalMs: 1_000,
  leaseMs: 30_000,
  maxAttempts: 10,
  backoffBaseMs: 500,
  backoffMaxMs: 60_000,
  retentionMs: 7 * 24 * 60 * 60 * 1000,
  publishConcurrency: 64,
  stopTimeoutMs: 10_000,
} as const;

type Tuning = { -readonly [K in keyof typeof OUTBOX_RELAY_DEFAULTS]: number };

/** What `stats()` reports. */
export interface OutboxStats {
  /** Rows waiting to be published (in the store). */
  pending: number;
  /** Age of the oldest pending row, by `occurredAt`; null when none is pending. */
  oldestPendingAgeMs: number | null;
  /** Rows that ran out of attempts (in the store). */
  dead: number;
  /** Rows this relay marked published in the last 60 s. */
  publishedLastMinute: number;
  /** Since this relay was created. */
  counters: { published: number; publishFailures: number; dead: number };
}

interface Failure {
  row: OutboxRow;
  error: string;
}

const silentLogger: RelayLogger = { info: () => {}, warn: () => {}, error: () => {} };

/** How many acknowledged rows one mark transaction updates at most. */
const MARK_BATCH = 500;

/** A scan for due rows reads this many claims' worth of candidates. */
const SCAN_BATCHES = 10;

/** Pending rows, oldest first: the relay's publishing order. */
const CLAIM_ORDER = { occurredAt: 1, _id: 1 } as const;

export class OutboxRelay {
  readonly owner: string;
  private readonly store: DocumentStore;
  private readonly bus: EventBus;
  private readonly logger: RelayLogger;
  private readonly tuning: Tuning;
  private readonly now: () => number;
  private readonly hooks: OutboxRelayHooks;
  /**
   * Rows claimed and not yet settled (queued, being published, or waiting for their outcome to be
   * written), by id. At most `maxHeld`; their leases are renewed while they are here.
   */
  private readonly held = new Map<string, OutboxRow>();
  private readonly maxHeld: number;
  /** Claimed rows waiting for a publish slot, oldest first. */
  private readonly queue: OutboxRow[] = [];
  private publishing = 0;
  /** Ids of due rows found by the last scan and not yet tried, oldest first. */
  private candidates: string[] = [];
  /** Whether the last scan stopped at its limit (more rows may be due behind it). */
  private scanWasFull = false;
  private readonly publishesDone = new Set<() => void>();
  /** Results waiting to be written: acknowledged rows, failed rows, rows to hand back untouched. */
  private acked: OutboxRow[] = [];
  private failed: Failure[] = [];
  private released: OutboxRow[] = [];
  private settling: Promise<void> | undefined;

  private state: "new" | "running" | "stopping" | "stopped" = "new";
  private loopDone: Promise<void> = Promise.resolve();
  private stopping: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  private readonly signals = new LoopSignals(
    () => this.state === "running",
    () => this.now(),
  );
  private renewTimer: NodeJS.Timeout | undefined;
  /** Stops the store's insert watch (MongoDB change stream), when the store has one. */
  private unwatch: (() => Promise<void>) | undefined;
  private renewing = false;

  private readonly counters = { published: 0, publishFailures: 0, dead: 0 };
  /** Rows marked published per second, over the last 60 seconds. */
  private readonly perSecond = new Array<number>(60).fill(0);
  private perSecondAt = 0;

  constructor(options: OutboxRelayOptions) {
    if (typeof options.owner !== "string" || options.owner.length === 0) {
      throw new RangeError("OutboxRelay needs a non-empty owner");
    }
    this.owner = options.owner;
    this.store = options.store;
    this.bus = options.bus;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.hooks = options.hooks ?? {};
    const tuning = { ...OUTBOX_RELAY_DEFAULTS } as Tuning;
    for (const key of Object.keys(OUTBOX_RELAY_DEFAULTS) as (keyof Tuning)[]) {
      const value = options[key];
      if (value === undefined) continue;
      const minimum = key === "backoffBaseMs" || key === "backoffMaxMs" || key === "retentionMs" ? 0 : 1;
      if (!Number.isInteger(value) || value < minimum) {
        throw new RangeError(`OutboxRelay option ${key} must be an integer ≥ ${minimum}, got ${value}`);
      }
      tuning[key] = value;
    }
    this.tuning = tuning;
    this.maxHeld = tuning.batchSize + tuning.publishConcurrency;
  }

  // -- lifecycle ----------------------------------------------------------------------------------

  /** Create the outbox indexes and start relaying. Idempotent while running. */
  start(): Promise<void> {
    if (this.state === "running") return Promise.resolve();
    this.starting ??= this.startUp().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async startUp(): Promise<void> {
    if (this.state === "stopping") await this.stopping;
    await this.ensureIndexes();
    this.state = "running";
    this.stopping = undefined;
    this.signals.requested = true;
    this.candidates = [];
    this.renewTimer = setInterval(
      () => void this.renewLeases(),
      Math.max(1, Math.floor(this.tuning.leaseMs / 3)),
    );
    this.renewTimer.unref();
    this.loopDone = this.loop();
    if (this.store.watchInserts !== undefined) {
      // rows committed by other instances wake this relay too (MongoDB change stream); polling stays the fallback
      try {
        this.unwatch = await this.store.watchInserts(OUTBOX_COLLECTION, () => this.wake());
      } catch (err) {
        this.logger.warn(`[outbox] relay ${this.owner}: no change stream, polling only`, err);
      }
    }
    this.logger.info(`[outbox] relay ${this.owner} started`);
  }

  /**
   * Stop claiming; hand back rows claimed but not sent; let publishes in flight end (up to
   * `stopTimeoutMs`) and record their outcome. A publish still running after that keeps its lease
   * until it expires, so no other relay sends the row while it may still land. Idempotent.
   */
  stop(): Promise<void> {
    // a stop that overtakes start() waits for it, so no relay is left running behind it
    if (this.starting !== undefined)
      return this.starting.then(
        () => this.stop(),
        () => undefined,
      );
    if (this.state === "new" || this.state === "stopped") return Promise.resolve();
    this.stopping ??= this.shutDown();
    return this.stopping;
  }

  /** Look for due rows now (after a local commit that added events). Many calls coalesce. */
  wake(): void {
    this.signals.wake();
  }

  private async shutDown(): Promise<void> {
    this.state = "stopping";
    const unwatch = this.unwatch;
    this.unwatch = undefined;
    await unwatch?.().catch(() => undefined);
    this.signals.release();
    await this.loopDone;
    // never sent: back to the pool as they were
    for (const row of this.queue.splice(0)) this.settle(row, "release");
    const inFlight = this.publishing > 0 ? this.publishesFinished() : Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      inFlight.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), this.tuning.stopTimeoutMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.logger.warn(
        `[outbox] relay ${this.owner} stopped with ${this.publishing} publishes unfinished; their leases expire in ${this.tuning.leaseMs} ms`,
      );
    }
    await this.flushSettlements();
    if (this.renewTimer !== undefined) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
    // a publish that ends from now on changes nothing: its lease expires and the row is sent again
    this.held.clear();
    this.state = "stopped";
    this.logger.info(`[outbox] relay ${this.owner} stopped`);
  }

  // -- inspection ---------------------------------------------------------------------------------

  /** Pending and dead counts from the store, the rest from this relay's memory. */
  async stats(): Promise<OutboxStats> {
    const outbox = this.outbox();
    const [pending, dead, oldest] = await Promise.all([
      outbox.countDocuments({ status: "pending" }),
      outbox.countDocuments({ status: "dead" }),
      outbox.findOne({ status: "pending" }, { sort: CLAIM_ORDER, projection: { occurredAt: 1 } }),
    ]);
    const now = this.now();
    return {
      pending,
      oldestPendingAgeMs: oldest === null ? null : Math.max(0, now - oldest.occurredAt.getTime()),
      dead,
      publishedLastMinute: this.publishedInLastMinute(now),
      counters: { ...this.counters },
    };
  }

  /** Dead rows, most recently dead first. */
  async listDead(limit = 50): Promise<OutboxRow[]> {
    return this.outbox().find({ status: "dead" }, { sort: { deadAt: -1, _id: 1 }, limit });
  }

  /** Make a dead row pending again with a fresh attempt budget; false when `id` is not a dead row. */
  async replayDead(id: string): Promise<boolean> {
    const result = await this.outbox().updateOne(
      { _id: id, status: "dead" },
      {
        $set: { status: "pending", attempts: 0, nextAttemptAt: new Date(this.now()) },
        $unset: { deadAt: "", leaseOwner: "", leaseUntil: "" },
      },
    );
    if (result.modifiedCount === 0) return false;
    this.logger.info(`[outbox] dead row ${id} replayed`);
    this.wake();
    return true;
  }

  // -- the claim loop -----------------------------------------------------------------------------

  private async loop(): Promise<void> {
    while (this.state === "running") {
      const room = this.maxHeld - this.held.size;
      if (room < Math.ceil(this.tuning.batchSize / 2)) {
        await this.signals.wait("room");
        continue;
      }
      this.signals.requested = false;
      let more = false;
      try {
        more = await this.claim(Math.min(this.tuning.batchSize, room));
      } catch (err) {
        this.logger.warn(`[outbox] relay ${this.owner}: claiming rows failed: ${errorText(err)}`);
        this.signals.requested = false;
        await this.signals.wait("work", this.tuning.pollIntervalMs);
        continue;
      }
      if (more || this.signals.requested) continue;
      await this.signals.wait("work", this.tuning.pollIntervalMs);
    }
  }

  /**
   * Claim up to `limit` due rows and queue them for publishing; true when more may be due.
   * Candidates come from a scan of due rows, oldest first, read outside any transaction and kept
   * for the next claims (one scan serves `SCAN_BATCHES` claims: a scan costs about as much with 10
   * rows as with 1,000). Each claim then leases its candidates in a transaction by id, with the due
   * condition repeated: a row claimed meanwhile by another relay, or no longer due, is skipped, and
   * a concurrent claim of the same row conflicts (embedded: serializable validation; MongoDB: write
   * conflict) so that the loser re-reads without it.
   */
  private async claim(limit: number): Promise<boolean> {
    const now = this.now();
    const due = this.dueFilter(now);
    const fresh = this.candidates.length === 0;
    if (fresh) {
      const scanLimit = this.tuning.batchSize * SCAN_BATCHES;
      const found = await this.outbox().find(due, {
        sort: CLAIM_ORDER,
        limit: scanLimit,
        projection: { _id: 1 },
      });
      this.candidates = found.map((c) => c._id);
      this.scanWasFull = found.length === scanLimit;
    }
    // a row still held here (its lease lapsed while it was being published) is not claimed twice
    const ids = this.candidates.splice(0, limit).filter((id) => !this.held.has(id));
    const more = this.candidates.length > 0 || this.scanWasFull;
    // nothing claimable in a fresh scan: wait for a wake or the poll rather than scan again at once
    if (ids.length === 0) return more && !fresh;
    const leaseUntil = new Date(now + this.tuning.leaseMs);
    const claimed = await this.store.transaction(async (tx) => {
      const outbox = tx.collection<OutboxRow>(OUTBOX_COLLECTION);
      const filter: Filter = { _id: { $in: ids }, ...due };
      const rows = await outbox.find(filter, { sort: CLAIM_ORDER });
      if (rows.length === 0) return rows;
      const result = await outbox.updateMany(
        { _id: { $in: rows.map((r) => r._id) }, ...due },
        { $set: { leaseOwner: this.owner, leaseUntil } },
      );
      if (result.modifiedCount !== rows.length) {
        // isolation would have to be broken for this; claim nothing rather than a row someone holds
        throw new Error(
          `claimed ${result.modifiedCount} of ${rows.length} rows read in the same transaction`,
        );
      }
      return rows.map((r) => ({ ...r, leaseOwner: this.owner, leaseUntil }));
    });
    if (this.state !== "running") {
      // stop() began while claiming: hand them back at once
      for (const row of claimed) {
        this.held.set(row._id, row);
        this.settle(row, "release");
      }
      return false;
    }
    for (const row of claimed) {
      this.held.set(row._id, row);
      this.queue.push(row);
    }
    this.pump();
    return more;
  }

  /** Pending, due, and not leased (or its lease has expired). */
  private dueFilter(now: number): Filter {
    const at = new Date(now);
    return {
      status: "pending",
      nextAttemptAt: { $lte: at },
      $or: [{ leaseUntil: { $exists: false } }, { leaseUntil: { $lte: at } }],
    };
  }

  /** Start publishes, oldest first, while slots are free. */
  private pump(): void {
    while (this.state === "running" && this.publishing < this.tuning.publishConcurrency) {
      const row = this.queue.shift();
      if (row === undefined) return;
      this.publishing++;
      void this.publish(row).finally(() => {
        this.publishing--;
        if (this.publishing === 0) for (const done of [...this.publishesDone]) done();
        this.pump();
      });
    }
  }

  private async publish(row: OutboxRow): Promise<void> {
    const message: OutgoingMessage = {
      id: row._id,
      subject: subjectOf(row.type),
      data: encodeEnvelope(envelopeOf(row)),
      ...(row.traceparent === undefined ? {} : { headers: { traceparent: row.traceparent } }),
    };
    try {
      await this.bus.publish(message);
    } catch (err) {
      this.settle(row, this.state === "running" ? { error: errorText(err) } : "release");
      return;
    }
    try {
      await this.hooks.afterPublish?.(row._id);
    } catch (err) {
      this.logger.warn(`[outbox] afterPublish hook failed for ${row._id}: ${errorText(err)}`);
    }
    this.settle(row, "acked");
  }

  private publishesFinished(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.publishesDone.delete(done);
        resolve();
      };
      this.publishesDone.add(done);
    });
  }

  // -- settlement: writing outcomes ---------------------------------------------------------------

  /** Queue the outcome of a held row for the next settlement write. */
  private settle(row: OutboxRow, outcome: "acked" | "release" | { error: string }): void {
    if (!this.held.has(row._id) || this.state === "stopped") return;
    if (outcome === "acked") this.acked.push(row);
    else if (outcome === "release") this.released.push(row);
    else {
      this.counters.publishFailures++;
      this.failed.push({ row, error: outcome.error });
    }
    this.kickSettlement();
  }

  /** Start the settlement writer unless it runs; it restarts itself for outcomes that came in late. */
  private kickSettlement(): void {
    if (this.settling !== undefined) return;
    this.settling = this.settleLoop().finally(() => {
      this.settling = undefined;
      // an outcome queued between the writer's last check and now would otherwise wait forever
      if (this.acked.length + this.failed.length + this.released.length > 0) this.kickSettlement();
    });
  }

  /** Wait until every queued outcome is written (or given up on). */
  private async flushSettlements(): Promise<void> {
    while (this.settling !== undefined) await this.settling;
  }

  /**
   * Writes queued outcomes, in batches, until none is left. Outcomes arriving while a write is in
   * flight ride along with the next one. A write that fails is retried; while stopping, it is given
   * up on after a few tries (leases then expire, and the rows are published again and deduplicated).
   */
  private async settleLoop(): Promise<void> {
    let failuresInARow = 0;
    while (this.acked.length > 0 || this.failed.length > 0 || this.released.length > 0) {
      const acked = this.acked.splice(0, MARK_BATCH);
      const failed = this.failed.splice(0);
      const released = this.released.splice(0);
      let outcome: { published: number; died: Failure[]; retryAt: number | undefined };
      try {
        outcome = await this.writeOutcomes(acked, failed, released);
      } catch (err) {
        failuresInARow++;
        this.acked.unshift(...acked);
        this.failed.unshift(...failed);
        this.released.unshift(...released);
        this.logger.warn(
          `[outbox] relay ${this.owner}: recording ${acked.length + failed.length + released.length} publish outcomes failed (try ${failuresInARow}): ${errorText(err)}`,
        );
        if (this.state !== "running" && failuresInARow >= 3) {
          this.acked = [];
          this.failed = [];
          this.released = [];
          return;
        }
        await delay(Math.min(1_000, 50 * 2 ** failuresInARow));
        continue;
      }
      failuresInARow = 0;
      const now = this.now();
      this.counters.published += outcome.published;
      this.countPublished(outcome.published, now);
      for (const { row, error } of outcome.died) {
        this.counters.dead++;
        this.logger.error(
          `[outbox] relay ${this.owner}: event ${row._id} (${row.type}) is dead after ${this.tuning.maxAttempts} failed publishes; last error: ${error}. Replay it once the cause is fixed.`,
        );
      }
      if (failed.length > outcome.died.length) {
        const first = failed[0] as Failure;
        this.logger.warn(
          `[outbox] relay ${this.owner}: ${failed.length} publishes failed, will retry (e.g. ${first.row._id}: ${first.error})`,
        );
      }
      for (const row of acked) this.held.delete(row._id);
      for (const { row } of failed) this.held.delete(row._id);
      for (const row of released) this.held.delete(row._id);
      if (outcome.retryAt !== undefined) this.signals.wakeAt(outcome.retryAt);
      this.signals.signal("room");
    }
  }

  /** One transaction: mark acknowledged rows published, record failures, release leases. */
  private async writeOutcomes(
    acked: readonly OutboxRow[],
    failed: readonly Failure[],
    released: readonly OutboxRow[],
  ): Promise<{ published: number; died: Failure[]; retryAt: number | undefined }> {
    const now = this.now();
    const at = new Date(now);
    const purgeAt = new Date(now + this.tuning.retentionMs);
    // computed once, outside the body: a re-run body must write the same delays
    const plans = failed.map((failure) => {
      const attempts = failure.row.attempts + 1;
      const dead = attempts >= this.tuning.maxAttempts;
      const retryAt = now + retryDelayMs(attempts, this.tuning.backoffBaseMs, this.tuning.backoffMaxMs);
      return { failure, attempts, dead, retryAt };
    });
    return this.store.transaction(async (tx) => {
      const outbox = tx.collection<OutboxRow>(OUTBOX_COLLECTION);
      let published = 0;
      const died: Failure[] = [];
      let retryAt: number | undefined;
      if (acked.length > 0) {
        // an acknowledgement is proof: it wins even over a row another relay gave up on meanwhile
        const result = await outbox.updateMany(
          { _id: { $in: acked.map((r) => r._id) }, status: { $in: ["pending", "dead"] } },
          {
            $set: { status: "published", publishedAt: at, purgeAt },
            $unset: { leaseOwner: "", leaseUntil: "", deadAt: "" },
          },
        );
        published = result.modifiedCount;
      }
      for (const { failure, attempts, dead, retryAt: nextAt } of plans) {
        const mine = { _id: failure.row._id, status: "pending", leaseOwner: this.owner };
        const update = dead
          ? {
              $set: { status: "dead", attempts, lastError: failure.error, deadAt: at },
              $unset: { leaseOwner: "", leaseUntil: "" },
            }
          : {
              $set: { attempts, lastError: failure.error, nextAttemptAt: new Date(nextAt) },
              $unset: { leaseOwner: "", leaseUntil: "" },
            };
        const result = await outbox.updateOne(mine, update);
        // 0: the lease lapsed and another relay has the row now; its outcome is that relay's to write
        if (result.modifiedCount === 0) continue;
        if (dead) died.push(failure);
        else retryAt = retryAt === undefined ? nextAt : Math.min(retryAt, nextAt);
      }
      if (released.length > 0) {
        await outbox.updateMany(
          { _id: { $in: released.map((r) => r._id) }, status: "pending", leaseOwner: this.owner },
          { $unset: { leaseOwner: "", leaseUntil: "" } },
        );
      }
      return { published, died, retryAt };
    });
  }

  /** Extend the leases of held rows, so a long publish never lets another relay take its row. */
  private async renewLeases(): Promise<void> {
    if (this.renewing || this.held.size === 0 || this.state === "stopped") return;
    this.renewing = true;
    try {
      await this.outbox().updateMany(
        { _id: { $in: [...this.held.keys()] }, status: "pending", leaseOwner: this.owner },
        { $set: { leaseUntil: new Date(this.now() + this.tuning.leaseMs) } },
      );
    } catch (err) {
      this.logger.warn(`[outbox] relay ${this.owner}: renewing leases failed: ${errorText(err)}`);
    } finally {
      this.renewing = false;
    }
  }

  // -- helpers ------------------------------------------------------------------------------------

  private outbox(): Collection<OutboxRow> {
    return this.store.collection<OutboxRow>(OUTBOX_COLLECTION);
  }

  private async ensureIndexes(): Promise<void> {
    // equality on status, then the claim order: MongoDB walks it for "oldest due"; the embedded
    // engine uses its first field to find pending rows without scanning published ones
    await this.store.createIndex(OUTBOX_COLLECTION, { keys: { status: 1, occurredAt: 1, _id: 1 } });
    // published rows carry purgeAt and are removed once it has passed; dead rows have none
    await this.store.createIndex(OUTBOX_COLLECTION, { keys: { purgeAt: 1 }, expireAfterSeconds: 0 });
  }

  private countPublished(n: number, now: number): void {
    this.advanceSeconds(now);
    const slot = Math.floor(now / 1000) % 60;
    this.perSecond[slot] = (this.perSecond[slot] ?? 0) + n;
  }

  private publishedInLastMinute(now: number): number {
    this.advanceSeconds(now);
    return this.perSecond.reduce((sum, n) => sum + n, 0);
  }

  /** Zero the per-second slots of the seconds that passed since the last count. */
  private advanceSeconds(now: number): void {
    const second = Math.floor(now / 1000);
    if (second <= this.perSecondAt) return;
    if (second - this.perSecondAt >= 60) this.perSecond.fill(0);
    else for (let s = this.perSecondAt + 1; s <= second; s++) this.perSecond[s % 60] = 0;
    this.perSecondAt = second;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
