/**
 * Picks the event-bus adapter from configuration: JetStream when a NATS URL is given, otherwise
 * the process-wide in-process bus (every service of the process shares it).
 */
import { AdapterClosedError, PublishFailedError } from "../errors";
import type {
  DeliveryHandler,
  EventBus,
  OutgoingMessage,
  PublishAck,
  Subscription,
  SubscriptionOptions,
} from "./bus.port";
import { deferred, type BusLogger, type Deferred } from "./bus.shared";
import { InProcessEventBus } from "./inprocess.adapter";
import { JetStreamEventBus } from "./jetstream.adapter";

export type { BusLogger } from "./bus.shared";
export { InProcessEventBus } from "./inprocess.adapter";
export { JetStreamEventBus } from "./jetstream.adapter";

export interface EventBusConfig {
  /** NATS server URL(s), comma-separated; absent or empty → the in-process bus. */
  natsUrl?: string;
  /** Connection name (JetStream only). */
  name?: string;
  /** Replicas of the JetStream stream (JetStream only; default 1). */
  replicas?: number;
  logger?: BusLogger;
}

/** A new JetStream bus per call, or a handle on the one in-process bus of this process. */
export function createEventBus(config: EventBusConfig = {}): EventBus {
  if (config.natsUrl !== undefined && config.natsUrl.trim() !== "") {
    return new JetStreamEventBus({
      servers: config.natsUrl,
      name: config.name,
      replicas: config.replicas,
      logger: config.logger,
    });
  }
  return sharedInProcessBus(config.logger);
}

/** The process's in-process bus and how many handles hold it. */
let shared: { bus: InProcessEventBus; handles: number } | undefined;

function sharedInProcessBus(logger: BusLogger | undefined): EventBus {
  if (shared === undefined) shared = { bus: new InProcessEventBus({ logger }), handles: 0 };
  shared.handles++;
  return new SharedBusHandle(shared);
}

/**
 * One holder's view of the shared in-process bus. Closing it stops the holder's subscriptions and
 * rejects its unfinished publishes; the bus itself closes with the last handle.
 */
class SharedBusHandle implements EventBus {
  readonly kind = "inprocess" as const;
  private closed = false;
  private readonly subscriptions = new Set<Subscription>();
  /** Rejected by close(): unfinished publishes of this handle end with it. */
  private readonly closing: Deferred<never> = deferred<never>();

  constructor(private readonly holder: { bus: InProcessEventBus; handles: number }) {
    // nobody may be racing against it when it rejects
    this.closing.promise.catch(() => undefined);
  }

  async open(): Promise<void> {
    if (this.closed) throw new AdapterClosedError("in-process event bus");
    await this.holder.bus.open();
  }

  async publish(message: OutgoingMessage): Promise<PublishAck> {
    if (this.closed) throw new AdapterClosedError("in-process event bus");
    return Promise.race([this.holder.bus.publish(message), this.closing.promise]);
  }

  async subscribe(options: SubscriptionOptions, handler: DeliveryHandler): Promise<Subscription> {
    if (this.closed) throw new AdapterClosedError("in-process event bus");
    const subscription = await this.holder.bus.subscribe(options, handler);
    this.subscriptions.add(subscription);
    return subscription;
  }

  ping(): Promise<void> {
    return this.holder.bus.ping();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.subscriptions].map((s) => s.stop()));
    this.closing.reject(new PublishFailedError("event bus handle closed before the message was settled"));
    this.holder.handles--;
    if (this.holder.handles === 0) {
      if (shared === this.holder) shared = undefined;
      await this.holder.bus.close();
    }
  }
}
