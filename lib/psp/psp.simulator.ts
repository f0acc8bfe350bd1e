/**
 * A payment-provider simulator: a Stripe-like subset on its own `node:http` server, durable under
 * `<dataDir>/psp/` (lib/psp/psp.state.ts), for embedded mode and tests. Reference: docs/payments.md.
 *
 * API (JSON bodies; `Authorization` accepted, never required):
 * - `POST /v1/payment_intents` `{ amount, currency, payment_method, metadata? }` with `Idempotency-Key`:
 *   `pm_card_visa` → 200 `processing`, `succeeded` 50–200 ms later (+ `payment_intent.succeeded`);
 *   `pm_card_slow` → the same after `slowMs`; `pm_card_declined` → 402 card error
 *   (+ `payment_intent.payment_failed`); any other method → 400 `payment_method_invalid`.
 * - `GET /v1/payment_intents/:id`, `POST /v1/refunds` `{ payment_intent, amount? }` with
 *   `Idempotency-Key` (+ `charge.refunded`), `GET /v1/refunds/:id`.
 * - Idempotency: the same key with the same request replays the stored answer (header
 *   `Idempotent-Replayed: true`); with another request → 422 `idempotency_error`. Answers 2xx and 402
 *   are stored (the request took effect); validation errors are not (nothing happened).
 * - Webhooks to `webhookUrl`, signed (`Psp-Signature`, lib/psp/psp.signature.ts), retried with
 *   backoff on a non-2xx answer or a network error, durable across restarts.
 * - Fault injection: `GET`/`PUT /_sim/faults` `{ latencyMs, errorRate, outage, dropWebhooks }`;
 *   `outage` answers every API call 503 (the connection is kept: a load balancer with nothing behind
 *   it). `GET /_sim/health`, `GET /_sim/stats`, `GET /_sim/intents`. `/_sim/*` is never faulted.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { PaymentIntent, ProviderError, PspEvent, Refund } from "./psp.port";
import { signPayload } from "./psp.signature";
import { PspState, type WebhookRecord, type WebhookStatus } from "./psp.state";

/** Faults the simulator injects, changeable at run time. */
export interface PspFaults {
  /** Added before every API answer, in ms. */
  latencyMs: number;
  /** Share (0..1) of API calls answered 500 without being performed. */
  errorRate: number;
  /** Every API call answered 503, nothing performed. */
  outage: boolean;
  /** Webhooks of events that happen meanwhile are never sent (the intents still change state). */
  dropWebhooks: boolean;
}

export interface PspSimulatorLogger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
  debug?(...args: unknown[]): void;
}

export interface PspSimulatorOptions {
  /** State lives under `<dataDir>/psp/`. */
  dataDir: string;
  /** 0 (default) = a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Where webhooks are posted; none → events are recorded as `skipped`. */
  webhookUrl?: string;
  webhookSecret: string;
  /** How long `pm_card_slow` stays processing (default 3 000 ms). */
  slowMs?: number;
  /** Delays between webhook attempts; attempts = length + 1 (default 0.2 s, 0.5 s, 1 s, 2 s, 5 s, 10 s, 20 s, 30 s, 60 s). */
  webhookRetryDelaysMs?: readonly number[];
  /** A webhook receiver that does not answer within this is a failed attempt (default 5 000 ms). */
  webhookTimeoutMs?: number;
  logger?: PspSimulatorLogger;
}

/** Counts of what the simulator holds. */
export interface PspSimulatorStats {
  intents: number;
  refunds: number;
  webhooks: Record<WebhookStatus, number>;
}

/** A running simulator. */
export interface PspSimulator {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** Change some faults; returns all of them. Throws `RangeError` on an invalid value. */
  setFaults(partial: Partial<PspFaults>): PspFaults;
  faults(): PspFaults;
  setWebhookUrl(url: string | undefined): void;
  /** Every intent, oldest first. */
  intents(): PaymentIntent[];
  refunds(): Refund[];
  /** Every webhook event with its delivery state, oldest first. */
  webhooks(): WebhookRecord[];
  stats(): PspSimulatorStats;
  /** Stop serving, abort deliveries in flight (they stay pending), close the state. Idempotent. */
  close(): Promise<void>;
}

const DEFAULT_RETRY_DELAYS_MS = [200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000];
const MAX_BODY_BYTES = 1024 * 1024;
const NO_FAULTS: PspFaults = { latencyMs: 0, errorRate: 0, outage: false, dropWebhooks: false };

/** Payment methods the simulator knows, and what they do. */
const PAYMENT_METHODS = {
  pm_card_visa: "succeeds",
  pm_card_slow: "succeeds-slowly",
  pm_card_declined: "declines",
} as const;

/** An HTTP answer: a JSON value, or the stored text of a replayed one. */
interface Answer {
  status: number;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
}

/** Start a simulator; resolves once it listens and has resumed its unfinished work. */
export async function startPspSimulator(options: PspSimulatorOptions): Promise<PspSimulator> {
  const simulator = new Simulator(options);
  await simulator.start();
  return simulator;
}

class Simulator implements PspSimulator {
  private readonly state: PspState;
  private readonly server: Server;
  private readonly secret: string;
  private readonly slowMs: number;
  private readonly retryDelays: readonly number[];
  private readonly webhookTimeoutMs: number;
  private readonly logger: PspSimulatorLogger | undefined;
  private webhookUrl: string | undefined;
  private current: PspFaults = { ...NO_FAULTS };
  private address = "";
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly work = new Set<Promise<unknown>>();
  private readonly delivering = new Set<string>();
  /** Work to schedule once the running state transaction has committed. */
  private afterCommit: (() => void)[] = [];

  constructor(private readonly options: PspSimulatorOptions) {
    if (typeof options.webhookSecret !== "string" || options.webhookSecret.length === 0)
      throw new RangeError("the PSP simulator needs a webhookSecret");
    this.state = new PspState(options.dataDir);
    this.secret = options.webhookSecret;
    this.slowMs = options.slowMs ?? 3000;
    this.retryDelays = options.webhookRetryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
    this.webhookTimeoutMs = options.webhookTimeoutMs ?? 5000;
    this.logger = options.logger;
    this.webhookUrl = options.webhookUrl;
    this.server = createServer((req, res) => {
      this.track(this.handle(req, res));
    });
    this.server.keepAliveTimeout = 5_000;
  }

  get url(): string {
    return this.address;
  }

  async start(): Promise<void> {
    this.state.open();
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once("error", reject);
        this.server.listen(this.options.port ?? 0, this.options.host ?? "127.0.0.1", () => {
          this.server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      this.state.close();
      throw err;
    }
    const { address, port } = this.server.address() as AddressInfo;
    this.address = `http://${address.includes(":") ? `[${address}]` : address}:${port}`;
    // resume what the last run left: intents still processing, webhooks still owed
    const now = Date.now();
    for (const { id, settleAt } of this.state.unsettled())
      this.schedule(settleAt - now, () => this.settle(id));
    for (const hook of this.state.pendingWebhooks())
      this.schedule((hook.nextAttemptAt ?? now) - now, () => this.track(this.deliver(hook.id)));
    this.logger?.info(`[psp-simulator] listening on ${this.address}`);
  }

  // -- handle -------------------------------------------------------------------------------------

  setFaults(partial: Partial<PspFaults>): PspFaults {
    const problem = faultsProblem(partial);
    if (problem !== null) throw new RangeError(problem);
    this.current = { ...this.current, ...definedOnly(partial) };
    this.logger?.info(`[psp-simulator] faults: ${JSON.stringify(this.current)}`);
    return this.faults();
  }

  faults(): PspFaults {
    return { ...this.current };
  }

  setWebhookUrl(url: string | undefined): void {
    this.webhookUrl = url;
  }

  intents(): PaymentIntent[] {
    return this.state.listIntents();
  }

  refunds(): Refund[] {
    return this.state.listRefunds();
  }

  webhooks(): WebhookRecord[] {
    return this.state.listWebhooks();
  }

  stats(): PspSimulatorStats {
    return this.state.counts();
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await Promise.allSettled([...this.work]);
    await stopped;
    this.state.close();
    this.logger?.info(`[psp-simulator] stopped`);
  }

  // -- HTTP ---------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const method = req.method ?? "GET";
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    let answer: Answer;
    try {
      const raw = await readBody(req);
      answer = path.startsWith("/_sim/")
        ? this.simRoute(method, path, raw)
        : await this.apiRoute(req, method, path, raw);
    } catch (err) {
      answer =
        err instanceof BodyTooLargeError
          ? apiError(413, "invalid_request_error", "body_too_large", "request body over 1 MiB")
          : apiError(500, "api_error", "internal_error", errorText(err));
    }
    send(res, answer);
    this.logger?.debug?.(`[psp-simulator] ${method} ${path} → ${answer.status} (${Date.now() - started} ms)`);
  }

  private simRoute(method: string, path: string, raw: string): Answer {
    if (path === "/_sim/health" && method === "GET") return { status: 200, body: { ok: true } };
    if (path === "/_sim/stats" && method === "GET") return { status: 200, body: this.stats() };
    if (path === "/_sim/intents" && method === "GET") return { status: 200, body: { data: this.intents() } };
    if (path === "/_sim/faults" && method === "GET") return { status: 200, body: this.faults() };
    if (path === "/_sim/faults" && method === "PUT") {
      const body = parseJsonObject(raw);
      if (body === null)
        return apiError(400, "invalid_request_error", "parse_error", "body must be a JSON object");
      const problem = faultsProblem(body);
      if (problem !== null) return apiError(400, "invalid_request_error", "parameter_invalid", problem);
      return { status: 200, body: this.setFaults(body as Partial<PspFaults>) };
    }
    return apiError(404, "invalid_request_error", "resource_missing", `no route ${method} ${path}`);
  }

  private async apiRoute(req: IncomingMessage, method: string, path: string, raw: string): Promise<Answer> {
    const faults = this.current;
    if (faults.latencyMs > 0) await sleep(faults.latencyMs, this.abort.signal);
    if (this.closed) return apiError(503, "api_error", "service_unavailable", "the simulator is stopping");
    if (faults.outage)
      return apiError(503, "api_error", "service_unavailable", "the provider is down (simulated outage)");
    if (faults.errorRate > 0 && Math.random() < faults.errorRate)
      return apiError(500, "api_error", "internal_error", "simulated error: nothing was done");

    const intentMatch = /^\/v1\/payment_intents\/([^/]+)$/.exec(path);
    const refundMatch = /^\/v1\/refunds\/([^/]+)$/.exec(path);
    if (method === "POST" && path === "/v1/payment_intents")
      return this.idempotent(req, method, path, raw, (body) => this.createIntent(body));
    if (method === "POST" && path === "/v1/refunds")
      return this.idempotent(req, method, path, raw, (body) => this.createRefund(body));
    if (method === "GET" && intentMatch !== null) {
      const stored = this.state.getIntent(decodeURIComponent(intentMatch[1] ?? ""));
      return stored === null
        ? apiError(404, "invalid_request_error", "resource_missing", "no such payment_intent")
        : { status: 200, body: stored.intent };
    }
    if (method === "GET" && refundMatch !== null) {
      const refund = this.state.getRefund(decodeURIComponent(refundMatch[1] ?? ""));
      return refund === null
        ? apiError(404, "invalid_request_error", "resource_missing", "no such refund")
        : { status: 200, body: refund };
    }
    return apiError(404, "invalid_request_error", "resource_missing", `no route ${method} ${path}`);
  }

  /** Run `perform` once per Idempotency-Key; replay its stored answer for the same request. */
  private idempotent(
    req: IncomingMessage,
    method: string,
    path: string,
    raw: string,
    perform: (body: Record<string, unknown>) => Answer,
  ): Answer {
    const header = req.headers["idempotency-key"];
    const key = Array.isArray(header) ? header[0] : header;
    if (key === undefined || key.trim() === "")
      return apiError(
        400,
        "invalid_request_error",
        "idempotency_key_missing",
        "an Idempotency-Key header is required",
      );
    if (key.length > 255)
      return apiError(
        400,
        "invalid_request_error",
        "idempotency_key_invalid",
        "Idempotency-Key longer than 255",
      );
    const body = parseJsonObject(raw);
    if (body === null)
      return apiError(400, "invalid_request_error", "parse_error", "body must be a JSON object");
    const requestHash = createHash("sha256")
      .update(`${method} ${path}\n${canonicalJson(body)}`)
      .digest("hex");
    return this.transaction(() => {
      const stored = this.state.getIdempotency(key);
      if (stored !== null) {
        if (stored.requestHash !== requestHash) {
          return apiError(
            422,
            "idempotency_error",
            "idempotency_key_in_use",
            "this Idempotency-Key was used with another request",
          );
        }
        return { status: stored.status, raw: stored.body, headers: { "idempotent-replayed": "true" } };
      }
      const answer = perform(body);
      // an answer that took effect is kept; a refused one changed nothing and may be corrected
      if ((answer.status >= 200 && answer.status < 300) || answer.status === 402)
        this.state.putIdempotency({
          key,
          requestHash,
          status: answer.status,
          body: JSON.stringify(answer.body),
        });
      return answer;
    });
  }

  private createIntent(body: Record<string, unknown>): Answer {
    const { amount, currency, payment_method: method, metadata } = body;
    if (typeof amount !== "number" || !Number.isSafeInteger(amount) || amount <= 0)
      return invalid(
        "parameter_invalid_integer",
        "amount must be a positive integer (minor units)",
        "amount",
      );
    if (typeof currency !== "string" || !/^[A-Z]{3}$/.test(currency))
      return invalid("parameter_invalid", "currency must be 3 uppercase letters", "currency");
    if (typeof method !== "string" || method.length === 0)
      return invalid("parameter_missing", "payment_method is required", "payment_method");
    if (metadata !== undefined && !isStringRecord(metadata))
      return invalid("parameter_invalid", "metadata must map strings to strings", "metadata");
    if (!Object.hasOwn(PAYMENT_METHODS, method))
      return invalid("payment_method_invalid", `unknown payment method ${method}`, "payment_method");
    const behaviour = PAYMENT_METHODS[method as keyof typeof PAYMENT_METHODS];

    const intent: PaymentIntent = {
      id: `pi_${randomBytes(12).toString("hex")}`,
      object: "payment_intent",
      status: "processing",
      amount,
      currency,
      payment_method: method,
      metadata: (metadata as Record<string, string> | undefined) ?? {},
      created: nowSeconds(),
    };
    if (behaviour === "declines") {
      const error: ProviderError = {
        type: "card_error",
        code: "card_declined",
        decline_code: "generic_decline",
        message: "Your card was declined.",
      };
      const declined: PaymentIntent = {
        ...intent,
        status: "requires_payment_method",
        last_payment_error: error,
      };
      this.state.putIntent({ intent: declined, settleAt: null });
      this.emit("payment_intent.payment_failed", declined);
      return { status: 402, body: { error: { ...error, payment_intent: declined } } };
    }
    const delay = behaviour === "succeeds-slowly" ? this.slowMs : 50 + Math.floor(Math.random() * 151);
    const settleAt = Date.now() + delay;
    this.state.putIntent({ intent, settleAt });
    this.afterCommit.push(() => this.schedule(delay, () => this.settle(intent.id)));
    return { status: 200, body: intent };
  }

  private createRefund(body: Record<string, unknown>): Answer {
    const { payment_intent: intentId, amount } = body;
    if (typeof intentId !== "string" || intentId.length === 0)
      return invalid("parameter_missing", "payment_intent is required", "payment_intent");
    if (amount !== undefined && (typeof amount !== "number" || !Number.isSafeInteger(amount) || amount <= 0))
      return invalid(
        "parameter_invalid_integer",
        "amount must be a positive integer (minor units)",
        "amount",
      );
    const stored = this.state.getIntent(intentId);
    if (stored === null)
      return apiError(404, "invalid_request_error", "resource_missing", "no such payment_intent");
    const intent = stored.intent;
    if (intent.status !== "succeeded")
      return invalid(
        "charge_not_refundable",
        `payment_intent is ${intent.status}, not succeeded`,
        "payment_intent",
      );
    const remaining = intent.amount - this.state.refundedOf(intent.id);
    if (remaining <= 0)
      return invalid("charge_already_refunded", "the payment is fully refunded", "payment_intent");
    const refundAmount = (amount as number | undefined) ?? remaining;
    if (refundAmount > remaining)
      return invalid("amount_too_large", `at most ${remaining} can still be refunded`, "amount");
    const refund: Refund = {
      id: `re_${randomBytes(12).toString("hex")}`,
      object: "refund",
      status: "succeeded",
      amount: refundAmount,
      currency: intent.currency,
      payment_intent: intent.id,
      created: nowSeconds(),
    };
    this.state.addRefund(refund);
    this.emit("charge.refunded", refund);
    return { status: 200, body: refund };
  }

  // -- state changes over time --------------------------------------------------------------------

  /** A `processing` intent succeeds. */
  private settle(id: string): void {
    if (this.closed) return;
    try {
      this.transaction(() => {
        const stored = this.state.getIntent(id);
        if (stored === null || stored.settleAt === null) return;
        if (stored.intent.status !== "processing") {
          this.state.putIntent({ intent: stored.intent, settleAt: null });
          return;
        }
        const intent: PaymentIntent = { ...stored.intent, status: "succeeded" };
        this.state.putIntent({ intent, settleAt: null });
        this.emit("payment_intent.succeeded", intent);
      });
    } catch (err) {
      this.logger?.error(`[psp-simulator] settling ${id} failed`, err);
    }
  }

  /** Record a webhook event in the running transaction; it is sent after the commit. */
  private emit(type: string, object: PaymentIntent | Refund): void {
    const event: PspEvent = {
      id: `evt_${randomBytes(12).toString("hex")}`,
      type,
      created: nowSeconds(),
      data: { object },
    };
    const status: WebhookStatus = this.current.dropWebhooks
      ? "dropped"
      : this.webhookUrl === undefined
        ? "skipped"
        : "pending";
    const record = this.state.addWebhook(event, status, status === "pending" ? Date.now() : null);
    if (status === "pending") this.afterCommit.push(() => this.track(this.deliver(record.id)));
  }

  /** One delivery attempt of a pending webhook; a failure schedules the next one. */
  private async deliver(id: string): Promise<void> {
    if (this.closed || this.delivering.has(id)) return;
    const record = this.state.getWebhook(id);
    if (record === null || record.status !== "pending") return;
    const url = this.webhookUrl;
    if (url === undefined) {
      this.state.updateWebhook(id, {
        status: "skipped",
        attempts: record.attempts,
        nextAttemptAt: null,
        lastError: null,
      });
      return;
    }
    this.delivering.add(id);
    let failure: string | null = null;
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "psp-signature": signPayload(this.secret, record.body, nowSeconds()),
          "user-agent": "ordermesh-psp-simulator",
        },
        body: record.body,
        signal: AbortSignal.any([AbortSignal.timeout(this.webhookTimeoutMs), this.abort.signal]),
      });
      await response.text().catch(() => "");
      if (!response.ok) failure = `receiver answered ${response.status}`;
    } catch (err) {
      failure = errorText(err);
    } finally {
      this.delivering.delete(id);
    }
    // stopped meanwhile: the delivery stays pending and is attempted again after a restart
    if (this.closed) return;
    const attempts = record.attempts + 1;
    if (failure === null) {
      this.state.updateWebhook(id, { status: "delivered", attempts, nextAttemptAt: null, lastError: null });
      return;
    }
    if (attempts > this.retryDelays.length) {
      this.state.updateWebhook(id, { status: "failed", attempts, nextAttemptAt: null, lastError: failure });
      this.logger?.warn(
        `[psp-simulator] webhook ${id} (${record.type}) given up after ${attempts} attempts: ${failure}`,
      );
      return;
    }
    const delay = this.retryDelays[attempts - 1] ?? 0;
    this.state.updateWebhook(id, {
      status: "pending",
      attempts,
      nextAttemptAt: Date.now() + delay,
      lastError: failure,
    });
    this.logger?.debug?.(
      `[psp-simulator] webhook ${id} attempt ${attempts} failed (${failure}); next in ${delay} ms`,
    );
    this.schedule(delay, () => this.track(this.deliver(id)));
  }

  // -- plumbing -----------------------------------------------------------------------------------

  /** A state transaction; work it queued for after the commit is scheduled only if it commits. */
  private transaction<T>(fn: () => T): T {
    this.afterCommit = [];
    let result: T;
    try {
      result = this.state.transaction(fn);
    } catch (err) {
      this.afterCommit = [];
      throw err;
    }
    const queued = this.afterCommit;
    this.afterCommit = [];
    for (const run of queued) run();
    return result;
  }

  private schedule(delayMs: number, run: () => void): void {
    if (this.closed) return;
    const timer = setTimeout(
      () => {
        this.timers.delete(timer);
        if (!this.closed) run();
      },
      Math.max(0, delayMs),
    );
    timer.unref();
    this.timers.add(timer);
  }

  private track(promise: Promise<unknown>): void {
    const tracked = promise.catch((err: unknown) =>
      this.logger?.error("[psp-simulator] unexpected failure", err),
    );
    this.work.add(tracked);
    void tracked.finally(() => this.work.delete(tracked));
  }
}

// -- helpers ------------------------------------------------------------------------------------------

class BodyTooLargeError extends Error {}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new BodyTooLargeError());
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, answer: Answer): void {
  if (res.destroyed || res.headersSent) return;
  const text = answer.raw ?? JSON.stringify(answer.body ?? {});
  res.writeHead(answer.status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...answer.headers,
  });
  res.end(text);
}

function apiError(status: number, type: string, code: string, message: string, param?: string): Answer {
  return { status, body: { error: { type, code, message, ...(param === undefined ? {} : { param }) } } };
}

function invalid(code: string, message: string, param: string): Answer {
  return apiError(400, "invalid_request_error", code, message, param);
}

function parseJsonObject(raw: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(raw.length === 0 ? "{}" : raw) as unknown;
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

/** JSON with object keys sorted, so that key order does not make two equal requests differ. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function isStringRecord(value: unknown): value is Record<string, string> {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === "string")
  );
}

/** Why `value` is not a valid (partial) set of faults; null when it is. */
function faultsProblem(value: Record<string, unknown> | Partial<PspFaults>): string | null {
  for (const [key, v] of Object.entries(value)) {
    if (v === undefined) continue;
    switch (key) {
      case "latencyMs":
        if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 600_000)
          return "latencyMs must be a number of ms from 0 to 600000";
        break;
      case "errorRate":
        if (typeof v !== "number" || !(v >= 0 && v <= 1)) return "errorRate must be a number from 0 to 1";
        break;
      case "outage":
      case "dropWebhooks":
        if (typeof v !== "boolean") return `${key} must be true or false`;
        break;
      default:
        return `unknown fault "${key}" (latencyMs, errorRate, outage, dropWebhooks)`;
    }
  }
  return null;
}

function definedOnly(partial: Partial<PspFaults>): Partial<PspFaults> {
  return Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)) as Partial<PspFaults>;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    timer.unref();
    signal.addEventListener("abort", done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
}
