/**
 * One verifier for every bearer token the gateway accepts (README, "HTTP API (v1)"): HS256 signed
 * with `JWT_SECRET`, and RS256/ES256 signed by the identity provider whose keys `JWKS_URL` serves.
 *
 * The token's `alg` only chooses where the key comes from, and each source holds keys of its own
 * kind alone: an HS256 token is checked with the secret and nothing else (so the provider's public
 * key can never serve as an HMAC secret), an RS256/ES256 token only with a key of the set made for
 * that algorithm, and one arriving without a configured set is refused. `none` and every other
 * algorithm are refused before any key is looked at.
 */
import type { KeyObject } from "node:crypto";
import type { Principal } from "../principal";
import { JwksKeySource, type JwksOptions } from "./jwks";
import {
  AuthenticationError,
  hmacKey,
  principalFromClaims,
  verifiedClaims,
  type ClaimChecks,
  type SigningAlgorithm,
} from "./jwt";

/** Which tokens are accepted: each source of keys is optional, at least one is needed. */
export interface TokenVerifierOptions extends ClaimChecks {
  /** `JWT_SECRET`: HS256 tokens are accepted when set. */
  secret?: string;
  /** `JWKS_URL`: RS256 and ES256 tokens are accepted when set. */
  jwksUrl?: string;
  /** Tuning of the key set (cache time, refetch interval, timeout, breaker, clock). */
  jwks?: Omit<JwksOptions, "url">;
}

/** Verifies bearer tokens; one per gateway, closed when it stops. */
export interface TokenVerifier {
  /**
   * The principal a token speaks for. Throws `AuthenticationError` (401) for a token that is not
   * accepted, `KeySetUnavailableError` (503, retryable) when the provider's keys cannot be had.
   */
  verify(token: string): Promise<Principal>;
  /** Release the key set's timers. */
  close(): void;
}

/** The part of a token's header that picks the key. */
interface TokenHeader {
  alg: string;
  kid: string | undefined;
}

/** Build the verifier; at least one of `secret` and `jwksUrl` is needed. */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  if (options.secret === undefined && options.jwksUrl === undefined)
    throw new TypeError("a token verifier needs a secret, a JWKS URL or both");
  const secretKey = options.secret === undefined ? undefined : hmacKey(options.secret);
  const keySet =
    options.jwksUrl === undefined ? undefined : new JwksKeySource({ ...options.jwks, url: options.jwksUrl });
  const checks: ClaimChecks = {
    clockToleranceSeconds: options.clockToleranceSeconds,
    issuer: options.issuer,
    audience: options.audience,
  };

  async function keyFor(header: TokenHeader): Promise<{ key: KeyObject; algorithm: SigningAlgorithm }> {
    switch (header.alg) {
      case "HS256":
        if (secretKey === undefined) throw refused("HS256 tokens are not accepted");
        return { key: secretKey, algorithm: "HS256" };
      case "RS256":
      case "ES256": {
        if (keySet === undefined) throw refused(`${header.alg} tokens are not accepted`);
        const key = await keySet.keyFor(header.kid, header.alg);
        if (key === undefined) throw refused("the token's signing key is not known");
        return { key, algorithm: header.alg };
      }
      default:
        throw refused("the token's algorithm is not accepted");
    }
  }

  return {
    async verify(token: string): Promise<Principal> {
      const { key, algorithm } = await keyFor(headerOf(token));
      return principalFromClaims(verifiedClaims(token, key, algorithm, checks));
    },
    close(): void {
      keySet?.close();
    },
  };
}

/** The header of a compact JWS (`header.payload.signature`, each base64url); 401 when it is not one. */
function headerOf(token: string): TokenHeader {
  const parts = token.split(".");
  if (parts.length !== 3 || parts.some((part) => !BASE64URL.test(part)) || parts[0] === "")
    throw refused("malformed token");
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(parts[0] as string, "base64url").toString("utf8"));
  } catch {
    throw refused("malformed token");
  }
  const { alg, kid } = (typeof header === "object" && header !== null ? header : {}) as {
    alg?: unknown;
    kid?: unknown;
  };
  if (typeof alg !== "string" || (kid !== undefined && typeof kid !== "string"))
    throw refused("malformed token header");
  return { alg, kid };
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

function refused(message: string): AuthenticationError {
  return new AuthenticationError("UNAUTHORIZED", message);
}
