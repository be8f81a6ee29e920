import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import tls from "node:tls";
import { isDeckError, type Route } from "../core/index.ts";
import { AccessLog } from "./access-log.ts";
import { loadCertsFile } from "./certs-file.ts";
import { createRouterControl, type RouterControlClient } from "./control-client.ts";
import { createControlServer } from "./control-server.ts";
import { createProxyServer } from "./proxy-server.ts";
import { RouteTable } from "./route-table.ts";
import { send, sleep, startUpstream, takeUsage, waitFor } from "./test-support.ts";
import { CertStore, createSelfSignedCertificate, createTlsFrontend, FALLBACK_SUBJECT, MAX_CONCURRENT_STREAMS, type KeyPair } from "./tls-server.ts";

interface Router {
  control: RouterControlClient;
  httpPort: number;
  httpsPort: number;
  certsFile: string;
  /** What the router logged. */
  logs: string[];
}

/** Proxy + HTTPS front end + control API in this process; routes `shop.example.com` and `*.shop.test` hosts to an echo upstream. */
async function startRouter(t: TestContext, options: { certsMaxBodyBytes?: number } = {}): Promise<Router> {
  const dir = await mkdtemp(join(tmpdir(), "deck-router-tls-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const upstream = await startUpstream("echo", (req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const text = `${req.method} ${req.url} host=${req.headers.host} proto=${req.headers["x-forwarded-proto"]} body=${body}`;
      res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(text), Connection: "keep-alive", "Keep-Alive": "timeout=5" });
      res.end(text);
    });
  });
  t.after(() => upstream.close());
  const table = new RouteTable([{ app: "shop", hosts: ["shop.example.com", "api.shop.test"], upstreams: [upstream.address] }]);
  const proxy = createProxyServer({ table });
  await proxy.listen(0, "127.0.0.1");
  const logs: string[] = [];
  const log = (line: string) => void logs.push(line);
  const certs = await CertStore.create(log);
  const frontend = createTlsFrontend({ proxy, certs });
  await frontend.listen(0, "127.0.0.1");
  t.after(() => Promise.all([proxy.close(0), frontend.close(0)]));
  const socket = join(dir, "router.sock");
  const certsFile = join(dir, "certs.json");
  const control = createControlServer({
    table, inflight: (u) => proxy.inflight(u), routesFile: join(dir, "routes.json"), log,
    certs: { store: certs, file: certsFile, maxBodyBytes: options.certsMaxBodyBytes }, challenges: proxy.challenges,
  });
  await new Promise<void>((resolve) => control.listen(socket, resolve));
  t.after(() => new Promise((resolve) => control.close(resolve)));
  return {
    control: createRouterControl(socket),
    httpPort: (proxy.server.address() as AddressInfo).port,
    httpsPort: (frontend.server.address() as AddressInfo).port,
    certsFile,
    logs,
  };
}

/** The subject CN the server presents for `servername` (undefined = no SNI). */
function presentedName(port: number, servername: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false }, () => {
      const cn = socket.getPeerCertificate().subject?.CN;
      socket.end();
      resolve(String(cn));
    });
    socket.on("error", reject);
  });
}

function httpsGet(port: number, servername: string, path: string, ca?: string): Promise<{ status: number; body: string; alpn: string | false; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, servername, path, headers: { host: servername }, ca, rejectUnauthorized: ca !== undefined, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, alpn: (res.socket as tls.TLSSocket).alpnProtocol ?? false, headers: res.headers }));
    });
    req.on("error", reject);
  });
}

function h2Request(port: number, servername: string, ca: string, options: { method?: string; path: string; body?: string }): Promise<{ alpn: string | undefined; status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://${servername}:${port}`, { ca, servername, host: "127.0.0.1", lookup: (_h, _o, cb) => cb(null, "127.0.0.1", 4) } as http2.SecureClientSessionOptions);
    session.on("error", reject);
    const stream = session.request({ ":method": options.method ?? "GET", ":path": options.path });
    let status = 0;
    let headers: http2.IncomingHttpHeaders = {};
    stream.on("response", (h) => {
      headers = h;
      status = Number(h[":status"]);
    });
    let body = "";
    stream.setEncoding("utf8");
    stream.on("data", (c) => (body += c));
    stream.on("end", () => {
      const alpn = session.alpnProtocol;
      session.close();
      resolve({ alpn, status, headers, body });
    });
    stream.on("error", reject);
    stream.end(options.body);
  });
}

test("HTTPS picks each host's certificate by SNI, wildcards one label deep, and falls back to the self-signed one", async (t) => {
  const r = await startRouter(t);
  const shop = await createSelfSignedCertificate("shop.example.com");
  const wild = await createSelfSignedCertificate("*.shop.test");
  await r.control.setCertificates([{ hosts: ["shop.example.com"], ...shop }, { hosts: ["*.shop.test"], ...wild }]);

  assert.equal(await presentedName(r.httpsPort, "shop.example.com"), "shop.example.com");
  assert.equal(await presentedName(r.httpsPort, "SHOP.example.com."), "shop.example.com");
  assert.equal(await presentedName(r.httpsPort, "api.shop.test"), "*.shop.test");
  assert.equal(await presentedName(r.httpsPort, "a.b.shop.test"), FALLBACK_SUBJECT, "a wildcard covers one label only");
  assert.equal(await presentedName(r.httpsPort, "shop.test"), FALLBACK_SUBJECT);
  assert.equal(await presentedName(r.httpsPort, "other.example.com"), FALLBACK_SUBJECT);
  assert.equal(await presentedName(r.httpsPort, undefined), FALLBACK_SUBJECT, "a client without SNI gets the fallback");
});

test("HTTPS serves the app over HTTP/2 by ALPN and over HTTP/1.1 for clients without it, marked as https", async (t) => {
  const r = await startRouter(t);
  const shop: KeyPair = await createSelfSignedCertificate("shop.example.com");
  await r.control.setCertificates([{ hosts: ["shop.example.com"], ...shop }]);

  const one = await httpsGet(r.httpsPort, "shop.example.com", "/hello?x=1");
  assert.equal(one.status, 200);
  assert.equal(one.body, "GET /hello?x=1 host=shop.example.com proto=https body=");
  assert.equal(one.alpn, false, "https.get offers no ALPN, so HTTP/1.1");
  // An absolute-form target names the host (RFC 9112 §3.2.2), as on the plain port.
  const absolute = await httpsGet(r.httpsPort, "shop.example.com", "https://api.shop.test/abs");
  assert.equal(absolute.body, "GET /abs host=api.shop.test proto=https body=");

  // The certificate is trusted by name here, so the chain presented is the one set for the host.
  const two = await h2Request(r.httpsPort, "shop.example.com", shop.cert, { method: "POST", path: "/orders", body: "a=1" });
  assert.equal(two.alpn, "h2");
  assert.equal(two.status, 200);
  assert.equal(two.body, `POST /orders host=shop.example.com:${r.httpsPort} proto=https body=a=1`);
  // Connection-specific headers of the upstream's HTTP/1.1 answer are not valid in HTTP/2 (RFC 9113 §8.2.2).
  assert.equal(two.headers.connection, undefined);
  assert.equal(two.headers["keep-alive"], undefined);
  assert.match(String(two.headers["x-request-id"]), /.+/);

  const unknown = await h2Request(r.httpsPort, "nobody.example.com", (await presentedCert(r.httpsPort)).cert, { path: "/" }).catch((e: Error) => e);
  assert.ok(unknown instanceof Error, "the fallback certificate is not trusted for other names");
});

async function presentedCert(port: number): Promise<{ cert: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.end();
      resolve({ cert: `-----BEGIN CERTIFICATE-----\n${raw.toString("base64").replace(/.{64}/g, "$&\n")}\n-----END CERTIFICATE-----\n` });
    });
    socket.on("error", reject);
  });
}

test("certificates are saved 0600 for the next router start; a bad entry is left out and logged, never the whole list", async (t) => {
  const r = await startRouter(t);
  const shop = await createSelfSignedCertificate("shop.example.com");
  await r.control.setCertificates([{ hosts: ["shop.example.com"], ...shop }]);
  assert.equal((await stat(r.certsFile)).mode & 0o777, 0o600);
  const saved = await loadCertsFile(r.certsFile);
  assert.ok(saved.ok);
  assert.deepEqual(saved.certs, [{ hosts: ["shop.example.com"], ...shop }]);

  // One tenant's bad name, garbage and a certificate whose key does not match, beside good ones.
  const other = await createSelfSignedCertificate("other.example.com");
  const api = await createSelfSignedCertificate("api.shop.test");
  await r.control.setCertificates([
    { hosts: ["shop.example-"], ...other },
    { hosts: ["bad host!"], cert: "x", key: "y" },
    { hosts: ["broken.example.com"], cert: shop.cert, key: other.key },
    { hosts: ["shop.example.com", "Shop.Example-"], ...shop },
    { hosts: ["api.shop.test"], ...api },
    null as never,
  ]);
  assert.equal(await presentedName(r.httpsPort, "shop.example.com"), "shop.example.com");
  assert.equal(await presentedName(r.httpsPort, "api.shop.test"), "api.shop.test");
  assert.equal(await presentedName(r.httpsPort, "shop.example-"), FALLBACK_SUBJECT);
  assert.equal(await presentedName(r.httpsPort, "broken.example.com"), FALLBACK_SUBJECT);
  const left = r.logs.filter((l) => l.startsWith("certs: left out"));
  assert.deepEqual(left, [
    "certs: left out certificate 5: expected {hosts, cert, key}",
    'certs: left out "shop.example-" is not a host name',
    'certs: left out "bad host!" is not a host name',
    'certs: left out "Shop.Example-" is not a host name',
  ]);
  assert.ok(r.logs.some((l) => /^certs: the certificate for broken\.example\.com is unusable \(.+\); serving the self-signed fallback for it$/.test(l)), r.logs.join("\n"));
  const kept = await loadCertsFile(r.certsFile);
  assert.ok(kept.ok);
  assert.deepEqual(kept.certs.map((c) => c.hosts), [["broken.example.com"], ["shop.example.com"], ["api.shop.test"]]);
});

test("the router takes a certificate list far over 8 MiB; one over its limit is refused with the reason", async (t) => {
  const r = await startRouter(t, { certsMaxBodyBytes: 16 * 1024 * 1024 });
  const pairs = await Promise.all(Array.from({ length: 4 }, (_, i) => createSelfSignedCertificate(`customer-${i}.example.com`)));
  // 9,000 customers with a leaf and an intermediate each, as Let's Encrypt issues them: over the
  // 8 MiB every other control request is limited to.
  const many = Array.from({ length: 9_000 }, (_, i) => ({ hosts: [`customer-${i}.example.com`], cert: `${pairs[i % 4]!.cert}\n${pairs[(i + 1) % 4]!.cert}\n`, key: pairs[i % 4]!.key }));
  assert.ok(JSON.stringify(many).length > 10 * 1024 * 1024);
  await r.control.setCertificates(many);
  assert.equal(await presentedName(r.httpsPort, "customer-8998.example.com"), "customer-2.example.com");
  assert.equal(await presentedName(r.httpsPort, "customer-1.example.com"), "customer-1.example.com");

  const tooMany = [...many, ...many];
  const refused = await r.control.setCertificates(tooMany).catch((e: unknown) => e);
  assert.ok(isDeckError(refused));
  assert.equal(refused.code, "certificates_too_large");
  assert.match(refused.message, /^the router takes at most 16 MiB of certificates and their keys at once, and deck holds \d+ MiB; remove certificates no longer needed \(certs:remove, domains:remove\)$/);
  assert.equal(await presentedName(r.httpsPort, "customer-8998.example.com"), "customer-2.example.com");
});

test("the plain HTTP port answers ACME HTTP-01 challenges for any host while the token is set", async (t) => {
  const r = await startRouter(t);
  const path = "/.well-known/acme-challenge/tok_EN-1";
  assert.equal((await send({ port: r.httpPort, host: "unrouted.example.org", path })).status, 404);
  await r.control.setAcmeChallenge("tok_EN-1", "tok_EN-1.thumbprint_x");
  for (const host of ["unrouted.example.org", "shop.example.com"]) {
    const reply = await send({ port: r.httpPort, host, path });
    assert.equal(reply.status, 200);
    assert.equal(reply.body, "tok_EN-1.thumbprint_x");
  }
  // Other paths of a routed host still reach the app.
  assert.equal((await send({ port: r.httpPort, host: "shop.example.com", path: "/.well-known/other" })).status, 200);
  await r.control.removeAcmeChallenge("tok_EN-1");
  assert.equal((await send({ port: r.httpPort, host: "shop.example.com", path })).status, 404);
});

test("a WebSocket-style upgrade over HTTPS reaches the app, and its tunnel outlives the header timeout", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "deck-router-tls-ws-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const upstream = http.createServer();
  upstream.on("upgrade", (req, socket) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nX-Proto: ${req.headers["x-forwarded-proto"]}\r\n\r\n`);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => { upstream.closeAllConnections(); upstream.close(resolve); }));
  const table = new RouteTable([{ app: "ws", hosts: ["ws.example.com"], upstreams: [`127.0.0.1:${(upstream.address() as AddressInfo).port}`] }]);
  const proxy = createProxyServer({ table, limits: { headerTimeoutMs: 1000 } });
  const frontend = createTlsFrontend({ proxy, certs: await CertStore.create() });
  await frontend.listen(0, "127.0.0.1");
  t.after(() => Promise.all([proxy.close(0), frontend.close(0)]));
  const port = (frontend.server.address() as AddressInfo).port;

  const echoed = await new Promise<string>((resolve, reject) => {
    const req = https.request({ host: "127.0.0.1", port, servername: "ws.example.com", rejectUnauthorized: false, headers: { Host: "ws.example.com", Connection: "Upgrade", Upgrade: "echo" } });
    req.on("upgrade", (res, socket) => {
      assert.equal(res.statusCode, 101);
      assert.equal(res.headers["x-proto"], "https");
      socket.once("data", (d: Buffer) => {
        socket.destroy();
        resolve(d.toString());
      });
      // Quiet for longer than the header timeout: a tunnel is not a request still arriving.
      setTimeout(() => socket.write("ping"), 2500);
    });
    req.on("error", reject);
    req.end();
  });
  assert.equal(echoed, "ping");
});

test("an app with hsts gets Strict-Transport-Security on HTTPS only; redirectHttps sends plain HTTP to the HTTPS port", async (t) => {
  const upstream = await startUpstream("secure-app");
  t.after(() => upstream.close());
  const table = new RouteTable([{ app: "bank", hosts: ["bank.example.com"], upstreams: [upstream.address], settings: { hsts: true, redirectHttps: true } }]);
  const proxy = createProxyServer({ table, httpsPort: 443 });
  await proxy.listen(0, "127.0.0.1");
  const frontend = createTlsFrontend({ proxy, certs: await CertStore.create() });
  await frontend.listen(0, "127.0.0.1");
  t.after(() => Promise.all([proxy.close(0), frontend.close(0)]));
  const httpsPort = (frontend.server.address() as AddressInfo).port;
  const secure = await httpsGet(httpsPort, "bank.example.com", "/account");
  assert.equal(secure.status, 200);
  assert.equal(secure.body, "secure-app");
  assert.equal(secure.headers["strict-transport-security"], "max-age=31536000; includeSubDomains");
  const plain = await send({ port: (proxy.server.address() as AddressInfo).port, host: "bank.example.com", path: "/account?x=1" });
  assert.equal(plain.status, 308);
  assert.equal(plain.headers.location, "https://bank.example.com/account?x=1");
  assert.equal(plain.headers["strict-transport-security"], undefined);
});

test("HTTP/2 requests are metered by the size of their headers and bodies, also when no length is declared", async (t) => {
  const upstream = await startUpstream("stream", (req, res) => {
    req.resume();
    req.on("end", () => {
      // No Content-Length: the body is streamed in ten pieces.
      res.writeHead(200, { "Content-Type": "application/octet-stream" });
      for (let i = 0; i < 10; i++) res.write(Buffer.alloc(10_000, 97));
      res.end();
    });
  });
  t.after(() => upstream.close());
  const { proxy, port, pair } = await startH2(t, upstream.address, {}, { app: "stream", hosts: ["stream.example.com"], settings: { maxBodyBytes: 50_000 } });

  // An HTTP/2 client sends no Content-Length unless asked to.
  const r = await h2Request(port, "stream.example.com", pair.cert, { method: "POST", path: "/upload", body: "x".repeat(50_000) });
  assert.equal(r.alpn, "h2");
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 100_000);
  assert.equal(r.headers["content-length"], undefined);

  const metered = async () => {
    let usage = takeUsage(proxy.metering);
    for (let i = 0; i < 100 && usage.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      usage = takeUsage(proxy.metering);
    }
    assert.equal(usage.length, 1, "the request was metered");
    assert.equal(usage[0].app, "stream");
    assert.equal(usage[0].requests, 1);
    return usage[0];
  };
  /**
   * Header fields as received, each as `name: value\r\n`, plus the blank line. `date` counts when it
   * came from the app; on the router's own answers Node adds it after the router is done.
   */
  const headBytes = (headers: http2.IncomingHttpHeaders, withDate: boolean) =>
    Object.entries(headers).reduce((n, [name, value]) => (name === "date" && !withDate ? n : n + name.length + String(value).length + 4), 2);
  // The bodies exactly, plus their header fields before compression.
  const u = await metered();
  const sentFields = ":method".length + "POST".length + 4 + ":path".length + "/upload".length + 4;
  assert.ok(u.bytesIn >= 50_000 + sentFields && u.bytesIn < 51_000, `bytes in: ${u.bytesIn}`);
  assert.equal(u.bytesOut, 100_000 + headBytes(r.headers, true));

  // Over the app's limit, without a declared length: the router's own 413, counted with its body.
  const refused = await h2Request(port, "stream.example.com", pair.cert, { method: "POST", path: "/upload", body: "x".repeat(60_000) });
  assert.equal(refused.status, 413);
  assert.match(refused.body, /larger than the 50000 bytes stream accepts/);
  const v = await metered();
  assert.equal(v.bytesOut, Buffer.byteLength(refused.body) + headBytes(refused.headers, false));
});

/**
 * A proxy and its HTTPS front end with a certificate for the route's host (app "app" at
 * `app.example.com` on `upstream` unless `route` says otherwise), closed after the test; `connect`
 * opens an HTTP/2 session to it.
 */
async function startH2(t: TestContext, upstream: string, options: Partial<Parameters<typeof createProxyServer>[0]> = {}, route: Partial<Route> = {}) {
  const entry: Route = { app: "app", hosts: ["app.example.com"], upstreams: [upstream], ...route };
  const host = entry.hosts[0];
  const proxy = createProxyServer({ table: new RouteTable([entry]), ...options });
  const certs = await CertStore.create();
  const pair = await createSelfSignedCertificate(host);
  certs.replace([{ hosts: [host], ...pair }]);
  const frontend = createTlsFrontend({ proxy, certs });
  await frontend.listen(0, "127.0.0.1");
  t.after(() => Promise.all([proxy.close(0), frontend.close(0)]));
  const port = (frontend.server.address() as AddressInfo).port;
  const connect = () => {
    const session = http2.connect(`https://${host}:${port}`, { ca: pair.cert, servername: host, host: "127.0.0.1", lookup: (_h, _o, cb) => cb(null, "127.0.0.1", 4) } as http2.SecureClientSessionOptions);
    session.on("error", () => {});
    t.after(() => session.destroy());
    return session;
  };
  return { proxy, port, pair, connect };
}

test("an HTTP/2 stream the client resets ends the app's request: nothing stays in flight, a cut-off upload never arrives complete", async (t) => {
  const seen: string[] = [];
  const appSockets = new Set<import("node:net").Socket>();
  const upstream = await startUpstream("app", (req, res) => {
    appSockets.add(req.socket);
    if (req.url === "/events") {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      const timer = setInterval(() => res.write("data: tick\n\n"), 50);
      res.on("close", () => clearInterval(timer));
      return;
    }
    let n = 0;
    req.on("data", (c: Buffer) => (n += c.length));
    req.on("end", () => {
      seen.push(`complete upload of ${n} bytes`);
      res.end("stored");
    });
    req.on("aborted", () => seen.push(`upload cut off after ${n} bytes`));
  });
  t.after(() => upstream.close());
  const { proxy, port, connect } = await startH2(t, upstream.address);
  const session = connect();

  // A browser closing a tab with an EventSource: the stream is reset, the session stays open.
  const events = session.request({ ":path": "/events" });
  events.on("error", () => {});
  await new Promise((resolve) => events.once("data", resolve));
  assert.equal(proxy.totalInflight(), 1);
  events.close(http2.constants.NGHTTP2_CANCEL);
  await waitFor(() => proxy.totalInflight() === 0, 5_000, "the reset stream to leave the in-flight count");
  await waitFor(() => [...appSockets].every((s) => s.destroyed), 5_000, "the app's request to be ended");

  // An upload without a declared length, reset halfway: HEADERS, DATA, then RST_STREAM without
  // END_STREAM (Node's client ends a stream before resetting it, so these frames are written by hand).
  const frame = (type: number, flags: number, payload: Buffer) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(1, 5);
    return Buffer.concat([h, payload]);
  };
  // HPACK: :method POST and :scheme https from the static table, :path and :authority as literals.
  const literal = (index: number, value: string) => Buffer.concat([Buffer.from([index, value.length]), Buffer.from(value)]);
  const raw = tls.connect({ host: "127.0.0.1", port, servername: "app.example.com", ALPNProtocols: ["h2"], rejectUnauthorized: false });
  t.after(() => raw.destroy());
  raw.on("error", () => {});
  await new Promise((resolve) => raw.once("secureConnect", resolve));
  raw.resume();
  const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
  raw.write(Buffer.concat([
    Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settings,
    frame(1, 0x4, Buffer.concat([Buffer.from([0x83, 0x87]), literal(0x04, "/upload"), literal(0x01, "app.example.com")])),
    frame(0, 0, Buffer.alloc(1000, 97)),
  ]));
  await waitFor(() => proxy.totalInflight() === 1, 5_000, "the upload to reach the app");
  await sleep(100);
  raw.write(frame(3, 0, Buffer.from([0, 0, 0, 8])));
  await waitFor(() => proxy.totalInflight() === 0, 5_000, "the reset upload to leave the in-flight count");
  await sleep(200);
  assert.deepEqual(seen, ["upload cut off after 1000 bytes"]);
});

test("an HTTP/2 request cancelled while the rate limiter decides is not forwarded", async (t) => {
  const seen: string[] = [];
  const upstream = await startUpstream("app", (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    res.end("charged");
  });
  t.after(() => upstream.close());
  // A shared limiter (Redis) answers asynchronously.
  const rateLimiter = { take: () => sleep(300).then(() => 0), close: async () => {} };
  const { proxy, connect } = await startH2(t, upstream.address, { rateLimiter, limits: { rateLimitRps: 10 } });
  const stream = connect().request({ ":method": "POST", ":path": "/charge-card" });
  stream.on("error", () => {});
  stream.end("card=1");
  await sleep(100);
  stream.close(http2.constants.NGHTTP2_CANCEL);
  await sleep(500);
  assert.deepEqual(seen, []);
  assert.equal(proxy.totalInflight(), 0);
});

test("one HTTP/2 connection has at most MAX_CONCURRENT_STREAMS requests open at once", async (t) => {
  let open = 0;
  let most = 0;
  const release: Array<() => void> = [];
  const upstream = await startUpstream("app", (req, res) => {
    open++;
    most = Math.max(most, open);
    req.resume();
    release.push(() => {
      open--;
      res.end("ok");
    });
  });
  t.after(() => upstream.close());
  const { connect } = await startH2(t, upstream.address);
  const session = connect();
  const n = MAX_CONCURRENT_STREAMS + 50;
  const done = Array.from({ length: n }, () => new Promise<number>((resolve) => {
    const stream = session.request({ ":path": "/" });
    stream.on("response", (h) => resolve(Number(h[":status"])));
    stream.on("error", () => resolve(0));
    stream.resume();
  }));
  await waitFor(() => open === MAX_CONCURRENT_STREAMS, 10_000, `${MAX_CONCURRENT_STREAMS} requests to reach the app`);
  await sleep(200);
  assert.equal(most, MAX_CONCURRENT_STREAMS);
  // The rest are queued by the client and sent as streams end: every request is answered.
  const drain = setInterval(() => release.splice(0).forEach((f) => f()), 20);
  t.after(() => clearInterval(drain));
  const statuses = await Promise.all(done);
  assert.equal(statuses.filter((s) => s === 200).length, n);
});

test("HTTP/1.1 over TLS has the header timeout of the plain port: a head dripping in gets 408, a silent connection is closed", async (t) => {
  // The app answers /early at once, before the request's body has arrived.
  const upstream = await startUpstream("app", (req, res) => {
    req.resume();
    if (req.url === "/early") return void res.end("early");
    req.on("end", () => res.end("app"));
  });
  t.after(() => upstream.close());
  const proxy = createProxyServer({ table: new RouteTable([{ app: "app", hosts: ["app.example.com"], upstreams: [upstream.address] }]), limits: { headerTimeoutMs: 1000 } });
  const frontend = createTlsFrontend({ proxy, certs: await CertStore.create() });
  await frontend.listen(0, "127.0.0.1");
  t.after(() => Promise.all([proxy.close(0), frontend.close(0)]));
  const port = (frontend.server.address() as AddressInfo).port;
  const connect = async () => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "app.example.com", ALPNProtocols: ["http/1.1"], rejectUnauthorized: false });
    t.after(() => socket.destroy());
    socket.on("error", () => {});
    let text = "";
    let closedAt = 0;
    socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
    socket.on("close", () => (closedAt = Date.now()));
    await new Promise((resolve) => socket.once("secureConnect", resolve));
    return { socket, text: () => text, closed: () => closedAt };
  };

  // A request answered in time, then the next one dripping in a byte every 300 ms.
  const slow = await connect();
  slow.socket.write("GET /first HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
  await waitFor(() => slow.text().endsWith("app"), 5_000, "the first answer");
  const started = Date.now();
  const drip = setInterval(() => slow.socket.writable && slow.socket.write("X"), 300);
  t.after(() => clearInterval(drip));
  slow.socket.write("GET /second HTTP/1.1\r\nHost: app.example.com\r\nX-Slow: ");
  await waitFor(() => slow.closed() > 0, 6_000, "the slow connection to close");
  clearInterval(drip);
  assert.match(slow.text(), /HTTP\/1\.1 408 Request Timeout\r\n[\s\S]*request headers did not arrive within 1s\n$/);
  assert.ok(slow.closed() - started < 4_000, `closed after ${slow.closed() - started} ms`);

  const silent = await connect();
  const opened = Date.now();
  await waitFor(() => silent.closed() > 0, 6_000, "the silent connection to close");
  assert.ok(silent.closed() - opened < 4_000, `closed after ${silent.closed() - opened} ms`);

  // A body still arriving is not a head, also after the app answered it early: an upload slower
  // than the header timeout is read to its end, and the request after it is served.
  const upload = await connect();
  upload.socket.write("POST /early HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 8\r\n\r\n");
  for (let i = 0; i < 8; i++) {
    await sleep(300);
    upload.socket.write("x");
  }
  upload.socket.write("GET /after HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
  await waitFor(() => (upload.text().match(/HTTP\/1\.1 200 OK/g) ?? []).length === 2, 5_000, "both answers");
  assert.equal(upload.closed(), 0);

  // Node's server takes up any Upgrade; one in HTTP/1.0 is refused here, as it is not one.
  const old = await connect();
  old.socket.write("GET /ws HTTP/1.0\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  await waitFor(() => old.closed() > 0, 5_000, "the refusal");
  assert.match(old.text(), /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*only in HTTP\/1\.1 and on a request without a body\n$/);
});

test("the access log names the client of an HTTP/2 request", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "deck-h2-log-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "access.log");
  const upstream = await startUpstream("app");
  t.after(() => upstream.close());
  const accessLog = new AccessLog(file);
  const { connect } = await startH2(t, upstream.address, { accessLog });
  const session = connect();
  const stream = session.request({ ":path": "/h2" });
  stream.resume();
  await new Promise((resolve) => stream.once("close", resolve));
  await waitFor(async () => (await readFile(file, "utf8").catch(() => "")).includes('"path":"/h2"'), 5_000, "the log line");
  const line = JSON.parse((await readFile(file, "utf8")).trim()) as { client: string; protocol: string; status: number };
  assert.deepEqual([line.client, line.protocol, line.status], ["127.0.0.1", "HTTP/2.0", 200]);
});
