import { resolve } from "node:path";
import {
  checkServiceNeeds,
  duration,
  loadConfig,
  loadProbeTarget,
  loadPspSimulatorConfig,
  loadTokenSigning,
  secretWeakness,
  SERVICE_NAMES,
} from "../../../lib/config";

type Failure = { code: string; variable: string; message: string };

/** What `load` throws; fails the test when it does not. */
function thrownBy(load: () => unknown): Failure {
  try {
    load();
  } catch (err) {
    return err as Failure;
  }
  throw new Error("expected a ConfigError");
}

function errorOf(env: Record<string, string>): Failure {
  return thrownBy(() => loadConfig(env));
}

/** Random-looking secrets, as `openssl rand -base64 32` and `openssl rand -hex 32` print them. */
const STRONG = "q3V9xZ2mLr8TbK0wYf5NhC7uJd4PsA1eGi6OtW+Ry/E=";
const STRONG_HEX = "5f0c9a1e7b3d48f2a6c1e9b07d2f4a8c3e6b1d9f0a7c5e2b8d4f6a1c3e9b7d05";

describe("configuration", () => {
  it("has embedded defaults when the environment is empty", () => {
    const config = loadConfig({});
    expect(config.port).toBe(3000);
    expect(config.dataDir).toBe(resolve("data"));
    expect(config.services).toEqual([...SERVICE_NAMES]);
    expect(config.natsServers).toEqual([]);
    expect(config.mongoUrl).toBeUndefined();
    expect(config.redisUrl).toBeUndefined();
    expect(config.authDevTokens).toBe(false);
    expect(config.orderPaymentTimeoutMs).toBe(15 * 60_000);
    expect(config.logLevel).toBe("info");
    expect(config.adminPort).toBeUndefined();
    expect(config.jetstreamReplicas).toBe(1);
  });

  it.each([
    ["PORT", "abc"],
    ["PORT", "70000"],
    ["PORT", "-1"],
    ["NATS_URL", "nope"],
    ["NATS_URL", "http://localhost:4222"],
    ["TRANSPORTER", "kafka://x:1"],
    ["MONGO_URL", "postgres://x"],
    ["REDIS_URL", "localhost:6379"],
    ["SERVICES", "orders,billing"],
    ["LOG_LEVEL", "loud"],
    ["AUTH_DEV_TOKENS", "maybe"],
    ["ORDER_PAYMENT_TIMEOUT", "soon"],
    ["JWT_SECRET", "short"],
    ["PSP_URL", "ftp://psp"],
    ["ADMIN_PORT", "70000"],
    ["ADMIN_PORT", "admin"],
    ["JETSTREAM_REPLICAS", "0"],
    ["JETSTREAM_REPLICAS", "6"],
    ["JETSTREAM_REPLICAS", "two"],
    ["JETSTREAM_REPLICAS", "1.5"],
  ])("rejects %s=%s naming the variable", (variable, value) => {
    const err = errorOf({ [variable]: value });
    expect(err.code).toBe("INVALID_CONFIG");
    expect(err.variable).toBe(variable);
    expect(err.message.startsWith(`${variable}:`)).toBe(true);
  });

  it("names every invalid variable at once", () => {
    const err = errorOf({ PORT: "abc", NATS_URL: "nope" });
    expect(err.message).toContain("PORT");
    expect(err.message).toContain("NATS_URL");
  });

  it("parses valid values", () => {
    const config = loadConfig({
      PORT: "8080",
      DATA_DIR: "/tmp/om",
      SERVICES: "gateway, orders",
      NATS_URL: "nats://a:4222,nats://b:4222",
      MONGO_URL: "mongodb://m0:27017/?replicaSet=rs0",
      REDIS_URL: "redis://r:6379",
      AUTH_DEV_TOKENS: "true",
      ORDER_PAYMENT_TIMEOUT: "90s",
      LOG_LEVEL: "DEBUG",
    });
    expect(config).toMatchObject({
      port: 8080,
      dataDir: "/tmp/om",
      services: ["gateway", "orders"],
      natsServers: ["nats://a:4222", "nats://b:4222"],
      authDevTokens: true,
      orderPaymentTimeoutMs: 90_000,
      logLevel: "debug",
    });
  });

  it("takes TRANSPORTER as the NATS address when NATS_URL is unset, and refuses a disagreement", () => {
    expect(loadConfig({ TRANSPORTER: "nats://n:4222" }).natsServers).toEqual(["nats://n:4222"]);
    expect(errorOf({ TRANSPORTER: "nats://n:4222", NATS_URL: "nats://other:4222" }).variable).toBe(
      "TRANSPORTER",
    );
  });

  it("reads durations with units", () => {
    expect(duration("250")).toBe(250);
    expect(duration("250ms")).toBe(250);
    expect(duration("2s")).toBe(2000);
    expect(duration("15m")).toBe(900_000);
    expect(duration("1h")).toBe(3_600_000);
    expect(() => duration("0")).toThrow();
    expect(() => duration("1.5h")).toThrow();
  });

  it("reads ADMIN_PORT (0 = any free port) and JETSTREAM_REPLICAS", () => {
    expect(loadConfig({ ADMIN_PORT: "9000", JETSTREAM_REPLICAS: "3" })).toMatchObject({
      adminPort: 9000,
      jetstreamReplicas: 3,
    });
    expect(loadConfig({ ADMIN_PORT: "0" }).adminPort).toBe(0);
    expect(loadConfig({ JETSTREAM_REPLICAS: "5" }).jetstreamReplicas).toBe(5);
  });

  it("refuses ADMIN_PORT equal to the gateway's PORT, but not in a process without the gateway", () => {
    const err = errorOf({ PORT: "8080", ADMIN_PORT: "8080" });
    expect(err.variable).toBe("ADMIN_PORT");
    expect(err.message).toContain("PORT (8080)");
    expect(loadConfig({ PORT: "8080", ADMIN_PORT: "8080", SERVICES: "orders" }).adminPort).toBe(8080);
  });
});

describe("secret hygiene", () => {
  it.each([
    "change-me-to-a-long-random-secret",
    "CHANGEME-2f9a7c1e5b3d8f0a",
    "please_Change_Me_4f8a2c9e1b7d",
    "jwt-Example-4f8a2c9e1b7d3f6a",
    "PLACEHOLDER-4f8a2c9e1b7d3f6a",
    "my-Secret-4f8a2c9e1b7d3f6a",
    "Password-4f8a2c9e1b7d3f6aB",
    "replace-4f8a2c9e1b7d3f6aB9",
    "TODO-4f8a2c9e1b7d3f6aB9kQ",
    "XXX-4f8a2c9e1b7d3f6aB9kQ",
    "xxxxxxxxxxxxxxxxxxxxxxxx",
    "your-jwt-key-4f8a2c9e1b7d",
  ])("refuses the placeholder %s", (value) => {
    expect(secretWeakness(value)).toMatch(/^contains the placeholder "[^"]+"/);
  });

  it.each([
    ["too few distinct characters", "abababababababababababababababab", /2 distinct characters/],
    ["a repeated pattern", "abcdefgabcdefgabcdefg", /fewer than 8|too little entropy/],
    ["too little entropy", "aabbccddeeffgghh", /too little entropy \(about \d+ bits, at least 64\)/],
    ["too short", "Zq9!xT2#", /at least 16 characters/],
  ])("refuses %s", (_what, value, reason) => {
    expect(secretWeakness(value)).toMatch(reason);
  });

  it("accepts random values, and the generated local secrets' form", () => {
    expect(secretWeakness(STRONG)).toBeUndefined();
    expect(secretWeakness(STRONG_HEX)).toBeUndefined();
    expect(secretWeakness(`whsec_${STRONG_HEX.slice(0, 48)}`)).toBeUndefined();
    // "xxx" and "todo" only count as words: inside random characters they are chance
    expect(secretWeakness("k9XxXq2TodoP7vLm4RsN8wYc")).toBeUndefined();
  });

  it.each(["JWT_SECRET", "PSP_WEBHOOK_SECRET", "PSP_WEBHOOK_SECRET_PREVIOUS"])(
    "stops loadConfig on a weak %s, naming it and never repeating the value",
    (variable) => {
      const err = errorOf({ [variable]: "change-me-to-a-long-random-secret" });
      expect(err.code).toBe("INVALID_CONFIG");
      expect(err.variable).toBe(variable);
      expect(err.message).toMatch(new RegExp(`^${variable}: contains the placeholder "change-me"`));
      expect(err.message).not.toContain("long-random");
      expect(loadConfig({ [variable]: STRONG })).toBeDefined();
    },
  );

  it("checks only the length when told to (tests with readable fixed secrets)", () => {
    const readable = "gateway-api-secret-0123456789";
    expect(loadConfig({ JWT_SECRET: readable }, { secretHygiene: false }).jwtSecret).toBe(readable);
    expect(errorOf({ JWT_SECRET: readable }).variable).toBe("JWT_SECRET");
    expect(() => loadConfig({ JWT_SECRET: "short" }, { secretHygiene: false })).toThrow(/JWT_SECRET/);
  });
});

describe("what each service needs", () => {
  const needs = (env: Record<string, string>, providerSimulated = false): Failure =>
    thrownBy(() => checkServiceNeeds(loadConfig(env), { providerSimulated }));

  it("the gateway needs JWT_SECRET", () => {
    expect(needs({ SERVICES: "gateway" }).variable).toBe("JWT_SECRET");
    expect(() =>
      checkServiceNeeds(loadConfig({ SERVICES: "gateway", JWT_SECRET: STRONG }), {
        providerSimulated: false,
      }),
    ).not.toThrow();
  });

  it("payments needs PSP_URL, unless the local simulator provides it, and PSP_WEBHOOK_SECRET", () => {
    expect(needs({ SERVICES: "payments", PSP_WEBHOOK_SECRET: STRONG }).variable).toBe("PSP_URL");
    expect(needs({ SERVICES: "payments", PSP_URL: "http://psp:4000" }).variable).toBe("PSP_WEBHOOK_SECRET");
    expect(needs({ SERVICES: "payments" }).variable).toBe("PSP_URL, PSP_WEBHOOK_SECRET");
    expect(needs({ SERVICES: "payments" }, true).variable).toBe("PSP_WEBHOOK_SECRET");
    const simulated = loadConfig({ SERVICES: "payments", PSP_WEBHOOK_SECRET: STRONG });
    expect(() => checkServiceNeeds(simulated, { providerSimulated: true })).not.toThrow();
  });

  it("orders, inventory and notifications need nothing more", () => {
    const config = loadConfig({ SERVICES: "orders,inventory,notifications" });
    expect(() => checkServiceNeeds(config, { providerSimulated: false })).not.toThrow();
  });
});

describe("ordermesh probe's target", () => {
  it("is the gateway's PORT in a process that runs it, else ADMIN_PORT", () => {
    expect(loadProbeTarget({ ADMIN_PORT: "9000", PORT: "8080" })).toEqual({ port: 8080, variable: "PORT" });
    expect(loadProbeTarget({ PORT: "8080", SERVICES: "gateway" })).toEqual({ port: 8080, variable: "PORT" });
    expect(loadProbeTarget({})).toEqual({ port: 3000, variable: "PORT" });
    expect(loadProbeTarget({ ADMIN_PORT: "9000", PORT: "8080", SERVICES: "orders,payments" })).toEqual({
      port: 9000,
      variable: "ADMIN_PORT",
    });
  });

  it("needs no secret, and ignores the variables it does not read", () => {
    const env = { ADMIN_PORT: "9000", SERVICES: "orders", JWT_SECRET: "short", NATS_URL: "nope" };
    expect(loadProbeTarget(env).port).toBe(9000);
  });

  it("has no port without ADMIN_PORT in a process without the gateway, nor with a random port", () => {
    expect(thrownBy(() => loadProbeTarget({ SERVICES: "orders" })).variable).toBe("ADMIN_PORT");
    expect(thrownBy(() => loadProbeTarget({ ADMIN_PORT: "0", SERVICES: "orders" })).variable).toBe(
      "ADMIN_PORT",
    );
    expect(thrownBy(() => loadProbeTarget({ PORT: "0" })).variable).toBe("PORT");
    expect(thrownBy(() => loadProbeTarget({ ADMIN_PORT: "x", SERVICES: "orders" })).variable).toBe(
      "ADMIN_PORT",
    );
  });
});

describe("ordermesh token's signing configuration", () => {
  it("needs a strong JWT_SECRET and takes JWT_ISSUER and JWT_AUDIENCE", () => {
    expect(thrownBy(() => loadTokenSigning({})).variable).toBe("JWT_SECRET");
    expect(
      thrownBy(() => loadTokenSigning({ JWT_SECRET: "change-me-to-a-long-random-secret" })).variable,
    ).toBe("JWT_SECRET");
    expect(
      loadTokenSigning({ JWT_SECRET: STRONG, JWT_ISSUER: "https://id", JWT_AUDIENCE: "ordermesh" }),
    ).toEqual({
      secret: STRONG,
      issuer: "https://id",
      audience: "ordermesh",
    });
  });
});

describe("the payment-provider simulator's configuration", () => {
  it("has defaults and needs a strong PSP_WEBHOOK_SECRET", () => {
    expect(loadPspSimulatorConfig({ PSP_WEBHOOK_SECRET: STRONG })).toEqual({
      port: 4000,
      host: "0.0.0.0",
      dataDir: resolve("data"),
      webhookSecret: STRONG,
      webhookUrl: undefined,
    });
    expect(thrownBy(() => loadPspSimulatorConfig({})).variable).toBe("PSP_WEBHOOK_SECRET");
    expect(
      thrownBy(() => loadPspSimulatorConfig({ PSP_WEBHOOK_SECRET: "whsec_change_me_0123456789" })).variable,
    ).toBe("PSP_WEBHOOK_SECRET");
  });

  it("names PORT and WEBHOOK_URL when they are invalid", () => {
    expect(
      thrownBy(() => loadPspSimulatorConfig({ PSP_WEBHOOK_SECRET: STRONG, PORT: "99999" })).variable,
    ).toBe("PORT");
    expect(
      thrownBy(() => loadPspSimulatorConfig({ PSP_WEBHOOK_SECRET: STRONG, WEBHOOK_URL: "gateway:3000" }))
        .variable,
    ).toBe("WEBHOOK_URL");
  });
});
