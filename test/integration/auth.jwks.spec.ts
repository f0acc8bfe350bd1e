/**
 * Tokens signed by an identity provider, verified with the keys of a JWKS served over real HTTP
 * by a local server the test controls: which keys it serves, whether it answers, and how many
 * times it was asked. The key set's clock is a variable the test moves, so cache time and refetch
 * throttle are exercised without waiting.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import jwt from "jsonwebtoken";
import { Breaker } from "../../lib/breaker";
import { AuthenticationError } from "../../lib/auth/jwt";
import {
  createTokenVerifier,
  type TokenVerifier,
  type TokenVerifierOptions,
} from "../../lib/auth/token-verifier";
import { errorResponse } from "../../lib/http/error-response";
import { freePort } from "../support/ports";
import { b64url, handMade } from "../support/tokens";

/** How the provider answers: with its key set, with a 500, or not at all. */
type Mode = "serve" | "fail" | "hang";

interface Provider {
  url: string;
  /** Requests for the key set received so far. */
  requests: number;
  mode: Mode;
  keys: Record<string, unknown>[];
  close(): Promise<void>;
}

async function startProvider(keys: Record<string, unknown>[]): Promise<Provider> {
  const server: Server = createServer((req, res) => {
    if (req.url !== "/.well-known/jwks.json") {
      res.writeHead(404).end();
      return;
    }
    provider.requests += 1;
    if (provider.mode === "hang") return;
    if (provider.mode === "fail") {
      res.writeHead(500, { "content-type": "text/plain" }).end("down for maintenance");
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: provider.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  let closed = false;
  const provider: Provider = {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    requests: 0,
    mode: "serve",
    keys,
    close: async () => {
      if (closed) return;
      closed = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await stopped;
    },
  };
  return provider;
}

interface KeyPair {
  kid: string;
  publicKey: KeyObject;
  privateKey: KeyObject;
}

function rsaKey(kid: string): KeyPair {
  return { kid, ...generateKeyPairSync("rsa", { modulusLength: 2048 }) };
}

function ecKey(kid: string): KeyPair {
  return { kid, ...generateKeyPairSync("ec", { namedCurve: "P-256" }) };
}

function jwkOf(pair: KeyPair, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...pair.publicKey.export({ format: "jwk" }), kid: pair.kid, use: "sig", ...extra };
}

const ISSUER = "https://id.example.test";
const AUDIENCE = "ordermesh-api";
const SECRET = "s3cret-s3cret-s3cret";

/** A token of the provider: signed with `pair`, naming `kid` (its own by default). */
function providerToken(
  pair: KeyPair,
  algorithm: "RS256" | "ES256",
  options: { kid?: string | null; sub?: string; expiresIn?: number; issuer?: string; audience?: string } = {},
): string {
  const kid = options.kid === undefined ? pair.kid : options.kid;
  return jwt.sign({ roles: ["customer"] }, pair.privateKey, {
    algorithm,
    subject: options.sub ?? "alice",
    expiresIn: options.expiresIn ?? 300,
    issuer: options.issuer ?? ISSUER,
    audience: options.audience ?? AUDIENCE,
    ...(kid === null ? {} : { keyid: kid }),
  });
}

async function refusal(verifier: TokenVerifier, token: string): Promise<{ code?: unknown; type?: unknown }> {
  try {
    await verifier.verify(token);
  } catch (err) {
    return err as { code?: unknown; type?: unknown };
  }
  throw new Error("token was accepted");
}

describe("tokens signed by an identity provider (JWKS)", () => {
  const rsa = rsaKey("rsa-1");
  const ec = ecKey("ec-1");
  const rotated = rsaKey("rsa-2");

  let provider: Provider;
  let clock: number;
  const verifiers: TokenVerifier[] = [];

  function aVerifier(options: Partial<TokenVerifierOptions> = {}): TokenVerifier {
    const verifier = createTokenVerifier({
      jwksUrl: provider.url,
      issuer: ISSUER,
      audience: AUDIENCE,
      ...options,
      jwks: { now: () => clock, ...options.jwks },
    });
    verifiers.push(verifier);
    return verifier;
  }

  beforeEach(async () => {
    clock = Date.now();
    provider = await startProvider([jwkOf(rsa), jwkOf(ec)]);
  });

  afterEach(async () => {
    verifiers.splice(0).forEach((verifier) => verifier.close());
    await provider.close();
  });

  it("accepts RS256 and ES256 tokens signed with keys of the set, fetching the set once", async () => {
    const verifier = aVerifier();
    await expect(verifier.verify(providerToken(rsa, "RS256"))).resolves.toEqual({
      id: "alice",
      roles: ["customer"],
    });
    await expect(verifier.verify(providerToken(ec, "ES256", { sub: "bob" }))).resolves.toEqual({
      id: "bob",
      roles: ["customer"],
    });
    await Promise.all([1, 2, 3].map(() => verifier.verify(providerToken(rsa, "RS256"))));
    expect(provider.requests).toBe(1);
  });

  it("fetches the set once for concurrent first requests", async () => {
    const verifier = aVerifier();
    const principals = await Promise.all(
      Array.from({ length: 10 }, (_, i) => verifier.verify(providerToken(ec, "ES256", { sub: `user-${i}` }))),
    );
    expect(principals.map((p) => p.id)).toEqual(Array.from({ length: 10 }, (_, i) => `user-${i}`));
    expect(provider.requests).toBe(1);
  });

  it("refetches once for an unknown kid, then refuses the token with 401", async () => {
    const verifier = aVerifier();
    await verifier.verify(providerToken(rsa, "RS256"));
    expect(provider.requests).toBe(1);

    clock += 60_000;
    const stranger = rsaKey("unknown-kid");
    const err = await refusal(verifier, providerToken(stranger, "RS256"));
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err).toMatchObject({ code: 401, type: "UNAUTHORIZED" });
    expect(provider.requests).toBe(2);
  });

  it("refetches for unknown kids at most once per 30 s, however many arrive", async () => {
    const verifier = aVerifier();
    await verifier.verify(providerToken(rsa, "RS256"));
    const forged = (i: number) => providerToken(rsa, "RS256", { kid: `random-${i}` });
    // the set was fetched a moment ago: a kid it does not list is not worth asking again
    await refusal(verifier, forged(-1));
    expect(provider.requests).toBe(1);

    clock += 30_000;
    const flood = await Promise.all(Array.from({ length: 25 }, (_, i) => refusal(verifier, forged(i))));
    for (let i = 25; i < 50; i++) flood.push(await refusal(verifier, forged(i)));
    expect(flood.every((err) => err.code === 401 && err.type === "UNAUTHORIZED")).toBe(true);
    expect(provider.requests).toBe(2);

    clock += 29_000;
    await refusal(verifier, forged(50));
    expect(provider.requests).toBe(2);
    clock += 1_000;
    await refusal(verifier, forged(51));
    await refusal(verifier, forged(52));
    expect(provider.requests).toBe(3);
  });

  it("follows a key rotation: a token naming the new kid is accepted after a refetch", async () => {
    const verifier = aVerifier();
    await verifier.verify(providerToken(rsa, "RS256"));
    provider.keys = [jwkOf(rotated), jwkOf(ec)];

    clock += 31_000;
    await expect(verifier.verify(providerToken(rotated, "RS256", { sub: "carol" }))).resolves.toMatchObject({
      id: "carol",
    });
    expect(provider.requests).toBe(2);
    // the provider no longer lists the old key
    expect(await refusal(verifier, providerToken(rsa, "RS256"))).toMatchObject({ code: 401 });
  });

  it("refetches the set when its cache time (10 min) is over", async () => {
    const verifier = aVerifier();
    await verifier.verify(providerToken(rsa, "RS256"));
    provider.keys = [jwkOf(ec)];

    clock += 10 * 60_000 - 1;
    await verifier.verify(providerToken(rsa, "RS256"));
    expect(provider.requests).toBe(1);

    clock += 1;
    expect(await refusal(verifier, providerToken(rsa, "RS256"))).toMatchObject({ code: 401 });
    expect(provider.requests).toBe(2);
    await expect(verifier.verify(providerToken(ec, "ES256"))).resolves.toMatchObject({ id: "alice" });
  });

  it("keeps using the last good set while the provider fails, retrying at most every 30 s", async () => {
    const failures: unknown[] = [];
    const verifier = aVerifier({ jwks: { onFetchFailed: (err) => failures.push(err) } });
    await verifier.verify(providerToken(rsa, "RS256"));

    provider.mode = "fail";
    clock += 11 * 60_000;
    await expect(verifier.verify(providerToken(rsa, "RS256"))).resolves.toMatchObject({ id: "alice" });
    expect(provider.requests).toBe(2);
    expect(failures).toHaveLength(1);
    await expect(verifier.verify(providerToken(ec, "ES256"))).resolves.toMatchObject({ id: "alice" });
    expect(await refusal(verifier, providerToken(rsa, "RS256", { kid: "unknown" }))).toMatchObject({
      code: 401,
    });
    expect(provider.requests).toBe(2);

    provider.mode = "serve";
    provider.keys = [jwkOf(rotated)];
    clock += 30_000;
    await expect(verifier.verify(providerToken(rotated, "RS256"))).resolves.toMatchObject({ id: "alice" });
    expect(provider.requests).toBe(3);
  });

  it("keeps using the last good set when the provider is down", async () => {
    const verifier = aVerifier();
    await verifier.verify(providerToken(rsa, "RS256"));
    await provider.close();

    clock += 11 * 60_000;
    await expect(verifier.verify(providerToken(rsa, "RS256"))).resolves.toMatchObject({ id: "alice" });
    clock += 31_000;
    await expect(verifier.verify(providerToken(ec, "ES256"))).resolves.toMatchObject({ id: "alice" });
    expect(await refusal(verifier, providerToken(rotated, "RS256"))).toMatchObject({ code: 401 });
  });

  it("answers 503-class, retryable, when the provider is down at first use; HS256 tokens still pass", async () => {
    const verifier = createTokenVerifier({
      secret: SECRET,
      jwksUrl: `http://127.0.0.1:${await freePort()}/.well-known/jwks.json`,
    });
    verifiers.push(verifier);

    const err = await refusal(verifier, providerToken(rsa, "RS256"));
    expect(err).not.toBeInstanceOf(AuthenticationError);
    expect(err).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE", retryable: true });
    expect(errorResponse(err, "req-1")).toMatchObject({
      status: 503,
      headers: { "Retry-After": "1" },
      body: { error: { code: "SERVICE_UNAVAILABLE" } },
    });

    const hs = jwt.sign({ roles: ["admin"] }, SECRET, { algorithm: "HS256", subject: "ops" });
    await expect(verifier.verify(hs)).resolves.toEqual({ id: "ops", roles: ["admin"] });
  });

  it("answers 503-class when the provider does not answer within the timeout", async () => {
    provider.mode = "hang";
    const verifier = aVerifier({ jwks: { timeoutMs: 200 } });
    expect(await refusal(verifier, providerToken(rsa, "RS256"))).toMatchObject({
      code: 503,
      type: "SERVICE_UNAVAILABLE",
    });
    expect(provider.requests).toBe(1);
  });

  it("stops asking a failing provider once its breaker opens", async () => {
    provider.mode = "fail";
    const breaker = new Breaker({
      name: "jwks",
      volumeThreshold: 2,
      errorThresholdPercentage: 50,
      resetTimeoutMs: 60_000,
      rollingWindowMs: 60_000,
    });
    try {
      const verifier = aVerifier({ jwks: { breaker } });
      for (let i = 0; i < 5; i++) {
        expect(await refusal(verifier, providerToken(rsa, "RS256"))).toMatchObject({ code: 503 });
      }
      expect(provider.requests).toBe(2);
      expect(breaker.state).toBe("open");
    } finally {
      breaker.shutdown();
    }
  });

  it("uses a key only for its own algorithm and use, without refetching for listed kids", async () => {
    const encryption = rsaKey("enc-1");
    const rs512Only = rsaKey("rs512-1");
    provider.keys = [
      jwkOf(rsa),
      jwkOf(ec),
      jwkOf(encryption, { use: "enc" }),
      jwkOf(rs512Only, { alg: "RS512" }),
    ];
    const verifier = aVerifier();
    await verifier.verify(providerToken(rsa, "RS256"));
    // past the refetch throttle: only the kids being listed keep the set from being fetched again
    clock += 60_000;

    expect(await refusal(verifier, providerToken(encryption, "RS256"))).toMatchObject({ code: 401 });
    expect(await refusal(verifier, providerToken(rs512Only, "RS256"))).toMatchObject({ code: 401 });
    // an ES256 token naming the RSA key, an RS256 one naming the EC key
    expect(await refusal(verifier, providerToken(ec, "ES256", { kid: "rsa-1" }))).toMatchObject({
      code: 401,
    });
    expect(await refusal(verifier, providerToken(rsa, "RS256", { kid: "ec-1" }))).toMatchObject({
      code: 401,
    });
    // a signature by another key under a listed kid
    const impostor = rsaKey("rsa-1");
    expect(await refusal(verifier, providerToken(impostor, "RS256"))).toMatchObject({ code: 401 });
    expect(provider.requests).toBe(1);
  });

  it("matches a token without a kid only when the set holds one key for its algorithm", async () => {
    const verifier = aVerifier();
    await expect(verifier.verify(providerToken(ec, "ES256", { kid: null }))).resolves.toMatchObject({
      id: "alice",
    });
    provider.keys = [jwkOf(rsa), jwkOf(rotated), jwkOf(ec)];
    clock += 10 * 60_000;
    expect(await refusal(verifier, providerToken(rsa, "RS256", { kid: null }))).toMatchObject({ code: 401 });
    expect(provider.requests).toBe(2);
  });

  it("refuses algorithm confusion: an HS256 token keyed with the provider's public key", async () => {
    const pem = rsa.publicKey.export({ type: "spki", format: "pem" }).toString();
    const jwkText = JSON.stringify(jwkOf(rsa));
    const claims = { sub: "mallory", roles: ["admin"], iss: ISSUER, aud: AUDIENCE };
    const forge = (key: string, header: Record<string, unknown>) => handMade(header, claims, key);
    const forgeries = [
      forge(pem, { alg: "HS256", typ: "JWT" }),
      forge(pem, { alg: "HS256", kid: "rsa-1" }),
      forge(jwkText, { alg: "HS256", kid: "rsa-1" }),
    ];
    for (const verifier of [aVerifier(), aVerifier({ secret: SECRET })]) {
      await verifier.verify(providerToken(rsa, "RS256"));
      for (const token of forgeries) {
        expect(await refusal(verifier, token)).toMatchObject({ code: 401, type: "UNAUTHORIZED" });
      }
    }
    const none = `${b64url({ alg: "none", kid: "rsa-1" })}.${b64url(claims)}.`;
    expect(await refusal(aVerifier(), none)).toMatchObject({ code: 401, type: "UNAUTHORIZED" });
  });

  it("checks expiry, issuer and audience of provider tokens", async () => {
    const verifier = aVerifier();
    expect(await refusal(verifier, providerToken(rsa, "RS256", { expiresIn: -60 }))).toMatchObject({
      code: 401,
      type: "TOKEN_EXPIRED",
    });
    await expect(verifier.verify(providerToken(ec, "ES256", { expiresIn: -10 }))).resolves.toMatchObject({
      id: "alice",
    });
    expect(
      await refusal(verifier, providerToken(rsa, "RS256", { issuer: "https://evil.example.test" })),
    ).toMatchObject({ type: "UNAUTHORIZED" });
    expect(await refusal(verifier, providerToken(ec, "ES256", { audience: "another-api" }))).toMatchObject({
      type: "UNAUTHORIZED",
    });
    // a signature by another key under the same kid
    const impostor = ecKey("ec-1");
    expect(await refusal(verifier, providerToken(impostor, "ES256"))).toMatchObject({ type: "UNAUTHORIZED" });
  });
});
