/**
 * The router's client side on the wire: raw bytes in, raw bytes out, through a real proxy to a real
 * upstream. What an HTTP client library would hide (framing, pipelining, connection closes) is
 * asserted byte for byte here.
 */
import assert from "node:assert/strict";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { test, type TestContext } from "node:test";
import type { Route } from "../core/index.ts";
import type { RouterLimits } from "./limits.ts";
import { createProxyServer, type ProxyServer } from "./proxy-server.ts";
import { RouteTable } from "./route-table.ts";
import { sleep, startUpstream, waitFor } from "./test-support.ts";

/** An upstream answering `METHOD URL BODY` (read to the end), and recording every request it got. */
async function echo(t: TestContext, handler?: http.RequestListener): Promise<{ address: string; seen: string[] }> {
  const seen: string[] = [];
  const u = await startUpstream("echo", handler ?? ((req, res) => {
    let body = "";
    req.setEncoding("latin1");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      seen.push(`${req.method} ${req.url} ${body}`);
      const text = `${req.method} ${req.url} ${body}`;
      res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(text, "latin1") });
      res.end(text, "latin1");
    });
  }));
  t.after(() => u.close());
  return { address: u.address, seen };
}

/** A proxy on a free port, closed after the test: app "web" at web.localhost on `upstream`, or the given routes. */
async function startProxy(t: TestContext, upstream: string | Route[], limits?: Partial<RouterLimits>): Promise<{ proxy: ProxyServer; port: number }> {
  const routes = typeof upstream === "string" ? [{ app: "web", hosts: ["web.localhost"], upstreams: [upstream] }] : upstream;
  const proxy = createProxyServer({ table: new RouteTable(routes), limits });
  await proxy.listen(0, "127.0.0.1");
  t.after(() => proxy.close(0));
  return { proxy, port: (proxy.server.address() as AddressInfo).port };
}

/** A raw client connection: write bytes, read what comes back until a predicate holds or the connection closes. */
class Wire {
  text = "";
  closed = false;
  private readonly socket: net.Socket;
  private readonly waiters = new Set<() => void>();

  constructor(port: number) {
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.on("data", (d) => {
      this.text += d.toString("latin1");
      for (const w of this.waiters) w();
    });
    this.socket.on("error", () => {});
    this.socket.on("close", () => {
      this.closed = true;
      for (const w of this.waiters) w();
    });
  }

  write(data: string): void {
    this.socket.write(Buffer.from(data, "latin1"));
  }

  /** Waits until `done(text)` holds (or the connection closes); fails after 5 s. */
  until(done: (text: string) => boolean, what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (done(this.text) || this.closed) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve(this.text);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.text)}`));
      }, 5_000);
      this.waiters.add(check);
      check();
    });
  }

  untilClosed(): Promise<string> {
    return this.until(() => false, "the connection to close");
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Splits raw HTTP/1.1 responses that carry Content-Length bodies. */
function responses(text: string): { status: number; headers: string; body: string }[] {
  const out: { status: number; headers: string; body: string }[] = [];
  let at = 0;
  while (at < text.length) {
    const end = text.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const head = text.slice(at, end);
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    out.push({ status: Number(head.slice(9, 12)), headers: head, body: text.slice(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  return out;
}

test("pipelined requests are answered in order on one connection, bodies and all", async (t) => {
  const up = await echo(t);
  const { port } = await startProxy(t, up.address);
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  wire.write(
    "GET /one HTTP/1.1\r\nHost: web.localhost\r\n\r\n" +
      "POST /two HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5\r\n\r\nhello" +
      "POST /three HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n" +
      "HEAD /four HTTP/1.1\r\nHost: web.localhost\r\n\r\n" +
      "GET /five HTTP/1.1\r\nHost: web.localhost\r\n\r\n",
  );
  const text = await wire.until((s) => s.includes("GET /five "), "five answers");
  // HEAD's answer has a Content-Length but no body: the splitter would misread it, so cut it out first.
  const headAt = text.indexOf("HTTP/1.1 200", text.indexOf("POST /three abcde"));
  const headEnd = text.indexOf("\r\n\r\n", headAt) + 4;
  const all = responses(text.slice(0, headAt) + text.slice(headEnd));
  assert.deepEqual(all.map((r) => r.body), ["GET /one ", "POST /two hello", "POST /three abcde", "GET /five "]);
  assert.match(text.slice(headAt, headEnd), /^HTTP\/1\.1 200 OK\r\n[\s\S]*content-length: 11\r\n/i);
  assert.equal(wire.closed, false, "the connection stays open");
  assert.deepEqual(up.seen, ["GET /one ", "POST /two hello", "POST /three abcde", "HEAD /four ", "GET /five "]);
});

test("a response without a length is chunked for HTTP/1.1 clients and runs to the close for HTTP/1.0 ones", async (t) => {
  const up = await echo(t, (req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.write("first ");
    setTimeout(() => res.end("second"), 20);
  });
  const { port } = await startProxy(t, up.address);

  const v11 = new Wire(port);
  t.after(() => v11.destroy());
  v11.write("GET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n");
  const chunked = await v11.until((s) => s.endsWith("0\r\n\r\n"), "the last chunk");
  assert.match(chunked, /\r\nTransfer-Encoding: chunked\r\n/);
  assert.equal(chunked.slice(chunked.indexOf("\r\n\r\n") + 4), "6\r\nfirst \r\n6\r\nsecond\r\n0\r\n\r\n");

  const v10 = new Wire(port);
  t.after(() => v10.destroy());
  v10.write("GET / HTTP/1.0\r\nHost: web.localhost\r\n\r\n");
  const plain = await v10.untilClosed();
  assert.match(plain, /^HTTP\/1\.0 200 OK\r\n/);
  assert.match(plain, /\r\nConnection: close\r\n/);
  assert.doesNotMatch(plain, /Transfer-Encoding/i);
  assert.equal(plain.slice(plain.indexOf("\r\n\r\n") + 4), "first second");
});

test("an HTTP/1.0 client asking for keep-alive keeps its connection", async (t) => {
  const up = await echo(t);
  const { port } = await startProxy(t, up.address);
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  wire.write("GET /a HTTP/1.0\r\nHost: web.localhost\r\nConnection: keep-alive\r\n\r\n");
  await wire.until((s) => s.endsWith("GET /a "), "the first answer");
  assert.match(wire.text, /\r\nConnection: keep-alive\r\n/);
  wire.write("GET /b HTTP/1.0\r\nHost: web.localhost\r\nConnection: keep-alive\r\n\r\n");
  await wire.until((s) => s.endsWith("GET /b "), "the second answer");
  assert.equal(wire.closed, false);
});

test("Expect: 100-continue gets its interim answer before the body is sent, only when the body goes to the app", async (t) => {
  const up = await echo(t);
  const { port } = await startProxy(t, up.address);
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  wire.write("PUT /upload HTTP/1.1\r\nHost: web.localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  await wire.until((s) => s.includes("\r\n\r\n"), "100 Continue");
  assert.equal(wire.text, "HTTP/1.1 100 Continue\r\n\r\n");
  wire.write("data");
  const text = await wire.until((s) => s.endsWith("PUT /upload data"), "the answer");
  assert.match(text.slice(25), /^HTTP\/1\.1 200 OK\r\n/);

  // A body the router refuses (over the app's limit) is answered at once, never asked for.
  const limited = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [up.address], settings: { maxBodyBytes: 10 } }]);
  const refused = new Wire(limited.port);
  t.after(() => refused.destroy());
  refused.write("PUT /upload HTTP/1.1\r\nHost: web.localhost\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n");
  const answer = await refused.until((s) => s.includes("\r\n\r\n"), "the answer");
  assert.match(answer, /^HTTP\/1\.1 413 /);
  // Any answer of the router's own: the client may send the withheld body or not, so the
  // connection closes rather than read a body as the next request.
  const unknown = new Wire(port);
  t.after(() => unknown.destroy());
  unknown.write("PUT /upload HTTP/1.1\r\nHost: nobody.localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  const notFound = await unknown.untilClosed();
  assert.match(notFound, /^HTTP\/1\.1 404 [\s\S]*\r\nConnection: close\r\n/);
});

test("a smuggling attempt or a malformed request gets a one-line 400, the connection closes, and nothing reaches the app", async (t) => {
  const up = await echo(t);
  const { port } = await startProxy(t, up.address);
  const attempts: [string, RegExp][] = [
    ["POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.localhost\r\n\r\n", /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*\r\n\r\nboth Content-Length and Transfer-Encoding\n$/],
    ["POST / HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", /^HTTP\/1\.1 400 [\s\S]*only chunked is accepted\)\n$/],
    ["GET / HTTP/1.1\r\nHost: web.localhost\r\nX-A: 1\nGET /smuggled HTTP/1.1\r\n\r\n", /^HTTP\/1\.1 400 [\s\S]*control character in request field X-A\n$/],
    ["GET / HTTP/1.1\r\nHost: web.localhost\r\nHost: other.localhost\r\n\r\n", /^HTTP\/1\.1 400 [\s\S]*more than one Host field\n$/],
    [`GET / HTTP/1.1\r\nHost: web.localhost\r\nCookie: ${"c".repeat(20_000)}\r\n\r\n`, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/],
    ["GET / HTTP/3.0\r\nHost: web.localhost\r\n\r\n", /^HTTP\/1\.1 505 /],
    ["BREW /pot HTCPCP/1.0\r\n\r\n", /^HTTP\/1\.1 400 [\s\S]*malformed request line\n$/],
    ["GET / HTTQ/1.1\r\nHost: web.localhost\r\n\r\n", /^HTTP\/1\.1 400 [\s\S]*malformed HTTP version\n$/],
  ];
  for (const [request, answer] of attempts) {
    const wire = new Wire(port);
    t.after(() => wire.destroy());
    wire.write(request);
    const text = await wire.untilClosed();
    assert.match(text, answer, JSON.stringify(request.slice(0, 60)));
    assert.match(text, /\r\nConnection: close\r\n/);
  }
  assert.deepEqual(up.seen, []);
});

test("a body cut off by a chunk error mid-request is abandoned upstream and answered 400", async (t) => {
  const up = await echo(t);
  const { port } = await startProxy(t, up.address);
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  wire.write("POST /cut HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
  await sleep(100);
  wire.write("zz\r\n");
  const text = await wire.untilClosed();
  assert.match(text, /^HTTP\/1\.1 400 [\s\S]*malformed chunk size\n$/);
  await sleep(100);
  assert.deepEqual(up.seen, [], "the app never saw a complete request");
});

test("an app that answers before reading the body: the rest is dropped and the connection carries the next request", async (t) => {
  const up = await echo(t, (req, res) => {
    if (req.url === "/early") {
      res.writeHead(401, { "Content-Type": "text/plain", "Content-Length": 6 });
      return void res.end("denied");
    }
    res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": 4 });
    res.end("next");
  });
  const { port } = await startProxy(t, up.address);
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  const body = "x".repeat(300_000);
  wire.write(`POST /early HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: ${body.length}\r\n\r\n`);
  await wire.until((s) => s.endsWith("denied"), "the early answer");
  wire.write(body);
  wire.write("GET /after HTTP/1.1\r\nHost: web.localhost\r\n\r\n");
  const text = await wire.until((s) => s.endsWith("next"), "the next answer");
  assert.deepEqual(responses(text).map((r) => r.status), [401, 200]);
  assert.equal(wire.closed, false);
});

test("a client that closes mid-request or between requests leaves no connection behind", async (t) => {
  const up = await echo(t);
  const { proxy, port } = await startProxy(t, up.address);
  for (const partial of ["GET / HTTP/1.1\r\nHo", "POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 10\r\n\r\nabc", "GET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n"]) {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    await new Promise((r) => socket.once("connect", r));
    socket.end(partial);
    await new Promise((r) => socket.once("close", r));
  }
  // The open-connections gauge of /metrics counts client connections until the router closes them.
  await waitFor(async () => /\ndeck_router_open_connections 0\n/.test(await proxy.metering.metrics()), 5_000, "the router to close its side");
});

test("a client cannot remove the body's framing with Connection: the app reads one request, body intact", async (t) => {
  const up = await echo(t);
  const { port } = await startProxy(t, up.address);
  const hidden = "GET /admin HTTP/1.1\r\nHost: web.localhost\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
  const chunkedHidden = `${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\n\r\n`;
  for (const [field, framing, body] of [
    ["content-length", `Content-Length: ${hidden.length}`, hidden],
    ["transfer-encoding", "Transfer-Encoding: chunked", chunkedHidden],
    ["host, content-length, transfer-encoding", `Content-Length: ${hidden.length}`, hidden],
  ]) {
    const wire = new Wire(port);
    t.after(() => wire.destroy());
    wire.write(`POST /public HTTP/1.1\r\nHost: web.localhost\r\nConnection: ${field}\r\n${framing}\r\n\r\n${body}`);
    await wire.until((s) => s.includes("POST /public GET /admin"), `the echo (Connection: ${field})`);
    // A second request on the pooled upstream connection shows whether the hidden one was read apart.
    wire.write("GET /next HTTP/1.1\r\nHost: web.localhost\r\n\r\n");
    await wire.until((s) => s.endsWith("GET /next "), "the next answer");
  }
  assert.deepEqual(up.seen, [`POST /public ${hidden}`, "GET /next ", `POST /public ${hidden}`, "GET /next ", `POST /public ${hidden}`, "GET /next "]);
});

test("thousands of pipelined requests the router answers itself, behind a slow close-delimited answer, are all answered", async (t) => {
  const slow = net.createServer((socket) => {
    socket.once("data", () => setTimeout(() => socket.end("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nslow body"), 300));
    socket.on("error", () => {});
  });
  await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
  t.after(() => slow.close());
  const { port } = await startProxy(t, `127.0.0.1:${(slow.address() as AddressInfo).port}`);
  // Short requests, so that many arrive in one read: each is answered at once (404) while the
  // connection moves from one to the next, and none may cost stack depth.
  const n = 20_000;
  const socket = net.connect(port, "127.0.0.1");
  t.after(() => socket.destroy());
  let head = "";
  let notFound = 0;
  let tail = "";
  const all = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${notFound} of ${n} answers after 60 s`)), 60_000);
    socket.on("data", (d: Buffer) => {
      const text = tail + d.toString("latin1");
      if (head.length < 200) head += text.slice(0, 200);
      notFound += text.split("HTTP/1.1 404 ").length - 1;
      tail = text.slice(-12);
      if (notFound === n) {
        clearTimeout(timer);
        resolve();
      }
    });
    socket.on("close", () => reject(new Error(`closed after ${notFound} of ${n} answers`)));
  });
  socket.write("GET /slow HTTP/1.1\r\nHost: web.localhost\r\n\r\n" + "GET / HTTP/1.1\r\nHost: n\r\n\r\n".repeat(n));
  await all;
  assert.match(head, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n9\r\nslow body\r\n0\r\n\r\nHTTP\/1\.1 404 /);
});

test("a 413 closes the connection soon even while the client keeps sending its body", async (t) => {
  const up = await echo(t);
  const { port } = await startProxy(t, up.address, { maxBodyBytes: 1000 });
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  wire.write("POST /big HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 100000000\r\n\r\n");
  await wire.until((s) => s.includes("bytes web accepts"), "the 413");
  const started = Date.now();
  const pump = setInterval(() => { if (!wire.closed) wire.write("x".repeat(64 * 1024)); }, 50);
  t.after(() => clearInterval(pump));
  await wire.untilClosed().catch(() => undefined);
  await wire.until(() => wire.closed, "the close");
  clearInterval(pump);
  assert.match(wire.text, /^HTTP\/1\.1 413 [\s\S]*Connection: close\r\n/);
  assert.ok(Date.now() - started < 8_000, `closed ${Date.now() - started} ms after the answer`);
  assert.deepEqual(up.seen, []);
});

test("an app's Content-Length next to Transfer-Encoding is not passed on: the client's response is framed by what was read", async (t) => {
  const liar = net.createServer((socket) => {
    socket.on("data", () => socket.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\ntwenty-nine bytes of the body\r\n0\r\n\r\n"));
    socket.on("error", () => {});
  });
  await new Promise<void>((r) => liar.listen(0, "127.0.0.1", r));
  t.after(() => liar.close());
  const { port } = await startProxy(t, `127.0.0.1:${(liar.address() as AddressInfo).port}`);
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  wire.write("GET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n");
  const text = await wire.until((s) => s.endsWith("0\r\n\r\n"), "the chunked answer");
  assert.doesNotMatch(text, /content-length/i);
  assert.equal(text.slice(text.indexOf("\r\n\r\n") + 4), "1d\r\ntwenty-nine bytes of the body\r\n0\r\n\r\n");
});

test("each pipelined request is metered to its own app", async (t) => {
  const up = await echo(t, (req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": 10_000 });
    res.end("b".repeat(10_000));
  });
  const { proxy, port } = await startProxy(t, [
    { app: "web", hosts: ["web.localhost"], upstreams: [up.address] },
    { app: "idle", hosts: ["idle.localhost"], upstreams: [] },
  ]);
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  wire.write("GET /big HTTP/1.1\r\nHost: web.localhost\r\n\r\nGET /x HTTP/1.1\r\nHost: idle.localhost\r\n\r\n");
  await wire.until((s) => s.endsWith("has no running release\n"), "both answers");
  const metrics = await proxy.metering.metrics();
  const sent = (app: string) => Number(new RegExp(`deck_router_sent_bytes_total\\{app="${app}"\\} (\\d+)`).exec(metrics)?.[1]);
  assert.ok(sent("web") > 10_000, `web sent ${sent("web")}`);
  assert.ok(sent("idle") < 1_000, `idle sent ${sent("idle")}`);
});

test("a request head still arriving behind a pipelined request gets 408 once, when the header timeout passes", async (t) => {
  const up = await echo(t, (req, res) => setTimeout(() => res.end("slow"), 300));
  const { port } = await startProxy(t, up.address, { headerTimeoutMs: 1000 });
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  const started = Date.now();
  wire.write("GET /slow HTTP/1.1\r\nHost: web.localhost\r\n\r\nGET /second HTTP/1.1\r\nHost: web");
  const text = await wire.until((s) => s.includes("HTTP/1.1 408 "), "the 408");
  assert.ok(Date.now() - started < 4_000, `408 after ${Date.now() - started} ms`);
  await sleep(1_500);
  assert.equal(text.split("HTTP/1.1 408 ").length - 1, 1, "one 408");
  assert.match(wire.text, /^HTTP\/1\.1 200 OK[\s\S]*slow[\s\S]*HTTP\/1\.1 408 Request Timeout\r\n/);
});

test("while the router shuts down, a request in flight is answered with Connection: close and its connection closes", async (t) => {
  const up = await echo(t, (req, res) => setTimeout(() => res.end("done"), 300));
  const table = new RouteTable([{ app: "web", hosts: ["web.localhost"], upstreams: [up.address] }]);
  const proxy = createProxyServer({ table });
  await proxy.listen(0, "127.0.0.1");
  const wire = new Wire((proxy.server.address() as AddressInfo).port);
  t.after(() => wire.destroy());
  wire.write("GET /slow HTTP/1.1\r\nHost: web.localhost\r\n\r\n");
  await waitFor(() => proxy.totalInflight() === 1, 5_000, "the request to be in flight");
  const closed = proxy.close(5_000);
  const text = await wire.untilClosed();
  await closed;
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(text.slice(0, text.indexOf("\r\n\r\n") + 2), /\r\nConnection: close\r\n/);
  assert.ok(text.endsWith("\r\n\r\ndone"), text);
});

test("pipelined requests sent while the client is not reading are all answered once it reads", async (t) => {
  // Each answer is larger than the socket's buffer, so every one of them ends with the client
  // behind: the next request must still be read once the client catches up.
  const size = 100_000;
  const u = await echo(t, (req, res) => {
    req.resume();
    req.on("end", () => res.end(Buffer.alloc(size, 98)));
  });
  const { port } = await startProxy(t, u.address);
  const socket = net.connect(port, "127.0.0.1");
  t.after(() => socket.destroy());
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.pause();
  const n = 60;
  socket.write("GET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n".repeat(n));
  await sleep(500);
  let bytes = 0;
  let heads = 0;
  let tail = "";
  const all = new Promise<void>((resolve) => {
    socket.on("data", (d: Buffer) => {
      bytes += d.length;
      const text = tail + d.toString("latin1");
      heads += text.match(/HTTP\/1\.1 200 OK/g)?.length ?? 0;
      tail = text.slice(-20);
      if (heads === n && bytes >= n * size) resolve();
    });
  });
  socket.resume();
  await Promise.race([all, sleep(10_000)]);
  assert.equal(heads, n, `answers received: ${heads} of ${n}`);
});

test("a POST offering an h2c upgrade is served as HTTP: the app gets its body, without the offer", async (t) => {
  const u = await echo(t);
  const { port } = await startProxy(t, u.address);
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  wire.write("POST /form HTTP/1.1\r\nHost: web.localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 11\r\n\r\nhello=world");
  const text = await wire.until((s) => responses(s).length === 1, "the answer");
  const [r] = responses(text);
  assert.equal(r.status, 200);
  assert.equal(r.body, "POST /form hello=world");
});

test("an absolute-form request goes to the app its target names, which gets the origin form and that Host", async (t) => {
  const a = await echo(t, (req, res) => res.end(`a ${req.url} ${req.headers.host}`));
  const b = await echo(t, (req, res) => res.end(`b ${req.url} ${req.headers.host} ${req.headers["x-forwarded-host"]}`));
  const { port } = await startProxy(t, [
    { app: "a", hosts: ["a.localhost"], upstreams: [a.address] },
    { app: "b", hosts: ["b.localhost"], upstreams: [b.address] },
  ]);
  const wire = new Wire(port);
  t.after(() => wire.destroy());
  wire.write("GET http://b.localhost/x?y=1 HTTP/1.1\r\nHost: a.localhost\r\n\r\n");
  const text = await wire.until((s) => responses(s).length === 1, "the answer");
  assert.equal(responses(text)[0].body, "b /x?y=1 b.localhost b.localhost");
});
