/**
 * The token verifier without a key set: HS256 tokens, every kind of refusal, the claim checks.
 * Tokens signed by a provider's keys are covered by test/integration/auth.jwks.spec.ts.
 */
import { generateKeyPairSync } from "node:crypto";
import jwt from "jsonwebtoken";
import { AuthenticationError, issueToken } from "../../../../lib/auth/jwt";
import { createTokenVerifier, type TokenVerifier } from "../../../../lib/auth/token-verifier";
import { b64url, handMade } from "../../../support/tokens";

const secret = "s3cret-s3cret-s3cret";
const now = () => Math.floor(Date.now() / 1000);

const hs256 = (claims: Record<string, unknown>, key = secret) =>
  handMade({ alg: "HS256", typ: "JWT" }, { sub: "alice", roles: ["customer"], ...claims }, key);

async function refusal(verifier: TokenVerifier, token: string): Promise<AuthenticationError> {
  try {
    await verifier.verify(token);
  } catch (err) {
    expect(err).toBeInstanceOf(AuthenticationError);
    return err as AuthenticationError;
  }
  throw new Error("token was accepted");
}

describe("token verifier", () => {
  const verifier = createTokenVerifier({ secret });

  it("gives back the subject and roles of an HS256 token signed with the secret", async () => {
    const token = issueToken({ sub: "alice", roles: ["customer", "admin"] }, { secret });
    await expect(verifier.verify(token)).resolves.toEqual({ id: "alice", roles: ["customer", "admin"] });
  });

  it("refuses alg none, signed or not", async () => {
    const claims = { sub: "mallory", roles: ["admin"], exp: now() + 60 };
    expect((await refusal(verifier, handMade({ alg: "none" }, claims))).type).toBe("UNAUTHORIZED");
    expect((await refusal(verifier, handMade({ alg: "none" }, claims, secret))).type).toBe("UNAUTHORIZED");
    expect((await refusal(verifier, handMade({ alg: "None" }, claims))).type).toBe("UNAUTHORIZED");
  });

  it("refuses every other algorithm, even signed with the right secret", async () => {
    const claims = { sub: "alice", roles: ["admin"] };
    for (const algorithm of ["HS384", "HS512"] as const) {
      const token = jwt.sign(claims, secret, { algorithm });
      expect((await refusal(verifier, token)).code).toBe(401);
    }
  });

  it("refuses RS256 and ES256 tokens when no key set is configured", async () => {
    const claims = { sub: "alice", roles: ["admin"] };
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const rs = jwt.sign(claims, rsa.privateKey, { algorithm: "RS256", keyid: "k1" });
    const es = jwt.sign(claims, ec.privateKey, { algorithm: "ES256" });
    expect((await refusal(verifier, rs)).type).toBe("UNAUTHORIZED");
    expect((await refusal(verifier, es)).type).toBe("UNAUTHORIZED");
  });

  it("refuses an HS256 token keyed with a public key, whatever the secret holds", async () => {
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pem = publicKey.export({ type: "spki", format: "pem" }).toString();
    const forged = hs256({ roles: ["admin"] }, pem);
    expect((await refusal(verifier, forged)).type).toBe("UNAUTHORIZED");
    // a secret that happens to be a PEM stays an HMAC secret: it never verifies the key pair's RS256 tokens
    const pemSecret = createTokenVerifier({ secret: pem });
    await expect(pemSecret.verify(forged)).resolves.toEqual({ id: "alice", roles: ["admin"] });
    const rs = jwt.sign({ sub: "alice", roles: ["admin"] }, privateKey, { algorithm: "RS256" });
    expect((await refusal(pemSecret, rs)).type).toBe("UNAUTHORIZED");
  });

  it("refuses HS256 tokens when only a key set is configured, without asking it", async () => {
    // nothing listens on port 1: asking the key set would fail with 503, not 401
    const providerOnly = createTokenVerifier({ jwksUrl: "http://127.0.0.1:1/jwks.json" });
    try {
      const token = issueToken({ sub: "alice", roles: ["customer"] }, { secret });
      expect(await refusal(providerOnly, token)).toMatchObject({ code: 401, type: "UNAUTHORIZED" });
    } finally {
      providerOnly.close();
    }
  });

  it("refuses bad signatures: another secret, a tampered payload, a stripped signature", async () => {
    expect((await refusal(verifier, hs256({}, "another-secret-entirely"))).type).toBe("UNAUTHORIZED");
    const [head, , sig] = hs256({ exp: now() + 60 }).split(".");
    const tampered = `${head}.${b64url({ sub: "alice", roles: ["admin"], exp: now() + 60 })}.${sig}`;
    expect((await refusal(verifier, tampered)).type).toBe("UNAUTHORIZED");
    expect((await refusal(verifier, `${head}.${b64url({ sub: "alice", roles: ["customer"] })}.`)).type).toBe(
      "UNAUTHORIZED",
    );
  });

  it("refuses malformed tokens", async () => {
    const good = hs256({});
    const [, payload, signature] = good.split(".");
    const malformed = [
      "",
      "abc",
      "a.b",
      `${good}.x`,
      `.${payload}.${signature}`,
      `${Buffer.from("not json").toString("base64url")}.${payload}.${signature}`,
      `${b64url(["HS256"])}.${payload}.${signature}`,
      `${b64url({ typ: "JWT" })}.${payload}.${signature}`,
      `${b64url({ alg: "HS256", kid: 7 })}.${payload}.${signature}`,
      `${b64url({ alg: "HS256" })}.${payload}!.${signature}`,
    ];
    for (const token of malformed) {
      expect(await refusal(verifier, token)).toMatchObject({ code: 401, type: "UNAUTHORIZED" });
    }
  });

  it("refuses an expired token beyond the 30 s skew with TOKEN_EXPIRED, and accepts one within it", async () => {
    expect(await refusal(verifier, hs256({ exp: now() - 31 }))).toMatchObject({
      code: 401,
      type: "TOKEN_EXPIRED",
    });
    await expect(verifier.verify(hs256({ exp: now() - 5 }))).resolves.toMatchObject({ id: "alice" });
    const strict = createTokenVerifier({ secret, clockToleranceSeconds: 0 });
    expect((await refusal(strict, hs256({ exp: now() - 5 }))).type).toBe("TOKEN_EXPIRED");
  });

  it("refuses a token that is not valid yet beyond the skew, and accepts one within it", async () => {
    expect((await refusal(verifier, hs256({ nbf: now() + 60 }))).type).toBe("UNAUTHORIZED");
    await expect(verifier.verify(hs256({ nbf: now() + 10 }))).resolves.toMatchObject({ id: "alice" });
  });

  it("does not call a forged token expired", async () => {
    const forged = hs256({ exp: now() - 3600 }, "another-secret-entirely");
    expect((await refusal(verifier, forged)).type).toBe("UNAUTHORIZED");
  });

  it("checks issuer and audience when configured", async () => {
    const strict = createTokenVerifier({ secret, issuer: "https://id.example", audience: "ordermesh" });
    const options = { secret, issuer: "https://id.example", audience: "ordermesh" };
    const token = issueToken({ sub: "alice", roles: ["customer"] }, options);
    await expect(strict.verify(token)).resolves.toEqual({ id: "alice", roles: ["customer"] });
    await expect(
      strict.verify(hs256({ iss: "https://id.example", aud: ["other", "ordermesh"] })),
    ).resolves.toMatchObject({ id: "alice" });

    const wrong = [
      issueToken({ sub: "alice", roles: ["customer"] }, { ...options, issuer: "https://evil.example" }),
      issueToken({ sub: "alice", roles: ["customer"] }, { ...options, audience: "another-api" }),
      issueToken({ sub: "alice", roles: ["customer"] }, { secret, audience: "ordermesh" }),
      issueToken({ sub: "alice", roles: ["customer"] }, { secret, issuer: "https://id.example" }),
    ];
    for (const bad of wrong) expect((await refusal(strict, bad)).type).toBe("UNAUTHORIZED");
    // without the checks configured, the same claims do not matter
    await expect(verifier.verify(wrong[0] as string)).resolves.toMatchObject({ id: "alice" });
  });

  it("refuses a genuine token without a usable subject or role", async () => {
    expect((await refusal(verifier, hs256({ sub: undefined }))).type).toBe("UNAUTHORIZED");
    expect((await refusal(verifier, hs256({ sub: "a b" }))).type).toBe("UNAUTHORIZED");
    expect((await refusal(verifier, hs256({ roles: ["root"] }))).type).toBe("UNAUTHORIZED");
  });

  it("needs a secret or a key set", () => {
    expect(() => createTokenVerifier({})).toThrow(TypeError);
  });
});
