import { isJsonMediaType, rawBodyText, requireJsonBody, verifyUtf8 } from "../../../../lib/http/body-guard";

describe("body guard", () => {
  it("refuses a body that is not UTF-8 as unparsable JSON", () => {
    expect(() => verifyUtf8(null, null, Buffer.from('{"name":"Mug é"}'))).not.toThrow();
    expect(() => verifyUtf8(null, null, Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]))).toThrow(
      expect.objectContaining({ status: 400, type: "entity.parse.failed" }),
    );
  });

  it("takes JSON and +json media types only", () => {
    expect(isJsonMediaType("application/json")).toBe(true);
    expect(isJsonMediaType("application/merge-patch+json")).toBe(true);
    for (const type of ["text/plain", "application/xml", "application/jsonx", "json", ""])
      expect(isJsonMediaType(type)).toBe(false);
  });

  it("answers 415 to a body that does not say it is JSON, naming the type it said", () => {
    const body = { "content-length": "12" };
    expect(() =>
      requireJsonBody({ ...body, "content-type": "application/json; charset=utf-8" }),
    ).not.toThrow();
    expect(() => requireJsonBody({ ...body, "content-type": "Application/JSON" })).not.toThrow();
    expect(() => requireJsonBody({ ...body, "content-type": "text/plain" })).toThrow(
      expect.objectContaining({
        code: 415,
        type: "UNSUPPORTED_MEDIA_TYPE",
        data: { contentType: "text/plain" },
      }),
    );
    expect(() => requireJsonBody(body)).toThrow(
      expect.objectContaining({ code: 415, data: { contentType: null } }),
    );
    // a chunked body has no length and is a body all the same
    expect(() => requireJsonBody({ "transfer-encoding": "chunked" })).toThrow(
      expect.objectContaining({ code: 415 }),
    );
    // the type echoed back is bounded
    expect(() => requireJsonBody({ ...body, "content-type": `text/${"x".repeat(500)}` })).toThrow(
      expect.objectContaining({ data: { contentType: `text/${"x".repeat(95)}` } }),
    );
  });

  it("lets a request without a body through, whatever its content type", () => {
    expect(() => requireJsonBody({})).not.toThrow();
    expect(() => requireJsonBody({ "content-length": "0", "content-type": "text/plain" })).not.toThrow();
  });
});

describe("raw bodies", () => {
  it("are read as UTF-8 text, and as nothing when there is none", () => {
    expect(rawBodyText(Buffer.from('{"id":"evt_é"}'))).toBe('{"id":"evt_é"}');
    expect(rawBodyText("already text")).toBe("already text");
    expect(rawBodyText(undefined)).toBe("");
    expect(rawBodyText({ parsed: true })).toBe("");
  });
});
