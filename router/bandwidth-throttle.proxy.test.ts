/**
 * The per-app bandwidth limit (RouteSettings.bandwidthBytesPerSecond) through real HTTP: downloads of a
 * limited app take at least as long as its rate allows, share it, arrive intact, and leave other apps
 * alone. Only lower bounds on time are asserted: a loaded machine makes downloads slower, never faster.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { test, type TestContext } from "node:test";
import type { Route } from "../core/index.ts";
import { createProxyServer, type ProxyServer } from "./proxy-server.ts";
import { RouteTable } from "./route-table.ts";
import { startUpstream, waitFor } from "./test-support.ts";
import { CertStore, createSelfSignedCertificate, createTlsFrontend } from "./tls-server.ts";

const RATE = 100_000;
const SIZE = 300_000;
/**
 * The most one read from an app's connection brings (Node reads sockets into 64 KiB buffers). A piece
 * already read is passed on before the wait it causes, so each download in flight may get up to one
 * read beyond its share.
 */
const READ = 64 * 1024;

/**
 * The least time `bytes` can take through a bucket of one second's worth at RATE, with `downloads`
 * at once: all but the first second's worth and one read each must wait for the refill.
 */
const leastMs = (bytes: number, downloads: number) => ((bytes - RATE - downloads * READ) / RATE) * 1000;

const digest = (b: Buffer) => createHash("sha256").update(b).digest("hex");

interface Download {
  status: number;
  body: Buffer;
  /** From sending the request to the last byte of the body. */
  ms: number;
}

interface Started {
  proxy: ProxyServer;
  port: number;
  table: RouteTable;
}

async function startProxy(t: TestContext, routes: Route[]): Promise<Started> {
  const table = new RouteTable(routes);
  const proxy = createProxyServer({ table, limits: { rateLimitRps: 0 } });
  await proxy.listen(0, "127.0.0.1");
  t.after(() => proxy.close(0));
  return { proxy, port: (proxy.server.address() as AddressInfo).port, table };
}

/**
 * An app serving `body`: with its length, or (for `/chunked`) chunked in 10,000-byte pieces, so a
 * read holds many pieces of the body.
 */
async function serving(t: TestContext, body: Buffer): Promise<string> {
  const u = await startUpstream("body", (req, res) => {
    req.resume();
    if (req.url === "/chunked") {
      res.writeHead(200, { "Content-Type": "application/octet-stream" });
      for (let i = 0; i < body.length; i += 10_000) res.write(body.subarray(i, i + 10_000));
      res.end();
    } else {
      res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": body.length });
      res.end(body);
    }
  });
  t.after(() => u.close());
  return u.address;
}

/** GETs `path` from `host` through the router; `onResponse` is called with the response once its head arrives. */
function download(port: number, host: string, path = "/", onResponse?: (res: http.IncomingMessage, req: http.ClientRequest) => void): Promise<Download> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, headers: { Host: host }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), ms: performance.now() - started }));
      onResponse?.(res, req);
    });
    req.on("error", reject);
  });
}

test("a download from a limited app takes as long as its rate allows and arrives intact", async (t) => {
  const body = randomBytes(SIZE);
  const upstream = await serving(t, body);
  const { port, proxy } = await startProxy(t, [{ app: "slow", hosts: ["slow.localhost"], upstreams: [upstream], settings: { bandwidthBytesPerSecond: RATE } }]);
  const r = await download(port, "slow.localhost");
  assert.equal(r.status, 200);
  assert.equal(digest(r.body), digest(body), "the body arrives whole and unchanged");
  assert.ok(r.ms >= leastMs(SIZE, 1), `${SIZE} bytes at ${RATE}/s came in ${Math.round(r.ms)} ms, under ${Math.round(leastMs(SIZE, 1))} ms`);
  assert.equal(proxy.bandwidth.has("slow"), true, "the app's bucket is still refilling");
});

test("two downloads from a limited app at once share its rate", async (t) => {
  const body = randomBytes(SIZE);
  const upstream = await serving(t, body);
  const { port } = await startProxy(t, [{ app: "slow", hosts: ["slow.localhost"], upstreams: [upstream], settings: { bandwidthBytesPerSecond: RATE } }]);
  const started = performance.now();
  const both = await Promise.all([download(port, "slow.localhost", "/chunked"), download(port, "slow.localhost", "/chunked")]);
  const ms = performance.now() - started;
  for (const r of both) {
    assert.equal(r.status, 200);
    assert.equal(digest(r.body), digest(body));
  }
  assert.ok(ms >= leastMs(2 * SIZE, 2), `2 × ${SIZE} bytes at ${RATE}/s came in ${Math.round(ms)} ms, under ${Math.round(leastMs(2 * SIZE, 2))} ms`);
});

test("another app on the same router is not held back by a limited one, and a download left midway is let go", async (t) => {
  // Thirty seconds' worth at the limit: it is still under way when the other app's download is done.
  const large = randomBytes(30 * RATE);
  const other = randomBytes(SIZE);
  const { port, proxy } = await startProxy(t, [
    { app: "slow", hosts: ["slow.localhost"], upstreams: [await serving(t, large)], settings: { bandwidthBytesPerSecond: RATE } },
    { app: "fast", hosts: ["fast.localhost"], upstreams: [await serving(t, other)] },
  ]);
  let slowReq: http.ClientRequest | undefined;
  let slowBytes = 0;
  let slowEnded = false;
  const slowStarted = new Promise<void>((resolve) => {
    void download(port, "slow.localhost", "/", (res, req) => {
      slowReq = req;
      res.on("data", (c: Buffer) => {
        slowBytes += c.length;
        resolve();
      });
      res.on("end", () => void (slowEnded = true));
    }).catch(() => undefined);
  });
  await slowStarted;
  const fast = await download(port, "fast.localhost");
  assert.equal(fast.status, 200);
  assert.equal(digest(fast.body), digest(other));
  assert.equal(slowEnded, false, "the limited download is still under way");
  assert.ok(slowBytes < large.length);
  assert.equal(proxy.bandwidth.has("fast"), false, "an app without a limit has no bucket");

  // The client leaves during a wait: the router ends the exchange (its timer too, or the test would hang).
  slowReq!.destroy();
  await waitFor(() => proxy.totalInflight() === 0, 5_000, "the abandoned download to be let go");
});

test("lifting the limit drops the app's bucket, and the next download is not counted", async (t) => {
  const body = randomBytes(SIZE);
  const upstream = await serving(t, body);
  const route: Route = { app: "slow", hosts: ["slow.localhost"], upstreams: [upstream] };
  const { port, proxy, table } = await startProxy(t, [{ ...route, settings: { bandwidthBytesPerSecond: RATE } }]);
  const limited = await download(port, "slow.localhost");
  assert.equal(digest(limited.body), digest(body));
  assert.equal(proxy.bandwidth.has("slow"), true);

  table.set(route);
  assert.equal(proxy.bandwidth.size, 0, "the bucket went with the limit");
  const free = await download(port, "slow.localhost");
  assert.equal(free.status, 200);
  assert.equal(digest(free.body), digest(body));
  assert.equal(proxy.bandwidth.size, 0, "a download without a limit makes no bucket");
});

test("a limited download to a client that stops reading for a while resumes and completes", { timeout: 60_000 }, async (t) => {
  // The client stops for 400 ms after every 2 MiB: enough to fill the socket buffers at times, so the
  // router also waits for the client's drain, sometimes during a bandwidth wait; the limit applies
  // throughout. A wait that never ends would leave the download hanging.
  const rate = 4 * 1024 * 1024;
  const body = randomBytes(16 * 1024 * 1024);
  const upstream = await serving(t, body);
  const { port } = await startProxy(t, [{ app: "slow", hosts: ["slow.localhost"], upstreams: [upstream], settings: { bandwidthBytesPerSecond: rate } }]);
  const r = await download(port, "slow.localhost", "/", (res) => {
    let seen = 0;
    let next = 0;
    res.on("data", (c: Buffer) => {
      seen += c.length;
      if (seen < next) return;
      next = seen + 4 * 1024 * 1024;
      res.pause();
      setTimeout(() => res.resume(), 500);
    });
  });
  assert.equal(r.status, 200);
  assert.equal(digest(r.body), digest(body));
  assert.ok(r.ms >= ((body.length - rate - READ) / rate) * 1000, `came in ${Math.round(r.ms)} ms`);
});

test("an HTTP/2 download from a limited app is limited the same way", async (t) => {
  const body = randomBytes(SIZE);
  const host = "slow.example.com";
  const table = new RouteTable([{ app: "slow", hosts: [host], upstreams: [await serving(t, body)], settings: { bandwidthBytesPerSecond: RATE } }]);
  const proxy = createProxyServer({ table, limits: { rateLimitRps: 0 } });
  const certs = await CertStore.create();
  const pair = await createSelfSignedCertificate(host);
  certs.replace([{ hosts: [host], ...pair }]);
  const frontend = createTlsFrontend({ proxy, certs });
  await frontend.listen(0, "127.0.0.1");
  t.after(() => Promise.all([proxy.close(0), frontend.close(0)]));
  const port = (frontend.server.address() as AddressInfo).port;
  const session = http2.connect(`https://${host}:${port}`, { ca: pair.cert, servername: host, host: "127.0.0.1", lookup: (_h, _o, cb) => cb(null, "127.0.0.1", 4) } as http2.SecureClientSessionOptions);
  session.on("error", () => {});
  t.after(() => session.destroy());

  const started = performance.now();
  const r = await new Promise<Download>((resolve, reject) => {
    const stream = session.request({ ":path": "/" });
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on("response", (headers) => void (status = Number(headers[":status"])));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => resolve({ status, body: Buffer.concat(chunks), ms: performance.now() - started }));
    stream.on("error", reject);
  });
  assert.equal(r.status, 200);
  assert.equal(digest(r.body), digest(body));
  assert.ok(r.ms >= leastMs(SIZE, 1), `${SIZE} bytes at ${RATE}/s came in ${Math.round(r.ms)} ms over HTTP/2`);
});
