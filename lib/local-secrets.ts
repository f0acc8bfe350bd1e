/**
 * Secrets for a machine-local run (`npm start`, `npm run cluster`) when the environment gives
 * none: generated once, kept in DATA_DIR/secrets.json (mode 0600), so that tokens and the
 * provider simulator's webhook signatures stay valid across restarts. Production sets
 * JWT_SECRET and PSP_WEBHOOK_SECRET itself.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface LocalSecrets {
  jwtSecret: string;
  pspWebhookSecret: string;
}

const FILE = "secrets.json";

export function localSecrets(dataDir: string): LocalSecrets {
  const path = join(dataDir, FILE);
  if (existsSync(path)) {
    const stored = JSON.parse(readFileSync(path, "utf8")) as Partial<LocalSecrets>;
    if (typeof stored.jwtSecret === "string" && typeof stored.pspWebhookSecret === "string") {
      return { jwtSecret: stored.jwtSecret, pspWebhookSecret: stored.pspWebhookSecret };
    }
  }
  const secrets: LocalSecrets = {
    jwtSecret: randomBytes(32).toString("hex"),
    pspWebhookSecret: `whsec_${randomBytes(24).toString("hex")}`,
  };
  writeFileSync(path, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}
