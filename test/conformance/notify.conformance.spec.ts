/**
 * The notification-provider port's contract (lib/notify/notify.port.ts), run against every adapter:
 * the file adapter on a temporary directory, and the http adapter against an HTTP provider this
 * suite starts (test/support/notify-receiver.ts), which honours Idempotency-Key and fails on demand.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileNotificationProvider, MESSAGES_FILE } from "../../lib/notify/file.adapter";
import { HttpNotificationProvider } from "../../lib/notify/http.adapter";
import type { NotificationProvider, OutboundMessage } from "../../lib/notify/notify.port";
import { FakeProvider } from "../support/notify-receiver";

/** The send timeout of an adapter made for the timeout case; the others wait long enough for a loaded machine. */
const TIMEOUT_MS = 300;

interface Backend {
  /** A new adapter on this backend (a restarted process is another one). */
  create(): NotificationProvider;
  /** How many times the customer got the message `id`. */
  deliveries(id: string): number;
  /** Make sends fail as an outage does, until `recover()`. */
  breakDown(): void;
  recover(): void;
  /** Make the backend refuse the next messages (e.g. HTTP 4xx), when it can refuse anything. */
  refuse?(): void;
  /** Make the backend never answer, when it can, and give an adapter that waits TIMEOUT_MS. */
  hang?(): NotificationProvider;
  teardown(): Promise<void>;
}

interface AdapterCase {
  name: "file" | "http";
  setup(): Promise<Backend>;
}

const adapters: AdapterCase[] = [
  {
    name: "file",
    setup: async () => {
      const root = mkdtempSync(join(tmpdir(), "ordermesh-notify-conformance-"));
      const dataDir = join(root, "data");
      const lines = (): Array<{ id: string }> => {
        try {
          return readFileSync(join(dataDir, MESSAGES_FILE), "utf8")
            .split("\n")
            .filter((line) => line.trim() !== "")
            .map((line) => JSON.parse(line) as { id: string });
        } catch {
          return [];
        }
      };
      return {
        create: () => new FileNotificationProvider({ dataDir }),
        deliveries: (id) => lines().filter((line) => line.id === id).length,
        // the data directory's path taken by a file: nothing can be read or written there
        breakDown: () => writeFileSync(dataDir, "not a directory"),
        recover: () => rmSync(dataDir, { force: true }),
        teardown: async () => rmSync(root, { recursive: true, force: true }),
      };
    },
  },
  {
    name: "http",
    setup: async () => {
      const receiver = new FakeProvider();
      await receiver.start();
      return {
        create: () => new HttpNotificationProvider({ url: receiver.url, timeoutMs: 10_000 }),
        // the receiver delivers a key once and answers its repeats with the first id; a send under
        // any other key than the message id would not count here
        deliveries: (id) => (receiver.accepted.has(id) ? 1 : 0),
        breakDown: () => (receiver.mode = "fail"),
        recover: () => (receiver.mode = "ok"),
        refuse: () => (receiver.mode = "reject"),
        hang: () => {
          receiver.mode = "hang";
          return new HttpNotificationProvider({ url: receiver.url, timeoutMs: TIMEOUT_MS });
        },
        teardown: () => receiver.stop(),
      };
    },
  },
];

let ids = 0;
const aMessage = (overrides: Partial<OutboundMessage> = {}): OutboundMessage => ({
  id: `ntf-${++ids}`,
  channel: "email",
  to: "customer:cus-1",
  subject: "Order 0193a4f2… paid",
  body: "We received your payment.",
  ...overrides,
});

describe.each(adapters)("notification-provider port on $name", ({ setup }) => {
  let backend: Backend | undefined;
  let provider: NotificationProvider;
  const opened: NotificationProvider[] = [];

  const env = (): Backend => {
    if (backend === undefined) throw new Error("backend not set up");
    return backend;
  };
  const open = (): NotificationProvider => {
    const created = env().create();
    opened.push(created);
    return created;
  };

  beforeEach(async () => {
    backend = await setup();
    provider = open();
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((p) => p.close()));
    await backend?.teardown();
    backend = undefined;
  });

  it("delivers a message and answers a receipt with the provider's message id", async () => {
    const message = aMessage();

    const receipt = await provider.send(message);

    expect(receipt).toEqual({ providerMessageId: expect.stringMatching(/.+/) });
    expect(env().deliveries(message.id)).toBe(1);
    // an SMS has no subject
    const sms = aMessage({ channel: "sms", subject: undefined });
    await expect(provider.send(sms)).resolves.toEqual({ providerMessageId: expect.any(String) });
    expect(env().deliveries(sms.id)).toBe(1);
  });

  it("is idempotent by id: again, at once, or after a restart, the first receipt and one delivery", async () => {
    const message = aMessage();

    const first = await provider.send(message);
    const again = await provider.send(message);
    const together = await Promise.all([provider.send({ ...message }), provider.send({ ...message })]);
    await provider.close();
    const restarted = await open().send(message);

    expect([again, ...together, restarted]).toEqual([first, first, first, first]);
    expect(env().deliveries(message.id)).toBe(1);
    // other ids are other messages
    const other = await open().send(aMessage());
    expect(other.providerMessageId).not.toBe(first.providerMessageId);
  });

  it.each([
    ["no id", { id: "" }],
    ["an unknown channel", { channel: "fax" as OutboundMessage["channel"] }],
    ["no recipient", { to: "" }],
    ["no body", { body: "" }],
  ])(
    "rejects a message with %s (NOTIFY_REJECTED, not retryable) and delivers nothing",
    async (_label, bad) => {
      const message = aMessage(bad);

      await expect(provider.send(message)).rejects.toMatchObject({
        code: "NOTIFY_REJECTED",
        retryable: false,
      });
      expect(env().deliveries(message.id)).toBe(0);
    },
  );

  it("passes on the provider's refusal of a message as NOTIFY_REJECTED, not retryable", async () => {
    const refuse = env().refuse;
    // the file adapter refuses only malformed messages (above): the file takes anything else
    if (refuse === undefined) return;
    refuse();
    const message = aMessage();

    await expect(provider.send(message)).rejects.toMatchObject({ code: "NOTIFY_REJECTED", retryable: false });
    expect(env().deliveries(message.id)).toBe(0);
  });

  it("fails retryably during an outage (NOTIFY_UNAVAILABLE), and the retry under the same id delivers once", async () => {
    env().breakDown();
    const message = aMessage();
    // a new adapter, so that the outage is met on its first use
    const fresh = open();

    await expect(fresh.send(message)).rejects.toMatchObject({ code: "NOTIFY_UNAVAILABLE", retryable: true });
    await expect(fresh.send(message)).rejects.toMatchObject({ code: "NOTIFY_UNAVAILABLE", retryable: true });
    env().recover();
    const receipt = await fresh.send(message);

    expect(receipt.providerMessageId).toEqual(expect.any(String));
    expect(await fresh.send(message)).toEqual(receipt);
    expect(env().deliveries(message.id)).toBe(1);
  });

  it("gives up on a provider that does not answer within its timeout (NOTIFY_UNAVAILABLE, retryable)", async () => {
    const hang = env().hang;
    // the file adapter waits only for its disk, which cannot be made to hang here
    if (hang === undefined) return;
    const impatient = hang();
    opened.push(impatient);
    const started = Date.now();

    await expect(impatient.send(aMessage())).rejects.toMatchObject({
      code: "NOTIFY_UNAVAILABLE",
      retryable: true,
      message: expect.stringMatching(/did not answer/),
    });
    // bounded by the timeout, with room for a loaded machine
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + 2000);
  });

  it("refuses sends once closed (ADAPTER_CLOSED); closing twice is fine", async () => {
    await provider.send(aMessage());

    await provider.close();
    await provider.close();

    await expect(provider.send(aMessage())).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
  });
});
