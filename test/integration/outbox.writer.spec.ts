import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  buildEnvelope,
  decodeEnvelope,
  encodeEnvelope,
  envelopeOf,
  OUTBOX_COLLECTION,
  runOutboxTransaction,
  type OutboxRow,
} from "../../lib/outbox/outbox";
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";

const paid = {
  type: "order.paid" as const,
  aggregateType: "order",
  aggregateId: "o-1",
  payload: { orderId: "o-1", customerId: "c-1", paymentId: "p-1", total: { minor: 500, currency: "EUR" } },
};

describe("outbox writer", () => {
  let dir: string;
  let store: EmbeddedDocumentStore;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-outbox-unit-"));
    store = new EmbeddedDocumentStore({ file: join(dir, "s.db") });
    await store.open();
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes the state change and a pending outbox row in one commit, then tells afterCommit", async () => {
    const woken: number[] = [];
    const envelope = await runOutboxTransaction(
      store,
      async (tx) => {
        await tx.collection("orders").insertOne({ _id: "o-1", status: "PAID" });
        return tx.publish(paid);
      },
      {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        afterCommit: (n) => woken.push(n),
      },
    );
    expect(woken).toEqual([1]);
    const row = await store.collection<OutboxRow>(OUTBOX_COLLECTION).findOne({ _id: envelope.id });
    expect(row).toMatchObject({ status: "pending", attempts: 0, type: "order.paid", aggregateId: "o-1" });
    expect(row?.traceparent).toBe("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    expect(row === null ? undefined : envelopeOf(row)).toEqual(envelope);
  });

  it("leaves neither the state change nor the event when the body throws after publishing", async () => {
    const woken: number[] = [];
    await expect(
      runOutboxTransaction(
        store,
        async (tx) => {
          await tx.collection("orders").insertOne({ _id: "o-1", status: "PAID" });
          await tx.publish(paid);
          throw new Error("boom");
        },
        { afterCommit: (n) => woken.push(n) },
      ),
    ).rejects.toThrow("boom");
    expect(await store.collection("orders").countDocuments({})).toBe(0);
    expect(await store.collection(OUTBOX_COLLECTION).countDocuments({})).toBe(0);
    expect(woken).toEqual([]);
  });

  it("refuses an event that does not fit the catalog and writes nothing", async () => {
    const bad = { ...paid, payload: { ...paid.payload, total: { minor: -1, currency: "EUR" } } };
    await expect(runOutboxTransaction(store, (tx) => tx.publish(bad))).rejects.toMatchObject({
      code: "INVALID_EVENT",
    });
    expect(await store.collection(OUTBOX_COLLECTION).countDocuments({})).toBe(0);
  });

  it("round-trips an envelope through bytes", () => {
    const envelope = buildEnvelope(paid);
    expect(decodeEnvelope(encodeEnvelope(envelope))).toEqual(envelope);
    expect(() => decodeEnvelope(new Uint8Array([0xff, 0xfe]))).toThrow();
  });
});
