/**
 * The provider client against the real simulator, through a real breaker: how answers map to
 * outcomes and errors, and which of them open the breaker.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Breaker, type BreakerStateChange } from "../../lib/breaker";
import { PspHttpAdapter, pspBreakerOptions } from "../../lib/psp/psp.http.adapter";
import type { PaymentIntent } from "../../lib/psp/psp.port";
import { startPspSimulator, type PspSimulator } from "../../lib/psp/psp.simulator";
import { freePort } from "../support/ports";
import { TEST_WEBHOOK_SECRET, newKey } from "../support/psp";
import { waitFor } from "../support/wait";

const usd = (minor: number) => ({ minor, currency: "USD" as const });

describe("payment-provider client", () => {
  let dir: string;
  let sim: PspSimulator;
  let breaker: Breaker;
  let changes: BreakerStateChange[];
  let client: PspHttpAdapter;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-psp-client-"));
    sim = await startPspSimulator({ dataDir: dir, webhookSecret: TEST_WEBHOOK_SECRET, slowMs: 300 });
    changes = [];
    breaker = new Breaker({
      ...pspBreakerOptions,
      resetTimeoutMs: 300,
      onStateChange: (c) => changes.push(c),
    });
    client = new PspHttpAdapter({ baseUrl: sim.url, breaker, timeoutMs: 2000 });
  });

  afterEach(async () => {
    breaker.shutdown();
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const charge = (paymentMethod = "pm_card_visa", key = newKey()) =>
    client.createPaymentIntent({
      idempotencyKey: key,
      amount: usd(1500),
      paymentMethod,
      metadata: { paymentId: key },
    });

  async function errorOf(
    promise: Promise<unknown>,
  ): Promise<{ code?: string; retryable?: boolean; data?: Record<string, unknown> }> {
    try {
      await promise;
    } catch (err) {
      return err as { code?: string; retryable?: boolean; data?: Record<string, unknown> };
    }
    throw new Error("expected a rejection");
  }

  it("maps a visa charge to processing, and reads the intent once it succeeded", async () => {
    const key = newKey();
    const outcome = await charge("pm_card_visa", key);

    expect(outcome).toMatchObject({
      outcome: "processing",
      intent: { status: "processing", amount: 1500, currency: "USD", metadata: { paymentId: key } },
    });
    const id = (outcome as { intent: PaymentIntent }).intent.id;
    await waitFor(
      "the intent to succeed",
      async () => (await client.getPaymentIntent(id)).status === "succeeded",
    );
    // the same key again: the provider replays its first answer, never a second intent
    expect(await charge("pm_card_visa", key)).toMatchObject({ outcome: "processing", intent: { id } });
    expect(sim.intents()).toHaveLength(1);
  });

  it("maps a card decline to the declined outcome", async () => {
    const outcome = await charge("pm_card_declined");
    expect(outcome).toMatchObject({
      outcome: "declined",
      declineCode: "generic_decline",
      message: expect.stringContaining("declined"),
      intent: { status: "requires_payment_method" },
    });
  });

  it("throws PSP_REJECTED (not retryable) with the provider's error for other 4xx", async () => {
    const invalid = await errorOf(charge("pm_card_amex"));
    expect(invalid).toMatchObject({
      code: "PSP_REJECTED",
      retryable: false,
      data: { status: 400, error: { type: "invalid_request_error", code: "payment_method_invalid" } },
    });
    expect(await errorOf(client.getPaymentIntent("pi_missing"))).toMatchObject({
      code: "PSP_REJECTED",
      data: { status: 404 },
    });
    const slow = (await charge("pm_card_slow")) as { intent: PaymentIntent };
    expect(
      await errorOf(client.createRefund({ idempotencyKey: newKey(), paymentIntentId: slow.intent.id })),
    ).toMatchObject({
      code: "PSP_REJECTED",
      data: { status: 400, error: { code: "charge_not_refundable" } },
    });
    expect(breaker.stats()).toMatchObject({ state: "closed", failures: 0 });
  });

  it("refunds a succeeded intent", async () => {
    const created = (await charge()) as { intent: PaymentIntent };
    await waitFor(
      "the intent to succeed",
      async () => (await client.getPaymentIntent(created.intent.id)).status === "succeeded",
    );
    const refund = await client.createRefund({
      idempotencyKey: newKey(),
      paymentIntentId: created.intent.id,
      amount: usd(500),
    });
    expect(refund).toMatchObject({ object: "refund", amount: 500, payment_intent: created.intent.id });
  });

  it("throws PSP_UNAVAILABLE (retryable) on 5xx, timeouts and refused connections", async () => {
    sim.setFaults({ errorRate: 1 });
    expect(await errorOf(charge())).toMatchObject({
      code: "PSP_UNAVAILABLE",
      retryable: true,
      data: { status: 500, outcomeUnknown: true },
    });

    // 503 says the request was not handled: a create that got it certainly charged nothing
    sim.setFaults({ errorRate: 0, outage: true });
    expect(await errorOf(charge())).toMatchObject({
      code: "PSP_UNAVAILABLE",
      data: { status: 503, outcomeUnknown: false },
    });

    sim.setFaults({ outage: false, latencyMs: 400 });
    const impatient = new PspHttpAdapter({ baseUrl: sim.url, breaker, timeoutMs: 100 });
    expect(await errorOf(impatient.getPaymentIntent("pi_x"))).toMatchObject({
      code: "PSP_UNAVAILABLE",
      retryable: true,
      data: { timeout: true, outcomeUnknown: true },
    });

    const nobody = new PspHttpAdapter({ baseUrl: `http://127.0.0.1:${await freePort()}`, breaker });
    expect(await errorOf(nobody.getPaymentIntent("pi_x"))).toMatchObject({
      code: "PSP_UNAVAILABLE",
      retryable: true,
      data: { outcomeUnknown: false },
    });
  });

  it("never opens the breaker on declines", async () => {
    for (let i = 0; i < 20; i++) expect((await charge("pm_card_declined")).outcome).toBe("declined");

    expect(breaker.stats()).toMatchObject({ state: "closed", failures: 0, ignored: 20 });
    expect(changes).toEqual([]);
  });

  it("opens on an outage, fails fast while open, and closes after a half-open probe once the outage ends", async () => {
    sim.setFaults({ outage: true });
    for (let i = 0; i < 5; i++) expect((await errorOf(charge())).code).toBe("PSP_UNAVAILABLE");
    expect(breaker.state).toBe("open");

    // open: refused without asking the provider (it would answer 200 now)
    sim.setFaults({ outage: false });
    expect(await errorOf(charge())).toMatchObject({ code: "BREAKER_OPEN", retryable: true });
    expect(sim.intents()).toHaveLength(0);

    // a probe into a provider still down opens it again
    sim.setFaults({ outage: true });
    await waitFor("half-open", () => breaker.state === "halfOpen", 3000);
    expect((await errorOf(charge())).code).toBe("PSP_UNAVAILABLE");
    expect(breaker.state).toBe("open");

    sim.setFaults({ outage: false });
    await waitFor("half-open again", () => breaker.state === "halfOpen", 3000);
    expect((await charge()).outcome).toBe("processing");
    expect(breaker.state).toBe("closed");
    expect(changes.map((c) => `${c.from}→${c.to}`)).toEqual([
      "closed→open",
      "open→halfOpen",
      "halfOpen→open",
      "open→halfOpen",
      "halfOpen→closed",
    ]);
    expect(breaker.stats().rejects).toBeGreaterThanOrEqual(1);
  });
});
