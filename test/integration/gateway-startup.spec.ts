/**
 * The startup probe: `GET /startupz` answers 503 `starting` while a local service is still in its
 * `started` handler (the HTTP server already listens by then), 200 `started` once the broker has
 * started them all, and stays 200 when readiness fails later.
 */
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker, type Service } from "moleculer";
import { createBrokerOptions } from "../../moleculer.config";
import { deferred, type Deferred } from "../../lib/bus/bus.shared";
import { loadConfig } from "../../lib/config";
import { SERVICE_SCHEMAS } from "../../services";
import { waitFor } from "../support/wait";

interface Probe {
  status: number;
  body: { status: string };
}

describe("gateway startup probe", () => {
  let dir: string;
  let broker: ServiceBroker;
  let starting: Promise<void>;
  let seeding: Deferred<void>;
  let base: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-startup-"));
    const config = loadConfig({
      PORT: "0",
      DATA_DIR: dir,
      LOG_LEVEL: "fatal",
      JWT_SECRET: "startup-jwt-secret-0123456789",
      // payments needs a provider address to start; nothing is charged here
      PSP_URL: "http://127.0.0.1:9",
      PSP_WEBHOOK_SECRET: "whsec_startup_0123456789",
    });
    broker = new ServiceBroker({ ...createBrokerOptions(config), logger: false });
    for (const schema of Object.values(SERVICE_SCHEMAS)) broker.createService(schema);
    // a local service that takes its time to start, like a long seed or migration
    seeding = deferred<void>();
    broker.createService({ name: "catalog-import", started: () => seeding.promise });
    starting = broker.start();
    const gateway = broker.getLocalService("gateway") as Service & {
      server: { listening: boolean; address(): AddressInfo };
    };
    await waitFor(
      "the gateway to listen and register",
      () => gateway.server.listening && broker.registry.hasService("gateway", broker.nodeID),
      20_000,
    );
    base = `http://127.0.0.1:${gateway.server.address().port}`;
  });

  afterEach(async () => {
    seeding.resolve();
    await starting.catch(() => undefined);
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function probe(path: string): Promise<Probe> {
    const res = await fetch(`${base}${path}`);
    return { status: res.status, body: (await res.json()) as { status: string } };
  }

  it("answers 503 starting while a local service is still starting, then 200 started", async () => {
    expect(broker.started).toBe(false);
    expect(await probe("/startupz")).toEqual({ status: 503, body: { status: "starting" } });
    // not ready either: nothing may be routed to it yet
    expect((await probe("/readyz")).status).toBe(503);

    seeding.resolve();
    await starting;
    expect(await probe("/startupz")).toEqual({ status: 200, body: { status: "started" } });
    expect((await probe("/readyz")).status).toBe(200);
  });

  it("stays started when readiness fails later", async () => {
    seeding.resolve();
    await starting;
    const orders = broker.getLocalService("orders");
    if (orders === undefined) throw new Error("orders service missing");
    await broker.destroyService(orders);

    expect((await probe("/readyz")).status).toBe(503);
    expect(await probe("/startupz")).toEqual({ status: 200, body: { status: "started" } });
  });
});
