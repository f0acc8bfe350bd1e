/**
 * The check every notification adapter makes before it delivers anything, so that all of them
 * refuse the same messages the same way: a message without an id, a known channel, a recipient or
 * a body can never be delivered, and sending it again cannot help (`NOTIFY_REJECTED`).
 */
import { NOTIFICATION_CHANNELS } from "../../models/notification";
import { NotifyRejectedError, type OutboundMessage } from "./notify.port";

/** Throws `NotifyRejectedError` naming what is wrong with `message`. */
export function checkMessage(message: OutboundMessage): void {
  const problem = problemOf(message);
  if (problem !== undefined) {
    throw new NotifyRejectedError(`message ${String(message.id)} cannot be delivered: ${problem}`, {
      id: message.id,
    });
  }
}

function problemOf(message: OutboundMessage): string | undefined {
  if (!isText(message.id)) return "no id";
  if (!(NOTIFICATION_CHANNELS as readonly unknown[]).includes(message.channel)) {
    return `unknown channel ${JSON.stringify(message.channel)}`;
  }
  if (!isText(message.to)) return "no recipient";
  if (!isText(message.body)) return "no body";
  if (message.subject !== undefined && typeof message.subject !== "string")
    return "a subject that is not text";
  return undefined;
}

function isText(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}
