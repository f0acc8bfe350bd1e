import { generateKeyPairSync } from "node:crypto";
import jwt from "jsonwebtoken";
import { AuthenticationError, issueToken, principalFromClaims, verifyToken } from "../../../../lib/auth/jwt";
import { b64url, handMade } from "../../../support/tokens";

const secret = "s3cret-s3cret-s3cret";

function refusal(token: string): AuthenticationError {
  try {
    verifyToken(token, { secret });
  } catch (err) {
    return err as AuthenticationError;
  }
  throw new Error("token was accepted");
}

describe("bearer tokens", () => {
  const now = () => Math.floor(Date.now() / 1000);

  it("gives back the subject and roles of a token it issued", () => {
    const token = issueToken({ sub: "alice", roles: ["customer"] }, { secret });
    expect(verifyToken(token, { secret })).toEqual({ id: "alice", roles: ["customer"] });
  });

  it("refuses alg none", () => {
    const token = handMade(
      { alg: "none", typ: "JWT" },
      { sub: "mallory", roles: ["admin"], exp: now() + 60 },
    );
    expect(refusal(token).type).toBe("UNAUTHORIZED");
  });

  it("refuses a token signed with another secret", () => {
    const token = issueToken({ sub: "alice", roles: ["admin"] }, { secret: "another-secret-entirely" });
    expect(refusal(token).type).toBe("UNAUTHORIZED");
  });

  it("refuses a tampered payload", () => {
    const [head, , sig] = issueToken({ sub: "alice", roles: ["customer"] }, { secret }).split(".");
    const forged = `${head}.${b64url({ sub: "alice", roles: ["admin"], exp: now() + 60 })}.${sig}`;
    expect(refusal(forged).type).toBe("UNAUTHORIZED");
  });

  it("refuses algorithm confusion: an RS256 token, and an HS384 token with the right secret", () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const rs = jwt.sign({ sub: "alice", roles: ["admin"] }, privateKey, { algorithm: "RS256" });
    expect(refusal(rs).type).toBe("UNAUTHORIZED");
    const hs384 = jwt.sign({ sub: "alice", roles: ["admin"] }, secret, { algorithm: "HS384" });
    expect(refusal(hs384).type).toBe("UNAUTHORIZED");
  });

  it("keeps a secret that reads as a PEM an HMAC secret: the key pair's RS256 tokens do not pass", () => {
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pem = publicKey.export({ type: "spki", format: "pem" }).toString();
    const rs = jwt.sign({ sub: "alice", roles: ["admin"] }, privateKey, { algorithm: "RS256" });
    expect(() => verifyToken(rs, { secret: pem })).toThrow(AuthenticationError);
    const hs = issueToken({ sub: "alice", roles: ["customer"] }, { secret: pem });
    expect(verifyToken(hs, { secret: pem })).toEqual({ id: "alice", roles: ["customer"] });
  });

  it("refuses an expired token, beyond a 30 s clock skew", () => {
    const stale = handMade(
      { alg: "HS256", typ: "JWT" },
      { sub: "alice", roles: ["customer"], exp: now() - 31 },
      secret,
    );
    expect(refusal(stale).type).toBe("TOKEN_EXPIRED");
    const justExpired = handMade(
      { alg: "HS256", typ: "JWT" },
      { sub: "alice", roles: ["customer"], exp: now() - 5 },
      secret,
    );
    expect(verifyToken(justExpired, { secret }).id).toBe("alice");
  });

  it("refuses tokens without a usable subject or role, and drops unknown roles", () => {
    expect(() => principalFromClaims({ roles: ["customer"] })).toThrow(AuthenticationError);
    expect(() => principalFromClaims({ sub: "a b", roles: ["customer"] })).toThrow(/sub/);
    expect(() => principalFromClaims({ sub: "alice", roles: ["root"] })).toThrow(/role/);
    expect(() => principalFromClaims({ sub: "alice" })).toThrow(/role/);
    expect(principalFromClaims({ sub: "alice", roles: ["root", "admin"] })).toEqual({
      id: "alice",
      roles: ["admin"],
    });
  });

  it("checks issuer and audience when configured", () => {
    const token = issueToken({ sub: "alice", roles: ["customer"] }, { secret, issuer: "a", audience: "b" });
    expect(verifyToken(token, { secret, issuer: "a", audience: "b" }).id).toBe("alice");
    expect(() => verifyToken(token, { secret, issuer: "x" })).toThrow(AuthenticationError);
    expect(() => verifyToken(token, { secret, audience: "y" })).toThrow(AuthenticationError);
  });
});
