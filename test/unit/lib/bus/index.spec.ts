import { createEventBus, JetStreamEventBus } from "../../../../lib/bus";
import { loadConfig } from "../../../../lib/config";
import { eventBusConfig } from "../../../../lib/infrastructure";

describe("createEventBus", () => {
  it("passes JETSTREAM_REPLICAS from the configuration to the JetStream bus, without connecting yet", () => {
    for (const replicas of ["1", "3"]) {
      const config = loadConfig({ NATS_URL: "nats://127.0.0.1:1", JETSTREAM_REPLICAS: replicas });
      expect(eventBusConfig(config)).toEqual({ natsUrl: "nats://127.0.0.1:1", replicas: Number(replicas) });
      const bus = createEventBus(eventBusConfig(config));
      expect(bus).toBeInstanceOf(JetStreamEventBus);
      expect((bus as JetStreamEventBus).replicas).toBe(Number(replicas));
    }
  });

  it("creates the stream with one replica unless told otherwise", () => {
    expect(new JetStreamEventBus({ servers: "nats://127.0.0.1:1" }).replicas).toBe(1);
    expect(eventBusConfig(loadConfig({ NATS_URL: "nats://n:4222" })).replicas).toBe(1);
  });

  it("uses the in-process bus without NATS, whatever JETSTREAM_REPLICAS says", async () => {
    const bus = createEventBus(eventBusConfig(loadConfig({ JETSTREAM_REPLICAS: "3" })));
    expect(bus.kind).toBe("inprocess");
    await bus.close();
  });
});
