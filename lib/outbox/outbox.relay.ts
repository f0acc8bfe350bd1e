/**
 * The outbox relay: publishes a store's pending outbox rows to the event bus, at least once.
 *
 * - Runs on the shared lease-claiming worker (lib/work/lease-worker.ts) with the one claim protocol
 *   (`claimWithLease`, lib/work/lease-claim.ts): due rows are leased in a transaction, so two relays
 *   on one store never hold the same row at once; a crashed relay's lease expires and is taken over.
 *   Leases of rows still held are renewed, so a slow publish never lets another relay take its row.
 * - Sends claimed rows in `occurredAt` order with at most `publishConcurrency` publishes at once,
 *   and marks a row `published` only after the bus acknowledged it (marks are written in batches).
 * - A failed publish is retried with full-jitter exponential backoff (models/backoff.ts); at
 *   `maxAttempts` the row becomes `dead`: kept, counted, logged, replayable, never in the way of the
 *   rows behind it.
 *
 * Guarantees, failure table and tuning: docs/outbox.md.
 */
import { systemClock, type Clock } from "../clock";
import { subjectOf } from "../../models/events";
import { retryDelayMs } from "../../models/backoff";
import type { EventBus, OutgoingMessage } from "../bus/bus.port";
import type { Collection, DocumentStore } from "../store/store.port";
import {
  ClaimCandidates,
  RELEASE_LEASE,
  claimWithLease,
  renewLeases,
  type LeaseClaim,
} from "../work/lease-claim";
import { LeaseWorker } from "../work/lease-worker";
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
  /** Where the relay reads the time (default: the real time); tests move a ManualClock. */
  clock?: Clock;
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

/** An outcome waiting to be written, and the publish that waits for it. */
interface Pending<T> {
  item: T;
  written: () => void;
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
  private readonly clock: Clock;
  private readonly hooks: OutboxRelayHooks;
  /** What the relay claims: pending rows due now, oldest first, leased for `leaseMs`. */
  private readonly claimSpec: LeaseClaim;
  /** Ids of due rows found by the last scan and not yet tried (one scan serves `SCAN_BATCHES` claims). */
  private readonly candidates = new ClaimCandidates(SCAN_BATCHES);
  /** The claim loop of the current run; a new one per start. */
  private worker: LeaseWorker<OutboxRow> | undefined;
  private publishing = 0;
  /** Claimed rows waiting for a publish slot, oldest first: told true (publish) or false (stopping: hand back). */
  private readonly slotWaiters: ((go: boolean) => void)[] = [];
  /** Results waiting to be written: acknowledged rows, failed rows, rows to hand back untouched. */
  private acked: Pending<OutboxRow>[] = [];
  private failed: Pending<Failure>[] = [];
  private released: Pending<OutboxRow>[] = [];
  private settling: Promise<void> | undefined;

  private state: "new" | "running" | "stopping" | "stopped" = "new";
  private stopping: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  /** Stops the store's insert watch (MongoDB change stream), when the store has one. */
  private unwatch: (() => Promise<void>) | undefined;

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
    this.clock = options.clock ?? systemClock;
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
    this.claimSpec = {
      collection: OUTBOX_COLLECTION,
      due: (now) => ({ status: "pending", nextAttemptAt: { $lte: now } }),
      sort: CLAIM_ORDER,
      leaseMs: tuning.leaseMs,
    };
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
    this.candidates.clear();
    const { batchSize, publishConcurrency, leaseMs, pollIntervalMs, stopTimeoutMs } = this.tuning;
    const worker = new LeaseWorker<OutboxRow>({
      name: "outbox relay",
      owner: this.owner,
      clock: this.clock,
      logger: this.logger,
      // rows held: a claim's worth waiting for a publish slot, plus those publishing or being marked
      maxInFlight: batchSize + publishConcurrency,
      refillBatch: Math.ceil(batchSize / 2),
      claimBatch: batchSize,
      pollIntervalMs,
      stopTimeoutMs,
      key: (row) => row._id,
      claim: (limit, held) =>
        claimWithLease<OutboxRow>(this.store, this.claimSpec, {
          limit,
          owner: this.owner,
          now: new Date(this.clock.now()),
          exclude: held,
          candidates: this.candidates,
        }),
      process: (row) => this.relayRow(row),
      renew: {
        everyMs: Math.max(1, Math.floor(leaseMs / 3)),
        run: async (held) => {
          await renewLeases(this.store, this.claimSpec, {
            ids: held,
            owner: this.owner,
            now: new Date(this.clock.now()),
          });
        },
      },
    });
    this.worker = worker;
    worker.start();
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
    this.worker?.wake();
  }

  /**
   * Resolves the next time the relay is idle: no row held (every outcome written) and its latest
   * claim found nothing due. At once when it is not running.
   */
  idle(): Promise<void> {
    return this.worker?.idle() ?? Promise.resolve();
  }

  private async shutDown(): Promise<void> {
    this.state = "stopping";
    const unwatch = this.unwatch;
    this.unwatch = undefined;
    await unwatch?.().catch(() => undefined);
    // never sent: back to the pool as they were
    for (const go of this.slotWaiters.splice(0)) go(false);
    // the worker claims no more and waits ≤ stopTimeoutMs for the rows held (publish, then mark)
    await this.worker?.stop();
    await this.flushSettlements();
    // a publish that ends from now on changes nothing: its lease expires and the row is sent again
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
    const now = this.clock.now();
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
        $set: { status: "pending", attempts: 0, nextAttemptAt: new Date(this.clock.now()) },
        $unset: { deadAt: "", ...RELEASE_LEASE },
      },
    );
    if (result.modifiedCount === 0) return false;
    this.logger.info(`[outbox] dead row ${id} replayed`);
    this.wake();
    return true;
  }

  // -- one row: publish, then record the outcome -----------------------------------------------------

  /**
   * Publish one claimed row once a publish slot is free (rows take slots in claim order: oldest
   * first), then wait until its outcome is written. While stopping, a row not yet sent is handed
   * back untouched.
   */
  private async relayRow(row: OutboxRow): Promise<void> {
    if (!(await this.publishSlot())) {
      await this.settle(row, "release");
      return;
    }
    let outcome: "acked" | "release" | { error: string };
    try {
      outcome = await this.publish(row);
    } finally {
      this.freePublishSlot();
    }
    await this.settle(row, outcome);
  }

  private async publish(row: OutboxRow): Promise<"acked" | "release" | { error: string }> {
    const message: OutgoingMessage = {
      id: row._id,
      subject: subjectOf(row.type),
      data: encodeEnvelope(envelopeOf(row)),
      ...(row.traceparent === undefined ? {} : { headers: { traceparent: row.traceparent } }),
    };
    try {
      await this.bus.publish(message);
    } catch (err) {
      return this.state === "running" ? { error: errorText(err) } : "release";
    }
    try {
      await this.hooks.afterPublish?.(row._id);
    } catch (err) {
      this.logger.warn(`[outbox] afterPublish hook failed for ${row._id}: ${errorText(err)}`);
    }
    return "acked";
  }

  /** Resolves true with a publish slot taken, or false when the relay stops first. */
  private publishSlot(): Promise<boolean> {
    if (this.state !== "running") return Promise.resolve(false);
    if (this.publishing < this.tuning.publishConcurrency && this.slotWaiters.length === 0) {
      this.publishing++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  /** Hand the slot to the oldest waiting row, or free it. */
  private freePublishSlot(): void {
    const next = this.state === "running" ? this.slotWaiters.shift() : undefined;
    if (next !== undefined) next(true);
    else this.publishing--;
  }

  // -- settlement: writing outcomes ---------------------------------------------------------------

  /** Queue the outcome of a held row for the next settlement write; resolves once it is written (or given up on). */
  private settle(row: OutboxRow, outcome: "acked" | "release" | { error: string }): Promise<void> {
    if (this.state === "stopped") return Promise.resolve();
    return new Promise((written) => {
      if (outcome === "acked") this.acked.push({ item: row, written });
      else if (outcome === "release") this.released.push({ item: row, written });
      else {
        this.counters.publishFailures++;
        this.failed.push({ item: { row, error: outcome.error }, written });
      }
      this.kickSettlement();
    });
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
      const batch = [...acked, ...failed, ...released];
      let outcome: { published: number; died: Failure[]; retryAt: number | undefined };
      try {
        outcome = await this.writeOutcomes(
          acked.map((p) => p.item),
          failed.map((p) => p.item),
          released.map((p) => p.item),
        );
      } catch (err) {
        failuresInARow++;
        this.acked.unshift(...acked);
        this.failed.unshift(...failed);
        this.released.unshift(...released);
        this.logger.warn(
          `[outbox] relay ${this.owner}: recording ${batch.length} publish outcomes failed (try ${failuresInARow}): ${errorText(err)}`,
        );
        if (this.state !== "running" && failuresInARow >= 3) {
          const abandoned = [...this.acked, ...this.failed, ...this.released];
          this.acked = [];
          this.failed = [];
          this.released = [];
          for (const pending of abandoned) pending.written();
          return;
        }
        await delay(Math.min(1_000, 50 * 2 ** failuresInARow));
        continue;
      }
      failuresInARow = 0;
      const now = this.clock.now();
      this.counters.published += outcome.published;
      this.countPublished(outcome.published, now);
      for (const { row, error } of outcome.died) {
        this.counters.dead++;
        this.logger.error(
          `[outbox] relay ${this.owner}: event ${row._id} (${row.type}) is dead after ${this.tuning.maxAttempts} failed publishes; last error: ${error}. Replay it once the cause is fixed.`,
        );
      }
      if (failed.length > outcome.died.length) {
        const first = (failed[0] as Pending<Failure>).item;
        this.logger.warn(
          `[outbox] relay ${this.owner}: ${failed.length} publishes failed, will retry (e.g. ${first.row._id}: ${first.error})`,
        );
      }
      if (outcome.retryAt !== undefined) this.worker?.wakeAt(outcome.retryAt);
      // the rows leave the worker's hands: their slots free up for the next claim
      for (const pending of batch) pending.written();
    }
  }

  /** One transaction: mark acknowledged rows published, record failures, release leases. */
  private async writeOutcomes(
    acked: readonly OutboxRow[],
    failed: readonly Failure[],
    released: readonly OutboxRow[],
  ): Promise<{ published: number; died: Failure[]; retryAt: number | undefined }> {
    const now = this.clock.now();
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
            $unset: { ...RELEASE_LEASE, deadAt: "" },
          },
        );
        published = result.modifiedCount;
      }
      for (const { failure, attempts, dead, retryAt: nextAt } of plans) {
        const mine = { _id: failure.row._id, status: "pending", leaseOwner: this.owner };
        const update = dead
          ? {
              $set: { status: "dead", attempts, lastError: failure.error, deadAt: at },
              $unset: RELEASE_LEASE,
            }
          : {
              $set: { attempts, lastError: failure.error, nextAttemptAt: new Date(nextAt) },
              $unset: RELEASE_LEASE,
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
          { $unset: RELEASE_LEASE },
        );
      }
      return { published, died, retryAt };
    });
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
