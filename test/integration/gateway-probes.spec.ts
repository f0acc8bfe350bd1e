import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker, type Service } from "moleculer";
import { createBrokerOptions } from "../../moleculer.config";
import { loadConfig } from "../../lib/config";
import { infrastructureOf } from "../../lib/infrastructure";
import { SERVICE_SCHEMAS } from "../../services";

interface Readiness {
  status: string;
  checks: Record<string, { ok: boolean; error?: string }>;
}

describe("gateway probes", () => {
  let dir: string;
  let broker: ServiceBroker;
  let base: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-probes-"));
    const config = loadConfig({
      PORT: "0",
      DATA_DIR: dir,
      LOG_LEVEL: "fatal",
      JWT_SECRET: "probe-jwt-secret-0123456789",
      // payments needs a provider address to start; these probes never charge anything
      PSP_URL: "http://127.0.0.1:9",
      PSP_WEBHOOK_SECRET: "whsec_probe_0123456789",
    });
    broker = new ServiceBroker({ ...createBrokerOptions(config), logger: false });
    for (const schema of Object.values(SERVICE_SCHEMAS)) broker.createService(schema);
    await broker.start();
    const gateway = broker.getLocalService("gateway") as Service & { server: { address(): AddressInfo } };
    base = `http://127.0.0.1:${gateway.server.address().port}`;
  });

  afterEach(async () => {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
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
