/**
 * Gives a service named circuit breakers (lib/breaker.ts): `this.createBreaker(options)` in
 * `created`/`started`, then `breaker.fire(() => call())`. Every state change is logged and
 * broadcast to the cluster as `breaker.stateChanged`; the `breakers` action lists each breaker's
 * state and counters (the REPL's `call <service>.breakers`). Breakers are shut down on stop.
 */
import type { ServiceSchema } from "moleculer";
import { defineMixin } from "./schema";
import { Breaker, type BreakerOptions, type BreakerStateChange, type BreakerStats } from "../lib/breaker";
import { BROADCASTS } from "../lib/constants";

/** What the mixin adds to `this`. */
export interface BreakerThis {
  /** Create (once per name) a breaker whose state changes are logged and broadcast. */
  createBreaker(options: Omit<BreakerOptions, "onStateChange">): Breaker;
}

interface BreakerVars extends BreakerThis {
  breakers: Map<string, Breaker>;
}

/** Payload of the `breaker.stateChanged` broadcast. */
export interface BreakerBroadcast extends BreakerStateChange {
  service: string;
  nodeID: string;
}

export function BreakerMixin(): Partial<ServiceSchema> {
  return defineMixin<BreakerVars>({
    // ── actions ──────────────────────────────────────────────────────────
    actions: {
      breakers: {
        visibility: "public",
        handler(): BreakerStats[] {
          return [...this.breakers.values()].map((breaker) => breaker.stats());
        },
      },
    },

    // ── methods ──────────────────────────────────────────────────────────
    methods: {
      createBreaker(options: Omit<BreakerOptions, "onStateChange">): Breaker {
        const existing = this.breakers.get(options.name);
        if (existing !== undefined) return existing;
        const breaker = new Breaker({
          ...options,
          onStateChange: (change) => {
            // every transition is worth an operator's attention, the recovery as much as the trip
            this.logger.warn(`breaker ${change.breaker}: ${change.from} → ${change.to}`);
            const payload: BreakerBroadcast = { ...change, service: this.name, nodeID: this.broker.nodeID };
            this.broker.broadcast(BROADCASTS.breakerStateChanged, payload).catch((err: unknown) => {
              this.logger.warn("could not broadcast a breaker state change", err);
            });
          },
        });
        this.breakers.set(options.name, breaker);
        return breaker;
      },
    },

    // ── lifecycle ────────────────────────────────────────────────────────
    created() {
      this.breakers = new Map();
    },

    stopped() {
      for (const breaker of this.breakers.values()) breaker.shutdown();
    },
  });
}
