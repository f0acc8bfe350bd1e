import type { BreakerStats } from "../../../../lib/breaker";
import type { InboxStats } from "../../../../lib/inbox/inbox.consumer";
import {
  collectClusterStats,
  type InstanceStats,
  type ServiceInstance,
  type StatsSource,
} from "../../../../lib/metrics/cluster-collector";
import { clusterRegistry } from "../../../../lib/metrics/cluster-metrics";
import type { OutboxStats } from "../../../../lib/outbox/outbox.relay";

const outboxStats = (pending: number): OutboxStats => ({
  pending,
  oldestPendingAgeMs: pending > 0 ? 2500 : null,
  dead: 1,
  publishedLastMinute: 3,
  counters: { published: 40, publishFailures: 2, dead: 1 },
});

const inboxStats: InboxStats = {
  consumer: "payments",
  subscriptions: {
    "order.created": {
      durable: "payments_order_created",
      processed: 7,
      duplicates: 1,
      retried: 2,
      deadLettered: 0,
      replayed: 0,
      inFlight: 1,
    },
  },
  deadLetters: 0,
};

const pspBreaker = (state: BreakerStats["state"]): BreakerStats => ({
  name: "psp",
  state,
  fires: 12,
  successes: 4,
  failures: 6,
  ignored: 1,
  timeouts: 2,
  rejects: 3,
  transitions: { closed: 0, open: 1, halfOpen: 0 },
});

/** A cluster as a table: which instance answers what, with what (or a promise that never settles). */
function aCluster(answers: Record<string, Record<string, () => Promise<unknown>>>): StatsSource {
  return {
    instancesWith(action: string): ServiceInstance[] {
      return Object.entries(answers)
        .filter(([, actions]) => action in actions)
        .map(([at]) => {
          const [service = "", nodeID = ""] = at.split("@");
          return { service, nodeID };
        });
    },
    call(instance: ServiceInstance, action: string): Promise<unknown> {
      const answer = answers[`${instance.service}@${instance.nodeID}`]?.[action];
      if (answer === undefined) return Promise.reject(new Error(`no ${action} there`));
      return answer();
    },
  };
}

const never = (): Promise<unknown> => new Promise(() => undefined);

function find(instances: InstanceStats[], service: string, nodeID: string): InstanceStats {
  const found = instances.find((i) => i.service === service && i.nodeID === nodeID);
  if (found === undefined) throw new Error(`${service}@${nodeID} not collected`);
  return found;
}

describe("cluster stats collector", () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it("reports a node that does not answer by its deadline, and every other node all the same", async () => {
    jest.useFakeTimers();
    const source = aCluster({
      "orders@node-a": { outboxStats: () => Promise.resolve(outboxStats(0)) },
      "orders@node-b": { outboxStats: never, inboxStats: () => Promise.resolve(inboxStats) },
      "payments@node-a": {
        outboxStats: () => Promise.resolve(outboxStats(5)),
        breakers: () => Promise.resolve([pspBreaker("open")]),
      },
    });

    let settled = false;
    const collecting = collectClusterStats(source, { timeoutMs: 800 }).finally(() => {
      settled = true;
    });
    await jest.advanceTimersByTimeAsync(799);
    expect(settled).toBe(false);
    await jest.advanceTimersByTimeAsync(1);
    const instances = await collecting;

    expect(instances.map((i) => `${i.service}@${i.nodeID}`)).toEqual([
      "orders@node-a",
      "orders@node-b",
      "payments@node-a",
    ]);
    const stuck = find(instances, "orders", "node-b");
    expect(stuck.outbox).toBeUndefined();
    expect(stuck.inbox).toEqual(inboxStats);
    expect(stuck.failures).toEqual([{ action: "outboxStats", error: "no answer within 800 ms" }]);
    expect(find(instances, "orders", "node-a")).toMatchObject({ outbox: outboxStats(0), failures: [] });
    expect(find(instances, "payments", "node-a")).toMatchObject({
      outbox: outboxStats(5),
      breakers: [pspBreaker("open")],
      failures: [],
    });
    // no timer left behind by the calls that answered
    expect(jest.getTimerCount()).toBe(0);
  });

  it("records a failed call and an answer of the wrong shape as failures, never rejects", async () => {
    const source = aCluster({
      "inventory@n1": { outboxStats: () => Promise.reject(new Error("store closed")) },
      "notifications@n1": { breakers: () => Promise.resolve({ not: "a list" }) },
      "notifications@n2": { inboxStats: () => Promise.resolve({ consumer: "notifications" }) },
    });
    const instances = await collectClusterStats(source, { timeoutMs: 1000 });
    expect(find(instances, "inventory", "n1").failures).toEqual([
      { action: "outboxStats", error: "store closed" },
    ]);
    expect(find(instances, "notifications", "n1")).toMatchObject({
      failures: [{ action: "breakers", error: "notifications.breakers on n1 answered an unexpected shape" }],
    });
    expect(find(instances, "notifications", "n1").breakers).toBeUndefined();
    expect(find(instances, "notifications", "n2").failures).toHaveLength(1);
  });

  it("finds nothing to ask in a cluster without domain services", async () => {
    await expect(collectClusterStats(aCluster({}))).resolves.toEqual([]);
  });
});

describe("cluster metrics", () => {
  const instances: InstanceStats[] = [
    { service: "orders", nodeID: "node-a", outbox: outboxStats(0), failures: [] },
    { service: "orders", nodeID: "node-b", failures: [{ action: "outboxStats", error: "timeout" }] },
    {
      service: "payments",
      nodeID: "node-a",
      outbox: outboxStats(5),
      inbox: inboxStats,
      breakers: [pspBreaker("halfOpen")],
      failures: [],
    },
  ];

  async function render(of: InstanceStats[]): Promise<string[]> {
    return (await clusterRegistry(of).metrics()).split("\n");
  }

  it("marks the instance that did not answer, and only it", async () => {
    const lines = await render(instances);
    expect(lines).toContain('ordermesh_scrape_error{service="orders",node="node-b"} 1');
    expect(lines).toContain('ordermesh_scrape_error{service="orders",node="node-a"} 0');
    expect(lines).toContain('ordermesh_scrape_error{service="payments",node="node-a"} 0');
    expect(lines.filter((l) => l.startsWith("ordermesh_outbox_pending{"))).toEqual([
      'ordermesh_outbox_pending{service="orders",node="node-a"} 0',
      'ordermesh_outbox_pending{service="payments",node="node-a"} 5',
    ]);
  });

  it("gives outbox, inbox and breaker figures their values and types", async () => {
    const lines = await render(instances);
    const payments = 'service="payments",node="node-a"';
    expect(lines).toEqual(
      expect.arrayContaining([
        `ordermesh_outbox_oldest_pending_age_seconds{${payments}} 2.5`,
        'ordermesh_outbox_oldest_pending_age_seconds{service="orders",node="node-a"} 0',
        `ordermesh_outbox_published_total{${payments}} 40`,
        `ordermesh_outbox_publish_failures_total{${payments}} 2`,
        `ordermesh_outbox_dead_marked_total{${payments}} 1`,
        `ordermesh_inbox_processed_total{${payments},event="order.created"} 7`,
        `ordermesh_inbox_duplicates_total{${payments},event="order.created"} 1`,
        `ordermesh_inbox_retried_total{${payments},event="order.created"} 2`,
        `ordermesh_inbox_in_flight{${payments},event="order.created"} 1`,
        `ordermesh_inbox_dead_letters{${payments}} 0`,
        `ordermesh_breaker_state{${payments},breaker="psp",state="closed"} 0`,
        `ordermesh_breaker_state{${payments},breaker="psp",state="open"} 0`,
        `ordermesh_breaker_state{${payments},breaker="psp",state="halfOpen"} 1`,
        `ordermesh_breaker_transitions_total{${payments},breaker="psp",state="open"} 1`,
        `ordermesh_breaker_window_failures{${payments},breaker="psp"} 6`,
        `ordermesh_breaker_window_rejects{${payments},breaker="psp"} 3`,
        "# TYPE ordermesh_outbox_pending gauge",
        "# TYPE ordermesh_outbox_published_total counter",
        "# TYPE ordermesh_inbox_processed_total counter",
        "# TYPE ordermesh_inbox_in_flight gauge",
        "# TYPE ordermesh_breaker_state gauge",
        "# TYPE ordermesh_breaker_transitions_total counter",
        "# TYPE ordermesh_breaker_window_failures gauge",
        "# TYPE ordermesh_scrape_error gauge",
      ]),
    );
  });

  it("leaves out a figure an instance reports as something other than a count", async () => {
    const odd = {
      ...outboxStats(0),
      pending: "many",
      dead: -1,
      counters: undefined,
    } as unknown as OutboxStats;
    const lines = await render([{ service: "orders", nodeID: "node-c", outbox: odd, failures: [] }]);
    expect(lines.filter((l) => l.startsWith("ordermesh_outbox_pending{"))).toEqual([]);
    expect(lines.filter((l) => l.startsWith("ordermesh_outbox_dead{"))).toEqual([]);
    expect(lines.filter((l) => l.startsWith("ordermesh_outbox_published_total{"))).toEqual([]);
    expect(lines).toContain('ordermesh_outbox_published_last_minute{service="orders",node="node-c"} 3');
  });
});
