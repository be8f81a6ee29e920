import assert from "node:assert/strict";
import type http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { test } from "node:test";
import tls from "node:tls";
import { buildForwardHeaders } from "./forward-headers.ts";
import { createProxyServer } from "./proxy-server.ts";
import { RouteTable } from "./route-table.ts";
import { startUpstream } from "./test-support.ts";
import { CertStore, createTlsFrontend } from "./tls-server.ts";

/** Underscore spellings a client might send, hoping an app's framework reads them as deck's forwarding fields. */
const SPOOFED = [
  ["X_Forwarded_For", "6.6.6.6"], ["x_forwarded_proto", "https"], ["X_FORWARDED_HOST", "bank.example"], ["X_Forwarded_Port", "443"],
  ["X_Real_IP", "6.6.6.6"], ["x_request_id", "spoofed-id"], ["X-Forwarded_For", "7.7.7.7"], ["x_real-ip", "7.7.7.7"],
] as const;

test("underscore spellings of forwarding and request-id fields are dropped; other fields with underscores are kept", () => {
  const raw = ["Host", "app.example.com", ...SPOOFED.flat(), "X_Custom_Thing", "kept", "X-Forwarded-For", "10.0.0.1"];
  const fwd = buildForwardHeaders(raw, "127.0.0.1", false, true);
  assert.deepEqual(fwd.headers, [
    "Host", "app.example.com", "X_Custom_Thing", "kept",
    "X-Forwarded-For", "10.0.0.1, 127.0.0.1", "X-Forwarded-Proto", "https", "X-Request-Id", fwd.requestId, "X-Forwarded-Host", "app.example.com",
  ]);
  assert.notEqual(fwd.requestId, "spoofed-id");
});

test("an app sees none of the underscore spellings, and deck's own X-Forwarded-* values, over HTTP/1.1, HTTPS/1.1 and HTTP/2", async (t) => {
  const seen: http.IncomingHttpHeaders[] = [];
  const upstream = await startUpstream("app", (req, res) => {
    seen.push(req.headers);
    req.resume();
    req.on("end", () => res.end("app"));
  });
  t.after(() => upstream.close());
  const proxy = createProxyServer({ table: new RouteTable([{ app: "app", hosts: ["app.example.com"], upstreams: [upstream.address] }]) });
  await proxy.listen(0, "127.0.0.1");
  const frontend = createTlsFrontend({ proxy, certs: await CertStore.create() });
  await frontend.listen(0, "127.0.0.1");
  t.after(() => Promise.all([proxy.close(0), frontend.close(0)]));
  const httpPort = (proxy.server.address() as AddressInfo).port;
  const httpsPort = (frontend.server.address() as AddressInfo).port;

  const head = `GET / HTTP/1.1\r\nHost: app.example.com\r\n${SPOOFED.map(([n, v]) => `${n}: ${v}\r\n`).join("")}Connection: close\r\n\r\n`;
  const raw = (secure: boolean) =>
    new Promise<string>((resolve, reject) => {
      const socket: net.Socket = secure
        ? tls.connect({ host: "127.0.0.1", port: httpsPort, rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] }, () => socket.write(head))
        : net.connect({ host: "127.0.0.1", port: httpPort }, () => socket.write(head));
      let text = "";
      socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
      socket.on("error", reject);
      socket.on("close", () => resolve(text));
    });
  assert.match(await raw(false), /^HTTP\/1\.1 200 OK\r\n[\s\S]*app$/);
  assert.match(await raw(true), /^HTTP\/1\.1 200 OK\r\n[\s\S]*app$/);
  const status = await new Promise<number>((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${httpsPort}`, { rejectUnauthorized: false });
    session.on("error", reject);
    const headers: http2.OutgoingHttpHeaders = { ":path": "/", ":authority": "app.example.com" };
    for (const [name, value] of SPOOFED) headers[name.toLowerCase()] = value;
    const stream = session.request(headers);
    let code = 0;
    stream.on("response", (h) => (code = Number(h[":status"])));
    stream.resume();
    stream.on("end", () => {
      session.close();
      resolve(code);
    });
    stream.on("error", reject);
  });
  assert.equal(status, 200);

  assert.equal(seen.length, 3);
  for (const [i, headers] of seen.entries()) {
    const names = Object.keys(headers);
    assert.deepEqual(names.filter((n) => n.includes("_")), [], `request ${i} carried ${names.join(", ")}`);
    assert.equal(headers["x-forwarded-for"], "127.0.0.1");
    assert.equal(headers["x-forwarded-proto"], i === 0 ? "http" : "https");
    assert.equal(headers["x-forwarded-host"], "app.example.com");
    assert.notEqual(headers["x-request-id"], "spoofed-id");
    assert.match(String(headers["x-request-id"]), /^[0-9a-f-]{36}$/);
  }
});
