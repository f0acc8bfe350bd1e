/**
 * In-process event bus for embedded mode (one process runs every service). Mirrors JetStream's
 * semantics (durables, explicit ack, nak delay, ack wait, max deliver, max ack pending, dedupe
 * window, replay to a durable created later) with one durability rule in place of a disk:
 * `publish` resolves only once every durable that existed at publish time has settled the
 * message for good (acked, terminated, or out of deliveries). The outbox relay marks its row
 * published only then, so a crash before that leaves the row pending and it is published again.
 * See docs/bus.md and docs/adr/0004-event-bus.md.
 */
import { AdapterClosedError, PublishFailedError, UnavailableError } from "../errors";
import type {
  Delivery,
  DeliveryHandler,
  EventBus,
  OutgoingMessage,
  PublishAck,
  Subscription,
  SubscriptionOptions,
} from "./bus.port";
import {
  DEFAULT_DUPLICATE_WINDOW_MS,
  DEFAULT_STOP_TIMEOUT_MS,
  InvalidSubscriptionError,
  deferred,
  errorText,
  invalidMessage,
  resolveSubscriptionOptions,
  silentLogger,
  subjectFilter,
  type BusLogger,
  type Deferred,
  type ResolvedSubscriptionOptions,
} from "./bus.shared";

export interface InProcessEventBusOptions {
  /** A second publish with the same id within this window is a duplicate (default 120 s). */
  duplicateWindowMs?: number;
  /** Messages kept for durables created later: at most this many (default 10 000)… */
  retainMax?: number;
  /** …and none older than this (default 24 h). */
  retainMs?: number;
  logger?: BusLogger;
}

/** One published message, shared by every durable that receives it. */
interface StoredMessage {
  readonly seq: number;
  readonly id: string;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly publishedAt: number;
  /** Durables that existed at publish time and have not settled it for good yet. */
  readonly awaiting: Set<Durable>;
  /** Resolves when `awaiting` empties; rejects when the bus closes first. */
  readonly durable: Deferred<void>;
}

/** A message's state within one durable until it is settled for good. */
interface Entry {
  readonly message: StoredMessage;
  deliveries: number;
  current: InProcessDelivery | undefined;
  delayTimer: NodeJS.Timeout | undefined;
}

/** Append-only queue with O(1) shift. */
class Queue<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  peek(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined as T;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i] as T;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

export class InProcessEventBus implements EventBus {
  readonly kind = "inprocess" as const;
  private readonly duplicateWindowMs: number;
  private readonly retainMax: number;
  private readonly retainMs: number;
  readonly logger: BusLogger;
  private state: "new" | "open" | "closing" | "closed" = "new";
  private seq = 0;
  /** Published ids, in publish order, for the duplicate window (no payloads kept here). */
  private readonly byId = new Map<string, { seq: number; publishedAt: number; durable: Promise<void> }>();
  /** Messages a durable created later replays (bounded by retainMax / retainMs). */
  private readonly retained = new Queue<StoredMessage>();
  private readonly durables = new Map<string, Durable>();
  /** Messages whose publish has not resolved yet. */
  private readonly unsettled = new Set<StoredMessage>();
  private closing: Promise<void> | undefined;

  constructor(options: InProcessEventBusOptions = {}) {
    this.duplicateWindowMs = options.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS;
    this.retainMax = options.retainMax ?? 10_000;
    this.retainMs = options.retainMs ?? 24 * 60 * 60 * 1000;
    this.logger = options.logger ?? silentLogger;
  }

  async open(): Promise<void> {
    if (this.state === "closing" || this.state === "closed")
      throw new AdapterClosedError("in-process event bus");
    this.state = "open";
  }

  async publish(message: OutgoingMessage): Promise<PublishAck> {
    if (this.state !== "open") throw new AdapterClosedError("in-process event bus");
    const invalid = invalidMessage(message);
    if (invalid !== undefined) throw invalid;
    const now = Date.now();
    this.forgetExpiredIds(now);
    const original = this.byId.get(message.id);
    if (original !== undefined) {
      // a duplicate resolves when the original is durable, never before
      await original.durable;
      return { duplicate: true, seq: original.seq };
    }

    const stored: StoredMessage = {
      seq: ++this.seq,
      id: message.id,
      subject: message.subject,
      data: Uint8Array.from(message.data),
      headers: { ...message.headers },
      publishedAt: now,
      awaiting: new Set(),
      durable: deferred<void>(),
    };
    // duplicates await it too; a rejection nobody awaits any more must not crash the process
    stored.durable.promise.catch(() => undefined);
    this.byId.set(stored.id, { seq: stored.seq, publishedAt: now, durable: stored.durable.promise });
    this.retained.push(stored);
    this.trimRetained(now);

    const targets: Durable[] = [];
    for (const durable of this.durables.values()) {
      if (durable.matches(stored.subject)) {
        stored.awaiting.add(durable);
        targets.push(durable);
      }
    }
    if (stored.awaiting.size === 0) {
      stored.durable.resolve();
    } else {
      this.unsettled.add(stored);
      for (const durable of targets) durable.enqueue(stored);
    }
    await stored.durable.promise;
    return { duplicate: false, seq: stored.seq };
  }

  async subscribe(options: SubscriptionOptions, handler: DeliveryHandler): Promise<Subscription> {
    if (this.state !== "open") throw new AdapterClosedError("in-process event bus");
    const resolved = resolveSubscriptionOptions(options);
    let durable = this.durables.get(resolved.durable);
    if (durable === undefined) {
      durable = new Durable(this, resolved);
      this.durables.set(resolved.durable, durable);
      // like a JetStream consumer with deliver policy "all": replay what the stream still holds
      this.trimRetained(Date.now());
      for (const message of this.retained) {
        if (durable.matches(message.subject)) durable.enqueue(message);
      }
    } else if (durable.options.subject !== resolved.subject) {
      throw new InvalidSubscriptionError(
        `durable "${resolved.durable}" filters "${durable.options.subject}", not "${resolved.subject}"`,
        { durable: resolved.durable, subject: resolved.subject, existing: durable.options.subject },
      );
    } else {
      // the latest subscriber's limits apply to the durable, as a JetStream consumer update would
      durable.options = resolved;
    }
    const subscriber = new Subscriber(durable, handler);
    durable.attach(subscriber);
    return subscriber;
  }

  async ping(): Promise<void> {
    if (this.state !== "open")
      throw new UnavailableError("in-process event bus is not open", { state: this.state });
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.state = "closing";
    await Promise.all([...this.durables.values()].flatMap((d) => d.subscriberList().map((s) => s.stop())));
    for (const durable of this.durables.values()) durable.dispose();
    // nothing will settle these any more: their publishers must treat them as not sent
    for (const message of this.unsettled) {
      message.durable.reject(
        new PublishFailedError("in-process event bus closed before every subscription settled the message", {
          id: message.id,
          subject: message.subject,
          awaiting: [...message.awaiting].map((d) => d.options.durable),
        }),
      );
    }
    this.unsettled.clear();
    this.durables.clear();
    this.byId.clear();
    this.retained.clear();
    this.state = "closed";
  }

  /** True until `close()` starts: new deliveries happen only then. */
  get isOpen(): boolean {
    return this.state === "open";
  }

  /** True until `close()` ends: handlers still running may settle their deliveries. */
  get isSettling(): boolean {
    return this.state === "open" || this.state === "closing";
  }

  /** Called by a durable when it settled a message for good. */
  settledBy(message: StoredMessage, durable: Durable): void {
    if (!message.awaiting.delete(durable)) return;
    if (message.awaiting.size === 0) {
      this.unsettled.delete(message);
      message.durable.resolve();
    }
  }

  private forgetExpiredIds(now: number): void {
    for (const [id, message] of this.byId) {
      if (now - message.publishedAt < this.duplicateWindowMs) break;
      this.byId.delete(id);
    }
  }

  private trimRetained(now: number): void {
    while (this.retained.length > this.retainMax) this.retained.shift();
    for (let oldest = this.retained.peek(); oldest !== undefined; oldest = this.retained.peek()) {
      if (now - oldest.publishedAt < this.retainMs) break;
      this.retained.shift();
    }
  }
}

/** A durable consumer: its pending, delayed and unacknowledged messages, shared by its subscribers. */
class Durable {
  readonly matches: (subject: string) => boolean;
  /** Messages not yet settled for good, by sequence. */
  private readonly entries = new Map<number, Entry>();
  private readonly fresh = new Queue<Entry>();
  /** Nak'ed or expired messages, delivered before fresh ones (as JetStream does). */
  private readonly redeliver = new Queue<Entry>();
  private readonly unacked = new Set<Entry>();
  private readonly subscribers: Subscriber[] = [];
  private nextSubscriber = 0;
  private pumping = false;

  constructor(
    readonly bus: InProcessEventBus,
    public options: ResolvedSubscriptionOptions,
  ) {
    this.matches = subjectFilter(options.subject);
  }

  enqueue(message: StoredMessage): void {
    if (this.entries.has(message.seq)) return;
    const entry: Entry = { message, deliveries: 0, current: undefined, delayTimer: undefined };
    this.entries.set(message.seq, entry);
    this.fresh.push(entry);
    this.pump();
  }

  attach(subscriber: Subscriber): void {
    this.subscribers.push(subscriber);
    this.pump();
  }

  detach(subscriber: Subscriber): void {
    const i = this.subscribers.indexOf(subscriber);
    if (i >= 0) this.subscribers.splice(i, 1);
  }

  subscriberList(): Subscriber[] {
    return [...this.subscribers];
  }

  /** Deliver while a subscriber has room and the durable is under its max ack pending. */
  pump(): void {
    if (this.pumping || !this.bus.isOpen) return;
    this.pumping = true;
    try {
      while (this.unacked.size < this.options.maxInFlight) {
        const subscriber = this.pickSubscriber();
        if (subscriber === undefined) return;
        const entry = this.redeliver.shift() ?? this.fresh.shift();
        if (entry === undefined) return;
        // an entry settled while queued (e.g. by close) is skipped
        if (!this.entries.has(entry.message.seq)) continue;
        this.deliver(entry, subscriber);
      }
    } finally {
      this.pumping = false;
    }
  }

  private pickSubscriber(): Subscriber | undefined {
    const count = this.subscribers.length;
    for (let i = 0; i < count; i++) {
      const candidate = this.subscribers[(this.nextSubscriber + i) % count];
      if (candidate !== undefined && candidate.running < this.options.maxInFlight) {
        this.nextSubscriber = (this.nextSubscriber + i + 1) % count;
        return candidate;
      }
    }
    return undefined;
  }

  private deliver(entry: Entry, subscriber: Subscriber): void {
    entry.deliveries++;
    const delivery = new InProcessDelivery(this, entry, entry.deliveries >= this.options.maxDeliver);
    entry.current = delivery;
    this.unacked.add(entry);
    delivery.armAckWait(this.options.ackWaitMs);
    subscriber.run(delivery);
  }

  /** Acked, terminated, or out of deliveries: this durable is done with the message. */
  finish(entry: Entry): void {
    this.unacked.delete(entry);
    entry.current = undefined;
    if (entry.delayTimer !== undefined) clearTimeout(entry.delayTimer);
    entry.delayTimer = undefined;
    this.entries.delete(entry.message.seq);
    this.bus.settledBy(entry.message, this);
    this.pump();
  }

  /** Nak'ed or ack wait expired: deliver again after `delayMs`, unless that was the last delivery. */
  retry(entry: Entry, delayMs: number, why: string): void {
    this.unacked.delete(entry);
    entry.current = undefined;
    if (entry.deliveries >= this.options.maxDeliver) {
      // max deliveries reached: JetStream stops delivering it; so do we
      this.bus.logger.warn(
        `[bus] ${this.options.durable}: message ${entry.message.id} ${why} on its last delivery (${entry.deliveries}); not redelivered`,
      );
      this.finish(entry);
      return;
    }
    if (delayMs > 0) {
      entry.delayTimer = setTimeout(() => {
        entry.delayTimer = undefined;
        this.redeliver.push(entry);
        this.pump();
      }, delayMs);
      entry.delayTimer.unref();
    } else {
      this.redeliver.push(entry);
    }
    this.pump();
  }

  /** Clear every timer; the durable will not deliver again. */
  dispose(): void {
    for (const entry of this.entries.values()) {
      if (entry.delayTimer !== undefined) clearTimeout(entry.delayTimer);
      entry.current?.disarm();
    }
    this.entries.clear();
    this.unacked.clear();
    this.fresh.clear();
    this.redeliver.clear();
  }
}

/** One `subscribe()` call: a handler attached to a durable. */
class Subscriber implements Subscription {
  running = 0;
  private stopped = false;
  private idle: Deferred<void> | undefined;

  constructor(
    private readonly owner: Durable,
    private readonly handler: DeliveryHandler,
  ) {}

  get durable(): string {
    return this.owner.options.durable;
  }

  run(delivery: InProcessDelivery): void {
    this.running++;
    // never run a handler inside publish()'s or ack()'s call stack
    queueMicrotask(() => {
      this.invoke(delivery).finally(() => {
        this.running--;
        if (this.running === 0) this.idle?.resolve();
        if (!this.stopped) this.owner.pump();
      });
    });
  }

  private async invoke(delivery: InProcessDelivery): Promise<void> {
    try {
      await this.handler(delivery);
    } catch (err) {
      // a handler that throws is nak'ed with the subscription's delay
      this.owner.bus.logger.warn(
        `[bus] ${this.durable}: handler failed on ${delivery.id} (delivery ${delivery.deliveryCount}): ${errorText(err)}`,
      );
      await delivery.nak(this.owner.options.nakDelayMs);
    }
  }

  async stop(timeoutMs: number = DEFAULT_STOP_TIMEOUT_MS): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.owner.detach(this);
    }
    if (this.running === 0) return;
    this.idle ??= deferred<void>();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.idle.promise,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }
}

class InProcessDelivery implements Delivery {
  readonly id: string;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly deliveryCount: number;
  private done = false;
  private ackTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly owner: Durable,
    private readonly entry: Entry,
    readonly isLastDelivery: boolean,
  ) {
    const { message } = entry;
    this.id = message.id;
    this.subject = message.subject;
    this.data = message.data;
    this.headers = message.headers;
    this.deliveryCount = entry.deliveries;
  }

  get settled(): boolean {
    return this.done;
  }

  /** Start (or restart) the ack deadline; on expiry the message is redelivered. */
  armAckWait(ackWaitMs: number): void {
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      if (!this.claim()) return;
      this.owner.retry(this.entry, 0, "expired its ack wait");
    }, ackWaitMs);
    this.ackTimer.unref();
  }

  disarm(): void {
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.done = true;
  }

  async ack(): Promise<void> {
    if (this.claim()) this.owner.finish(this.entry);
  }

  async term(reason?: string): Promise<void> {
    if (!this.claim()) return;
    this.owner.bus.logger.info(
      `[bus] ${this.owner.options.durable}: terminated ${this.id}${reason === undefined ? "" : `: ${reason}`}`,
    );
    this.owner.finish(this.entry);
  }

  async nak(delayMs = 0): Promise<void> {
    if (this.claim()) this.owner.retry(this.entry, Math.max(0, delayMs), "was nak'ed");
  }

  async working(): Promise<void> {
    if (!this.done && this.owner.bus.isSettling) this.armAckWait(this.owner.options.ackWaitMs);
  }

  /** The first settlement wins; later calls (and calls after close) are ignored. */
  private claim(): boolean {
    if (this.done || !this.owner.bus.isSettling || this.entry.current !== this) return false;
    this.disarm();
    return true;
  }
}
