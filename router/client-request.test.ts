import assert from "node:assert/strict";
import { test } from "node:test";
import { ClientProtocolError, MAX_REQUEST_HEAD_BYTES, RequestParser, type RequestHead } from "./client-request.ts";

interface Parsed {
  heads: RequestHead[];
  bodies: string[];
  ends: number;
}

function parser(): { p: RequestParser; out: Parsed } {
  const out: Parsed = { heads: [], bodies: [], ends: 0 };
  const p = new RequestParser({
    onHead: (h) => {
      out.heads.push(h);
      out.bodies.push("");
    },
    onBody: (chunk) => {
      out.bodies[out.bodies.length - 1] += chunk.toString("latin1");
    },
    onEnd: () => void out.ends++,
  });
  return { p, out };
}

/** Parses `wire` (one or more pipelined requests) fed in two pieces split at every position; all must agree. */
function parseEverySplit(wire: string): Parsed {
  const bytes = Buffer.from(wire, "latin1");
  let first: Parsed | undefined;
  for (let cut = 0; cut <= bytes.length; cut++) {
    const { p, out } = parser();
    if (cut > 0) p.push(bytes.subarray(0, cut));
    if (cut < bytes.length) p.push(bytes.subarray(cut));
    // Pipelined requests are read one at a time, each after the previous one is answered.
    while (p.done) {
      const before = out.heads.length;
      p.next();
      if (out.heads.length === before) break;
    }
    if (first === undefined) first = out;
    else assert.deepEqual(out, first, `same result when split at ${cut}`);
  }
  return first!;
}

function parseError(wire: string): ClientProtocolError {
  const { p } = parser();
  try {
    p.push(Buffer.from(wire, "latin1"));
  } catch (err) {
    assert.ok(err instanceof ClientProtocolError, String(err));
    return err;
  }
  assert.fail(`no error for ${JSON.stringify(wire)}`);
}

test("a request line and fields are read as sent, however the bytes arrive", () => {
  const out = parseEverySplit("GET /a/b?c=1 HTTP/1.1\r\nHost: shop.localhost\r\nX-Thing:  two words \t\r\nCookie: a=é\r\n\r\n");
  assert.equal(out.heads.length, 1);
  const h = out.heads[0];
  assert.equal(h.method, "GET");
  assert.equal(h.url, "/a/b?c=1");
  assert.equal(h.minor, 1);
  assert.deepEqual(h.rawHeaders, ["Host", "shop.localhost", "X-Thing", "two words", "Cookie", "a=\u00e9"]);
  assert.equal(h.keepAlive, true);
  assert.equal(h.upgrade, false);
  assert.equal(out.ends, 1, "a request without a body ends with its head");
});

test("bodies framed by Content-Length and by chunks are passed on de-chunked; pipelined requests wait their turn", () => {
  const out = parseEverySplit(
    "POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
      "POST /two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: dropped\r\n\r\n" +
      "\r\nGET /three HTTP/1.1\r\nHost: a\r\n\r\n",
  );
  assert.deepEqual(out.heads.map((h) => h.url), ["/one", "/two", "/three"]);
  assert.deepEqual(out.bodies, ["hello", "abc0123456789abcdef", ""]);
  assert.equal(out.ends, 3);
});

test("keep-alive and upgrade follow the version and the Connection field", () => {
  const head = (wire: string) => parseEverySplit(wire).heads[0];
  assert.equal(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keepAlive, false);
  assert.equal(head("GET / HTTP/1.0\r\n\r\n").keepAlive, false);
  assert.equal(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keepAlive, true);
  assert.equal(head("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade, true);
  assert.equal(head("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade, false, "Upgrade without Connection: upgrade is a plain request");
  assert.equal(head("GET /ws HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade, false, "HTTP/1.0 has no upgrades (RFC 9110 §7.8)");
  assert.equal(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade:\r\n\r\n").upgrade, false, "an empty Upgrade offers nothing");
  assert.equal(head("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keepAlive, false, "close wins");
  assert.equal(head("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: \xa0upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade, false, "0xA0 is not whitespace");
  assert.equal(head("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 0\r\n\r\n").expectContinue, true);
});

test("bytes after an upgrade request's head are kept for the tunnel, not read as HTTP", () => {
  const { p, out } = parser();
  p.push(Buffer.from("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n\x00\x01binary frames"));
  assert.equal(out.heads.length, 1);
  assert.equal(p.takeBuffered().toString("latin1"), "\x00\x01binary frames");
});

test("an upgrade offered with a body (h2c on a POST) is served as HTTP, body and all", () => {
  for (const framing of ["Content-Length: 11\r\n\r\nhello=world", "Transfer-Encoding: chunked\r\n\r\nb\r\nhello=world\r\n0\r\n\r\n"]) {
    const out = parseEverySplit(`POST /form HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n${framing}`);
    assert.equal(out.heads.length, 1);
    assert.equal(out.heads[0].upgrade, false);
    assert.deepEqual(out.bodies, ["hello=world"]);
    assert.equal(out.ends, 1);
  }
});

test("requests that two parsers could read differently are refused (request smuggling)", () => {
  const cases: [string, number, RegExp][] = [
    ["POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, /both Content-Length and Transfer-Encoding/],
    ["POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, /conflicting Content-Length/],
    ["POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400, /malformed Content-Length/],
    ["POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400, /malformed Content-Length/],
    ["POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400, /only chunked/],
    ["POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400, /more than one Transfer-Encoding/],
    ["POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, /HTTP\/1\.0/],
    ["POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400, /malformed request field name/],
    ["GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", 400, /obsolete line folding/],
    ["GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\nX-B: 2\r\n\r\n", 400, /control character/],
    ["GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n", 400, /control character/],
    ["GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", 400, /malformed request field line/],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, /more than one Host/],
    ["GET / HTTP/1.1\r\n\r\n", 400, /needs a Host/],
    ["GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, /malformed request line/],
    ["GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400, /malformed request target/],
    ["GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, /malformed request line/],
    ["G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, /malformed request method/],
    ["GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, /only HTTP\/1\.0 and HTTP\/1\.1/],
    ["GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400, /malformed HTTP version/],
    ["PUT / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417, /unsupported expectation/],
    ["POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, /malformed chunk size/],
    ["POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400, /not followed by CRLF/],
    ["POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000\r\n", 400, /chunk size is too large/],
    [`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"x".repeat(17 * 1024)}\r\n\r\n`, 431, /request head is too large/],
  ];
  for (const [wire, status, message] of cases) {
    const err = parseError(wire);
    assert.equal(err.status, status, JSON.stringify(wire));
    assert.match(err.message, message, JSON.stringify(wire));
  }
});

test("a head still growing past the limit is refused before its end arrives", () => {
  const { p } = parser();
  p.push(Buffer.from("GET / HTTP/1.1\r\nHost: a\r\n"));
  assert.throws(() => p.push(Buffer.alloc(17 * 1024, "x")), (err: ClientProtocolError) => err.status === 431);
});

test("end() tells a clean close between requests from one that cuts a request short", () => {
  const between = parser();
  between.p.push(Buffer.from("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  assert.equal(between.p.end(), true);
  const midHead = parser();
  midHead.p.push(Buffer.from("GET / HTTP/1.1\r\nHo"));
  assert.equal(midHead.p.end(), false);
  const midBody = parser();
  midBody.p.push(Buffer.from("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"));
  assert.equal(midBody.p.end(), false);
});

test("an absolute-form target names the host: the app gets the origin form and that host", () => {
  const h = parseEverySplit("GET http://b.localhost:8080?x=1 HTTP/1.1\r\nHost: a.localhost\r\n\r\n").heads[0];
  assert.equal(h.url, "/?x=1");
  assert.deepEqual(h.rawHeaders, ["Host", "b.localhost:8080"]);
  const old = parseEverySplit("GET HTTPS://b.localhost/p/q HTTP/1.0\r\n\r\n").heads[0];
  assert.equal(old.url, "/p/q");
  assert.deepEqual(old.rawHeaders, ["Host", "b.localhost"]);
  assert.match(parseError("GET http://user@b.localhost/ HTTP/1.1\r\nHost: a\r\n\r\n").message, /malformed request target/);
  assert.match(parseError("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n").message, /malformed request target/);
  // Other schemes and forms are passed on as they are.
  assert.equal(parseEverySplit("GET ftp://b/x HTTP/1.1\r\nHost: a\r\n\r\n").heads[0].url, "ftp://b/x");
  assert.equal(parseEverySplit("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").heads[0].url, "*");
});

test("the head and line limits hold however the bytes are split", () => {
  /** The outcome of parsing `wire` in two pieces cut at `cut`: the status of the refusal, or "ok". */
  const outcome = (wire: Buffer, cut: number) => {
    const { p } = parser();
    try {
      p.push(wire.subarray(0, cut));
      p.push(wire.subarray(cut));
      return "ok";
    } catch (err) {
      assert.ok(err instanceof ClientProtocolError, String(err));
      return err.status;
    }
  };
  const cuts = (wire: Buffer) => [1, 100, wire.length - 6, wire.length - 5, wire.length - 4, wire.length - 3, wire.length - 2, wire.length - 1, wire.length];
  // A head (request line and fields, without the final CRLFCRLF) of exactly the limit, and one byte over.
  const head = (bytes: number) => {
    const start = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    return Buffer.from(`${start}${"a".repeat(bytes - start.length)}\r\n\r\n`, "latin1");
  };
  for (const cut of cuts(head(MAX_REQUEST_HEAD_BYTES))) assert.equal(outcome(head(MAX_REQUEST_HEAD_BYTES), cut), "ok", `head at the limit, cut at ${cut}`);
  for (const cut of cuts(head(MAX_REQUEST_HEAD_BYTES + 1))) assert.equal(outcome(head(MAX_REQUEST_HEAD_BYTES + 1), cut), 431, `head over the limit, cut at ${cut}`);
  // A chunk-size line of exactly 8 KiB (with an extension), and one byte over.
  const chunked = (lineBytes: number) =>
    Buffer.from(`POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;${"x".repeat(lineBytes - 2)}\r\na\r\n0\r\n\r\n`, "latin1");
  const lineEnd = (wire: Buffer) => wire.indexOf("\r\na\r\n");
  for (const bytes of [8192, 8193]) {
    const wire = chunked(bytes);
    const end = lineEnd(wire);
    for (const cut of [60, end - 1, end, end + 1, end + 2, wire.length]) assert.equal(outcome(wire, cut), bytes === 8192 ? "ok" : 400, `chunk line of ${bytes} bytes, cut at ${cut}`);
  }
});
