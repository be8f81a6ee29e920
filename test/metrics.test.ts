/**
 * Metrics end to end: a real deck server sampling every second (DECK_METRICS_INTERVAL=1), an app pushed
 * over real git, real requests through the router; what `metrics APP` (SSH, plain and under a
 * terminal), `GET /api/v1/apps/APP/metrics`, `/metrics` for an org admin and the event stream show.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { addUser, apiClient, type Api } from "./helpers/accounts.ts";
import { Deck, makeRepo, run } from "./helpers/deck.ts";

/** An app with a path for each thing to measure: errors, slow answers, memory held. */
const GAUGE_APP: Record<string, string> = {
  "package.json": JSON.stringify({ name: "gauge", version: "1.0.0", private: true, scripts: { start: "node server.js" } }),
  Procfile: "web: node server.js\n",
  "server.js": `const http = require("http");
let held = null;
http.createServer((req, res) => {
  if (req.url === "/fail") { res.statusCode = 500; return res.end("failed on purpose\\n"); }
  if (req.url === "/slow") return setTimeout(() => res.end("slow\\n"), 300);
  if (req.url === "/hold") { held = Buffer.alloc(80 * 1024 * 1024, 1); return res.end("holding\\n"); }
  res.end("ok\\n");
}).listen(process.env.PORT);
process.on("SIGTERM", () => process.exit(0));
`,
};

interface Point { at: string; seconds: number; requestsPerSecond: number; errorRate: number | null; p95Ms: number | null; rssBytes: number | null; memoryLimitBytes: number | null; cpu: number | null; release: number | null }
interface Metrics { app: string; step: number; resolution: number; points: Point[]; processes: Record<string, Point[]> }

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`${what} did not happen within ${ms} ms${last ? ` (${(last as Error).message})` : ""}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const requestsIn = (points: Point[]) => points.reduce((a, p) => a + Math.round(p.requestsPerSecond * p.seconds), 0);
const errorsIn = (points: Point[]) => points.reduce((a, p) => a + Math.round((p.errorRate ?? 0) * p.requestsPerSecond * p.seconds), 0);

describe("metrics of an app", () => {
  let deck: Deck;
  let work: string;
  let api: Api;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-metrics-"));
    deck = await Deck.start({ backend: { name: "embedded" }, env: { DECK_METRICS_INTERVAL: "1", DECK_UPTIME_INTERVAL: "86400", DECK_APP_MEMORY: "256m" } });
    api = apiClient(deck);
    const push = await deck.push(await makeRepo(join(work, "gauge"), GAUGE_APP), "gauge");
    assert.equal(push.code, 0, push.stderr);
  });
  after(async () => {
    await deck?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("counts requests, errors and latency through the router, and each process's CPU and memory against its limit", async () => {
    for (let i = 0; i < 20; i++) assert.equal((await deck.get("gauge")).status, 200);
    for (let i = 0; i < 5; i++) assert.equal((await deck.get("gauge", "/fail")).status, 500);
    for (let i = 0; i < 3; i++) assert.equal((await deck.get("gauge", "/slow")).status, 200);
    assert.equal((await deck.get("gauge", "/hold")).status, 200);

    const m = await until("the 29 requests to show in metrics", 30_000, async () => {
      const r = await deck.ssh("metrics gauge --since 5m --json");
      assert.equal(r.code, 0, r.stderr);
      const parsed = JSON.parse(r.stdout) as Metrics;
      const web = parsed.processes["web.1"] ?? [];
      return requestsIn(parsed.points) >= 29 && web.some((p) => (p.rssBytes ?? 0) >= 80 * 1024 * 1024) ? parsed : undefined;
    });
    assert.equal(m.resolution, 10);
    assert.equal(requestsIn(m.points), 29, "every request counted once");
    assert.equal(errorsIn(m.points), 5, "the five 500s");
    assert.ok(m.points.some((p) => (p.p95Ms ?? 0) >= 250), `the slow requests show in p95: ${JSON.stringify(m.points.map((p) => p.p95Ms))}`);
    assert.ok(m.points.every((p) => p.release === 1 || p.release === null));
    const web = m.processes["web.1"]!;
    const held = web.find((p) => (p.rssBytes ?? 0) >= 80 * 1024 * 1024)!;
    assert.equal(held.memoryLimitBytes, 256 * 1024 * 1024, "the limit the process runs under");
    assert.ok(web.some((p) => (p.cpu ?? 0) > 0), "CPU time used");

    // Plain numbers to a pipe, sparklines under a terminal.
    const plain = await deck.ssh("metrics gauge --since 5m");
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^gauge: last 5m in 10s steps, v1 live$/m);
    assert.match(plain.stdout, /^requests\/s\s+[\d.]+\s+[\d.]+\s+[\d.]+$/m);
    assert.match(plain.stdout, /^5xx\s+/m);
    assert.match(plain.stdout, /^web\.1\s+[\d.]+\s+\d+\.\d MB\s+\d+\.\d%/m);
    assert.doesNotMatch(plain.stdout, /[▁▂▃▄▅▆▇█]/);
    const terminal = await run("ssh", ["-tt", ...deck.sshArgs(), "deck@127.0.0.1", "metrics", "gauge", "--since", "5m"]);
    assert.equal(terminal.code, 0, terminal.stderr);
    assert.match(terminal.stdout, /^requests\/s .*[▁▂▃▄▅▆▇█]+\s*\r$/m, "a sparkline on each row");

    const viaApi = await api("GET", "/apps/gauge/metrics?since=5m&step=60");
    assert.equal(viaApi.status, 200, viaApi.text);
    assert.equal(viaApi.json.step, 60);
    assert.equal(requestsIn(viaApi.json.points), 29);
    const bad = await api("GET", "/apps/gauge/metrics?since=forever");
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, "bad_argument");
    const wrong = await deck.ssh("metrics gauge --since 5m --step 15");
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /^deck: error \(bad_argument\): step must be a multiple of 10 s/);
  });

  it("serves /metrics to an org's admins for their apps only, and not to members", async () => {
    const admin = await addUser(api, work, { email: "ops@example.com", org: "default", role: "admin", sshKey: false });
    const member = await addUser(api, work, { email: "dev@example.com", org: "default", role: "member", sshKey: false });
    await deck.get("gauge");
    const text = await until("the router's series of gauge", 10_000, async () => {
      const r = await fetch(`http://127.0.0.1:${deck.ports.api}/metrics`, { headers: { authorization: `Bearer ${admin.apiToken}` } });
      assert.equal(r.status, 200);
      const t = await r.text();
      return /deck_router_requests_total\{app="gauge",code="2xx"\} \d+/.test(t) ? t : undefined;
    });
    assert.doesNotMatch(text, /deck_server_/, "nothing of deck's own process");
    assert.doesNotMatch(text, /^deck_router_open_connections /m, "nothing that is not an app's");
    const refused = await fetch(`http://127.0.0.1:${deck.ports.api}/metrics`, { headers: { authorization: `Bearer ${member.apiToken}` } });
    assert.equal(refused.status, 403);
  });

  it("streams deploy state changes to whoever may see the app", async () => {
    const events: string[] = [];
    const req = http.get({ host: "127.0.0.1", port: deck.ports.api, path: "/api/v1/events?app=gauge", headers: { authorization: `Bearer ${deck.token}` }, agent: false });
    const opened = new Promise<http.IncomingMessage>((resolve, reject) => {
      req.on("response", resolve);
      req.on("error", reject);
    });
    const res = await opened;
    try {
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers["content-type"]), /^text\/event-stream/);
      res.setEncoding("utf8");
      let buffer = "";
      res.on("data", (c: string) => {
        buffer += c;
        const parts = buffer.split("\n\n");
        buffer = parts.pop()!;
        events.push(...parts.filter((p) => p.startsWith("event:")));
      });
      const set = await deck.ssh("config:set gauge STREAMED=yes");
      assert.equal(set.code, 0, set.stderr);
      await until("the deploy's last move on the stream", 10_000, async () => (events.some((e) => /"to":"succeeded"/.test(e)) ? true : undefined));
      const moves = events.map((e) => JSON.parse(e.split("\ndata: ")[1]!) as { app: string; kind: string; to: string });
      assert.ok(moves.every((m) => m.app === "gauge" && m.kind === "config"), JSON.stringify(moves));
      // A config change makes no release command run: it starts with the new processes.
      assert.deepEqual(moves.map((m) => m.to), ["starting", "checking", "switching", "draining", "succeeded"]);
    } finally {
      req.destroy();
    }
    const anonymous = await fetch(`http://127.0.0.1:${deck.ports.api}/api/v1/events`);
    assert.equal(anonymous.status, 401);
  });
});
