/**
 * Transactional outbox for a service: `this.transaction(async (tx) => …)` runs a store
 * transaction in which writes to the service's collections and `tx.publish(event)` commit or roll
 * back together. Each service instance runs one relay (lib/outbox/outbox.relay.ts, on the shared
 * lease-claiming worker of lib/work/) that publishes the committed events to the bus; it wakes right
 * after a commit that published events, and polls as a fallback. Actions `outboxStats`, `outboxDead`
 * and `outboxReplay` back the REPL's `outbox` command. Guarantees and operations: docs/outbox.md.
 */
import type { Context, ServiceSchema } from "moleculer";
import { defineMixin } from "./schema";
import type { Clock } from "../lib/clock";
import { infrastructureOf } from "../lib/infrastructure";
import { runOutboxTransaction, type OutboxRow, type OutboxTransaction } from "../lib/outbox/outbox";
import { OutboxRelay, type OutboxRelayOptions, type OutboxStats } from "../lib/outbox/outbox.relay";
import type { DocumentStore } from "../lib/store/store.port";
import { isTraceparent } from "../models/events";

/** Relay tuning (docs/outbox.md); store, bus, owner and logger come from the service. */
export type OutboxMixinOptions = Omit<OutboxRelayOptions, "store" | "bus" | "owner" | "logger">;

/** Where a transaction's `traceparent` comes from: a Moleculer context (`ctx.meta.traceparent`) or given. */
export type TraceSource = { meta?: unknown } | { traceparent?: string | undefined };

/** What the mixin adds to `this`. */
export interface OutboxThis {
  /** This instance's relay (stats, dead rows, replay). */
  outbox: OutboxRelay;
  /**
   * Run `fn` in a transaction of the service's store with `tx.publish`. The body may run more than
   * once (conflicts are retried): no side effects outside `tx`.
   */
  transaction<R>(fn: (tx: OutboxTransaction) => Promise<R>, trace?: TraceSource): Promise<R>;
}

interface OutboxVars extends OutboxThis {
  outboxStore: DocumentStore | undefined;
  /** The `clock` option: events' `occurredAt` and the relay's time (the real time when absent). */
  outboxClock: Clock | undefined;
}

/** Mixin factory: `mixins: [InfrastructureMixin({ store: true, bus: true }), OutboxMixin()]`. */
export function OutboxMixin(options: OutboxMixinOptions = {}): Partial<ServiceSchema> {
  return defineMixin<OutboxVars>({
    // ── actions ──────────────────────────────────────────────────────────
    actions: {
      outboxStats: {
        visibility: "public",
        handler(): Promise<OutboxStats> {
          return this.outbox.stats();
        },
      },
      outboxDead: {
        visibility: "public",
        params: {
          limit: { type: "number", integer: true, positive: true, max: 1000, optional: true, convert: true },
        },
        handler(ctx: Context<{ limit?: number }>): Promise<OutboxRow[]> {
          return this.outbox.listDead(ctx.params.limit ?? 50);
        },
      },
      outboxReplay: {
        visibility: "public",
        params: { id: { type: "string", min: 1, max: 128 } },
        handler(ctx: Context<{ id: string }>): Promise<boolean> {
          return this.outbox.replayDead(ctx.params.id);
        },
      },
    },

    // ── methods ──────────────────────────────────────────────────────────
    methods: {
      transaction<R>(fn: (tx: OutboxTransaction) => Promise<R>, trace?: TraceSource): Promise<R> {
        const store = this.outboxStore;
        if (store === undefined) {
          return Promise.reject(new Error(`${this.fullName}: transaction() before the service started`));
        }
        const relay = this.outbox;
        return runOutboxTransaction(store, fn, {
          traceparent: traceparentOf(trace),
          afterCommit: () => relay.wake(),
          clock: this.outboxClock,
        });
      },
    },

    // ── lifecycle ────────────────────────────────────────────────────────
    async started() {
      const infra = infrastructureOf(this.broker);
      // not the process's clock by default: the inbox writes outbox rows of this store too, stamped
      // by the real time, and a relay on a manual clock would see them as not yet due
      this.outboxClock = options.clock;
      this.outboxStore = await infra.store(this.name);
      this.outbox = new OutboxRelay({
        ...options,
        clock: this.outboxClock,
        store: this.outboxStore,
        bus: await infra.bus(),
        owner: `${this.broker.nodeID}:${this.fullName}`,
        logger: this.logger,
      });
      const relay = this.outbox;
      if (this.broker.started) {
        await relay.start();
        return;
      }
      // Relay once every local service has started, so this process's subscriptions exist before
      // its first event goes out (the in-process bus keeps a message nobody subscribed to in memory only).
      this.broker.localBus.once("$broker.started", () => {
        relay.start().catch((err: unknown) => this.logger.error("outbox relay did not start", err));
      });
    },

    async stopped() {
      // undefined when started() failed before creating it
      await (this.outbox as OutboxRelay | undefined)?.stop();
    },
  });
}

/** The W3C traceparent of `trace`, when it carries a well-formed one; anything else is ignored. */
function traceparentOf(trace: TraceSource | undefined): string | undefined {
  if (trace === undefined || trace === null) return undefined;
  const candidate =
    "traceparent" in trace
      ? trace.traceparent
      : "meta" in trace && typeof trace.meta === "object" && trace.meta !== null
        ? (trace.meta as { traceparent?: unknown }).traceparent
        : undefined;
  return isTraceparent(candidate) ? candidate : undefined;
}
