import type { ServiceBroker } from "moleculer";
import { infrastructureOf } from "../../lib/infrastructure";
import { startGatewayNode, type GatewayNode } from "../support/gateway-node";

interface Readiness {
  status: string;
  checks: Record<string, { ok: boolean; error?: string }>;
}

describe("gateway probes", () => {
  let node: GatewayNode<undefined> | undefined;
  let broker: ServiceBroker;
  let base: string;

  beforeEach(async () => {
    node = await startGatewayNode({ name: "probes", simulator: false });
    ({ broker, url: base } = node);
  });

  afterEach(async () => {
    await node?.stop();
    node = undefined;
  });

  async function readiness(): Promise<{ status: number; body: Readiness }> {
    const res = await fetch(`${base}/readyz`);
    return { status: res.status, body: (await res.json()) as Readiness };
  }

  it("is live and ready when every service and adapter answers", async () => {
    expect((await fetch(`${base}/livez`)).status).toBe(200);
    const { status, body } = await readiness();
    expect(status).toBe(200);
    expect(body.status).toBe("ready");
    expect(body.checks.orders?.ok).toBe(true);
  });

  it("is not ready while a required service has no instance", async () => {
    const orders = broker.getLocalService("orders");
    if (orders === undefined) throw new Error("orders service missing");
    await broker.destroyService(orders);
    const { status, body } = await readiness();
    expect(status).toBe(503);
    expect(body.status).toBe("not_ready");
    expect(body.checks.orders?.ok).toBe(false);
    expect(body.checks.inventory?.ok).toBe(true);
  });

  it("is not ready when a service's store stops answering, and says which", async () => {
    const store = await infrastructureOf(broker).store("payments");
    await store.close();
    const { status, body } = await readiness();
    expect(status).toBe(503);
    expect(body.checks.payments?.ok).toBe(false);
    expect(body.checks.payments?.error).toContain("payments is unhealthy");
    expect(body.checks.orders?.ok).toBe(true);
  });

  it("answers unknown paths with the error envelope", async () => {
    const res = await fetch(`${base}/api/v1/nothing-here`);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { code: string; message: string; requestId: string } };
    expect(body.error.code).toBe("NOT_FOUND");
    expect(typeof body.error.message).toBe("string");
  });
});
