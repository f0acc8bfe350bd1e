/**
 * payments service: charges the payment provider for each order, learns the outcome from signed
 * webhooks (a poller recovers lost ones), refunds the payments of cancelled orders, and reports
 * `payment.captured` | `payment.failed` | `payment.refunded` through the outbox. docs/payments.md.
 *
 * Payment states: `pending` (not sent yet) → `processing` (accepted, awaiting confirmation) →
 * `captured` | `failed`; `captured` → `refunding` → `refunded`; `cancelled` (order cancelled before
 * any charge: never charged).
 *
 * - The provider is never called inside a transaction (a transaction body may run again). Inbox
 *   handlers and the webhook only write state; a charger loop in every instance claims due
 *   payments with a lease (`leaseOwner`, `leaseUntil`; a claim also moves `nextAttemptAt` to the
 *   lease's end, so a crashed instance's payments fall due again when its lease runs out), calls
 *   the provider outside any transaction, then records the outcome in one transaction with its
 *   event. The provider's idempotency key is the payment id (refunds: `refund_<paymentId>`), so a
 *   call retried after a timeout or a crash charges once.
 * - Waking the charger: an inbox commit wakes only the outbox relay, and only when events were
 *   published, so the charger polls (`chargerPollIntervalMs`, 250 ms); the paths this service
 *   controls (webhook, charger outcomes) wake it right after their commit.
 * - A capture on a payment whose order was cancelled meanwhile (`cancelRequested`) is recorded as
 *   `captured` and moved to `refunding` in the same transaction: money for a cancelled order never
 *   stays.
 *
 * Settings (tests shorten them): `chargerPollIntervalMs` (250), `chargerConcurrency` (16 calls in
 * flight per instance), `leaseMs` (15 000: how long a crashed instance's payments wait to be taken over; must exceed the provider timeout), `backoffBaseMs` (500)
 * and `backoffMaxMs` (30 000) for retries (full jitter), `webhookWaitMs` (5 000: how long a
 * `processing` payment waits for its webhook before the first poll), `pollBackoffMaxMs` (60 000),
 * `pspTimeoutMs` (4 000), `pspBreaker` (overrides of lib/psp/psp.http.adapter.ts `pspBreakerOptions`),
 * `webhookToleranceSeconds` (300), `webhookRetentionDays` (30).
 */
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import type { Breaker, BreakerOptions } from "../lib/breaker";
import { ConfigError } from "../lib/errors";
import { infrastructureOf } from "../lib/infrastructure";
import type { OutboxTransaction } from "../lib/outbox/outbox";
import { retryDelayMs } from "../models/backoff";
import { canSee, principalOf } from "../lib/principal";
import { PspHttpAdapter, pspBreakerOptions } from "../lib/psp/psp.http.adapter";
import type { ChargeResult, PaymentIntent, PaymentProvider, PspEvent, Refund } from "../lib/psp/psp.port";
import { verifySignature } from "../lib/psp/psp.signature";
import type { Collection, Doc, Transaction, Update } from "../lib/store/store.port";
import { BreakerMixin, type BreakerThis } from "../mixins/breaker.mixin";
import { InboxMixin, type WithSubscriptions } from "../mixins/inbox.mixin";
import { InfrastructureMixin, type InfrastructureThis } from "../mixins/infrastructure.mixin";
import { OutboxMixin, type OutboxThis } from "../mixins/outbox.mixin";
import { uuidv7 } from "../models/ids";
import type { Money } from "../models/money";
import type { PayloadOf } from "../models/events";
import { PAYMENT_STATUSES, type PaymentStatus } from "../models/payment";

const { MoleculerClientError } = Errors;

/** Payments, one per order. */
const PAYMENTS = "payments";
/** Provider event ids already applied (replay protection). */
const WEBHOOK_EVENTS = "webhook_events";

/** States in which the charger has work to do (charge, poll, refund). */
const ACTIVE_STATUSES: PaymentStatus[] = ["pending", "processing", "refunding"];
/** Placeholder payment method of a payment made for an order cancelled before it was created. */
const NO_PAYMENT_METHOD = "none";
const LEASE_FIELDS = ["leaseOwner", "leaseUntil"] as const;

interface HistoryEntry {
  status: PaymentStatus;
  at: string;
}

/** A stored payment. `_id` is the payment id and the provider's idempotency key. */
interface PaymentDoc extends Doc {
  orderId: string;
  customerId: string;
  amount: Money;
  paymentMethod: string;
  status: PaymentStatus;
  providerPaymentId?: string;
  declineCode?: string;
  failureReason?: string;
  refundId?: string;
  /** The order was cancelled while a charge may be under way: refund whatever capture lands. */
  cancelRequested: boolean;
  /** A charge attempt is under way, or ended without an answer (timeout, 5xx, crash): the provider may hold an intent. */
  chargeUncertain?: boolean;
  /** Failed provider calls in the current state. */
  attempts: number;
  /** Polls of a `processing` payment so far. */
  pollAttempts?: number;
  /** When the charger next looks at it; unset in final states. */
  nextAttemptAt?: Date;
  lastError?: string;
  leaseOwner?: string;
  leaseUntil?: Date;
  /** Trace context of the `order.created` that made it; travels with its events. */
  traceparent?: string;
  history: HistoryEntry[];
  createdAt: string;
  updatedAt: string;
}

interface WebhookEventDoc extends Doc {
  type: string;
  receivedAt: Date;
  paymentId: string | null;
}

/** A payment as callers see it. */
export interface PaymentView {
  id: string;
  orderId: string;
  status: PaymentStatus;
  amount: Money;
  paymentMethod: string;
  providerPaymentId?: string;
  declineCode?: string;
  refundId?: string;
  createdAt: string;
  updatedAt: string;
  history: HistoryEntry[];
}

/** What `payments.stats` answers. */
export interface PaymentStats {
  byStatus: Record<PaymentStatus, number>;
  total: number;
  /** Provider calls this instance has in flight. */
  inFlight: number;
  breaker: string;
}

/** What `payments.webhook` answers (always 2xx once the signature holds). */
export interface WebhookResult {
  received: true;
  duplicate?: true;
  ignored?: true;
}

interface WebhookParams {
  body: string;
  signature?: string;
}

interface PaymentsSettings {
  chargerPollIntervalMs: number;
  chargerConcurrency: number;
  leaseMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  webhookWaitMs: number;
  pollBackoffMaxMs: number;
  pspTimeoutMs: number;
  pspBreaker: Partial<Omit<BreakerOptions, "name" | "onStateChange" | "isFailure">>;
  webhookToleranceSeconds: number;
  webhookRetentionDays: number;
}

interface PaymentsVars {
  psp: PaymentProvider;
  pspBreaker: Breaker;
  webhookSecrets: string[];
  charger: ChargerLoop | undefined;
  /** This instance's lease owner id. */
  chargerOwner: string;
}

/** A change of one payment inside a transaction; `history` lists the states it passes through. */
interface PaymentChange {
  set: Partial<PaymentDoc>;
  unset?: readonly string[];
  history?: PaymentStatus[];
}

interface PaymentsMethods {
  payments(): Collection<PaymentDoc>;
  claimDue(limit: number): Promise<PaymentDoc[]>;
  work(doc: PaymentDoc): Promise<void>;
  charge(doc: PaymentDoc): Promise<void>;
  poll(doc: PaymentDoc): Promise<void>;
  refund(doc: PaymentDoc): Promise<void>;
  recordOutcome(
    doc: PaymentDoc,
    expected: PaymentStatus,
    apply: (tx: OutboxTransaction, current: PaymentDoc, now: Date) => Promise<void>,
  ): Promise<void>;
  retryLater(
    tx: Transaction,
    current: PaymentDoc,
    error: unknown,
    now: Date,
    extra?: Partial<PaymentDoc>,
  ): Promise<void>;
  receiveWebhook(event: PspEvent, ctx: Context): Promise<WebhookResult>;
}

type PaymentsThis = Service<PaymentsSettings> &
  InfrastructureThis &
  OutboxThis &
  BreakerThis &
  PaymentsVars &
  PaymentsMethods;

const PaymentsService: ServiceSchema<PaymentsSettings, PaymentsMethods, PaymentsVars, PaymentsThis> &
  WithSubscriptions<PaymentsThis> = {
  name: "payments",
  mixins: [InfrastructureMixin({ store: true, bus: true }), OutboxMixin(), InboxMixin(), BreakerMixin()],

  // ── settings ───────────────────────────────────────────────────────────
  settings: {
    chargerPollIntervalMs: 250,
    chargerConcurrency: 16,
    leaseMs: 15_000,
    backoffBaseMs: 500,
    backoffMaxMs: 30_000,
    webhookWaitMs: 5_000,
    pollBackoffMaxMs: 60_000,
    pspTimeoutMs: 4_000,
    pspBreaker: {},
    webhookToleranceSeconds: 300,
    webhookRetentionDays: 30,
  },

  // ── actions ────────────────────────────────────────────────────────────
  actions: {
    /** A provider webhook, as the gateway received it: the raw body and the `Psp-Signature` header. */
    webhook: {
      visibility: "public",
      params: {
        $$strict: true,
        body: { type: "string", max: 1024 * 1024 },
        signature: { type: "string", optional: true, max: 4096 },
      },
      async handler(this: PaymentsThis, ctx: Context<WebhookParams>): Promise<WebhookResult> {
        const verdict = verifySignature({
          header: ctx.params.signature,
          rawBody: ctx.params.body,
          secrets: this.webhookSecrets,
          toleranceSeconds: this.settings.webhookToleranceSeconds,
        });
        if (!verdict.ok) {
          this.logger.warn(`webhook refused: ${verdict.code}`);
          throw new MoleculerClientError("webhook signature is not valid", 400, "INVALID_SIGNATURE", {
            reason: verdict.code,
          });
        }
        return this.receiveWebhook(parseWebhook(ctx.params.body), ctx);
      },
    },

    /** The payments of an order; a customer sees only their own (someone else's: an empty list). */
    list: {
      visibility: "public",
      params: { $$strict: true, orderId: { type: "string", min: 1, max: 128 } },
      async handler(
        this: PaymentsThis,
        ctx: Context<{ orderId: string }>,
      ): Promise<{ items: PaymentView[] }> {
        const principal = principalOf(ctx);
        const docs = await this.payments().find({ orderId: ctx.params.orderId }, { sort: { createdAt: 1 } });
        return { items: docs.filter((doc) => canSee(principal, doc.customerId)).map(viewOf) };
      },
    },

    /** Payments by status, and this instance's charger and breaker (REPL, tests). */
    stats: {
      visibility: "public",
      async handler(this: PaymentsThis): Promise<PaymentStats> {
        const counts = await Promise.all(
          PAYMENT_STATUSES.map(
            async (status) => [status, await this.payments().countDocuments({ status })] as const,
          ),
        );
        const byStatus = Object.fromEntries(counts) as Record<PaymentStatus, number>;
        return {
          byStatus,
          total: counts.reduce((sum, [, n]) => sum + n, 0),
          inFlight: this.charger?.inFlight ?? 0,
          breaker: this.pspBreaker.state,
        };
      },
    },
  },

  // ── subscriptions ──────────────────────────────────────────────────────
  subscriptions: {
    "order.created": {
      // only writes: the charger makes the provider call after the commit
      async handler(event, tx) {
        const { orderId, customerId, total, paymentMethod } = event.payload;
        const payments = tx.collection<PaymentDoc>(PAYMENTS);
        // a second order.created, or a cancellation that overtook it: never a second payment
        if ((await payments.findOne({ orderId })) !== null) return;
        const now = new Date();
        const at = now.toISOString();
        const doc: PaymentDoc = {
          _id: uuidv7(),
          orderId,
          customerId,
          amount: total as Money,
          paymentMethod,
          status: "pending",
          cancelRequested: false,
          attempts: 0,
          nextAttemptAt: now,
          history: [{ status: "pending", at }],
          createdAt: at,
          updatedAt: at,
          ...(event.traceparent === undefined ? {} : { traceparent: event.traceparent }),
        };
        await payments.insertOne(doc);
      },
    },

    "order.cancelled": {
      async handler(event, tx) {
        const { orderId, customerId, total } = event.payload;
        const payments = tx.collection<PaymentDoc>(PAYMENTS);
        const payment = await payments.findOne({ orderId });
        const now = new Date();
        const at = now.toISOString();
        if (payment === null) {
          // the cancellation overtook order.created: a cancelled placeholder keeps it from charging
          await payments.insertOne({
            _id: uuidv7(),
            orderId,
            customerId,
            amount: total as Money,
            paymentMethod: NO_PAYMENT_METHOD,
            status: "cancelled",
            cancelRequested: true,
            attempts: 0,
            history: [{ status: "cancelled", at }],
            createdAt: at,
            updatedAt: at,
          });
          return;
        }
        switch (payment.status) {
          case "pending": {
            const chargeInFlight =
              payment.leaseUntil !== undefined && payment.leaseUntil.getTime() > now.getTime();
            if (chargeInFlight || payment.chargeUncertain === true) {
              // a charge may land: let the charger find out, and refund what it captures
              await changePayment(tx, payment, { set: { cancelRequested: true } }, now);
            } else {
              await changePayment(
                tx,
                payment,
                {
                  set: { status: "cancelled", cancelRequested: true },
                  unset: ["nextAttemptAt"],
                  history: ["cancelled"],
                },
                now,
              );
            }
            return;
          }
          case "processing":
            await changePayment(tx, payment, { set: { cancelRequested: true } }, now);
            return;
          case "captured":
            await changePayment(
              tx,
              payment,
              {
                set: { status: "refunding", cancelRequested: true, attempts: 0, nextAttemptAt: now },
                unset: ["lastError"],
                history: ["refunding"],
              },
              now,
            );
            return;
          default:
            // failed, refunding, refunded, cancelled: nothing was kept, or it is being given back
            return;
        }
      },
    },
  },

  // ── methods ────────────────────────────────────────────────────────────
  methods: {
    payments(): Collection<PaymentDoc> {
      return this.store.collection<PaymentDoc>(PAYMENTS);
    },

    /** Lease up to `limit` due payments, earliest due first. */
    async claimDue(limit: number): Promise<PaymentDoc[]> {
      const claimed: PaymentDoc[] = [];
      const now = new Date();
      const leaseUntil = new Date(now.getTime() + this.settings.leaseMs);
      while (claimed.length < limit) {
        const doc = await this.payments().findOneAndUpdate(
          { status: { $in: ACTIVE_STATUSES }, nextAttemptAt: { $lte: now } },
          // due again when the lease runs out: a crashed instance's payment is taken over then
          { $set: { leaseOwner: this.chargerOwner, leaseUntil, nextAttemptAt: leaseUntil } },
          { sort: { nextAttemptAt: 1 }, returnDocument: "after" },
        );
        if (doc === null) break;
        claimed.push(doc);
      }
      return claimed;
    },

    async work(doc: PaymentDoc): Promise<void> {
      if (doc.status === "pending") return this.charge(doc);
      if (doc.status === "processing") return this.poll(doc);
      if (doc.status === "refunding") return this.refund(doc);
    },

    /** Create the payment intent (outside any transaction), then record what came of it. */
    async charge(doc: PaymentDoc): Promise<void> {
      // until the outcome is recorded, a charge may be out there: a crash here leaves the mark, and a
      // cancellation then waits for the charger to find out (it sends the same key again)
      const marked = await this.payments()
        .updateOne(
          { _id: doc._id, status: "pending", leaseOwner: this.chargerOwner },
          { $set: { chargeUncertain: true } },
        )
        .catch((err: unknown) => {
          this.logger.warn(`payment ${doc._id}: could not mark the charge attempt: ${errorText(err)}`);
          return { modifiedCount: 0, matchedCount: 0 };
        });
      // not ours any more, or the store is down: the lease runs out and the payment is tried again
      if (marked.matchedCount === 0) return;
      const wasUncertain = doc.chargeUncertain === true;
      let outcome: ChargeResult | undefined;
      let error: unknown;
      try {
        outcome = await this.psp.createPaymentIntent({
          idempotencyKey: doc._id,
          amount: doc.amount,
          paymentMethod: doc.paymentMethod,
          metadata: { paymentId: doc._id, orderId: doc.orderId },
        });
      } catch (err) {
        error = err;
        this.logger.warn(`charging payment ${doc._id} (order ${doc.orderId}) failed: ${errorText(err)}`);
      }
      await this.recordOutcome(doc, "pending", async (tx, current, now) => {
        if (outcome?.outcome === "processing") {
          await changePayment(
            tx,
            current,
            {
              set: {
                status: "processing",
                providerPaymentId: outcome.intent.id,
                chargeUncertain: false,
                pollAttempts: 0,
                nextAttemptAt: new Date(now.getTime() + this.settings.webhookWaitMs),
              },
              unset: [...LEASE_FIELDS, "lastError"],
              history: ["processing"],
            },
            now,
          );
          return;
        }
        if (outcome?.outcome === "succeeded") {
          await captured(tx, current, outcome.intent.id, now);
          return;
        }
        if (outcome?.outcome === "declined") {
          await failed(tx, current, outcome.message, outcome.declineCode, outcome.intent?.id, now);
          return;
        }
        if (codeOf(error) === "PSP_REJECTED") {
          await failed(
            tx,
            current,
            `the provider refused the charge: ${errorText(error)}`,
            undefined,
            undefined,
            now,
          );
          return;
        }
        // no answer: the provider may hold an intent, unless it was never asked (breaker open) or said it did nothing
        const uncertain = wasUncertain || mayHaveCharged(error);
        if (current.cancelRequested && !uncertain) {
          await changePayment(
            tx,
            current,
            {
              set: { status: "cancelled" },
              unset: [...LEASE_FIELDS, "nextAttemptAt"],
              history: ["cancelled"],
            },
            now,
          );
          return;
        }
        await this.retryLater(tx, current, error, now, { chargeUncertain: uncertain });
      });
    },

    /** A `processing` payment whose webhook has not come: ask the provider, apply as a webhook would. */
    async poll(doc: PaymentDoc): Promise<void> {
      let intent: PaymentIntent | undefined;
      let error: unknown;
      if (doc.providerPaymentId === undefined) {
        error = new Error(`payment ${doc._id} is processing without a provider payment id`);
      } else {
        try {
          intent = await this.psp.getPaymentIntent(doc.providerPaymentId);
        } catch (err) {
          error = err;
          this.logger.warn(`polling payment ${doc._id} failed: ${errorText(err)}`);
        }
      }
      await this.recordOutcome(doc, "processing", async (tx, current, now) => {
        if (intent !== undefined && (await applyIntent(tx, current, intent, now)) !== "unchanged") return;
        const polls = (current.pollAttempts ?? 0) + 1;
        const delay = Math.min(
          this.settings.pollBackoffMaxMs,
          this.settings.webhookWaitMs * 2 ** Math.min(polls, 20),
        );
        await changePayment(
          tx,
          current,
          {
            set: {
              pollAttempts: polls,
              nextAttemptAt: new Date(now.getTime() + delay),
              ...(error === undefined ? {} : { lastError: errorText(error) }),
            },
            unset: LEASE_FIELDS,
          },
          now,
        );
      });
    },

    /** Refund a captured payment (idempotency key `refund_<paymentId>`), then record it. */
    async refund(doc: PaymentDoc): Promise<void> {
      let refund: Refund | undefined;
      let error: unknown;
      if (doc.providerPaymentId === undefined) {
        error = new Error(`payment ${doc._id} is refunding without a provider payment id`);
        this.logger.error(`cannot refund payment ${doc._id}: no provider payment id`);
      } else {
        try {
          refund = await this.psp.createRefund({
            idempotencyKey: `refund_${doc._id}`,
            paymentIntentId: doc.providerPaymentId,
          });
        } catch (err) {
          error = err;
          const rejected = codeOf(err) === "PSP_REJECTED";
          (rejected ? this.logger.error : this.logger.warn).call(
            this.logger,
            `refunding payment ${doc._id} (order ${doc.orderId}) failed${rejected ? " and needs attention" : ""}: ${errorText(err)}`,
          );
        }
      }
      await this.recordOutcome(doc, "refunding", async (tx, current, now) => {
        if (refund !== undefined) {
          await refunded(tx, current, refund, now);
          return;
        }
        await this.retryLater(tx, current, error, now);
      });
    },

    /**
     * Record a provider call's outcome in one transaction, if the payment is still in `expected`
     * under this instance's lease (a webhook may have settled it meanwhile); then wake the charger.
     */
    async recordOutcome(
      doc: PaymentDoc,
      expected: PaymentStatus,
      apply: (tx: OutboxTransaction, current: PaymentDoc, now: Date) => Promise<void>,
    ): Promise<void> {
      try {
        const after = await this.transaction(
          async (tx) => {
            const now = new Date();
            const payments = tx.collection<PaymentDoc>(PAYMENTS);
            const current = await payments.findOne({ _id: doc._id });
            if (current === null || current.status !== expected || current.leaseOwner !== this.chargerOwner)
              return undefined;
            await apply(tx, current, now);
            return (await payments.findOne({ _id: doc._id }, { projection: { status: 1 } }))?.status;
          },
          { traceparent: doc.traceparent },
        );
        if (after === undefined)
          this.logger.debug(`payment ${doc._id}: settled meanwhile, outcome not needed`);
        else if (after !== expected) this.logger.debug(`payment ${doc._id}: ${expected} → ${after}`);
      } catch (err) {
        // the lease runs out and the payment is tried again (the idempotency key keeps it one charge)
        this.logger.warn(`recording the outcome for payment ${doc._id} failed: ${errorText(err)}`);
      }
      this.charger?.wake();
    },

    /** Stay in the current state; try again after a full-jitter exponential backoff. */
    async retryLater(
      tx: Transaction,
      current: PaymentDoc,
      error: unknown,
      now: Date,
      extra: Partial<PaymentDoc> = {},
    ): Promise<void> {
      // an open breaker made no call: not an attempt, and worth asking again soon — the breaker
      // itself paces the probes, so the payment goes out as soon as the provider is back
      const breakerOpen = codeOf(error) === "BREAKER_OPEN";
      const attempts = breakerOpen ? current.attempts : current.attempts + 1;
      // a refusal will not go away by itself: wait the longest
      const delay = breakerOpen
        ? this.settings.backoffBaseMs + Math.floor(Math.random() * this.settings.backoffBaseMs)
        : codeOf(error) === "PSP_REJECTED"
          ? this.settings.backoffMaxMs
          : retryDelayMs(attempts, this.settings.backoffBaseMs, this.settings.backoffMaxMs);
      await changePayment(
        tx,
        current,
        {
          set: {
            ...extra,
            attempts,
            nextAttemptAt: new Date(now.getTime() + delay),
            lastError: errorText(error),
          },
          unset: LEASE_FIELDS,
        },
        now,
      );
    },

    /** Claim the event id and apply the event, in one transaction. */
    async receiveWebhook(event: PspEvent, ctx: Context): Promise<WebhookResult> {
      type Applied = { result: WebhookResult; unknownPayment?: boolean; refunding?: boolean };
      let applied: Applied;
      try {
        applied = await this.transaction<Applied>(async (tx) => {
          const events = tx.collection<WebhookEventDoc>(WEBHOOK_EVENTS);
          if ((await events.findOne({ _id: event.id })) !== null)
            return { result: { received: true, duplicate: true } };
          const payment = await paymentOfEvent(tx, event);
          await events.insertOne({
            _id: event.id,
            type: event.type,
            receivedAt: new Date(),
            paymentId: payment?._id ?? null,
          });
          // other events (and objects) are acknowledged, or the provider would send them again and again
          if (!WEBHOOK_TYPES.has(event.type)) return { result: { received: true, ignored: true } };
          if (payment === null) return { result: { received: true, ignored: true }, unknownPayment: true };
          const now = new Date();
          const object = event.data.object;
          let outcome: IntentApplication | "refunded" | "unchanged" = "unchanged";
          if (event.type === "charge.refunded" && object.object === "refund") {
            outcome = (await refunded(tx, payment, object, now)) ? "refunded" : "unchanged";
          } else if (object.object === "payment_intent") {
            outcome = await applyIntent(tx, payment, object, now);
          }
          return { result: { received: true }, refunding: outcome === "refunding" };
        }, ctx);
      } catch (err) {
        // the same event delivered twice at once: the other delivery claimed it
        if (codeOf(err) === "DUPLICATE_KEY") return { received: true, duplicate: true };
        throw err;
      }
      if (applied.unknownPayment === true)
        this.logger.warn(`webhook ${event.id} (${event.type}) is about no payment of ours: ignored`);
      if (applied.refunding === true) this.charger?.wake();
      return applied.result;
    },
  },

  // ── lifecycle ──────────────────────────────────────────────────────────
  created() {
    this.charger = undefined;
  },

  async started() {
    const infra = infrastructureOf(this.broker);
    const { pspUrl, pspWebhookSecret, pspWebhookSecretPrevious } = infra.config;
    if (pspUrl === undefined)
      throw new ConfigError("PSP_URL", "required by the payments service: the payment provider's base URL");
    if (pspWebhookSecret === undefined)
      throw new ConfigError(
        "PSP_WEBHOOK_SECRET",
        "required by the payments service to verify provider webhooks",
      );
    // while a secret is rolled, webhooks signed with the previous one are still genuine
    this.webhookSecrets =
      pspWebhookSecretPrevious === undefined
        ? [pspWebhookSecret]
        : [pspWebhookSecret, pspWebhookSecretPrevious];

    const store = await infra.store(this.name);
    await store.createIndex(PAYMENTS, { name: "order_unique", keys: { orderId: 1 }, unique: true });
    await store.createIndex(PAYMENTS, { name: "status_due", keys: { status: 1, nextAttemptAt: 1 } });
    await store.createIndex(PAYMENTS, { name: "provider_payment", keys: { providerPaymentId: 1 } });
    await store.createIndex(WEBHOOK_EVENTS, {
      name: "received_ttl",
      keys: { receivedAt: 1 },
      expireAfterSeconds: this.settings.webhookRetentionDays * 24 * 60 * 60,
    });

    this.pspBreaker = this.createBreaker({ ...pspBreakerOptions, ...this.settings.pspBreaker });
    this.psp = new PspHttpAdapter({
      baseUrl: pspUrl,
      breaker: this.pspBreaker,
      timeoutMs: this.settings.pspTimeoutMs,
    });
    this.chargerOwner = `${this.broker.nodeID}:${this.fullName}`;
    const charger = new ChargerLoop({
      pollIntervalMs: this.settings.chargerPollIntervalMs,
      concurrency: this.settings.chargerConcurrency,
      claim: (limit) => this.claimDue(limit),
      work: (doc) => this.work(doc),
      logger: this.logger,
    });
    this.charger = charger;
    charger.start();
  },

  async stopped() {
    const charger = this.charger;
    this.charger = undefined;
    await charger?.stop();
  },
};

// ── state changes shared by the charger, the poller and the webhook ─────────────────────────────

/** Provider event types this service acts on. */
const WEBHOOK_TYPES: ReadonlySet<string> = new Set([
  "payment_intent.succeeded",
  "payment_intent.payment_failed",
  "charge.refunded",
]);

type IntentApplication = "captured" | "refunding" | "failed" | "unchanged";

/** Write `change` to `doc` (read in this transaction), with history and `updatedAt`. */
async function changePayment(
  tx: Transaction,
  doc: PaymentDoc,
  change: PaymentChange,
  now: Date,
): Promise<void> {
  const at = now.toISOString();
  const update: Update = {
    $set: {
      ...change.set,
      updatedAt: at,
      ...(change.history === undefined || change.history.length === 0
        ? {}
        : { history: [...doc.history, ...change.history.map((status) => ({ status, at }))] }),
    },
  };
  if (change.unset !== undefined && change.unset.length > 0)
    update.$unset = Object.fromEntries(change.unset.map((field) => [field, ""]));
  await tx.collection<PaymentDoc>(PAYMENTS).updateOne({ _id: doc._id, status: doc.status }, update);
}

/** Apply the provider's view of an intent: succeeded → captured; declined → failed; else nothing. */
async function applyIntent(
  tx: OutboxTransaction,
  doc: PaymentDoc,
  intent: PaymentIntent,
  now: Date,
): Promise<IntentApplication> {
  if (intent.status === "succeeded") return captured(tx, doc, intent.id, now);
  if (intent.status === "requires_payment_method" || intent.status === "canceled") {
    const error = intent.last_payment_error;
    const done = await failed(
      tx,
      doc,
      error?.message ?? `payment ${intent.status}`,
      error?.decline_code ?? error?.code,
      intent.id,
      now,
    );
    return done ? "failed" : "unchanged";
  }
  return "unchanged";
}

/**
 * The charge succeeded: `captured` + `payment.captured`. When the order was cancelled meanwhile,
 * straight on to `refunding` in the same transaction. Only from pending/processing (and, as a
 * safety net, cancelled); a capture seen again changes nothing.
 */
async function captured(
  tx: OutboxTransaction,
  doc: PaymentDoc,
  providerPaymentId: string,
  now: Date,
): Promise<IntentApplication> {
  if (doc.status !== "pending" && doc.status !== "processing" && doc.status !== "cancelled")
    return "unchanged";
  const refund = doc.cancelRequested || doc.status === "cancelled";
  await changePayment(
    tx,
    doc,
    refund
      ? {
          set: {
            status: "refunding",
            providerPaymentId,
            cancelRequested: true,
            attempts: 0,
            nextAttemptAt: now,
          },
          unset: [...LEASE_FIELDS, "lastError"],
          history: ["captured", "refunding"],
        }
      : {
          set: { status: "captured", providerPaymentId },
          unset: [...LEASE_FIELDS, "nextAttemptAt", "lastError"],
          history: ["captured"],
        },
    now,
  );
  await publishPaymentEvent(tx, doc, "payment.captured", { amount: doc.amount, providerPaymentId });
  return refund ? "refunding" : "captured";
}

/** The charge failed for good: `failed` + `payment.failed`. Only from pending/processing. */
async function failed(
  tx: OutboxTransaction,
  doc: PaymentDoc,
  reason: string,
  declineCode: string | undefined,
  providerPaymentId: string | undefined,
  now: Date,
): Promise<boolean> {
  if (doc.status !== "pending" && doc.status !== "processing") return false;
  const why = clip(reason.length === 0 ? "payment failed" : reason, 500);
  const code = declineCode === undefined ? undefined : clip(declineCode, 64);
  await changePayment(
    tx,
    doc,
    {
      set: {
        status: "failed",
        failureReason: why,
        ...(code === undefined ? {} : { declineCode: code }),
        ...(providerPaymentId === undefined ? {} : { providerPaymentId }),
      },
      unset: [...LEASE_FIELDS, "nextAttemptAt"],
      history: ["failed"],
    },
    now,
  );
  await publishPaymentEvent(tx, doc, "payment.failed", {
    reason: why,
    ...(code === undefined ? {} : { declineCode: code }),
  });
  return true;
}

/** The money went back: `refunded` + `payment.refunded`. Only from refunding/captured. */
async function refunded(tx: OutboxTransaction, doc: PaymentDoc, refund: Refund, now: Date): Promise<boolean> {
  if (doc.status !== "refunding" && doc.status !== "captured") return false;
  await changePayment(
    tx,
    doc,
    {
      set: { status: "refunded", refundId: refund.id },
      unset: [...LEASE_FIELDS, "nextAttemptAt", "lastError"],
      history: doc.status === "captured" ? ["refunding", "refunded"] : ["refunded"],
    },
    now,
  );
  await publishPaymentEvent(tx, doc, "payment.refunded", {
    amount: { minor: refund.amount, currency: doc.amount.currency },
    refundId: refund.id,
  });
  return true;
}

/** The payment an event is about: by the `paymentId` we put in the metadata, else by the provider's id. */
async function paymentOfEvent(tx: Transaction, event: PspEvent): Promise<PaymentDoc | null> {
  const payments = tx.collection<PaymentDoc>(PAYMENTS);
  const object = event.data.object;
  if (object.object === "payment_intent") {
    const paymentId = object.metadata?.paymentId;
    if (typeof paymentId === "string" && paymentId.length > 0) {
      const byId = await payments.findOne({ _id: paymentId });
      if (byId !== null) return byId;
    }
  }
  const providerId = object.object === "refund" ? object.payment_intent : object.id;
  if (typeof providerId !== "string" || providerId.length === 0) return null;
  return payments.findOne({ providerPaymentId: providerId });
}

type PaymentEventType = "payment.captured" | "payment.failed" | "payment.refunded";

/** Publish a payment event in `tx`: the payment's identity, plus what this event adds to it. */
async function publishPaymentEvent<T extends PaymentEventType>(
  tx: OutboxTransaction,
  doc: PaymentDoc,
  type: T,
  details: Omit<PayloadOf<T>, "paymentId" | "orderId" | "customerId">,
): Promise<void> {
  const identity = { paymentId: doc._id, orderId: doc.orderId, customerId: doc.customerId };
  // the catalog's payload type of T is exactly identity + details; TypeScript cannot see it through the generic
  const payload = { ...identity, ...details } as unknown as PayloadOf<T>;
  await tx.publish<T>({ type, aggregateType: "payment", aggregateId: doc._id, payload });
}

// ── the charger loop ───────────────────────────────────────────────────────────────────────────

interface ChargerLoopOptions {
  pollIntervalMs: number;
  concurrency: number;
  claim(limit: number): Promise<PaymentDoc[]>;
  work(doc: PaymentDoc): Promise<void>;
  logger: { warn(...args: unknown[]): void; error(...args: unknown[]): void };
}

/**
 * Claims due payments and works on them, at most `concurrency` at once; looks again every
 * `pollIntervalMs`, right after `wake()`, and when a slot frees up after a full claim.
 */
class ChargerLoop {
  private running = false;
  private wakeRequested = false;
  /** The last claim filled every free slot: more may be due. */
  private backlog = false;
  private waiter: (() => void) | undefined;
  private loopDone: Promise<void> = Promise.resolve();
  private readonly active = new Map<string, Promise<void>>();

  constructor(private readonly options: ChargerLoopOptions) {}

  get inFlight(): number {
    return this.active.size;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  wake(): void {
    this.wakeRequested = true;
    this.waiter?.();
  }

  /** Stop claiming and wait for the calls in flight to be recorded. */
  async stop(): Promise<void> {
    this.running = false;
    this.waiter?.();
    await this.loopDone;
    await Promise.allSettled([...this.active.values()]);
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.wakeRequested = false;
      const room = this.options.concurrency - this.active.size;
      // refill in batches: a claim reads the due set, so one claim per freed slot would cost a
      // query per payment exactly when the backlog is longest
      const batch = Math.max(1, Math.floor(this.options.concurrency / 2));
      if (room >= batch || (room > 0 && this.active.size === 0)) {
        try {
          const docs = await this.options.claim(room);
          this.backlog = docs.length === room;
          for (const doc of docs) this.run(doc);
        } catch (err) {
          this.backlog = false;
          this.options.logger.warn(`claiming due payments failed: ${errorText(err)}`);
        }
      }
      if (!this.running) break;
      if (this.wakeRequested) continue;
      await this.wait(this.options.pollIntervalMs);
    }
  }

  private run(doc: PaymentDoc): void {
    const done = this.options
      .work(doc)
      .catch((err: unknown) => this.options.logger.error(`working on payment ${doc._id} failed`, err))
      .finally(() => {
        this.active.delete(doc._id);
        if (this.backlog) this.wake();
      });
    this.active.set(doc._id, done);
  }

  private wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      this.waiter = done;
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
    }).then(() => {
      this.waiter = undefined;
    });
  }
}

// ── helpers ────────────────────────────────────────────────────────────────────────────────────

function viewOf(doc: PaymentDoc): PaymentView {
  return {
    id: doc._id,
    orderId: doc.orderId,
    status: doc.status,
    amount: doc.amount,
    paymentMethod: doc.paymentMethod,
    ...(doc.providerPaymentId === undefined ? {} : { providerPaymentId: doc.providerPaymentId }),
    ...(doc.declineCode === undefined ? {} : { declineCode: doc.declineCode }),
    ...(doc.refundId === undefined ? {} : { refundId: doc.refundId }),
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
    history: doc.history,
  };
}

/** The webhook body as an event, or 400 INVALID_WEBHOOK. */
function parseWebhook(body: string): PspEvent {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw invalidWebhook("the body is not JSON");
  }
  const event = value as Partial<PspEvent> | null;
  const object = (event?.data as { object?: unknown } | undefined)?.object as
    { id?: unknown; object?: unknown } | undefined;
  if (
    typeof event !== "object" ||
    event === null ||
    typeof event.id !== "string" ||
    event.id.length === 0 ||
    event.id.length > 255 ||
    typeof event.type !== "string" ||
    typeof object !== "object" ||
    object === null ||
    typeof object.id !== "string" ||
    typeof object.object !== "string"
  ) {
    throw invalidWebhook("the body is not a provider event ({ id, type, data: { object } })");
  }
  return event as PspEvent;
}

function invalidWebhook(why: string): Errors.MoleculerClientError {
  return new MoleculerClientError(`webhook refused: ${why}`, 400, "INVALID_WEBHOOK");
}

/** Whether a failed create may still have created an intent at the provider. */
function mayHaveCharged(err: unknown): boolean {
  if (codeOf(err) === "BREAKER_OPEN") return false;
  const data = (err as { data?: { outcomeUnknown?: unknown } } | null | undefined)?.data;
  return data?.outcomeUnknown !== false;
}

function codeOf(err: unknown): unknown {
  return (err as { code?: unknown } | null | undefined)?.code;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export default PaymentsService;
