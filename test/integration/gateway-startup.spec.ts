/**
 * The startup probe: `GET /startupz` answers 503 `starting` while a local service is still in its
 * `started` handler (the HTTP server already listens by then), 200 `started` once the broker has
 * started them all, and stays 200 when readiness fails later.
 */
import type { AddressInfo } from "node:net";
import type { ServiceBroker } from "moleculer";
import { deferred, type Deferred } from "../../lib/bus/bus.shared";
import { gatewayServer, prepareGatewayNode, type PreparedGatewayNode } from "../support/gateway-node";
import { waitFor } from "../support/wait";

interface Probe {
  status: number;
  body: { status: string };
}

describe("gateway startup probe", () => {
  let node: PreparedGatewayNode<undefined> | undefined;
  let broker: ServiceBroker;
  let starting: Promise<void>;
  let seeding: Deferred<void>;
  let base: string;

  beforeEach(async () => {
    node = await prepareGatewayNode({ name: "startup", simulator: false });
    ({ broker } = node);
    // a local service that takes its time to start, like a long seed or migration
    seeding = deferred<void>();
    broker.createService({ name: "catalog-import", started: () => seeding.promise });
    starting = broker.start();
    const gateway = gatewayServer(broker);
    await waitFor(
      "the gateway to listen and register",
      () => gateway.listening && broker.registry.hasService("gateway", broker.nodeID),
      20_000,
    );
    base = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    seeding.resolve();
    await starting.catch(() => undefined);
    await node?.stop();
    node = undefined;
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
