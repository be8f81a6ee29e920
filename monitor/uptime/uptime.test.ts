import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDatabase, type Database } from "../../store/index.ts";
import { apiClient, deckDatabaseUrl, queryDeckDatabase, type Api } from "../../test/helpers/accounts.ts";
import { databaseBackends } from "../../test/helpers/database.ts";
import { Deck, makeRepo } from "../../test/helpers/deck.ts";
import { UptimeProber, type UptimeChange } from "./index.ts";

/**
 * Uptime probes against a real deck server: its router, its database, an app pushed with git. Two
 * probers share the database like two deck servers would. The app is made to fail its health check
 * path (HTTP 500, then no answer at all) and to recover; `uptime APP` over SSH and the API show what a
 * user would see, and each change reaches onChange once, not once per server. A page that fails its
 * users while the health check path still answers opens an incident from the traffic itself.
 */

const backends = await databaseBackends();
const APP = "pinger";
const INTERVAL_MS = 250;
const TIMEOUT_MS = 1000;

/** An app whose answers a request can turn bad: /break (HTTP 500), /hang (no answer), /pages (500 for every page but /), /fix. */
function flakyApp(): Record<string, string> {
  const server = `const http = require("http");
let mode = "ok";
http.createServer((req, res) => {
  if (req.url === "/break") { mode = "fail"; return res.end("broken\\n"); }
  if (req.url === "/hang") { mode = "hang"; return res.end("hanging\\n"); }
  if (req.url === "/fix") { mode = "ok"; return res.end("fixed\\n"); }
  if (req.url === "/pages") { mode = "pages"; return res.end("pages failing\\n"); }
  if (mode === "pages" && req.url !== "/") { res.statusCode = 500; return res.end("this page fails\\n"); }
  if (mode === "hang") return;
  if (mode === "fail") { res.statusCode = 500; return res.end("failing on purpose\\n"); }
  res.end("ok\\n");
}).listen(process.env.PORT);
`;
  const pkg = { name: "flaky", version: "1.0.0", private: true, scripts: { start: "node server.js" } };
  return { "package.json": JSON.stringify(pkg, null, 2), "server.js": server, Procfile: "web: node server.js\n" };
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Report {
  app: string;
  days: number;
  checks: number;
  failures: number;
  uptimePercent: number | null;
  daily: { day: string; checks: number; failures: number; uptimePercent: number | null; requests: number; failedRequests: number; availabilityPercent: number | null }[];
  incidents: { startedAt: string; endedAt: string | null; durationSeconds: number; cause: string; source: string; location: string }[];
  requests: number;
  failedRequests: number;
  availabilityPercent: number | null;
}

for (const backend of backends) {
  describe(`uptime probes through deck's router (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let api: Api;
    let work: string;
    let db: Database;
    let probers: UptimeProber[] = [];
    const events: UptimeChange[] = [];
    const logs: string[] = [];
    let app: { id: number; orgId: number };

    const report = async (days = 90): Promise<Report> => {
      const r = await api("GET", `/apps/${APP}/uptime?days=${days}`);
      assert.equal(r.status, 200, r.text);
      return r.json as Report;
    };
    const sshOk = async (command: string): Promise<string> => {
      const r = await deck.ssh(command);
      assert.equal(r.code, 0, `${command}:\n${r.stderr}`);
      return r.stdout;
    };
    const hit = async (path: string, expect: string) => {
      const r = await deck.get(APP, path);
      assert.equal(r.body, expect, `GET ${path} through the router`);
    };
    const waitForEvents = (n: number, what: string) => until(what, async () => events.length >= n && events.slice());

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-uptime-"));
      // Should the server probe too, its first round (at start, before any app exists) is its last for a day.
      // Samples every second, so the traffic of a test reaches the probers' judgement at once.
      deck = await Deck.start({ backend, env: { DECK_UPTIME_INTERVAL: "86400", DECK_METRICS_INTERVAL: "1" } });
      api = apiClient(deck);
      const repo = await makeRepo(join(work, APP), flakyApp());
      const push = await deck.push(repo, APP);
      assert.equal(push.code, 0, push.stderr);
      await hit("/", "ok\n");
      const url = deckDatabaseUrl(deck, backend);
      const [row] = await queryDeckDatabase<{ id: string; org_id: string }>(url, "SELECT id, org_id FROM apps WHERE name = $1", [APP]);
      app = { id: Number(row!.id), orgId: Number(row!.org_id) };
      db = await openDatabase({ dataDir: work, databaseUrl: url });
      // Two probers on one database, as two deck servers sharing it; their checks carry the server's secret, so they are not counted as traffic.
      const probeToken = (await readFile(join(deck.dataDir, "keys", "probe.token"), "utf8")).trim();
      probers = [1, 2].map((n) => new UptimeProber({
        db: db.pool, httpPort: deck.ports.http, domain: "localhost", intervalMs: INTERVAL_MS, timeoutMs: TIMEOUT_MS, probeToken,
        log: (line) => logs.push(`prober ${n}: ${line}`),
        onChange: (e) => void events.push(e),
      }));
      // Out of step by half an interval, so each finds the other's round just done and the app not yet due.
      probers[0]!.start();
      await new Promise((r) => setTimeout(r, INTERVAL_MS / 2));
      probers[1]!.start();
    });

    after(async () => {
      for (const p of probers) await p.stop();
      await db?.close();
      await deck?.stop();
      await rm(work, { recursive: true, force: true });
    });

    it("counts every check of a healthy app: 100.000% and no incidents", async () => {
      // The day's requests come from the metrics samples, written a moment after the checks' own counts.
      const r = await until("four checks, and today's requests counted", async () => {
        const rep = await report();
        return rep.checks >= 4 && (rep.daily[0]?.requests ?? 0) > 0 && rep;
      });
      assert.equal(r.failures, 0);
      assert.equal(r.uptimePercent, 100);
      assert.deepEqual(r.incidents, []);
      assert.equal(r.daily.length, 1, "days before the app existed are not shown");
      const today = new Date().toISOString().slice(0, 10);
      assert.equal(r.daily[0]!.day, today);
      const text = await sshOk(`uptime ${APP}`);
      assert.match(text, new RegExp(`^${APP}: 100\\.000% up over the last 1 day\\(s\\)`, "m"));
      assert.match(text, new RegExp(`^${today}\\s+100\\.000%\\s+\\d+\\s+0\\s+100\\.000%\\s+\\d+$`, "m"), "checks, and the app's own requests all served");
      assert.match(text, /^no incidents$/m);
      assert.deepEqual(events, [], "nothing went down");
    });

    it("opens an incident after two failed checks (HTTP 500) and ends it after two good ones", async () => {
      await hit("/break", "broken\n");
      const [down] = await waitForEvents(1, "the down event");
      assert.deepEqual({ ...down, since: "" }, { app: APP, appId: app.id, orgId: app.orgId, down: true, cause: "HTTP 500", since: "", source: "probe", location: "" });
      let r = await report();
      assert.equal(r.incidents.length, 1);
      assert.equal(r.incidents[0]!.endedAt, null);
      assert.equal(r.incidents[0]!.cause, "HTTP 500");
      assert.equal(r.incidents[0]!.startedAt, down!.since);
      assert.ok(r.failures >= 2, `failures counted: ${r.failures}`);
      assert.ok(r.uptimePercent! < 100, `uptime ${r.uptimePercent}`);
      let text = await sshOk(`uptime ${APP}`);
      assert.match(text, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+ongoing\s+\d+s\s+deck's checks\s+HTTP 500$/m);

      await hit("/fix", "fixed\n");
      const [, up] = await waitForEvents(2, "the up event");
      assert.equal(up!.down, false);
      assert.equal(up!.app, APP);
      assert.equal(up!.cause, "HTTP 500", "what it was down with");
      assert.ok(up!.since > down!.since);
      r = await report();
      assert.equal(r.incidents[0]!.endedAt, up!.since);
      assert.equal(r.incidents[0]!.durationSeconds, Math.round((Date.parse(up!.since) - Date.parse(down!.since)) / 1000));
      const expected = Math.floor(((r.checks - r.failures) * 100_000) / r.checks) / 1000;
      assert.equal(r.uptimePercent, expected);
      // The probers keep checking: the text shows its own numbers, which must agree with each other.
      text = await sshOk(`uptime ${APP}`);
      const m = new RegExp(`^${APP}: (\\d+\\.\\d{3})% up over the last 1 day\\(s\\) \\((\\d+) checks, (\\d+) failed\\)$`, "m").exec(text);
      assert.ok(m, text);
      const [checks, failures] = [Number(m[2]), Number(m[3])];
      assert.ok(failures >= r.failures && checks >= r.checks, text);
      assert.notEqual(m[1], "100.000", "failed checks show in the percentage");
      assert.equal(m[1], (Math.floor(((checks - failures) * 100_000) / checks) / 1000).toFixed(3), text);
      assert.doesNotMatch(text, /ongoing/);
      assert.equal(events.length, 2, `one event per change, whichever server saw it: ${JSON.stringify(events)}`);
    });

    it("names a check that got no answer in time", async () => {
      await hit("/hang", "hanging\n");
      const [, , down] = await waitForEvents(3, "the down event");
      assert.equal(down!.down, true);
      assert.equal(down!.cause, "timed out after 1 s");
      await hit("/fix", "fixed\n");
      const [, , , up] = await waitForEvents(4, "the up event");
      assert.equal(up!.down, false);
      const r = await report();
      assert.deepEqual(r.incidents.map((i) => i.cause), ["timed out after 1 s", "HTTP 500"]);
      assert.ok(r.incidents.every((i) => i.endedAt !== null));
    });

    it("stops probing a stopped app and ends its incident; probes it again after ps:start", async () => {
      await hit("/break", "broken\n");
      await waitForEvents(5, "the down event");
      await sshOk(`ps:stop ${APP}`);
      const [, , , , , up] = await waitForEvents(6, "the incident's end");
      assert.deepEqual({ ...up, since: "" }, { app: APP, appId: app.id, orgId: app.orgId, down: false, cause: "HTTP 500", since: "", source: "probe", location: "" });
      const stopped = await report();
      assert.ok(stopped.incidents.every((i) => i.endedAt !== null), "no incident stays open for a stopped app");
      // Not probed while stopped: give the probers several rounds (a round under way may still add one).
      await new Promise((r) => setTimeout(r, 6 * INTERVAL_MS));
      assert.ok((await report()).checks <= stopped.checks + 1, "no checks while stopped");

      await sshOk(`ps:start ${APP}`);
      await until("the app answering again", async () => (await deck.get(APP, "/").catch(() => ({ body: "" }))).body === "ok\n");
      const before = (await report()).checks;
      await until("checks again", async () => (await report()).checks >= before + 3);
      assert.equal(events.length, 6, "no new incident after ps:start");
    });

    it("checks each app once per interval however many servers probe", async () => {
      // A window of measurement, not a wait for something to happen: both probers run throughout.
      const windowMs = 3000;
      const first = await report();
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, windowMs));
      const last = await report();
      const elapsed = Date.now() - t0;
      const checks = last.checks - first.checks;
      const most = Math.floor(elapsed / (0.8 * INTERVAL_MS)) + 2;
      assert.ok(checks <= most, `${checks} checks in ${elapsed} ms with two probers (at most ${most} when they take turns)`);
      // How many fit in depends on how busy the machine is: that it is probed at all is what counts here.
      assert.ok(checks >= 2, `${checks} checks in ${elapsed} ms: the app is probed`);
    });

    it("opens an incident from the traffic when most requests fail while the health check still answers, and counts what users were served", async () => {
      await hit("/pages", "pages failing\n");
      const before = events.length;
      for (let i = 0; i < 30; i++) assert.equal((await deck.get(APP, "/cart")).status, 500);
      const opened = await until("the traffic incident", async () => events.slice(before).find((e) => e.source === "traffic"));
      assert.deepEqual({ ...opened, since: "" }, { app: APP, appId: app.id, orgId: app.orgId, down: true, cause: opened.cause, since: "", source: "traffic", location: "" });
      assert.match(opened.cause, /^\d+ of \d+ requests in a minute answered 5xx$/);
      assert.equal(events.slice(before).filter((e) => e.source === "probe").length, 0, "the health check path still answers");
      // The incident opens as soon as a minute holds enough failures; the day's figures count every request once sampled.
      const r = await until("all 30 failed requests in the day's figures", async () => {
        const rep = await report();
        return rep.failedRequests >= 30 && rep;
      });
      const incident = r.incidents.find((i) => i.source === "traffic")!;
      assert.equal(incident.endedAt, null);
      assert.ok(r.requests > r.failedRequests, `requests ${r.requests}, failed ${r.failedRequests}: the app's other requests were served`);
      assert.equal(r.daily[0]!.availabilityPercent, Math.floor(((r.daily[0]!.requests - r.daily[0]!.failedRequests) * 100_000) / r.daily[0]!.requests) / 1000);
      const text = await sshOk(`uptime ${APP}`);
      assert.match(text, /^requests answered without a 5xx: \d+\.\d{3}% \(\d+ of \d+\)$/m);
      assert.match(text, /ongoing\s+\d+s\s+its requests\s+\d+ of \d+ requests in a minute answered 5xx$/m);
      await hit("/fix", "fixed\n");
    });

    it("refuses a bad period, over SSH and the API", async () => {
      const bad = await deck.ssh(`uptime ${APP} --days 401`);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr.trim(), /^deck: error \(bad_argument\): --days must be a whole number of days from 1 to 400/);
      assert.equal(bad.stderr.trim().split("\n").length, 1);
      const missing = await deck.ssh("uptime nosuchapp");
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /app_not_found/);
      for (const days of ["0", "401", "x"]) assert.equal((await api("GET", `/apps/${APP}/uptime?days=${days}`)).status, 400, `days=${days}`);
      const json = JSON.parse(await sshOk(`uptime ${APP} --days 7 --json`)) as Report;
      assert.equal(json.days, 7);
      assert.equal(json.daily.length, 1);
      assert.equal(logs.filter((l) => /failed/.test(l)).length, 0, logs.join("\n"));
    });
  });
}
