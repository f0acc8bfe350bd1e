import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { HttpMetrics, instrumentServer } from "../../../../lib/metrics/http-metrics";

describe("http metrics", () => {
  it("counts by method, route template and status, and times by method and template", async () => {
    const registry = new Registry();
    const metrics = new HttpMetrics(registry, [0.1, 1]);
    metrics.observe({ method: "get", route: "/api/v1/orders/:id", status: 200, seconds: 0.05 });
    metrics.observe({ method: "GET", route: "/api/v1/orders/:id", status: 404, seconds: 0.5 });
    metrics.observe({ method: "GET", route: undefined, status: 404, seconds: 2 });

    const lines = (await registry.metrics()).split("\n");
    const orders = 'method="GET",route="/api/v1/orders/:id"';
    expect(lines).toEqual(
      expect.arrayContaining([
        `http_requests_total{${orders},status="200"} 1`,
        `http_requests_total{${orders},status="404"} 1`,
        'http_requests_total{method="GET",route="unmatched",status="404"} 1',
        `http_request_duration_seconds_bucket{le="0.1",${orders}} 1`,
        `http_request_duration_seconds_bucket{le="1",${orders}} 2`,
        `http_request_duration_seconds_bucket{le="+Inf",${orders}} 2`,
        `http_request_duration_seconds_count{${orders}} 2`,
        `http_request_duration_seconds_sum{${orders}} 0.55`,
        'http_request_duration_seconds_bucket{le="1",method="GET",route="unmatched"} 0',
        'http_request_duration_seconds_bucket{le="+Inf",method="GET",route="unmatched"} 1',
      ]),
    );
  });

  describe("on a server", () => {
    let server: Server;
    let base: string;
    let stop: () => void;
    let registry: Registry;

    beforeEach(async () => {
      server = createServer((req, res) => {
        res.statusCode = req.url?.startsWith("/items/") === true ? 200 : 404;
        res.end("ok");
      });
      registry = new Registry();
      stop = instrumentServer(server, new HttpMetrics(registry), (req) =>
        req.url?.startsWith("/items/") === true ? "/items/:id" : undefined,
      );
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    afterEach(async () => {
      await new Promise((resolve) => server.close(resolve));
    });

    const count = async (): Promise<string[]> =>
      (await registry.metrics()).split("\n").filter((l) => l.startsWith("http_requests_total{"));

    it("records each answered request under the template the router reports", async () => {
      for (const path of ["/items/1", "/items/2", "/elsewhere"]) await (await fetch(`${base}${path}`)).text();
      expect(await count()).toEqual([
        'http_requests_total{method="GET",route="/items/:id",status="200"} 2',
        'http_requests_total{method="GET",route="unmatched",status="404"} 1',
      ]);
    });

    it("counts a request whose route cannot be named as unmatched, and keeps serving", async () => {
      stop();
      registry = new Registry();
      stop = instrumentServer(server, new HttpMetrics(registry), () => {
        throw new Error("cannot decode %G1");
      });
      await (await fetch(`${base}/items/%G1`)).text();
      await (await fetch(`${base}/items/2`)).text();
      expect(await count()).toEqual(['http_requests_total{method="GET",route="unmatched",status="200"} 2']);
    });

    it("records nothing once stopped", async () => {
      stop();
      await (await fetch(`${base}/items/1`)).text();
      expect(await count()).toEqual([]);
    });
  });
});
