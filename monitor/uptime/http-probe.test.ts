import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { freePort } from "../../test/helpers/deck.ts";
import { probeApp } from "./http-probe.ts";

/** One check against real sockets on loopback: what counts as up, and how each failure is named. */
describe("a single uptime check", () => {
  let server: http.Server;
  let port: number;
  const seen: { host?: string; url?: string; agent?: string }[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      seen.push({ host: req.headers.host, url: req.url, agent: req.headers["user-agent"] });
      const m = /^\/status\/(\d+)$/.exec(req.url ?? "");
      if (m) {
        res.statusCode = Number(m[1]);
        return res.end();
      }
      if (req.url === "/hang") return;
      if (req.url === "/drop") return req.socket.destroy();
      res.end("ok");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as { port: number }).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const check = (path: string, o: { port?: number; timeoutMs?: number; signal?: AbortSignal } = {}) =>
    probeApp({ host: "127.0.0.1", port: o.port ?? port, hostHeader: "shop.example.test", path, timeoutMs: o.timeoutMs ?? 2000, signal: o.signal });

  it("sends the app's host name and counts any status below 500 as up", async () => {
    assert.deepEqual(await check("/health"), { ok: true, status: 200 });
    assert.deepEqual(seen.at(-1), { host: "shop.example.test", url: "/health", agent: "deck-uptime" });
    for (const status of [204, 301, 404, 499]) assert.deepEqual(await check(`/status/${status}`), { ok: true, status });
  });

  it("names the failure: an HTTP status from 500, a timeout, a refused or dropped connection", async () => {
    assert.deepEqual(await check("/status/502"), { ok: false, cause: "HTTP 502" });
    assert.deepEqual(await check("/status/500"), { ok: false, cause: "HTTP 500" });
    const t0 = Date.now();
    assert.deepEqual(await check("/hang", { timeoutMs: 300 }), { ok: false, cause: "timed out after 0.3 s" });
    assert.ok(Date.now() - t0 < 2000, "the timeout bounds the check");
    assert.deepEqual(await check("/drop"), { ok: false, cause: "connection closed before an answer" });
    assert.deepEqual(await check("/", { port: await freePort() }), { ok: false, cause: "connection refused" });
  });

  it("counts nothing for a check cut short by deck stopping", async () => {
    const abort = new AbortController();
    const pending = check("/hang", { timeoutMs: 5000, signal: abort.signal });
    setTimeout(() => abort.abort(), 50);
    assert.equal(await pending, "aborted");
  });
});
