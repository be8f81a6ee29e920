/**
 * The body timeout: a client that trickles its request body past it gets 408, and the app's request
 * is ended (its connection closed), on the plain port, over HTTPS/1.1 and over HTTP/2.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { test, type TestContext } from "node:test";
import tls from "node:tls";
import { createProxyServer } from "./proxy-server.ts";
import { RouteTable } from "./route-table.ts";
import { send, startUpstream, waitFor } from "./test-support.ts";
import { CertStore, createTlsFrontend } from "./tls-server.ts";

/** What the app saw of each request: the body bytes it got, and whether the whole body came. */
interface Seen {
  bytes: number;
  complete: boolean;
}

async function startRouter(t: TestContext) {
  const seen = new Map<string, Seen>();
  const upstream = await startUpstream("app", (req, res) => {
    const record: Seen = { bytes: 0, complete: false };
    req.on("data", (c: Buffer) => (record.bytes += c.length));
    req.on("end", () => res.end("app"));
    // The app's connection going away with the body unfinished: its request was ended by the router.
    req.socket.once("close", () => {
      record.complete = req.complete;
      seen.set(req.url ?? "", record);
    });
  });
  t.after(() => upstream.close());
  const table = new RouteTable([{ app: "app", hosts: ["app.example.com"], upstreams: [upstream.address] }]);
  const proxy = createProxyServer({ table, limits: { bodyTimeoutMs: 1000 } });
  await proxy.listen(0, "127.0.0.1");
  const frontend = createTlsFrontend({ proxy, certs: await CertStore.create() });
  await frontend.listen(0, "127.0.0.1");
  t.after(() => Promise.all([proxy.close(0), frontend.close(0)]));
  return { seen, proxy, httpPort: (proxy.server.address() as AddressInfo).port, httpsPort: (frontend.server.address() as AddressInfo).port };
}

/** Sends a head announcing 1000 bytes, then one byte every 100 ms until the router closes the connection; returns what came back. */
function trickle(socket: net.Socket, head: string): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    const drip = setInterval(() => socket.writable && socket.write("x"), 100);
    socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearInterval(drip);
      resolve(text);
    });
    socket.write(head);
  });
}

const HEAD = (path: string) => `POST ${path} HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 1000\r\n\r\n`;
const ANSWER = /^HTTP\/1\.1 408 Request Timeout\r\n(?:[^\r\n]+\r\n)*Connection: close\r\n(?:[^\r\n]+\r\n)*\r\nrequest body did not arrive within 1s\n$/;

test("a body trickling in past the body timeout gets 408 on the plain port and over HTTPS/1.1, and the app's request is ended", async (t) => {
  const router = await startRouter(t);
  const plain = net.connect({ host: "127.0.0.1", port: router.httpPort });
  await new Promise((resolve) => plain.once("connect", resolve));
  assert.match(await trickle(plain, HEAD("/plain")), ANSWER);

  const secure = tls.connect({ host: "127.0.0.1", port: router.httpsPort, rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] });
  await new Promise((resolve) => secure.once("secureConnect", resolve));
  assert.match(await trickle(secure, HEAD("/tls")), ANSWER);

  // A chunked body is timed the same way.
  const chunked = net.connect({ host: "127.0.0.1", port: router.httpPort });
  await new Promise((resolve) => chunked.once("connect", resolve));
  assert.match(await trickle(chunked, "POST /chunked HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n"), ANSWER);

  await waitFor(() => router.seen.size === 3, 5_000, "the app's requests to end");
  for (const path of ["/plain", "/tls", "/chunked"]) {
    const seen = router.seen.get(path)!;
    assert.equal(seen.complete, false, path);
    assert.ok(seen.bytes > 0, `${path}: the app got the start of the body`);
  }
  assert.equal(router.proxy.totalInflight(), 0);
  // A body sent in time still reaches the app whole.
  assert.equal((await send({ port: router.httpPort, host: "app.example.com", method: "POST", body: "y".repeat(5000) })).body, "app");
});

test("an HTTP/2 request body trickling in past the body timeout gets 408 and the app's request is ended", async (t) => {
  const router = await startRouter(t);
  const session = http2.connect(`https://127.0.0.1:${router.httpsPort}`, { rejectUnauthorized: false });
  t.after(() => session.destroy());
  session.on("error", () => {});
  const stream = session.request({ ":method": "POST", ":path": "/h2", ":authority": "app.example.com" });
  const drip = setInterval(() => stream.writable && stream.write("x"), 100);
  t.after(() => clearInterval(drip));
  const answer = await new Promise<{ status: number; body: string }>((resolve) => {
    let status = 0;
    let body = "";
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.setEncoding("utf8");
    stream.on("data", (c: string) => (body += c));
    stream.on("error", () => {});
    stream.on("close", () => resolve({ status, body }));
  });
  clearInterval(drip);
  assert.deepEqual(answer, { status: 408, body: "request body did not arrive within 1s\n" });
  await waitFor(() => router.seen.has("/h2"), 5_000, "the app's request to end");
  assert.equal(router.seen.get("/h2")!.complete, false);
  assert.equal(router.proxy.totalInflight(), 0);
});
