import { readinessOf, type ReadinessProbe } from "../../../../lib/http/readiness";

const up = { ping: async () => undefined };
const down = {
  ping: async () => {
    throw new Error("connection refused");
  },
};

function probe(overrides: Partial<ReadinessProbe> = {}): ReadinessProbe {
  return {
    accepting: true,
    adapters: { bus: up, kv: up },
    requiredServices: ["orders", "payments"],
    availableServices: new Set(["orders", "payments"]),
    health: async () => ({ healthy: true, nodeID: "node-1" }),
    ...overrides,
  };
}

describe("gateway readiness", () => {
  it("is ready when the broker accepts, the adapters answer and every required service is healthy", async () => {
    expect(await readinessOf(probe())).toEqual({
      ready: true,
      checks: {
        broker: { ok: true },
        bus: { ok: true },
        kv: { ok: true },
        orders: { ok: true, nodeID: "node-1" },
        payments: { ok: true, nodeID: "node-1" },
      },
    });
  });

  it("says why each failed check failed", async () => {
    const { ready, checks } = await readinessOf(
      probe({
        accepting: false,
        adapters: { bus: down, kv: undefined },
        availableServices: new Set(["payments"]),
        health: async () => {
          throw new Error("request timed out");
        },
      }),
    );
    expect(ready).toBe(false);
    expect(checks).toEqual({
      broker: { ok: false },
      bus: { ok: false, error: "connection refused" },
      kv: { ok: false, error: "not open" },
      orders: { ok: false, error: "no instance has joined" },
      payments: { ok: false, error: "request timed out" },
    });
  });

  it("is not ready when a service reports itself unhealthy", async () => {
    const result = await readinessOf(
      probe({ health: async (service) => ({ healthy: service !== "payments" }) }),
    );
    expect(result.ready).toBe(false);
    expect(result.checks.payments).toEqual({ ok: false, nodeID: undefined });
  });
});
