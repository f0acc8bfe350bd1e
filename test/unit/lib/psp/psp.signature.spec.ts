import { createHmac } from "node:crypto";
import { signPayload, verifySignature } from "../../../../lib/psp/psp.signature";

const SECRET = "whsec_test_0123456789abcdef";
const OTHER = "whsec_other_fedcba9876543210";
const BODY = JSON.stringify({
  id: "evt_1",
  type: "payment_intent.succeeded",
  data: { object: { id: "pi_1" } },
});
const NOW = 1_750_000_000;

function v1(secret: string, body: string, t: number): string {
  return createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");
}

describe("webhook signatures", () => {
  it("signs as t=<seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'>", () => {
    expect(signPayload(SECRET, BODY, NOW)).toBe(`t=${NOW},v1=${v1(SECRET, BODY, NOW)}`);
  });

  it("verifies what it signed, string or bytes", () => {
    const header = signPayload(SECRET, BODY, NOW);
    expect(verifySignature({ header, rawBody: BODY, secrets: [SECRET], now: NOW })).toEqual({
      ok: true,
      timestamp: NOW,
    });
    expect(verifySignature({ header, rawBody: Buffer.from(BODY), secrets: [SECRET], now: NOW }).ok).toBe(
      true,
    );
  });

  it("refuses a tampered body", () => {
    const header = signPayload(SECRET, BODY, NOW);
    const tampered = BODY.replace("pi_1", "pi_2");
    expect(verifySignature({ header, rawBody: tampered, secrets: [SECRET], now: NOW })).toEqual({
      ok: false,
      code: "SIGNATURE_MISMATCH",
    });
  });

  it("refuses a signature made with another secret", () => {
    const header = signPayload(OTHER, BODY, NOW);
    expect(verifySignature({ header, rawBody: BODY, secrets: [SECRET], now: NOW })).toEqual({
      ok: false,
      code: "SIGNATURE_MISMATCH",
    });
  });

  it("refuses a changed timestamp (it is part of what is signed)", () => {
    const header = `t=${NOW + 1},v1=${v1(SECRET, BODY, NOW)}`;
    expect(verifySignature({ header, rawBody: BODY, secrets: [SECRET], now: NOW }).ok).toBe(false);
  });

  it("accepts up to the tolerance and refuses beyond it, in the past and in the future", () => {
    const at = (t: number) => signPayload(SECRET, BODY, t);
    const check = (t: number, toleranceSeconds?: number) =>
      verifySignature({ header: at(t), rawBody: BODY, secrets: [SECRET], now: NOW, toleranceSeconds });
    expect(check(NOW - 300).ok).toBe(true);
    expect(check(NOW + 300).ok).toBe(true);
    expect(check(NOW - 301)).toEqual({ ok: false, code: "SIGNATURE_EXPIRED" });
    expect(check(NOW + 301)).toEqual({ ok: false, code: "SIGNATURE_EXPIRED" });
    expect(check(NOW - 3600)).toEqual({ ok: false, code: "SIGNATURE_EXPIRED" });
    expect(check(NOW - 20, 10)).toEqual({ ok: false, code: "SIGNATURE_EXPIRED" });
  });

  it("uses the clock when no time is given", () => {
    const fresh = signPayload(SECRET, BODY, Math.floor(Date.now() / 1000));
    const stale = signPayload(SECRET, BODY, Math.floor(Date.now() / 1000) - 600);
    expect(verifySignature({ header: fresh, rawBody: BODY, secrets: [SECRET] }).ok).toBe(true);
    expect(verifySignature({ header: stale, rawBody: BODY, secrets: [SECRET] })).toEqual({
      ok: false,
      code: "SIGNATURE_EXPIRED",
    });
  });

  it("says a missing header is missing", () => {
    for (const header of [undefined, "", "   "]) {
      expect(verifySignature({ header, rawBody: BODY, secrets: [SECRET], now: NOW })).toEqual({
        ok: false,
        code: "SIGNATURE_MISSING",
      });
    }
  });

  it("says a header not of the form t=…,v1=… is malformed", () => {
    const good = v1(SECRET, BODY, NOW);
    for (const header of [
      "garbage",
      `v1=${good}`,
      `t=${NOW}`,
      `t=abc,v1=${good}`,
      `t=-5,v1=${good}`,
      `t=${NOW},t=${NOW},v1=${good}`,
      `t=${NOW},v1`,
      `t=${NOW},v0=${good}`,
    ]) {
      expect(verifySignature({ header, rawBody: BODY, secrets: [SECRET], now: NOW })).toEqual({
        ok: false,
        code: "SIGNATURE_MALFORMED",
      });
    }
  });

  it("treats a v1 value that is not a SHA-256 hex digest as a mismatch", () => {
    const header = `t=${NOW},v1=abc123`;
    expect(verifySignature({ header, rawBody: BODY, secrets: [SECRET], now: NOW })).toEqual({
      ok: false,
      code: "SIGNATURE_MISMATCH",
    });
  });

  it("accepts a header with several v1 values when any one matches, in any position", () => {
    const good = v1(SECRET, BODY, NOW);
    const bad = v1(OTHER, BODY, NOW);
    for (const header of [
      `t=${NOW},v1=${bad},v1=${good}`,
      `t=${NOW},v1=${good},v1=${bad}`,
      ` t=${NOW} , v1=${good} `,
    ]) {
      expect(verifySignature({ header, rawBody: BODY, secrets: [SECRET], now: NOW }).ok).toBe(true);
    }
    expect(
      verifySignature({ header: `t=${NOW},v1=${bad},v1=${bad}`, rawBody: BODY, secrets: [SECRET], now: NOW }),
    ).toEqual({ ok: false, code: "SIGNATURE_MISMATCH" });
  });

  it("ignores other schemes next to v1", () => {
    const header = `t=${NOW},v0=deadbeef,v1=${v1(SECRET, BODY, NOW)}`;
    expect(verifySignature({ header, rawBody: BODY, secrets: [SECRET], now: NOW }).ok).toBe(true);
  });

  it("accepts any of several secrets while one is rolled", () => {
    const signedWithOld = signPayload(OTHER, BODY, NOW);
    const signedWithNew = signPayload(SECRET, BODY, NOW);
    const secrets = [SECRET, OTHER];
    expect(verifySignature({ header: signedWithOld, rawBody: BODY, secrets, now: NOW }).ok).toBe(true);
    expect(verifySignature({ header: signedWithNew, rawBody: BODY, secrets, now: NOW }).ok).toBe(true);
    expect(verifySignature({ header: signedWithOld, rawBody: BODY, secrets: [SECRET], now: NOW }).ok).toBe(
      false,
    );
    expect(verifySignature({ header: signedWithNew, rawBody: BODY, secrets: [], now: NOW }).ok).toBe(false);
  });

  it("refuses a timestamp that is not whole seconds when signing", () => {
    expect(() => signPayload(SECRET, BODY, 1.5)).toThrow(RangeError);
    expect(() => signPayload(SECRET, BODY, -1)).toThrow(RangeError);
  });
});
