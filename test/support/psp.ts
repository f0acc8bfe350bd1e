/**
 * Helpers for the payment-provider suites: a local webhook receiver (records what the simulator
 * posts, can refuse on purpose, or hand each delivery to a function as the gateway does) and a
 * small JSON caller for the simulator's HTTP API.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { PspEvent } from "../../lib/psp/psp.port";

/** A secret good enough for config validation (long, random-looking, no placeholder word). */
export const TEST_WEBHOOK_SECRET = "whsec_T7q2LmX9vRk4ZpN8wYc3";

export interface ReceivedWebhook {
  body: string;
  signature: string;
  event: PspEvent;
  /** The status the receiver answered. */
  status: number;
}

export interface WebhookReceiver {
  url: string;
  /** Every delivery attempt, in arrival order (refused ones included). */
  readonly received: ReceivedWebhook[];
  /** Deliveries answered 2xx. */
  accepted(): ReceivedWebhook[];
  /** Answer the next `n` deliveries with 500. */
  refuseNext(n: number): void;
  /** Answer every delivery with 503 until called with false. */
  refuseAll(refuse: boolean): void;
  close(): Promise<void>;
}

/** What a forwarding receiver answers for one delivery. */
export type WebhookHandler = (delivery: {
  body: string;
  signature: string;
}) => Promise<{ status: number; body: unknown }>;

/** Start a receiver on a free port; `handle` decides the answer (default 200 `{ received: true }`). */
export async function startWebhookReceiver(handle?: WebhookHandler): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  let refusals = 0;
  let refusing = false;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      void (async () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const header = req.headers["psp-signature"];
        const signature = Array.isArray(header) ? header.join(",") : (header ?? "");
        let answer: { status: number; body: unknown };
        if (refusing) {
          answer = { status: 503, body: { error: "refusing (test)" } };
        } else if (refusals > 0) {
          refusals -= 1;
          answer = { status: 500, body: { error: "refusing once (test)" } };
        } else if (handle !== undefined) {
          answer = await handle({ body, signature }).catch((err: unknown) => ({
            status: 500,
            body: { error: String(err) },
          }));
        } else {
          answer = { status: 200, body: { received: true } };
        }
        let event: PspEvent;
        try {
          event = JSON.parse(body) as PspEvent;
        } catch {
          event = {
            id: "",
            type: "unparseable",
            created: 0,
            data: { object: {} as PspEvent["data"]["object"] },
          };
        }
        received.push({ body, signature, event, status: answer.status });
        res.writeHead(answer.status, { "content-type": "application/json" });
        res.end(JSON.stringify(answer.body));
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhook`,
    received,
    accepted: () => received.filter((r) => r.status >= 200 && r.status < 300),
    refuseNext(n) {
      refusals = n;
    },
    refuseAll(refuse) {
      refusing = refuse;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface HttpAnswer<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
}

/** One JSON request to the simulator. */
export async function callPsp<T = Record<string, unknown>>(
  baseUrl: string,
  method: "GET" | "POST" | "PUT",
  path: string,
  options: { body?: unknown; idempotencyKey?: string; headers?: Record<string, string> } = {},
): Promise<HttpAnswer<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  if (options.idempotencyKey !== undefined) headers["idempotency-key"] = options.idempotencyKey;
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text.length === 0 ? {} : JSON.parse(text)) as T };
}

let keyCounter = 0;

/** A fresh idempotency key. */
export function newKey(prefix = "key"): string {
  keyCounter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${keyCounter}`;
}
