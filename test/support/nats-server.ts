/**
 * A JetStream `nats-server` per suite, on a free port with a temp store dir:
 * `nats.describe("…", () => { let server: NatsServerHandle; beforeAll(async () => { server = await startNatsServer(); }); … })`.
 */
import {
  startNatsProcess,
  type NatsProcess,
  type NatsProcessOptions,
} from "../../lib/local-servers/nats-process";
import { requireBinary, type Requirement } from "./infra";

/** `nats.describe` runs a suite only where `nats-server` is installed (fails under CI=true otherwise). */
export const nats: Requirement = requireBinary("nats-server", "apt-get install nats-server");

/** `{ url, port, storeDir, stop(), kill() (SIGKILL), restart() (same port, same store dir) }`. */
export type NatsServerHandle = NatsProcess;

/** Spawn `nats-server -a 127.0.0.1 -p <free port> -js -sd <temp dir>` and wait until JetStream is ready. */
export async function startNatsServer(
  options: Omit<NatsProcessOptions, "binary"> = {},
): Promise<NatsServerHandle> {
  if (nats.path === null)
    throw new Error("nats-server not found on PATH (install: apt-get install nats-server)");
  return startNatsProcess({ ...options, binary: nats.path });
}
