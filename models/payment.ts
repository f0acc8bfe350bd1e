/**
 * The payment aggregate (docs/payments.md): one payment per order, charged at the payment
 * provider, refunded when its order is cancelled. Every transition is a method that refuses an
 * illegal move with a `PaymentError` (a stable `code`, the payment unchanged) and returns the
 * events it raises, as the outbox publishes them.
 *
 *   pending ──▶ processing ──▶ captured ──▶ refunding ──▶ refunded
 *      │             │                         │   ▲
 *      ├──▶ failed ◀─┘                         ▼   │ (the provider reports it refunded after all)
 *      └──▶ cancelled (never charged)        refund_dead
 *
 * Two rules hold whatever arrives in whatever order:
 * - money for a cancelled order never stays: a capture of a payment whose order was cancelled goes
 *   on to `refunding` in the same step, and a refund is retried until it is done or, refused
 *   `maxRefundRejections` times, parked as `refund_dead` for an operator;
 * - nothing is captured twice: a capture reported again changes nothing, and a second intent for
 *   the same payment is refused.
 *
 * The provider is asked by the charger outside any transaction; the aggregate only records what it
 * asked and what came of it. When it is next due (`nextAttemptAt`) is decided here, by the pure
 * retry policy below.
 */
import { retryDelayMs } from "./backoff";
import type { PayloadOf } from "./events";
import type { Money } from "./money";

/**
 * `pending` (not charged yet) → `processing` (accepted, awaiting confirmation) → `captured` |
 * `failed`; `captured` → `refunding` → `refunded` | `refund_dead` (refused too often: an operator
 * must look); `cancelled` (the order was cancelled before any charge).
 */
export const PAYMENT_STATUSES = [
  "pending",
  "processing",
  "captured",
  "failed",
  "refunding",
  "refunded",
  "cancelled",
  "refund_dead",
] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

/** States in which the charger has work to do: charge, poll, refund. */
export const ACTIVE_PAYMENT_STATUSES: readonly PaymentStatus[] = ["pending", "processing", "refunding"];

/** Placeholder payment method of a payment made for an order cancelled before it was created. */
export const NO_PAYMENT_METHOD = "none";

/** The events a payment raises. */
export type PaymentEventType = "payment.captured" | "payment.failed" | "payment.refunded";
/** One raised event: its type and its (v1) payload, exactly as published. */
export type PaymentEvent = {
  [T in PaymentEventType]: { type: T; payload: PayloadOf<T> };
}[PaymentEventType];

export interface PaymentHistoryEntry {
  readonly status: PaymentStatus;
  /** ISO 8601 UTC. */
  readonly at: string;
}

/** What is stored: a plain, JSON-safe snapshot of the aggregate. */
export interface PaymentState {
  /** The payment id, also the provider's idempotency key of the charge. */
  readonly id: string;
  readonly orderId: string;
  readonly customerId: string;
  readonly amount: Money;
  readonly paymentMethod: string;
  readonly status: PaymentStatus;
  readonly providerPaymentId?: string;
  readonly declineCode?: string;
  readonly failureReason?: string;
  readonly refundId?: string;
  /** The order was cancelled while a charge might land: whatever is captured is refunded. */
  readonly cancelRequested: boolean;
  /** A charge request is out at the provider (set before the call, cleared by its outcome; a crash leaves it). */
  readonly chargeInFlight?: boolean;
  /** An earlier charge request ended without an answer: the provider may hold an intent. */
  readonly chargeUncertain?: boolean;
  /** Failed provider calls in the current state. */
  readonly attempts: number;
  /** Polls of a `processing` payment so far. */
  readonly pollAttempts?: number;
  /** Times the provider refused the refund. */
  readonly refundRejections?: number;
  /** ISO 8601 UTC: when the charger next looks at it; absent in final states. */
  readonly nextAttemptAt?: string;
  readonly lastError?: string;
  /** Trace context of the `order.created` that made it; travels with its events. */
  readonly traceparent?: string;
  readonly history: readonly PaymentHistoryEntry[];
  readonly createdAt: string;
  readonly updatedAt: string;
  /** How many times it was saved; the store's optimistic guard (the aggregate never changes it). */
  readonly version: number;
}

/** A payment as callers of the API see it. */
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
  history: PaymentHistoryEntry[];
}

export type PaymentErrorCode = "ILLEGAL_PAYMENT_TRANSITION" | "PAYMENT_ALREADY_CAPTURED" | "INVALID_PAYMENT";

/** A rule of the payment was broken; `code` is stable across process boundaries. */
export class PaymentError extends Error {
  constructor(
    readonly code: PaymentErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "PaymentError";
  }
}

/** Whether `err` is a `PaymentError` (by name and code: `instanceof` does not survive a process boundary). */
export function isPaymentError(err: unknown): err is PaymentError {
  const candidate = err as { name?: unknown; code?: unknown } | null | undefined;
  return candidate?.name === "PaymentError" && typeof candidate.code === "string";
}

/** When the charger looks at a payment again (service settings; tests shorten them). */
export interface PaymentRetryPolicy {
  /** First retry delay after a failed provider call (full jitter, doubling). */
  backoffBaseMs: number;
  /** Longest retry delay; a refused refund waits this long. */
  backoffMaxMs: number;
  /** How long a `processing` payment waits for its webhook before the first poll. */
  webhookWaitMs: number;
  /** Longest wait between polls. */
  pollBackoffMaxMs: number;
  /** Refusals of a refund after which it is parked as `refund_dead`. */
  maxRefundRejections: number;
  /** Random source of the jitter, in [0, 1) (tests fix it). */
  random?: () => number;
}

export const DEFAULT_RETRY_POLICY: Readonly<PaymentRetryPolicy> = {
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  webhookWaitMs: 5_000,
  pollBackoffMaxMs: 60_000,
  maxRefundRejections: 5,
};

/**
 * A provider call that brought no answer to act on:
 * - `not-sent`: the provider was never asked (breaker open); not an attempt;
 * - `unanswered`: no usable answer (timeout, 5xx, 429, network); `mayHaveActed` is false only when
 *   the provider certainly did nothing (429, 503, connection refused);
 * - `rejected`: the provider refused the request (a 4xx other than a decline); asking again the
 *   same way will not help.
 */
export type CallFailure =
  | { kind: "not-sent"; error: string }
  | { kind: "unanswered"; error: string; mayHaveActed: boolean }
  | { kind: "rejected"; error: string };

/** What a charge request came to. */
export type ChargeOutcome =
  | { kind: "processing"; providerPaymentId: string }
  | { kind: "succeeded"; providerPaymentId: string }
  | { kind: "declined"; reason: string; declineCode?: string; providerPaymentId?: string }
  | CallFailure;

/** The provider's view of a payment intent (from a webhook or a poll). */
export interface ProviderIntent {
  id: string;
  status: "processing" | "succeeded" | "requires_payment_method" | "canceled";
  /** Why the last attempt to pay failed (declines). */
  failure?: { message?: string; code?: string };
}

/** A refund as the provider reports it; `amountMinor` in the payment's currency. */
export interface ProviderRefund {
  id: string;
  amountMinor: number;
}

/** What a refund request came to. */
export type RefundOutcome = ({ kind: "refunded" } & ProviderRefund) | CallFailure;

export interface CreatePayment {
  id: string;
  orderId: string;
  customerId: string;
  amount: Money;
  paymentMethod: string;
  now: Date;
  traceparent?: string;
}

const REASON_MAX = 500;
const DECLINE_CODE_MAX = 64;

export class Payment {
  private constructor(private state: PaymentState) {}

  /** A new payment for an order, not charged yet and due now. */
  static create(command: CreatePayment): Payment {
    Payment.check(command);
    if (command.paymentMethod.length === 0) throw invalid("a payment needs a payment method");
    const at = command.now.toISOString();
    return new Payment({
      id: command.id,
      orderId: command.orderId,
      customerId: command.customerId,
      amount: { ...command.amount },
      paymentMethod: command.paymentMethod,
      status: "pending",
      cancelRequested: false,
      attempts: 0,
      nextAttemptAt: at,
      ...(command.traceparent === undefined ? {} : { traceparent: command.traceparent }),
      history: [{ status: "pending", at }],
      createdAt: at,
      updatedAt: at,
      version: 0,
    });
  }

  /**
   * The order was cancelled before its payment was created (the cancellation overtook
   * `order.created`): a `cancelled` placeholder that a late `order.created` finds, so it never charges.
   */
  static forCancelledOrder(command: Omit<CreatePayment, "paymentMethod" | "traceparent">): Payment {
    Payment.check(command);
    const at = command.now.toISOString();
    return new Payment({
      id: command.id,
      orderId: command.orderId,
      customerId: command.customerId,
      amount: { ...command.amount },
      paymentMethod: NO_PAYMENT_METHOD,
      status: "cancelled",
      cancelRequested: true,
      attempts: 0,
      history: [{ status: "cancelled", at }],
      createdAt: at,
      updatedAt: at,
      version: 0,
    });
  }

  /** Rebuild from a stored snapshot. */
  static fromState(state: PaymentState): Payment {
    return new Payment(structuredClone(state));
  }

  get id(): string {
    return this.state.id;
  }

  get orderId(): string {
    return this.state.orderId;
  }

  get customerId(): string {
    return this.state.customerId;
  }

  get status(): PaymentStatus {
    return this.state.status;
  }

  get amount(): Money {
    return this.state.amount;
  }

  get paymentMethod(): string {
    return this.state.paymentMethod;
  }

  get providerPaymentId(): string | undefined {
    return this.state.providerPaymentId;
  }

  get cancelRequested(): boolean {
    return this.state.cancelRequested;
  }

  get traceparent(): string | undefined {
    return this.state.traceparent;
  }

  /** When the charger next looks at it (ms since the epoch); undefined when nothing is due. */
  get nextAttemptAt(): number | undefined {
    return this.state.nextAttemptAt === undefined ? undefined : Date.parse(this.state.nextAttemptAt);
  }

  /** The idempotency key of its refund at the provider. */
  get refundKey(): string {
    return `refund_${this.state.id}`;
  }

  /** A copy of the current snapshot. */
  toState(): PaymentState {
    return structuredClone(this.state);
  }

  /** What callers of the API see. */
  toView(): PaymentView {
    const s = this.state;
    return {
      id: s.id,
      orderId: s.orderId,
      status: s.status,
      amount: { ...s.amount },
      paymentMethod: s.paymentMethod,
      ...(s.providerPaymentId === undefined ? {} : { providerPaymentId: s.providerPaymentId }),
      ...(s.declineCode === undefined ? {} : { declineCode: s.declineCode }),
      ...(s.refundId === undefined ? {} : { refundId: s.refundId }),
      createdAt: s.createdAt,
      updatedAt: s.updatedAt,
      history: s.history.map((h) => ({ ...h })),
    };
  }

  // ── charging ──────────────────────────────────────────────────────────────────────────────────

  /**
   * A charge request is about to go out (the charger calls the provider after this is saved). A
   * request still marked in flight is one whose outcome was never recorded (a crash): it may have
   * charged, so the payment becomes uncertain.
   */
  startCharge(now: Date): PaymentEvent[] {
    this.expect(["pending"], "start a charge");
    this.change(now, {
      chargeInFlight: true,
      ...(this.state.chargeInFlight === true ? { chargeUncertain: true } : {}),
    });
    return [];
  }

  /** Record what the charge request came to. Only while `pending`. */
  recordChargeOutcome(outcome: ChargeOutcome, now: Date, policy: PaymentRetryPolicy): PaymentEvent[] {
    this.expect(["pending"], "record a charge outcome");
    switch (outcome.kind) {
      case "processing":
        this.moveTo("processing", now, {
          providerPaymentId: outcome.providerPaymentId,
          chargeInFlight: false,
          chargeUncertain: false,
          pollAttempts: 0,
          nextAttemptAt: later(now, policy.webhookWaitMs),
          lastError: undefined,
        });
        return [];
      case "succeeded":
        return this.capture(outcome.providerPaymentId, now);
      case "declined":
        return this.fail(outcome.reason, outcome.declineCode, outcome.providerPaymentId, now);
      case "rejected":
        return this.fail(`the provider refused the charge: ${outcome.error}`, undefined, undefined, now);
      case "not-sent":
      case "unanswered": {
        // the provider may hold an intent, unless it was never asked or said it did nothing
        const uncertain =
          this.state.chargeUncertain === true || (outcome.kind === "unanswered" && outcome.mayHaveActed);
        if (this.state.cancelRequested && !uncertain) {
          this.moveTo("cancelled", now, {
            chargeInFlight: false,
            chargeUncertain: false,
            nextAttemptAt: undefined,
          });
          return [];
        }
        this.retryLater(outcome, now, policy, { chargeInFlight: false, chargeUncertain: uncertain });
        return [];
      }
    }
  }

  /**
   * The provider's view of the intent (a webhook, or a poll's answer): succeeded → captured;
   * declined or cancelled → failed; still processing → nothing changes.
   */
  applyIntent(intent: ProviderIntent, now: Date): PaymentEvent[] {
    if (intent.status === "succeeded") return this.capture(intent.id, now);
    if (intent.status === "requires_payment_method" || intent.status === "canceled")
      return this.fail(
        intent.failure?.message ?? `payment ${intent.status}`,
        intent.failure?.code,
        intent.id,
        now,
      );
    return [];
  }

  /** A `processing` payment's poll: apply the intent; when it settles nothing, poll again later (doubling). */
  recordPoll(
    answer: { intent: ProviderIntent } | { failure: CallFailure },
    now: Date,
    policy: PaymentRetryPolicy,
  ): PaymentEvent[] {
    this.expect(["processing"], "record a poll");
    if ("intent" in answer) {
      const events = this.applyIntent(answer.intent, now);
      if (this.state.status !== "processing") return events;
    }
    const polls = (this.state.pollAttempts ?? 0) + 1;
    const delay = Math.min(policy.pollBackoffMaxMs, policy.webhookWaitMs * 2 ** Math.min(polls, 20));
    this.change(now, {
      pollAttempts: polls,
      nextAttemptAt: later(now, delay),
      ...("failure" in answer ? { lastError: answer.failure.error } : {}),
    });
    return [];
  }

  /**
   * The charge succeeded: `captured` + `payment.captured`. When the order was cancelled meanwhile,
   * straight on to `refunding` in the same step. A capture reported again changes nothing; another
   * intent for a captured payment is refused (`PAYMENT_ALREADY_CAPTURED`).
   */
  capture(providerPaymentId: string, now: Date): PaymentEvent[] {
    const s = this.state;
    if (
      s.status === "captured" ||
      s.status === "refunding" ||
      s.status === "refunded" ||
      s.status === "refund_dead"
    ) {
      if (s.providerPaymentId === providerPaymentId) return [];
      throw new PaymentError(
        "PAYMENT_ALREADY_CAPTURED",
        `payment ${s.id} was captured as ${String(s.providerPaymentId)}, not ${providerPaymentId}`,
        { paymentId: s.id, providerPaymentId: s.providerPaymentId, reported: providerPaymentId },
      );
    }
    // a capture of a cancelled payment is the last safety net: it is refunded too
    this.expect(["pending", "processing", "cancelled"], "capture");
    const refund = s.cancelRequested || s.status === "cancelled";
    const settled = {
      providerPaymentId,
      chargeInFlight: false,
      chargeUncertain: false,
      lastError: undefined,
    };
    this.moveTo("captured", now, { ...settled, nextAttemptAt: undefined });
    if (refund) this.beginRefund(now);
    return [
      {
        type: "payment.captured",
        payload: { ...this.identity(), amount: { ...s.amount }, providerPaymentId },
      },
    ];
  }

  /** The charge failed for good: `failed` + `payment.failed`. Reported again: nothing changes. */
  fail(
    reason: string,
    declineCode: string | undefined,
    providerPaymentId: string | undefined,
    now: Date,
  ): PaymentEvent[] {
    if (this.state.status === "failed") return [];
    this.expect(["pending", "processing"], "fail");
    const why = clip(reason.length === 0 ? "payment failed" : reason, REASON_MAX);
    const code = declineCode === undefined ? undefined : clip(declineCode, DECLINE_CODE_MAX);
    this.moveTo("failed", now, {
      failureReason: why,
      ...(code === undefined ? {} : { declineCode: code }),
      ...(providerPaymentId === undefined ? {} : { providerPaymentId }),
      chargeInFlight: false,
      nextAttemptAt: undefined,
    });
    return [
      {
        type: "payment.failed",
        payload: { ...this.identity(), reason: why, ...(code === undefined ? {} : { declineCode: code }) },
      },
    ];
  }

  // ── cancellation and refunds ──────────────────────────────────────────────────────────────────

  /**
   * The order was cancelled. Never charged and no charge out → `cancelled`; a charge in flight or
   * with an unknown outcome, or awaiting confirmation → noted, and whatever is captured is refunded;
   * captured → `refunding`. Failed, cancelled or already being given back: nothing to do.
   */
  requestCancellation(now: Date): PaymentEvent[] {
    const s = this.state;
    switch (s.status) {
      case "pending":
        if (s.chargeInFlight === true || s.chargeUncertain === true) {
          // a charge may land: the charger finds out (it sends the same key again)
          if (!s.cancelRequested) this.change(now, { cancelRequested: true });
        } else {
          this.moveTo("cancelled", now, { cancelRequested: true, nextAttemptAt: undefined });
        }
        return [];
      case "processing":
        if (!s.cancelRequested) this.change(now, { cancelRequested: true });
        return [];
      case "captured":
        return this.requestRefund(now);
      default:
        // failed, refunding, refunded, refund_dead, cancelled: nothing was kept, or it is being given back
        return [];
    }
  }

  /** Give a captured payment back: `refunding`, due now. */
  requestRefund(now: Date): PaymentEvent[] {
    this.expect(["captured"], "refund");
    this.beginRefund(now);
    return [];
  }

  /** Record what the refund request came to. Only while `refunding`. */
  recordRefundOutcome(outcome: RefundOutcome, now: Date, policy: PaymentRetryPolicy): PaymentEvent[] {
    this.expect(["refunding"], "record a refund outcome");
    if (outcome.kind === "refunded") return this.refunded(outcome, now);
    if (outcome.kind === "rejected") {
      const rejections = (this.state.refundRejections ?? 0) + 1;
      if (rejections >= policy.maxRefundRejections) {
        // refused again and again: park it for an operator; a later refund reported by the provider still lands
        this.moveTo("refund_dead", now, {
          refundRejections: rejections,
          attempts: this.state.attempts + 1,
          lastError: outcome.error,
          nextAttemptAt: undefined,
        });
        return [];
      }
      this.retryLater(outcome, now, policy, { refundRejections: rejections });
      return [];
    }
    this.retryLater(outcome, now, policy);
    return [];
  }

  /**
   * The money went back: `refunded` + `payment.refunded` (the amount as the provider reports it).
   * From `refunding`, `captured` (refunded at the provider directly) or `refund_dead` (refunded by
   * an operator). Reported again: nothing changes.
   */
  refunded(refund: ProviderRefund, now: Date): PaymentEvent[] {
    if (this.state.status === "refunded") return [];
    this.expect(["refunding", "captured", "refund_dead"], "record a refund");
    if (this.state.status === "captured") this.moveTo("refunding", now, {});
    this.moveTo("refunded", now, { refundId: refund.id, nextAttemptAt: undefined, lastError: undefined });
    return [
      {
        type: "payment.refunded",
        payload: {
          ...this.identity(),
          amount: { minor: refund.amountMinor, currency: this.state.amount.currency },
          refundId: refund.id,
        },
      },
    ];
  }

  // ── internals ─────────────────────────────────────────────────────────────────────────────────

  private beginRefund(now: Date): void {
    this.moveTo("refunding", now, {
      cancelRequested: true,
      attempts: 0,
      refundRejections: 0,
      nextAttemptAt: now.toISOString(),
      lastError: undefined,
    });
  }

  /** Stay in the current state and try again after the policy's delay. */
  private retryLater(
    failure: CallFailure,
    now: Date,
    policy: PaymentRetryPolicy,
    extra: Partial<PaymentState> = {},
  ): void {
    // an open breaker made no call: not an attempt, and worth asking again soon — the breaker paces
    // the real probes, so the payment goes out as soon as the provider is back
    const attempts = failure.kind === "not-sent" ? this.state.attempts : this.state.attempts + 1;
    this.change(now, {
      ...extra,
      attempts,
      nextAttemptAt: later(now, retryDelay(failure, attempts, policy)),
      lastError: failure.error,
    });
  }

  private identity(): { paymentId: string; orderId: string; customerId: string } {
    return { paymentId: this.state.id, orderId: this.state.orderId, customerId: this.state.customerId };
  }

  private expect(from: readonly PaymentStatus[], what: string): void {
    if (from.includes(this.state.status)) return;
    throw new PaymentError(
      "ILLEGAL_PAYMENT_TRANSITION",
      `payment ${this.state.id} cannot ${what} while ${this.state.status}`,
      { paymentId: this.state.id, status: this.state.status, action: what },
    );
  }

  private moveTo(status: PaymentStatus, now: Date, fields: Partial<PaymentState>): void {
    const at = now.toISOString();
    this.change(now, { ...fields, status, history: [...this.state.history, { status, at }] });
  }

  /** Apply `fields` (an `undefined` value removes the field) and stamp `updatedAt`. */
  private change(now: Date, fields: Partial<PaymentState>): void {
    const next: Record<string, unknown> = { ...this.state, ...fields, updatedAt: now.toISOString() };
    for (const [key, value] of Object.entries(next)) if (value === undefined) delete next[key];
    this.state = next as unknown as PaymentState;
  }

  private static check(command: Omit<CreatePayment, "paymentMethod" | "traceparent">): void {
    for (const field of ["id", "orderId", "customerId"] as const)
      if (command[field].length === 0) throw invalid(`a payment needs a ${field}`);
    if (!Number.isInteger(command.amount.minor) || command.amount.minor < 0)
      throw invalid("a payment's amount is a non-negative integer of minor units", {
        amount: command.amount,
      });
  }
}

/** How long to wait after a failed provider call (the one retry policy: models/backoff.ts). */
export function retryDelay(failure: CallFailure, attempts: number, policy: PaymentRetryPolicy): number {
  const random = policy.random ?? Math.random;
  if (failure.kind === "not-sent") return policy.backoffBaseMs + Math.floor(random() * policy.backoffBaseMs);
  // a refusal will not go away by itself: wait the longest
  if (failure.kind === "rejected") return policy.backoffMaxMs;
  return retryDelayMs(attempts, policy.backoffBaseMs, policy.backoffMaxMs, random);
}

function later(now: Date, ms: number): string {
  return new Date(now.getTime() + ms).toISOString();
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function invalid(message: string, details: Record<string, unknown> = {}): PaymentError {
  return new PaymentError("INVALID_PAYMENT", message, details);
}
