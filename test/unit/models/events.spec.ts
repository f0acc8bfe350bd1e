import { envelopeIssues, EVENT_TYPES, isEventEnvelope, subjectOf } from "../../../models/events";
import { uuidv7 } from "../../../models/ids";

const money = (minor: number) => ({ minor, currency: "USD" });

function anOrderCreated(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: uuidv7(),
    type: "order.created",
    version: 1,
    occurredAt: "2026-11-20T10:00:00.000Z",
    aggregateType: "order",
    aggregateId: "o-1",
    payload: {
      orderId: "o-1",
      customerId: "c-1",
      items: [{ sku: "SKU-1", quantity: 2, unitPrice: money(999) }],
      total: money(1998),
      paymentMethod: "pm_card_visa",
      paymentDueAt: "2026-11-20T10:15:00.000Z",
    },
    ...overrides,
  };
}

describe("event catalog", () => {
  it("has the six v1 event types on events.<type> subjects", () => {
    expect(EVENT_TYPES.sort()).toEqual(
      [
        "order.cancelled",
        "order.created",
        "order.paid",
        "payment.captured",
        "payment.failed",
        "payment.refunded",
      ].sort(),
    );
    expect(subjectOf("order.paid")).toBe("events.order.paid");
  });

  it("accepts a valid envelope", () => {
    expect(envelopeIssues(anOrderCreated())).toEqual([]);
    expect(
      isEventEnvelope(
        anOrderCreated({ traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }),
      ),
    ).toBe(true);
  });

  it.each([
    ["an unknown type", { type: "order.shipped" }, "type"],
    ["an unknown version", { version: 2 }, "version"],
    ["a bad timestamp", { occurredAt: "yesterday" }, "occurredAt"],
    ["a malformed traceparent", { traceparent: "abc" }, "traceparent"],
    ["an extra field", { extra: true }, "extra"],
    ["no id", { id: undefined }, "id"],
  ])("refuses %s", (_label, overrides, path) => {
    expect(envelopeIssues(anOrderCreated(overrides)).map((i) => i.path)).toContain(path);
  });

  it("checks the payload against the schema of its type and version", () => {
    const bad = anOrderCreated();
    (bad.payload as Record<string, unknown>).total = { minor: 1.5, currency: "usd" };
    const paths = envelopeIssues(bad).map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(["payload.total.minor", "payload.total.currency"]));
  });

  it("refuses a payload of another type", () => {
    const paid = anOrderCreated({ type: "order.paid" });
    expect(envelopeIssues(paid).length).toBeGreaterThan(0);
  });
});

describe("uuidv7", () => {
  it("is a version-7 UUID whose string order follows creation order", () => {
    const ids = Array.from({ length: 5000 }, () => uuidv7());
    for (const id of ids)
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("encodes the millisecond timestamp in its first 48 bits", () => {
    const at = Date.UTC(2030, 0, 1);
    const id = uuidv7(at);
    expect(parseInt(id.replace(/-/g, "").slice(0, 12), 16)).toBeGreaterThanOrEqual(at);
  });
});
