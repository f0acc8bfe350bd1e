/**
 * The payment-provider port's contract (lib/psp/psp.port.ts), run against every adapter that can
 * run here — the HTTP adapter against the shipped simulator — and read through the mapping onto
 * the payment aggregate's commands: a retried key charges once, a decline is an outcome, a refusal
 * is `rejected`, an answer that proves nothing was done is `unanswered` without `mayHaveActed`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Breaker } from "../../lib/breaker";
import { PspHttpAdapter, pspBreakerOptions } from "../../lib/psp/psp.http.adapter";
import {
  callFailureOf,
  chargeOutcomeOf,
  providerIntentOf,
  providerRefundOf,
  type PaymentProvider,
} from "../../lib/psp/psp.port";
import { startPspSimulator } from "../../lib/psp/psp.simulator";
import { TEST_WEBHOOK_SECRET, newKey } from "../support/psp";
import { waitFor } from "../support/wait";

/** One adapter with the means to make its provider misbehave. */
interface Harness {
  provider: PaymentProvider;
  /** The provider answers every call as unavailable, doing nothing (503). */
  outage(on: boolean): void;
  /** The provider fails every call in a way that leaves the outcome unknown (500). */
  failing(on: boolean): void;
  close(): Promise<void>;
}

const adapters: [string, () => Promise<Harness>][] = [
  [
    "HTTP adapter against the simulator",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "ordermesh-psp-conformance-"));
      const sim = await startPspSimulator({ dataDir: dir, webhookSecret: TEST_WEBHOOK_SECRET, slowMs: 2000 });
      // a breaker that stays closed: the contract is the provider's, not the breaker's
      const breaker = new Breaker({ ...pspBreakerOptions, volumeThreshold: 1000 });
      return {
        provider: new PspHttpAdapter({ baseUrl: sim.url, breaker, timeoutMs: 2000 }),
        outage: (on) => void sim.setFaults({ outage: on }),
        failing: (on) => void sim.setFaults({ errorRate: on ? 1 : 0 }),
        async close() {
          breaker.shutdown();
          await sim.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  ],
];

const usd = (minor: number) => ({ minor, currency: "USD" as const });

describe.each(adapters)("payment-provider port: %s", (_name, open) => {
  let harness: Harness;
  let provider: PaymentProvider;

  beforeAll(async () => {
    harness = await open();
    provider = harness.provider;
  });

  afterAll(() => harness.close());

  afterEach(() => {
    harness.outage(false);
    harness.failing(false);
  });

  const charge = (paymentMethod = "pm_card_visa", key = newKey(), minor = 1500) =>
    provider.createPaymentIntent({
      idempotencyKey: key,
      amount: usd(minor),
      paymentMethod,
      metadata: { paymentId: key },
    });

  async function failureOf(call: Promise<unknown>): Promise<unknown> {
    try {
      await call;
    } catch (err) {
      return err;
    }
    throw new Error("expected the call to fail");
  }

  async function succeeded(intentId: string): Promise<void> {
    await waitFor(
      "the intent to succeed",
      async () => (await provider.getPaymentIntent(intentId)).status === "succeeded",
    );
  }

  it("charges once per key: the same request again answers the same intent", async () => {
    const key = newKey();
    const first = chargeOutcomeOf({ result: await charge("pm_card_visa", key) });
    expect(first).toMatchObject({ kind: expect.stringMatching(/^(processing|succeeded)$/) });
    const intentId = (first as { providerPaymentId: string }).providerPaymentId;
    await succeeded(intentId);

    expect(chargeOutcomeOf({ result: await charge("pm_card_visa", key) })).toMatchObject({
      providerPaymentId: intentId,
    });
    const intent = providerIntentOf(await provider.getPaymentIntent(intentId));
    expect(intent).toEqual({ id: intentId, status: "succeeded" });
  });

  it("answers a decline as an outcome with its code, and reads as a failed intent", async () => {
    const outcome = chargeOutcomeOf({ result: await charge("pm_card_declined") });
    expect(outcome).toMatchObject({
      kind: "declined",
      declineCode: expect.any(String),
      reason: expect.any(String),
    });
    const intentId = (outcome as { providerPaymentId?: string }).providerPaymentId;
    if (intentId !== undefined)
      expect(providerIntentOf(await provider.getPaymentIntent(intentId))).toMatchObject({
        status: "requires_payment_method",
        failure: { code: expect.any(String) },
      });
  });

  it("refunds once per key, and refuses a refund beyond what was captured", async () => {
    const created = chargeOutcomeOf({ result: await charge("pm_card_visa", newKey(), 2200) });
    const intentId = (created as { providerPaymentId: string }).providerPaymentId;
    await succeeded(intentId);
    const key = newKey();

    const refund = providerRefundOf(
      await provider.createRefund({ idempotencyKey: key, paymentIntentId: intentId }),
    );
    expect(refund).toEqual({ id: expect.any(String), amountMinor: 2200 });
    expect(
      providerRefundOf(await provider.createRefund({ idempotencyKey: key, paymentIntentId: intentId })),
    ).toEqual(refund);

    const again = await failureOf(
      provider.createRefund({ idempotencyKey: newKey(), paymentIntentId: intentId }),
    );
    expect(again).toMatchObject({ code: "PSP_REJECTED" });
    expect(callFailureOf(again)).toMatchObject({ kind: "rejected" });
  });

  it("refuses what cannot be done: a refund of an unconfirmed charge, an unknown intent, an unknown method", async () => {
    const slow = chargeOutcomeOf({ result: await charge("pm_card_slow") });
    const slowId = (slow as { providerPaymentId: string }).providerPaymentId;
    for (const call of [
      provider.createRefund({ idempotencyKey: newKey(), paymentIntentId: slowId }),
      provider.getPaymentIntent("pi_missing"),
      charge("pm_card_unknown"),
    ]) {
      const err = await failureOf(call);
      expect(err).toMatchObject({ code: "PSP_REJECTED", retryable: false });
      expect(callFailureOf(err)).toMatchObject({ kind: "rejected" });
    }
  });

  it("tells an unavailable provider that did nothing from one that may have acted", async () => {
    harness.outage(true);
    const key = newKey();
    const idle = await failureOf(charge("pm_card_visa", key));
    expect(idle).toMatchObject({ code: "PSP_UNAVAILABLE", retryable: true });
    expect(chargeOutcomeOf({ error: idle })).toEqual({
      kind: "unanswered",
      error: expect.any(String),
      mayHaveActed: false,
    });

    harness.outage(false);
    harness.failing(true);
    const unknown = await failureOf(charge("pm_card_visa", key));
    expect(unknown).toMatchObject({ code: "PSP_UNAVAILABLE", retryable: true });
    expect(chargeOutcomeOf({ error: unknown })).toEqual({
      kind: "unanswered",
      error: expect.any(String),
      mayHaveActed: true,
    });

    // nothing was performed: the key is still free for the real charge
    harness.failing(false);
    expect(chargeOutcomeOf({ result: await charge("pm_card_visa", key) })).toMatchObject({
      kind: "processing",
    });
  });
});

describe("provider answers as payment commands", () => {
  it("reads an open breaker as a call that was never sent", () => {
    expect(callFailureOf({ code: "BREAKER_OPEN", message: "breaker psp is open" })).toEqual({
      kind: "not-sent",
      error: "breaker psp is open",
    });
  });
});
