/**
 * The domain statistics of every service instance in the cluster, gathered at scrape time. Each
 * service that answers `outboxStats`, `inboxStats` or `breakers` is asked on every node that runs
 * it (in cluster mode a service has several processes, each with its own relay, consumers and
 * breakers). Every call has a deadline; an instance that misses it or fails is recorded with the
 * reason, and the others are reported all the same.
 */
import type { ServiceBroker } from "moleculer";
import type { BreakerStats } from "../breaker";
import { OrdermeshError } from "../errors";
import type { InboxStats } from "../inbox/inbox.consumer";
import type { OutboxStats } from "../outbox/outbox.relay";

/** The actions the collector calls, by what they report (mixins/{outbox,inbox,breaker}.mixin.ts). */
export const STATS_ACTIONS = {
  outbox: "outboxStats",
  inbox: "inboxStats",
  breakers: "breakers",
} as const;

export type StatsKind = keyof typeof STATS_ACTIONS;

/** Deadline of one stats call when the caller sets none: well inside Prometheus' 10 s scrape timeout. */
export const DEFAULT_STATS_TIMEOUT_MS = 1000;

/** One service on one node. */
export interface ServiceInstance {
  service: string;
  nodeID: string;
}

/** Where the statistics come from: the broker's registry and calls in production, a stand-in in unit tests. */
export interface StatsSource {
  /** Every available instance of a service that has `action`. */
  instancesWith(action: string): ServiceInstance[];
  /** Call `action` of `instance.service` on exactly `instance.nodeID`. */
  call(instance: ServiceInstance, action: string, timeoutMs: number): Promise<unknown>;
}

/** A stats call that failed or did not answer in time. */
export interface StatsFailure {
  action: string;
  error: string;
}

/** What one service instance reported; a kind is absent when the service has no such action or it failed. */
export interface InstanceStats extends ServiceInstance {
  outbox?: OutboxStats;
  inbox?: InboxStats;
  breakers?: BreakerStats[];
  failures: StatsFailure[];
}

/** A stats call missed its deadline. */
export class StatsTimeoutError extends OrdermeshError {
  constructor(what: string, timeoutMs: number) {
    super("STATS_TIMEOUT", `no answer within ${timeoutMs} ms`, {
      retryable: true,
      data: { what, timeoutMs },
    });
  }
}

/** A stats call answered something that is not the shape its action returns. */
export class UnexpectedStatsError extends OrdermeshError {
  constructor(what: string) {
    super("UNEXPECTED_STATS", `${what} answered an unexpected shape`, { data: { what } });
  }
}

/**
 * Ask every instance for every kind of statistics it offers, all at once, each call bounded by
 * `timeoutMs`. Never rejects: failures are in each instance's `failures`. Sorted by service, then node.
 */
export async function collectClusterStats(
  source: StatsSource,
  options: { timeoutMs?: number } = {},
): Promise<InstanceStats[]> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_STATS_TIMEOUT_MS;
  const instances = new Map<string, InstanceStats>();
  const entryOf = (instance: ServiceInstance): InstanceStats => {
    const key = `${instance.service}\u0000${instance.nodeID}`;
    let entry = instances.get(key);
    if (entry === undefined) {
      entry = { service: instance.service, nodeID: instance.nodeID, failures: [] };
      instances.set(key, entry);
    }
    return entry;
  };

  const calls = (Object.keys(STATS_ACTIONS) as StatsKind[]).flatMap((kind) => {
    const action = STATS_ACTIONS[kind];
    return source.instancesWith(action).map(async (instance) => {
      const entry = entryOf(instance);
      const what = `${instance.service}.${action} on ${instance.nodeID}`;
      try {
        const answer = await withDeadline(() => source.call(instance, action, timeoutMs), timeoutMs, what);
        record(entry, kind, answer, what);
      } catch (err) {
        entry.failures.push({ action, error: err instanceof Error ? err.message : String(err) });
      }
    });
  });
  await Promise.all(calls);
  return [...instances.values()].sort(
    (a, b) => a.service.localeCompare(b.service) || a.nodeID.localeCompare(b.nodeID),
  );
}

/** The broker's view: available endpoints from its registry, calls pinned to one node. */
export function brokerStatsSource(broker: ServiceBroker): StatsSource {
  return {
    instancesWith(action: string): ServiceInstance[] {
      const actions = broker.registry.getActionList({
        onlyAvailable: true,
        skipInternal: true,
        withEndpoints: true,
      }) as RegisteredAction[];
      const suffix = `.${action}`;
      return actions
        .filter((a) => a.name.endsWith(suffix))
        .flatMap((a) =>
          (a.endpoints ?? [])
            .filter((endpoint) => endpoint.available !== false)
            .map((endpoint) => ({ service: a.name.slice(0, -suffix.length), nodeID: endpoint.nodeID })),
        );
    },
    call(instance: ServiceInstance, action: string, timeoutMs: number): Promise<unknown> {
      return broker.call(
        `${instance.service}.${action}`,
        {},
        // untracked: a timed-out call stays pending inside Moleculer until the node answers, which
        // a frozen node never does, and a tracked one would hold the broker's stop up to its
        // shutdown timeout
        { nodeID: instance.nodeID, timeout: timeoutMs, tracking: false },
      );
    },
  };
}

/** What `registry.getActionList({ withEndpoints: true })` lists (Moleculer types it loosely). */
interface RegisteredAction {
  name: string;
  endpoints?: { nodeID: string; available?: boolean }[];
}

/** Keep `answer` as the statistics of `kind` when it has the expected shape. */
function record(entry: InstanceStats, kind: StatsKind, answer: unknown, what: string): void {
  switch (kind) {
    case "outbox":
      if (!isObject(answer)) throw new UnexpectedStatsError(what);
      entry.outbox = answer as unknown as OutboxStats;
      return;
    case "inbox":
      if (!isObject(answer) || !isObject(answer.subscriptions)) throw new UnexpectedStatsError(what);
      entry.inbox = answer as unknown as InboxStats;
      return;
    case "breakers":
      if (!Array.isArray(answer) || !answer.every(isObject)) throw new UnexpectedStatsError(what);
      entry.breakers = answer as unknown as BreakerStats[];
      return;
  }
}

/** `call()`'s promise, or a `StatsTimeoutError` once `timeoutMs` has passed, whichever comes first. */
async function withDeadline<T>(call: () => Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StatsTimeoutError(what, timeoutMs)), timeoutMs);
    timer.unref();
  });
  try {
    return await Promise.race([call(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
