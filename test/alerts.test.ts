/**
 * Alerts end to end: a real deck server sampling every second, an app pushed over real git that starts
 * fine and then crashes again and again; the default crash-loop rule fires, a real webhook receiver on
 * loopback gets it in Alertmanager's format, `alerts:list` shows it, and the event stream carries it.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Deck, makeRepo } from "./helpers/deck.ts";

/** Answers for two seconds after each start, then exits: its supervisor restarts it, with backoff. */
const FLAKY_APP: Record<string, string> = {
  "package.json": JSON.stringify({ name: "flaky", version: "1.0.0", private: true, scripts: { start: "node server.js" } }),
  Procfile: "web: node server.js\n",
  "server.js": `require("http").createServer((req, res) => res.end("up\\n")).listen(process.env.PORT);
setTimeout(() => { console.error("giving up"); process.exit(1); }, 2000);
`,
};

/** Slow or fast on demand, and holds memory until told to let go. */
const STRAINED_APP: Record<string, string> = {
  "package.json": JSON.stringify({ name: "strained", version: "1.0.0", private: true, scripts: { start: "node server.js" } }),
  Procfile: "web: node --expose-gc server.js\n",
  "server.js": `let held = null;
require("http").createServer((req, res) => {
  if (req.url === "/slow") return setTimeout(() => res.end("slow\\n"), 400);
  if (req.url === "/leak") { held = Buffer.alloc(200 * 1024 * 1024, 1); return res.end("holding\\n"); }
  if (req.url === "/heal") { held = null; global.gc(); return res.end("let go\\n"); }
  res.end("fast\\n");
}).listen(process.env.PORT);
process.on("SIGTERM", () => process.exit(0));
`,
};

interface AlertmanagerBody { status: string; alerts: { status: string; labels: Record<string, string>; annotations: Record<string, string> }[] }

describe("alerts of an app", () => {
  let deck: Deck;
  let work: string;
  let receiver: http.Server;
  const received: AlertmanagerBody[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-alerts-"));
    receiver = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        received.push(JSON.parse(body) as AlertmanagerBody);
        res.end("ok");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", () => r()));
    deck = await Deck.start({ backend: { name: "embedded" }, env: { DECK_METRICS_INTERVAL: "1", DECK_UPTIME_INTERVAL: "86400", DECK_OUTBOUND_ALLOW: "127.0.0.1/32", DECK_APP_MEMORY: "256m" } });
  });
  after(async () => {
    await deck?.stop();
    await new Promise((r) => receiver.close(r));
    await rm(work, { recursive: true, force: true });
  });

  it("fires the default crash-loop rule, notifies the org's webhook in Alertmanager's format, and streams it", async () => {
    const port = (receiver.address() as AddressInfo).port;
    const add = await deck.ssh(`notify:add default webhook http://127.0.0.1:${port}/hook`);
    assert.equal(add.code, 0, add.stderr);
    const push = await deck.push(await makeRepo(join(work, "flaky"), FLAKY_APP), "flaky");
    assert.equal(push.code, 0, push.stderr);

    const streamed: string[] = [];
    const req = http.get({ host: "127.0.0.1", port: deck.ports.api, path: "/api/v1/events?app=flaky", headers: { authorization: `Bearer ${deck.token}` }, agent: false });
    req.on("response", (res) => {
      res.setEncoding("utf8");
      res.on("data", (c: string) => streamed.push(c));
    });
    req.on("error", () => undefined);
    try {
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline && !received.some((b) => b.alerts.some((a) => a.labels.alertname === "crash_loop" && a.status === "firing"))) {
        await new Promise((r) => setTimeout(r, 250));
      }
      const firing = received.flatMap((b) => b.alerts).find((a) => a.labels.alertname === "crash_loop" && a.status === "firing");
      assert.ok(firing, `the crash loop reached the webhook: ${JSON.stringify(received)}`);
      assert.equal(firing.labels.app, "flaky");
      assert.equal(firing.labels.org, "default");
      assert.ok(firing.labels.host, "names the host");
      assert.match(firing.annotations.value ?? "", /restart/);
      assert.match(firing.annotations.command ?? "", /metrics flaky/);
      assert.equal(received.flatMap((b) => b.alerts).filter((a) => a.labels.alertname === "crash_loop" && a.status === "firing").length, 1, "sent once");

      const listed = await deck.ssh("alerts:list flaky --json");
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /crash_loop/);
      assert.match(listed.stdout, /firing/);
      const streamDeadline = Date.now() + 10_000;
      while (Date.now() < streamDeadline && !streamed.join("").includes("event: alert")) await new Promise((r) => setTimeout(r, 100));
      assert.match(streamed.join(""), /event: alert\ndata: \{[^\n]*"status":"firing"/);
    } finally {
      req.destroy();
    }
  });

  it("fires p95 and memory rules when the app slows down and holds memory, and resolves them when it recovers", async () => {
    const push = await deck.push(await makeRepo(join(work, "strained"), STRAINED_APP), "strained");
    assert.equal(push.code, 0, push.stderr);
    for (const rule of ["p95>200ms for 3s min 1", "memory>60% for 3s"]) {
      const add = await deck.ssh(`alerts:add strained '${rule}'`);
      assert.equal(add.code, 0, add.stderr);
    }
    const alertsOf = (status: string) => received.flatMap((b) => b.alerts).filter((a) => a.labels.app === "strained" && a.status === status).map((a) => a.labels.alertname);
    const waitFor = async (what: string, check: () => boolean, ms = 60_000) => {
      const end = Date.now() + ms;
      while (!check()) {
        if (Date.now() > end) throw new Error(`${what} did not happen within ${ms} ms: ${JSON.stringify(received.flatMap((b) => b.alerts).filter((a) => a.labels.app === "strained").map((a) => [a.labels.alertname, a.status]))}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    // Slow answers and memory held, for longer than the rules' 3 s.
    assert.equal((await deck.get("strained", "/leak")).status, 200);
    let slow = true;
    const traffic = (async () => {
      while (slow) await deck.get("strained", "/slow");
      for (let i = 0; i < 400 && !alertsOf("resolved").includes("p95"); i++) await deck.get("strained", "/");
    })();
    await waitFor("p95 and memory to fire", () => alertsOf("firing").includes("p95") && alertsOf("firing").includes("memory"));
    // Recovery: fast answers, memory let go.
    slow = false;
    assert.equal((await deck.get("strained", "/heal")).status, 200);
    await waitFor("p95 and memory to resolve", () => alertsOf("resolved").includes("p95") && alertsOf("resolved").includes("memory"));
    await traffic;
    const listed = await deck.ssh("alerts:list strained");
    assert.equal(listed.code, 0, listed.stderr);
    assert.doesNotMatch(listed.stdout, /firing/);
  });
});
