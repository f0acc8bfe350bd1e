/**
 * Bearer tokens (DESIGN §6): HS256 JWTs signed with `JWT_SECRET`; `sub` is the customer id and
 * `roles` ⊂ {customer, admin}. Only HS256 is accepted, so `alg: none` and algorithm confusion are
 * refused by construction; expiry is enforced with a small clock skew.
 */
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

export interface TokenOptions {
  secret: string;
  /** Seconds of clock difference tolerated on `exp`/`nbf` (default 30). */
  clockToleranceSeconds?: number;
  issuer?: string;
  audience?: string;
}

/** The principal a token speaks for; throws `AuthenticationError`. */
export function verifyToken(token: string, options: TokenOptions): Principal {
  let claims: unknown;
  try {
    claims = jwt.verify(token, options.secret, {
      algorithms: ["HS256"],
      clockTolerance: options.clockToleranceSeconds ?? 30,
      ...(options.issuer === undefined ? {} : { issuer: options.issuer }),
      ...(options.audience === undefined ? {} : { audience: options.audience }),
    });
  } catch (err) {
    if (err instanceof jwt.TokenExpiredError) throw new AuthenticationError("TOKEN_EXPIRED", "token expired");
    throw new AuthenticationError("UNAUTHORIZED", "invalid token");
  }
  return principalFromClaims(claims);
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
