/**
 * Bearer tokens (README, "HTTP API (v1)"): HS256 JWTs signed with `JWT_SECRET`; `sub` is the customer id and
 * `roles` ⊂ {customer, admin}. `verifyToken` accepts HS256 only, so `alg: none` and algorithm
 * confusion are refused by construction; expiry is enforced with a small clock skew. Tokens of an
 * identity provider (RS256/ES256 through `JWKS_URL`) are verified by token-verifier.ts, on the
 * same claim checks (`verifiedClaims`).
 */
import { createSecretKey, type KeyObject } from "node:crypto";
import jwt from "jsonwebtoken";
import { ROLES, type Role } from "../constants";
import type { Principal } from "../principal";

/** Why a token was refused; the gateway answers 401 with this code. */
export class AuthenticationError extends Error {
  readonly code = 401;
  constructor(
    readonly type: "UNAUTHORIZED" | "TOKEN_EXPIRED",
    message: string,
  ) {
    super(message);
    this.name = "AuthenticationError";
  }
}

/** Checks on the claims of every token, whoever signed it. */
export interface ClaimChecks {
  /** Seconds of clock difference tolerated on `exp`/`nbf` (default 30). */
  clockToleranceSeconds?: number;
  /** Required `iss`, when set. */
  issuer?: string;
  /** Required `aud` (one of them, when the token lists several), when set. */
  audience?: string;
}

/** How `verifyToken` checks an HS256 token. */
export interface TokenOptions extends ClaimChecks {
  secret: string;
}

/** The signature algorithms ordermesh accepts at all; every other one (`none` first) is refused. */
export type SigningAlgorithm = "HS256" | "RS256" | "ES256";

/** The principal a token speaks for; throws `AuthenticationError`. */
export function verifyToken(token: string, options: TokenOptions): Principal {
  return principalFromClaims(verifiedClaims(token, hmacKey(options.secret), "HS256", options));
}

/**
 * The claims of a token whose signature `key` proves under `algorithm` and no other algorithm,
 * with `exp`, `nbf`, `iss` and `aud` checked; throws `AuthenticationError` (TOKEN_EXPIRED for a
 * token that was genuine but is too old, UNAUTHORIZED for everything else).
 */
export function verifiedClaims(
  token: string,
  key: KeyObject,
  algorithm: SigningAlgorithm,
  checks: ClaimChecks,
): unknown {
  try {
    return jwt.verify(token, key, {
      algorithms: [algorithm],
      clockTolerance: checks.clockToleranceSeconds ?? 30,
      ...(checks.issuer === undefined ? {} : { issuer: checks.issuer }),
      ...(checks.audience === undefined ? {} : { audience: checks.audience }),
    });
  } catch (err) {
    if (err instanceof jwt.TokenExpiredError) throw new AuthenticationError("TOKEN_EXPIRED", "token expired");
    throw new AuthenticationError("UNAUTHORIZED", "invalid token");
  }
}

/**
 * The HMAC key of a secret. Given as a key object, the secret is never read as a PEM: a string
 * that happens to hold a public key must stay a plain HMAC secret.
 */
export function hmacKey(secret: string): KeyObject {
  return createSecretKey(Buffer.from(secret, "utf8"));
}

/** `sub` and `roles` of verified claims; unknown roles are dropped, a token with none is refused. */
export function principalFromClaims(claims: unknown): Principal {
  const { sub, roles } = (typeof claims === "object" && claims !== null ? claims : {}) as {
    sub?: unknown;
    roles?: unknown;
  };
  if (typeof sub !== "string" || !SUBJECT.test(sub))
    throw new AuthenticationError("UNAUTHORIZED", "token has no valid sub");
  const known = Array.isArray(roles) ? ROLES.filter((role) => (roles as unknown[]).includes(role)) : [];
  if (known.length === 0) throw new AuthenticationError("UNAUTHORIZED", "token grants no role");
  return { id: sub, roles: known };
}

/** Who may be a subject: customer ids are short, printable and safe in logs and keys. */
export const SUBJECT = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

/** Sign a token, as the dev-token endpoint and tests do. */
export function issueToken(
  principal: { sub: string; roles: readonly Role[] },
  options: { secret: string; expiresInSeconds?: number; issuer?: string; audience?: string },
): string {
  return jwt.sign({ roles: [...principal.roles] }, options.secret, {
    algorithm: "HS256",
    subject: principal.sub,
    expiresIn: options.expiresInSeconds ?? 3600,
    ...(options.issuer === undefined ? {} : { issuer: options.issuer }),
    ...(options.audience === undefined ? {} : { audience: options.audience }),
  });
}
