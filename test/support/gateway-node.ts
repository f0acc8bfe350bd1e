/**
 * One ordermesh node as the HTTP suites need it: every service on one broker built from
 * moleculer.config (embedded stores, in-process bus) in a temp dir of its own, the gateway on a real
 * port, and — unless a suite says otherwise — the payment-provider simulator posting its webhooks to
 * that gateway. Each suite keeps its own secrets and settings; the way they are put together is
 * written once, here.
 */
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker, type BrokerOptions } from "moleculer";
import { loadConfig, type Config } from "../../lib/config";
import { startPspSimulator, type PspSimulator, type PspSimulatorOptions } from "../../lib/psp/psp.simulator";
import { createBrokerOptions } from "../../moleculer.config";
import { SERVICE_SCHEMAS } from "../../services";
import { Api } from "./api";
import { freePort } from "./ports";

/** Where payments is pointed when no simulator runs: nothing listens there, so nothing is charged. */
const NO_PROVIDER = "http://127.0.0.1:9";

/** Options of the simulator beyond what the node decides itself (its dir, webhook URL and secret). */
export type SimulatorOptions = Omit<PspSimulatorOptions, "dataDir" | "webhookUrl" | "webhookSecret">;

/** A simulator with these options (`undefined`: the defaults), or none at all (`false`). */
export type SimulatorChoice = SimulatorOptions | false | undefined;

/** What a node holds as its simulator: none when the suite asked for none. */
export type SimulatorOf<Choice extends SimulatorChoice> = Choice extends false ? undefined : PspSimulator;

export interface GatewayNodeOptions<Choice extends SimulatorChoice = SimulatorChoice> {
  /** Names the node's temp dir (`ordermesh-<name>-…`), so that a suite's leftovers are told apart. */
  name?: string;
  /** JWT_SECRET; `api` signs its tokens with it. */
  jwtSecret?: string;
  /** PSP_WEBHOOK_SECRET; the simulator signs its webhooks with it. */
  webhookSecret?: string;
  /** AUTH_DEV_TOKENS; the configuration's default when absent. */
  devTokens?: boolean;
  /** More settings as environment variables (limits, CORS, …); they win over the ones above. */
  env?: Record<string, string>;
  /** The payment-provider simulator's options, or `false` for none: payments then reaches no provider. */
  simulator?: Choice;
  /** Broker options over the configured ones (a transporter that lets other nodes in, say). */
  broker?: Partial<BrokerOptions>;
  /** Whether `api` waits and retries a GET answered 429 (default true). */
  retryReadsWhenLimited?: boolean;
}

/** A node whose broker is built but not started: for a suite that watches the start itself. */
export interface PreparedGatewayNode<Sim extends PspSimulator | undefined = PspSimulator> {
  broker: ServiceBroker;
  /** The simulator, when the node runs one. */
  sim: Sim;
  /** The node's own temp dir: DATA_DIR, the simulator's state, and room for the suite's own files. */
  dir: string;
  config: Config;
  /** Stops the broker and the simulator, then removes `dir`. */
  stop(): Promise<void>;
}

/** A started node, its gateway listening. */
export interface GatewayNode<
  Sim extends PspSimulator | undefined = PspSimulator,
> extends PreparedGatewayNode<Sim> {
  /** The gateway's HTTP server. */
  server: Server;
  port: number;
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** A client of the HTTP API whose tokens the gateway accepts. */
  api: Api;
}

const DEFAULT_JWT_SECRET = "gateway-node-jwt-secret-0123456789";
const DEFAULT_WEBHOOK_SECRET = "whsec_gateway_node_0123456789";

/**
 * Build a node: its temp dir, the simulator (on its own free port, posting to the gateway's port
 * chosen up front), the configuration, and a broker with every service of SERVICE_SCHEMAS. Nothing
 * is left running when this fails.
 */
export async function prepareGatewayNode<Choice extends SimulatorChoice = undefined>(
  options: GatewayNodeOptions<Choice> = {},
): Promise<PreparedGatewayNode<SimulatorOf<Choice>>> {
  const dir = mkdtempSync(join(tmpdir(), `ordermesh-${options.name ?? "gateway-node"}-`));
  const webhookSecret = options.webhookSecret ?? DEFAULT_WEBHOOK_SECRET;
  let sim: PspSimulator | undefined;
  let broker: ServiceBroker | undefined;
  const stop = async (): Promise<void> => {
    await broker?.stop();
    await sim?.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const simulator: SimulatorChoice = options.simulator;
    // the simulator needs the webhook's address before the gateway listens: pick its port first
    const port = simulator === false ? 0 : await freePort();
    if (simulator !== false) {
      sim = await startPspSimulator({
        port: 0,
        ...simulator,
        dataDir: dir,
        webhookUrl: `http://127.0.0.1:${port}/api/v1/payments/webhook`,
        webhookSecret,
      });
    }
    const config = loadConfig(
      {
        PORT: String(port),
        DATA_DIR: dir,
        LOG_LEVEL: "fatal",
        JWT_SECRET: options.jwtSecret ?? DEFAULT_JWT_SECRET,
        ...(options.devTokens === undefined ? {} : { AUTH_DEV_TOKENS: String(options.devTokens) }),
        PSP_URL: sim?.url ?? NO_PROVIDER,
        PSP_WEBHOOK_SECRET: webhookSecret,
        ...options.env,
      },
      // the suites' secrets are fixed and meant to be read ("gateway-api-secret-…"): length only
      { secretHygiene: false },
    );
    broker = new ServiceBroker({ ...createBrokerOptions(config, options.broker), logger: false });
    for (const schema of Object.values(SERVICE_SCHEMAS)) broker.createService(schema);
    // `sim` is set exactly when the choice was not `false`, which is what SimulatorOf says
    return { broker, sim: sim as SimulatorOf<Choice>, dir, config, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Build a node and start it: resolves once every service has started and the gateway listens. */
export async function startGatewayNode<Choice extends SimulatorChoice = undefined>(
  options: GatewayNodeOptions<Choice> = {},
): Promise<GatewayNode<SimulatorOf<Choice>>> {
  const node = await prepareGatewayNode(options);
  try {
    await node.broker.start();
    const server = gatewayServer(node.broker);
    const { port } = server.address() as AddressInfo;
    const url = `http://127.0.0.1:${port}`;
    const jwtSecret = node.config.jwtSecret;
    if (jwtSecret === undefined)
      throw new Error("a gateway node signs its tokens with JWT_SECRET: none is set");
    const api = new Api(url, jwtSecret, options.retryReadsWhenLimited ?? true);
    return { ...node, server, port, url, api };
  } catch (err) {
    await node.stop();
    throw err;
  }
}

/** The HTTP server of the broker's local gateway service. */
export function gatewayServer(broker: ServiceBroker): Server {
  const gateway = broker.getLocalService("gateway") as { server?: Server } | undefined;
  if (gateway?.server === undefined) throw new Error("no local gateway service with an HTTP server");
  return gateway.server;
}
