/**
 * The router's protection and per-app behaviour, through real HTTP: rate limits, body limits, slow
 * clients, connection caps, maintenance mode, HTTPS redirects, requests held for a starting app,
 * metering and the access log.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import type { Route } from "../core/index.ts";
import { AccessLog } from "./access-log.ts";
import { ConnectionCounter, LocalRateLimiter, type RouterLimits } from "./limits.ts";
import { createProxyServer, type ProxyServer } from "./proxy-server.ts";
import { RouteTable, type RouteEntry } from "./route-table.ts";
import { send, sleep, startUpstream, takeUsage, waitFor, type TestUpstream } from "./test-support.ts";

/**
 * A route table that counts the router's lookups per Host header. Once a request to a paused app with
 * no upstream has been looked up, the router holds it (nothing in between waits): tests wait for that
 * instead of sleeping and hoping the request got there.
 */
class ObservedTable extends RouteTable {
  readonly #lookups = new Map<string, number>();

  override lookup(hostHeader: string | undefined): RouteEntry | undefined {
    const key = hostHeader ?? "";
    this.#lookups.set(key, (this.#lookups.get(key) ?? 0) + 1);
    return super.lookup(hostHeader);
  }

  lookups(host: string): number {
    return this.#lookups.get(host) ?? 0;
  }
}

/** Waits until the router has looked up `count` requests to `host` (held ones, for a paused app). */
function waitForLookups(table: ObservedTable, host: string, count = 1): Promise<void> {
  return waitFor(() => table.lookups(host) >= count, 5_000, `${count} request(s) to ${host} to reach the router`);
}

/** The router's count of open client connections, from its metrics. */
async function openConnections(proxy: ProxyServer): Promise<number> {
  return Number(/^deck_router_open_connections (\d+)$/m.exec(await proxy.metering.metrics())?.[1]);
}

interface Started { proxy: ProxyServer; port: number; table: ObservedTable }

async function startProxy(t: TestContext, routes: Route[], limits: Partial<RouterLimits> = {}, extra: { accessLog?: AccessLog; httpsPort?: number } = {}): Promise<Started> {
  const table = new ObservedTable(routes);
  const proxy = createProxyServer({ table, limits: { rateLimitRps: 0, ...limits }, ...extra });
  await proxy.listen(0, "127.0.0.1");
  t.after(() => proxy.close(0));
  return { proxy, port: (proxy.server.address() as AddressInfo).port, table };
}

async function upstream(t: TestContext, name: string, handler?: http.RequestListener): Promise<TestUpstream> {
  const u = await startUpstream(name, handler);
  t.after(() => u.close());
  return u;
}

/** Sends raw bytes and collects whatever comes back until the server closes the connection. */
function rawExchange(port: number, chunks: { data: string; afterMs?: number }[], timeoutMs = 10_000): Promise<{ text: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(port, "127.0.0.1");
    let text = "";
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(text)}`)); }, timeoutMs);
    socket.on("data", (d) => { text += d.toString("latin1"); });
    socket.on("error", () => {});
    socket.on("close", () => { clearTimeout(timer); resolve({ text, closedAfterMs: Date.now() - started }); });
    socket.on("connect", async () => {
      for (const c of chunks) {
        if (c.afterMs) await sleep(c.afterMs);
        if (socket.destroyed) return;
        socket.write(c.data);
      }
    });
  });
}

test("token bucket: a burst passes, then Retry-After says when the next token comes", () => {
  let now = 0;
  const limiter = new LocalRateLimiter(() => now);
  {
    assert.equal(limiter.take("a", "1.2.3.4", 2, 3), 0);
    assert.equal(limiter.take("a", "1.2.3.4", 2, 3), 0);
    assert.equal(limiter.take("a", "1.2.3.4", 2, 3), 0);
    assert.equal(limiter.take("a", "1.2.3.4", 2, 3), 1, "4th request within the same instant waits a second");
    assert.equal(limiter.take("a", "5.6.7.8", 2, 3), 0, "another client has its own bucket");
    assert.equal(limiter.take("b", "1.2.3.4", 2, 3), 0, "another app has its own bucket");
    now += 500; // one token back at 2/s
    assert.equal(limiter.take("a", "1.2.3.4", 2, 3), 0);
    assert.equal(limiter.take("a", "1.2.3.4", 2, 3), 1);
    now += 60_000;
    limiter.sweep();
    assert.equal(limiter.size, 0, "full buckets are forgotten");
  }
  void limiter.close();
});

test("connection counter caps per address and frees on close", () => {
  const c = new ConnectionCounter();
  assert.equal(c.tryOpen("a", 2), true);
  assert.equal(c.tryOpen("a", 2), true);
  assert.equal(c.tryOpen("a", 2), false);
  assert.equal(c.tryOpen("b", 2), true);
  c.close("a");
  assert.equal(c.tryOpen("a", 2), true);
  assert.equal(c.tryOpen("z", 0), true, "0 = no cap");
});

test("rate limit per client IP and app: 429 with Retry-After; the server-wide default and a per-app setting", async (t) => {
  const u = await upstream(t, "ok");
  const { port } = await startProxy(t, [
    { app: "strict", hosts: ["strict.localhost"], upstreams: [u.address], settings: { rateLimitRps: 1, rateLimitBurst: 3 } },
    { app: "open", hosts: ["open.localhost"], upstreams: [u.address] },
  ], { rateLimitRps: 1000, rateLimitBurst: 2000 });
  const statuses: number[] = [];
  let limited: Awaited<ReturnType<typeof send>> | undefined;
  for (let i = 0; i < 6; i++) {
    const r = await send({ port, host: "strict.localhost" });
    statuses.push(r.status);
    if (r.status === 429) limited ??= r;
  }
  assert.deepEqual(statuses.slice(0, 3), [200, 200, 200]);
  assert.ok(statuses.slice(3).every((s) => s === 429), `after the burst of 3: ${statuses}`);
  assert.ok(limited);
  assert.equal(limited.headers["retry-after"], "1");
  assert.match(limited.body, /too many requests to strict from 127\.0\.0\.1; retry after 1s/);
  assert.ok(limited.headers["x-request-id"]);
  // The other app on the same router keeps the generous default.
  for (let i = 0; i < 20; i++) assert.equal((await send({ port, host: "open.localhost" })).status, 200);
});

test("body limit: a declared body over it gets 413 without reaching the app; a chunked one is cut at the limit", async (t) => {
  let received = 0;
  const u = await upstream(t, "sink", (req, res) => {
    req.on("data", (c: Buffer) => { received += c.length; });
    req.on("end", () => res.end("stored"));
  });
  const { port } = await startProxy(t, [{ app: "up", hosts: ["up.localhost"], upstreams: [u.address], settings: { maxBodyBytes: 1024 } }]);
  const big = await send({ port, host: "up.localhost", method: "POST", body: Buffer.alloc(2048, 97) });
  assert.equal(big.status, 413);
  assert.match(big.body, /request body of 2048 bytes is larger than the 1024 bytes up accepts/);
  assert.equal(received, 0);
  const small = await send({ port, host: "up.localhost", method: "POST", body: Buffer.alloc(500, 97) });
  assert.equal(small.status, 200);
  assert.equal(small.body, "stored");

  // Chunked: no Content-Length, so the router counts while streaming.
  const chunked = await new Promise<number>((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/", headers: { Host: "up.localhost", "Transfer-Encoding": "chunked" }, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.write(Buffer.alloc(800, 98));
    setTimeout(() => req.end(Buffer.alloc(800, 98)), 100);
  });
  assert.equal(chunked, 413);
});

test("slow clients: headers not finished within the header timeout get 408 and the connection closes", async (t) => {
  const u = await upstream(t, "ok");
  const { port } = await startProxy(t, [{ app: "a", hosts: ["a.localhost"], upstreams: [u.address] }], { headerTimeoutMs: 1000 });
  const r = await rawExchange(port, [{ data: "GET / HTTP/1.1\r\nHost: a.localhost\r\n" }, { data: "X-Slow: 1\r\n", afterMs: 400 }, { data: "X-Slow: 2\r\n", afterMs: 400 }, { data: "X-Slow: 3\r\n", afterMs: 400 }]);
  assert.match(r.text, /^HTTP\/1\.1 408 /);
  assert.ok(r.closedAfterMs < 5000, `closed after ${r.closedAfterMs} ms`);
  // A connection that never sends a byte has no more time than one sending slowly.
  const silent = await rawExchange(port, []);
  assert.equal(silent.text, "");
  assert.ok(silent.closedAfterMs < 5000, `silent connection closed after ${silent.closedAfterMs} ms`);
});

test("idle connections are closed after the idle timeout", async (t) => {
  const u = await upstream(t, "ok");
  const { port } = await startProxy(t, [{ app: "a", hosts: ["a.localhost"], upstreams: [u.address] }], { idleTimeoutMs: 700 });
  const r = await rawExchange(port, []);
  assert.equal(r.text, "");
  assert.ok(r.closedAfterMs >= 500, `closed after ${r.closedAfterMs} ms`);
});

test("connections per client IP are capped: one over the cap gets 429 and is closed, others keep working", async (t) => {
  const u = await upstream(t, "ok");
  const { port, proxy } = await startProxy(t, [{ app: "a", hosts: ["a.localhost"], upstreams: [u.address] }], { maxConnectionsPerIp: 3 });
  const held: net.Socket[] = [];
  t.after(() => { for (const s of held) s.destroy(); });
  for (let i = 0; i < 3; i++) {
    const s = net.connect(port, "127.0.0.1");
    await new Promise((r) => s.once("connect", r));
    held.push(s);
  }
  await waitFor(async () => (await openConnections(proxy)) === 3, 5_000, "the router to count the three connections");
  const over = await rawExchange(port, [{ data: "GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n" }]);
  assert.match(over.text, /^HTTP\/1\.1 429 Too Many Requests/);
  assert.match(over.text, /too many open connections from 127\.0\.0\.1/);
  held.pop()!.destroy();
  await waitFor(async () => (await openConnections(proxy)) === 2, 5_000, "the router to see a connection close");
  assert.equal((await send({ port, host: "a.localhost" })).status, 200);
});

test("maintenance mode answers 503 with a page naming the app; turning it off serves again", async (t) => {
  const u = await upstream(t, "live");
  const { port, table } = await startProxy(t, [{ app: "shop", hosts: ["shop.localhost"], upstreams: [u.address], settings: { maintenance: true } }]);
  const r = await send({ port, host: "shop.localhost" });
  assert.equal(r.status, 503);
  assert.equal(r.body, "shop is down for maintenance; please try again later\n");
  assert.equal(r.headers["retry-after"], "60");
  assert.equal(u.connections(), 0);
  table.set({ app: "shop", hosts: ["shop.localhost"], upstreams: [u.address] });
  assert.equal((await send({ port, host: "shop.localhost" })).body, "live");
});

test("redirectHttps sends plain-HTTP requests to the same URL over HTTPS with 308", async (t) => {
  const u = await upstream(t, "live");
  const { port } = await startProxy(t, [{ app: "shop", hosts: ["shop.example.com"], upstreams: [u.address], settings: { redirectHttps: true } }], {}, { httpsPort: 8443 });
  const r = await send({ port, host: "shop.example.com:8080", path: "/cart?id=3" });
  assert.equal(r.status, 308);
  assert.equal(r.headers.location, "https://shop.example.com:8443/cart?id=3");
});

test("a paused (starting) app holds requests until it has upstreams, then serves them; past the deadline it answers 503", async (t) => {
  const u = await upstream(t, "ready");
  const { port, table } = await startProxy(t, [{ app: "new", hosts: ["new.localhost"], upstreams: [], settings: { paused: true } }], { pauseTimeoutMs: 5000 });
  const pending = Promise.all([send({ port, host: "new.localhost" }), send({ port, host: "new.localhost", path: "/x" })]);
  await waitForLookups(table, "new.localhost", 2);
  table.set({ app: "new", hosts: ["new.localhost"], upstreams: [u.address] });
  const replies = await pending;
  assert.deepEqual(replies.map((r) => [r.status, r.body]), [[200, "ready"], [200, "ready"]]);

  const short = await startProxy(t, [{ app: "slow", hosts: ["slow.localhost"], upstreams: [], settings: { paused: true } }], { pauseTimeoutMs: 300 });
  const late = await send({ port: short.port, host: "slow.localhost" });
  assert.equal(late.status, 503);
  assert.match(late.body, /^app "slow" is starting and did not become ready within 0s; try again shortly\n$/);
  // A start that fails (route unpaused with no upstreams) releases waiters with a 503 at once.
  table.set({ app: "fails", hosts: ["fails.localhost"], upstreams: [], settings: { paused: true } });
  const held = send({ port, host: "fails.localhost" });
  await waitForLookups(table, "fails.localhost");
  table.set({ app: "fails", hosts: ["fails.localhost"], upstreams: [] });
  const failed = await held;
  assert.equal(failed.status, 503);
  assert.equal(failed.body, 'app "fails" has no running release\n');
});

test("a request that waited (held for a start, or for a shared rate-limit decision) is routed as the table is when it goes on", async (t) => {
  // Held for a start while maintenance is turned on: released with the maintenance page, not to the app.
  const u = await upstream(t, "v1");
  const { port, table } = await startProxy(t, [{ app: "held", hosts: ["held.localhost"], upstreams: [], settings: { paused: true } }], { pauseTimeoutMs: 5000 });
  const held = send({ port, host: "held.localhost" });
  await waitForLookups(table, "held.localhost");
  table.set({ app: "held", hosts: ["held.localhost"], upstreams: [], settings: { paused: true, maintenance: true } });
  table.set({ app: "held", hosts: ["held.localhost"], upstreams: [u.address], settings: { maintenance: true } });
  const released = await held;
  assert.equal(released.status, 503);
  assert.match(released.body, /maintenance/);

  // A deploy switches while a shared (Redis) limiter decides: the request goes to the new release,
  // whose predecessor has stopped already.
  const old = await upstream(t, "old");
  const fresh = await upstream(t, "new");
  let decide!: (retryAfter: number) => void;
  const slowLimiter = { take: () => new Promise<number>((r) => (decide = r)), close: async () => {} };
  const table2 = new RouteTable([{ app: "shop", hosts: ["shop.localhost"], upstreams: [old.address] }]);
  const proxy = createProxyServer({ table: table2, limits: { rateLimitRps: 100 }, rateLimiter: slowLimiter });
  await proxy.listen(0, "127.0.0.1");
  t.after(() => proxy.close(0));
  const deciding = send({ port: (proxy.server.address() as AddressInfo).port, host: "shop.localhost" });
  await waitFor(() => decide !== undefined, 5_000, "the limiter was asked");
  table2.set({ app: "shop", hosts: ["shop.localhost"], upstreams: [fresh.address] });
  await old.close();
  decide(0);
  const reply = await deciding;
  assert.deepEqual([reply.status, reply.body], [200, "new"]);
});

test("metering counts requests by status class, bytes and latency per app, in Prometheus text; drain hands over bandwidth once", async (t) => {
  const u = await upstream(t, "hello");
  const { port, proxy } = await startProxy(t, [
    { app: "shop", hosts: ["shop.localhost"], upstreams: [u.address] },
    { app: "down", hosts: ["down.localhost"], upstreams: [] },
  ]);
  for (let i = 0; i < 3; i++) await send({ port, host: "shop.localhost", method: "POST", body: "x".repeat(100) });
  await send({ port, host: "down.localhost" });
  await waitFor(async () => /deck_router_requests_total\{app="down",code="5xx"\} 1/.test(await proxy.metering.metrics()), 2000, "metrics");
  const text = await proxy.metering.metrics();
  assert.match(text, /deck_router_requests_total\{app="shop",code="2xx"\} 3/);
  assert.match(text, /deck_router_request_duration_seconds_count\{app="shop"\} 3/);
  assert.match(text, /deck_router_rejected_total\{app="down",reason="no_release"\} 1/);
  const sent = Number(/deck_router_sent_bytes_total\{app="shop"\} (\d+)/.exec(text)?.[1]);
  const received = Number(/deck_router_received_bytes_total\{app="shop"\} (\d+)/.exec(text)?.[1]);
  assert.ok(received >= 300 + 3 * 40, `received ${received} bytes`);
  assert.ok(sent >= 3 * 5, `sent ${sent} bytes`);
  const usage = takeUsage(proxy.metering);
  const shop = usage.find((x) => x.app === "shop");
  assert.deepEqual(shop && { requests: shop.requests, bytesIn: shop.bytesIn, bytesOut: shop.bytesOut }, { requests: 3, bytesIn: received, bytesOut: sent });
  assert.deepEqual(takeUsage(proxy.metering), [], "a second batch has nothing new");
});

test("the access log has one JSON line per request with its request id, app, status and sizes", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "deck-access-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const u = await upstream(t, "hi");
  const log = new AccessLog(join(dir, "access.log"));
  const { port } = await startProxy(t, [{ app: "shop", hosts: ["shop.localhost"], upstreams: [u.address] }], {}, { accessLog: log });
  const ok = await send({ port, host: "shop.localhost", path: "/a?b=1", headers: { "X-Request-Id": "req-123" } });
  await send({ port, host: "nobody.localhost" });
  await send({ port, host: 'odd"host\\', path: '/q?x="1"\\' });
  assert.equal(ok.headers["x-request-id"], "req-123");
  await waitFor(async () => {
    log.flush();
    return (await readFile(join(dir, "access.log"), "utf8").catch(() => "")).split("\n").filter(Boolean).length === 3;
  }, 3000, "three log lines");
  const lines = (await readFile(join(dir, "access.log"), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines[0].request_id, "req-123");
  assert.equal(lines[0].app, "shop");
  assert.equal(lines[0].status, 200);
  assert.equal(lines[0].path, "/a?b=1");
  assert.equal(lines[0].method, "GET");
  assert.equal(lines[0].upstream, u.address);
  assert.ok(lines[0].bytes_out > 0 && lines[0].duration_ms >= 0);
  assert.equal(lines[1].app, null);
  assert.equal(lines[1].status, 404);
  assert.equal(lines[1].reason, "unknown_host");
  // Quotes and backslashes a client sends stay inside their JSON strings.
  assert.equal(lines[2].host, 'odd"host\\');
  assert.equal(lines[2].path, '/q?x="1"\\');
});

test("requests the router refused before reading them, and requests given up while held, are logged and counted too", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "deck-access-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "access.log");
  const log = new AccessLog(file);
  const { proxy, port, table } = await startProxy(t, [{ app: "new", hosts: ["new.localhost"], upstreams: [], settings: { paused: true } }],
    { pauseTimeoutMs: 10_000, headerTimeoutMs: 300, maxConnectionsPerIp: 3 }, { accessLog: log });
  const malformed = await rawExchange(port, [{ data: "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n" }]);
  assert.match(malformed.text, /^HTTP\/1\.1 400 /);
  const slow = await rawExchange(port, [{ data: "GET / HTTP/1.1\r\n" }]);
  assert.match(slow.text, /^HTTP\/1\.1 408 /);
  await send({ port, host: "nobody.localhost" });
  // A client that gives up while its request is held for a starting app.
  const held = net.connect(port, "127.0.0.1");
  held.on("error", () => {});
  held.write("GET /waiting HTTP/1.1\r\nHost: new.localhost\r\n\r\n");
  await waitForLookups(table, "new.localhost");
  held.destroy();
  // One connection over the cap of 3.
  const open = await Promise.all([0, 1, 2].map(() => rawClient(t, port, "")));
  const over = await rawExchange(port, []);
  assert.match(over.text, /^HTTP\/1\.1 429 /);
  for (const c of open) c.socket.destroy();

  await waitFor(async () => (await readFile(file, "utf8").catch(() => "")).split("\n").filter(Boolean).length >= 5, 5_000, "five log lines");
  const lines = (await readFile(file, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines.map((l) => [l.app, l.status, l.reason, l.client]).sort((a, b) => Number(a[1]) - Number(b[1])), [
    [null, 400, "bad_request", "127.0.0.1"],
    [null, 404, "unknown_host", "127.0.0.1"],
    [null, 408, "header_timeout", "127.0.0.1"],
    [null, 429, "too_many_connections", "127.0.0.1"],
    ["new", 499, "client_gone", "127.0.0.1"],
  ]);
  const metrics = await proxy.metering.metrics();
  for (const reason of ["bad_request", "header_timeout", "unknown_host", "too_many_connections"]) {
    assert.match(metrics, new RegExp(`deck_router_rejected_total\\{app="",reason="${reason}"\\} 1`));
  }
  assert.match(metrics, /deck_router_rejected_total\{app="new",reason="client_gone"\} 1/);
  assert.deepEqual(takeUsage(proxy.metering).map((u) => [u.app, u.requests]), [["new", 1]]);
});

test("an open WebSocket tunnel's bytes are counted as they go, its request when it closes, with the handshake's latency", async (t) => {
  const app = http.createServer((_req, res) => res.end("no"));
  app.on("upgrade", (_req, socket: net.Socket) => {
    socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n");
    socket.on("data", (d) => socket.write(d));
  });
  await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
  t.after(() => { app.closeAllConnections(); app.close(); });
  const { proxy, port } = await startProxy(t, [{ app: "chat", hosts: ["chat.localhost"], upstreams: [`127.0.0.1:${(app.address() as AddressInfo).port}`] }]);
  const client = await rawClient(t, port, "GET /ws HTTP/1.1\r\nHost: chat.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
  await waitFor(() => client.text().includes("\r\n\r\n"), 5_000, "the 101");
  client.socket.write("x".repeat(100_000));
  await waitFor(() => client.text().length > 100_000, 5_000, "the echo");
  await sleep(1_200);

  // Still open: its bytes are in the scrape and in the batch, with no request yet.
  assert.match(await proxy.metering.metrics(), /deck_router_received_bytes_total\{app="chat"\} 1\d{5}\b/);
  const open = takeUsage(proxy.metering);
  assert.equal(open.length, 1);
  assert.equal(open[0].requests, 0);
  assert.ok(open[0].bytesIn > 100_000 && open[0].bytesOut > 100_000, JSON.stringify(open));

  client.socket.end();
  await waitFor(() => takeUsage(proxy.metering).some((u) => u.requests === 1), 5_000, "the tunnel counted as one request when it closed");
  const text = await proxy.metering.metrics();
  assert.match(text, /deck_router_requests_total\{app="chat",code="1xx"\} 1/);
  // Its latency is the handshake's (well under a second), not the tunnel's lifetime (over a second).
  assert.match(text, /deck_router_request_duration_seconds_bucket\{le="0\.5",app="chat"\} 1/);
});

test("a slow upload's time is not the app's latency: it counts from the end of the body to the app's answer", async (t) => {
  const app = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => res.end("stored"));
  });
  await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
  t.after(() => { app.closeAllConnections(); app.close(); });
  const { proxy, port } = await startProxy(t, [{ app: "uploads", hosts: ["uploads.localhost"], upstreams: [`127.0.0.1:${(app.address() as AddressInfo).port}`] }]);
  const client = await rawClient(t, port, "POST /upload HTTP/1.1\r\nHost: uploads.localhost\r\nContent-Length: 30\r\n\r\n");
  // The client takes 1.2 s to send its 30 bytes; the app answers as soon as they are in.
  for (let i = 0; i < 3; i++) {
    client.socket.write("x".repeat(10));
    await sleep(400);
  }
  await waitFor(() => client.text().includes("stored"), 5_000, "the answer");
  await waitFor(async () => /deck_router_request_duration_seconds_count\{app="uploads"\} 1/.test(await proxy.metering.metrics()), 5_000, "the request counted");
  const text = await proxy.metering.metrics();
  assert.match(text, /deck_router_request_duration_seconds_bucket\{le="0\.5",app="uploads"\} 1/, "well under the 1.2 s the upload took");
});

test("the rest of an upload the app answered early is charged to no request, not to the next one on the connection", async (t) => {
  const early = await upstream(t, "no", (_req, res) => { res.writeHead(401, { "Content-Length": "2" }); res.end("no"); });
  const other = await upstream(t, "other");
  const { proxy, port, table } = await startProxy(t, [
    { app: "uploads", hosts: ["uploads.localhost"], upstreams: [early.address] },
    { app: "other", hosts: ["other.localhost"], upstreams: [other.address] },
  ]);
  const client = await rawClient(t, port, "POST /upload HTTP/1.1\r\nHost: uploads.localhost\r\nContent-Length: 1000000\r\n\r\n");
  await waitFor(() => client.text().includes("\r\n\r\nno"), 5_000, "the early answer");
  for (let sent = 0; sent < 1_000_000; sent += 100_000) client.socket.write(Buffer.alloc(100_000, 97));
  await sleep(300);
  client.socket.write("GET / HTTP/1.1\r\nHost: other.localhost\r\n\r\n");
  await waitFor(() => client.text().includes("other"), 5_000, "the next answer");
  const usage = Object.fromEntries(takeUsage(proxy.metering).map((u) => [u.app, u.bytesIn]));
  assert.ok(usage.other < 200, `the next request is charged its own bytes only: ${usage.other}`);
  assert.ok(usage.uploads < 200_000, `the upload is charged what was read before its answer: ${usage.uploads}`);

  // The router answers at once (maintenance) while the body arrives in the same read as the head:
  // that request is charged what came with it, and the next one only its own bytes (never less).
  table.set({ app: "uploads", hosts: ["uploads.localhost"], upstreams: [early.address], settings: { maintenance: true } });
  const again = await rawClient(t, port, `POST /up HTTP/1.1\r\nHost: uploads.localhost\r\nContent-Length: 5000\r\n\r\n${"a".repeat(5000)}`);
  await waitFor(() => again.text().includes("maintenance"), 5_000, "the maintenance page");
  again.socket.write("GET / HTTP/1.1\r\nHost: other.localhost\r\n\r\n");
  await waitFor(() => again.text().includes("other"), 5_000, "the next answer");
  const second = Object.fromEntries(takeUsage(proxy.metering).map((u) => [u.app, u.bytesIn]));
  assert.ok(second.uploads >= 5000, `the maintenance answer's request: ${second.uploads}`);
  assert.ok(second.other > 0 && second.other < 200, `the next request: ${second.other}`);
});

/** A raw connection that sends `wire` and collects what comes back. */
async function rawClient(t: TestContext, port: number, wire: string): Promise<{ socket: net.Socket; text: () => string }> {
  const socket = net.connect(port, "127.0.0.1");
  t.after(() => socket.destroy());
  socket.on("error", () => {});
  let text = "";
  socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.write(wire);
  return { socket, text: () => text };
}

test("WebSocket handshakes: redirected like any request, counted when the app declines, and given up when the client leaves", async (t) => {
  const appSockets: net.Socket[] = [];
  const appEnded: string[] = [];
  const u = await upstream(t, "live");
  // The app declines /declined with a stream (no 101) and never answers /silent.
  u.server.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
    appSockets.push(socket);
    socket.on("error", () => {});
    socket.on("end", () => appEnded.push(req.url ?? ""));
    socket.resume();
    if (req.url === "/declined") socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello\n\r\n");
  });
  const dir = await mkdtemp(join(tmpdir(), "deck-upgrade-log-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const accessLog = new AccessLog(join(dir, "access.log"));
  const { port, proxy } = await startProxy(t, [
    { app: "secure", hosts: ["secure.localhost"], upstreams: [u.address], settings: { redirectHttps: true } },
    { app: "chat", hosts: ["chat.localhost"], upstreams: [u.address] },
  ], {}, { accessLog, httpsPort: 8443 });
  const handshake = (host: string, path: string) => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

  const redirected = await rawClient(t, port, handshake("secure.localhost", "/socket"));
  await waitFor(() => redirected.text().includes("\r\n\r\n"), 5_000, "the redirect");
  assert.match(redirected.text(), /^HTTP\/1\.1 308 Permanent Redirect\r\n/);
  assert.match(redirected.text(), /\r\nLocation: https:\/\/secure\.localhost:8443\/socket\r\n/);

  const declined = await rawClient(t, port, handshake("chat.localhost", "/declined"));
  await waitFor(() => declined.text().includes("hello"), 5_000, "the app's answer");
  assert.match(declined.text(), /^HTTP\/1\.1 200 OK\r\n/);
  declined.socket.destroy();
  await waitFor(() => appEnded.includes("/declined"), 5_000, "the app's connection to end with the client's");

  const silent = await rawClient(t, port, handshake("chat.localhost", "/silent"));
  await waitFor(() => proxy.inflight(u.address) === 1, 5_000, "the handshake to reach the app");
  // Bytes sent early (before the app's answer), then the client's side closed.
  silent.socket.write("early");
  await sleep(100);
  silent.socket.end();
  await waitFor(() => proxy.inflight(u.address) === 0, 5_000, "the handshake to be given up");

  // Each one is metered and logged.
  await accessLog.close();
  const lines = (await readFile(join(dir, "access.log"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { app: string; path: string; status: number; reason?: string });
  assert.deepEqual(lines.map((l) => [l.app, l.path, l.status, l.reason ?? null]).sort(), [
    ["chat", "/declined", 200, null], ["chat", "/silent", 499, null], ["secure", "/socket", 308, "redirect_https"],
  ]);
  assert.deepEqual(takeUsage(proxy.metering).map((x) => [x.app, x.requests]).sort(), [["chat", 2], ["secure", 1]]);
});

test("a request held for a starting app gets 503 when the router shuts down, not a reset", async () => {
  const table = new ObservedTable([{ app: "new", hosts: ["new.localhost"], upstreams: [], settings: { paused: true } }]);
  const proxy = createProxyServer({ table, limits: { pauseTimeoutMs: 30_000 } });
  await proxy.listen(0, "127.0.0.1");
  const port = (proxy.server.address() as AddressInfo).port;
  const held = send({ port, host: "new.localhost" });
  await waitForLookups(table, "new.localhost");
  await proxy.close(1000);
  const r = await held;
  assert.equal(r.status, 503);
  assert.equal(r.body, 'app "new" has no running release\n');
});
