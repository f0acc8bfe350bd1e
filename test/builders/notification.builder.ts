/**
 * Builders of notifications in tests: `aNotification().failedTimes(2).claimedBy("sender-1").build()`.
 * Every state is reached through the aggregate's own transitions, one second apart from `createdAt`.
 */
import {
  Notification,
  type NotificationChannel,
  type NotifiedEvent,
  type RetryPolicy,
} from "../../models/notification";
import { renderNotification } from "../../models/notification-template";

/** When the default notification is created. */
export const T0 = new Date("2026-11-20T10:00:00.000Z");

/** Retries due at once (random 0), dead after 3 failures. */
export const TEST_POLICY: RetryPolicy = {
  maxAttempts: 3,
  backoffBaseMs: 1000,
  backoffMaxMs: 60_000,
  random: () => 0,
};

/** The sender the builder claims with unless told otherwise. */
export const SENDER = "node-1:notifications";

/** A lease the builder's claims take. */
export const LEASE_MS = 15_000;

/** An `order.paid` event for `customerId`, with an id. */
export function aPaidEvent(id = "evt-1", customerId = "cus-1"): NotifiedEvent & { id: string } {
  return {
    id,
    type: "order.paid",
    payload: { orderId: "ord-1", customerId, paymentId: "pay-1", total: { minor: 2498, currency: "USD" } },
  };
}

type Step = (notification: Notification, at: Date) => void;

class NotificationBuilder {
  private id = "ntf-1";
  private event = aPaidEvent();
  private channel: NotificationChannel = "sms";
  private createdAt = T0;
  private policy: RetryPolicy = TEST_POLICY;
  private readonly steps: Step[] = [];

  withId(id: string): this {
    this.id = id;
    return this;
  }

  forEvent(event: NotifiedEvent & { id: string }): this {
    this.event = event;
    return this;
  }

  onChannel(channel: NotificationChannel): this {
    this.channel = channel;
    return this;
  }

  createdAtTime(at: Date): this {
    this.createdAt = at;
    return this;
  }

  withPolicy(policy: RetryPolicy): this {
    this.policy = policy;
    return this;
  }

  /** Leased by `owner` for LEASE_MS (sending). */
  claimedBy(owner = SENDER): this {
    this.steps.push((n, at) => n.claim(owner, new Date(at.getTime() + LEASE_MS), at));
    return this;
  }

  /** `times` sends failed (claimed and failed by SENDER each time; the policy's retries fall due). */
  failedTimes(times: number, error = "NOTIFY_UNAVAILABLE: HTTP 500"): this {
    for (let i = 0; i < times; i++) {
      this.claimedBy();
      this.steps.push((n, at) => n.recordFailure(SENDER, error, at, this.policy));
    }
    return this;
  }

  /** Rejected by the provider: dead after one attempt. */
  rejected(error = "NOTIFY_REJECTED: HTTP 400"): this {
    this.claimedBy();
    this.steps.push((n, at) => n.recordRejection(SENDER, error, at));
    return this;
  }

  /** Claimed and sent by SENDER. */
  sent(providerMessageId = "msg_1"): this {
    this.claimedBy();
    this.steps.push((n, at) => n.recordSent({ providerMessageId }, at));
    return this;
  }

  /** The time of the last step (createdAt when there is none). */
  lastStepAt(): Date {
    return this.at(this.steps.length);
  }

  build(): Notification {
    const notification = Notification.create({
      id: this.id,
      event: this.event,
      message: renderNotification(this.event, this.channel),
      now: this.createdAt,
    });
    this.steps.forEach((step, i) => step(notification, this.at(i + 1)));
    return notification;
  }

  private at(step: number): Date {
    // far enough apart for every retry of TEST_POLICY (random 0) to be due at the next step
    return new Date(this.createdAt.getTime() + step * 1000);
  }
}

export function aNotification(): NotificationBuilder {
  return new NotificationBuilder();
}
