import assert from "node:assert/strict";
import { test } from "node:test";
import { ResponseParser, UpstreamProtocolError, type ResponseHead } from "./upstream-response.ts";

interface Parsed {
  heads: ResponseHead[];
  body: string;
  lastSeen: boolean;
  ended: number;
}

function parser(head = false): { p: ResponseParser; out: Parsed } {
  const out: Parsed = { heads: [], body: "", lastSeen: false, ended: 0 };
  const sink = {
    onHead: (h: ResponseHead) => void out.heads.push(h),
    onBody: (chunk: Buffer, last: boolean) => {
      assert.equal(out.lastSeen, false, "nothing after the last piece");
      out.body += chunk.toString("latin1");
      out.lastSeen = last;
    },
    onEnd: () => void out.ended++,
  };
  const p = new ResponseParser(sink);
  p.reset(sink, head);
  return { p, out };
}

/** Parses `wire` fed in two pieces split at every position, and whole; all must agree. */
function parseEverySplit(wire: string, head = false): Parsed {
  const bytes = Buffer.from(wire, "latin1");
  let first: Parsed | undefined;
  for (let cut = 0; cut <= bytes.length; cut++) {
    const { p, out } = parser(head);
    if (cut > 0) p.push(bytes.subarray(0, cut));
    if (cut < bytes.length) p.push(bytes.subarray(cut));
    assert.equal(p.done, true, `complete when split at ${cut}`);
    if (first === undefined) first = out;
    else assert.deepEqual(out, first, `same result when split at ${cut}`);
  }
  return first!;
}

function parseError(wire: string, head = false): string {
  const { p } = parser(head);
  try {
    p.push(Buffer.from(wire, "latin1"));
  } catch (err) {
    assert.ok(err instanceof UpstreamProtocolError);
    return err.message;
  }
  assert.fail(`no error for ${JSON.stringify(wire)}`);
}

test("a Content-Length body is read exactly, however the bytes arrive", () => {
  const out = parseEverySplit("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nKeep-Alive: timeout=5\r\n\r\nhello world");
  assert.equal(out.heads.length, 1);
  assert.equal(out.heads[0].status, 200);
  assert.equal(out.heads[0].reason, "OK");
  assert.deepEqual(out.heads[0].rawHeaders, ["Content-Type", "text/plain", "Content-Length", "11", "Keep-Alive", "timeout=5"]);
  assert.equal(out.heads[0].keepAlive, true);
  assert.equal(out.heads[0].keepAliveTimeout, 5);
  assert.equal(out.body, "hello world");
  assert.equal(out.lastSeen, true);
  assert.equal(out.ended, 1);
});

test("a chunked body is de-chunked, with extensions and trailers dropped", () => {
  const out = parseEverySplit("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6 \r\n world\r\nA\r\n0123456789\r\n0\r\nX-Checksum: abc\r\n\r\n");
  assert.equal(out.body, "hello world0123456789");
  assert.equal(out.heads[0].keepAlive, true);
  assert.equal(out.ended, 1);
});

test("a body without length or chunking runs until the connection closes, which ends keep-alive", () => {
  const { p, out } = parser();
  p.push(Buffer.from("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome "));
  p.push(Buffer.from("more"));
  assert.equal(p.done, false);
  assert.equal(p.closeDelimited, true);
  p.end();
  assert.equal(p.done, true);
  assert.equal(out.body, "some more");
  assert.equal(out.heads[0].keepAlive, false);
  assert.equal(out.ended, 1);
});

test("HEAD, 204 and 304 responses have no body whatever their headers say", () => {
  const head = parseEverySplit("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true);
  assert.equal(head.body, "");
  assert.equal(head.ended, 1);
  const noContent = parseEverySplit("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n");
  assert.equal(noContent.ended, 1);
  const notModified = parseEverySplit("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n");
  assert.equal(notModified.ended, 1);
  assert.match(parseError("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", true), /after the end of its response/);
});

test("interim 1xx responses are skipped; the final response follows", () => {
  const out = parseEverySplit("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
  assert.deepEqual(out.heads.map((h) => h.status), [201]);
  assert.equal(out.body, "ok");
});

test("keep-alive follows the version and the Connection field", () => {
  const status = (wire: string) => parseEverySplit(wire).heads[0];
  assert.equal(status("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keepAlive, false);
  assert.equal(status("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n\r\n").keepAlive, false);
  assert.equal(status("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keepAlive, false);
  assert.equal(status("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keepAlive, true);
  assert.equal(status("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").reason, "");
  // Both framings at once: Transfer-Encoding wins, and the connection is not reused.
  const both = parseEverySplit("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
  assert.equal(both.body, "ok");
  assert.equal(both.heads[0].keepAlive, false);
  // HTTP/1.0 has no Transfer-Encoding: a response framed by one is not trusted with the connection (RFC 9112 §6.1).
  assert.equal(status("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").keepAlive, false);
  assert.equal(status("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n").keepAlive, false, "close wins");
  // The codings of all Transfer-Encoding fields form one list, empty elements ignored (RFC 9110 §5.6.1).
  assert.equal(parseEverySplit("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n3\r\nabc\r\n0\r\n\r\n").body, "abc");
});

test("a body in a coding other than chunked is refused: it would reach the client coded, with nothing saying so", () => {
  assert.match(parseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), /Transfer-Encoding "gzip, chunked" \(only chunked is relayed\)/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), /only chunked is relayed/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), /only chunked is relayed/);
  // A response without a body only describes the coding.
  const { p, out } = parser(true);
  p.push(Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"));
  assert.equal(out.heads.length, 1);
});

test("a status code is three digits, and only spaces and tabs surround a field's value", () => {
  assert.match(parseError("HTTP/1.1 2e2 OK\r\nContent-Length: 2\r\n\r\nok"), /malformed status line/);
  assert.match(parseError("HTTP/1.1 1e2 X\r\n\r\n"), /malformed status line/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nContent-Length: \xa03\r\n\r\nabc"), /malformed Content-Length/);
  // 0xA0 is part of the value, so this coding is not chunked.
  assert.match(parseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: \xa0chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), /only chunked is relayed/);
});

test("malformed responses are refused with a reason, so the connection is never reused", () => {
  assert.match(parseError("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), /conflicting Content-Length/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"), /conflicting Content-Length/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), /malformed Content-Length/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n"), /malformed Content-Length/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n"), /obsolete line folding/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n"), /field name/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"), /malformed response field line/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nX-A: a\u0001b\r\n\r\n"), /control character/);
  assert.match(parseError("HTTP/2 200 OK\r\n\r\n"), /malformed status line/);
  assert.match(parseError("HTTP/1.1 20 OK\r\n\r\n"), /malformed status line/);
  assert.match(parseError("ICY 200 OK\r\n\r\n"), /malformed status line/);
  assert.match(parseError("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"), /switched protocols/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), /malformed chunk size/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\n"), /malformed chunk size/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n"), /too large/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n"), /not followed by CRLF/);
  assert.match(parseError(`HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(70 * 1024)}`), /head is too large/);
  assert.match(parseError("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"), /after the end of its response/);
});

test("a connection that ends mid-response is an error; between responses it is not", () => {
  const { p } = parser();
  p.push(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"));
  assert.throws(() => p.end(), /before the response was complete/);
  const whole = parser();
  whole.p.push(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  whole.p.end();
  assert.equal(whole.out.body, "ok");
});

test("reset readies the parser for the next response on the same connection", () => {
  const { p, out } = parser();
  p.push(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"));
  assert.equal(p.received, 41);
  const second: Parsed = { heads: [], body: "", lastSeen: false, ended: 0 };
  p.reset({ onHead: (h) => void second.heads.push(h), onBody: (c) => void (second.body += c.toString()), onEnd: () => void second.ended++ }, false);
  assert.equal(p.received, 0);
  p.push(Buffer.from("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\ntwo"));
  assert.equal(out.body, "one");
  assert.equal(second.heads[0].status, 404);
  assert.equal(second.body, "two");
  assert.equal(second.ended, 1);
});

test("an upgrade handshake's 101 ends HTTP: what follows, in any pieces, is passed on as it comes", () => {
  const wire = Buffer.from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\u0081\u0002hiHTTP/1.1 200 OK\r\n", "latin1");
  for (let cut = 0; cut <= wire.length; cut++) {
    const heads: ResponseHead[] = [];
    let after = "";
    let ended = 0;
    const sink = { onHead: (h: ResponseHead) => void heads.push(h), onBody: (c: Buffer, last: boolean) => { assert.equal(last, false); after += c.toString("latin1"); }, onEnd: () => void ended++ };
    const p = new ResponseParser(sink);
    p.reset(sink, false, true);
    if (cut > 0) p.push(wire.subarray(0, cut));
    if (cut < wire.length) p.push(wire.subarray(cut));
    assert.deepEqual(heads, [{ status: 101, reason: "Switching Protocols", rawHeaders: ["Upgrade", "websocket", "Connection", "Upgrade"], keepAlive: false, keepAliveTimeout: -1 }], `split at ${cut}`);
    assert.equal(after, "\u0081\u0002hiHTTP/1.1 200 OK\r\n", `split at ${cut}`);
    assert.equal(ended, 0, "a tunnel has no end of body");
    p.end();
  }
  // A declined handshake is an ordinary response.
  const declined = new ResponseParser({ onHead() {}, onBody() {}, onEnd() {} });
  const out: number[] = [];
  declined.reset({ onHead: (h) => void out.push(h.status), onBody() {}, onEnd: () => void out.push(0) }, false, true);
  declined.push(Buffer.from("HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"));
  assert.deepEqual(out, [403, 0]);
});
