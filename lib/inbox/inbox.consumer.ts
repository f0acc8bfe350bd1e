/**
 * The idempotent inbox (docs/inbox.md): durable subscriptions of one consumer (a service), one per event
 * type. Each message is validated, then claimed and handled in ONE store transaction (the handler may
 * `tx.publish` follow-up events through the outbox), and acked only after the commit. A copy of an
 * event already claimed is acked without effect. Failures are settled branch by branch: malformed →
 * dead letter + term; `PERMANENT_FAILURE` → dead letter + term; anything else → nak with backoff,
 * and on the last allowed delivery → dead letter, then ack. See docs/inbox.md.
 */
import {
  envelopeIssues,
  EVENT_CATALOG,
  subjectOf,
  type EventEnvelope,
  type EventType,
} from "../../models/events";
import { formatIssues } from "../../models/schema";
import type { Delivery, EventBus, Subscription } from "../bus/bus.port";
import { InvalidSubscriptionError, silentLogger, type BusLogger } from "../bus/bus.shared";
import { decodeEnvelope, runOutboxTransaction, type OutboxTransaction } from "../outbox/outbox";
import type { DocumentStore } from "../store/store.port";
import {
  DeadLetterNotFoundError,
  DeadLetterNotReplayableError,
  DeadLetters,
  describeError,
  type DeadLetter,
  type DeadLetterError,
  type DeadLetterReason,
  type ListDeadLettersOptions,
  type ReplayOutcome,
} from "./dead-letters";
import {
  DEFAULT_PROCESSED_RETENTION_MS,
  claimEvent,
  claimId,
  ensureProcessedIndexes,
  isClaimCollision,
  type ProcessedEvent,
} from "./processed-events";

/** What a handler learns about the delivery it is handling. */
export interface DeliveryInfo {
  /** 1 on the first delivery; a replay gets the dead letter's count + 1. */
  deliveryCount: number;
  /** Nothing follows if this attempt fails (always true for a replay). */
  isLastDelivery: boolean;
  /** True when an operator replays a dead letter. */
  replay: boolean;
}

/**
 * Handles one event inside the inbox transaction. It must touch nothing outside `tx` (the body may
 * run more than once when transactions conflict). Throw `PermanentError` when retrying cannot help.
 */
export type InboxHandler<T extends EventType = EventType> = (
  event: EventEnvelope<T>,
  tx: OutboxTransaction,
  delivery: DeliveryInfo,
) => Promise<void>;

/** One subscription: its handler and its limits. */
export interface SubscriptionSpec<T extends EventType = EventType> {
  handler: InboxHandler<T>;
  /** Deliveries before the message is dead-lettered (default 5). */
  maxDeliver?: number;
  /** Nak delay after the n-th failed delivery is `backoffMs[n-1]`, the last entry beyond (default 1 s, 5 s, 30 s, 2 min). */
  backoffMs?: readonly number[];
  /** Handlers of this subscription running at once, at most (default 16). */
  maxInFlight?: number;
  /** Redelivery deadline of an unsettled delivery; handlers are kept alive every third of it (default 30 s). */
  ackWaitMs?: number;
}

/** Subscriptions by event type. */
export type InboxSubscriptions = { [T in EventType]?: SubscriptionSpec<T> };

/** Defaults of `SubscriptionSpec`. */
export const INBOX_DEFAULTS = {
  maxDeliver: 5,
  backoffMs: [1_000, 5_000, 30_000, 120_000],
  maxInFlight: 16,
  ackWaitMs: 30_000,
} as const;

export interface InboxConsumerOptions {
  store: DocumentStore;
  bus: EventBus;
  /** The consuming service's name: part of the durable names, the claims and the dead letters. */
  consumer: string;
  logger?: BusLogger;
  subscriptions: InboxSubscriptions;
  /** Called after a commit in which the handler published follow-up events (wakes the outbox relay). */
  onCommitted?: (published: number) => void;
  /** How long a claim is kept (default 14 days); must outlast any redelivery of the event. */
  processedRetentionMs?: number;
  /** Clock for claims and dead letters (tests). */
  now?: () => Date;
}

/** Counters of one subscription since this consumer started. */
export interface SubscriptionStats {
  durable: string;
  /** Events whose handler committed. */
  processed: number;
  /** Copies of events already claimed, acked without effect. */
  duplicates: number;
  /** Failed deliveries nak'ed for another attempt. */
  retried: number;
  /** Messages parked as dead letters. */
  deadLettered: number;
  /** Dead letters replayed through this consumer (handler run or already processed). */
  replayed: number;
  /** Handlers running now. */
  inFlight: number;
}

export interface InboxStats {
  consumer: string;
  subscriptions: Partial<Record<EventType, SubscriptionStats>>;
  /** Dead letters of this consumer waiting in the store (status `dead`). */
  deadLetters: number;
}

export interface ReplayResult {
  id: string;
  /** `already-replayed`: the letter had been replayed before; nothing ran. */
  outcome: ReplayOutcome | "already-replayed";
}

/** A subscription with its defaults filled in, its durable and its counters. */
interface Route {
  readonly type: EventType;
  readonly durable: string;
  readonly handler: InboxHandler;
  readonly maxDeliver: number;
  readonly backoffMs: readonly number[];
  readonly maxInFlight: number;
  readonly ackWaitMs: number;
  readonly stats: Omit<SubscriptionStats, "durable">;
  subscription: Subscription | undefined;
}

/** Why a message cannot even reach its handler. */
interface Rejection {
  reason: Extract<DeadLetterReason, "malformed" | "invalid">;
  error: DeadLetterError;
}

/** Durable name of a consumer's subscription to a type: JetStream-safe (`orders_payment_captured`). */
export function durableName(consumer: string, type: EventType): string {
  return `${consumer}_${type}`.replace(/[^A-Za-z0-9_-]/g, "_");
}

/** Branch on the code, never on `instanceof`: the error may have crossed a process boundary. */
function isPermanent(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const { code, type } = err as { code?: unknown; type?: unknown };
  return code === "PERMANENT_FAILURE" || type === "PERMANENT_FAILURE";
}

function positiveInteger(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1)
    throw new InvalidSubscriptionError(`${what} must be a positive integer`, { [what]: value });
  return value;
}

export class InboxConsumer {
  readonly consumer: string;
  private readonly store: DocumentStore;
  private readonly bus: EventBus;
  private readonly logger: BusLogger;
  private readonly onCommitted: ((published: number) => void) | undefined;
  private readonly retentionMs: number;
  private readonly now: () => Date;
  private readonly routes = new Map<EventType, Route>();
  private readonly deadLetters: DeadLetters;
  /** start() may run once; a stopped consumer is not restarted (make a new one). */
  private startedOnce = false;

  constructor(options: InboxConsumerOptions) {
    if (typeof options.consumer !== "string" || options.consumer.length === 0)
      throw new InvalidSubscriptionError("an inbox consumer needs a name");
    this.consumer = options.consumer;
    this.store = options.store;
    this.bus = options.bus;
    this.logger = options.logger ?? silentLogger;
    this.onCommitted = options.onCommitted;
    this.retentionMs = positiveInteger(
      options.processedRetentionMs ?? DEFAULT_PROCESSED_RETENTION_MS,
      "processedRetentionMs",
    );
    this.now = options.now ?? (() => new Date());
    this.deadLetters = new DeadLetters(this.store, this.consumer);
    for (const [type, spec] of Object.entries(options.subscriptions) as [EventType, SubscriptionSpec][]) {
      if (!(type in EVENT_CATALOG))
        throw new InvalidSubscriptionError(`"${type}" is not an event type of the catalog`, { type });
      this.routes.set(type, this.route(type, spec));
    }
  }

  private route(type: EventType, spec: SubscriptionSpec): Route {
    if (typeof spec.handler !== "function")
      throw new InvalidSubscriptionError(`the ${type} subscription needs a handler`, { type });
    const backoffMs = spec.backoffMs ?? INBOX_DEFAULTS.backoffMs;
    if (backoffMs.length === 0 || backoffMs.some((ms) => !Number.isInteger(ms) || ms < 0))
      throw new InvalidSubscriptionError("backoffMs must be a non-empty list of non-negative integers", {
        type,
        backoffMs,
      });
    return {
      type,
      durable: durableName(this.consumer, type),
      handler: spec.handler,
      maxDeliver: positiveInteger(spec.maxDeliver ?? INBOX_DEFAULTS.maxDeliver, "maxDeliver"),
      backoffMs: [...backoffMs],
      maxInFlight: positiveInteger(spec.maxInFlight ?? INBOX_DEFAULTS.maxInFlight, "maxInFlight"),
      ackWaitMs: positiveInteger(spec.ackWaitMs ?? INBOX_DEFAULTS.ackWaitMs, "ackWaitMs"),
      stats: { processed: 0, duplicates: 0, retried: 0, deadLettered: 0, replayed: 0, inFlight: 0 },
      subscription: undefined,
    };
  }

  // ── lifecycle ──────────────────────────────────────────────────────────

  /** Create the indexes, then subscribe every route. */
  async start(): Promise<void> {
    if (this.startedOnce) throw new Error(`inbox ${this.consumer} was started already`);
    this.startedOnce = true;
    try {
      await ensureProcessedIndexes(this.store);
      await this.deadLetters.ensureIndexes();
      for (const route of this.routes.values()) {
        route.subscription = await this.bus.subscribe(
          {
            durable: route.durable,
            subject: subjectOf(route.type),
            maxDeliver: route.maxDeliver,
            ackWaitMs: route.ackWaitMs,
            maxInFlight: route.maxInFlight,
            // only used if settling itself throws; every failure path settles explicitly
            nakDelayMs: route.backoffMs[0],
          },
          (delivery) => this.receive(route, delivery),
        );
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Stop fetching; resolves when in-flight handlers have settled (or after `timeoutMs` each). */
  async stop(timeoutMs?: number): Promise<void> {
    await Promise.all(
      [...this.routes.values()].map(async (route) => {
        const subscription = route.subscription;
        route.subscription = undefined;
        await subscription?.stop(timeoutMs);
      }),
    );
  }

  async stats(): Promise<InboxStats> {
    const subscriptions: InboxStats["subscriptions"] = {};
    for (const route of this.routes.values()) {
      subscriptions[route.type] = { durable: route.durable, ...route.stats };
    }
    return { consumer: this.consumer, subscriptions, deadLetters: await this.deadLetters.countDead() };
  }

  // ── one message ────────────────────────────────────────────────────────

  private async receive(route: Route, delivery: Delivery): Promise<void> {
    route.stats.inFlight++;
    const keepAlive = setInterval(
      () => {
        delivery.working().catch((err: unknown) => {
          this.logger.warn(`[inbox] ${route.durable}: working() failed on ${delivery.id}`, err);
        });
      },
      Math.max(1, Math.floor(route.ackWaitMs / 3)),
    );
    keepAlive.unref();
    try {
      await this.settle(route, delivery);
    } finally {
      clearInterval(keepAlive);
      route.stats.inFlight--;
    }
  }

  private async settle(route: Route, delivery: Delivery): Promise<void> {
    const parsed = this.parse(route, delivery);
    if ("reason" in parsed) {
      // malformed or off the catalog: no delivery will ever fix it
      const parked = await this.park(route, delivery, {
        ...parsed,
        content: { data: delivery.data },
      });
      if (parked) await delivery.term(`${parsed.reason}: ${parsed.error.message}`);
      else await this.retry(route, delivery);
      return;
    }

    const info: DeliveryInfo = {
      deliveryCount: delivery.deliveryCount,
      isLastDelivery: delivery.isLastDelivery,
      replay: false,
    };
    let outcome: "processed" | "duplicate";
    try {
      outcome = await this.apply(route, parsed, info);
    } catch (err) {
      await this.fail(route, delivery, parsed, err);
      return;
    }
    if (outcome === "processed") route.stats.processed++;
    else route.stats.duplicates++;
    await delivery.ack();
  }

  /** The envelope, or why it cannot be handled. */
  private parse(route: Route, delivery: Delivery): EventEnvelope | Rejection {
    let value: unknown;
    try {
      value = decodeEnvelope(delivery.data);
    } catch (err) {
      return {
        reason: "malformed",
        error: { code: "MALFORMED_MESSAGE", message: `not UTF-8 JSON: ${describeError(err).message}` },
      };
    }
    const issues = envelopeIssues(value);
    if (issues.length > 0)
      return { reason: "invalid", error: { code: "INVALID_EVENT", message: formatIssues(issues) } };
    const event = value as EventEnvelope;
    if (event.type !== route.type) {
      return {
        reason: "invalid",
        error: {
          code: "INVALID_EVENT",
          message: `${event.type} event delivered to the ${route.type} subscription`,
        },
      };
    }
    return event;
  }

  /**
   * Claim the event and run the handler in one transaction. "duplicate" when the event was claimed
   * before (seen by the read, or by a concurrent commit winning the unique key).
   */
  private async apply(
    route: Route,
    event: EventEnvelope,
    info: DeliveryInfo,
  ): Promise<"processed" | "duplicate"> {
    try {
      return await runOutboxTransaction(
        this.store,
        async (tx) => {
          if (!(await claimEvent(tx, this.claim(route, event, info)))) return "duplicate";
          await route.handler(event, tx, info);
          return "processed";
        },
        { traceparent: event.traceparent, afterCommit: this.onCommitted },
      );
    } catch (err) {
      // another delivery of the same event committed its claim first
      if (isClaimCollision(err)) return "duplicate";
      throw err;
    }
  }

  private claim(route: Route, event: EventEnvelope, info: DeliveryInfo): ProcessedEvent {
    const now = this.now();
    return {
      _id: claimId(this.consumer, event.id),
      consumer: this.consumer,
      eventId: event.id,
      type: route.type,
      processedAt: now,
      expireAt: new Date(now.getTime() + this.retentionMs),
      deliveryCount: info.deliveryCount,
      replayed: info.replay,
    };
  }

  /** The handler (or its transaction) failed: the failure path, branch by branch. */
  private async fail(route: Route, delivery: Delivery, event: EventEnvelope, err: unknown): Promise<void> {
    const error = describeError(err);
    if (isPermanent(err)) {
      // retrying cannot help: park it now
      if (await this.park(route, delivery, { reason: "permanent", error, content: { envelope: event } })) {
        await delivery.term(`permanent failure: ${error.message}`);
        return;
      }
    } else if (delivery.isLastDelivery) {
      // last delivery: park it, never drop it — the letter is committed before the ack
      if (await this.park(route, delivery, { reason: "exhausted", error, content: { envelope: event } })) {
        await delivery.ack();
        return;
      }
    } else {
      this.logger.warn(
        `[inbox] ${route.durable}: ${event.type} ${event.id} failed on delivery ${delivery.deliveryCount} of ${route.maxDeliver} (${error.code}: ${error.message}); retrying`,
      );
    }
    await this.retry(route, delivery);
  }

  private async retry(route: Route, delivery: Delivery): Promise<void> {
    route.stats.retried++;
    const delay = route.backoffMs[delivery.deliveryCount - 1] ?? route.backoffMs[route.backoffMs.length - 1];
    await delivery.nak(delay);
  }

  /** Write the dead letter; false (logged with the message) when the store refused it. */
  private async park(
    route: Route,
    delivery: Delivery,
    letter: {
      reason: DeadLetterReason;
      error: DeadLetterError;
      content: { envelope: EventEnvelope } | { data: Uint8Array };
    },
  ): Promise<boolean> {
    try {
      const id = await this.deadLetters.park(
        {
          subscription: route.type,
          messageId: delivery.id,
          subject: delivery.subject,
          deliveryCount: delivery.deliveryCount,
          ...letter,
        },
        this.now(),
      );
      route.stats.deadLettered++;
      this.logger.warn(
        `[inbox] ${route.durable}: message ${delivery.id} dead-lettered as ${id} (${letter.reason}, delivery ${delivery.deliveryCount}: ${letter.error.code}: ${letter.error.message})`,
      );
      return true;
    } catch (err) {
      const text =
        "envelope" in letter.content
          ? JSON.stringify(letter.content.envelope)
          : Buffer.from(letter.content.data).toString("base64");
      this.logger.error(
        `[inbox] ${route.durable}: could not dead-letter message ${delivery.id} (${letter.reason}: ${letter.error.message}); ` +
          (delivery.isLastDelivery ? "it will not be delivered again" : "nak'ed for another delivery") +
          `; message: ${text}`,
        err,
      );
      return false;
    }
  }

  // ── dead letters ───────────────────────────────────────────────────────

  /** Dead letters of this consumer, newest first (default: status `dead`, 50). */
  listDeadLetters(options: ListDeadLettersOptions = {}): Promise<DeadLetter[]> {
    return this.deadLetters.list(options);
  }

  /**
   * Run the handler again for a dead letter, under the event's claim, in one transaction with marking
   * the letter `replayed`. An event claimed meanwhile is marked replayed without running; a letter
   * replayed before is left alone. A failing handler leaves the letter `dead` (with the error noted)
   * and rejects with the handler's error.
   */
  async replayDeadLetter(id: string): Promise<ReplayResult> {
    const letter = await this.deadLetters.get(id);
    if (letter === null) throw new DeadLetterNotFoundError(id);
    if (letter.status === "replayed") return { id, outcome: "already-replayed" };
    const route = this.routes.get(letter.subscription);
    if (route === undefined)
      throw new DeadLetterNotReplayableError(
        id,
        `${this.consumer} has no ${letter.subscription} subscription`,
      );
    const event = letter.envelope;
    if (event === undefined || envelopeIssues(event).length > 0 || event.type !== route.type)
      throw new DeadLetterNotReplayableError(
        id,
        `it holds no valid ${route.type} envelope (${letter.reason})`,
      );

    const info: DeliveryInfo = {
      deliveryCount: letter.deliveryCount + 1,
      isLastDelivery: true,
      replay: true,
    };
    let outcome: ReplayResult["outcome"];
    try {
      outcome = await runOutboxTransaction(
        this.store,
        async (tx): Promise<ReplayResult["outcome"]> => {
          const current = await this.deadLetters.get(id, tx);
          if (current === null) throw new DeadLetterNotFoundError(id);
          if (current.status === "replayed") return "already-replayed";
          const claimed = await claimEvent(tx, this.claim(route, event, info));
          if (claimed) await route.handler(event, tx, info);
          const result: ReplayOutcome = claimed ? "processed" : "already-processed";
          await this.deadLetters.markReplayed(tx, id, result, this.now());
          return result;
        },
        { traceparent: event.traceparent, afterCommit: this.onCommitted },
      );
    } catch (err) {
      if (isClaimCollision(err)) {
        // a delivery of the same event committed while we ran: it is processed, the letter is done
        await this.store.transaction((tx) =>
          this.deadLetters.markReplayed(tx, id, "already-processed", this.now()),
        );
        outcome = "already-processed";
      } else {
        await this.deadLetters
          .noteReplayFailure(id, describeError(err), this.now())
          .catch((noteErr: unknown) => {
            this.logger.error(`[inbox] could not note the failed replay of ${id}`, noteErr);
          });
        throw err;
      }
    }
    if (outcome !== "already-replayed") {
      route.stats.replayed++;
      if (outcome === "processed") route.stats.processed++;
    }
    this.logger.info(`[inbox] ${route.durable}: dead letter ${id} replayed (${outcome})`);
    return { id, outcome };
  }

  /** Mark a dead letter `discarded` (kept for the record, no longer waiting). */
  discardDeadLetter(id: string): Promise<DeadLetter> {
    return this.deadLetters.discard(id, this.now());
  }
}
