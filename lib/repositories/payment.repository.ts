/**
 * The payments store: the only code that reads or writes the `payments` collection (and the
 * provider events already applied, `webhook_events`). It loads documents as `Payment` aggregates
 * (models/payment.ts) and saves an aggregate guarded by the version it was loaded at — 0 documents
 * modified means someone else changed it meanwhile: `PaymentConflictError` — together with the
 * events its transition raised, through the outbox, in the caller's transaction.
 *
 * Leases (the charger's claim on a payment while it calls the provider) live beside the aggregate,
 * not in it: a claim sets `leaseOwner`/`leaseUntil` and moves `nextAttemptAt` to the lease's end, so
 * a crashed instance's payments fall due again when its lease runs out. A save by the lease holder
 * (`heldBy`) is refused when the lease was lost; a save that changes the status ends the lease (the
 * work it was taken for is over), as does one that asks for it (`lease: "release"`).
 */
import type { Clock } from "../clock";
import { OrdermeshError } from "../errors";
import { publishRaised, type OutboxTransaction } from "../outbox/outbox";
import {
  ClaimCandidates,
  RELEASE_LEASE,
  claimWithLease,
  type LeaseClaim,
  type Leased,
} from "../work/lease-claim";
import type { Collection, Doc, DocumentStore, Filter, Transaction, Update } from "../store/store.port";
import {
  ACTIVE_PAYMENT_STATUSES,
  PAYMENT_STATUSES,
  Payment,
  type PaymentEvent,
  type PaymentState,
  type PaymentStatus,
} from "../../models/payment";

/** Payments, one per order. */
export const PAYMENTS_COLLECTION = "payments";
/** Provider event ids already applied (replay protection). */
export const WEBHOOK_EVENTS_COLLECTION = "webhook_events";

/** A stored payment: the aggregate's state (`_id` = its id, `nextAttemptAt` a Date) and its lease. */
interface PaymentDoc extends Doc, Leased, Omit<PaymentState, "id" | "nextAttemptAt" | "version"> {
  nextAttemptAt?: Date;
  /** Absent on payments stored before versions were kept: read as 0. */
  version?: number;
}

interface WebhookEventDoc extends Doc {
  type: string;
  receivedAt: Date;
  paymentId: string | null;
}

/** Fields of the state that may be absent; a save removes those the aggregate no longer has. */
const OPTIONAL_FIELDS = [
  "providerPaymentId",
  "declineCode",
  "failureReason",
  "refundId",
  "chargeInFlight",
  "chargeUncertain",
  "pollAttempts",
  "refundRejections",
  "nextAttemptAt",
  "lastError",
  "traceparent",
] as const satisfies readonly (keyof PaymentState)[];

/** The payment changed since it was loaded (or its lease was lost): load it again and decide again. */
export class PaymentConflictError extends OrdermeshError {
  constructor(paymentId: string, reason: string) {
    super("PAYMENT_CONFLICT", `payment ${paymentId} was not saved: ${reason}`, {
      retryable: true,
      data: { paymentId },
    });
  }
}

export interface SavePaymentOptions {
  /** Save only while this lease owner holds the payment (the charger recording its own call). */
  heldBy?: string;
  /** End the lease with this save; default: only when the status changed. */
  lease?: "release" | "keep";
}

export interface PaymentRepositoryOptions {
  /** How long a claim holds a payment (must exceed the provider's timeout). */
  leaseMs: number;
}

/** What was loaded, to guard the save and to tell what changed. */
interface Loaded {
  version: number;
  status: PaymentStatus;
  json: string;
}

export class PaymentRepository {
  /** Aggregates this repository handed out, with what they were loaded as. */
  private readonly loaded = new WeakMap<Payment, Loaded>();
  private readonly claim: LeaseClaim;
  /** Due ids found by one scan, kept for the next claims while there is a backlog. */
  private readonly candidates = new ClaimCandidates(4);

  constructor(
    private readonly store: DocumentStore,
    private readonly clock: Clock,
    options: PaymentRepositoryOptions,
  ) {
    this.claim = {
      collection: PAYMENTS_COLLECTION,
      due: (now) => ({ status: { $in: ACTIVE_PAYMENT_STATUSES }, nextAttemptAt: { $lte: now } }),
      sort: { nextAttemptAt: 1 },
      leaseMs: options.leaseMs,
      // due again when the lease runs out: a crashed instance's payment is taken over then
      alsoSet: (leaseUntil) => ({ nextAttemptAt: leaseUntil }),
    };
  }

  /** Create the indexes (idempotent). */
  async prepare(webhookRetentionDays: number): Promise<void> {
    await this.store.createIndex(PAYMENTS_COLLECTION, {
      name: "order_unique",
      keys: { orderId: 1 },
      unique: true,
    });
    await this.store.createIndex(PAYMENTS_COLLECTION, {
      name: "status_due",
      keys: { status: 1, nextAttemptAt: 1 },
    });
    await this.store.createIndex(PAYMENTS_COLLECTION, {
      name: "provider_payment",
      keys: { providerPaymentId: 1 },
    });
    await this.store.createIndex(WEBHOOK_EVENTS_COLLECTION, {
      name: "received_ttl",
      keys: { receivedAt: 1 },
      expireAfterSeconds: webhookRetentionDays * 24 * 60 * 60,
    });
  }

  // ── in a transaction ─────────────────────────────────────────────────────────────────────────

  async findById(tx: Transaction, id: string): Promise<Payment | null> {
    return this.hydrate(await this.payments(tx).findOne({ _id: id }));
  }

  async findByOrder(tx: Transaction, orderId: string): Promise<Payment | null> {
    return this.hydrate(await this.payments(tx).findOne({ orderId }));
  }

  async findByProviderPaymentId(tx: Transaction, providerPaymentId: string): Promise<Payment | null> {
    return this.hydrate(await this.payments(tx).findOne({ providerPaymentId }));
  }

  /** Insert a new payment with the events it raised. */
  async add(tx: OutboxTransaction, payment: Payment, events: readonly PaymentEvent[] = []): Promise<void> {
    const state = payment.toState();
    await this.payments(tx).insertOne(docOf(state));
    this.remember(payment, state);
    await publishRaised(tx, { type: "payment", id: payment.id }, events);
  }

  /**
   * Save `payment` (loaded by this repository) with the events its transition raised, guarded by
   * the version it was loaded at. Unchanged and nothing raised: nothing is written.
   */
  async save(
    tx: OutboxTransaction,
    payment: Payment,
    events: readonly PaymentEvent[],
    options: SavePaymentOptions = {},
  ): Promise<void> {
    await this.write(tx, payment, options);
    await publishRaised(tx, { type: "payment", id: payment.id }, events);
  }

  /**
   * Save, outside any transaction, a transition that raised no events (the charger marking the
   * charge it is about to send). Guarded like `save`.
   */
  async saveAlone(payment: Payment, options: SavePaymentOptions = {}): Promise<void> {
    await this.write(this.store, payment, options);
  }

  /**
   * Load payment `id`, let `decide` run a transition on it, and save it with the events raised.
   * Returns the payment as saved, or null when there is none.
   */
  async update(
    tx: OutboxTransaction,
    id: string,
    decide: (payment: Payment) => PaymentEvent[],
    options: SavePaymentOptions = {},
  ): Promise<Payment | null> {
    const payment = await this.findById(tx, id);
    if (payment === null) return null;
    await this.save(tx, payment, decide(payment), options);
    return payment;
  }

  /** Whether provider event `eventId` was applied already; if not, note it as applied now. */
  async noteProviderEvent(
    tx: Transaction,
    event: { id: string; type: string },
    paymentId: string | null,
  ): Promise<"new" | "seen"> {
    const events = tx.collection<WebhookEventDoc>(WEBHOOK_EVENTS_COLLECTION);
    if ((await events.findOne({ _id: event.id })) !== null) return "seen";
    await events.insertOne({
      _id: event.id,
      type: event.type,
      receivedAt: new Date(this.clock.now()),
      paymentId,
    });
    return "new";
  }

  // ── outside transactions ─────────────────────────────────────────────────────────────────────

  /** The payments of an order, oldest first. */
  async listByOrder(orderId: string): Promise<Payment[]> {
    const docs = await this.payments(this.store).find({ orderId }, { sort: { createdAt: 1 } });
    return docs.map((doc) => this.hydrate(doc) as Payment);
  }

  async countByStatus(): Promise<Record<PaymentStatus, number>> {
    const counts = await Promise.all(
      PAYMENT_STATUSES.map(
        async (status) => [status, await this.payments(this.store).countDocuments({ status })] as const,
      ),
    );
    return Object.fromEntries(counts) as Record<PaymentStatus, number>;
  }

  /** Lease up to `limit` due payments to `owner`, earliest due first, none of `exclude` (lib/work/lease-claim.ts). */
  async claimDue(limit: number, owner: string, exclude: ReadonlySet<string> = new Set()): Promise<Payment[]> {
    const docs = await claimWithLease<PaymentDoc>(this.store, this.claim, {
      limit,
      owner,
      now: new Date(this.clock.now()),
      exclude,
      candidates: this.candidates,
    });
    return docs.map((doc) => this.hydrate(doc) as Payment);
  }

  // ── internals ────────────────────────────────────────────────────────────────────────────────

  private payments(scope: Transaction | DocumentStore): Collection<PaymentDoc> {
    return scope.collection<PaymentDoc>(PAYMENTS_COLLECTION);
  }

  /** The guarded write of `save` and `saveAlone`. */
  private async write(
    scope: Transaction | DocumentStore,
    payment: Payment,
    options: SavePaymentOptions,
  ): Promise<void> {
    const loaded = this.loaded.get(payment);
    if (loaded === undefined) throw new Error(`payment ${payment.id} was not loaded by this repository`);
    const state = payment.toState();
    const changed = JSON.stringify(state) !== loaded.json;
    if (changed || options.lease === "release") {
      const release =
        options.lease === "release" || (options.lease !== "keep" && state.status !== loaded.status);
      const filter: Filter = { _id: state.id, ...versionIs(loaded.version) };
      if (options.heldBy !== undefined) filter.leaseOwner = options.heldBy;
      const result = await this.payments(scope).updateOne(
        filter,
        updateOf(state, loaded.version + 1, release),
      );
      if (result.modifiedCount !== 1)
        throw new PaymentConflictError(
          state.id,
          options.heldBy === undefined
            ? "changed meanwhile"
            : `changed meanwhile, or no longer held by ${options.heldBy}`,
        );
      this.remember(payment, { ...state, version: loaded.version + 1 });
    }
  }

  private hydrate(doc: PaymentDoc | null): Payment | null {
    if (doc === null) return null;
    const state = stateOf(doc);
    const payment = Payment.fromState(state);
    this.remember(payment, state);
    return payment;
  }

  private remember(payment: Payment, state: PaymentState): void {
    this.loaded.set(payment, { version: state.version, status: state.status, json: JSON.stringify(state) });
  }
}

function stateOf(doc: PaymentDoc): PaymentState {
  const { _id, nextAttemptAt, version, leaseOwner: _owner, leaseUntil: _until, ...rest } = doc;
  return {
    ...rest,
    id: _id,
    ...(nextAttemptAt === undefined ? {} : { nextAttemptAt: nextAttemptAt.toISOString() }),
    version: version ?? 0,
  } as PaymentState;
}

function docOf(state: PaymentState): PaymentDoc {
  const { id, nextAttemptAt, ...rest } = state;
  return {
    ...rest,
    _id: id,
    ...(nextAttemptAt === undefined ? {} : { nextAttemptAt: new Date(nextAttemptAt) }),
  };
}

function updateOf(state: PaymentState, version: number, releaseLease: boolean): Update {
  const { _id, ...fields } = docOf(state);
  const unset: string[] = OPTIONAL_FIELDS.filter((field) => state[field] === undefined);
  if (releaseLease) unset.push(...Object.keys(RELEASE_LEASE));
  return {
    $set: { ...fields, version },
    ...(unset.length === 0 ? {} : { $unset: Object.fromEntries(unset.map((field) => [field, ""])) }),
  };
}

/** The version guard; payments stored before versions were kept have none. */
function versionIs(version: number): Filter {
  return version === 0 ? { $or: [{ version: 0 }, { version: { $exists: false } }] } : { version };
}
