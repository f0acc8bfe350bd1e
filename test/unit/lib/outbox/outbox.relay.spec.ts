import type { EventBus } from "../../../../lib/bus/bus.port";
import { OUTBOX_RELAY_DEFAULTS, OutboxRelay } from "../../../../lib/outbox/outbox.relay";
import type { DocumentStore } from "../../../../lib/store/store.port";

describe("OutboxRelay options", () => {
  // construction touches neither port
  const ports = { store: {} as DocumentStore, bus: {} as EventBus };

  it("refuses an empty owner and out-of-range tuning", () => {
    expect(() => new OutboxRelay({ ...ports, owner: "" })).toThrow(RangeError);
    for (const bad of [
      { batchSize: 0 },
      { publishConcurrency: 1.5 },
      { leaseMs: -1 },
      { maxAttempts: 0 },
      { backoffBaseMs: -5 },
    ]) {
      expect(() => new OutboxRelay({ ...ports, owner: "r", ...bad })).toThrow(RangeError);
    }
  });

  it("documents its defaults", () => {
    expect(OUTBOX_RELAY_DEFAULTS).toEqual({
      batchSize: 100,
      pollIntervalMs: 1_000,
      leaseMs: 30_000,
      maxAttempts: 10,
      backoffBaseMs: 500,
      backoffMaxMs: 60_000,
      retentionMs: 7 * 24 * 60 * 60 * 1000,
      publishConcurrency: 64,
      stopTimeoutMs: 10_000,
    });
  });
});
