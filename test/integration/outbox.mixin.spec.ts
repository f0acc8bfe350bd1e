/**
 * The outbox mixin in a real broker (embedded store, in-process bus): `this.transaction` with
 * `tx.publish`, the relay it runs per instance, and the `outboxStats` / `outboxDead` /
 * `outboxReplay` actions the REPL uses.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ServiceBroker,
  type Context,
  type Service,
  type ServiceSchema,
  type ServiceSettingSchema,
} from "moleculer";
import { loadConfig } from "../../lib/config";
import { infrastructureOf } from "../../lib/infrastructure";
import { OUTBOX_COLLECTION, type OutboxRow } from "../../lib/outbox/outbox";
import type { OutboxStats } from "../../lib/outbox/outbox.relay";
import { InfrastructureMixin } from "../../mixins/infrastructure.mixin";
import { OutboxMixin, type OutboxThis } from "../../mixins/outbox.mixin";
import { createBrokerOptions } from "../../moleculer.config";
import { orderPaid, recordDeliveries } from "../support/outbox";
import { waitFor } from "../support/wait";

const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/** A service that records a payment and publishes `order.paid` in one transaction. */
const LedgerService: ServiceSchema<ServiceSettingSchema, Record<string, never>, OutboxThis> = {
  name: "ledger",
  // a poll far away: events must go out because the commit woke the relay
  mixins: [InfrastructureMixin({ store: true, bus: true }), OutboxMixin({ pollIntervalMs: 600_000 })],
  actions: {
    record: {
      params: { n: "string", fail: { type: "boolean", optional: true } },
      async handler(
        this: Service & OutboxThis,
        ctx: Context<{ n: string; fail?: boolean }>,
      ): Promise<string> {
        return this.transaction(async (tx) => {
          await tx.collection("ledger").insertOne({ _id: `ord-${ctx.params.n}` });
          const envelope = await tx.publish(orderPaid(ctx.params.n));
          if (ctx.params.fail === true) throw new Error("failed after publishing");
          return envelope.id;
        }, ctx);
      },
    },
  },
};

describe("outbox mixin", () => {
  let dir: string;
  let broker: ServiceBroker;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-outbox-mixin-"));
    const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: "fatal", SERVICES: "orders" });
    broker = new ServiceBroker({ ...createBrokerOptions(config), logger: false, nodeID: "node-1" });
    broker.createService(LedgerService);
    await broker.start();
  });

  afterEach(async () => {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("commits state and event together and publishes right after the commit, with the caller's traceparent", async () => {
    const recorder = await recordDeliveries(await infrastructureOf(broker).bus());

    const id = await broker.call<string, { n: string }>(
      "ledger.record",
      { n: "1" },
      { meta: { traceparent: TRACEPARENT } },
    );
    await expect(broker.call("ledger.record", { n: "2", fail: true })).rejects.toThrow(
      "failed after publishing",
    );
    const untraced = await broker.call<string, { n: string }>(
      "ledger.record",
      { n: "3" },
      { meta: { traceparent: "garbage" } },
    );

    await waitFor("two deliveries", () => recorder.seen.length >= 2);
    expect(recorder.ids()).toEqual([id, untraced]);
    expect(recorder.seen[0]?.envelope).toMatchObject({ id, type: "order.paid", traceparent: TRACEPARENT });
    expect(recorder.seen[0]?.headers.traceparent).toBe(TRACEPARENT);
    // a malformed traceparent is dropped rather than failing the business write
    expect(recorder.seen[1]?.envelope).not.toHaveProperty("traceparent");
    const store = await infrastructureOf(broker).store("ledger");
    expect((await store.collection("ledger").find({})).map((d) => d._id).sort()).toEqual(["ord-1", "ord-3"]);
    await waitFor(
      "both rows marked",
      async () => (await store.collection(OUTBOX_COLLECTION).countDocuments({ status: "published" })) === 2,
    );

    const stats = await broker.call<OutboxStats>("ledger.outboxStats");
    expect(stats).toMatchObject({
      pending: 0,
      dead: 0,
      counters: { published: 2, publishFailures: 0, dead: 0 },
    });
    const service = broker.getLocalService("ledger") as Service & OutboxThis;
    expect(service.outbox.owner).toBe("node-1:ledger");
  });

  it("lists dead rows and replays one through its actions", async () => {
    const recorder = await recordDeliveries(await infrastructureOf(broker).bus());
    const store = await infrastructureOf(broker).store("ledger");
    const service = broker.getLocalService("ledger") as Service & OutboxThis;
    const id = await service.transaction(async (tx) => (await tx.publish(orderPaid("dead"))).id);
    await waitFor("the delivery", () => recorder.ids().includes(id));
    // as if it had run out of attempts
    await store.collection(OUTBOX_COLLECTION).updateOne(
      { _id: id },
      {
        $set: { status: "dead", attempts: 10, lastError: "boom", deadAt: new Date() },
        $unset: { purgeAt: "" },
      },
    );

    const dead = await broker.call<OutboxRow[], { limit: number }>("ledger.outboxDead", { limit: 5 });
    expect(dead.map((r) => [r._id, r.status, r.lastError])).toEqual([[id, "dead", "boom"]]);
    expect((await broker.call<OutboxStats>("ledger.outboxStats")).dead).toBe(1);

    expect(await broker.call("ledger.outboxReplay", { id })).toBe(true);
    await waitFor(
      "the replayed row published again",
      async () =>
        (await store.collection<OutboxRow>(OUTBOX_COLLECTION).findOne({ _id: id }))?.status === "published",
    );
    expect(await broker.call("ledger.outboxReplay", { id })).toBe(false);
    // the in-process bus drops the second copy as a duplicate: consumers dedupe by id in any case
    expect(recorder.ids().filter((seen) => seen === id).length).toBeGreaterThanOrEqual(1);
  });

  it("validates the actions' parameters", async () => {
    await expect(broker.call("ledger.outboxDead", { limit: 0 })).rejects.toMatchObject({
      type: "VALIDATION_ERROR",
    });
    await expect(broker.call("ledger.outboxDead", { limit: "many" })).rejects.toMatchObject({
      type: "VALIDATION_ERROR",
    });
    await expect(broker.call("ledger.outboxReplay", {})).rejects.toMatchObject({ type: "VALIDATION_ERROR" });
    await expect(broker.call("ledger.outboxReplay", { id: "" })).rejects.toMatchObject({
      type: "VALIDATION_ERROR",
    });
    await expect(broker.call("ledger.outboxDead", {})).resolves.toEqual([]);
  });

  it("stops its relay with the service", async () => {
    const service = broker.getLocalService("ledger") as Service & OutboxThis;
    const relay = service.outbox;
    await broker.destroyService(service);
    const store = await infrastructureOf(broker).store("ledger");
    // a row committed after the stop stays pending: nothing relays it any more
    await store.collection(OUTBOX_COLLECTION).insertOne({ ...pendingRow(), _id: "after-stop" });
    relay.wake();
    // settled: a running relay, woken, would be idle only after a claim that found the row
    await relay.idle();
    expect(await store.collection(OUTBOX_COLLECTION).findOne({ _id: "after-stop" })).toMatchObject({
      status: "pending",
    });
    expect((await relay.stats()).pending).toBe(1);
  });
});

function pendingRow(): Omit<OutboxRow, "_id"> {
  const at = new Date();
  return {
    type: "order.paid",
    version: 1,
    occurredAt: at,
    aggregateType: "order",
    aggregateId: "ord-x",
    payload: orderPaid("x").payload,
    status: "pending",
    attempts: 0,
    nextAttemptAt: at,
  };
}
