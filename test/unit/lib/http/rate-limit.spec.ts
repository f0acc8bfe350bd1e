import { DEFAULT_RATE_LIMITS, loadConfig, rateBudget } from "../../../../lib/config";
import {
  ClientAddressResolver,
  RateLimiter,
  callerKey,
  enforce,
  policyField,
  rateClassOf,
} from "../../../../lib/http/rate-limit";
import { MemoryKeyValueStore } from "../../../../lib/kv/memory.adapter";

describe("rate classes", () => {
  it("draws order creation, other writes and reads from separate budgets", () => {
    expect(rateClassOf("POST", "/api/v1/orders")).toBe("orders");
    expect(rateClassOf("post", "/api/v1/orders/")).toBe("orders");
    expect(rateClassOf("POST", "/api/v1/orders/:id/cancel")).toBe("writes");
    expect(rateClassOf("PUT", "/api/v1/products/:sku")).toBe("writes");
    expect(rateClassOf("GET", "/api/v1/orders")).toBe("reads");
    expect(rateClassOf("HEAD", "/api/v1/products")).toBe("reads");
  });

  it("keys a bucket by principal when there is one, else by address", () => {
    expect(callerKey("alice", "10.0.0.1")).toBe("p:alice");
    expect(callerKey(undefined, "10.0.0.1")).toBe("a:10.0.0.1");
  });
});

describe("client address", () => {
  it("ignores X-Forwarded-For when no proxy is trusted", () => {
    const resolver = new ClientAddressResolver([]);
    expect(resolver.resolve("203.0.113.9", "1.2.3.4")).toBe("203.0.113.9");
    expect(resolver.resolve("::ffff:203.0.113.9", undefined)).toBe("203.0.113.9");
  });

  it("ignores X-Forwarded-For from a peer that is not a trusted proxy", () => {
    const resolver = new ClientAddressResolver(["10.0.0.0/8"]);
    expect(resolver.resolve("203.0.113.9", "1.2.3.4")).toBe("203.0.113.9");
  });

  it("walks X-Forwarded-For right to left past trusted proxies only", () => {
    const resolver = new ClientAddressResolver(["10.0.0.0/8", "192.0.2.7"]);
    // the client invented 1.1.1.1; the real client is what the first trusted proxy saw
    expect(resolver.resolve("10.1.1.1", "1.1.1.1, 198.51.100.4, 192.0.2.7")).toBe("198.51.100.4");
    expect(resolver.resolve("10.1.1.1", ["1.1.1.1", "198.51.100.4"])).toBe("198.51.100.4");
    expect(resolver.resolve("::ffff:10.1.1.1", "198.51.100.4")).toBe("198.51.100.4");
  });

  it("stops at garbage in the header, and keeps the proxy's own address without one", () => {
    const resolver = new ClientAddressResolver(["10.0.0.0/8"]);
    expect(resolver.resolve("10.1.1.1", "not-an-ip")).toBe("10.1.1.1");
    expect(resolver.resolve("10.1.1.1", undefined)).toBe("10.1.1.1");
    expect(resolver.resolve("10.1.1.1", "10.2.2.2")).toBe("10.2.2.2");
  });

  it("matches IPv6 blocks", () => {
    const resolver = new ClientAddressResolver(["2001:db8::/32"]);
    expect(resolver.resolve("2001:db8::1", "2001:4860::8888")).toBe("2001:4860::8888");
    expect(resolver.resolve("2001:db9::1", "2001:4860::8888")).toBe("2001:db9::1");
  });
});

describe("rate limiter", () => {
  let kv: MemoryKeyValueStore;
  beforeEach(async () => {
    kv = new MemoryKeyValueStore();
    await kv.open();
  });
  afterEach(() => kv.close());

  it("allows a burst, then refuses with Retry-After and the ratelimit headers", async () => {
    const limiter = new RateLimiter(kv, { ...DEFAULT_RATE_LIMITS, reads: { perSecond: 1, burst: 3 } });
    const decisions = [];
    for (let i = 0; i < 4; i++) decisions.push(await limiter.take("reads", "a:10.0.0.1"));
    expect(decisions.map((d) => d?.allowed)).toEqual([true, true, true, false]);
    expect(decisions[0]?.headers).toEqual({
      "RateLimit-Policy": '"reads";q=3;w=3',
      RateLimit: '"reads";r=2;t=1',
    });
    expect(decisions[3]?.headers["Retry-After"]).toBe("1");
    expect(decisions[3]?.headers.RateLimit).toMatch(/^"reads";r=0;t=[1-3]$/);
    expect(decisions[3]?.retryAfterSeconds).toBe(1);
    // another caller and another class have buckets of their own
    expect((await limiter.take("reads", "a:10.0.0.2"))?.allowed).toBe(true);
    expect((await limiter.take("writes", "a:10.0.0.1"))?.allowed).toBe(true);
  });

  it("does not limit a class that is off", async () => {
    const limiter = new RateLimiter(kv, { ...DEFAULT_RATE_LIMITS, reads: null });
    expect(await limiter.take("reads", "a:10.0.0.1")).toBeNull();
  });

  it("states the policy as burst over the time a burst takes to refill", () => {
    expect(policyField("reads", { perSecond: 50, burst: 100 })).toBe('"reads";q=100;w=2');
    expect(policyField("orders", { perSecond: 10, burst: 5 })).toBe('"orders";q=5;w=1');
  });
});

describe("rate-limit configuration", () => {
  it("reads <per second>:<burst> or off, and names the variable when it is wrong", () => {
    expect(rateBudget("50:100")).toEqual({ perSecond: 50, burst: 100 });
    expect(rateBudget("0.5:1")).toEqual({ perSecond: 0.5, burst: 1 });
    expect(rateBudget("off")).toBeNull();
    expect(loadConfig({ RATE_LIMIT_READS: "5:10" }).rateLimits.reads).toEqual({ perSecond: 5, burst: 10 });
    expect(() => loadConfig({ RATE_LIMIT_ORDERS: "10/s" })).toThrow(/RATE_LIMIT_ORDERS/);
    expect(() => loadConfig({ RATE_LIMIT_WRITES: "0:10" })).toThrow(/RATE_LIMIT_WRITES/);
  });

  it("validates trusted proxies and CORS origins", () => {
    expect(loadConfig({ TRUSTED_PROXIES: "10.0.0.0/8, 192.0.2.7" }).trustedProxies).toEqual([
      "10.0.0.0/8",
      "192.0.2.7",
    ]);
    expect(() => loadConfig({ TRUSTED_PROXIES: "10.0.0.0/33" })).toThrow(/TRUSTED_PROXIES/);
    expect(() => loadConfig({ TRUSTED_PROXIES: "proxy.local" })).toThrow(/TRUSTED_PROXIES/);
    expect(loadConfig({ CORS_ORIGINS: "https://shop.example.com" }).corsOrigins).toEqual([
      "https://shop.example.com",
    ]);
    expect(() => loadConfig({ CORS_ORIGINS: "https://shop.example.com/path" })).toThrow(/CORS_ORIGINS/);
  });
});

describe("applying a decision", () => {
  const answer = () => {
    const headers: Record<string, string> = {};
    return { headers, res: { setHeader: (name: string, value: string) => (headers[name] = value) } };
  };

  it("sets the rate-limit headers on an allowed request and lets it through", () => {
    const { headers, res } = answer();
    enforce({ allowed: true, headers: { RateLimit: '"reads";r=1;t=1' }, retryAfterSeconds: 0 }, res as never);
    expect(headers).toEqual({ RateLimit: '"reads";r=1;t=1' });
  });

  it("refuses 429 RATE_LIMITED with the seconds to wait, its headers set", () => {
    const { headers, res } = answer();
    const refused = { allowed: false, headers: { "Retry-After": "3" }, retryAfterSeconds: 3 };
    expect(() => enforce(refused, res as never)).toThrow(
      expect.objectContaining({ code: 429, type: "RATE_LIMITED", data: { retryAfterSeconds: 3 } }),
    );
    expect(headers).toEqual({ "Retry-After": "3" });
  });

  it("changes nothing for an unlimited class", () => {
    const { headers, res } = answer();
    enforce(null, res as never);
    expect(headers).toEqual({});
  });
});
