/**
 * Event-bus port: durable publish with a message id, durable named pull subscriptions with
 * explicit settlement. Semantics follow NATS JetStream; the in-process adapter mirrors them.
 * Proven by test/conformance/bus.conformance.spec.ts for every adapter.
 *
 * - `publish` resolves only once the message is durable (JetStream: the stream acknowledged it;
 *   in-process: every current subscription has settled it for good). A second publish with the
 *   same `id` within the duplicate window resolves with `duplicate: true` and is not delivered again.
 *   When it cannot confirm durability it rejects with `PublishFailedError` — never a false success.
 * - Each subscription (by `durable` name) receives every message on its subject at least once.
 *   Several subscribers with the same durable name share the work (a queue group).
 * - A delivery must be settled: `ack` (done), `nak(delayMs)` (redeliver after the delay),
 *   `term` (never redeliver), or left unsettled (redelivered after `ackWaitMs`). `working()`
 *   extends the ack deadline for long handlers. A handler that throws is nak'ed with the
 *   subscription's `nakDelayMs`.
 * - After `maxDeliver` deliveries a message is not delivered again; `delivery.isLastDelivery`
 *   lets a consumer dead-letter it on the last attempt.
 * - At most `maxInFlight` deliveries of one subscription are unsettled at a time (a bulkhead).
 */

/** A message as published. */
export interface OutgoingMessage {
  /** Unique id; the dedupe key (`Nats-Msg-Id`). */
  id: string;
  /** Subject, e.g. `events.order.created`. */
  subject: string;
  data: Uint8Array;
  headers?: Record<string, string>;
}

export interface PublishAck {
  /** True when the bus already had a message with this id (nothing new was stored). */
  duplicate: boolean;
  /** Stream sequence when the adapter has one. */
  seq?: number;
}

/** A message as delivered to a subscription. */
export interface Delivery {
  readonly id: string;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  /** True when no further delivery will follow a nak or an expired ack deadline. */
  readonly isLastDelivery: boolean;
  /** Settled for good or for now; further settlement calls are ignored. */
  readonly settled: boolean;
  ack(): Promise<void>;
  nak(delayMs?: number): Promise<void>;
  term(reason?: string): Promise<void>;
  /** Reset the ack deadline (in-progress). */
  working(): Promise<void>;
}

export interface SubscriptionOptions {
  /** Durable consumer name; survives restarts, shared by all instances of one consumer. */
  durable: string;
  /** Subject filter: one subject, or a wildcard such as `events.order.>`. */
  subject: string;
  /** Deliveries before giving up (default 5). */
  maxDeliver?: number;
  /** Redelivery deadline for an unsettled delivery (default 30 s). */
  ackWaitMs?: number;
  /** Unsettled deliveries at most at a time (default 64). */
  maxInFlight?: number;
  /** Delay used when a handler throws (default 1 s). */
  nakDelayMs?: number;
}

export type DeliveryHandler = (delivery: Delivery) => Promise<void>;

export interface Subscription {
  readonly durable: string;
  /** Stop fetching, wait for in-flight handlers to settle (or until `timeoutMs`), keep the durable state. */
  stop(timeoutMs?: number): Promise<void>;
}

export interface EventBus {
  readonly kind: "jetstream" | "inprocess";
  /** Connect and make sure the stream exists; idempotent. */
  open(): Promise<void>;
  publish(message: OutgoingMessage): Promise<PublishAck>;
  subscribe(options: SubscriptionOptions, handler: DeliveryHandler): Promise<Subscription>;
  /** Resolves when the bus answers; throws `UnavailableError` otherwise. */
  ping(): Promise<void>;
  /** Stop subscriptions, drain, disconnect. In-flight publishes settle (ack or reject) first. Idempotent. */
  close(): Promise<void>;
}
