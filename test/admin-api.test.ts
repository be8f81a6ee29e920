/**
 * The platform admin's views through a real deck server: the build queue while a slow build runs and
 * after it, an alert rule firing across apps, the security view's failed sign-ins (the API, SSH, git
 * over HTTP) and refused actions with the audit entries behind them; and none of it for anyone else.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { addUser, apiClient, gitAs, makeSshKey, type Api, type ApiAnswer, type TestUser } from "./helpers/accounts.ts";
import { embeddedBackendOnly } from "./helpers/database.ts";
import { Deck, makeRepo } from "./helpers/deck.ts";

const APP = "shaky";
const VIEWER = "viewer@example.com";
const BUILD_SECONDS = 6;

/** Builds slowly (its build script sleeps), then answers 500 on /fail and 200 elsewhere. */
const SHAKY_APP: Record<string, string> = {
  "package.json": JSON.stringify({
    name: "shaky", version: "1.0.0", private: true,
    scripts: { start: "node server.js", build: `node -e "setTimeout(() => console.log('built'), ${BUILD_SECONDS * 1000})"` },
  }),
  Procfile: "web: node server.js\n",
  "server.js": `require("http").createServer((req, res) => {
  res.statusCode = req.url === "/fail" ? 500 : 200;
  res.end(res.statusCode + "\\n");
}).listen(process.env.PORT);
process.on("SIGTERM", () => process.exit(0));
`,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Asks `probe` until it returns something, or fails naming what did not happen and what was seen last. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    const v = await probe().catch((e: Error) => ((last = e.message), undefined));
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms (last: ${JSON.stringify(last)})`);
    await sleep(200);
  }
}

for (const backend of embeddedBackendOnly()) {
  describe(`platform admin views (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let api: Api;
    let work: string;
    let viewer: TestUser;
    let repo: string;

    /** GET as the platform admin, expecting 200. */
    const admin = async (path: string): Promise<ApiAnswer> => {
      const r = await api("GET", path);
      assert.equal(r.status, 200, `GET ${path}: ${r.text}`);
      return r;
    };

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-admin-"));
      deck = await Deck.start({ backend, env: { DECK_METRICS_INTERVAL: "1", DECK_UPTIME_INTERVAL: "86400" } });
      api = apiClient(deck);
      viewer = await addUser(api, work, { email: VIEWER, org: "default", role: "viewer" });
      repo = await makeRepo(join(work, APP), SHAKY_APP);
    });

    after(async () => {
      await deck?.stop();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it("refuses each view to a user who is not a platform admin", async () => {
      for (const path of ["/builds", "/alerts", "/security", "/audit"]) {
        for (const token of [viewer.accessToken, viewer.apiToken]) {
          const r = await api("GET", path, undefined, { token });
          assert.equal(r.status, 403, `${path}: ${r.text}`);
          assert.equal(r.json.error.code, "forbidden");
          assert.match(r.json.error.message, /^permission denied: only platform admins see /);
        }
      }
    });

    it("shows a push's build running in the queue, then among the recent builds as succeeded", async () => {
      const commit = execFileSync("git", ["-C", repo, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
      const pushing = deck.push(repo, APP);
      const running = await waitFor("the build to show as running", async () => {
        const items = (await admin("/builds")).json.items as Array<Record<string, unknown>>;
        return items.find((b) => b.app === APP && b.state === "running");
      }, 90_000);
      assert.equal(running.org, "default");
      assert.equal(running.commit, commit);
      assert.equal(typeof running.id, "number");
      assert.equal(running.position, null);
      assert.ok(running.startedAt && running.queuedAt, JSON.stringify(running));
      assert.ok(Number(running.elapsedSeconds) >= 0 && Number(running.elapsedSeconds) < 120, JSON.stringify(running));
      const push = await pushing;
      assert.equal(push.code, 0, push.stderr);

      const after = (await admin("/builds?recent=5")).json;
      assert.deepEqual(after.items.filter((b: { app: string }) => b.app === APP), [], "no longer in the queue");
      const done = after.recent[0];
      assert.deepEqual({ app: done.app, org: done.org, id: done.id, status: done.status, commit: done.commit, error: done.error },
        { app: APP, org: "default", id: running.id, status: "succeeded", commit, error: null });
      assert.ok(done.durationSeconds >= BUILD_SECONDS, `the build took its ${BUILD_SECONDS} s: ${JSON.stringify(done)}`);
      assert.ok(Date.parse(done.finishedAt) >= Date.parse(done.startedAt));
    });

    it("shows an alert rule firing on an app, and the firing in the history", async () => {
      const add = await api("POST", `/apps/${APP}/alerts`, { rule: "http_5xx>5% for 1s min 1" });
      assert.equal(add.status, 201, add.text);
      let failing = true;
      const traffic = (async () => {
        while (failing) await deck.get(APP, "/fail").catch(() => undefined);
      })();
      try {
        const alert = await waitFor("the http_5xx rule to fire", async () => {
          const firing = (await admin("/alerts")).json.firing as Array<Record<string, unknown>>;
          return firing.find((a) => a.app === APP && a.kind === "http_5xx" && a.state === "firing");
        }, 40_000);
        assert.deepEqual({ ...alert, since: typeof alert.since, value: typeof alert.value },
          { app: APP, org: "default", ruleId: String(add.json.id), rule: "http_5xx>5% for 1s min 1", kind: "http_5xx", state: "firing", since: "string", value: "string" });
        const history = (await admin("/alerts?history=10")).json.history as Array<Record<string, unknown>>;
        assert.ok(history.some((h) => h.app === APP && h.rule === "http_5xx>5% for 1s min 1" && h.status === "firing"), JSON.stringify(history));
      } finally {
        failing = false;
        await traffic;
      }
    });

    it("lists failed sign-ins by every way in and a refused action, each with the audit entry behind it", async () => {
      const wrong = await api("POST", "/session", { email: VIEWER, password: "not-the-password" }, { token: null });
      assert.equal(wrong.status, 401, wrong.text);
      // A viewer may not add alert rules.
      const refused = await api("POST", `/apps/${APP}/alerts`, { rule: "down" }, { token: viewer.accessToken });
      assert.equal(refused.status, 403, refused.text);
      const stranger = makeSshKey(work, "stranger");
      const ssh = await deck.ssh("apps:list", { keyFile: stranger });
      assert.notEqual(ssh.code, 0, "an unknown key does not get in");
      const git = await gitAs(deck, { keyFile: stranger, apiToken: "deck_not-a-real-token" }, repo, { op: "fetch", via: "http", app: APP });
      assert.notEqual(git.code, 0, "a wrong token does not fetch");

      type Failed = { at: string; email: string | null; sourceIp: string | null; via: string; reason: string | null; auditId: number };
      // The SSH server writes its entry when the refused connection closes.
      const security = await waitFor("the SSH sign-in to be listed", async () => {
        const s = (await admin("/security?since=1h")).json;
        return (s.failedSignIns as Failed[]).some((f) => f.via === "ssh") ? s : undefined;
      }, 10_000);
      const failed = security.failedSignIns as Failed[];
      const byApi = failed.filter((f) => f.via === "api");
      const bySsh = failed.filter((f) => f.via === "ssh");
      const byGit = failed.filter((f) => f.via === "git-http");
      assert.deepEqual(byApi.map((f) => [f.email, f.reason, f.sourceIp]), [[VIEWER, "invalid_credentials", "127.0.0.1"]]);
      assert.deepEqual(bySsh.map((f) => [f.email, f.reason]), [[null, "unknown_key"]], "one entry for the connection");
      assert.deepEqual(byGit.map((f) => [f.email, f.reason]), [[null, "invalid_token"]], "one entry for the refused fetch");

      const denied = (security.denied as Array<{ user: string; action: string; target: string; via: string; auditId: number }>)
        .find((d) => d.action === "alerts:manage");
      assert.ok(denied, JSON.stringify(security.denied));
      assert.deepEqual([denied.user, denied.target, denied.via], [VIEWER, APP, "http"]);
      assert.ok(security.newKeys.some((k: { user: string; title: string; fingerprint: string }) => k.user === VIEWER && k.title === VIEWER && k.fingerprint.startsWith("SHA256:")), JSON.stringify(security.newKeys));
      assert.ok(security.newTokens.some((t: { user: string; name: string; scopes: string[] }) => t.user === VIEWER && t.name === "git" && t.scopes.join() === "admin"), JSON.stringify(security.newTokens));
      assert.deepEqual(security.unusualTraffic, []);

      const ids = [byApi[0]!.auditId, bySsh[0]!.auditId, byGit[0]!.auditId, denied.auditId];
      const trail = (await admin(`/audit?ids=${ids.join(",")}`)).json.items as Array<{ id: number; action: string; result: string; user: string | null; target: string; data: Record<string, unknown> }>;
      assert.deepEqual(trail.map((e) => e.id), [...ids].sort((a, b) => b - a), "newest first");
      const entry = (id: number) => trail.find((e) => e.id === id)!;
      assert.deepEqual([entry(byApi[0]!.auditId).action, entry(byApi[0]!.auditId).result, entry(byApi[0]!.auditId).target], ["auth:sign-in", "failed", `user:${VIEWER}`]);
      assert.deepEqual([entry(bySsh[0]!.auditId).result, entry(bySsh[0]!.auditId).data.via], ["failed", "ssh"]);
      assert.match(String(entry(bySsh[0]!.auditId).data.fingerprint), /^SHA256:/);
      assert.deepEqual([entry(byGit[0]!.auditId).result, entry(byGit[0]!.auditId).data.app], ["failed", APP]);
      assert.deepEqual([entry(denied.auditId).action, entry(denied.auditId).result, entry(denied.auditId).user], ["alerts:manage", "denied", VIEWER]);

      const viewersRefusals = (await admin(`/audit?user=${encodeURIComponent(VIEWER)}&result=denied&limit=200`)).json.items as Array<{ action: string; target: string }>;
      assert.ok(viewersRefusals.some((e) => e.action === "alerts:manage" && e.target === APP));
      assert.ok(viewersRefusals.some((e) => e.action === "admin:view" && e.target === "security"), "asking for the admin views was refused and audited");
      const bad = await api("GET", "/audit?ids=1,x");
      assert.equal(bad.status, 400, bad.text);
    });
  });
}
