/**
 * File notification provider (the default when NOTIFY_URL is unset): appends each message as one
 * JSON line to `<DATA_DIR>/messages.jsonl` and fsyncs it before reporting it sent, so that
 * `tail -f data/messages.jsonl` shows what customers would receive.
 *
 * Line: `{ "id", "providerMessageId", "channel", "to", "subject"?, "body", "at" }`. `id` is the
 * notification id, the idempotency key: like a real provider, the file remembers every id it holds
 * (read back when it is first used), so a message re-sent after a crash between the write and the
 * `sent` mark is answered with its first receipt and never written twice.
 */
import { mkdir, open, readFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { AdapterClosedError } from "../errors";
import { checkMessage } from "./notify.message";
import {
  NotifyUnavailableError,
  type NotificationProvider,
  type OutboundMessage,
  type SendReceipt,
} from "./notify.port";

/** File name of the message log inside the data directory. */
export const MESSAGES_FILE = "messages.jsonl";

export interface FileNotificationProviderOptions {
  /** Directory of the log (created when missing). */
  dataDir: string;
  /** Clock (tests). */
  now?: () => Date;
}

export class FileNotificationProvider implements NotificationProvider {
  readonly kind = "file" as const;
  /** Absolute path of the log. */
  readonly path: string;
  private readonly dataDir: string;
  private readonly now: () => Date;
  private handle: Promise<FileHandle> | undefined;
  /** Receipts of the ids written (or being written) by this process. */
  private readonly written = new Map<string, Promise<SendReceipt>>();
  /** Appends run one after another, so lines never interleave. */
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(options: FileNotificationProviderOptions) {
    this.dataDir = options.dataDir;
    this.path = join(options.dataDir, MESSAGES_FILE);
    this.now = options.now ?? (() => new Date());
  }

  private loaded: Promise<void> | undefined;

  async send(message: OutboundMessage): Promise<SendReceipt> {
    if (this.closed) throw new AdapterClosedError("file notification provider");
    checkMessage(message);
    await this.loadWritten();
    const known = this.written.get(message.id);
    if (known !== undefined) return known;
    const receipt = this.append(message);
    this.written.set(message.id, receipt);
    // a failed write is forgotten, so that a retry writes it
    receipt.catch(() => this.written.delete(message.id));
    return receipt;
  }

  /** Remember the ids already in the file (once; a failed read is tried again by the next send). */
  private loadWritten(): Promise<void> {
    this.loaded ??= readFile(this.path, "utf8").then(
      (text) => {
        for (const line of text.split("\n")) {
          if (line.trim() === "") continue;
          try {
            const { id, providerMessageId } = JSON.parse(line) as {
              id?: unknown;
              providerMessageId?: unknown;
            };
            if (typeof id === "string" && typeof providerMessageId === "string")
              this.written.set(id, Promise.resolve({ providerMessageId }));
          } catch {
            // a torn last line (crash mid-write) holds no complete message
          }
        }
      },
      (err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return;
        this.loaded = undefined;
        throw new NotifyUnavailableError(
          `could not read ${this.path}: ${err.message}`,
          { path: this.path },
          err,
        );
      },
    );
    return this.loaded;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail.catch(() => undefined);
    const handle = await this.handle?.catch(() => undefined);
    this.handle = undefined;
    await handle?.close();
  }

  private append(message: OutboundMessage): Promise<SendReceipt> {
    const providerMessageId = `file:${message.id}`;
    const line = `${JSON.stringify({
      id: message.id,
      providerMessageId,
      channel: message.channel,
      to: message.to,
      ...(message.subject === undefined ? {} : { subject: message.subject }),
      body: message.body,
      at: this.now().toISOString(),
    })}\n`;
    const write = this.tail.then(async () => {
      try {
        const file = await this.file();
        await file.appendFile(line, "utf8");
        await file.sync();
      } catch (err) {
        throw new NotifyUnavailableError(
          `could not write ${this.path}: ${err instanceof Error ? err.message : String(err)}`,
          { path: this.path },
          err,
        );
      }
      return { providerMessageId };
    });
    this.tail = write.catch(() => undefined);
    return write;
  }

  private file(): Promise<FileHandle> {
    if (this.handle === undefined) {
      const opening = mkdir(this.dataDir, { recursive: true }).then(() => open(this.path, "a"));
      // an open that failed is tried again by the next write
      opening.catch(() => {
        if (this.handle === opening) this.handle = undefined;
      });
      this.handle = opening;
    }
    return this.handle;
  }
}
