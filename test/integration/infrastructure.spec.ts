import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../lib/config";
import { Infrastructure } from "../../lib/infrastructure";
import { freePort } from "../support/ports";

describe("infrastructure", () => {
  it("fails the caller when a dependency is down at start, and closes cleanly afterwards", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ordermesh-infra-"));
    const port = await freePort(); // nothing listens there
    const errors: unknown[][] = [];
    const logger = {
      info: () => undefined,
      warn: () => undefined,
      error: (...args: unknown[]) => errors.push(args),
    };
    const infra = new Infrastructure(
      loadConfig({ DATA_DIR: dir, REDIS_URL: `redis://127.0.0.1:${port}` }),
      logger,
    );
    try {
      await expect(infra.kv()).rejects.toMatchObject({ code: "UNAVAILABLE" });
      // the same failure is reported to every caller, without a second connection attempt piling up
      await expect(infra.kv()).rejects.toMatchObject({ code: "UNAVAILABLE" });
      const store = await infra.store("orders");
      await store.ping();
      await infra.close();
      expect(errors).toEqual([]);
      await expect(store.ping()).rejects.toBeDefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
