/**
 * Child process for test/fault/outbox-crash.spec.ts.
 *
 *   node dist/test/children/outbox-crash.child.js produce <file>
 *     4 writers commit transactions (an `orders` row + its `order.paid` event) in a loop, with no
 *     relay running, printing `committed <eventId>` after each commit resolved, until killed.
 *
 *   node dist/test/children/outbox-crash.child.js relay <file> <natsUrl | -> <k>
 *     runs a relay over the store (JetStream at natsUrl, or an in-process bus for `-`) whose
 *     afterPublish hook, on the k-th acknowledged publish, prints `acked <eventId>` and SIGKILLs
 *     the process: the bus has the event, the row is not marked published yet.
 *
 * First line: `ready`.
 */
import type { EventBus } from "../../lib/bus/bus.port";
import { InProcessEventBus } from "../../lib/bus/inprocess.adapter";
import { JetStreamEventBus } from "../../lib/bus/jetstream.adapter";
import { runOutboxTransaction } from "../../lib/outbox/outbox";
import { orderPaidEvent } from "../fixtures/events";
import { OutboxRelay } from "../../lib/outbox/outbox.relay";
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";

const WRITERS = 4;

function say(line: string): void {
  // Pipes are written synchronously on Linux: a printed line has left this process before the next step.
  process.stdout.write(`${line}\n`);
}

async function produce(store: EmbeddedDocumentStore): Promise<never> {
  let next = 0;
  const writer = async (): Promise<never> => {
    for (;;) {
      const n = `${process.pid}-${next++}`;
      const id = await runOutboxTransaction(store, async (tx) => {
        await tx.collection("orders").insertOne({ _id: `ord-${n}`, status: "PAID" });
        const envelope = await tx.publish(orderPaidEvent(n));
        return envelope.id;
      });
      say(`committed ${id}`);
    }
  };
  say("ready");
  return Promise.all(Array.from({ length: WRITERS }, writer)).then(() => {
    throw new Error("writers never stop");
  });
}

async function relay(store: EmbeddedDocumentStore, natsUrl: string, killAt: number): Promise<void> {
  const bus: EventBus =
    natsUrl === "-"
      ? new InProcessEventBus()
      : new JetStreamEventBus({ servers: natsUrl, name: "outbox-crash-child" });
  await bus.open();
  let acked = 0;
  const outbox = new OutboxRelay({
    store,
    bus,
    owner: `crash-child-${process.pid}`,
    hooks: {
      afterPublish(id) {
        acked++;
        if (acked === killAt) {
          say(`acked ${id}`);
          process.kill(process.pid, "SIGKILL");
        }
      },
    },
  });
  await outbox.start();
  say("ready");
}

async function main(): Promise<void> {
  const [mode, file, natsUrl = "-", killAt = "1"] = process.argv.slice(2);
  if (file === undefined || (mode !== "produce" && mode !== "relay")) {
    throw new Error("usage: outbox-crash.child produce <file> | relay <file> <natsUrl|-> <k>");
  }
  const store = new EmbeddedDocumentStore({ file });
  await store.open();
  if (mode === "produce") await produce(store);
  else await relay(store, natsUrl, Number(killAt));
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
