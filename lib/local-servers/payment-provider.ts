/**
 * The payment-provider simulator for a run on this machine (`npm start`, `npm run cluster`) when
 * PSP_URL is unset: started in the launching process, its state durable under DATA_DIR/psp, its
 * webhooks posted to the gateway. It listens on PORT + 1 when that port is free (so the docs can
 * say where its fault injection is), else on any free port; the address is logged.
 */
import type { Config } from "../config";
import { startPspSimulator, type PspSimulator } from "../psp/psp.simulator";

/** Start the simulator when this run needs one; fills in `config.pspUrl`. */
export async function startLocalPaymentProvider(
  config: Config,
  log: (line: string) => void,
): Promise<PspSimulator | undefined> {
  if (config.pspUrl !== undefined || !config.services.includes("payments")) return undefined;
  const secret = config.pspWebhookSecret;
  if (secret === undefined) return undefined;
  const webhookUrl = `http://127.0.0.1:${config.port}/api/v1/payments/webhook`;
  const start = (port: number): Promise<PspSimulator> =>
    startPspSimulator({ dataDir: config.dataDir, port, webhookUrl, webhookSecret: secret });
  let simulator: PspSimulator;
  try {
    simulator = await start(config.port > 0 && config.port < 65535 ? config.port + 1 : 0);
  } catch {
    simulator = await start(0);
  }
  config.pspUrl = simulator.url;
  log(
    `payment provider simulator at ${simulator.url} (state in ${config.dataDir}/psp; faults: PUT ${simulator.url}/_sim/faults)`,
  );
  return simulator;
}
