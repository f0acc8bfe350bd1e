import fc from "fast-check";
import {
  INVENTORY_LIMITS,
  RESERVATION_STATUSES,
  applyMove,
  canTransition,
  checkRequest,
  commit,
  emptyStock,
  holdDeadline,
  initialStock,
  moveGuard,
  moveIncrements,
  nextStatus,
  planReservation,
  productAdminViewOf,
  productViewOf,
  release,
  reserve,
  restock,
  returnSold,
  sameRequest,
  stockInvariantHolds,
  stockReportOf,
  visibleProductFields,
  type ReservationStatus,
  type ReservationTransition,
  type Stock,
  type StockMove,
} from "../../../models/inventory";

const stock = (available: number, reserved = 0, sold = 0): Stock => ({
  available,
  reserved,
  sold,
  received: available + reserved + sold,
});

describe("inventory model", () => {
  describe("stock moves", () => {
    it("reserves, releases, commits and restocks between the right counters", () => {
      let s = initialStock(10);
      expect(s).toEqual({ available: 10, reserved: 0, sold: 0, received: 10 });
      s = reserve(s, 4);
      expect(s).toEqual({ available: 6, reserved: 4, sold: 0, received: 10 });
      s = release(s, 1);
      expect(s).toEqual({ available: 7, reserved: 3, sold: 0, received: 10 });
      s = commit(s, 3);
      expect(s).toEqual({ available: 7, reserved: 0, sold: 3, received: 10 });
      s = restock(s, 5);
      expect(s).toEqual({ available: 12, reserved: 0, sold: 3, received: 15 });
      s = returnSold(s, 2);
      expect(s).toEqual({ available: 14, reserved: 0, sold: 1, received: 15 });
      expect(stockInvariantHolds(s)).toBe(true);
    });

    it("reserves exactly what is available, and not one more", () => {
      expect(reserve(stock(3), 3)).toEqual({ available: 0, reserved: 3, sold: 0, received: 3 });
      expect(() => reserve(stock(3), 4)).toThrow(
        expect.objectContaining({
          code: "INSUFFICIENT_STOCK",
          details: expect.objectContaining({ available: 3 }),
        }),
      );
    });

    it.each<[string, () => Stock]>([
      ["releasing more than is reserved", () => release(stock(5, 2), 3)],
      ["committing more than is reserved", () => commit(stock(5, 2), 3)],
      ["returning more than was sold", () => returnSold(stock(5, 0, 1), 2)],
    ])("refuses %s", (_label, move) => {
      expect(move).toThrow(expect.objectContaining({ code: "INSUFFICIENT_STOCK" }));
    });

    it.each([0, -1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1])("refuses a quantity of %p", (n) => {
      expect(() => reserve(stock(10), n)).toThrow(expect.objectContaining({ code: "INVALID_QUANTITY" }));
      expect(() => restock(stock(10), n)).toThrow(expect.objectContaining({ code: "INVALID_QUANTITY" }));
    });

    it("refuses a restock that would take the counters beyond safe integers", () => {
      expect(() => restock(stock(Number.MAX_SAFE_INTEGER - 1), 2)).toThrow(
        expect.objectContaining({ code: "INVALID_QUANTITY" }),
      );
    });

    it("describes each move as increments that apply the same change as the pure function", () => {
      const before = stock(20, 10, 5);
      for (const move of ["reserve", "release", "commit", "restock", "returnSold"] as StockMove[]) {
        const after: Record<string, number> = { ...before };
        for (const [counter, delta] of Object.entries(moveIncrements(move, 3)))
          after[counter] = (after[counter] ?? Number.NaN) + delta;
        expect(after).toEqual(applyMove(before, move, 3));
      }
    });

    it("guards each move by its source counter, exactly where the pure function refuses it", () => {
      expect(moveGuard("reserve", 3)).toEqual({ counter: "available", atLeast: 3 });
      expect(moveGuard("restock", 3)).toBeNull();
      for (const move of ["reserve", "release", "commit", "restock", "returnSold"] as StockMove[]) {
        for (const before of [stock(2, 2, 2), stock(3, 3, 3), emptyStock()]) {
          const guard = moveGuard(move, 3);
          const allowed = guard === null || before[guard.counter] >= guard.atLeast;
          if (allowed) expect(stockInvariantHolds(applyMove(before, move, 3))).toBe(true);
          else
            expect(() => applyMove(before, move, 3)).toThrow(
              expect.objectContaining({ code: "INSUFFICIENT_STOCK" }),
            );
        }
      }
    });

    it("checks the invariant, including negative and fractional counters", () => {
      expect(stockInvariantHolds({ available: 1, reserved: 2, sold: 3, received: 6 })).toBe(true);
      expect(stockInvariantHolds({ available: 1, reserved: 2, sold: 3, received: 7 })).toBe(false);
      expect(stockInvariantHolds({ available: -1, reserved: 2, sold: 0, received: 1 })).toBe(false);
      expect(stockInvariantHolds({ available: 0.5, reserved: 0.5, sold: 0, received: 1 })).toBe(false);
    });

    it("keeps the invariant and every counter non-negative through any sequence of moves", () => {
      const step = fc.record({
        move: fc.constantFrom<StockMove>("reserve", "release", "commit", "restock", "returnSold"),
        n: fc.integer({ min: 1, max: 50 }),
      });
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 100 }), fc.array(step, { maxLength: 60 }), (initial, steps) => {
          let s: Stock =
            initial === 0 ? { available: 0, reserved: 0, sold: 0, received: 0 } : initialStock(initial);
          for (const { move, n } of steps) {
            try {
              s = applyMove(s, move, n);
            } catch (err) {
              // a refused move changes nothing, and is refused only for want of units
              expect(err).toMatchObject({ code: "INSUFFICIENT_STOCK" });
            }
            expect(stockInvariantHolds(s)).toBe(true);
            expect(Math.min(s.available, s.reserved, s.sold, s.received)).toBeGreaterThanOrEqual(0);
          }
        }),
        { numRuns: 500 },
      );
    });
  });

  describe("products", () => {
    const mug = {
      sku: "MUG",
      name: "Mug",
      price: { minor: 1299, currency: "USD" as const },
      ...stock(5, 2, 3),
      createdAt: new Date("2026-11-20T10:00:00.000Z"),
      updatedAt: new Date("2026-11-21T10:00:00.000Z"),
    };

    it("shows price and availability to anyone, and every counter to an admin", () => {
      expect(productViewOf(mug)).toEqual({ sku: "MUG", name: "Mug", price: mug.price, available: 5 });
      expect(productAdminViewOf(mug)).toEqual({
        sku: "MUG",
        name: "Mug",
        price: mug.price,
        available: 5,
        reserved: 2,
        sold: 3,
        received: 10,
        createdAt: "2026-11-20T10:00:00.000Z",
        updatedAt: "2026-11-21T10:00:00.000Z",
      });
    });

    it("narrows the fields asked for to what the caller may see; none asked → the public view", () => {
      expect(visibleProductFields(false)).toEqual(["sku", "name", "price", "available"]);
      expect(visibleProductFields(true)).toEqual(["sku", "name", "price", "available"]);
      expect(visibleProductFields(false, ["sku", "reserved", "cost"])).toEqual(["sku"]);
      expect(visibleProductFields(true, "sku reserved cost")).toEqual(["sku", "reserved"]);
    });

    it("reports every SKU's counters and whether the invariant holds", () => {
      const report = stockReportOf(
        [
          { sku: "A", ...stock(1, 2, 3) },
          { sku: "B", available: 1, reserved: 0, sold: 0, received: 2 },
        ],
        { byStatus: { held: 1, bound: 0, committed: 2, released: 0 }, unfulfilled: 0 },
      );
      expect(report).toEqual({
        products: [
          { sku: "A", available: 1, reserved: 2, sold: 3, received: 6, invariantHolds: true },
          { sku: "B", available: 1, reserved: 0, sold: 0, received: 2, invariantHolds: false },
        ],
        invariantHolds: false,
        reservations: { held: 1, bound: 0, committed: 2, released: 0 },
        unfulfilled: 0,
      });
    });
  });

  describe("reservations", () => {
    const table: [ReservationStatus, ReservationTransition, ReservationStatus | null][] = [
      ["held", "bind", "bound"],
      ["held", "commit", "committed"],
      ["held", "release", "released"],
      ["held", "restore", null],
      ["held", "rebind", null],
      ["bound", "bind", null],
      ["bound", "commit", "committed"],
      ["bound", "release", "released"],
      ["bound", "rebind", null],
      ["committed", "bind", null],
      ["committed", "commit", null],
      ["committed", "release", null],
      ["committed", "restore", "released"],
      ["released", "bind", null],
      ["released", "commit", null],
      ["released", "release", null],
      ["released", "restore", null],
      ["released", "rebind", "bound"],
    ];

    it.each(table)("%s --%s--> %s", (from, transition, to) => {
      expect(canTransition(from, transition)).toBe(to !== null);
      if (to === null) {
        expect(() => nextStatus(from, transition)).toThrow(
          expect.objectContaining({
            code: "ILLEGAL_RESERVATION_TRANSITION",
            details: { status: from, transition },
          }),
        );
      } else {
        expect(nextStatus(from, transition)).toBe(to);
      }
    });

    it("covers every status in the transition table", () => {
      expect(new Set(table.map(([from]) => from))).toEqual(new Set(RESERVATION_STATUSES));
    });

    it("accepts a request of distinct SKUs with quantities 1..1000", () => {
      expect(
        checkRequest([
          { sku: "A", quantity: 1 },
          { sku: "B", quantity: 1000 },
        ]),
      ).toEqual([
        { sku: "A", quantity: 1 },
        { sku: "B", quantity: 1000 },
      ]);
    });

    it.each([
      ["no lines", []],
      [
        "a SKU twice",
        [
          { sku: "A", quantity: 1 },
          { sku: "A", quantity: 2 },
        ],
      ],
      ["quantity 0", [{ sku: "A", quantity: 0 }]],
      ["quantity 1001", [{ sku: "A", quantity: 1001 }]],
      ["a fractional quantity", [{ sku: "A", quantity: 1.5 }]],
      ["a malformed SKU", [{ sku: "-A", quantity: 1 }]],
      [
        "101 lines",
        Array.from({ length: INVENTORY_LIMITS.maxLines + 1 }, (_, i) => ({ sku: `S${i}`, quantity: 1 })),
      ],
    ])("refuses a request with %s", (_label, lines) => {
      expect(() => checkRequest(lines)).toThrow(expect.objectContaining({ code: "INVALID_RESERVATION" }));
    });

    it("compares requests by SKU and quantity, in any order", () => {
      const a = [
        { sku: "A", quantity: 1 },
        { sku: "B", quantity: 2 },
      ];
      expect(
        sameRequest(a, [
          { sku: "B", quantity: 2 },
          { sku: "A", quantity: 1 },
        ]),
      ).toBe(true);
      expect(sameRequest(a, [{ sku: "A", quantity: 1 }])).toBe(false);
      expect(
        sameRequest(a, [
          { sku: "A", quantity: 1 },
          { sku: "B", quantity: 3 },
        ]),
      ).toBe(false);
      expect(
        sameRequest(a, [
          { sku: "A", quantity: 1 },
          { sku: "C", quantity: 2 },
        ]),
      ).toBe(false);
    });

    it("plans all lines or reports every line it cannot serve", () => {
      const stocks = new Map([
        ["A", stock(5)],
        ["B", stock(1)],
        ["C", stock(0)],
      ]);
      const ok = planReservation(stocks, [
        { sku: "A", quantity: 5 },
        { sku: "B", quantity: 1 },
      ]);
      expect(ok.unknown).toEqual([]);
      expect(ok.shortfalls).toEqual([]);
      expect(ok.after.get("A")).toEqual({ available: 0, reserved: 5, sold: 0, received: 5 });

      const short = planReservation(stocks, [
        { sku: "A", quantity: 2 },
        { sku: "B", quantity: 2 },
        { sku: "C", quantity: 1 },
        { sku: "Z", quantity: 1 },
      ]);
      expect(short.unknown).toEqual(["Z"]);
      expect(short.shortfalls).toEqual([
        { sku: "B", requested: 2, available: 1 },
        { sku: "C", requested: 1, available: 0 },
      ]);
      // the input is never changed
      expect(stocks.get("A")).toEqual(stock(5));
    });

    it("sets the hold deadline TTL milliseconds ahead, and refuses a non-positive TTL", () => {
      const now = new Date("2026-11-20T10:00:00.000Z");
      expect(holdDeadline(now, 15 * 60_000).toISOString()).toBe("2026-11-20T10:15:00.000Z");
      expect(() => holdDeadline(now, 0)).toThrow(expect.objectContaining({ code: "INVALID_QUANTITY" }));
    });
  });
});
