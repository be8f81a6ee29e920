import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { test, type TestContext } from "node:test";
import type { Route } from "../core/index.ts";
import { createProxyServer, type ProxyServer } from "./proxy-server.ts";
import { RouteTable } from "./route-table.ts";
import { freePort, send, startUpstream, waitFor, type TestUpstream } from "./test-support.ts";

async function startProxy(t: TestContext, routes: Route[]): Promise<{ proxy: ProxyServer; port: number; table: RouteTable; logs: string[] }> {
  const table = new RouteTable(routes);
  const logs: string[] = [];
  const proxy = createProxyServer({ table, log: (l) => logs.push(l) });
  await proxy.listen(0, "127.0.0.1");
  t.after(() => proxy.close(0));
  return { proxy, port: (proxy.server.address() as AddressInfo).port, table, logs };
}

async function upstream(t: TestContext, name: string, handler?: http.RequestListener): Promise<TestUpstream> {
  const u = await startUpstream(name, handler);
  t.after(() => u.close());
  return u;
}

test("routes by Host header (any case, with a port) and answers 404/503 in plain text", async (t) => {
  const shop = await upstream(t, "shop");
  const blog = await upstream(t, "blog");
  const { port } = await startProxy(t, [
    { app: "shop", hosts: ["shop.localhost"], upstreams: [shop.address] },
    { app: "blog", hosts: ["blog.localhost", "blog.example.com"], upstreams: [blog.address] },
    { app: "idle", hosts: ["idle.localhost"], upstreams: [] },
  ]);
  assert.equal((await send({ port, host: "shop.localhost:8080" })).body, "shop");
  assert.equal((await send({ port, host: "BLOG.Localhost" })).body, "blog");
  assert.equal((await send({ port, host: "blog.example.com." })).body, "blog");

  const missing = await send({ port, host: "nope.localhost:8080" });
  assert.equal(missing.status, 404);
  assert.match(String(missing.headers["content-type"]), /^text\/plain/);
  assert.equal(missing.body, 'no app is configured for host "nope.localhost:8080"\n');

  const idle = await send({ port, host: "idle.localhost" });
  assert.equal(idle.status, 503);
  assert.equal(idle.body, 'app "idle" has no running release\n');
});

test("spreads requests round-robin over an app's upstreams", async (t) => {
  const a = await upstream(t, "a");
  const b = await upstream(t, "b");
  const { port } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [a.address, b.address] }]);
  const seen: Record<string, number> = { a: 0, b: 0 };
  for (let i = 0; i < 20; i++) seen[(await send({ port, host: "web.localhost" })).body]++;
  assert.deepEqual(seen, { a: 10, b: 10 });
});

test("reuses upstream connections: 200 sequential requests open only a handful", async (t) => {
  const u = await upstream(t, "pooled");
  const { port } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [u.address] }]);
  // A fresh client connection per request, so only the proxy's pooling can keep the count low.
  for (let i = 0; i < 200; i++) assert.equal((await send({ port, host: "web.localhost" })).status, 200);
  assert.ok(u.connections() <= 3, `upstream saw ${u.connections()} connections for 200 requests`);
});

test("passes X-Forwarded-*, keeps Host, keeps a sane X-Request-Id and strips hop-by-hop headers", async (t) => {
  const echo = await upstream(t, "echo", (req, res) => {
    const body = JSON.stringify(req.headers);
    res.writeHead(200, { "Content-Type": "application/json", "Keep-Alive": "timeout=77", "X-Upstream": "yes" });
    res.end(body);
  });
  const { port } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [echo.address] }]);

  const kept = await send({
    port,
    host: "Web.localhost:8080",
    headers: {
      "X-Forwarded-For": "203.0.113.7",
      "X-Request-Id": "req-abc.123",
      Connection: "keep-alive, X-Secret-Hop",
      "X-Secret-Hop": "must not pass",
      "Proxy-Authorization": "Basic Zm9vOmJhcg==",
      "X-Forwarded-Proto": "https",
    },
  });
  const seen = JSON.parse(kept.body) as Record<string, string>;
  assert.equal(seen.host, "Web.localhost:8080");
  assert.equal(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
  assert.equal(seen["x-forwarded-proto"], "http");
  assert.equal(seen["x-forwarded-host"], "Web.localhost:8080");
  assert.equal(seen["x-request-id"], "req-abc.123");
  assert.equal(seen["x-secret-hop"], undefined);
  assert.equal(seen["proxy-authorization"], undefined);
  assert.equal(kept.headers["x-request-id"], "req-abc.123");
  assert.equal(kept.headers["x-upstream"], "yes");
  assert.notEqual(kept.headers["keep-alive"], "timeout=77", "the upstream's hop-by-hop Keep-Alive is not relayed");

  const generated = await send({ port, host: "web.localhost", headers: { "X-Request-Id": "has spaces; and junk" } });
  const id = (JSON.parse(generated.body) as Record<string, string>)["x-request-id"];
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.equal(generated.headers["x-request-id"], id, "the client sees the id the upstream saw");
  assert.equal((JSON.parse(generated.body) as Record<string, string>)["x-forwarded-for"], "127.0.0.1");
});

test("streams a response: the first event arrives before the upstream finishes", async (t) => {
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const sse = await upstream(t, "sse", (req, res) => {
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
    res.write("data: first\n\n");
    void finished.then(() => res.end("data: last\n\n"));
  });
  const { port } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [sse.address] }]);
  const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const request = http.request({ port, host: "127.0.0.1", headers: { Host: "web.localhost" }, agent: false }, resolve);
    request.on("error", reject);
    request.end();
  });
  assert.equal(response.headers["content-type"], "text/event-stream");
  response.setEncoding("utf8");
  const first = await new Promise<string>((resolve) => response.once("data", resolve));
  assert.equal(first, "data: first\n\n");
  finish();
  let rest = "";
  for await (const chunk of response) rest += chunk;
  assert.equal(rest, "data: last\n\n");
});

test("streams a 20 MB upload to the upstream without waiting for the whole body", async (t) => {
  let received = 0;
  const sink = await upstream(t, "sink", (req, res) => {
    req.on("data", (c: Buffer) => (received += c.length));
    req.on("end", () => res.end(String(received)));
  });
  const { port } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [sink.address] }]);
  const total = 20 * 1024 * 1024;
  const chunk = randomBytes(1024 * 1024);
  const reply = new Promise<string>((resolve, reject) => {
    const request = http.request({ port, host: "127.0.0.1", method: "POST", headers: { Host: "web.localhost", "Content-Length": total }, agent: false }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve(body));
    });
    request.on("error", reject);
    void (async () => {
      for (let i = 0; i < 10; i++) request.write(chunk);
      // Half the body is out: the upstream must already be receiving it, before the rest is sent.
      await waitFor(() => received > 0, 5_000, "upstream to receive the first bytes");
      assert.ok(received < total);
      for (let i = 0; i < 10; i++) request.write(chunk);
      request.end();
    })().catch(reject);
  });
  assert.equal(await reply, String(total));
});

/** RFC 6455 §1.3: the server proves it read the handshake. */
function acceptKey(key: string): string {
  return createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
}

/** Decodes one small (< 126 bytes) frame; masked frames are unmasked. */
function decodeFrame(buf: Buffer): { opcode: number; payload: Buffer } {
  const masked = (buf[1] & 0x80) !== 0;
  const length = buf[1] & 0x7f;
  if (!masked) return { opcode: buf[0] & 0x0f, payload: buf.subarray(2, 2 + length) };
  const mask = buf.subarray(2, 6);
  const payload = Buffer.from(buf.subarray(6, 6 + length));
  for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
  return { opcode: buf[0] & 0x0f, payload };
}

test("tunnels a WebSocket upgrade: a frame is echoed back through the router", async (t) => {
  const echo = await upstream(t, "ws");
  echo.server.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(String(req.headers["sec-websocket-key"]))}\r\nX-Saw-Forwarded-For: ${req.headers["x-forwarded-for"]}\r\n\r\n`,
    );
    socket.on("data", (data: Buffer) => {
      const { payload } = decodeFrame(data);
      socket.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
    });
  });
  const { port, proxy } = await startProxy(t, [{ app: "chat", hosts: ["chat.localhost"], upstreams: [echo.address] }]);

  const client = net.connect(port, "127.0.0.1");
  t.after(() => client.destroy());
  await new Promise((r) => client.once("connect", r));
  const key = randomBytes(16).toString("base64");
  client.write(
    `GET /socket HTTP/1.1\r\nHost: chat.localhost:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let received = Buffer.alloc(0);
  client.on("data", (d: Buffer) => (received = Buffer.concat([received, d])));
  await waitFor(() => received.includes("\r\n\r\n"), 5_000, "the handshake answer");
  const headEnd = received.indexOf("\r\n\r\n") + 4;
  const head = received.subarray(0, headEnd).toString();
  assert.match(head, /^HTTP\/1\.1 101 /);
  assert.match(head, new RegExp(`Sec-WebSocket-Accept: ${acceptKey(key).replace(/[+/=]/g, "\\$&")}\r\n`, "i"));
  assert.match(head, /X-Saw-Forwarded-For: 127\.0\.0\.1\r\n/);
  received = received.subarray(headEnd);
  assert.equal(proxy.inflight(echo.address), 1, "an open tunnel counts as in flight");

  const mask = randomBytes(4);
  const text = Buffer.from("hello through the router");
  const masked = Buffer.from(text.map((b, i) => b ^ mask[i % 4]));
  client.write(Buffer.concat([Buffer.from([0x81, 0x80 | text.length]), mask, masked]));
  await waitFor(() => received.length >= 2 + text.length, 5_000, "the echoed frame");
  const frame = decodeFrame(received);
  assert.equal(frame.opcode, 1);
  assert.equal(frame.payload.toString(), "hello through the router");

  client.destroy();
  await waitFor(() => proxy.inflight(echo.address) === 0, 5_000, "the tunnel count to drop");
});

/** Sends an upgrade handshake on a raw connection; collects what comes back. */
async function upgradeClient(t: TestContext, port: number, host: string, path = "/socket"): Promise<{ socket: net.Socket; received: () => Buffer; closed: Promise<void> }> {
  const socket = net.connect(port, "127.0.0.1");
  t.after(() => socket.destroy());
  await new Promise((r) => socket.once("connect", r));
  let received = Buffer.alloc(0);
  socket.on("data", (d: Buffer) => (received = Buffer.concat([received, d])));
  socket.on("error", () => {});
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n`);
  return { socket, received: () => received, closed };
}

test("an upgrade refused by one process goes to the next; one no process accepts, or answered malformed, gets 502", async (t) => {
  const echo = await upstream(t, "echo");
  echo.server.on("upgrade", (_req: http.IncomingMessage, socket: net.Socket) => {
    socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n");
    socket.pipe(socket);
  });
  const garbled = await upstream(t, "garbled");
  garbled.server.on("upgrade", (_req: http.IncomingMessage, socket: net.Socket) => void socket.end("HTTP/1.1 1O1 Switching\r\n\r\n"));
  const dead = `127.0.0.1:${await freePort()}`;
  const { port, proxy, logs } = await startProxy(t, [
    { app: "chat", hosts: ["chat.localhost"], upstreams: [dead, echo.address] },
    { app: "gone", hosts: ["gone.localhost"], upstreams: [dead] },
    { app: "odd", hosts: ["odd.localhost"], upstreams: [garbled.address] },
  ]);

  // Twice, so the refused process is first in the rotation at least once.
  for (let i = 0; i < 2; i++) {
    const c = await upgradeClient(t, port, "chat.localhost");
    await waitFor(() => c.received().includes("\r\n\r\n"), 5_000, "the 101");
    assert.match(c.received().toString("latin1"), /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    const headEnd = c.received().indexOf("\r\n\r\n") + 4;
    // 4 MiB both ways: more than any socket buffer holds, so each side is paused and resumed on the way.
    const big = randomBytes(4 * 1024 * 1024);
    c.socket.write(big);
    await waitFor(() => c.received().length - headEnd >= big.length, 20_000, "the echo of 4 MiB");
    assert.ok(c.received().subarray(headEnd).equals(big), "the bytes come back as sent");
    c.socket.destroy();
    await waitFor(() => proxy.inflight(echo.address) === 0, 5_000, "the tunnel to close");
  }

  const refused = await upgradeClient(t, port, "gone.localhost");
  await refused.closed;
  assert.match(refused.received().toString(), /^HTTP\/1\.1 502 Bad Gateway\r\n[^]*\r\n\r\napp "gone" did not answer \(bad gateway\)\n$/);

  const odd = await upgradeClient(t, port, "odd.localhost");
  await odd.closed;
  assert.match(odd.received().toString(), /^HTTP\/1\.1 502 Bad Gateway\r\n[^]*\r\n\r\napp "odd" sent a malformed response \(bad gateway\)\n$/);
  assert.ok(logs.some((l) => /^upgrade GET odd\.localhost\/socket → .* \(app odd\) failed: malformed status line/.test(l)), logs.join("\n"));
  assert.equal(proxy.totalInflight(), 0);
});

test("a refused connection is retried on the next upstream, for any method", async (t) => {
  const live = await upstream(t, "live");
  const dead = `127.0.0.1:${await freePort()}`;
  const { port } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [dead, live.address] }]);
  for (let i = 0; i < 6; i++) {
    const method = i % 2 === 0 ? "GET" : "POST";
    const reply = await send({ port, host: "web.localhost", method, body: method === "POST" ? "payload" : undefined });
    assert.equal(reply.status, 200, `${method} #${i}`);
    assert.equal(reply.body, "live");
  }
});

test("answers 502 when no upstream accepts the connection", async (t) => {
  const dead = `127.0.0.1:${await freePort()}`;
  const { port, logs } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [dead] }]);
  const reply = await send({ port, host: "web.localhost", method: "POST", body: "x" });
  assert.equal(reply.status, 502);
  assert.equal(reply.body, 'app "web" did not answer (bad gateway)\n');
  assert.match(logs.join("\n"), /ECONNREFUSED/);
});

test("counts a slow request in flight and releases it when the client gives up", async (t) => {
  const slow = await upstream(t, "slow", () => {
    /* never answers */
  });
  const { port, proxy } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [slow.address] }]);
  const request = http.request({ port, host: "127.0.0.1", headers: { Host: "web.localhost" }, agent: false });
  request.on("error", () => {});
  request.end();
  await waitFor(() => proxy.inflight(slow.address) === 1, 5_000, "the request to be in flight");
  request.destroy();
  await waitFor(() => proxy.inflight(slow.address) === 0, 5_000, "the aborted request to be released");
});

test("close() lets an in-flight request finish, then stops", async (t) => {
  const slow = await upstream(t, "slow", (req, res) => {
    setTimeout(() => res.end("done"), 300);
  });
  const { port, proxy } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [slow.address] }]);
  const pending = send({ port, host: "web.localhost" });
  await waitFor(() => proxy.inflight(slow.address) === 1, 5_000, "the request to be in flight");
  await proxy.close(5_000);
  assert.equal((await pending).body, "done");
  await assert.rejects(send({ port, host: "web.localhost" }), /ECONNREFUSED/);
});

test("a pooled connection reset by the upstream is retried once for a body-less GET, never for a POST", async (t) => {
  // Answers the first request on each connection, then resets the connection on the second: what
  // a client sees when an upstream drops an idle keep-alive connection just as it is reused.
  let served = 0;
  const flaky = net.createServer((socket) => {
    let requests = 0;
    socket.on("data", (data: Buffer) => {
      if (!data.includes("\r\n\r\n")) return;
      requests++;
      if (requests > 1) return void socket.resetAndDestroy();
      served++;
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => flaky.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => flaky.close(resolve)));
  const address = `127.0.0.1:${(flaky.address() as AddressInfo).port}`;
  const { port } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [address] }]);

  assert.equal((await send({ port, host: "web.localhost" })).body, "ok");
  assert.equal((await send({ port, host: "web.localhost" })).body, "ok", "the GET is retried on a new connection");
  assert.equal(served, 2);
  const post = await send({ port, host: "web.localhost", method: "POST", body: "pay once" });
  assert.equal(post.status, 502, "a POST whose body was sent is not replayed");
  assert.equal(served, 2);
});

/**
 * A raw HTTP/1.1 upstream for framings Node's server never produces: `respond` gets each request
 * head (bodies are not expected) and writes the answer itself. Counts connections.
 */
async function rawUpstream(t: TestContext, respond: (head: string, socket: net.Socket) => void): Promise<{ address: string; connections: () => number }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    let buffered = "";
    socket.on("data", (data: Buffer) => {
      buffered += data.toString("latin1");
      let end: number;
      while ((end = buffered.indexOf("\r\n\r\n")) >= 0) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        respond(head, socket);
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => {
    server.close(resolve);
    for (const socket of sockets) socket.destroy();
  }));
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, connections: () => connections };
}

test("relays every response framing: chunked, until close, HEAD, 204 and a 100 Continue first; the pool survives each", async (t) => {
  const u = await rawUpstream(t, (head, socket) => {
    const [method, path] = head.split(" ");
    if (path === "/chunked") return void socket.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n6\r\nhello \r\n5;ext=1\r\nworld\r\n0\r\nX-Sum: 1\r\n\r\n");
    if (path === "/close") return void socket.end("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the connection closes");
    if (path === "/continue") return void socket.write("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\ncreated");
    if (path === "/empty") return void socket.write("HTTP/1.1 204 No Content\r\nX-Note: nothing\r\n\r\n");
    if (method === "HEAD") return void socket.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n");
    socket.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain");
  });
  const { port, logs } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [u.address] }]);
  const get = (path: string, method = "GET") => send({ port, host: "web.localhost", path, method });

  const chunked = await get("/chunked");
  assert.equal(chunked.status, 200);
  assert.equal(chunked.body, "hello world");
  assert.equal(chunked.headers["transfer-encoding"], "chunked", "re-framed for the client");
  assert.equal((await get("/")).body, "plain");

  const untilClose = await get("/close");
  assert.equal(untilClose.body, "until the connection closes");
  assert.equal((await get("/")).body, "plain");

  const created = await get("/continue");
  assert.equal(created.status, 201);
  assert.equal(created.body, "created");

  const empty = await get("/empty");
  assert.equal(empty.status, 204);
  assert.equal(empty.headers["x-note"], "nothing");
  assert.equal(empty.body, "");

  const head = await get("/", "HEAD");
  assert.equal(head.status, 200);
  assert.equal(head.headers["content-length"], "5");
  assert.equal(head.body, "");
  assert.equal((await get("/")).body, "plain");
  assert.deepEqual(logs, []);
  // The close-delimited answer used up its connection; every other one was reused.
  assert.equal(u.connections(), 2);
});

test("a malformed upstream response is a 502 naming the app and the reason is logged; the next request is served", async (t) => {
  const u = await rawUpstream(t, (head, socket) => {
    if (head.startsWith("GET /bad ")) return void socket.write("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok");
    if (head.startsWith("GET /cut ")) return void socket.end("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nnot all of it");
    socket.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine");
  });
  const { port, logs } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [u.address] }]);
  const bad = await send({ port, host: "web.localhost", path: "/bad" });
  assert.equal(bad.status, 502);
  assert.equal(bad.body, 'app "web" sent a malformed response (bad gateway)\n');
  assert.match(logs.join("\n"), /GET web\.localhost\/bad → 127\.0\.0\.1:\d+ \(app web\) failed: conflicting Content-Length values request_id=/);
  assert.equal((await send({ port, host: "web.localhost" })).body, "fine");
  // A body cut short after the head went out cannot become a 502: the client sees the response break.
  await assert.rejects(send({ port, host: "web.localhost", path: "/cut" }), /aborted|ECONNRESET|socket hang up/);
  assert.equal((await send({ port, host: "web.localhost" })).body, "fine");
});

test("an idle connection is not reused past the upstream's Keep-Alive timeout, so a POST never meets a closing connection", async (t) => {
  // Says it keeps idle connections 2 s, and resets any reused after 1.5 s idle: what a request on a
  // connection the upstream is just closing would meet.
  const lastUse = new Map<net.Socket, number>();
  const u = await rawUpstream(t, (_head, socket) => {
    const last = lastUse.get(socket);
    if (last !== undefined && Date.now() - last > 1500) return void socket.resetAndDestroy();
    lastUse.set(socket, Date.now());
    socket.write("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=2\r\nContent-Length: 2\r\n\r\nok");
  });
  const { port } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [u.address] }]);
  assert.equal((await send({ port, host: "web.localhost" })).body, "ok");
  assert.equal((await send({ port, host: "web.localhost" })).body, "ok");
  assert.equal(u.connections(), 1, "reused within the timeout");
  await new Promise((r) => setTimeout(r, 1600));
  const post = await send({ port, host: "web.localhost", method: "POST", body: "once" });
  assert.equal(post.status, 200);
  assert.equal(u.connections(), 2);
});

test("an upstream that answers before reading the whole upload: the answer reaches the client and the connection is not reused", async (t) => {
  let uploads = 0;
  const u = await upstream(t, "early", (req, res) => {
    if (req.method === "POST") {
      uploads++;
      res.writeHead(413, { "Content-Type": "text/plain", "Content-Length": 9 });
      return void res.end("too big!\n");
    }
    req.resume();
    res.end("early");
  });
  const { port } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [u.address] }]);
  const refused = await send({ port, host: "web.localhost", method: "POST", body: randomBytes(4 * 1024 * 1024) });
  assert.equal(refused.status, 413);
  assert.equal(refused.body, "too big!\n");
  assert.equal(uploads, 1);
  assert.equal((await send({ port, host: "web.localhost" })).body, "early");
});

test("header bytes outside ASCII reach the upstream and the client exactly as sent", async (t) => {
  let seen = "";
  const u = await rawUpstream(t, (head, socket) => {
    seen = /\r\nX-Name: ([^\r]*)/i.exec(head)?.[1] ?? "";
    socket.write(Buffer.concat([Buffer.from("HTTP/1.1 200 OK\r\nX-Back: caf"), Buffer.from([0xe9]), Buffer.from("\r\nContent-Length: 2\r\n\r\nok")]));
  });
  const { port } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [u.address] }]);
  const socket = net.connect(port, "127.0.0.1");
  t.after(() => socket.destroy());
  const reply: Buffer[] = [];
  socket.on("data", (d: Buffer) => reply.push(d));
  socket.write(Buffer.concat([Buffer.from("GET / HTTP/1.1\r\nHost: web.localhost\r\nX-Name: caf"), Buffer.from([0xe9]), Buffer.from("\r\nConnection: close\r\n\r\n")]));
  await new Promise((resolve) => socket.on("end", resolve));
  assert.deepEqual([...Buffer.from(seen, "latin1")], [0x63, 0x61, 0x66, 0xe9], "one byte 0xE9, not its UTF-8 form");
  const text = Buffer.concat(reply);
  assert.ok(text.includes(Buffer.concat([Buffer.from("X-Back: caf"), Buffer.from([0xe9, 0x0d])])), `X-Back arrives as sent: ${text.toString("latin1")}`);
});

test("after a switch, the old upstream's keep-alive connections are closed once its requests end", async (t) => {
  const open = new Set<net.Socket>();
  let release: () => void = () => {};
  const old = http.createServer((req, res) => {
    req.resume();
    const answer = () => res.end("old");
    if (req.url === "/slow") release = answer;
    else answer();
  });
  old.on("connection", (socket: net.Socket) => {
    open.add(socket);
    socket.on("close", () => open.delete(socket));
  });
  await new Promise<void>((resolve) => old.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => { old.close(resolve); old.closeAllConnections(); }));
  const fresh = await upstream(t, "new");
  const oldAddress = `127.0.0.1:${(old.address() as AddressInfo).port}`;
  const { port, table } = await startProxy(t, [{ app: "web", hosts: ["web.localhost"], upstreams: [oldAddress] }]);

  const slow = send({ port, host: "web.localhost", path: "/slow" });
  await waitFor(() => open.size === 1, 2_000, "the slow request at the old upstream");
  // A second connection, idle once this answer is in.
  assert.equal((await send({ port, host: "web.localhost" })).body, "old");
  assert.equal(open.size, 2);
  table.set({ app: "web", hosts: ["web.localhost"], upstreams: [fresh.address] });
  // The idle one goes at once (the app announces 5 s, which the pool would otherwise honour)...
  await waitFor(() => open.size === 1, 1_000, "the idle connection to the old upstream closed");
  assert.equal((await send({ port, host: "web.localhost" })).body, "new");
  // ...and the busy one when its request has been answered.
  release();
  assert.equal((await slow).body, "old");
  await waitFor(() => open.size === 0, 1_000, "the last connection to the old upstream closed");
});
