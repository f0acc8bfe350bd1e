/** Picks the notification provider from configuration: HTTP when NOTIFY_URL is set, else the file. */
import { dateOf, type Clock } from "../clock";
import type { Config } from "../config";
import { FileNotificationProvider } from "./file.adapter";
import { HttpNotificationProvider } from "./http.adapter";
import type { NotificationProvider } from "./notify.port";

export interface NotificationProviderOptions {
  /** Timeout of one HTTP send in ms (http adapter only; default 5 000). */
  timeoutMs?: number;
  /** Time of the file adapter's `at` field (default: the system clock). */
  clock?: Clock;
}

/** `NOTIFY_URL` set → `HttpNotificationProvider`; unset → `FileNotificationProvider` in DATA_DIR. */
export function createNotificationProvider(
  config: Pick<Config, "notifyUrl" | "dataDir">,
  options: NotificationProviderOptions = {},
): NotificationProvider {
  if (config.notifyUrl !== undefined) {
    return new HttpNotificationProvider({
      url: config.notifyUrl,
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    });
  }
  const { clock } = options;
  return new FileNotificationProvider({
    dataDir: config.dataDir,
    ...(clock === undefined ? {} : { now: () => dateOf(clock) }),
  });
}
