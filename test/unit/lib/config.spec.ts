import { resolve } from "node:path";
import { duration, loadConfig, SERVICE_NAMES } from "../../../lib/config";

function errorOf(env: Record<string, string>): { code: string; variable: string; message: string } {
  try {
    loadConfig(env);
  } catch (err) {
    return err as { code: string; variable: string; message: string };
  }
  throw new Error("expected loadConfig to throw");
}

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
});
