/**
 * The one claim protocol of the lease-claiming loops (lib/work/lease-worker.ts): due documents of a
 * collection are leased to one owner for `leaseMs`, in a transaction, so that two instances on one
 * store never hold the same document at once; a crashed owner's lease runs out and the document is
 * claimed again. Guarantees and failure table: docs/outbox.md ("The lease-claiming worker").
 */
import type { Doc, DocumentStore, Filter } from "../store/store.port";

/** Fields every leased document carries while leased. */
export interface Leased {
  leaseOwner?: string;
  leaseUntil?: Date;
}

/** A claim that finds its candidates taken by others scans again at most this often. */
const MAX_SCANS_PER_CLAIM = 3;

/** A filter: no lease, or an expired one. */
export function notLeased(now: Date): Filter {
  return { $or: [{ leaseUntil: { $exists: false } }, { leaseUntil: { $lte: now } }] };
}

/** The $unset that releases a lease: { leaseOwner: "", leaseUntil: "" }. */
export const RELEASE_LEASE: Readonly<Record<"leaseOwner" | "leaseUntil", "">> = Object.freeze({
  leaseOwner: "",
  leaseUntil: "",
});

/** What a loop claims: the collection, what is due, in which order, for how long. */
export interface LeaseClaim {
  collection: string;
  /** What is due at `now` (without the lease condition, which claimWithLease adds). */
  due(now: Date): Filter;
  sort: Record<string, 1 | -1>;
  leaseMs: number;
  /** Extra fields set with the lease (e.g. the payment charger moves nextAttemptAt to the lease's end). */
  alsoSet?(leaseUntil: Date): Record<string, unknown>;
}

/**
 * Ids of due documents found by one scan and not yet tried, kept between claims. A scan costs about
 * as much for ten ids as for a thousand (the store reads the whole due set to sort it), so with a
 * backlog one scan of `limit × batches` ids serves that many claims. The ids are re-checked in the
 * claim's transaction: one taken by another owner meanwhile, or no longer due, is skipped.
 */
export class ClaimCandidates {
  /** Ids still to try, in the claim order. */
  ids: string[] = [];
  /** The scan that found `ids` stopped at its limit: more may be due behind them. */
  full = false;

  constructor(readonly batches: number) {
    if (!Number.isInteger(batches) || batches < 1) {
      throw new RangeError(`ClaimCandidates batches must be an integer ≥ 1, got ${batches}`);
    }
  }

  /** Forget every candidate (a new start, or after a change the scan must see). */
  clear(): void {
    this.ids = [];
    this.full = false;
  }
}

export interface ClaimArgs {
  limit: number;
  owner: string;
  now: Date;
  /** Ids not to claim (in flight here: a lease that lapsed while its item was being processed). */
  exclude?: ReadonlySet<string>;
  /** Keep a scan's surplus ids for the next claims (see ClaimCandidates). Default: scan per claim. */
  candidates?: ClaimCandidates;
}

/**
 * Read the ids of up to `limit` due, unleased documents outside a transaction (skipping `exclude`),
 * then in one transaction re-read them with the due+unleased condition repeated and lease them all
 * (updateMany guarded by the same condition; modifiedCount must equal what was read, else throw).
 * Returns the leased documents as stored after the update.
 *
 * A document claimed meanwhile by another owner is skipped; two claims of the same document in
 * flight at once conflict in the store (embedded: serializable validation; MongoDB: write
 * conflict), and the loser's transaction re-reads without it. Fewer than `limit` documents come
 * back only when fewer were found due.
 */
export async function claimWithLease<T extends Doc & Leased>(
  store: DocumentStore,
  spec: LeaseClaim,
  args: ClaimArgs,
): Promise<T[]> {
  const { limit, now, candidates } = args;
  if (limit <= 0) return [];
  const exclude = args.exclude ?? new Set<string>();
  const claimable = claimableFilter(spec, now);
  if (candidates === undefined) {
    // over-read by the excluded ids, which may be among the first found
    const found = await store
      .collection<T>(spec.collection)
      .find(claimable, { sort: spec.sort, limit: limit + exclude.size, projection: { _id: 1 } });
    const ids = found.map((doc) => doc._id).filter((id) => !exclude.has(id));
    return leaseIds<T>(store, spec, claimable, ids.slice(0, limit), args);
  }
  const claimed: T[] = [];
  let scans = 0;
  while (claimed.length < limit) {
    if (candidates.ids.length === 0) {
      // one fresh scan per call, or a few more while each comes back full and was taken by others
      if (scans > 0 && (!candidates.full || scans >= MAX_SCANS_PER_CLAIM)) break;
      const scanLimit = limit * candidates.batches;
      const found = await store
        .collection<T>(spec.collection)
        .find(claimable, { sort: spec.sort, limit: scanLimit, projection: { _id: 1 } });
      candidates.ids = found.map((doc) => doc._id);
      candidates.full = found.length === scanLimit;
      scans++;
      if (candidates.ids.length === 0) break;
    }
    const taken = new Set(claimed.map((doc) => doc._id));
    const ids = candidates.ids
      .splice(0, limit - claimed.length)
      .filter((id) => !exclude.has(id) && !taken.has(id));
    if (ids.length === 0) continue;
    claimed.push(...(await leaseIds<T>(store, spec, claimable, ids, args)));
  }
  return claimed;
}

/**
 * Extend the leases `owner` still holds on `ids` to `now + leaseMs` (with `alsoSet`), for items
 * whose processing outlives a lease. A lease that lapsed and was taken by another owner is left
 * alone. Resolves with how many leases were extended.
 */
export async function renewLeases(
  store: DocumentStore,
  spec: LeaseClaim,
  args: { ids: Iterable<string>; owner: string; now: Date },
): Promise<number> {
  const ids = [...args.ids];
  if (ids.length === 0) return 0;
  const leaseUntil = new Date(args.now.getTime() + spec.leaseMs);
  const result = await store
    .collection(spec.collection)
    .updateMany(
      { _id: { $in: ids }, leaseOwner: args.owner },
      { $set: { ...spec.alsoSet?.(leaseUntil), leaseUntil } },
    );
  return result.modifiedCount;
}

/** Due at `now`, and not leased (or the lease has run out). */
function claimableFilter(spec: LeaseClaim, now: Date): Filter {
  const due = spec.due(now);
  // under $and, so that a `$or` of the due condition stays as it is
  const and = Array.isArray(due.$and) ? (due.$and as Filter[]) : [];
  return { ...due, $and: [...and, notLeased(now)] };
}

/** Lease `ids` (re-checked as `claimable`) in one transaction; the leased documents, in `sort` order. */
async function leaseIds<T extends Doc & Leased>(
  store: DocumentStore,
  spec: LeaseClaim,
  claimable: Filter,
  ids: readonly string[],
  args: ClaimArgs,
): Promise<T[]> {
  if (ids.length === 0) return [];
  const leaseUntil = new Date(args.now.getTime() + spec.leaseMs);
  const extra = spec.alsoSet?.(leaseUntil) ?? {};
  const set = { ...extra, leaseOwner: args.owner, leaseUntil };
  // a dotted path in alsoSet changes a nested field: read back what was stored rather than guess
  const readBack = Object.keys(extra).some((key) => key.includes("."));
  return store.transaction(async (tx) => {
    const collection = tx.collection<T>(spec.collection);
    const filter: Filter = { ...claimable, _id: { $in: ids } };
    const docs = await collection.find(filter, { sort: spec.sort });
    if (docs.length === 0) return docs;
    const leased = docs.map((doc) => doc._id);
    const result = await collection.updateMany({ ...claimable, _id: { $in: leased } }, { $set: set });
    if (result.modifiedCount !== docs.length) {
      // isolation would have to be broken for this; claim nothing rather than what someone holds
      throw new Error(
        `leased ${result.modifiedCount} of ${docs.length} ${spec.collection} documents read in one transaction`,
      );
    }
    if (readBack) return collection.find({ _id: { $in: leased } }, { sort: spec.sort });
    return docs.map((doc) => ({ ...doc, ...set }));
  });
}
