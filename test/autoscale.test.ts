/**
 * Autoscaling end to end: a real deck server sampling every second and deciding every 2 s, an app
 * pushed over real git whose /slow answers take 400 ms. With `ps:autoscale APP web --min 1 --max 3
 * --p95 200ms`, slow traffic through the router scales web out (a blue-green redeploy, as ps:scale):
 * `ps:report` shows the new processes, `ps:autoscale` lists the decision with its reason, the org's
 * webhook gets one notice, the event stream carries it and the audit log names it. Scaling in takes
 * five quiet minutes and is covered by core/autoscale.test.ts and monitor/autoscale/controller.test.ts.
 * Run on both runtimes: supervised processes and Docker containers (skipped without a Docker engine,
 * except under CI=true).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { buildBaseImage, dockerSkipReason, type BaseImage } from "./helpers/base-image.ts";
import { Deck, makeRepo } from "./helpers/deck.ts";

/** Slow on /slow, fast elsewhere; every answer names the process that gave it. */
const SLOW_APP: Record<string, string> = {
  "package.json": JSON.stringify({ name: "sluggish", version: "1.0.0", private: true, scripts: { start: "node server.js" } }),
  Procfile: "web: node server.js\n",
  "server.js": `const instance = require("crypto").randomBytes(6).toString("hex");
require("http").createServer((req, res) => {
  if (req.url === "/slow") return setTimeout(() => res.end("slow instance=" + instance + "\\n"), 400);
  res.end("fast instance=" + instance + "\\n");
}).listen(process.env.PORT);
process.on("SIGTERM", () => process.exit(0));
`,
};

interface AlertmanagerBody { alerts: { status: string; labels: Record<string, string>; annotations: Record<string, string> }[] }
interface ReportJson { formation: Record<string, number>; processes: { name: string; state: string }[] }

const RUNTIMES = [
  { name: "process", skip: undefined },
  { name: "docker", skip: dockerSkipReason() },
] as const;

for (const runtime of RUNTIMES) describe(`autoscaling of an app (${runtime.name} runtime)`, { skip: runtime.skip }, () => {
  let deck: Deck;
  let work: string;
  let receiver: http.Server;
  let base: BaseImage | undefined;
  const received: AlertmanagerBody[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-autoscale-"));
    if (runtime.name === "docker") base = await buildBaseImage();
    receiver = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        received.push(JSON.parse(body) as AlertmanagerBody);
        res.end("ok");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", () => r()));
    deck = await Deck.start({
      backend: { name: "embedded" },
      env: {
        DECK_METRICS_INTERVAL: "1", DECK_AUTOSCALE_INTERVAL: "2", DECK_UPTIME_INTERVAL: "86400", DECK_OUTBOUND_ALLOW: "127.0.0.1/32",
        ...(base ? { DECK_RUNTIME: "docker", DECK_BASE_IMAGE: base.tag, DECK_APP_MEMORY: "256m", DECK_UPSTREAM_HOST: "127.0.0.2" } : {}),
      },
    });
  });
  after(async () => {
    await deck?.stop();
    if (base) {
      // The app's images (deck.stop removes its containers and networks), then the base image.
      const images = execFileSync("docker", ["images", "--quiet", "--filter", "label=deck.app=sluggish"], { encoding: "utf8" }).split("\n").filter(Boolean);
      for (const id of new Set(images)) execFileSync("docker", ["rmi", "--force", id], { stdio: "ignore" });
      await base.remove();
    }
    await new Promise((r) => receiver.close(r));
    await rm(work, { recursive: true, force: true });
  });

  it("scales web out when p95 stays above its target, and says so everywhere a user looks", async () => {
    const add = await deck.ssh(`notify:add default webhook http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`);
    assert.equal(add.code, 0, add.stderr);
    const push = await deck.push(await makeRepo(join(work, "sluggish"), SLOW_APP), "sluggish");
    assert.equal(push.code, 0, push.stderr);
    const on = await deck.ssh("ps:autoscale sluggish web --min 1 --max 3 --p95 200ms");
    assert.equal(on.code, 0, on.stderr);
    assert.match(on.stdout, /sluggish: web autoscales between 1 and 3 processes on p95 200ms \(now 1; checked every 2s\)/);

    const streamed: string[] = [];
    const events = http.get({ host: "127.0.0.1", port: deck.ports.api, path: "/api/v1/events?app=sluggish", headers: { authorization: `Bearer ${deck.token}` }, agent: false });
    events.on("response", (res) => {
      res.setEncoding("utf8");
      res.on("data", (c: string) => streamed.push(c));
    });
    events.on("error", () => undefined);

    // The process serving before the scale; any other one answering is a new process.
    const before = /instance=(\w+)/.exec((await deck.get("sluggish", "/")).body)![1]!;
    const answeredBy = new Map<string, number>();
    let slow = true;
    const firstSlowAt = Date.now();
    // Eight clients in a loop: about 20 slow requests a second, enough for a p95 within a second.
    const clients = Array.from({ length: 8 }, async () => {
      while (slow) {
        const r = await deck.get("sluggish", "/slow").catch(() => null);
        const who = r && /instance=(\w+)/.exec(r.body)?.[1];
        if (who && who !== before && !answeredBy.has(who)) answeredBy.set(who, Date.now());
      }
    });
    try {
      const deadline = Date.now() + 60_000;
      let report: ReportJson | null = null;
      let reportedAt = 0;
      while (Date.now() < deadline) {
        const ps = await deck.ssh("ps:report sluggish --json");
        assert.equal(ps.code, 0, ps.stderr);
        report = JSON.parse(ps.stdout) as ReportJson;
        const webs = report.processes.filter((p) => p.name.startsWith("web.") && p.state === "running");
        if (webs.length >= 2 && answeredBy.size >= 2) {
          reportedAt = Date.now();
          break;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(reportedAt, `web scaled out within 60 s: ${JSON.stringify(report)}\n${deck.log().split("\n").filter((l) => l.includes("autoscale")).slice(-20).join("\n")}`);
      assert.ok((report!.formation.web ?? 0) >= 2, JSON.stringify(report));
      const serving = [...answeredBy.values()].sort((a, b) => a - b);
      process.stderr.write(`autoscale (${runtime.name} runtime): first slow request → first new process answering ${serving[0]! - firstSlowAt} ms, → a second new process answering ${serving[1]! - firstSlowAt} ms, → ps:report showing them ${reportedAt - firstSlowAt} ms\n`);
    } finally {
      slow = false;
      await Promise.all(clients);
    }

    try {
      const shown = await deck.ssh("ps:autoscale sluggish");
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, /^web\s+[23]\s+1\s+3\s+p95 200ms$/m);
      assert.match(shown.stdout, /^\S+ \S+ UTC\s+web\s+1 → [23]\s+done\s+p95 \d+ms above 200ms over the last minute$/m);
      const json = JSON.parse((await deck.ssh("ps:autoscale sluggish --json")).stdout) as { decisions: { direction: string; from: number; to: number; status: string }[] };
      assert.deepEqual(json.decisions.at(-1)!.direction, "out");

      // The org's webhook hears of it once per decision; the stream and the audit log carry it.
      const end = Date.now() + 15_000;
      while (Date.now() < end && !(received.some((b) => b.alerts.some((a) => a.labels.alertname === "autoscale" && a.annotations.rule === "autoscale web")) && streamed.join("").includes("event: scale"))) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const notices = received.flatMap((b) => b.alerts).filter((a) => a.labels.alertname === "autoscale" && a.annotations.rule === "autoscale web");
      assert.equal(notices.length, json.decisions.length, JSON.stringify(received));
      assert.equal(notices[0]!.labels.app, "sluggish");
      assert.match(notices[0]!.annotations.summary ?? "", /^sluggish \(default\): deck scaled web out from 1 to [23] processes because p95 \d+ms above 200ms/);
      assert.match(notices[0]!.annotations.command ?? "", /ps:autoscale sluggish$/);
      assert.match(streamed.join(""), /event: scale\ndata: \{"app":"sluggish"[^\n]*"direction":"out"[^\n]*"status":"scaled"/);
      const audit = await deck.ssh("audit sluggish --json");
      const rows = JSON.parse(audit.stdout) as { action: string; userEmail: string | null; data: { from?: number; to?: number; reason?: string } }[];
      const scaled = rows.find((r) => r.action === "ps:autoscale");
      assert.ok(scaled, audit.stdout);
      assert.deepEqual([scaled.userEmail, scaled.data.from], [null, 1]);
      assert.match(scaled.data.reason ?? "", /p95 \d+ms above 200ms/);
      assert.equal(rows.filter((r) => r.action === "ps:autoscale").length, json.decisions.length, "one audit entry per decision");
      assert.equal(rows.filter((r) => r.action === "ps:scale").length, 0, "the change is not written twice");
    } finally {
      events.destroy();
    }

    const off = await deck.ssh("ps:autoscale:off sluggish web");
    assert.equal(off.code, 0, off.stderr);
    assert.match(off.stdout, /sluggish: web no longer autoscales; it keeps [23] processes/);
  });
});
