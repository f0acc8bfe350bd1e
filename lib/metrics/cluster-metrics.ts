/**
 * Turns one scrape's cluster statistics (cluster-collector.ts) into Prometheus metrics: outbox,
 * inbox and breaker figures per service and node, and which instances did not answer.
 *
 * A fresh registry per scrape, so that an instance that left the cluster leaves the output with
 * it, and two scrapes running at once never see each other's values. Types follow where a number
 * comes from: a count read from a store, or a figure over a rolling window, is a gauge; a counter
 * kept since a relay, consumer or breaker started only grows, so it is a counter (Prometheus
 * handles the reset when that process restarts).
 */
import { Counter, Gauge, Registry } from "prom-client";
import type { BreakerState } from "../breaker";
import type { InstanceStats } from "./cluster-collector";
import { LABELS, METRICS } from "./metric-names";

const BREAKER_STATES: readonly BreakerState[] = ["closed", "open", "halfOpen"];

const INSTANCE = [LABELS.service, LABELS.node] as const;
const SUBSCRIPTION = [LABELS.service, LABELS.node, LABELS.event] as const;
const BREAKER = [LABELS.service, LABELS.node, LABELS.breaker] as const;
const BREAKER_STATE = [LABELS.service, LABELS.node, LABELS.breaker, LABELS.state] as const;

type Labels = Record<string, string>;

/** A registry holding the cluster metrics of `instances`, ready to render. */
export function clusterRegistry(instances: readonly InstanceStats[]): Registry {
  const registry = new Registry();
  const family = new Families(registry);

  const outbox = {
    pending: family.gauge(METRICS.outboxPending, "Outbox rows waiting to be published.", INSTANCE),
    oldestAge: family.gauge(
      METRICS.outboxOldestPendingAge,
      "Age of the oldest pending outbox row, by occurredAt; 0 when none is pending.",
      INSTANCE,
    ),
    dead: family.gauge(
      METRICS.outboxDead,
      "Outbox rows that ran out of attempts (kept, replayable).",
      INSTANCE,
    ),
    lastMinute: family.gauge(
      METRICS.outboxPublishedLastMinute,
      "Outbox rows this instance's relay marked published in the last 60 s.",
      INSTANCE,
    ),
    published: family.counter(
      METRICS.outboxPublished,
      "Outbox rows this instance's relay marked published since it started.",
      INSTANCE,
    ),
    failures: family.counter(
      METRICS.outboxPublishFailures,
      "Failed publish attempts of this instance's relay since it started.",
      INSTANCE,
    ),
    deadMarked: family.counter(
      METRICS.outboxDeadMarked,
      "Outbox rows this instance's relay marked dead since it started.",
      INSTANCE,
    ),
  };
  const inbox = {
    processed: family.counter(METRICS.inboxProcessed, "Events whose handler committed.", SUBSCRIPTION),
    duplicates: family.counter(
      METRICS.inboxDuplicates,
      "Copies of already processed events, acknowledged without effect.",
      SUBSCRIPTION,
    ),
    retried: family.counter(
      METRICS.inboxRetried,
      "Failed deliveries handed back for another attempt.",
      SUBSCRIPTION,
    ),
    deadLettered: family.counter(METRICS.inboxDeadLettered, "Messages parked as dead letters.", SUBSCRIPTION),
    replayed: family.counter(
      METRICS.inboxReplayed,
      "Dead letters replayed through this consumer.",
      SUBSCRIPTION,
    ),
    inFlight: family.gauge(METRICS.inboxInFlight, "Event handlers running now.", SUBSCRIPTION),
    deadLetters: family.gauge(
      METRICS.inboxDeadLetters,
      "Dead letters of this consumer waiting in its store.",
      INSTANCE,
    ),
  };
  const breaker = {
    state: family.gauge(
      METRICS.breakerState,
      "1 for the state the circuit breaker is in, 0 for the others.",
      BREAKER_STATE,
    ),
    transitions: family.counter(
      METRICS.breakerTransitions,
      "How many times the circuit breaker entered each state since its service started.",
      BREAKER_STATE,
    ),
    fires: family.gauge(
      METRICS.breakerWindowFires,
      "Calls made through the breaker in its rolling window, attempted or rejected.",
      BREAKER,
    ),
    successes: family.gauge(
      METRICS.breakerWindowSuccesses,
      "Calls that succeeded in the breaker's rolling window.",
      BREAKER,
    ),
    failures: family.gauge(
      METRICS.breakerWindowFailures,
      "Errors that counted against the breaker in its rolling window.",
      BREAKER,
    ),
    ignored: family.gauge(
      METRICS.breakerWindowIgnored,
      "Errors that did not count against the breaker (e.g. card declines) in its rolling window.",
      BREAKER,
    ),
    timeouts: family.gauge(
      METRICS.breakerWindowTimeouts,
      "Calls that timed out in the breaker's rolling window.",
      BREAKER,
    ),
    rejects: family.gauge(
      METRICS.breakerWindowRejects,
      "Calls refused because the breaker was open, in its rolling window.",
      BREAKER,
    ),
  };
  const scrapeError = family.gauge(
    METRICS.scrapeError,
    "1 when a service instance did not answer the gateway's statistics calls in time (or failed), else 0.",
    INSTANCE,
  );

  for (const instance of instances) {
    const at: Labels = { [LABELS.service]: instance.service, [LABELS.node]: instance.nodeID };
    scrapeError.set(at, instance.failures.length > 0 ? 1 : 0);

    const o = instance.outbox;
    if (o !== undefined) {
      setIfCount(outbox.pending, at, o.pending);
      setIfCount(outbox.oldestAge, at, o.oldestPendingAgeMs === null ? 0 : seconds(o.oldestPendingAgeMs));
      setIfCount(outbox.dead, at, o.dead);
      setIfCount(outbox.lastMinute, at, o.publishedLastMinute);
      addIfCount(outbox.published, at, o.counters?.published);
      addIfCount(outbox.failures, at, o.counters?.publishFailures);
      addIfCount(outbox.deadMarked, at, o.counters?.dead);
    }

    const i = instance.inbox;
    if (i !== undefined) {
      setIfCount(inbox.deadLetters, at, i.deadLetters);
      for (const [event, s] of Object.entries(i.subscriptions)) {
        if (s === undefined) continue;
        const sub: Labels = { ...at, [LABELS.event]: event };
        addIfCount(inbox.processed, sub, s.processed);
        addIfCount(inbox.duplicates, sub, s.duplicates);
        addIfCount(inbox.retried, sub, s.retried);
        addIfCount(inbox.deadLettered, sub, s.deadLettered);
        addIfCount(inbox.replayed, sub, s.replayed);
        setIfCount(inbox.inFlight, sub, s.inFlight);
      }
    }

    for (const b of instance.breakers ?? []) {
      if (typeof b.name !== "string") continue;
      const named: Labels = { ...at, [LABELS.breaker]: b.name };
      for (const state of BREAKER_STATES) {
        const inState: Labels = { ...named, [LABELS.state]: state };
        breaker.state.set(inState, b.state === state ? 1 : 0);
        addIfCount(breaker.transitions, inState, b.transitions?.[state]);
      }
      setIfCount(breaker.fires, named, b.fires);
      setIfCount(breaker.successes, named, b.successes);
      setIfCount(breaker.failures, named, b.failures);
      setIfCount(breaker.ignored, named, b.ignored);
      setIfCount(breaker.timeouts, named, b.timeouts);
      setIfCount(breaker.rejects, named, b.rejects);
    }
  }
  return registry;
}

/** Creates metric families in one registry. */
class Families {
  constructor(private readonly registry: Registry) {}

  gauge(name: string, help: string, labelNames: readonly string[]): Gauge {
    return new Gauge({ name, help, labelNames: [...labelNames], registers: [this.registry] });
  }

  counter(name: string, help: string, labelNames: readonly string[]): Counter {
    return new Counter({ name, help, labelNames: [...labelNames], registers: [this.registry] });
  }
}

/**
 * A figure from another process is trusted only as far as being a finite, non-negative number:
 * an instance of another version may answer without it, and that must not break the scrape.
 */
function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

function setIfCount(gauge: Gauge, labels: Labels, value: unknown): void {
  if (isCount(value)) gauge.set(labels, value);
}

/** A counter reported by an instance: this registry is fresh, so adding the value once sets it. */
function addIfCount(counter: Counter, labels: Labels, value: unknown): void {
  if (isCount(value)) counter.inc(labels, value);
}

function seconds(ms: number): number {
  return ms / 1000;
}
