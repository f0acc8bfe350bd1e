import { bearerTokenOf, requireRole } from "../../../../lib/http/access";

describe("bearer tokens", () => {
  it("reads the token of an Authorization: Bearer header; none without the header", () => {
    expect(bearerTokenOf({ authorization: "Bearer abc.def-ghi_jkl" })).toBe("abc.def-ghi_jkl");
    expect(bearerTokenOf({})).toBeNull();
    expect(bearerTokenOf({ authorization: "" })).toBeNull();
  });

  it("answers 401 to any other form of credentials", () => {
    for (const authorization of [
      "Basic dXNlcjpwYXNz",
      "Bearer",
      "Bearer a b",
      "bearer abc",
      "Bearer a\u00e9",
    ])
      expect(() => bearerTokenOf({ authorization })).toThrow(
        expect.objectContaining({ code: 401, type: "UNAUTHORIZED" }),
      );
  });
});

describe("roles", () => {
  const alice = { id: "alice", roles: ["customer" as const] };

  it("gives back a caller who holds one of the roles", () => {
    expect(requireRole(alice, "customer", "admin")).toBe(alice);
  });

  it("answers 401 without a caller and 403 with the wrong role", () => {
    for (const user of [undefined, null])
      expect(() => requireRole(user, "customer")).toThrow(
        expect.objectContaining({ code: 401, type: "UNAUTHORIZED" }),
      );
    expect(() => requireRole(alice, "admin")).toThrow(
      expect.objectContaining({ code: 403, type: "FORBIDDEN", message: "this needs the role admin" }),
    );
  });
});
