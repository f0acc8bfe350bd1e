import { createKeyValueStore } from "../../../lib/kv";

describe("createKeyValueStore", () => {
  it("chooses memory without a Redis URL, or with an empty one", () => {
    expect(createKeyValueStore({}).kind).toBe("memory");
    expect(createKeyValueStore({ redisUrl: "" }).kind).toBe("memory");
  });

  it("chooses Redis for a redis:// or rediss:// URL, without connecting yet", () => {
    expect(createKeyValueStore({ redisUrl: "redis://127.0.0.1:1" }).kind).toBe("redis");
    expect(createKeyValueStore({ redisUrl: "rediss://user:secret@cache.internal:6380/2" }).kind).toBe(
      "redis",
    );
  });

  it("fails fast on a URL it cannot use, naming REDIS_URL", () => {
    for (const redisUrl of ["localhost:6379:x", "http://cache:6379", "not a url"]) {
      expect(() => createKeyValueStore({ redisUrl })).toThrow(
        expect.objectContaining({ code: "INVALID_CONFIG", variable: "REDIS_URL" }),
      );
    }
  });
});
