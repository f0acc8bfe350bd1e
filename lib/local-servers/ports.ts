/** Free TCP ports for servers started by tests, benchmarks and the cluster launcher. */
import { createServer } from "node:net";

/**
 * A TCP port that is free on `host` right now: bind a server on port 0, read the port the
 * kernel chose, close it. Another process may take it before the caller binds it, so a
 * caller that spawns a server retries with a new port when the bind fails.
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error(`could not read the port bound on ${host}`));
        return;
      }
      const { port } = address;
      server.close((err) => (err === undefined ? resolve(port) : reject(err)));
    });
  });
}
