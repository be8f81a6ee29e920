/**
 * The router in front of real deployed apps: metering saved per hour and shown by `usage:report` and
 * the API, Prometheus `/metrics` on the API port, the JSON access log, server-sent events passed
 * through unbuffered, upgraded connections (WebSockets) kept open across a deploy, and requests held
 * while a first release starts.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stopRouter } from "../router/launch.ts";
import { databaseBackends } from "./helpers/database.ts";
import { addUser, apiClient, deckDatabaseUrl, queryDeckDatabase } from "./helpers/accounts.ts";
import { commitFiles, Deck, makeRepo, run, type TimedLine } from "./helpers/deck.ts";

const backends = await databaseBackends();
// One backend is enough here: nothing in this file depends on how PostgreSQL is run.
const backend = backends[backends.length - 1];

/** An app with a version page, a server-sent event stream and an upgrade that echoes lines. */
function trafficApp(version: string, startDelayMs = 0): Record<string, string> {
  const server = `const http = require("http");
const server = http.createServer((req, res) => {
  if (req.url === "/events") {
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
    res.write("data: first\\n\\n");
    const t = setTimeout(() => { res.write("data: second\\n\\n"); res.end(); }, 1500);
    req.on("close", () => clearTimeout(t));
    return;
  }
  if (req.method === "POST") { let n = 0; req.on("data", (c) => n += c.length); req.on("end", () => res.end("${version} got " + n + "\\n")); return; }
  res.end("${version}\\n");
});
server.on("upgrade", (req, socket) => {
  socket.write("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n");
  socket.on("data", (d) => socket.write("${version} echo " + d.toString()));
});
setTimeout(() => server.listen(process.env.PORT), ${startDelayMs});
process.on("SIGTERM", () => { server.close(() => process.exit(0)); });
`;
  return { "package.json": JSON.stringify({ name: "traffic", version: "1.0.0", private: true, scripts: { start: "node server.js" } }), "server.js": server, Procfile: "web: node server.js\n" };
}

/** Opens an upgraded (WebSocket-style) connection through the router; `say` sends a line and waits for the echo. */
async function openTunnel(port: number, host: string): Promise<{ say(text: string): Promise<string>; closed: Promise<void>; close(): void }> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise((r, j) => { socket.once("connect", r); socket.once("error", j); });
  socket.write(`GET /ws HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n`);
  let buffer = "";
  let waiter: ((s: string) => void) | null = null;
  socket.on("data", (d) => {
    buffer += d.toString();
    if (waiter && buffer.includes("\n", buffer.indexOf("\r\n\r\n") + 4)) {
      const w = waiter;
      waiter = null;
      w(buffer);
    }
  });
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no 101: ${buffer}`)), 5000);
    const check = () => { if (buffer.includes("\r\n\r\n")) { clearTimeout(t); socket.off("data", check); resolve(); } };
    socket.on("data", check);
    check();
  });
  assert.match(buffer, /^HTTP\/1\.1 101 /);
  return {
    say: (text) => new Promise((resolve, reject) => {
      buffer = "";
      const t = setTimeout(() => reject(new Error(`no echo for ${text}; tunnel ${socket.destroyed ? "closed" : "open"}`)), 5000);
      waiter = (s) => { clearTimeout(t); resolve(s.trim()); };
      // The upgrade reply is already consumed: any newline ends the echo.
      buffer = "\r\n\r\n";
      socket.write(`${text}\n`);
    }),
    closed,
    close: () => socket.end(),
  };
}

describe(`the router in front of deployed apps (${backend.name} PostgreSQL)`, () => {
  let deck: Deck;
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-work-"));
    deck = await Deck.start({ backend, env: { DECK_METERING_INTERVAL: "1", DECK_DRAIN_TIMEOUT: "20" } });
  });
  after(async () => {
    await deck?.stop();
    await rm(work, { recursive: true, force: true });
    if (backend.name === "external") await backend.drop();
  });

  it("holds requests while a first release starts instead of answering 503", async () => {
    const created = await deck.ssh("apps:create slowboot");
    assert.equal(created.code, 0, created.stderr);
    assert.equal((await deck.get("slowboot")).status, 503);
    const repo = await makeRepo(join(work, "slowboot"), trafficApp("s1", 2000));
    let early: Promise<{ status: number; body: string }> | undefined;
    const push = await deck.push(repo, "slowboot", {
      onLine: (l: TimedLine) => {
        // Sent once processes are starting: nothing answers yet, so the router holds it.
        if (!early && l.text.includes("Starting processes")) early = deck.get("slowboot", "/", { timeoutMs: 30_000 });
      },
    });
    assert.equal(push.code, 0, push.stderr);
    assert.ok(early, "the push showed its start phase");
    const r = await early;
    assert.equal(r.status, 200);
    assert.equal(r.body, "s1\n");
  });

  it("counts traffic per app: usage:report and the API show requests and bytes; /metrics has per-app series", async () => {
    const repo = await makeRepo(join(work, "metered"), trafficApp("m1"));
    assert.equal((await deck.push(repo, "metered")).code, 0);
    for (let i = 0; i < 5; i++) assert.equal((await deck.get("metered")).status, 200);
    const upload = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: deck.ports.http, method: "POST", path: "/", headers: { Host: "metered.localhost" }, agent: false }, (res) => { res.resume(); res.on("end", () => resolve(res.statusCode ?? 0)); });
      req.on("error", reject);
      req.end(Buffer.alloc(50_000, 120));
    });
    assert.equal(upload, 200);

    let rows: { hour: string; requests: number; bytesIn: number; bytesOut: number }[] = [];
    const until = Date.now() + 15_000;
    while (Date.now() < until) {
      const r = await deck.ssh("usage:report metered --json");
      assert.equal(r.code, 0, r.stderr);
      rows = JSON.parse(r.stdout);
      if (rows.length === 1 && rows[0].requests >= 6) break;
      await new Promise((res) => setTimeout(res, 300));
    }
    assert.equal(rows.length, 1, "one row for the current hour");
    assert.equal(rows[0].requests, 6);
    assert.ok(rows[0].bytesIn >= 50_000, `bytes in: ${rows[0].bytesIn}`);
    assert.ok(rows[0].bytesOut >= 6 * 3, `bytes out: ${rows[0].bytesOut}`);
    assert.equal(new Date(rows[0].hour).getUTCMinutes(), 0, "counted per clock hour");

    const table = await deck.ssh("usage:report metered");
    assert.match(table.stdout, /HOUR \(UTC\)\s+REQUESTS\s+IN\s+OUT/);
    assert.match(table.stdout, /total\s+6\s/);
    // Binary units, named as such: 50,000 bytes in is 48.8 KiB and more.
    assert.match(table.stdout, /total\s+6\s+\d+\.\d KiB\s/);

    const api = await fetch(`http://127.0.0.1:${deck.ports.api}/api/v1/apps/metered/usage?hours=2`, { headers: { Authorization: `Bearer ${deck.token}` } });
    assert.equal(api.status, 200);
    const body = (await api.json()) as { items: { requests: number }[] };
    assert.equal(body.items[0].requests, 6);

    const metrics = await fetch(`http://127.0.0.1:${deck.ports.api}/metrics`, { headers: { Authorization: `Bearer ${deck.token}` } });
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain/);
    const text = await metrics.text();
    assert.match(text, /deck_router_requests_total\{app="metered",code="2xx"\} 6/);
    assert.match(text, /deck_router_request_duration_seconds_bucket\{le="0\.1",app="metered"\} \d+/);
    assert.match(text, /deck_router_received_bytes_total\{app="metered"\} \d{5,}/);
    assert.match(text, /deck_server_process_resident_memory_bytes \d+/);

    const anonymous = await fetch(`http://127.0.0.1:${deck.ports.api}/metrics`);
    assert.equal(anonymous.status, 401);
    assert.equal(((await anonymous.json()) as { error: { code: string } }).error.code, "unauthenticated");

    // The access log: one JSON line per request, with the request id the client saw.
    const seen = await deck.get("metered", "/traced");
    const id = String(seen.headers["x-request-id"]);
    let line: Record<string, unknown> | undefined;
    const logUntil = Date.now() + 5000;
    while (!line && Date.now() < logUntil) {
      const text = await readFile(join(deck.dataDir, "logs", "access.log"), "utf8").catch(() => "");
      const found = text.split("\n").find((l) => l.includes(id));
      if (found) line = JSON.parse(found);
      else await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(line, "the request is in logs/access.log");
    assert.equal(line.app, "metered");
    assert.equal(line.path, "/traced");
    assert.equal(line.status, 200);
  });

  it("saves traffic counted while the deck server was down and the router restarted, once; a destroyed app's usage stays its own", async () => {
    const repo = await makeRepo(join(work, "kept"), trafficApp("k1"));
    assert.equal((await deck.push(repo, "kept")).code, 0);
    const report = async () => {
      const r = await deck.ssh("usage:report kept --json");
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { requests: number }[]).reduce((n, row) => n + row.requests, 0);
    };
    const waitForTotal = async (want: number) => {
      let total = -1;
      for (const until = Date.now() + 15_000; Date.now() < until; await new Promise((res) => setTimeout(res, 300))) {
        total = await report();
        if (total >= want) break;
      }
      return total;
    };
    for (let i = 0; i < 2; i++) assert.equal((await deck.get("kept")).status, 200);
    assert.equal(await waitForTotal(2), 2);

    // The deck server crashes: nothing saves meanwhile, and the router keeps counting.
    await deck.kill9();
    for (let i = 0; i < 3; i++) assert.equal((await deck.get("kept")).status, 200);
    // The router stops too (as `deck down` stops it), with the counts still unsaved.
    const routerPid = await stopRouter(deck.dataDir, 10_000);
    assert.ok(routerPid, "the router was running");
    assert.match(readFileSync(join(deck.dataDir, "logs", "router.log"), "utf8"), /metering: kept 1 unsaved usage entries in /);

    await deck.startServer();
    assert.equal((await deck.get("kept")).status, 200);
    assert.equal(await waitForTotal(6), 6, "2 saved before, 3 kept across the restart, 1 after");
    await new Promise((res) => setTimeout(res, 2500));
    assert.equal(await report(), 6, "saved once: later saves add nothing twice");

    // Destroyed, then created again under the same name: the new app starts from nothing, and the old
    // app's usage is still in the database for its organization's bill.
    assert.equal((await deck.ssh("apps:destroy kept --confirm kept")).code, 0);
    assert.equal((await deck.ssh("apps:create kept")).code, 0);
    assert.equal(await report(), 0);
    const rows = await queryDeckDatabase<{ app_id: string | null; app_name: string; requests: string }>(deckDatabaseUrl(deck, backend),
      "SELECT app_id, app_name, sum(requests) AS requests FROM bandwidth_usage WHERE app_name = 'kept' GROUP BY app_id, app_name");
    assert.deepEqual(rows.map((r) => [r.app_id, r.app_name, Number(r.requests)]), [[null, "kept", 6]]);
  });

  it("passes server-sent events through as they are sent", async () => {
    const repo = await makeRepo(join(work, "sse"), trafficApp("e1"));
    assert.equal((await deck.push(repo, "sse")).code, 0);
    const events: { at: number; text: string }[] = [];
    const start = Date.now();
    await new Promise<void>((resolve, reject) => {
      http.get({ host: "127.0.0.1", port: deck.ports.http, path: "/events", headers: { Host: "sse.localhost" }, agent: false }, (res) => {
        assert.equal(res.headers["content-type"], "text/event-stream");
        res.setEncoding("utf8");
        res.on("data", (d: string) => events.push({ at: Date.now() - start, text: d }));
        res.on("end", resolve);
        res.on("error", reject);
      }).on("error", reject);
    });
    assert.equal(events.map((e) => e.text).join(""), "data: first\n\ndata: second\n\n");
    // The first event arrived well before the stream ended (the app waits 1.5 s between them).
    assert.ok(events[0].text.startsWith("data: first"));
    assert.ok(events[events.length - 1].at - events[0].at >= 1000, `events at ${events.map((e) => e.at)}`);
  });

  it("keeps an open WebSocket on the old release through a deploy; the old release stops once it closes", async () => {
    const repo = await makeRepo(join(work, "ws"), trafficApp("w1"));
    assert.equal((await deck.push(repo, "ws")).code, 0);
    const tunnel = await openTunnel(deck.ports.http, "ws.localhost");
    assert.equal(await tunnel.say("hello"), "w1 echo hello");

    await commitFiles(repo, trafficApp("w2"), "v2");
    let pushDone = false;
    const push = deck.push(repo, "ws").then((r) => { pushDone = true; return r; });
    // New requests go to w2 as soon as the switch happens ...
    const until = Date.now() + 60_000;
    while ((await deck.get("ws")).body !== "w2\n") {
      assert.ok(Date.now() < until, "w2 went live");
      await new Promise((r) => setTimeout(r, 200));
    }
    // ... while the open tunnel still talks to w1: it was not cut at the switch, and the deploy waits for it.
    assert.equal(await tunnel.say("still there"), "w1 echo still there");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(pushDone, false, "the deploy drains the open tunnel before stopping w1");
    tunnel.close();
    await tunnel.closed;
    const result = await push;
    assert.equal(result.code, 0, result.stderr);
    const next = await openTunnel(deck.ports.http, "ws.localhost");
    assert.equal(await next.say("again"), "w2 echo again");
    next.close();
  });
  it("a platform admin's wildcard certificate for *.DECK_DOMAIN serves every app's default name over HTTPS", async () => {
    const dir = await mkdtemp(join(work, "certs-"));
    const make = (name: string, host: string) => {
      execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
        "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.crt`), "-subj", `/CN=${host}`, "-addext", `subjectAltName=DNS:${host}`], { stdio: "ignore" });
      return { cert: readFileSync(join(dir, `${name}.crt`), "utf8"), key: readFileSync(join(dir, `${name}.key`), "utf8") };
    };
    const wildcard = make("wild", "*.localhost");
    const other = make("other", "*.example.org");
    const sshWithInput = (command: string, input: string, keyFile = deck.keyFile) => {
      const args = deck.sshArgs();
      args[1] = keyFile;
      return run("ssh", [...args, "deck@127.0.0.1", command], { input });
    };
    // The chain is verified against the wildcard; the name check is done here, since clients refuse
    // a wildcard one label below a top-level name (*.localhost) that a real DECK_DOMAIN would not be.
    const get = (host: string) => new Promise<{ status: number; body: string; subject: string }>((resolve, reject) => {
      https.get({ host: "127.0.0.1", port: deck.ports.https, servername: host, headers: { host }, ca: wildcard.cert, agent: false, checkServerIdentity: () => undefined }, (res) => {
        const subject = String((res.socket as import("node:tls").TLSSocket).getPeerCertificate().subject?.CN);
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, subject }));
      }).on("error", reject);
    });
    // Before: the self-signed fallback, which a client trusting only the wildcard refuses.
    await assert.rejects(get("sse.localhost"));

    const wrong = await sshWithInput("certs:default:add", `${other.cert}${other.key}`);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /the certificate is for \*\.example\.org; the default domain needs one for \*\.localhost/);

    const api = apiClient(deck);
    const member = await addUser(api, dir, { email: "member@example.com", org: "default", role: "admin" });
    const denied = await sshWithInput("certs:default:add", `${wildcard.cert}${wildcard.key}`, member.keyFile);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /only platform admins may set the default domain's certificate/);

    const added = await sshWithInput("certs:default:add", `${wildcard.cert}${wildcard.key}`);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /every app's default name now gets the certificate for \*\.localhost \(expires \d{4}-\d{2}-\d{2}\)/);
    const served = await get("sse.localhost");
    assert.equal(served.status, 200);
    assert.equal(served.body, "e1\n");
    assert.equal(served.subject, "*.localhost");
    assert.equal((await get("metered.localhost")).body, "m1\n");
    const report = await deck.ssh("domains:report sse");
    assert.match(report.stdout, /sse\.localhost.*wildcard \*\.localhost \(expires \d{4}-\d{2}-\d{2}\)/);

    const removed = await api("DELETE", "/certs/default");
    assert.equal(removed.status, 200, removed.text);
    await assert.rejects(get("sse.localhost"));
  });
});
