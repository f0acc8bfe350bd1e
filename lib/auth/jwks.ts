/**
 * The signing keys of an identity provider, read from the JSON Web Key Set it serves at
 * `JWKS_URL` (RFC 7517), so that the RS256 and ES256 tokens it signs can be verified (README,
 * "HTTP API (v1)" and "Configuration").
 *
 * The set is fetched on first use and kept for `cacheMs` (10 min). A token naming a `kid` the set
 * does not list causes one refetch (the provider may have rotated its keys), but no fetch starts
 * within `minRefetchIntervalMs` (30 s) of the previous one: a flood of made-up kids cannot hammer
 * the provider. A refetch that fails leaves the last good set in use. Only when no set was ever
 * obtained does a lookup fail, with `KeySetUnavailableError` (503, retryable): the request cannot
 * be authenticated, but not through the caller's fault.
 *
 * Every fetch goes through a circuit breaker: before the first good set there is nothing to fall
 * back on, so without one each request would try a provider that is down.
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { Breaker } from "../breaker";

/** The algorithms a key set can serve keys for. */
export type AsymmetricAlgorithm = "RS256" | "ES256";

/** A key of the set that may verify tokens. */
export interface SigningKey {
  kid: string | undefined;
  /** The one algorithm it verifies: RS256 for an RSA key, ES256 for an EC P-256 key. */
  algorithm: AsymmetricAlgorithm;
  key: KeyObject;
}

/** One fetched set: the keys ordermesh can use, and the kid of every key it lists. */
export interface KeySet {
  keys: SigningKey[];
  /** Usable or not: a token naming one of these is refused without a refetch. */
  kids: ReadonlySet<string>;
}

/** Where the key set lives and how it is kept fresh. */
export interface JwksOptions {
  /** Where the provider serves its key set (`JWKS_URL`). */
  url: string;
  /** How long a fetched set is used before it is fetched again, in ms (default 10 min). */
  cacheMs?: number;
  /** Shortest time between two fetches while a set is held, in ms (default 30 s). */
  minRefetchIntervalMs?: number;
  /** A fetch is aborted after this long, in ms (default 3 000). */
  timeoutMs?: number;
  /** The breaker fetches go through; by default one of the source's own, shut down by `close()`. */
  breaker?: Breaker;
  /** Told of every failed fetch, e.g. to log it; the last good set stays in use. */
  onFetchFailed?: (err: unknown) => void;
  /** The clock, in ms (default `Date.now`). */
  now?: () => number;
}

/** No key set could be obtained from the provider: the caller may retry shortly. */
export class KeySetUnavailableError extends Error {
  readonly code = 503;
  readonly type = "SERVICE_UNAVAILABLE";
  readonly retryable = true;
  constructor(cause: unknown) {
    super("the identity provider's signing keys (JWKS) could not be fetched", { cause });
    this.name = "KeySetUnavailableError";
  }
}

const DEFAULTS = { cacheMs: 10 * 60_000, minRefetchIntervalMs: 30_000, timeoutMs: 3000 };

/** RSA keys shorter than this are not trusted (RFC 7518 §3.3). */
const MIN_RSA_BITS = 2048;

/** A lookup whose kid the set does not list at all. */
const UNLISTED = Symbol("unlisted");

/** Keys of one provider, fetched and cached as described above. */
export class JwksKeySource {
  readonly url: string;
  private readonly cacheMs: number;
  private readonly minRefetchIntervalMs: number;
  private readonly timeoutMs: number;
  private readonly breaker: Breaker;
  private readonly ownsBreaker: boolean;
  private readonly now: () => number;
  private set: KeySet | undefined;
  private fetchedAt = 0;
  private attemptedAt = Number.NEGATIVE_INFINITY;
  private inflight: Promise<KeySet> | undefined;

  constructor(private readonly options: JwksOptions) {
    this.url = options.url;
    this.cacheMs = options.cacheMs ?? DEFAULTS.cacheMs;
    this.minRefetchIntervalMs = options.minRefetchIntervalMs ?? DEFAULTS.minRefetchIntervalMs;
    this.timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
    this.now = options.now ?? Date.now;
    this.ownsBreaker = options.breaker === undefined;
    this.breaker =
      options.breaker ??
      new Breaker({
        name: "jwks",
        // the fetch aborts itself first; the breaker's timeout only backs it up
        timeoutMs: this.timeoutMs + 1000,
        volumeThreshold: 3,
        resetTimeoutMs: 10_000,
      });
  }

  /**
   * The key that verifies a token signed with `algorithm` by key `kid`, or undefined when the set
   * has none (the token must be refused). A token without a kid is matched only when the set holds
   * exactly one key for its algorithm. Throws `KeySetUnavailableError` when no set was ever fetched.
   */
  async keyFor(kid: string | undefined, algorithm: AsymmetricAlgorithm): Promise<KeyObject | undefined> {
    let set = await this.current();
    let found = lookup(set, kid, algorithm);
    if (found === UNLISTED && (await this.refetch())) {
      set = this.set ?? set;
      found = lookup(set, kid, algorithm);
    }
    return found === UNLISTED ? undefined : found;
  }

  /** Stop the source's own breaker. */
  close(): void {
    if (this.ownsBreaker) this.breaker.shutdown();
  }

  /** The set to look keys up in: fetched on first use, refetched once its cache time is over. */
  private async current(): Promise<KeySet> {
    if (this.set === undefined) {
      try {
        return await this.load();
      } catch (err) {
        throw new KeySetUnavailableError(err);
      }
    }
    if (this.now() - this.fetchedAt >= this.cacheMs) await this.refetch();
    return this.set;
  }

  /**
   * Fetch again, or join a fetch under way, unless one started less than `minRefetchIntervalMs`
   * ago. Says whether a fetch was waited for; a failed one leaves the last good set in use.
   */
  private async refetch(): Promise<boolean> {
    if (this.inflight === undefined && this.now() - this.attemptedAt < this.minRefetchIntervalMs)
      return false;
    try {
      await this.load();
    } catch {
      // already reported by load(); the last good set stays in service
    }
    return true;
  }

  /** One fetch at a time: concurrent callers share it. */
  private load(): Promise<KeySet> {
    if (this.inflight === undefined) {
      this.attemptedAt = this.now();
      this.inflight = this.breaker
        .fire(() => this.fetchSet())
        .then(
          (set) => {
            this.set = set;
            this.fetchedAt = this.now();
            return set;
          },
          (err: unknown) => {
            this.options.onFetchFailed?.(err);
            throw err;
          },
        )
        .finally(() => {
          this.inflight = undefined;
        });
    }
    return this.inflight;
  }

  private async fetchSet(): Promise<KeySet> {
    const response = await fetch(this.url, {
      headers: { accept: "application/json" },
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`${this.url} answered ${response.status}`);
    }
    const set = keySetOf(await response.json());
    // a set without a single usable key cannot be right: keep the last good one instead
    if (set.keys.length === 0) throw new Error(`${this.url} lists no RS256 or ES256 signing key`);
    return set;
  }
}

/**
 * The usable keys of a JWKS document: RSA (RS256) and EC P-256 (ES256) keys whose `use` is absent
 * or "sig" and whose `alg`, when present, is the one algorithm ordermesh verifies with them. Other
 * keys are listed by kid but skipped. Throws when the document is not a key set at all.
 */
export function keySetOf(document: unknown): KeySet {
  const entries = isRecord(document) ? document.keys : undefined;
  if (!Array.isArray(entries)) throw new Error("not a JSON Web Key Set: no keys array");
  const keys: SigningKey[] = [];
  const kids = new Set<string>();
  for (const jwk of entries as unknown[]) {
    if (!isRecord(jwk)) continue;
    if (typeof jwk.kid === "string") kids.add(jwk.kid);
    const key = signingKeyOf(jwk);
    if (key !== undefined) keys.push(key);
  }
  return { keys, kids };
}

function signingKeyOf(jwk: Record<string, unknown>): SigningKey | undefined {
  if (jwk.use !== undefined && jwk.use !== "sig") return undefined;
  if (jwk.kid !== undefined && typeof jwk.kid !== "string") return undefined;
  const algorithm =
    jwk.kty === "RSA" ? "RS256" : jwk.kty === "EC" && jwk.crv === "P-256" ? "ES256" : undefined;
  if (algorithm === undefined) return undefined;
  if (jwk.alg !== undefined && jwk.alg !== algorithm) return undefined;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: publicPart(jwk), format: "jwk" });
  } catch {
    return undefined;
  }
  if (algorithm === "RS256" && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS)
    return undefined;
  return { kid: jwk.kid, algorithm, key };
}

/** The public members of a JWK: a set should never carry private ones, and if it does they are not read. */
function publicPart(jwk: Record<string, unknown>): JsonWebKey {
  const { kty, n, e, crv, x, y } = jwk;
  // createPublicKey checks the members' types and values itself
  return (kty === "RSA" ? { kty, n, e } : { kty, crv, x, y }) as JsonWebKey;
}

/** The key for `kid` under `algorithm`; undefined when the set lists the kid but not for that use. */
function lookup(
  set: KeySet,
  kid: string | undefined,
  algorithm: AsymmetricAlgorithm,
): KeyObject | undefined | typeof UNLISTED {
  if (kid === undefined) {
    const candidates = set.keys.filter((k) => k.algorithm === algorithm);
    return candidates.length === 1 ? candidates[0]?.key : undefined;
  }
  const match = set.keys.find((k) => k.kid === kid && k.algorithm === algorithm);
  if (match !== undefined) return match.key;
  return set.kids.has(kid) ? undefined : UNLISTED;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
