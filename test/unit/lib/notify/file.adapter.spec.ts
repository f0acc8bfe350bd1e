import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileNotificationProvider, MESSAGES_FILE } from "../../../../lib/notify/file.adapter";

describe("file notification provider", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "ordermesh-file-provider-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const message = (id: string) => ({
    id,
    channel: "email" as const,
    to: "customer:alice",
    subject: "s",
    body: "b",
  });
  const ids = (): string[] =>
    readFileSync(join(dir, MESSAGES_FILE), "utf8")
      .trim()
      .split("\n")
      .map((line) => (JSON.parse(line) as { id: string }).id);

  it("writes a message re-sent after a restart only once, answering with the first receipt", async () => {
    const first = new FileNotificationProvider({ dataDir: dir });
    const receipt = await first.send(message("n-1"));
    await first.send(message("n-2"));
    await first.close();

    // a crash between the write and the `sent` mark: the sender sends n-1 again after restart
    const second = new FileNotificationProvider({ dataDir: dir });
    expect(await second.send(message("n-1"))).toEqual(receipt);
    await second.send(message("n-3"));
    await second.close();
    expect(ids()).toEqual(["n-1", "n-2", "n-3"]);
  });
});
