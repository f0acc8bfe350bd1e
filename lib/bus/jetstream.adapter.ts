/**
 * Event bus on NATS JetStream (`nats` 2.x, the client Moleculer's NATS transporter uses).
 *
 * - Stream `EVENTS` on `events.>`: file storage, limits retention, a duplicate window that drops
 *   re-publishes of the same `Nats-Msg-Id` (= message id).
 * - Durable pull consumers with explicit ack; `maxInFlight` is both the consumer's
 *   `max_ack_pending` and a client-side bound on running handlers.
 * - A publish resolves only with a PubAck. One that times out or meets a disconnection is sent
 *   again with the same id until `publishRetryForMs`, then rejects with `PublishFailedError`.
 * See docs/bus.md and docs/adr/0004-event-bus.md.
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  connect,
  headers as natsHeaders,
  nanos,
  type Consumer,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  type StreamConfig,
} from "nats";
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
  type BusLogger,
  type Deferred,
  type ResolvedSubscriptionOptions,
} from "./bus.shared";

export interface JetStreamEventBusOptions {
  /** NATS server URL(s); a comma-separated string is split. */
  servers: string | string[];
  /** Stream name (default `EVENTS`). */
  stream?: string;
  /** Subjects the stream captures (default `["events.>"]`). */
  subjects?: string[];
  /** Same-id publishes within this window are dropped as duplicates (default 120 s). */
  duplicateWindowMs?: number;
  /** Oldest message the stream keeps, 0 = no limit (default 7 days). */
  maxAgeMs?: number;
  /** Wait for one PubAck (default 5 s). */
  publishTimeoutMs?: number;
  /** Keep re-sending a publish that timed out or met a disconnection for this long (default 30 s). */
  publishRetryForMs?: number;
  /** Connection name shown by the server's monitoring. */
  name?: string;
  /** Replicas of the stream (default 1; more than one needs a NATS cluster with that many servers). */
  replicas?: number;
  logger?: BusLogger;
}

const STREAM_NAME_IN_USE = 10058;
const CONSUMER_NOT_FOUND = 10014;
const RETRY_PAUSE_MIN_MS = 50;
const RETRY_PAUSE_MAX_MS = 1_000;
/** A pull request waits this long for messages before a new one is sent. */
const PULL_EXPIRES_MS = 5_000;
const PULL_RETRY_MAX_MS = 5_000;
const DRAIN_TIMEOUT_MS = 2_000;

/** NATS error shape (code, and the JetStream API error when the server answered one). */
interface NatsErrorLike {
  code?: string;
  api_error?: { code?: number; err_code?: number; description?: string };
}

function natsError(err: unknown): NatsErrorLike {
  return typeof err === "object" && err !== null ? (err as NatsErrorLike) : {};
}

/** Errors after which sending the same message again (same id) may succeed. */
function isTransient(err: unknown): boolean {
  const { code, api_error: api } = natsError(err);
  // TIMEOUT: no PubAck in time; 503: no responders (JetStream not ready yet, e.g. right after a restart);
  // DISCONNECT / CONNECTION_REFUSED: the connection dropped under the request
  if (code === "TIMEOUT" || code === "503" || code === "DISCONNECT" || code === "CONNECTION_REFUSED")
    return true;
  // JetStream answered "temporarily unavailable"
  return api?.code === 503;
}

export class JetStreamEventBus implements EventBus {
  readonly kind = "jetstream" as const;
  readonly stream: string;
  private readonly servers: string[];
  private readonly subjects: string[];
  private readonly duplicateWindowMs: number;
  private readonly maxAgeMs: number;
  private readonly publishTimeoutMs: number;
  private readonly publishRetryForMs: number;
  private readonly name: string | undefined;
  /** Replicas the stream is created with, or updated to. */
  readonly replicas: number;
  readonly logger: BusLogger;
  private state: "new" | "opening" | "open" | "closing" | "closed" = "new";
  private opening: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private connection: { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager } | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly subscriptions = new Set<JetStreamSubscription>();
  /** Aborted by close(): wakes publish retries that are pausing. */
  private readonly closeSignal = new AbortController();
  private repairing: Promise<void> | undefined;
  private lastRepairAt = 0;
  private readonly lost: Deferred<Error> = deferred<Error>();

  constructor(options: JetStreamEventBusOptions) {
    const servers = Array.isArray(options.servers) ? options.servers : options.servers.split(",");
    this.servers = servers.map((s) => s.trim()).filter((s) => s.length > 0);
    this.stream = options.stream ?? "EVENTS";
    this.subjects = options.subjects ?? ["events.>"];
    this.duplicateWindowMs = options.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS;
    this.maxAgeMs = options.maxAgeMs ?? 7 * 24 * 60 * 60 * 1000;
    this.publishTimeoutMs = options.publishTimeoutMs ?? 5_000;
    this.publishRetryForMs = options.publishRetryForMs ?? 30_000;
    this.name = options.name;
    this.replicas = options.replicas ?? 1;
    this.logger = options.logger ?? silentLogger;
  }

  open(): Promise<void> {
    if (this.state === "open") return Promise.resolve();
    if (this.state === "closing" || this.state === "closed") {
      return Promise.reject(new AdapterClosedError("JetStream event bus"));
    }
    this.opening ??= this.connect().catch((err: unknown) => {
      this.opening = undefined;
      throw err;
    });
    return this.opening;
  }

  private async connect(): Promise<void> {
    this.state = "opening";
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: this.servers,
        name: this.name,
        // never give up: a restarted server is picked up again, publishes retry meanwhile
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        reconnectJitter: 100,
        pingInterval: 10_000,
        timeout: this.publishTimeoutMs,
      });
    } catch (err) {
      this.state = "new";
      throw new UnavailableError(
        `cannot connect to NATS at ${this.servers.join(",")}`,
        { servers: this.servers },
        err,
      );
    }
    try {
      const jsm = await nc.jetstreamManager({ timeout: this.publishTimeoutMs });
      const js = nc.jetstream({ timeout: this.publishTimeoutMs });
      this.connection = { nc, js, jsm };
      await this.ensureStream();
    } catch (err) {
      this.connection = undefined;
      this.state = "new";
      stopReconnecting(nc);
      await nc.close().catch(() => undefined);
      throw new UnavailableError(
        `JetStream stream ${this.stream} is not available`,
        { stream: this.stream },
        err,
      );
    }
    this.watchConnection(nc);
    // close() may have been called while connecting
    if (this.state === "opening") this.state = "open";
  }

  /**
   * Resolves with the reason when the NATS connection closes for good while the bus is open (the
   * client gave up reconnecting, or the server refused it); never when close() closes it. A process
   * cut off like this cannot do its work: bin/ordermesh.ts exits on it.
   */
  get connectionLost(): Promise<Error> {
    return this.lost.promise;
  }

  private watchConnection(nc: NatsConnection): void {
    void nc.closed().then((err) => {
      if (this.state === "open" || this.state === "opening")
        this.lost.resolve(err ?? new Error("the NATS connection was closed"));
    });
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === "disconnect")
          this.logger.warn(`[bus] NATS disconnected from ${String(status.data)}`);
        else if (status.type === "reconnect")
          this.logger.info(`[bus] NATS reconnected to ${String(status.data)}`);
        else if (status.type === "error") this.logger.error(`[bus] NATS error: ${String(status.data)}`);
      }
    })().catch(() => undefined);
  }

  /**
   * Create the stream, or update it to capture our subjects with our duplicate window and replica
   * count. A replica count the server refuses to change is logged, and the stream kept as it is.
   */
  async ensureStream(): Promise<void> {
    const { jsm } = this.live();
    const config: Partial<StreamConfig> = {
      name: this.stream,
      subjects: this.subjects,
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      duplicate_window: nanos(this.duplicateWindowMs),
      max_age: nanos(this.maxAgeMs),
      num_replicas: this.replicas,
    };
    try {
      await jsm.streams.add(config);
      return;
    } catch (err) {
      // a server may refuse the configuration (replicas > 1 on a single server) before it looks
      // for a stream of that name: whether the stream exists decides
      const inUse = natsError(err).api_error?.err_code === STREAM_NAME_IN_USE;
      if (!inUse && !(await this.streamExists())) throw err;
    }
    // exists with another configuration: keep it, add our subjects, window and replicas
    const { config: current } = await jsm.streams.info(this.stream);
    const subjects = [...new Set([...(current.subjects ?? []), ...this.subjects])];
    const updated: StreamConfig = {
      ...current,
      subjects,
      duplicate_window: nanos(this.duplicateWindowMs),
      max_age: nanos(this.maxAgeMs),
    };
    if (current.num_replicas === this.replicas) {
      await jsm.streams.update(this.stream, updated);
      return;
    }
    try {
      await jsm.streams.update(this.stream, { ...updated, num_replicas: this.replicas });
      this.logger.info(
        `[bus] stream ${this.stream}: replicas changed from ${current.num_replicas} to ${this.replicas}`,
      );
    } catch (err) {
      // the server will not change them (fewer servers than replicas): run on the stream as it is
      this.logger.warn(
        `[bus] stream ${this.stream} keeps ${current.num_replicas} replica(s): changing them to ` +
          `${this.replicas} (JETSTREAM_REPLICAS) was refused: ${errorText(err)}`,
      );
      await jsm.streams.update(this.stream, updated);
    }
  }

  /** Whether the server has our stream; an error counts as no. */
  private streamExists(): Promise<boolean> {
    return this.live()
      .jsm.streams.info(this.stream)
      .then(
        () => true,
        () => false,
      );
  }

  /** Re-create the stream after the server lost it; at most one attempt at a time, one per second. */
  repairStream(): Promise<void> {
    if (this.repairing !== undefined) return this.repairing;
    if (Date.now() - this.lastRepairAt < 1_000 || this.state !== "open") return Promise.resolve();
    this.lastRepairAt = Date.now();
    this.repairing = this.ensureStream()
      .catch((err: unknown) =>
        this.logger.warn(`[bus] stream ${this.stream} not (re)created yet: ${errorText(err)}`),
      )
      .finally(() => {
        this.repairing = undefined;
      });
    return this.repairing;
  }

  publish(message: OutgoingMessage): Promise<PublishAck> {
    if (this.state !== "open") return Promise.reject(new AdapterClosedError("JetStream event bus"));
    const invalid = invalidMessage(message);
    if (invalid !== undefined) return Promise.reject(invalid);
    if (!this.subjects.some((s) => subjectWithin(message.subject, s))) {
      // no stream would take it: the server would answer "no responders" until the retries run out
      return Promise.reject(
        new PublishFailedError(`subject "${message.subject}" is outside stream ${this.stream}`, {
          id: message.id,
          subject: message.subject,
          streamSubjects: this.subjects,
        }),
      );
    }
    const attempt = this.publishWithRetry(message);
    this.inflight.add(attempt);
    void attempt.then(
      () => this.inflight.delete(attempt),
      () => this.inflight.delete(attempt),
    );
    return attempt;
  }

  private async publishWithRetry(message: OutgoingMessage): Promise<PublishAck> {
    const { js } = this.live();
    const hdrs = natsHeaders();
    try {
      for (const [key, value] of Object.entries(message.headers ?? {})) hdrs.set(key, value);
    } catch (err) {
      throw new PublishFailedError(
        `invalid header on ${message.id}: ${errorText(err)}`,
        { id: message.id },
        err,
      );
    }
    const deadline = Date.now() + this.publishRetryForMs;
    let lastError: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        const timeout = Math.max(RETRY_PAUSE_MIN_MS, Math.min(this.publishTimeoutMs, deadline - Date.now()));
        const ack = await js.publish(message.subject, message.data, {
          msgID: message.id,
          headers: hdrs,
          timeout,
        });
        return { duplicate: ack.duplicate, seq: ack.seq };
      } catch (err) {
        lastError = err;
        // anything but a timeout or a lost connection will fail the same way again
        if (!isTransient(err)) break;
        // no responders: JetStream is starting, or the server came back without our stream
        if (natsError(err).code === "503") void this.repairStream();
        // close() stops retrying: the caller gets a rejection, never a guess
        if (this.state !== "open" || Date.now() >= deadline) break;
        await this.pause(Math.min(RETRY_PAUSE_MAX_MS, RETRY_PAUSE_MIN_MS * 2 ** (attempt - 1)), deadline);
        if (this.state !== "open") break;
      }
    }
    throw new PublishFailedError(
      `publish of ${message.id} to ${message.subject} not acknowledged: ${errorText(lastError)}`,
      { id: message.id, subject: message.subject, code: natsError(lastError).code },
      lastError,
    );
  }

  /** Sleep up to `ms` (not past `deadline`), waking early on close(). */
  private pause(ms: number, deadline: number): Promise<void> {
    return delay(Math.max(0, Math.min(ms, deadline - Date.now())), this.closeSignal.signal);
  }

  async subscribe(options: SubscriptionOptions, handler: DeliveryHandler): Promise<Subscription> {
    if (this.state !== "open") throw new AdapterClosedError("JetStream event bus");
    const resolved = resolveSubscriptionOptions(options);
    if (!this.subjects.some((s) => subjectWithin(resolved.subject, s))) {
      throw new InvalidSubscriptionError(`subject "${resolved.subject}" is outside stream ${this.stream}`, {
        subject: resolved.subject,
        streamSubjects: this.subjects,
      });
    }
    await this.ensureConsumer(resolved);
    const subscription = new JetStreamSubscription(this, resolved, handler);
    this.subscriptions.add(subscription);
    subscription.start();
    return subscription;
  }

  /**
   * Create the durable consumer, or update its limits when it exists. A different filter is
   * refused: nats-server 2.9 would apply it silently and lose track of pending messages.
   */
  async ensureConsumer(options: ResolvedSubscriptionOptions): Promise<void> {
    const { jsm } = this.live();
    const existing = await jsm.consumers.info(this.stream, options.durable).catch((err: unknown) => {
      const api = natsError(err).api_error;
      if (api?.err_code === CONSUMER_NOT_FOUND || api?.code === 404) return undefined;
      throw err;
    });
    if (existing !== undefined && existing.config.filter_subject !== options.subject) {
      throw new InvalidSubscriptionError(
        `durable "${options.durable}" filters "${existing.config.filter_subject ?? ""}", not "${options.subject}"`,
        { durable: options.durable, subject: options.subject, existing: existing.config.filter_subject },
      );
    }
    const config: Partial<ConsumerConfig> = {
      durable_name: options.durable,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(options.ackWaitMs),
      max_deliver: options.maxDeliver,
      max_ack_pending: options.maxInFlight,
      // nats-server 2.9 takes one filter subject per consumer
      filter_subject: options.subject,
      deliver_policy: DeliverPolicy.All,
      replay_policy: ReplayPolicy.Instant,
    };
    // creates it, or (same durable, same filter) updates ack wait, max deliver and max ack pending
    await jsm.consumers.add(this.stream, config);
  }

  async ping(): Promise<void> {
    if (this.state !== "open")
      throw new UnavailableError("JetStream event bus is not open", { state: this.state });
    const { jsm } = this.live();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        jsm.getAccountInfo(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("no answer in time")), this.publishTimeoutMs);
          timer.unref();
        }),
      ]);
    } catch (err) {
      throw new UnavailableError(
        `JetStream does not answer: ${errorText(err)}`,
        { servers: this.servers },
        err,
      );
    } finally {
      clearTimeout(timer);
    }
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.state === "opening") await this.opening?.catch(() => undefined);
    this.state = "closing";
    this.closeSignal.abort();
    await Promise.allSettled([...this.subscriptions].map((s) => s.stop()));
    // every publish in flight ends with its PubAck or a rejection before the connection goes
    await Promise.allSettled([...this.inflight]);
    const connection = this.connection;
    this.connection = undefined;
    if (connection !== undefined) {
      stopReconnecting(connection.nc);
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        connection.nc.drain().then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), DRAIN_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
      if (!drained) await connection.nc.close().catch(() => undefined);
    }
    this.state = "closed";
  }

  /** The connection, while it is usable. */
  live(): { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager } {
    if (this.connection === undefined) throw new AdapterClosedError("JetStream event bus");
    return this.connection;
  }

  /** True while subscriptions may keep fetching. */
  get isOpen(): boolean {
    return this.state === "open";
  }

  forget(subscription: JetStreamSubscription): void {
    this.subscriptions.delete(subscription);
  }
}

/** True when every subject `filter` matches (or `filter` itself, when concrete) is matched by `streamSubject`. */
function subjectWithin(filter: string, streamSubject: string): boolean {
  const f = filter.split(".");
  const s = streamSubject.split(".");
  for (let i = 0; i < s.length; i++) {
    const part = s[i];
    if (part === ">") return f.length > i;
    const token = f[i];
    if (token === undefined || token === ">") return false;
    if (part !== "*" && part !== token) return false;
  }
  return f.length === s.length;
}

/**
 * One `subscribe()`: a pull loop on the durable. Pull requests ask for no more messages than
 * there are free handler slots, so nothing waits client-side while its ack wait runs; several
 * pulls overlap to keep the pipe full. A pull that fails (server restarting, consumer lost) is
 * retried with backoff, so the loop outlives disconnections and server restarts.
 */
class JetStreamSubscription implements Subscription {
  private running = 0;
  /** Messages asked for by open pulls and not received yet. */
  private outstanding = 0;
  private stopping = false;
  private failures = 0;
  private backoffUntil = 0;
  private recreate = false;
  private consumer: Consumer | undefined;
  private loop: Promise<void> = Promise.resolve();
  private readonly pulls = new Set<ConsumerMessages>();
  private readonly pulling = new Set<Promise<void>>();
  private changed: Deferred<void> | undefined;
  private idle: Deferred<void> | undefined;
  /** Aborted by stop(): wakes the backoff pause. */
  private readonly stopSignal = new AbortController();
  private readonly refillAt: number;

  constructor(
    private readonly bus: JetStreamEventBus,
    private readonly options: ResolvedSubscriptionOptions,
    private readonly handler: DeliveryHandler,
  ) {
    this.refillAt = Math.max(1, Math.ceil(options.maxInFlight / 4));
  }

  get durable(): string {
    return this.options.durable;
  }

  start(): void {
    this.loop = this.pullForever();
  }

  private async pullForever(): Promise<void> {
    while (!this.stopping) {
      const wait = this.backoffUntil - Date.now();
      if (wait > 0) {
        await delay(wait, this.stopSignal.signal);
        continue;
      }
      const free = this.options.maxInFlight - this.running - this.outstanding;
      // ask again once a quarter of the slots is free, or at once when nothing is asked for
      if (free < this.refillAt && !(free > 0 && this.outstanding === 0)) {
        await this.nextChange();
        continue;
      }
      try {
        if (this.recreate) {
          await this.bus.repairStream();
          await this.bus.ensureConsumer(this.options);
          this.recreate = false;
        }
        this.consumer ??= await this.bus.live().js.consumers.get(this.bus.stream, this.options.durable);
      } catch (err) {
        this.failed(err);
        continue;
      }
      this.startPull(this.consumer, free);
    }
    await Promise.allSettled([...this.pulling]);
  }

  private startPull(consumer: Consumer, count: number): void {
    this.outstanding += count;
    let remaining = count;
    let received = 0;
    const started = Date.now();
    const pull = (async () => {
      let batch: ConsumerMessages | undefined;
      try {
        batch = await consumer.fetch({ max_messages: count, expires: PULL_EXPIRES_MS });
        this.pulls.add(batch);
        for await (const msg of batch) {
          received++;
          if (remaining > 0) {
            remaining--;
            this.outstanding--;
          }
          // after a reconnection a pull may be re-issued and bring more than asked for: the slot bound still holds
          await this.slot();
          if (this.stopping) {
            // received but not handled: hand it back at once rather than after the ack wait
            safely(() => msg.nak(), this.bus.logger);
            continue;
          }
          this.dispatch(msg);
        }
        if (received === 0 && Date.now() - started < PULL_EXPIRES_MS / 2 && !this.stopping) {
          // the server ended the pull at once without messages: do not spin
          this.failed(new Error("pull request ended early"));
        } else {
          this.failures = 0;
        }
      } catch (err) {
        if (!this.stopping) this.failed(err);
      } finally {
        if (batch !== undefined) this.pulls.delete(batch);
        this.outstanding -= remaining;
        this.signal();
      }
    })();
    this.pulling.add(pull);
    void pull.finally(() => this.pulling.delete(pull));
  }

  /** Back off; forget the consumer handle, and recreate the consumer when the server lost it. */
  private failed(err: unknown): void {
    this.failures++;
    this.backoffUntil = Date.now() + Math.min(PULL_RETRY_MAX_MS, 50 * 2 ** Math.min(this.failures, 8));
    this.consumer = undefined;
    // 503 (no responders) when the stream is gone; "not found" / "deleted" when the consumer is
    const text = errorText(err).toLowerCase();
    if (natsError(err).code === "503" || text.includes("not found") || text.includes("deleted"))
      this.recreate = true;
    if (this.failures === 1 || (this.failures & (this.failures - 1)) === 0) {
      this.bus.logger.warn(`[bus] ${this.options.durable}: pull failed ${this.failures}x: ${errorText(err)}`);
    }
  }

  private signal(): void {
    const changed = this.changed;
    this.changed = undefined;
    changed?.resolve();
  }

  private nextChange(): Promise<void> {
    this.changed ??= deferred<void>();
    return this.changed.promise;
  }

  /** Wait until fewer than maxInFlight handlers run (or the subscription stops). */
  private async slot(): Promise<void> {
    while (this.running >= this.options.maxInFlight && !this.stopping) await this.nextChange();
  }

  private dispatch(msg: JsMsg): void {
    this.running++;
    const delivery = new JetStreamDelivery(msg, this.options.maxDeliver, this.bus.logger);
    void this.invoke(delivery).finally(() => {
      this.running--;
      this.signal();
      if (this.running === 0) this.idle?.resolve();
    });
  }

  private async invoke(delivery: JetStreamDelivery): Promise<void> {
    try {
      await this.handler(delivery);
    } catch (err) {
      // a handler that throws is nak'ed with the subscription's delay
      this.bus.logger.warn(
        `[bus] ${this.options.durable}: handler failed on ${delivery.id} (delivery ${delivery.deliveryCount}): ${errorText(err)}`,
      );
      await delivery.nak(this.options.nakDelayMs);
    }
  }

  async stop(timeoutMs: number = DEFAULT_STOP_TIMEOUT_MS): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.stopSignal.abort();
      this.signal();
      // unsubscribes at once; each pull then sees the end of its iterator
      for (const batch of this.pulls) void batch.close().catch(() => undefined);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
      timer.unref();
    });
    await Promise.race([this.loop, timeout]);
    if (this.running > 0) {
      this.idle ??= deferred<void>();
      await Promise.race([this.idle.promise, timeout]);
    }
    clearTimeout(timer);
    this.bus.forget(this);
  }
}

class JetStreamDelivery implements Delivery {
  readonly id: string;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly deliveryCount: number;
  readonly isLastDelivery: boolean;
  private done = false;

  constructor(
    private readonly msg: JsMsg,
    maxDeliver: number,
    private readonly logger: BusLogger,
  ) {
    const fields: Record<string, string> = {};
    let id = "";
    if (msg.headers !== undefined) {
      for (const [key, values] of msg.headers) {
        if (key === "Nats-Msg-Id") id = values[0] ?? "";
        // Nats-* headers belong to the server, not to the publisher
        else if (!key.startsWith("Nats-")) fields[key] = values[0] ?? "";
      }
    }
    this.id = id !== "" ? id : `${msg.info.stream}:${msg.seq}`;
    this.subject = msg.subject;
    this.data = msg.data;
    this.headers = fields;
    this.deliveryCount = msg.info.deliveryCount;
    this.isLastDelivery = msg.info.deliveryCount >= maxDeliver;
  }

  get settled(): boolean {
    return this.done;
  }

  async ack(): Promise<void> {
    if (this.claim()) safely(() => this.msg.ack(), this.logger);
  }

  async nak(delayMs?: number): Promise<void> {
    if (this.claim())
      safely(() => this.msg.nak(delayMs !== undefined && delayMs > 0 ? delayMs : undefined), this.logger);
  }

  async term(reason?: string): Promise<void> {
    if (!this.claim()) return;
    if (reason !== undefined) this.logger.info(`[bus] terminated ${this.id}: ${reason}`);
    safely(() => this.msg.term(), this.logger);
  }

  async working(): Promise<void> {
    if (!this.done) safely(() => this.msg.working(), this.logger);
  }

  private claim(): boolean {
    if (this.done) return false;
    this.done = true;
    return true;
  }
}

/** Settlement on a closed connection throws; the server then redelivers after the ack wait. */
function safely(action: () => void, logger: BusLogger): void {
  try {
    action();
  } catch (err) {
    logger.warn(`[bus] settlement not sent: ${errorText(err)}`);
  }
}

/**
 * nats.js 2.29 `close()` does not end a reconnect loop already running (the connection is down):
 * the loop would keep dialling, and keep the process alive, forever. Its own flag stops it.
 */
function stopReconnecting(nc: NatsConnection): void {
  const protocol = (nc as unknown as { protocol?: { abortReconnect?: boolean } }).protocol;
  if (protocol !== undefined) protocol.abortReconnect = true;
}

/** Sleep `ms`, or less when `signal` aborts. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref();
    signal.addEventListener("abort", done);
  });
}
