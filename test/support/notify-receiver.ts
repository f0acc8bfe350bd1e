/**
 * A notification provider on HTTP for tests: answers `POST /v1/messages` as its `mode` says, and
 * deduplicates accepted messages by Idempotency-Key, as a provider honouring the key does.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type Mode = "ok" | "fail" | "reject" | "hang" | "rate-limited" | "no-id";

export interface Received {
  key: string | undefined;
  body: { channel?: string; to?: string; subject?: string; body?: string };
}

/** Answers `POST /v1/messages` as `mode` says; deduplicates accepted messages by Idempotency-Key. */
export class FakeProvider {
  mode: Mode = "ok";
  /** Every request, in arrival order. */
  readonly received: Received[] = [];
  /** Accepted messages by key: the id given and how many times the key was accepted. */
  readonly accepted = new Map<string, { id: string; times: number; body: Received["body"] }>();
  url = "";
  private readonly server: Server;
  private readonly hanging: ServerResponse[] = [];
  private next = 0;

  constructor() {
    this.server = createServer((req, res) => void this.answer(req, res));
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const res of this.hanging.splice(0)) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Requests that carried `key`. */
  requestsFor(key: string): number {
    return this.received.filter((r) => r.key === key).length;
  }

  private async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const header = req.headers["idempotency-key"];
    const key = typeof header === "string" ? header : undefined;
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Received["body"];
    this.received.push({ key, body });
    const reply = (status: number, json: unknown): void => {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(json));
    };
    if (req.method !== "POST" || req.url !== "/v1/messages") return reply(404, { error: "not found" });
    switch (this.mode) {
      case "fail":
        return reply(500, { error: "provider down (test)" });
      case "reject":
        return reply(400, { error: "invalid recipient (test)" });
      case "rate-limited":
        return reply(429, { error: "slow down (test)" });
      case "no-id":
        return reply(200, { ok: true });
      case "hang":
        this.hanging.push(res);
        return;
      case "ok": {
        if (key === undefined) return reply(400, { error: "Idempotency-Key required" });
        const known = this.accepted.get(key);
        if (known !== undefined) {
          known.times += 1;
          return reply(200, { id: known.id });
        }
        const id = `msg_${++this.next}`;
        this.accepted.set(key, { id, times: 1, body });
        return reply(201, { id });
      }
    }
  }
}
