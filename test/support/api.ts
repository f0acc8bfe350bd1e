/** A small client for the HTTP API (README, "HTTP API (v1)"), for end-to-end tests and the benchmark. */
import { randomUUID } from "node:crypto";
import { issueToken } from "../../lib/auth/jwt";
import type { Role } from "../../lib/constants";

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown; requestId: string };
}

export interface OrderBody {
  id: string;
  customerId: string;
  status: "PENDING_PAYMENT" | "PAID" | "SHIPPED" | "DELIVERED" | "CANCELLED";
  items: { sku: string; quantity: number; unitPrice: { minor: number; currency: string } }[];
  total: { minor: number; currency: string };
  cancelReason?: string;
  paymentId?: string;
  statusHistory: { status: string; at: string; reason?: string }[];
}

export class Api {
  constructor(
    readonly base: string,
    private readonly jwtSecret: string,
    /** Wait and retry a GET answered 429 (on by default: polling tests must not trip the limits). */
    private readonly retryReadsWhenLimited = true,
  ) {}

  /** A token for `sub`, signed like the gateway expects. */
  token(sub: string, roles: Role[] = ["customer"]): string {
    return issueToken({ sub, roles }, { secret: this.jwtSecret });
  }

  async request<T = unknown>(
    method: string,
    path: string,
    options: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers,
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      signal: AbortSignal.timeout(30_000),
    });
    // a polite client: a read refused by the rate limit is retried after Retry-After
    if (res.status === 429 && method === "GET" && this.retryReadsWhenLimited) {
      await res.arrayBuffer();
      const seconds = Number(res.headers.get("retry-after") ?? "1");
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, seconds) * 1000));
      return this.request<T>(method, path, options);
    }
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: (text === "" ? null : JSON.parse(text)) as T };
  }

  placeOrder(
    token: string,
    items: { sku: string; quantity: number }[],
    paymentMethod = "pm_card_visa",
    key: string = randomUUID(),
  ): Promise<ApiResponse<OrderBody & ErrorBody>> {
    return this.request("POST", "/api/v1/orders", {
      token,
      body: { items, paymentMethod },
      headers: { "idempotency-key": key },
    });
  }

  async order(token: string, id: string): Promise<OrderBody> {
    const res = await this.request<OrderBody>("GET", `/api/v1/orders/${id}`, { token });
    if (res.status !== 200) throw new Error(`GET order ${id}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }

  /** Poll until the order is in one of `statuses`; returns it. */
  async waitForOrder(token: string, id: string, statuses: string[], timeoutMs = 30_000): Promise<OrderBody> {
    const deadline = Date.now() + timeoutMs;
    let last: OrderBody | undefined;
    while (Date.now() < deadline) {
      last = await this.order(token, id);
      if (statuses.includes(last.status)) return last;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(
      `order ${id} still ${last?.status ?? "unknown"} after ${timeoutMs} ms, wanted ${statuses.join("|")}`,
    );
  }
}
