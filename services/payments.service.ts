/**
 * payments service: charges the payment provider for each order, learns the outcome from signed
 * webhooks (a poller recovers lost ones), refunds the payments of cancelled orders, and reports
 * `payment.captured` | `payment.failed` | `payment.refunded` through the outbox. docs/payments.md.
 *
 * Wiring only: the payment's rules are the aggregate's (models/payment.ts), its store is the
 * repository's (lib/repositories/payment.repository.ts), the provider is behind its port
 * (lib/psp/psp.port.ts), and the provider calls are the charger's (services/payments.charger.ts),
 * run by the one lease-claiming worker (lib/work/lease-worker.ts). Inbox handlers and the webhook
 * only translate what happened into a command on the payment; the provider is never called inside
 * a transaction.
 *
 * Waking the charger: an inbox commit wakes only the outbox relay, so the charger polls
 * (`chargerPollIntervalMs`); the paths this service controls (webhook, recorded outcomes) wake it
 * for the time the payment falls due (`wakeAt`), which a test's manual clock reaches at once.
 *
 * Settings (tests shorten them): `chargerPollIntervalMs` (250), `chargerConcurrency` (16 calls in
 * flight per instance), `leaseMs` (15 000: how long a crashed instance's payments wait to be taken
 * over; must exceed the provider timeout), `backoffBaseMs` (500) and `backoffMaxMs` (30 000) for
 * retries (full jitter), `webhookWaitMs` (5 000: how long a `processing` payment waits for its
 * webhook before the first poll), `pollBackoffMaxMs` (60 000), `maxRefundRejections` (5: refusals
 * before a refund is parked as `refund_dead`), `pspTimeoutMs` (4 000), `pspBreaker` (overrides of
 * lib/psp/psp.http.adapter.ts `pspBreakerOptions`), `webhookToleranceSeconds` (300),
 * `webhookRetentionDays` (30).
 */
import { PAYMENT_LIST_PARAMS } from "../lib/params";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import type { Breaker, BreakerOptions } from "../lib/breaker";
import { dateOf } from "../lib/clock";
import { ConfigError } from "../lib/errors";
import { infrastructureOf } from "../lib/infrastructure";
import { canSee, principalOf } from "../lib/principal";
import { PspHttpAdapter, pspBreakerOptions } from "../lib/psp/psp.http.adapter";
import type { PaymentProvider, PspEvent } from "../lib/psp/psp.port";
import { APPLIED_EVENT_TYPES, applyProviderEvent, paymentRefOf, readWebhook } from "../lib/psp/psp.webhook";
import { PaymentRepository } from "../lib/repositories/payment.repository";
import { LeaseWorker } from "../lib/work/lease-worker";
import { BreakerMixin, type BreakerThis } from "../mixins/breaker.mixin";
import { InboxMixin, type WithSubscriptions } from "../mixins/inbox.mixin";
import { InfrastructureMixin, type InfrastructureThis } from "../mixins/infrastructure.mixin";
import { OutboxMixin, type OutboxThis } from "../mixins/outbox.mixin";
import { uuidv7 } from "../models/ids";
import type { Money } from "../models/money";
import {
  PAYMENT_STATUSES,
  Payment,
  isPaymentError,
  type PaymentEvent,
  type PaymentRetryPolicy,
  type PaymentStatus,
  type PaymentView,
} from "../models/payment";
import { PaymentCharger } from "./payments.charger";

const { MoleculerClientError } = Errors;

export type { PaymentView } from "../models/payment";

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
  maxRefundRejections: number;
  pspTimeoutMs: number;
  pspBreaker: Partial<Omit<BreakerOptions, "name" | "onStateChange" | "isFailure">>;
  webhookToleranceSeconds: number;
  webhookRetentionDays: number;
}

interface PaymentsVars {
  psp: PaymentProvider;
  pspBreaker: Breaker;
  webhookSecrets: string[];
  paymentRepository: PaymentRepository;
  /** The charger's work loop; undefined before `started` and after `stopped`. */
  charger: LeaseWorker<Payment> | undefined;
}

interface PaymentsMethods {
  retryPolicy(): PaymentRetryPolicy;
  receiveWebhook(event: PspEvent, ctx: Context): Promise<WebhookResult>;
  /** Have the charger look at `payment` when it falls due. */
  wakeFor(payment: Payment | null): void;
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
    maxRefundRejections: 5,
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
        const reading = readWebhook({
          body: ctx.params.body,
          signature: ctx.params.signature,
          secrets: this.webhookSecrets,
          toleranceSeconds: this.settings.webhookToleranceSeconds,
          now: this.clock.now(),
        });
        if (reading.ok) return this.receiveWebhook(reading.event, ctx);
        if (reading.code === "INVALID_WEBHOOK")
          throw new MoleculerClientError(`webhook refused: ${reading.why}`, 400, "INVALID_WEBHOOK");
        this.logger.warn(`webhook refused: ${reading.reason}`);
        throw new MoleculerClientError("webhook signature is not valid", 400, "INVALID_SIGNATURE", {
          reason: reading.reason,
        });
      },
    },

    /** The payments of an order; a customer sees only their own (someone else's: an empty list). */
    list: {
      visibility: "public",
      params: PAYMENT_LIST_PARAMS,
      async handler(
        this: PaymentsThis,
        ctx: Context<{ orderId: string }>,
      ): Promise<{ items: PaymentView[] }> {
        const principal = principalOf(ctx);
        const payments = await this.paymentRepository.listByOrder(ctx.params.orderId);
        return {
          items: payments.filter((payment) => canSee(principal, payment.customerId)).map((p) => p.toView()),
        };
      },
    },

    /** Payments by status, and this instance's charger and breaker (REPL, tests). */
    stats: {
      visibility: "public",
      async handler(this: PaymentsThis): Promise<PaymentStats> {
        const byStatus = await this.paymentRepository.countByStatus();
        return {
          byStatus,
          total: PAYMENT_STATUSES.reduce((sum, status) => sum + byStatus[status], 0),
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
        // a second order.created, or a cancellation that overtook it: never a second payment
        if ((await this.paymentRepository.findByOrder(tx, orderId)) !== null) return;
        const payment = Payment.create({
          id: uuidv7(this.clock.now()),
          orderId,
          customerId,
          amount: total as Money,
          paymentMethod,
          now: dateOf(this.clock),
          ...(event.traceparent === undefined ? {} : { traceparent: event.traceparent }),
        });
        await this.paymentRepository.add(tx, payment);
      },
    },

    "order.cancelled": {
      async handler(event, tx) {
        const { orderId, customerId, total } = event.payload;
        const now = dateOf(this.clock);
        const payment = await this.paymentRepository.findByOrder(tx, orderId);
        if (payment === null) {
          const placeholder = Payment.forCancelledOrder({
            id: uuidv7(this.clock.now()),
            orderId,
            customerId,
            amount: total as Money,
            now,
          });
          await this.paymentRepository.add(tx, placeholder);
          return;
        }
        await this.paymentRepository.save(tx, payment, payment.requestCancellation(now));
      },
    },
  },

  // ── methods ────────────────────────────────────────────────────────────
  methods: {
    retryPolicy(): PaymentRetryPolicy {
      const { backoffBaseMs, backoffMaxMs, webhookWaitMs, pollBackoffMaxMs, maxRefundRejections } =
        this.settings;
      return { backoffBaseMs, backoffMaxMs, webhookWaitMs, pollBackoffMaxMs, maxRefundRejections };
    },

    /** Claim the event id and apply the event, in one transaction. */
    async receiveWebhook(event: PspEvent, ctx: Context): Promise<WebhookResult> {
      type Applied = { result: WebhookResult; unknownPayment?: true; refused?: string; payment?: Payment };
      let applied: Applied;
      try {
        applied = await this.transaction<Applied>(async (tx) => {
          const repository = this.paymentRepository;
          const ref = paymentRefOf(event);
          const payment =
            (ref.paymentId === undefined ? null : await repository.findById(tx, ref.paymentId)) ??
            (ref.providerPaymentId === undefined
              ? null
              : await repository.findByProviderPaymentId(tx, ref.providerPaymentId));
          if ((await repository.noteProviderEvent(tx, event, payment?.id ?? null)) === "seen")
            return { result: { received: true, duplicate: true } };
          // other events (and objects) are acknowledged, or the provider would send them again and again
          if (!APPLIED_EVENT_TYPES.has(event.type)) return { result: { received: true, ignored: true } };
          if (payment === null) return { result: { received: true, ignored: true }, unknownPayment: true };
          let events: PaymentEvent[];
          try {
            events = applyProviderEvent(payment, event, dateOf(this.clock));
          } catch (err) {
            // a late or contradicting report (a decline after the capture…): acknowledged, nothing changes
            if (!isPaymentError(err)) throw err;
            return { result: { received: true }, refused: err.message };
          }
          await repository.save(tx, payment, events);
          return { result: { received: true }, payment };
        }, ctx);
      } catch (err) {
        // the same event delivered twice at once: the other delivery claimed it
        if ((err as { code?: unknown } | null)?.code === "DUPLICATE_KEY")
          return { received: true, duplicate: true };
        throw err;
      }
      if (applied.unknownPayment === true)
        this.logger.warn(`webhook ${event.id} (${event.type}) is about no payment of ours: ignored`);
      if (applied.refused !== undefined)
        this.logger.warn(`webhook ${event.id} (${event.type}): ${applied.refused}`);
      this.wakeFor(applied.payment ?? null);
      return applied.result;
    },

    wakeFor(payment: Payment | null): void {
      const at = payment?.nextAttemptAt;
      if (at !== undefined) this.charger?.wakeAt(at);
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
    this.paymentRepository = new PaymentRepository(store, this.clock, { leaseMs: this.settings.leaseMs });
    await this.paymentRepository.prepare(this.settings.webhookRetentionDays);

    const breaker = this.createBreaker({ ...pspBreakerOptions, ...this.settings.pspBreaker });
    this.pspBreaker = breaker;
    this.psp = new PspHttpAdapter({ baseUrl: pspUrl, breaker, timeoutMs: this.settings.pspTimeoutMs });
    const owner = `${this.broker.nodeID}:${this.fullName}`;
    const charger = new PaymentCharger({
      owner,
      provider: this.psp,
      payments: this.paymentRepository,
      transaction: (fn, trace) => this.transaction(fn, trace),
      clock: this.clock,
      policy: this.retryPolicy(),
      logger: this.logger,
      dueAt: (at) => this.charger?.wakeAt(at),
    });
    this.charger = new LeaseWorker<Payment>({
      name: "payment charger",
      owner,
      clock: this.clock,
      logger: this.logger,
      maxInFlight: this.settings.chargerConcurrency,
      // a claim reads the due set: refill half the slots at a time, not one claim per freed slot
      refillBatch: Math.max(1, Math.floor(this.settings.chargerConcurrency / 2)),
      pollIntervalMs: this.settings.chargerPollIntervalMs,
      // an open breaker sends nothing: claim nothing; half-open lets one probe through
      room: (inFlight) =>
        breaker.state === "open" ? 0 : breaker.state === "halfOpen" ? 1 - inFlight : Infinity,
      key: (payment) => payment.id,
      claim: (limit, held) => this.paymentRepository.claimDue(limit, owner, held),
      process: (payment) => charger.process(payment),
      stopTimeoutMs: this.settings.pspTimeoutMs + 1_000,
    });
    this.charger.start();
  },

  async stopped() {
    const charger = this.charger;
    this.charger = undefined;
    await charger?.stop();
  },
};

export default PaymentsService;
