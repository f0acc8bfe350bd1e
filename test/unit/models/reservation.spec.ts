import fc from "fast-check";
import {
  applyMove,
  stockInvariantHolds,
  type PricedStock,
  type ReservationLine,
  type ReservationStatus,
} from "../../../models/inventory";
import { money } from "../../../models/money";
import {
  Reservation,
  type ReservationDecision,
  type ReservationEventType,
  type StockChange,
} from "../../../models/reservation";
import { T0, aProduct, aRequest, aReservation, after, productsOf } from "../../builders/reservation.builder";

const HOLD = 15 * 60_000;
const line = (sku: string, quantity: number, minor = 1000): ReservationLine => ({
  sku,
  quantity,
  unitPrice: money(minor, "USD"),
});
const moves = (decision: ReservationDecision): StockChange[] => [...decision.moves];

describe("reservation aggregate", () => {
  describe("reserve", () => {
    it("holds every line at the product's current price until now + TTL, and asks to reserve each", () => {
      const products = productsOf({ A: aProduct(5, money(1299, "USD")), B: aProduct(1, money(500, "USD")) });

      const { reservation, decision } = Reservation.hold({
        orderId: "ord-1",
        items: [aRequest("A", 5), aRequest("B", 1)],
        products,
        now: T0,
        holdTtlMs: HOLD,
      });

      expect(reservation.toState()).toEqual({
        orderId: "ord-1",
        lines: [
          { sku: "A", quantity: 5, unitPrice: { minor: 1299, currency: "USD" } },
          { sku: "B", quantity: 1, unitPrice: { minor: 500, currency: "USD" } },
        ],
        status: "held",
        holdUntil: after(HOLD),
        createdAt: T0,
        updatedAt: T0,
        version: 0,
      });
      expect(decision).toEqual({
        outcome: "held",
        changed: true,
        moves: [
          { sku: "A", move: "reserve", quantity: 5 },
          { sku: "B", move: "reserve", quantity: 1 },
        ],
        events: [],
      });
    });

    it("refuses unknown SKUs first, then lists every short line, holding nothing", () => {
      const products = productsOf({ A: 5, B: 1, C: 0 });
      const hold = (items: { sku: string; quantity: number }[]) => () =>
        Reservation.hold({ orderId: "ord-1", items, products, now: T0, holdTtlMs: HOLD });

      expect(hold([aRequest("A", 1), aRequest("X", 1), aRequest("B", 9), aRequest("Y", 1)])).toThrow(
        expect.objectContaining({ code: "UNKNOWN_SKU", details: { skus: ["X", "Y"] } }),
      );
      expect(hold([aRequest("A", 5), aRequest("B", 2), aRequest("C", 1)])).toThrow(
        expect.objectContaining({
          code: "OUT_OF_STOCK",
          message: "not enough stock for B, C",
          details: {
            items: [
              { sku: "B", requested: 2, available: 1 },
              { sku: "C", requested: 1, available: 0 },
            ],
          },
        }),
      );
      expect(hold([aRequest("A", 1), aRequest("A", 1)])).toThrow(
        expect.objectContaining({ code: "INVALID_RESERVATION" }),
      );
      // the input is never changed
      expect(products.get("A")).toEqual(aProduct(5));
    });

    it("answers a repeated request for the same items, in any order, and refuses other items or a released one", () => {
      const held = aReservation().withItems(aRequest("A", 2), aRequest("B", 1)).build();
      expect(() => held.confirmRepeat([aRequest("B", 1), aRequest("A", 2)])).not.toThrow();
      expect(() => held.confirmRepeat([aRequest("A", 3)])).toThrow(
        expect.objectContaining({
          code: "RESERVATION_MISMATCH",
          details: {
            orderId: "ord-1",
            reserved: [
              { sku: "A", quantity: 2 },
              { sku: "B", quantity: 1 },
            ],
          },
        }),
      );

      const expired = aReservation().withItems(aRequest("A", 2)).expired().build();
      expect(() => expired.confirmRepeat([aRequest("A", 2)])).toThrow(
        expect.objectContaining({
          code: "RESERVATION_RELEASED",
          details: { orderId: "ord-1", reason: "expired" },
        }),
      );
    });
  });

  describe("on order.created", () => {
    it("binds a held reservation, which then no longer expires; no stock moves", () => {
      const reservation = aReservation().build();

      const decision = reservation.onOrderCreated({
        customerId: "cus-9",
        products: new Map(),
        now: after(10),
      });

      expect(decision).toEqual({ outcome: "bound", changed: true, moves: [], events: [] });
      expect(reservation.toState()).toMatchObject({
        status: "bound",
        customerId: "cus-9",
        boundAt: after(10),
        updatedAt: after(10),
      });
      expect(reservation.isHoldExpired(after(HOLD + 1000))).toBe(false);
    });

    it.each<[string, () => Reservation]>([
      ["bound", () => aReservation().bound().build()],
      ["committed", () => aReservation().bound().committed().build()],
    ])("changes nothing on a %s reservation", (_label, build) => {
      const reservation = build();
      const before = reservation.toState();

      const decision = reservation.onOrderCreated({
        customerId: "cus-1",
        products: new Map(),
        now: after(10),
      });

      expect(decision).toEqual({ outcome: "unchanged", changed: false, moves: [], events: [] });
      expect(reservation.toState()).toEqual(before);
    });

    it("reserves a released hold again when the stock allows", () => {
      const reservation = aReservation().withItems(aRequest("A", 2), aRequest("B", 1)).expired().build();
      expect(reservation.linesToReserveAgain().map((l) => l.sku)).toEqual(["A", "B"]);

      const decision = reservation.onOrderCreated({
        customerId: "cus-1",
        products: productsOf({ A: 2, B: 1 }),
        now: after(HOLD + 5000),
      });

      expect(decision).toEqual({
        outcome: "rebound",
        changed: true,
        moves: [
          { sku: "A", move: "reserve", quantity: 2 },
          { sku: "B", move: "reserve", quantity: 1 },
        ],
        events: [],
      });
      const state = reservation.toState();
      expect(state).toMatchObject({ status: "bound", customerId: "cus-1", boundAt: after(HOLD + 5000) });
      expect(state.releaseReason).toBeUndefined();
      expect(state.releasedAt).toBeUndefined();
    });

    it("records the shortfalls of a released hold the stock cannot serve again, reserving nothing", () => {
      const reservation = aReservation()
        .withItems(aRequest("A", 3), aRequest("B", 1), aRequest("GONE", 1))
        .expired()
        .build();

      const decision = reservation.onOrderCreated({
        customerId: "cus-1",
        products: productsOf({ A: 1, B: 1 }),
        now: after(HOLD + 5000),
      });

      expect(decision).toEqual({ outcome: "unfulfilled", changed: true, moves: [], events: [] });
      expect(reservation.status).toBe("released");
      expect(reservation.isUnfulfilled).toBe(true);
      expect(reservation.toState().unfulfilled).toEqual({
        at: after(HOLD + 5000),
        shortfalls: [
          { sku: "GONE", requested: 1, available: 0 },
          { sku: "A", requested: 3, available: 1 },
        ],
      });
    });

    it("reserves nothing for an order whose cancellation was seen first", () => {
      const reservation = aReservation().cancelled().build();
      expect(reservation.linesToReserveAgain()).toEqual([]);

      const decision = reservation.onOrderCreated({
        customerId: "cus-1",
        products: productsOf({ "SKU-1": 100 }),
        now: after(10),
      });

      expect(decision).toMatchObject({ outcome: "already_cancelled", changed: false, moves: [] });
      expect(reservation.status).toBe("released");
    });

    it("reads an order with no reservation at all as a released one with the event's lines", () => {
      const lines = [line("A", 2, 1299)];
      const command = { customerId: "cus-1", products: productsOf({ A: 2 }), now: after(10) };

      const served = Reservation.nothingHeld("ord-7", lines, after(10));
      const short = Reservation.nothingHeld("ord-8", lines, after(10));
      expect(served.status).toBe("released");
      expect(served.linesToReserveAgain()).toEqual(lines);

      const servedDecision = served.onOrderCreated(command);
      const shortDecision = short.onOrderCreated({ ...command, products: productsOf({ A: 1 }) });

      expect(servedDecision).toEqual({
        outcome: "rebound",
        changed: true,
        moves: [{ sku: "A", move: "reserve", quantity: 2 }],
        events: [],
      });
      expect(served.toState()).toEqual({
        orderId: "ord-7",
        lines,
        status: "bound",
        holdUntil: after(10),
        customerId: "cus-1",
        createdAt: after(10),
        updatedAt: after(10),
        boundAt: after(10),
        version: 0,
      });
      expect(shortDecision).toMatchObject({ outcome: "unfulfilled", moves: [] });
      expect(short.toState()).toEqual({
        orderId: "ord-8",
        lines,
        status: "released",
        holdUntil: after(10),
        customerId: "cus-1",
        unfulfilled: { at: after(10), shortfalls: [{ sku: "A", requested: 2, available: 1 }] },
        createdAt: after(10),
        updatedAt: after(10),
        releasedAt: after(10),
        version: 0,
      });
    });
  });

  describe("on order.paid", () => {
    it.each<[string, () => Reservation]>([
      ["held (paid before order.created was seen)", () => aReservation().build()],
      ["bound", () => aReservation().bound().build()],
    ])("commits a %s reservation: reserved units are sold", (_label, build) => {
      const reservation = build();

      const decision = reservation.onOrderPaid(after(20));

      expect(moves(decision)).toEqual([{ sku: "SKU-1", move: "commit", quantity: 2 }]);
      expect(reservation.toState()).toMatchObject({ status: "committed", committedAt: after(20) });
    });

    it.each<[string, () => Reservation]>([
      ["committed", () => aReservation().committed().build()],
      ["released", () => aReservation().released().build()],
      ["cancelled", () => aReservation().bound().cancelled().build()],
    ])("changes nothing on a %s reservation", (_label, build) => {
      const reservation = build();
      const before = reservation.toState();

      expect(reservation.onOrderPaid(after(20))).toMatchObject({ outcome: "unchanged", changed: false });
      expect(reservation.toState()).toEqual(before);
    });
  });

  describe("on order.cancelled", () => {
    it.each<[string, () => Reservation]>([
      ["held", () => aReservation().build()],
      ["bound", () => aReservation().bound().build()],
    ])("releases a %s reservation: reserved units go back on sale", (_label, build) => {
      const reservation = build();

      const decision = reservation.onOrderCancelled(after(30));

      expect(decision.outcome).toBe("released");
      expect(moves(decision)).toEqual([{ sku: "SKU-1", move: "release", quantity: 2 }]);
      expect(reservation.toState()).toMatchObject({
        status: "released",
        releaseReason: "order_cancelled",
        orderCancelledAt: after(30),
        releasedAt: after(30),
      });
    });

    it("puts the sold units of a paid order back on sale (it never shipped)", () => {
      const reservation = aReservation().bound().committed().build();

      const decision = reservation.onOrderCancelled(after(30));

      expect(decision.outcome).toBe("restored");
      expect(moves(decision)).toEqual([{ sku: "SKU-1", move: "returnSold", quantity: 2 }]);
      expect(reservation.toState()).toMatchObject({ status: "released", releaseReason: "order_cancelled" });
    });

    it("only notes the cancellation of a released reservation, once", () => {
      const reservation = aReservation().expired().build();

      const first = reservation.onOrderCancelled(after(HOLD + 10));
      const again = reservation.onOrderCancelled(after(HOLD + 20));

      expect(first).toEqual({ outcome: "cancellation_noted", changed: true, moves: [], events: [] });
      expect(again).toEqual({ outcome: "unchanged", changed: false, moves: [], events: [] });
      expect(reservation.toState()).toMatchObject({
        status: "released",
        releaseReason: "expired",
        orderCancelledAt: after(HOLD + 10),
      });
    });
  });

  describe("hold expiry", () => {
    it("releases a held reservation only once its hold has passed", () => {
      const reservation = aReservation().heldAt(T0, 1000).build();

      expect(reservation.isHoldExpired(after(1000))).toBe(false);
      expect(() => reservation.expire(after(1000))).toThrow(
        expect.objectContaining({ code: "HOLD_NOT_EXPIRED" }),
      );
      expect(reservation.status).toBe("held");

      expect(reservation.isHoldExpired(after(1001))).toBe(true);
      const decision = reservation.expire(after(1001));
      expect(decision.outcome).toBe("expired");
      expect(moves(decision)).toEqual([{ sku: "SKU-1", move: "release", quantity: 2 }]);
      expect(reservation.toState()).toMatchObject({ status: "released", releaseReason: "expired" });
    });

    it.each<[string, () => Reservation]>([
      ["bound", () => aReservation().heldAt(T0, 1000).bound().build()],
      ["committed", () => aReservation().heldAt(T0, 1000).committed().build()],
      ["released", () => aReservation().heldAt(T0, 1000).released().build()],
    ])("never expires a %s reservation", (_label, build) => {
      const reservation = build();
      const before = reservation.toState();

      expect(reservation.isHoldExpired(after(5000))).toBe(false);
      expect(() => reservation.expire(after(5000))).toThrow(
        expect.objectContaining({ code: "ILLEGAL_RESERVATION_TRANSITION" }),
      );
      expect(reservation.toState()).toEqual(before);
    });
  });

  describe("release and commit actions", () => {
    it("releases a held or bound reservation, and answers a released one unchanged", () => {
      const reservation = aReservation().bound().build();

      expect(moves(reservation.release(after(5)))).toEqual([{ sku: "SKU-1", move: "release", quantity: 2 }]);
      expect(reservation.toState()).toMatchObject({ status: "released", releaseReason: "released" });
      expect(reservation.release(after(6))).toMatchObject({ outcome: "unchanged", changed: false });
    });

    it("commits a held or bound reservation, and answers a committed one unchanged", () => {
      const reservation = aReservation().build();

      expect(moves(reservation.commit(after(5)))).toEqual([{ sku: "SKU-1", move: "commit", quantity: 2 }]);
      expect(reservation.commit(after(6))).toMatchObject({ outcome: "unchanged", changed: false });
    });

    it("refuses to release a committed reservation and to commit a released one, with a code", () => {
      const committed = aReservation().committed().build();
      const released = aReservation().released().build();

      expect(() => committed.release(after(5))).toThrow(
        expect.objectContaining({
          code: "RESERVATION_COMMITTED",
          message: "the reservation of order ord-1 is committed: it cannot release",
          details: { orderId: "ord-1", status: "committed" },
        }),
      );
      expect(() => released.commit(after(5))).toThrow(
        expect.objectContaining({
          code: "RESERVATION_RELEASED",
          details: { orderId: "ord-1", status: "released" },
        }),
      );
      expect(committed.status).toBe("committed");
      expect(released.status).toBe("released");
    });
  });

  it("raises no events: the v1 catalog has no inventory event", () => {
    const none: ReservationEventType[] = [];
    expect(none).toEqual([]);
    const reservation = aReservation().build();
    for (const decision of [
      reservation.onOrderCreated({ customerId: "c", products: new Map(), now: after(1) }),
      reservation.onOrderPaid(after(2)),
      reservation.onOrderCancelled(after(3)),
    ])
      expect(decision.events).toEqual([]);
  });

  it("hands out copies of its state", () => {
    const reservation = aReservation().build();
    const state = reservation.toState() as { status: ReservationStatus; holdUntil: Date };
    state.status = "committed";
    state.holdUntil.setTime(0);
    expect(reservation.status).toBe("held");
    expect(reservation.isHoldExpired(after(1))).toBe(false);
  });

  describe("over any sequence of orders, payments, cancellations, expiries and restocks", () => {
    const SKUS = ["A", "B", "C"] as const;
    const ORDERS = 4;
    type Command =
      | { kind: "reserve"; order: number; items: { sku: string; quantity: number }[] }
      | { kind: "created" | "paid" | "cancelled"; order: number }
      | { kind: "time"; ms: number }
      | { kind: "restock"; sku: string; quantity: number };

    const items = fc.uniqueArray(
      fc.record({ sku: fc.constantFrom(...SKUS), quantity: fc.integer({ min: 1, max: 4 }) }),
      { minLength: 1, maxLength: 3, selector: (item) => item.sku },
    );
    const order = fc.integer({ min: 0, max: ORDERS - 1 });
    const command: fc.Arbitrary<Command> = fc.oneof(
      fc.record({ kind: fc.constant("reserve" as const), order, items }),
      fc.record({ kind: fc.constantFrom("created" as const, "paid" as const, "cancelled" as const), order }),
      fc.record({ kind: fc.constant("time" as const), ms: fc.integer({ min: 1, max: 2000 }) }),
      fc.record({
        kind: fc.constant("restock" as const),
        sku: fc.constantFrom(...SKUS),
        quantity: fc.integer({ min: 1, max: 5 }),
      }),
    );

    it("keeps every SKU's invariant, counters in step with the reservations, and sells nothing of a cancelled order", () => {
      fc.assert(
        fc.property(
          fc.array(fc.integer({ min: 0, max: 8 }), { minLength: 3, maxLength: 3 }),
          fc.array(command, { minLength: 1, maxLength: 80, size: "max" }),
          (initial, commands) => {
            const stocks = new Map<string, PricedStock>(
              SKUS.map((sku, i) => [sku, aProduct(initial[i] ?? 0)]),
            );
            const reservations = new Map<string, Reservation>();
            /** The lines each order was placed with: order.created carries them even without a reservation. */
            const placed = new Map<string, ReservationLine[]>();
            const cancelled = new Set<string>();
            let now = T0;

            const apply = (decision: ReservationDecision): void => {
              // a decision never asks for a move the stock cannot make: applyMove would throw
              for (const { sku, move, quantity } of decision.moves) {
                const stock = stocks.get(sku) as PricedStock;
                stocks.set(sku, { ...applyMove(stock, move, quantity), price: stock.price });
              }
              expect(decision.events).toEqual([]);
            };

            for (const step of commands) {
              const orderId = "order" in step ? `ord-${step.order}` : "";
              const found = reservations.get(orderId);
              switch (step.kind) {
                case "reserve":
                  if (found !== undefined || placed.has(orderId)) break;
                  try {
                    const made = Reservation.hold({
                      orderId,
                      items: step.items,
                      products: stocks,
                      now,
                      holdTtlMs: 1000,
                    });
                    apply(made.decision);
                    reservations.set(orderId, made.reservation);
                    placed.set(orderId, [...made.reservation.lines]);
                  } catch (err) {
                    expect(err).toMatchObject({ code: "OUT_OF_STOCK" });
                  }
                  break;
                case "created": {
                  const lines = placed.get(orderId);
                  if (lines === undefined) break; // no order without a successful reserve
                  const reservation = found ?? Reservation.nothingHeld(orderId, lines, now);
                  apply(reservation.onOrderCreated({ customerId: "c", products: stocks, now }));
                  reservations.set(orderId, reservation);
                  break;
                }
                case "paid":
                  if (found !== undefined) apply(found.onOrderPaid(now));
                  break;
                case "cancelled":
                  if (found === undefined) break;
                  apply(found.onOrderCancelled(now));
                  cancelled.add(orderId);
                  break;
                case "time":
                  now = after(step.ms, now);
                  for (const reservation of reservations.values())
                    if (reservation.isHoldExpired(now)) apply(reservation.expire(now));
                  break;
                case "restock": {
                  const stock = stocks.get(step.sku) as PricedStock;
                  stocks.set(step.sku, { ...applyMove(stock, "restock", step.quantity), price: stock.price });
                  break;
                }
              }

              const unitsOf = (sku: string, statuses: readonly ReservationStatus[]): number =>
                [...reservations.values()]
                  .filter((r) => statuses.includes(r.status))
                  .flatMap((r) => r.lines)
                  .filter((l) => l.sku === sku)
                  .reduce((sum, l) => sum + l.quantity, 0);
              for (const [sku, stock] of stocks) {
                expect(stockInvariantHolds(stock)).toBe(true);
                expect(stock.reserved).toBe(unitsOf(sku, ["held", "bound"]));
                expect(stock.sold).toBe(unitsOf(sku, ["committed"]));
              }
              for (const orderId of cancelled)
                expect(reservations.get(orderId)?.status).not.toBe("committed");
            }
          },
        ),
        { numRuns: 200 },
      );
    });
  });
});
