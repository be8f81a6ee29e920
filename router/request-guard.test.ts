/**
 * One request never takes the router down: a request line claiming HTTP/2.0 over TLS (parsed by
 * Node's HTTP/1 parser) is answered 505, and an exception while serving a request costs only that
 * request a 500, on the plain port, over HTTPS/1.1 and over HTTP/2.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { test, type TestContext } from "node:test";
import tls from "node:tls";
import { createProxyServer, INTERNAL_ERROR } from "./proxy-server.ts";
import { RouteTable, type RouteEntry } from "./route-table.ts";
import { send, startUpstream } from "./test-support.ts";
import { CertStore, createTlsFrontend } from "./tls-server.ts";

interface Ports {
  http: number;
  https: number;
  logs: string[];
}

async function startRouter(t: TestContext, table: RouteTable): Promise<Ports> {
  const logs: string[] = [];
  const proxy = createProxyServer({ table, log: (line) => void logs.push(line) });
  await proxy.listen(0, "127.0.0.1");
  const frontend = createTlsFrontend({ proxy, certs: await CertStore.create() });
  await frontend.listen(0, "127.0.0.1");
  t.after(() => Promise.all([proxy.close(0), frontend.close(0)]));
  return { http: (proxy.server.address() as AddressInfo).port, https: (frontend.server.address() as AddressInfo).port, logs };
}

/** Writes `wire` on a connection (TLS without ALPN, as `openssl s_client` does, when `port` is the HTTPS one) and reads until it closes. */
function exchangeRaw(port: number, wire: string, secure: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: net.Socket = secure
      ? tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => socket.write(wire))
      : net.connect({ host: "127.0.0.1", port }, () => socket.write(wire));
    let text = "";
    socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
    socket.on("error", reject);
    socket.on("close", () => resolve(text));
  });
}

function h2Get(port: number, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
    session.on("error", reject);
    const stream = session.request({ ":path": "/", ":authority": host });
    let status = 0;
    let body = "";
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.setEncoding("utf8");
    stream.on("data", (c: string) => (body += c));
    stream.on("end", () => {
      session.close();
      resolve({ status, body });
    });
    stream.on("error", reject);
  });
}

test("a request line claiming HTTP/2.0 over TLS gets 505, and the router goes on serving", async (t) => {
  const upstream = await startUpstream("app");
  t.after(() => upstream.close());
  const router = await startRouter(t, new RouteTable([{ app: "app", hosts: ["app.example.com"], upstreams: [upstream.address] }]));

  for (const wire of ["GET / HTTP/2.0\r\n\r\n", "GET / HTTP/2.0\r\nHost: app.example.com\r\n\r\n", "POST / HTTP/2.0\r\nHost: app.example.com\r\nContent-Length: 1\r\n\r\nx"]) {
    const answer = await exchangeRaw(router.https, wire, true);
    assert.match(answer, /^HTTP\/1\.1 505 HTTP Version Not Supported\r\n[\s\S]*\r\n\r\nonly HTTP\/1\.0 and HTTP\/1\.1 are served here\n$/, JSON.stringify(wire));
  }
  // The plain port gives the same answer.
  assert.match(await exchangeRaw(router.http, "GET / HTTP/2.0\r\nHost: app.example.com\r\n\r\n", false), /^HTTP\/1\.1 505 /);

  assert.equal((await send({ port: router.http, host: "app.example.com" })).body, "app");
  assert.deepEqual(await h2Get(router.https, "app.example.com"), { status: 200, body: "app" });
  assert.match(await exchangeRaw(router.https, "GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n", true), /^HTTP\/1\.1 200 OK\r\n[\s\S]*app$/);
});

/** A route table that fails on one host, standing in for any bug reached while serving a request. */
class BrokenTable extends RouteTable {
  override lookup(host: string | undefined): RouteEntry | undefined {
    if (host === "broken.example.com") throw new Error("route lookup failed");
    return super.lookup(host);
  }
}

test("an exception while serving a request answers that request 500 and is logged; other requests are served", async (t) => {
  const upstream = await startUpstream("app");
  t.after(() => upstream.close());
  const router = await startRouter(t, new BrokenTable([{ app: "app", hosts: ["app.example.com"], upstreams: [upstream.address] }]));

  const plain = await exchangeRaw(router.http, "GET /x HTTP/1.1\r\nHost: broken.example.com\r\n\r\nGET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n", false);
  // The connection closes after the 500: the request after it on that connection is not read.
  assert.match(plain, /^HTTP\/1\.1 500 Internal Server Error\r\n[\s\S]*Connection: close\r\n\r\nthe router failed to serve this request\n$/);
  const overTls = await exchangeRaw(router.https, "GET /x HTTP/1.1\r\nHost: broken.example.com\r\n\r\n", true);
  assert.match(overTls, /^HTTP\/1\.1 500 Internal Server Error\r\n[\s\S]*the router failed to serve this request\n$/);
  assert.deepEqual(await h2Get(router.https, "broken.example.com"), { status: 500, body: "the router failed to serve this request\n" });
  const upgrade = await exchangeRaw(router.http, "GET /ws HTTP/1.1\r\nHost: broken.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false);
  assert.match(upgrade, /^HTTP\/1\.1 500 Internal Server Error\r\n/);

  const errors = router.logs.filter((line) => line.startsWith(INTERNAL_ERROR));
  assert.equal(errors.length, 4, router.logs.join("\n"));
  assert.match(errors[0], /while serving GET \/x: Error: route lookup failed\n\s+at BrokenTable\.lookup/);

  assert.equal((await send({ port: router.http, host: "app.example.com" })).body, "app");
  assert.deepEqual(await h2Get(router.https, "app.example.com"), { status: 200, body: "app" });
});
