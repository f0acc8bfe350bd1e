/** Which keys of a JWKS document may verify tokens. Fetching and caching: test/integration/auth.jwks.spec.ts. */
import { generateKeyPairSync, generateKeySync, type KeyObject } from "node:crypto";
import { keySetOf } from "../../../../lib/auth/jwks";

function jwkOf(publicKey: KeyObject, extra: Record<string, unknown>): Record<string, unknown> {
  return { ...publicKey.export({ format: "jwk" }), ...extra };
}

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });

describe("key set document", () => {
  it("keeps RSA keys for RS256 and EC P-256 keys for ES256, with use absent or sig", () => {
    const set = keySetOf({
      keys: [
        jwkOf(rsa.publicKey, { kid: "r1" }),
        jwkOf(rsa.publicKey, { kid: "r2", use: "sig", alg: "RS256" }),
        jwkOf(ec.publicKey, { kid: "e1", use: "sig" }),
        jwkOf(ec.publicKey, { kid: "e2", alg: "ES256" }),
      ],
    });
    expect(set.keys.map((k) => [k.kid, k.algorithm])).toEqual([
      ["r1", "RS256"],
      ["r2", "RS256"],
      ["e1", "ES256"],
      ["e2", "ES256"],
    ]);
    expect(set.keys[0]?.key.type).toBe("public");
    expect(set.keys[0]?.key.equals(rsa.publicKey)).toBe(true);
    expect(set.keys[2]?.key.equals(ec.publicKey)).toBe(true);
  });

  it("lists but skips keys of another use, algorithm, type or curve, and weak or broken ones", () => {
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const ed = generateKeyPairSync("ed25519");
    const weak = generateKeyPairSync("rsa", { modulusLength: 1024 });
    const hmac = generateKeySync("hmac", { length: 256 });
    const set = keySetOf({
      keys: [
        jwkOf(rsa.publicKey, { kid: "enc", use: "enc" }),
        jwkOf(rsa.publicKey, { kid: "rs512", alg: "RS512" }),
        jwkOf(rsa.publicKey, { kid: "ps256", alg: "PS256" }),
        jwkOf(ec.publicKey, { kid: "es-as-rs", alg: "RS256" }),
        jwkOf(p384.publicKey, { kid: "p384" }),
        jwkOf(ed.publicKey, { kid: "ed" }),
        jwkOf(weak.publicKey, { kid: "weak" }),
        { ...hmac.export({ format: "jwk" }), kid: "oct" },
        { kty: "RSA", kid: "broken", n: "AQAB" },
        { kty: "EC", crv: "P-256", kid: "no-coordinates" },
        "not a key",
        null,
      ],
    });
    expect(set.keys).toEqual([]);
    expect([...set.kids].sort()).toEqual(
      ["broken", "ed", "enc", "es-as-rs", "no-coordinates", "oct", "p384", "ps256", "rs512", "weak"].sort(),
    );
  });

  it("holds only the public key of a set entry that carries private members", () => {
    const privateJwk = { ...rsa.privateKey.export({ format: "jwk" }), kid: "leaky" };
    const [key] = keySetOf({ keys: [privateJwk] }).keys;
    expect(key?.key.type).toBe("public");
    expect(key?.key.equals(rsa.publicKey)).toBe(true);
  });

  it("keeps keys without a kid, and refuses a kid that is not a string", () => {
    const set = keySetOf({ keys: [jwkOf(ec.publicKey, {}), jwkOf(rsa.publicKey, { kid: 42 })] });
    expect(set.keys.map((k) => [k.kid, k.algorithm])).toEqual([[undefined, "ES256"]]);
  });

  it("refuses a document that is not a key set", () => {
    for (const document of [null, "keys", [], {}, { keys: {} }]) {
      expect(() => keySetOf(document)).toThrow(/no keys array/);
    }
  });
});
