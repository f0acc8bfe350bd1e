/**
 * The payment charger: takes one claimed payment to its next provider call and records what came
 * of it. A `pending` payment is charged, a `processing` one whose webhook has not come is polled, a
 * `refunding` one is refunded. The provider is called outside any transaction (a transaction body
 * may run again); the outcome is recorded in one transaction with its events, only while the
 * payment is still in the state it was claimed in and still held by this instance — a webhook or a
 * cancellation may have settled it meanwhile. The provider's idempotency key is the payment id
 * (refunds: `refund_<paymentId>`), so a call retried after a timeout or a crash charges once.
 * docs/payments.md, "A payment's life".
 */
import { dateOf, type Clock } from "../lib/clock";
import type { OutboxTransaction } from "../lib/outbox/outbox";
import {
  callFailureOf,
  chargeOutcomeOf,
  providerIntentOf,
  providerRefundOf,
  type ChargeResult,
  type PaymentProvider,
} from "../lib/psp/psp.port";
import type { PaymentRepository } from "../lib/repositories/payment.repository";
import {
  isPaymentError,
  type CallFailure,
  type Payment,
  type PaymentEvent,
  type PaymentRetryPolicy,
  type ProviderIntent,
  type RefundOutcome,
} from "../models/payment";

export interface ChargerLogger {
  debug(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

export interface PaymentChargerOptions {
  /** This instance's lease owner id. */
  owner: string;
  provider: PaymentProvider;
  payments: PaymentRepository;
  /** The service's outbox transaction (`this.transaction`). */
  transaction<R>(fn: (tx: OutboxTransaction) => Promise<R>, trace: { traceparent?: string }): Promise<R>;
  clock: Clock;
  policy: PaymentRetryPolicy;
  logger: ChargerLogger;
  /** A recorded payment falls due at `at` (ms): the work loop should look then. */
  dueAt(at: number): void;
}

export class PaymentCharger {
  constructor(private readonly options: PaymentChargerOptions) {}

  /** Take one claimed payment to its next provider call and record the outcome. */
  async process(payment: Payment): Promise<void> {
    if (payment.status === "pending") return this.charge(payment);
    if (payment.status === "processing") return this.poll(payment);
    if (payment.status === "refunding") return this.refund(payment);
  }

  /** Mark the charge as sent, create the payment intent, then record what came of it. */
  private async charge(payment: Payment): Promise<void> {
    const { provider, payments, owner, policy, logger } = this.options;
    // until the outcome is recorded a charge may be out there: a crash leaves the mark, and a
    // cancellation then waits for the charger to find out (it sends the same key again)
    try {
      payment.startCharge(this.now());
      await payments.saveAlone(payment, { heldBy: owner });
    } catch (err) {
      // settled or taken over meanwhile, or the store is down: the lease runs out and it is tried again
      logger.debug(`payment ${payment.id}: not charged now: ${errorText(err)}`);
      return;
    }
    let answer: { result: ChargeResult } | { error: unknown };
    try {
      answer = {
        result: await provider.createPaymentIntent({
          idempotencyKey: payment.id,
          amount: payment.amount,
          paymentMethod: payment.paymentMethod,
          metadata: { paymentId: payment.id, orderId: payment.orderId },
        }),
      };
    } catch (error) {
      answer = { error };
      logger.warn(`charging payment ${payment.id} (order ${payment.orderId}) failed: ${errorText(error)}`);
    }
    const outcome = chargeOutcomeOf(answer);
    await this.record(payment, (current, now) => current.recordChargeOutcome(outcome, now, policy));
  }

  /** A `processing` payment whose webhook has not come: ask the provider, apply as a webhook would. */
  private async poll(payment: Payment): Promise<void> {
    const { provider, policy, logger } = this.options;
    let answer: { intent: ProviderIntent } | { failure: CallFailure };
    const intentId = payment.providerPaymentId;
    if (intentId === undefined) {
      answer = { failure: missingProviderId(payment) };
    } else {
      try {
        answer = { intent: providerIntentOf(await provider.getPaymentIntent(intentId)) };
      } catch (err) {
        answer = { failure: callFailureOf(err) };
        logger.warn(`polling payment ${payment.id} failed: ${errorText(err)}`);
      }
    }
    await this.record(payment, (current, now) => current.recordPoll(answer, now, policy));
  }

  /** Refund a payment of a cancelled order, then record it. */
  private async refund(payment: Payment): Promise<void> {
    const { provider, policy, logger } = this.options;
    let outcome: RefundOutcome;
    const intentId = payment.providerPaymentId;
    if (intentId === undefined) {
      logger.error(`cannot refund payment ${payment.id}: no provider payment id`);
      outcome = missingProviderId(payment);
    } else {
      try {
        const refund = await provider.createRefund({
          idempotencyKey: payment.refundKey,
          paymentIntentId: intentId,
        });
        outcome = { kind: "refunded", ...providerRefundOf(refund) };
      } catch (err) {
        outcome = callFailureOf(err);
        const rejected = outcome.kind === "rejected";
        (rejected ? logger.error : logger.warn).call(
          logger,
          `refunding payment ${payment.id} (order ${payment.orderId}) failed${rejected ? " and needs attention" : ""}: ${errorText(err)}`,
        );
      }
    }
    const saved = await this.record(payment, (current, now) =>
      current.recordRefundOutcome(outcome, now, policy),
    );
    if (saved?.status === "refund_dead")
      logger.error(
        `refund of payment ${payment.id} (order ${payment.orderId}) refused ${policy.maxRefundRejections} times: refund_dead, an operator must look`,
      );
  }

  /**
   * Record a provider call's outcome in one transaction with its events, if the payment is still
   * held by this instance in the state it was claimed in; then tell the loop when it is next due.
   */
  private async record(
    claimed: Payment,
    decide: (current: Payment, now: Date) => PaymentEvent[],
  ): Promise<Payment | null> {
    const { payments, owner, logger } = this.options;
    let saved: Payment | null = null;
    try {
      saved = await this.options.transaction(
        (tx) =>
          payments.update(tx, claimed.id, (current) => decide(current, this.now()), {
            heldBy: owner,
            lease: "release",
          }),
        { ...(claimed.traceparent === undefined ? {} : { traceparent: claimed.traceparent }) },
      );
    } catch (err) {
      if (isPaymentError(err) || codeOf(err) === "PAYMENT_CONFLICT") {
        // a webhook or a cancellation settled it meanwhile: this outcome is not needed
        logger.debug(`payment ${claimed.id}: settled meanwhile, outcome not recorded (${errorText(err)})`);
      } else {
        // the lease runs out and the payment is tried again (the idempotency key keeps it one charge)
        logger.warn(`recording the outcome for payment ${claimed.id} failed: ${errorText(err)}`);
      }
      return null;
    }
    const due = saved?.nextAttemptAt;
    if (due !== undefined) this.options.dueAt(due);
    return saved;
  }

  private now(): Date {
    return dateOf(this.options.clock);
  }
}

/** A payment past `pending` always has the provider's id; a stored one without is retried and logged. */
function missingProviderId(payment: Payment): CallFailure {
  return {
    kind: "unanswered",
    error: `payment ${payment.id} is ${payment.status} without a provider payment id`,
    mayHaveActed: false,
  };
}

function codeOf(err: unknown): unknown {
  return (err as { code?: unknown } | null | undefined)?.code;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
