import { PassThrough } from "node:stream";
import { answerClientError, clientErrorAnswer, clientErrorResponse } from "../../../../lib/http/client-error";

describe("what node's parser refuses", () => {
  it("answers huge headers 431, a slow client 408 and anything else 400", () => {
    expect(clientErrorAnswer("HPE_HEADER_OVERFLOW")).toEqual({
      status: 431,
      reason: "Request Header Fields Too Large",
      code: "HEADERS_TOO_LARGE",
      message: "request header fields too large",
    });
    expect(clientErrorAnswer("ERR_HTTP_REQUEST_TIMEOUT")).toMatchObject({
      status: 408,
      code: "REQUEST_TIMEOUT",
    });
    for (const code of ["HPE_INVALID_METHOD", "HPE_INVALID_URL", undefined])
      expect(clientErrorAnswer(code)).toEqual({
        status: 400,
        reason: "Bad Request",
        code: "BAD_REQUEST",
        message: "the request is not valid HTTP",
      });
  });

  it("writes the envelope with its length, the request id, the security headers, and closes", () => {
    const text = clientErrorResponse(clientErrorAnswer("ERR_HTTP_REQUEST_TIMEOUT"), "rid-1");
    const [head, body] = text.split("\r\n\r\n") as [string, string];
    const lines = head.split("\r\n");
    expect(lines[0]).toBe("HTTP/1.1 408 Request Timeout");
    expect(lines).toEqual(
      expect.arrayContaining([
        "Content-Type: application/json; charset=utf-8",
        `Content-Length: ${Buffer.byteLength(body)}`,
        "X-Request-Id: rid-1",
        "X-Content-Type-Options: nosniff",
        "Cache-Control: no-store",
        "Connection: close",
      ]),
    );
    expect(JSON.parse(body)).toEqual({
      error: { code: "REQUEST_TIMEOUT", message: "request timeout", requestId: "rid-1" },
    });
  });

  it("answers on the socket and ends it; a reset or unwritable socket is only destroyed", async () => {
    const socket = new PassThrough();
    const written: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => written.push(chunk));
    const ended = new Promise((resolve) => socket.on("end", resolve));
    answerClientError(Object.assign(new Error("bad"), { code: "HPE_INVALID_METHOD" }), socket);
    await ended;
    expect(Buffer.concat(written).toString()).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);

    const reset = new PassThrough();
    answerClientError(Object.assign(new Error("reset"), { code: "ECONNRESET" }), reset);
    expect(reset.destroyed).toBe(true);
  });
});
