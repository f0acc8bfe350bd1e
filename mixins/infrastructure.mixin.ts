/**
 * Gives a service the adapters it declares (its own document store, the event bus, the
 * key-value store), opened before the service starts, plus a `health` action that pings each
 * of them. The gateway's /readyz asks every required service for its health.
 */
import { Errors, type Context, type ServiceSchema } from "moleculer";
import { defineMixin } from "./schema";
import type { EventBus } from "../lib/bus/bus.port";
import type { Clock } from "../lib/clock";
import { infrastructureOf } from "../lib/infrastructure";
import type { KeyValueStore } from "../lib/kv/kv.port";
import type { DocumentStore } from "../lib/store/store.port";

export interface InfrastructureNeeds {
  /** Open the service's own document store (named after the service). */
  store?: boolean;
  bus?: boolean;
  kv?: boolean;
}

/** What the mixin adds to `this`. */
export interface InfrastructureThis {
  /** The process's clock: read the time here, never from Date.now() in a rule. */
  clock: Clock;
  store: DocumentStore;
  bus: EventBus;
  kv: KeyValueStore;
}

export interface HealthReport {
  service: string;
  nodeID: string;
  healthy: boolean;
  checks: Record<string, { ok: boolean; error?: string; kind?: string }>;
}

/** Mixin factory: `mixins: [InfrastructureMixin({ store: true, bus: true })]`. */
export function InfrastructureMixin(needs: InfrastructureNeeds): Partial<ServiceSchema> {
  return defineMixin<InfrastructureThis>({
    // ── actions ──────────────────────────────────────────────────────────
    actions: {
      /** The cheapest call a service answers: the same-run ceiling of bench/orders.bench.ts. */
      ping: {
        visibility: "public",
        handler(): { nodeID: string } {
          return { nodeID: this.broker.nodeID };
        },
      },

      health: {
        visibility: "public",
        async handler(_ctx: Context): Promise<HealthReport> {
          const checks: HealthReport["checks"] = {};
          const probe = async (name: string, target: { kind: string; ping(): Promise<void> } | undefined) => {
            if (target === undefined) return;
            try {
              await target.ping();
              checks[name] = { ok: true, kind: target.kind };
            } catch (err) {
              checks[name] = {
                ok: false,
                kind: target.kind,
                error: err instanceof Error ? err.message : String(err),
              };
            }
          };
          await Promise.all([
            probe("store", needs.store === true ? this.store : undefined),
            probe("bus", needs.bus === true ? this.bus : undefined),
            probe("kv", needs.kv === true ? this.kv : undefined),
          ]);
          const report: HealthReport = {
            service: this.name,
            nodeID: this.broker.nodeID,
            healthy: Object.values(checks).every((c) => c.ok),
            checks,
          };
          if (!report.healthy) {
            throw new Errors.MoleculerRetryableError(
              `${this.name} is unhealthy`,
              503,
              "SERVICE_UNHEALTHY",
              report,
            );
          }
          return report;
        },
      },
    },

    // ── lifecycle ────────────────────────────────────────────────────────
    created() {
      // Fails fast when the broker was not built from moleculer.config.
      this.clock = infrastructureOf(this.broker).clock;
    },

    async started() {
      const infra = infrastructureOf(this.broker);
      if (needs.store === true) this.store = await infra.store(this.name);
      if (needs.bus === true) this.bus = await infra.bus();
      if (needs.kv === true) this.kv = await infra.kv();
    },
  });
}
