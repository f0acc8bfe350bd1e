/**
 * The adapters one process uses, created from configuration and shared by the services of
 * that process: a document store per service, one event bus, one key-value store, one clock. Each
 * adapter is opened on first use and closed when the broker stops.
 */
import type { ServiceBroker } from "moleculer";
import { systemClock, type Clock } from "./clock";
import type { Config } from "./config";
import { createEventBus, type EventBusConfig } from "./bus";
import type { EventBus } from "./bus/bus.port";
import { createKeyValueStore } from "./kv";
import type { KeyValueStore } from "./kv/kv.port";
import { createDocumentStore } from "./store";
import type { DocumentStore } from "./store/store.port";

/** Minimal logger shape shared by Moleculer's loggers and adapters. */
export interface InfraLogger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

export class Infrastructure {
  private readonly stores = new Map<string, Promise<DocumentStore>>();
  private busPromise: Promise<EventBus> | undefined;
  private kvPromise: Promise<KeyValueStore> | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    readonly config: Config,
    private readonly logger: InfraLogger,
    /** The time every service of this process reads (a manual clock in tests). */
    readonly clock: Clock = systemClock,
  ) {}

  /** The document store owned by `service` (its own file or database), opened. */
  store(service: string): Promise<DocumentStore> {
    let pending = this.stores.get(service);
    if (pending === undefined) {
      const store = createDocumentStore({
        service,
        dataDir: this.config.dataDir,
        mongoUrl: this.config.mongoUrl,
      });
      pending = this.opened(store, `${service} store (${store.kind})`);
      this.stores.set(service, pending);
    }
    return pending;
  }

  /** The process's event bus (JetStream when NATS is configured, in-process otherwise), opened. */
  bus(): Promise<EventBus> {
    if (this.busPromise === undefined) {
      const bus = createEventBus({ ...eventBusConfig(this.config), logger: this.logger });
      this.busPromise = this.opened(bus, `event bus (${bus.kind})`);
    }
    return this.busPromise;
  }

  /** The key-value store (Redis when configured, memory otherwise), opened. */
  kv(): Promise<KeyValueStore> {
    if (this.kvPromise === undefined) {
      const kv = createKeyValueStore({ redisUrl: this.config.redisUrl });
      this.kvPromise = this.opened(kv, `key-value store (${kv.kind})`);
    }
    return this.kvPromise;
  }

  /** Close everything opened, once; errors are logged, not thrown, so every adapter gets closed. */
  close(): Promise<void> {
    this.closing ??= this.closeAll();
    return this.closing;
  }

  private async opened<T extends { open(): Promise<void>; close(): Promise<void> }>(
    adapter: T,
    what: string,
  ): Promise<T> {
    try {
      await adapter.open();
    } catch (err) {
      // Release what open() may have half-acquired, then fail the caller.
      await adapter.close().catch(() => undefined);
      throw err;
    }
    this.logger.info(`${what} open`);
    return adapter;
  }

  private async closeAll(): Promise<void> {
    const pending: Promise<{ close(): Promise<void> }>[] = [...this.stores.values()];
    if (this.busPromise !== undefined) pending.push(this.busPromise);
    if (this.kvPromise !== undefined) pending.push(this.kvPromise);
    await Promise.all(
      pending.map(async (p) => {
        // an adapter whose open() failed was already released by opened(): nothing to close
        const adapter = await p.catch(() => undefined);
        if (adapter === undefined) return;
        try {
          await adapter.close();
        } catch (err) {
          // one string: a logger given (message, error) may drop the error
          this.logger.error(`closing an adapter failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      }),
    );
  }
}

/** The event bus a configuration asks for: JetStream on NATS_URL with JETSTREAM_REPLICAS, or in-process. */
export function eventBusConfig(config: Pick<Config, "natsServers" | "jetstreamReplicas">): EventBusConfig {
  return {
    natsUrl: config.natsServers.join(",") || undefined,
    replicas: config.jetstreamReplicas,
  };
}

const registry = new WeakMap<ServiceBroker, Infrastructure>();

/** Attach the process's infrastructure to a broker (done by moleculer.config's `created`). */
export function attachInfrastructure(broker: ServiceBroker, infrastructure: Infrastructure): void {
  registry.set(broker, infrastructure);
}

/** The infrastructure of a broker; throws when the broker was not built from moleculer.config. */
export function infrastructureOf(broker: ServiceBroker): Infrastructure {
  const infra = registry.get(broker);
  if (infra === undefined)
    throw new Error("broker has no infrastructure: create it with createBrokerOptions()");
  return infra;
}
