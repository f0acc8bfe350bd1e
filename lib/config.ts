/**
 * Configuration from the environment (README, "Configuration"). Everything is parsed and validated once at
 * start; an invalid value stops the process with a message naming the variable.
 */
import { accessSync, constants as fsConstants, mkdirSync } from "node:fs";
import { isIP } from "node:net";
import { isAbsolute, resolve } from "node:path";
import { ConfigError } from "./errors";

/** Every service a process can run. */
export const SERVICE_NAMES = ["gateway", "orders", "inventory", "payments", "notifications"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

/** The domain services the gateway needs before it reports ready. */
export const DOMAIN_SERVICES: readonly ServiceName[] = ["orders", "inventory", "payments", "notifications"];

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  /** HTTP port of the gateway. */
  port: number;
  /** Port of the admin listener (probes of every process); unset → none. */
  adminPort: number | undefined;
  /** Where embedded stores keep their files. Absolute. */
  dataDir: string;
  /** Services this process runs. */
  services: ServiceName[];
  /** Services the gateway waits for before /readyz says ready. */
  requiredServices: ServiceName[];
  /** NATS servers (transporter and JetStream bus); empty → one process, in-process bus. */
  natsServers: string[];
  /** Replicas of the JetStream stream (1..5; more than 1 needs a NATS cluster). */
  jetstreamReplicas: number;
  mongoUrl: string | undefined;
  redisUrl: string | undefined;
  jwtSecret: string | undefined;
  jwksUrl: string | undefined;
  /** Required `iss` of every token, when set. */
  jwtIssuer: string | undefined;
  /** Required `aud` of every token, when set. */
  jwtAudience: string | undefined;
  authDevTokens: boolean;
  pspUrl: string | undefined;
  pspWebhookSecret: string | undefined;
  /** The webhook secret being rolled out of use: still accepted while the provider switches. */
  pspWebhookSecretPrevious: string | undefined;
  /** Token-bucket budgets of the HTTP API, per principal (or client address without a token). */
  rateLimits: RateLimits;
  /** Peers whose X-Forwarded-For is believed (addresses or CIDR blocks); empty → none. */
  trustedProxies: string[];
  /** Origins allowed to call the API from a browser; empty → no CORS headers at all. */
  corsOrigins: string[];
  /** Longest an HTTP request may take before it is answered 503 REQUEST_TIMEOUT, in ms. */
  requestTimeoutMs: number;
  /** After SIGTERM, how long /readyz says "not ready" before the HTTP server stops accepting, in ms. */
  shutdownDrainMs: number;
  /** How long an order may wait for its payment, in ms. */
  orderPaymentTimeoutMs: number;
  /** Seed the demo catalog into an empty inventory. */
  seedDemo: boolean;
  /** Base URL of the notification provider; unset → messages are appended to DATA_DIR/messages.jsonl. */
  notifyUrl: string | undefined;
  logLevel: LogLevel;
  otlpEndpoint: string | undefined;
  /** How long a lost NATS server is retried before the process exits (69) to be restarted, in ms. */
  natsReconnectGiveUpMs: number;
  /** Moleculer node id; defaults to hostname-pid. */
  nodeId: string | undefined;
  /** Moleculer namespace: brokers in different namespaces never see each other. */
  namespace: string;
  /** Time allowed for a graceful stop before the process exits anyway, in ms. */
  shutdownTimeoutMs: number;
}

/** One token bucket: `perSecond` tokens refilled each second, at most `burst` saved up. */
export interface RateBudget {
  perSecond: number;
  burst: number;
}

/** Budgets per class of request; `null` → that class is not limited. */
export interface RateLimits {
  /** POST /api/v1/orders. */
  orders: RateBudget | null;
  /** Every other POST/PUT/DELETE. */
  writes: RateBudget | null;
  /** GET. */
  reads: RateBudget | null;
}

export const DEFAULT_RATE_LIMITS: RateLimits = {
  orders: { perSecond: 10, burst: 20 },
  writes: { perSecond: 20, burst: 40 },
  reads: { perSecond: 50, burst: 100 },
};

type Env = Readonly<Record<string, string | undefined>>;

/** How `loadConfig` treats what it reads. */
export interface LoadOptions {
  /**
   * Refuse placeholder and low-entropy secrets (default true; see `secretWeakness`). Off only for
   * tests whose fixed secrets are meant to be read.
   */
  secretHygiene?: boolean;
}

/** Parse and validate; throws a ConfigError listing every invalid variable. */
export function loadConfig(env: Env = process.env, options: LoadOptions = {}): Config {
  const { read, problems, done } = reader(env);
  const secret = secretParser(options.secretHygiene ?? true);

  const natsUrl = read("NATS_URL", natsServerList, []);
  const transporter = read("TRANSPORTER", transporterServers, []);
  if (natsUrl.length > 0 && transporter.length > 0 && natsUrl.join(",") !== transporter.join(",")) {
    problems.push(new ConfigError("TRANSPORTER", "disagrees with NATS_URL; set one of them"));
  }

  const config: Config = {
    port: read("PORT", portNumber, 3000),
    adminPort: read("ADMIN_PORT", portNumber, undefined),
    dataDir: read("DATA_DIR", absolutePath, resolve("data")),
    services: read("SERVICES", serviceList, [...SERVICE_NAMES]),
    requiredServices: read("REQUIRED_SERVICES", serviceList, [...DOMAIN_SERVICES]),
    natsServers: natsUrl.length > 0 ? natsUrl : transporter,
    jetstreamReplicas: read("JETSTREAM_REPLICAS", (raw) => integer(raw, 1, 5), 1),
    mongoUrl: read("MONGO_URL", (raw) => url(raw, ["mongodb:", "mongodb+srv:"]), undefined),
    redisUrl: read("REDIS_URL", (raw) => url(raw, ["redis:", "rediss:"]), undefined),
    jwtSecret: read("JWT_SECRET", secret, undefined),
    jwksUrl: read("JWKS_URL", (raw) => url(raw, ["https:", "http:"]), undefined),
    jwtIssuer: read("JWT_ISSUER", (raw) => raw, undefined),
    jwtAudience: read("JWT_AUDIENCE", (raw) => raw, undefined),
    authDevTokens: read("AUTH_DEV_TOKENS", boolean, false),
    pspUrl: read("PSP_URL", (raw) => url(raw, ["https:", "http:"]), undefined),
    pspWebhookSecret: read("PSP_WEBHOOK_SECRET", secret, undefined),
    pspWebhookSecretPrevious: read("PSP_WEBHOOK_SECRET_PREVIOUS", secret, undefined),
    rateLimits: {
      orders: read("RATE_LIMIT_ORDERS", rateBudget, DEFAULT_RATE_LIMITS.orders),
      writes: read("RATE_LIMIT_WRITES", rateBudget, DEFAULT_RATE_LIMITS.writes),
      reads: read("RATE_LIMIT_READS", rateBudget, DEFAULT_RATE_LIMITS.reads),
    },
    trustedProxies: read("TRUSTED_PROXIES", addressList, []),
    corsOrigins: read("CORS_ORIGINS", originList, []),
    requestTimeoutMs: read("REQUEST_TIMEOUT", duration, 10_000),
    shutdownDrainMs: read("SHUTDOWN_DRAIN", durationOrZero, 5_000),
    orderPaymentTimeoutMs: read("ORDER_PAYMENT_TIMEOUT", duration, 15 * 60_000),
    seedDemo: read("SEED_DEMO", boolean, true),
    notifyUrl: read("NOTIFY_URL", (raw) => url(raw, ["https:", "http:"]), undefined),
    logLevel: read("LOG_LEVEL", logLevel, "info"),
    otlpEndpoint: read("OTEL_EXPORTER_OTLP_ENDPOINT", (raw) => url(raw, ["https:", "http:"]), undefined),
    natsReconnectGiveUpMs: read("NATS_RECONNECT_GIVE_UP", duration, 2 * 60_000),
    nodeId: read("NODE_ID", nodeId, undefined),
    namespace: read("NAMESPACE", nodeId, "ordermesh"),
    shutdownTimeoutMs: read("SHUTDOWN_TIMEOUT", duration, 30_000),
  };

  const { adminPort, port } = config;
  if (
    adminPort !== undefined &&
    adminPort !== 0 &&
    adminPort === port &&
    config.services.includes("gateway")
  ) {
    problems.push(
      new ConfigError("ADMIN_PORT", `must differ from PORT (${port}), where the gateway listens`),
    );
  }
  done();
  return config;
}

/**
 * What each service of this process needs before its broker starts; throws a ConfigError naming
 * every variable missing. `providerSimulated`: PSP_URL is filled in by the local payment-provider
 * simulator (`npm start`, `npm run cluster`), so payments does not need it from the environment.
 */
export function checkServiceNeeds(config: Config, options: { providerSimulated: boolean }): void {
  const problems: ConfigError[] = [];
  if (config.services.includes("gateway") && config.jwtSecret === undefined) {
    problems.push(
      new ConfigError("JWT_SECRET", "required by the gateway to verify tokens (at least 16 characters)"),
    );
  }
  if (config.services.includes("payments")) {
    if (config.pspUrl === undefined && !options.providerSimulated) {
      problems.push(new ConfigError("PSP_URL", "required by payments: the payment provider's base URL"));
    }
    if (config.pspWebhookSecret === undefined) {
      problems.push(
        new ConfigError(
          "PSP_WEBHOOK_SECRET",
          "required by payments to verify the provider's webhooks (at least 16 characters)",
        ),
      );
    }
  }
  throwAll(problems);
}

/** Where `ordermesh probe` asks: the gateway's PORT in a process that runs it, else ADMIN_PORT. */
export interface ProbeTarget {
  port: number;
  variable: "ADMIN_PORT" | "PORT";
}

/**
 * The port `ordermesh probe` asks, from ADMIN_PORT, PORT and SERVICES alone: a probe never needs
 * the secrets or anything else the process itself checked at start.
 */
export function loadProbeTarget(env: Env = process.env): ProbeTarget {
  const { read, done } = reader(env);
  const adminPort = read("ADMIN_PORT", portNumber, undefined);
  const port = read("PORT", portNumber, 3000);
  const services = read("SERVICES", serviceList, [...SERVICE_NAMES]);
  done();
  // the gateway's own probes are what its load balancer sees (its /readyz waits for the services)
  if (services.includes("gateway")) {
    if (port === 0) throw new ConfigError("PORT", "0 listens on a random port, which a probe cannot know");
    return { port, variable: "PORT" };
  }
  if (adminPort === 0)
    throw new ConfigError("ADMIN_PORT", "0 listens on a random port, which a probe cannot know");
  if (adminPort === undefined)
    throw new ConfigError("ADMIN_PORT", "not set, and SERVICES has no gateway: no port to probe");
  return { port: adminPort, variable: "ADMIN_PORT" };
}

/** What `ordermesh token` signs with: the gateway's own JWT_SECRET, issuer and audience. */
export interface TokenSigning {
  secret: string;
  issuer: string | undefined;
  audience: string | undefined;
}

/** JWT_SECRET (required, checked like the gateway's), JWT_ISSUER and JWT_AUDIENCE. */
export function loadTokenSigning(env: Env = process.env): TokenSigning {
  const { read, done } = reader(env);
  const secret = read("JWT_SECRET", secretParser(true), undefined);
  const issuer = read("JWT_ISSUER", (raw) => raw, undefined);
  const audience = read("JWT_AUDIENCE", (raw) => raw, undefined);
  done();
  if (secret === undefined) {
    throw new ConfigError("JWT_SECRET", "required to sign tokens: the secret the gateway verifies them with");
  }
  return { secret, issuer, audience };
}

/** Configuration of the payment-provider simulator run alone (bin/psp-simulator.ts). */
export interface PspSimulatorConfig {
  port: number;
  host: string;
  /** Absolute; checked writable by `usableDataDir`. */
  dataDir: string;
  webhookSecret: string;
  webhookUrl: string | undefined;
}

/** PORT (4000), HOST (0.0.0.0), DATA_DIR (./data), PSP_WEBHOOK_SECRET (required), WEBHOOK_URL. */
export function loadPspSimulatorConfig(env: Env = process.env): PspSimulatorConfig {
  const { read, done } = reader(env);
  const config = {
    port: read("PORT", portNumber, 4000),
    host: read("HOST", (raw) => raw, "0.0.0.0"),
    dataDir: read("DATA_DIR", absolutePath, resolve("data")),
    webhookSecret: read("PSP_WEBHOOK_SECRET", secretParser(true), undefined),
    webhookUrl: read("WEBHOOK_URL", (raw) => url(raw, ["https:", "http:"]), undefined),
  };
  done();
  if (config.webhookSecret === undefined) {
    throw new ConfigError("PSP_WEBHOOK_SECRET", "required to sign webhooks (at least 16 characters)");
  }
  return { ...config, webhookSecret: config.webhookSecret };
}

/** Create DATA_DIR when missing and check that it is writable; a ConfigError naming DATA_DIR otherwise. */
export function usableDataDir(dir: string): string {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, fsConstants.W_OK);
  } catch (err) {
    throw new ConfigError(
      "DATA_DIR",
      `cannot use ${dir}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return dir;
}

/** A reader of `env` that collects every problem; `done()` throws them, joined, if any. */
function reader(env: Env): {
  read: <T>(name: string, parse: (raw: string) => T, fallback: T) => T;
  problems: ConfigError[];
  done: () => void;
} {
  const problems: ConfigError[] = [];
  const read = <T>(name: string, parse: (raw: string) => T, fallback: T): T => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === "") return fallback;
    try {
      return parse(raw.trim());
    } catch (err) {
      problems.push(new ConfigError(name, err instanceof Error ? err.message : String(err)));
      return fallback;
    }
  };
  return { read, problems, done: () => throwAll(problems) };
}

/** One ConfigError for all of `problems` (naming every variable), or nothing when there is none. */
function throwAll(problems: ConfigError[]): void {
  if (problems.length === 1) throw problems[0] as ConfigError;
  if (problems.length > 1) {
    throw new ConfigError(
      problems.map((p) => p.variable).join(", "),
      problems.map((p) => p.message).join("; "),
    );
  }
}

function portNumber(raw: string): number {
  return integer(raw, 0, 65535);
}

function absolutePath(raw: string): string {
  return isAbsolute(raw) ? raw : resolve(raw);
}

function integer(raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw)) throw new Error(`expected an integer from ${min} to ${max}, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new Error(`expected an integer from ${min} to ${max}, got ${value}`);
  return value;
}

function boolean(raw: string): boolean {
  const lower = raw.toLowerCase();
  if (["true", "1", "yes", "on"].includes(lower)) return true;
  if (["false", "0", "no", "off"].includes(lower)) return false;
  throw new Error(`expected true or false, got "${raw}"`);
}

/** A duration: plain milliseconds, or a number with unit ms, s, m, h. */
export function duration(raw: string): number {
  const match = /^(\d+)(ms|s|m|h)?$/.exec(raw);
  if (match === null) throw new Error(`expected a duration such as 900000, 90s, 15m or 1h, got "${raw}"`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? "ms") as "ms" | "s" | "m" | "h"];
  const value = Number(match[1]) * unit;
  if (value <= 0) throw new Error("must be greater than zero");
  return value;
}

/** SHUTDOWN_DRAIN may be 0 (no drain delay). */
function durationOrZero(raw: string): number {
  return /^0+(ms|s|m|h)?$/.test(raw) ? 0 : duration(raw);
}

/** `<per second>:<burst>` such as `50:100`, or `off`. */
export function rateBudget(raw: string): RateBudget | null {
  if (raw.toLowerCase() === "off") return null;
  const match = /^(\d+(?:\.\d+)?):(\d+)$/.exec(raw);
  if (match === null) throw new Error(`expected <per second>:<burst> such as 50:100, or off, got "${raw}"`);
  const perSecond = Number(match[1]);
  const burst = Number(match[2]);
  if (perSecond <= 0 || burst < 1) throw new Error("the rate must be above 0 and the burst at least 1");
  return { perSecond, burst };
}

/** Comma-separated IPv4/IPv6 addresses or CIDR blocks. */
function addressList(raw: string): string[] {
  const entries = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const entry of entries) {
    const [address, bits, extra] = entry.split("/");
    const version = isIP(address ?? "");
    if (version === 0 || extra !== undefined)
      throw new Error(`"${entry}" is not an IP address or CIDR block`);
    if (bits !== undefined) {
      const max = version === 4 ? 32 : 128;
      if (!/^\d+$/.test(bits) || Number(bits) > max) throw new Error(`"${entry}": prefix must be 0..${max}`);
    }
  }
  return entries;
}

/** Comma-separated origins (`https://shop.example.com`). */
function originList(raw: string): string[] {
  return raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((origin) => {
      const parsed = new URL(url(origin, ["https:", "http:"]));
      if (parsed.origin !== origin.replace(/\/$/, ""))
        throw new Error(`"${origin}" is not an origin (scheme://host[:port], no path)`);
      return parsed.origin;
    });
}

function url(raw: string, protocols: string[]): string {
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new Error(`expected a URL (${protocols.map((p) => `${p}//…`).join(" or ")}), got "${raw}"`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new Error(`expected a ${protocols.join(" or ")} URL, got "${parsed.protocol}"`);
  }
  if (parsed.hostname === "") throw new Error(`URL "${raw}" has no host`);
  return raw;
}

function natsServerList(raw: string): string[] {
  return raw.split(",").map((part) => url(part.trim(), ["nats:", "tls:"]));
}

/** TRANSPORTER takes a NATS URL (or `NATS` with NATS_URL); other transporters are not supported. */
function transporterServers(raw: string): string[] {
  if (raw.toUpperCase() === "NATS") return [];
  return natsServerList(raw);
}

function serviceList(raw: string): ServiceName[] {
  if (raw === "all" || raw === "*") return [...SERVICE_NAMES];
  const names = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (names.length === 0) throw new Error("names no service");
  const unknown = names.filter((name) => !(SERVICE_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new Error(
      `unknown service ${unknown.map((u) => `"${u}"`).join(", ")}; known: ${SERVICE_NAMES.join(", ")}`,
    );
  }
  return [...new Set(names)] as ServiceName[];
}

/** Fewest characters a secret may have. */
export const SECRET_MIN_LENGTH = 16;
/** Fewest distinct characters a secret may have. */
export const SECRET_MIN_DISTINCT = 8;
/** Least estimated entropy of a secret, in bits (see `secretWeakness`). */
export const SECRET_MIN_BITS = 64;
/** Parts that mark a value as a placeholder, matched anywhere in a secret, case-insensitively. */
export const SECRET_PLACEHOLDER_PARTS = [
  "change-me",
  "changeme",
  "change_me",
  "changeit",
  "example",
  "placeholder",
  "secret",
  "password",
  "passwd",
  "replace",
  "fixme",
  "dummy",
  "your-",
  "your_",
] as const;
/**
 * Short placeholders, `xxx` (or a longer run of x) and `todo`, count as whole words only (no
 * letter or digit on either side), so that a random base64 secret holding "xxx" is not refused.
 */
const PLACEHOLDER_WORD = /(?<![a-z0-9])(x{3,}|todo)(?![a-z0-9])/;

/**
 * Why `raw` cannot be a secret, or undefined when it can. A secret is refused when it is shorter
 * than SECRET_MIN_LENGTH, contains a placeholder (SECRET_PLACEHOLDER_PARTS anywhere, `xxx` and
 * `todo` as words; case-insensitive), has fewer than SECRET_MIN_DISTINCT distinct
 * characters, or has an estimated entropy below SECRET_MIN_BITS: the Shannon entropy of its own
 * character frequencies times its length. That estimate is low for short random strings, so in
 * practice a secret needs some 20 random characters (`openssl rand -base64 32` gives 44). The
 * reasons never repeat the value.
 */
export function secretWeakness(raw: string): string | undefined {
  const tooShort = secretLengthProblem(raw);
  if (tooShort !== undefined) return tooShort;
  const chars = [...raw];
  const placeholder = placeholderIn(raw.toLowerCase());
  if (placeholder !== undefined) return `contains the placeholder "${placeholder}"; ${RANDOM_ADVICE}`;
  const counts = new Map<string, number>();
  for (const ch of chars) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  if (counts.size < SECRET_MIN_DISTINCT) {
    return `has ${counts.size} distinct characters, fewer than ${SECRET_MIN_DISTINCT}; ${RANDOM_ADVICE}`;
  }
  const bits = entropyBits(counts, chars.length);
  if (bits < SECRET_MIN_BITS) {
    return `too little entropy (about ${Math.floor(bits)} bits, at least ${SECRET_MIN_BITS}); ${RANDOM_ADVICE}`;
  }
  return undefined;
}

/** The placeholder `lower` (a lower-cased secret) contains, if any. */
function placeholderIn(lower: string): string | undefined {
  const part = SECRET_PLACEHOLDER_PARTS.find((p) => lower.includes(p));
  if (part !== undefined) return part;
  const word = PLACEHOLDER_WORD.exec(lower)?.[1];
  // a run of x is named "xxx": the reason never repeats the value
  return word?.startsWith("x") === true ? "xxx" : word;
}

function secretLengthProblem(raw: string): string | undefined {
  return [...raw].length < SECRET_MIN_LENGTH ? `must be at least ${SECRET_MIN_LENGTH} characters` : undefined;
}

const RANDOM_ADVICE = "use a random value such as the output of `openssl rand -base64 32`";

/** Shannon entropy of the character frequencies × length: an estimate of a string's bits. */
function entropyBits(counts: Map<string, number>, length: number): number {
  let perChar = 0;
  for (const count of counts.values()) {
    const p = count / length;
    perChar -= p * Math.log2(p);
  }
  return perChar * length;
}

/** The parser of a secret: its length always, its strength (`secretWeakness`) unless told not to. */
function secretParser(hygiene: boolean): (raw: string) => string {
  return (raw) => {
    const weakness = hygiene ? secretWeakness(raw) : secretLengthProblem(raw);
    if (weakness !== undefined) throw new Error(weakness);
    return raw;
  };
}

function logLevel(raw: string): LogLevel {
  const lower = raw.toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(lower))
    throw new Error(`expected one of ${LOG_LEVELS.join(", ")}`);
  return lower as LogLevel;
}

function nodeId(raw: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(raw))
    throw new Error("letters, digits, dot, dash and underscore only (≤ 64)");
  return raw;
}
