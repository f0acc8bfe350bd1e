/**
 * Rate limits of the HTTP API: one token bucket per (class of request, caller), kept in the
 * key-value port so that every gateway instance draws from the same bucket (an atomic Lua script
 * in Redis, a map in memory).
 *
 * The caller is the principal when the request carries a valid token, else the client address.
 * The address is the TCP peer's unless that peer is a configured trusted proxy: only then is
 * `X-Forwarded-For` read, right to left, skipping trusted hops — so a client cannot reset its own
 * limit by inventing addresses.
 *
 * Answers carry the IETF ratelimit-headers fields (structured-field form):
 * `RateLimit-Policy: "reads";q=100;w=2` (a burst of 100, refilled over 2 s) and
 * `RateLimit: "reads";r=42;t=1` (42 left, full again in 1 s); a refusal adds `Retry-After`.
 */
import type { ServerResponse } from "node:http";
import { BlockList, isIP } from "node:net";
import { Errors } from "moleculer";
import type { RateBudget, RateLimits } from "../config";
import { HEADERS } from "../constants";
import type { KeyValueStore } from "../kv/kv.port";
import { spelled } from "./headers";

const { MoleculerClientError } = Errors;

export type RateClass = keyof RateLimits;

export interface RateDecision {
  allowed: boolean;
  /** Headers for the answer, refusal or not. */
  headers: Record<string, string>;
  /** Whole seconds until the refused request would be allowed (0 when allowed). */
  retryAfterSeconds: number;
}

/** Which budget a request draws from. */
export function rateClassOf(method: string, routeTemplate: string): RateClass {
  const upper = method.toUpperCase();
  if (upper === "GET" || upper === "HEAD") return "reads";
  if (upper === "POST" && routeTemplate.replace(/\/+$/, "") === "/api/v1/orders") return "orders";
  return "writes";
}

/** The caller a bucket belongs to: `p:<principal>` or `a:<client address>`. */
export function callerKey(principalId: string | undefined, address: string): string {
  return principalId === undefined ? `a:${address}` : `p:${principalId}`;
}

/** Decides who the client is from the TCP peer and, behind trusted proxies only, X-Forwarded-For. */
export class ClientAddressResolver {
  private readonly trusted = new BlockList();
  private readonly any: boolean;

  /** `proxies`: addresses or CIDR blocks (already validated by lib/config.ts). */
  constructor(proxies: readonly string[]) {
    for (const entry of proxies) {
      const [address, bits] = entry.split("/") as [string, string | undefined];
      const type = isIP(address) === 6 ? "ipv6" : "ipv4";
      if (bits === undefined) this.trusted.addAddress(address, type);
      else this.trusted.addSubnet(address, Number(bits), type);
    }
    this.any = proxies.length > 0;
  }

  /** The client address: the peer, or the nearest untrusted hop of X-Forwarded-For behind trusted peers. */
  resolve(peer: string | undefined, forwardedFor: string | string[] | undefined): string {
    let client = normalise(peer ?? "") ?? "unknown";
    if (!this.any || !this.isTrusted(client)) return client;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : (forwardedFor ?? ""))
      .split(",")
      .map((hop) => hop.trim())
      .filter((hop) => hop.length > 0);
    // right to left: each hop was added by the proxy in front of it
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalise(hops[i] as string);
      // garbage in the header ends the walk: the last trusted proxy's peer is all we know
      if (hop === undefined) return client;
      client = hop;
      if (!this.isTrusted(hop)) return hop;
    }
    return client;
  }

  private isTrusted(address: string): boolean {
    const type = isIP(address) === 6 ? "ipv6" : "ipv4";
    return this.trusted.check(address, type);
  }
}

/** A plain IP address (IPv4-mapped IPv6 unwrapped), or undefined when `raw` is none. */
function normalise(raw: string): string | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(raw);
  const address = mapped === null ? raw : (mapped[1] as string);
  return isIP(address) === 0 ? undefined : address.toLowerCase();
}

/** Token buckets per (class, caller) in the key-value store. */
export class RateLimiter {
  constructor(
    private readonly kv: KeyValueStore,
    private readonly limits: RateLimits,
  ) {}

  /** Take one token for `caller` from the bucket of `rateClass`; null when that class is unlimited. */
  async take(rateClass: RateClass, caller: string): Promise<RateDecision | null> {
    const budget = this.limits[rateClass];
    if (budget === null) return null;
    const taken = await this.kv.takeTokens(
      `ratelimit:${rateClass}:${caller}`,
      budget.burst,
      budget.perSecond,
    );
    const retryAfterSeconds = taken.allowed ? 0 : Math.max(1, Math.ceil(taken.retryAfterMs / 1000));
    const headers: Record<string, string> = {
      [spelled(HEADERS.rateLimitPolicy)]: policyField(rateClass, budget),
      [spelled(HEADERS.rateLimit)]:
        `"${rateClass}";r=${Math.floor(taken.remaining)};t=${secondsToFull(budget, taken.remaining)}`,
    };
    if (!taken.allowed) headers[spelled(HEADERS.retryAfter)] = String(retryAfterSeconds);
    return { allowed: taken.allowed, headers, retryAfterSeconds };
  }
}

/**
 * Apply a decision to the answer: its headers, refusal or not; a refusal throws 429 RATE_LIMITED
 * with the seconds to wait in its details. No decision (an unlimited class) changes nothing.
 */
export function enforce(decision: RateDecision | null, res: Pick<ServerResponse, "setHeader">): void {
  if (decision === null) return;
  for (const [name, value] of Object.entries(decision.headers)) res.setHeader(name, value);
  if (!decision.allowed)
    throw new MoleculerClientError("too many requests; retry later", 429, "RATE_LIMITED", {
      retryAfterSeconds: decision.retryAfterSeconds,
    });
}

/** `"reads";q=100;w=2`: the quota is the burst, the window the time a burst takes to refill. */
export function policyField(rateClass: RateClass, budget: RateBudget): string {
  return `"${rateClass}";q=${budget.burst};w=${Math.max(1, Math.ceil(budget.burst / budget.perSecond))}`;
}

function secondsToFull(budget: RateBudget, remaining: number): number {
  return Math.max(0, Math.ceil((budget.burst - remaining) / budget.perSecond));
}
