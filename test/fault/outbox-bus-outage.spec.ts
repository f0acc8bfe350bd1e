/**
 * The outbox through a bus outage while transactions keep committing. JetStream: the suite's
 * nats-server is killed for ~10 s and restarted on its store. In-process: a probe in front of the
 * bus rejects every publish while "down" (the length is arbitrary there; a few seconds suffice to
 * fail each row several times). Nothing may be lost: failed publishes are recorded on their rows
 * (attempts, lastError, nextAttemptAt) and the backlog drains once the bus is back.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EventBus } from "../../lib/bus/bus.port";
import { OutboxRelay } from "../../lib/outbox/outbox.relay";
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";
import {
  ProbeBus,
  commitOne,
  countByStatus,
  inProcessFixture,
  jetStreamFixture,
  outboxRows,
  recordDeliveries,
  streamMessageIds,
  type BusFixture,
} from "../support/outbox";
import { waitFor } from "../support/wait";

interface OutageCase {
  fixture: BusFixture;
  name: string;
  outageMs: number;
}

const cases: OutageCase[] = [
  { fixture: inProcessFixture(), name: "in-process bus", outageMs: 3_000 },
  { fixture: jetStreamFixture(), name: "JetStream", outageMs: 10_000 },
];

describe.each(cases)("outbox through a bus outage with the $name", ({ fixture, outageMs }) => {
  fixture.describe("outage", () => {
    let dir: string;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "ordermesh-outbox-outage-"));
      await fixture.start();
    });
    afterAll(async () => {
      await fixture.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it(
      "loses nothing, records the failed attempts, and drains the backlog once the bus is back",
      async () => {
        const store = new EmbeddedDocumentStore({ file: join(dir, "outage.db") });
        await store.open();
        // JetStream: give up on a publish after 1 s instead of 30 s, so failures reach the rows
        const bus: EventBus = fixture.create({ publishRetryForMs: 1_000, publishTimeoutMs: 500 });
        await bus.open();
        const probe = new ProbeBus(bus);
        const recorder = await recordDeliveries(bus);
        const relay = new OutboxRelay({
          store,
          bus: probe,
          owner: "outage",
          pollIntervalMs: 100,
          backoffBaseMs: 100,
          backoffMaxMs: 1_000,
          maxAttempts: 1_000,
        });
        await relay.start();
        const server = fixture.server();

        // a steady stream of transactions through the whole test
        const committed: string[] = [];
        let producing = true;
        const producer = (async () => {
          for (let i = 0; producing; i++) {
            committed.push(await commitOne(store, `out-${i}`, { afterCommit: () => relay.wake() }));
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        })();

        try {
          await waitFor(
            "20 events published before the outage",
            async () => (await countByStatus(store, "published")) >= 20,
          );

          const downAt = Date.now();
          if (server !== undefined) await server.kill();
          else probe.down = true;
          await waitFor(
            "failed publishes recorded on rows",
            async () => {
              const rows = [...(await outboxRows(store)).values()];
              return rows.some((r) => r.status === "pending" && r.attempts >= 2 && r.lastError !== undefined);
            },
            outageMs + 20_000,
          );
          // the rest of the outage: transactions keep committing meanwhile
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, downAt + outageMs - Date.now())));
          if (server !== undefined) await server.restart();
          else probe.down = false;

          await waitFor(
            "20 events published after the outage",
            async () => {
              const rows = await outboxRows(store);
              const after = committed.slice(-20);
              return after.length === 20 && after.every((id) => rows.get(id)?.status === "published");
            },
            30_000,
          );
        } finally {
          producing = false;
          await producer;
        }

        await waitFor(
          `all ${committed.length} events published`,
          async () => (await countByStatus(store, "published")) === committed.length,
          30_000,
        );
        const rows = await outboxRows(store);
        expect(rows.size).toBe(committed.length);
        expect(await countByStatus(store, "dead")).toBe(0);
        const retried = [...rows.values()].filter((r) => r.attempts > 0);
        expect(retried.length).toBeGreaterThan(0);
        for (const row of retried) {
          expect(row.lastError).toEqual(expect.any(String));
          expect(row.status).toBe("published");
        }
        expect((await relay.stats()).counters.publishFailures).toBeGreaterThanOrEqual(retried.length);

        await waitFor(
          `${committed.length} deliveries`,
          () => new Set(recorder.ids()).size >= committed.length,
          30_000,
        );
        expect(new Set(recorder.ids())).toEqual(new Set(committed));
        if (server !== undefined) {
          // copies that landed while the relay thought they failed were dropped by the duplicate window
          const inStream = await streamMessageIds(server.url);
          expect(inStream).toHaveLength(committed.length);
          expect(new Set(inStream)).toEqual(new Set(committed));
        }

        await relay.stop();
        await recorder.subscription.stop();
        await bus.close();
        await store.close();
      },
      outageMs + 60_000,
    );
  });
});
