#!/usr/bin/env node
/**
 * The payment-provider simulator on its own, for deployments without a real provider (the
 * docker-compose topology). Environment: PORT (default 4000), HOST (default 0.0.0.0), DATA_DIR
 * (default ./data, must be writable), PSP_WEBHOOK_SECRET (required; placeholders and low-entropy
 * values are refused as ordermesh refuses them), WEBHOOK_URL (where signed webhooks go, e.g. the
 * gateway's /api/v1/payments/webhook). An invalid value exits 78 naming the variable. `npm start`
 * and `npm run cluster` start the simulator by themselves.
 */
import { loadPspSimulatorConfig, usableDataDir, type PspSimulatorConfig } from "../lib/config";
import { ConfigError, failureText } from "../lib/errors";
import { startPspSimulator } from "../lib/psp/psp.simulator";

async function main(): Promise<void> {
  const config = configOrExit();
  let simulator: Awaited<ReturnType<typeof startPspSimulator>>;
  try {
    simulator = await startPspSimulator({
      dataDir: config.dataDir,
      port: config.port,
      host: config.host,
      webhookSecret: config.webhookSecret,
      ...(config.webhookUrl === undefined ? {} : { webhookUrl: config.webhookUrl }),
      // one line per request is debug output: left out
      logger: { info: console.log, warn: console.warn, error: console.error },
    });
  } catch (err) {
    console.error(`psp-simulator: start failed: ${failureText(err)}`);
    process.exit(1);
  }
  console.log(`psp-simulator: listening at ${simulator.url}; webhooks to ${config.webhookUrl ?? "(none)"}`);
  const stop = (): void => {
    simulator.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`psp-simulator: stop failed: ${failureText(err)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

/** The configuration, or exit 78 with a message naming the variable. */
function configOrExit(): PspSimulatorConfig {
  try {
    const config = loadPspSimulatorConfig(process.env);
    usableDataDir(config.dataDir);
    return config;
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`psp-simulator: invalid configuration: ${err.message}`);
      process.exit(78);
    }
    throw err;
  }
}

/** An error's stack (which starts with its message), so that a log says why. */
main().catch((err: unknown) => {
  console.error(`psp-simulator: ${failureText(err)}`);
  process.exit(1);
});
