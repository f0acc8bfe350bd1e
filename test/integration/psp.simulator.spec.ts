/**
 * The payment-provider simulator over real HTTP on a free port: payment intents, idempotency,
 * refunds, signed webhooks with retries, fault injection, and durability across a restart.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PaymentIntent, Refund } from "../../lib/psp/psp.port";
import { verifySignature } from "../../lib/psp/psp.signature";
import { startPspSimulator, type PspSimulator } from "../../lib/psp/psp.simulator";
import {
  TEST_WEBHOOK_SECRET,
  callPsp,
  newKey,
  startWebhookReceiver,
  type ReceivedWebhook,
  type WebhookReceiver,
} from "../support/psp";
import { waitFor } from "../support/wait";

/** Long enough that a slow intent is certainly still processing while a test looks at it, even under load. */
const SLOW_MS = 2000;

const visa = (amount = 1999, metadata: Record<string, string> = {}) => ({
  amount,
  currency: "USD",
  payment_method: "pm_card_visa",
  metadata,
});

describe("payment-provider simulator", () => {
  let dir: string;
  let receiver: WebhookReceiver;
  let sim: PspSimulator;

  const start = (slowMs = SLOW_MS): Promise<PspSimulator> =>
    startPspSimulator({
      dataDir: dir,
      port: 0,
      webhookUrl: receiver.url,
      webhookSecret: TEST_WEBHOOK_SECRET,
      slowMs,
      webhookRetryDelaysMs: [100, 200, 300],
    });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-psp-sim-"));
    receiver = await startWebhookReceiver();
    sim = await start();
  });

  afterEach(async () => {
    await sim.close();
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const create = (body: unknown, key: string | null = newKey()) =>
    callPsp<PaymentIntent & { error?: Record<string, unknown> }>(sim.url, "POST", "/v1/payment_intents", {
      body,
      ...(key === null ? {} : { idempotencyKey: key }),
    });
  const refund = (body: unknown, key = newKey()) =>
    callPsp<Refund & { error?: Record<string, unknown> }>(sim.url, "POST", "/v1/refunds", {
      body,
      idempotencyKey: key,
    });
  const getIntent = (id: string) => callPsp<PaymentIntent>(sim.url, "GET", `/v1/payment_intents/${id}`);
  const hooksOf = (type: string, objectId: string): ReceivedWebhook[] =>
    receiver.accepted().filter((r) => r.event.type === type && r.event.data.object.id === objectId);
  const refundHooksOf = (intentId: string): ReceivedWebhook[] =>
    receiver
      .accepted()
      .filter(
        (r) =>
          r.event.type === "charge.refunded" && (r.event.data.object as Refund).payment_intent === intentId,
      );

  async function succeededIntent(amount = 1999): Promise<PaymentIntent> {
    const created = await create(visa(amount));
    await waitFor(
      "the intent to succeed",
      async () => (await getIntent(created.body.id)).body.status === "succeeded",
    );
    return (await getIntent(created.body.id)).body;
  }

  it("answers its health check", async () => {
    expect((await callPsp(sim.url, "GET", "/_sim/health")).body).toEqual({ ok: true });
  });

  it("takes a visa charge as processing, then succeeds it and posts a signed webhook", async () => {
    const res = await create(visa(2500, { orderId: "ord-1" }), newKey());

    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      object: "payment_intent",
      status: "processing",
      amount: 2500,
      currency: "USD",
      payment_method: "pm_card_visa",
      metadata: { orderId: "ord-1" },
    });
    expect(res.body.id).toMatch(/^pi_/);
    expect(res.headers.get("idempotent-replayed")).toBeNull();

    await waitFor(
      "the succeeded webhook",
      () => hooksOf("payment_intent.succeeded", res.body.id).length === 1,
    );
    const [hook] = hooksOf("payment_intent.succeeded", res.body.id);
    expect(hook?.event.id).toMatch(/^evt_/);
    expect(hook?.event.data.object).toMatchObject({ id: res.body.id, status: "succeeded" });
    expect(
      verifySignature({ header: hook?.signature, rawBody: hook?.body ?? "", secrets: [TEST_WEBHOOK_SECRET] }),
    ).toEqual({ ok: true, timestamp: expect.any(Number) });
    expect(
      verifySignature({
        header: hook?.signature,
        rawBody: hook?.body ?? "",
        secrets: ["whsec_someone_else_1234"],
      }).ok,
    ).toBe(false);
    expect((await getIntent(res.body.id)).body.status).toBe("succeeded");
  });

  it("declines pm_card_declined with 402 and posts payment_failed", async () => {
    const res = await create({ amount: 500, currency: "USD", payment_method: "pm_card_declined" });

    expect(res.status).toBe(402);
    expect(res.body.error).toMatchObject({
      type: "card_error",
      code: "card_declined",
      decline_code: "generic_decline",
      payment_intent: { status: "requires_payment_method", amount: 500 },
    });
    const intentId = (res.body.error?.payment_intent as PaymentIntent).id;
    await waitFor(
      "the failed webhook",
      () => hooksOf("payment_intent.payment_failed", intentId).length === 1,
    );
    expect((await getIntent(intentId)).body.status).toBe("requires_payment_method");
  });

  it("keeps pm_card_slow processing for slowMs", async () => {
    const started = Date.now();
    const res = await create({ amount: 700, currency: "USD", payment_method: "pm_card_slow" });
    expect(res.body.status).toBe("processing");
    await waitFor(
      "the slow intent to succeed",
      async () => (await getIntent(res.body.id)).body.status === "succeeded",
      8000,
    );
    // not before slowMs had passed since the create was sent (a timer never fires early)
    expect(Date.now() - started).toBeGreaterThanOrEqual(SLOW_MS);
  });

  it("refuses malformed requests without creating anything", async () => {
    const cases: [unknown, string][] = [
      [{ ...visa(), payment_method: "pm_card_amex" }, "payment_method_invalid"],
      [{ ...visa(), amount: 0 }, "parameter_invalid_integer"],
      [{ ...visa(), amount: 12.5 }, "parameter_invalid_integer"],
      [{ ...visa(), currency: "usd" }, "parameter_invalid"],
      [{ ...visa(), metadata: { n: 1 } }, "parameter_invalid"],
    ];
    for (const [body, code] of cases) {
      const res = await create(body);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ type: "invalid_request_error", code });
    }
    const noKey = await create(visa(), null);
    expect(noKey.status).toBe(400);
    expect(noKey.body.error).toMatchObject({ code: "idempotency_key_missing" });
    expect(sim.intents()).toHaveLength(0);
    expect((await getIntent("pi_nope")).status).toBe(404);
  });

  it("replays the same key with the same body, and refuses it with another body", async () => {
    const key = newKey();
    const first = await create(visa(1200, { orderId: "a" }), key);
    // same body, keys in another order: still the same request
    const again = await create(
      { metadata: { orderId: "a" }, payment_method: "pm_card_visa", currency: "USD", amount: 1200 },
      key,
    );
    const other = await create(visa(1300, { orderId: "a" }), key);

    expect(again.status).toBe(first.status);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(other.status).toBe(422);
    expect(other.body.error).toMatchObject({ type: "idempotency_error" });
    expect(sim.intents()).toHaveLength(1);

    const declineKey = newKey();
    const declined = await create(
      { amount: 1, currency: "USD", payment_method: "pm_card_declined" },
      declineKey,
    );
    const declinedAgain = await create(
      { amount: 1, currency: "USD", payment_method: "pm_card_declined" },
      declineKey,
    );
    expect(declinedAgain.status).toBe(402);
    expect(declinedAgain.body).toEqual(declined.body);
    expect(declinedAgain.headers.get("idempotent-replayed")).toBe("true");
    expect(sim.intents()).toHaveLength(2);
  });

  it("refunds a succeeded intent in full, never beyond its amount, and posts charge.refunded", async () => {
    const intent = await succeededIntent(1000);

    const partial = await refund({ payment_intent: intent.id, amount: 400 });
    const tooMuch = await refund({ payment_intent: intent.id, amount: 601 });
    const rest = await refund({ payment_intent: intent.id });
    const nothingLeft = await refund({ payment_intent: intent.id, amount: 1 });

    expect(partial.status).toBe(200);
    expect(partial.body).toMatchObject({
      object: "refund",
      status: "succeeded",
      amount: 400,
      currency: "USD",
      payment_intent: intent.id,
    });
    expect(partial.body.id).toMatch(/^re_/);
    expect(tooMuch.status).toBe(400);
    expect(tooMuch.body.error).toMatchObject({ code: "amount_too_large" });
    expect(rest.status).toBe(200);
    expect(rest.body.amount).toBe(600);
    expect(nothingLeft.status).toBe(400);
    expect(sim.refunds().reduce((sum, r) => sum + r.amount, 0)).toBe(1000);
    await waitFor("two charge.refunded webhooks", () => refundHooksOf(intent.id).length === 2);

    const key = newKey();
    const full = await succeededIntent(300);
    const once = await refund({ payment_intent: full.id }, key);
    const replay = await refund({ payment_intent: full.id }, key);
    expect(replay.body).toEqual(once.body);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(sim.refunds().filter((r) => r.payment_intent === full.id)).toHaveLength(1);
  });

  it("refuses to refund an intent that has not succeeded", async () => {
    const slow = await create({ amount: 700, currency: "USD", payment_method: "pm_card_slow" });
    const declined = await create({ amount: 700, currency: "USD", payment_method: "pm_card_declined" });
    const declinedId = (declined.body.error?.payment_intent as PaymentIntent).id;

    for (const id of [slow.body.id, declinedId]) {
      const res = await refund({ payment_intent: id });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ type: "invalid_request_error", code: "charge_not_refundable" });
    }
    expect((await refund({ payment_intent: "pi_unknown" })).status).toBe(404);
    expect(sim.refunds()).toHaveLength(0);
  });

  it("answers 500 at errorRate 1 without doing anything", async () => {
    sim.setFaults({ errorRate: 1 });
    const key = newKey();
    const res = await create(visa(), key);
    expect(res.status).toBe(500);
    expect(sim.intents()).toHaveLength(0);

    sim.setFaults({ errorRate: 0 });
    const retried = await create(visa(), key);
    expect(retried.status).toBe(200);
    expect(retried.headers.get("idempotent-replayed")).toBeNull();
    expect(sim.intents()).toHaveLength(1);
  });

  it("answers 503 to every API call during an outage, but still its own /_sim routes", async () => {
    const put = await callPsp(sim.url, "PUT", "/_sim/faults", { body: { outage: true } });
    expect(put.body).toEqual({ latencyMs: 0, errorRate: 0, outage: true, dropWebhooks: false });

    expect((await create(visa())).status).toBe(503);
    expect((await getIntent("pi_x")).status).toBe(503);
    expect((await callPsp(sim.url, "GET", "/_sim/health")).status).toBe(200);
    expect(sim.intents()).toHaveLength(0);

    await callPsp(sim.url, "PUT", "/_sim/faults", { body: { outage: false } });
    expect((await create(visa())).status).toBe(200);
  });

  it("validates fault settings", async () => {
    for (const body of [{ errorRate: 2 }, { latencyMs: -1 }, { outage: "yes" }, { chaos: true }]) {
      expect((await callPsp(sim.url, "PUT", "/_sim/faults", { body })).status).toBe(400);
    }
    expect(() => sim.setFaults({ errorRate: -0.1 })).toThrow(RangeError);
    expect((await callPsp(sim.url, "GET", "/_sim/faults")).body).toEqual({
      latencyMs: 0,
      errorRate: 0,
      outage: false,
      dropWebhooks: false,
    });
  });

  it("adds latency to API calls", async () => {
    sim.setFaults({ latencyMs: 300 });
    const started = Date.now();
    const res = await create(visa());
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  it("drops webhooks when asked, while the intent still succeeds", async () => {
    sim.setFaults({ dropWebhooks: true });
    const res = await create(visa());
    await waitFor(
      "the intent to succeed",
      async () => (await getIntent(res.body.id)).body.status === "succeeded",
    );
    // the event happened: its webhook is recorded as dropped, and nothing is owed
    await waitFor("its webhook to be settled", () =>
      sim.webhooks().some((w) => w.body.includes(res.body.id) && w.status !== "pending"),
    );

    expect(
      sim
        .webhooks()
        .filter((w) => w.body.includes(res.body.id))
        .map((w) => w.status),
    ).toEqual(["dropped"]);
    expect(receiver.received.filter((r) => r.event.data.object.id === res.body.id)).toHaveLength(0);
    expect(sim.stats().webhooks.dropped).toBe(1);
  });

  it("retries a webhook until the receiver answers 2xx", async () => {
    receiver.refuseNext(2);
    const res = await create(visa());

    await waitFor(
      "a delivered webhook",
      () => hooksOf("payment_intent.succeeded", res.body.id).length === 1,
      5000,
    );
    const attempts = receiver.received.filter((r) => r.event.data.object.id === res.body.id);
    expect(attempts.map((a) => a.status)).toEqual([500, 500, 200]);
    // the same event each time, freshly signed
    expect(new Set(attempts.map((a) => a.event.id)).size).toBe(1);
    // the receiver answered before the simulator records the delivery
    const record = () => sim.webhooks().find((w) => w.type === "payment_intent.succeeded");
    await waitFor("the simulator to record the delivery", () => record()?.status === "delivered", 5000);
    expect(record()).toMatchObject({
      status: "delivered",
      attempts: 3,
    });
  });

  it("gives a webhook up after its last attempt", async () => {
    receiver.refuseAll(true);
    const res = await create(visa());
    await waitFor(
      "the webhook to be given up",
      () => sim.webhooks().some((w) => w.status === "failed"),
      5000,
    );
    expect(receiver.received.filter((r) => r.event.data.object.id === res.body.id)).toHaveLength(4);
  });

  it("keeps intents, refunds and idempotency across a restart, and finishes what was left", async () => {
    const done = await succeededIntent(900);
    const refunded = await refund({ payment_intent: done.id, amount: 100 });
    const key = newKey();
    const slow = await create({ amount: 800, currency: "USD", payment_method: "pm_card_slow" }, key);
    // a webhook still owed: the receiver refuses it until after the restart
    receiver.refuseAll(true);
    const owed = await create(visa(50));
    await waitFor("a refused attempt", () =>
      receiver.received.some((r) => r.event.data.object.id === owed.body.id && r.status === 503),
    );

    expect((await getIntent(slow.body.id)).body.status).toBe("processing");
    await sim.close();
    receiver.refuseAll(false);
    sim = await start();

    expect((await getIntent(done.id)).body).toMatchObject({ id: done.id, status: "succeeded", amount: 900 });
    expect(await callPsp(sim.url, "GET", `/v1/refunds/${refunded.body.id}`)).toMatchObject({
      status: 200,
      body: { amount: 100 },
    });
    const replay = await create({ amount: 800, currency: "USD", payment_method: "pm_card_slow" }, key);
    expect(replay.body.id).toBe(slow.body.id);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    await waitFor(
      "the owed webhook after the restart",
      () => hooksOf("payment_intent.succeeded", owed.body.id).length === 1,
      5000,
    );
    await waitFor(
      "the processing intent to finish after the restart",
      async () => (await getIntent(slow.body.id)).body.status === "succeeded",
      8000,
    );
    await waitFor("its webhook", () => hooksOf("payment_intent.succeeded", slow.body.id).length === 1, 5000);
    expect(sim.intents().map((i) => i.id)).toEqual(
      expect.arrayContaining([done.id, slow.body.id, owed.body.id]),
    );
  });
});
