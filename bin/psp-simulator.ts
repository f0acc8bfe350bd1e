#!/usr/bin/env node
/**
 * The payment-provider simulator on its own, for deployments without a real provider (the
 * docker-compose topology). Environment: PORT (default 4000), DATA_DIR (default ./data),
 * PSP_WEBHOOK_SECRET (required), WEBHOOK_URL (where signed webhooks go, e.g. the gateway's
 * /api/v1/payments/webhook). `npm start` and `npm run cluster` start it by themselves.
 */
import { resolve } from "node:path";
import { startPspSimulator } from "../lib/psp/psp.simulator";

async function main(): Promise<void> {
  const port = Number(process.env.PORT ?? "4000");
  const secret = process.env.PSP_WEBHOOK_SECRET;
  if (!Number.isInteger(port) || port < 0 || port > 65535 || secret === undefined || secret.length < 16) {
    console.error(
      "psp-simulator: invalid configuration: PORT must be 0..65535 and PSP_WEBHOOK_SECRET ≥ 16 characters",
    );
    process.exit(78);
  }
  const simulator = await startPspSimulator({
    dataDir: resolve(process.env.DATA_DIR ?? "data"),
    port,
    host: process.env.HOST ?? "0.0.0.0",
    webhookSecret: secret,
    ...(process.env.WEBHOOK_URL === undefined ? {} : { webhookUrl: process.env.WEBHOOK_URL }),
    // one line per request is debug output: left out
    logger: { info: console.log, warn: console.warn, error: console.error },
  });
  console.log(
    `psp-simulator: listening at ${simulator.url}; webhooks to ${process.env.WEBHOOK_URL ?? "(none)"}`,
  );
  const stop = (): void => {
    simulator.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err: unknown) => {
  console.error("psp-simulator:", err instanceof Error ? err.message : err);
  process.exit(1);
});
