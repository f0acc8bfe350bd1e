import { afterCursor, pageOf } from "../../../lib/newest-first";

const rows = [
  { _id: "c", createdAt: "2026-11-21T10:00:02.000Z" },
  { _id: "b", createdAt: "2026-11-21T10:00:01.000Z" },
  { _id: "a", createdAt: "2026-11-21T10:00:01.000Z" },
];

describe("newest-first pages", () => {
  it("pages by cursor: the next page starts strictly after the last row, ties broken by id", () => {
    const first = pageOf(rows, 2, (row) => row._id);
    expect(first.items).toEqual(["c", "b"]);
    expect(first.nextCursor).not.toBeNull();
    expect(afterCursor(first.nextCursor as string, "string")).toEqual({
      $or: [
        { createdAt: { $lt: "2026-11-21T10:00:01.000Z" } },
        { createdAt: "2026-11-21T10:00:01.000Z", _id: { $lt: "b" } },
      ],
    });
    expect(pageOf(rows.slice(0, 2), 2, (row) => row._id).nextCursor).toBeNull();
  });

  it("compares as Date where the collection stores Dates", () => {
    const page = pageOf(
      rows.map((row) => ({ ...row, createdAt: new Date(row.createdAt) })),
      1,
      (row) => row._id,
    );
    const filter = afterCursor(page.nextCursor as string, "date") as { $or: { createdAt: unknown }[] };
    expect(filter.$or[1]?.createdAt).toEqual(new Date("2026-11-21T10:00:02.000Z"));
  });

  it("refuses a cursor it did not make", () => {
    const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    for (const cursor of [
      "not-a-cursor",
      forged(["yesterday", "a"]),
      forged([1, "a"]),
      forged(["2026-11-21T10:00:00Z"]),
    ])
      expect(() => afterCursor(cursor, "string")).toThrow(
        expect.objectContaining({ code: 400, type: "INVALID_CURSOR" }),
      );
  });
});
