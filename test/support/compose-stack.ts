/**
 * The production compose file, as the container smoke test runs it: resolved by compose itself
 * (`config`), then, on a machine without a MongoDB image, with `mongo` and MONGO_URL removed so
 * every service keeps its embedded store on its own volume. Nothing else is changed.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import type { DockerEngine } from "./docker-engine";

export const REPO_ROOT = join(__dirname, "..", "..");

/** The ordermesh containers of the compose file (one image, run as 1000:1000). */
export const APP_SERVICES = ["psp", "gateway", "orders", "inventory", "payments", "notifications"] as const;

interface ComposeService {
  environment?: Record<string, string | null>;
  depends_on?: Record<string, unknown> | string[];
  [key: string]: unknown;
}

interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  [key: string]: unknown;
}

/**
 * Resolves docker-compose.yml with `env` and writes the file the test runs to `dir`; with
 * `withoutMongo`, the `mongo` service, its volume, MONGO_URL and every dependency on it are dropped.
 */
export async function resolvedComposeFile(
  engine: DockerEngine,
  dir: string,
  withoutMongo: boolean,
): Promise<{ path: string; file: ComposeFile }> {
  const { stdout } = await engine.composeRun(["-f", join(REPO_ROOT, "docker-compose.yml"), "config"]);
  // compose v1 writes YAML 1.1 (`yes` is a boolean there); JSON, a subset of YAML, reads back the same
  // in every compose version
  const file = parse(stdout, { version: "1.1" }) as ComposeFile;
  if (withoutMongo) dropMongo(file);
  const path = join(dir, "docker-compose.resolved.json");
  writeFileSync(path, JSON.stringify(file, null, 2));
  return { path, file };
}

/** Removes MongoDB from a resolved compose file (in place). */
export function dropMongo(file: ComposeFile): void {
  delete file.services.mongo;
  if (file.volumes !== undefined) delete file.volumes["mongo-data"];
  for (const service of Object.values(file.services)) {
    if (service.environment !== undefined) delete service.environment.MONGO_URL;
    if (Array.isArray(service.depends_on))
      service.depends_on = service.depends_on.filter((d) => d !== "mongo");
    else if (service.depends_on !== undefined) delete service.depends_on.mongo;
  }
}
