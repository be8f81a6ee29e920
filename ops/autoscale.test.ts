// The commands join the SSH table as commands.ts loads (as the table's own imports do once it lists them).
import "../gitd/commands-autoscale.ts";
import "../api/routes/autoscale.ts";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createApiApp } from "../api/app.ts";
import { createAuthDeps, SESSION_SCOPES } from "../api/auth/index.ts";
import { runCommand } from "../gitd/commands.ts";
import {
  addMember, finishBuild, insertApp, insertAutoscaleDecision, insertBuild, insertDeployment, insertOrganization, insertRelease, insertUser, q,
  setFormation, setLiveDeployment, setReleaseStatus, finishAutoscaleDecision, type AppRow, type Db,
} from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { callerFor, type Caller } from "./access.ts";
import type { DeployDeps } from "./index.ts";

/**
 * ps:autoscale through the faces users have: the SSH command table and the REST API (a real HTTP
 * server with session tokens), on a real database. Who may change it is who may ps:scale.
 */

type Who = "admin" | "member" | "viewer" | "rival";

for (const backend of await databaseBackends()) {
  describe(`ps:autoscale over SSH and the API (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let db: Db;
    let deps: DeployDeps;
    let server: http.Server;
    let base = "";
    let shop: AppRow;
    const callers = {} as Record<Who, Caller>;
    const sessions = {} as Record<Who, string>;

    const ssh = async (who: Who, ...words: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const status = await runCommand(deps, callers[who], words, { out: (l) => void out.push(l), err: (l) => void err.push(l), signal: new AbortController().signal });
      return { status, out, err };
    };
    const api = async (who: Who, method: string, path: string, body?: unknown) => {
      const headers: Record<string, string> = { authorization: `Bearer ${sessions[who]}` };
      if (body !== undefined) headers["content-type"] = "application/json";
      const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      return { status: res.status, json: (text ? JSON.parse(text) : {}) as Record<string, unknown> & { error?: { code: string; message: string } } };
    };

    before(async () => {
      t = await openTestDatabase(backend, { secrets: true });
      db = t.db.pool;
      const auth = await createAuthDeps({ db: t.db.pool, dataDir: t.dataDir });
      const acme = await insertOrganization(db, { name: "Acme", slug: "acme" });
      const other = await insertOrganization(db, { name: "Other", slug: "other" });
      for (const [who, orgId, role] of [["admin", acme.id, "admin"], ["member", acme.id, "member"], ["viewer", acme.id, "viewer"], ["rival", other.id, "owner"]] as const) {
        const user = await insertUser(db, { email: `${who}@example.com`, isAdmin: false });
        await addMember(db, orgId, user.id, role);
        callers[who] = await callerFor(db, user, "ssh", "127.0.0.1");
        sessions[who] = await auth.keys.signAccessToken({ userId: user.id, scopes: SESSION_SCOPES });
      }
      shop = await insertApp(db, { name: "shop", orgId: acme.id, createdBy: null });
      // Live, running web and worker processes.
      const b = await insertBuild(db, shop.id, "a".repeat(40));
      await finishBuild(db, b.id, { ok: true, buildpack: "node", slugPath: "/nowhere", sizeBytes: 1, procfile: { web: "node server.js", worker: "node worker.js" } });
      const r = await t.db.pool.transaction((tx) => insertRelease(tx, { appId: shop.id, buildId: b.id, config: {}, commitSha: "a".repeat(40), description: "v1", createdBy: null }));
      await setReleaseStatus(db, r.id, "live");
      const d = await insertDeployment(db, { appId: shop.id, kind: "push", releaseId: r.id, createdBy: null });
      await db.query(q`UPDATE deployments SET status = 'succeeded', release_id = ${r.id}, finished_at = now() WHERE id = ${d.id}`);
      await setLiveDeployment(db, shop.id, d.id);
      await setFormation(db, shop.id, { web: 2, worker: 1 });
      deps = { db: t.db.pool, log: () => undefined, config: { sshPort: 2222, autoscaleInterval: 15 } } as unknown as DeployDeps;
      server = http.createServer(createApiApp(deps, { extra: { auth } }).callback());
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
    });
    after(async () => {
      if (server) await new Promise((resolve) => server.close(resolve));
      await t?.cleanup();
    });

    it("turns autoscaling on, shows it with deck's decisions, and off again over SSH", async () => {
      assert.deepEqual(await ssh("viewer", "ps:autoscale", "shop"), { status: 0, out: ["shop does not autoscale; turn it on with ps:autoscale shop web --min 1 --max 4 --p95 300ms"], err: [] });
      assert.deepEqual(await ssh("admin", "ps:autoscale", "shop", "web", "--min", "1", "--max", "3", "--p95", "200ms", "--rps", "50"), {
        status: 0, out: ["shop: web autoscales between 1 and 3 processes on p95 200ms, rps 50 (now 2; checked every 15s)"], err: [],
      });
      assert.equal((await ssh("admin", "ps:autoscale", "shop", "worker", "--min", "1", "--max", "5", "--cpu", "70%")).status, 0);
      const id = await insertAutoscaleDecision(db, { appId: shop.id, type: "web", direction: "out", from: 1, to: 2, reason: "p95 488ms above 200ms over the last minute", atMs: Date.parse("2030-01-02T03:04:05Z") });
      await finishAutoscaleDecision(db, id, { status: "done", atMs: Date.parse("2030-01-02T03:04:35Z") });
      const shown = await ssh("viewer", "ps:autoscale", "shop");
      assert.deepEqual(shown.out, [
        "=== shop autoscaling (checked every 15s)",
        "TYPE    NOW  MIN  MAX  TARGETS",
        "web     2    1    3    p95 200ms, rps 50",
        "worker  1    1    5    cpu 70%",
        "",
        "=== Decisions (newest first)",
        "TIME                     TYPE  CHANGE  RESULT  WHY",
        "2030-01-02 03:04:05 UTC  web   1 → 2   done    p95 488ms above 200ms over the last minute",
      ]);
      const json = JSON.parse((await ssh("viewer", "ps:autoscale", "shop", "--json")).out[0]!) as { types: { type: string; p95Ms: number | null; cpuPercent: number | null; rps: number | null }[]; decisions: { reason: string }[] };
      assert.deepEqual(json.types.map((x) => [x.type, x.p95Ms, x.cpuPercent, x.rps]), [["web", 200, null, 50], ["worker", null, 70, null]]);
      assert.deepEqual(json.decisions.map((d) => d.reason), ["p95 488ms above 200ms over the last minute"]);

      // While deck autoscales a type, a user's ps:scale of it would be undone the next round: refused, saying what to do.
      assert.deepEqual((await ssh("admin", "ps:scale", "shop", "web=4")).err, ["deck: error (conflict): shop: web autoscales between 1 and 3; set other bounds with ps:autoscale shop web --min N --max M, or stop it with ps:autoscale:off shop web"]);
      assert.deepEqual(await ssh("admin", "ps:autoscale:off", "shop", "worker"), { status: 0, out: ["shop: worker no longer autoscales; it keeps 1 process (ps:scale changes them)"], err: [] });
      assert.deepEqual((await ssh("admin", "ps:autoscale:off", "shop", "worker")).err, ["deck: error (not_found): shop's worker processes are not autoscaled (see ps:autoscale shop)"]);
      const audited = await db.any(q`SELECT action, data FROM audit_log WHERE target = 'shop' AND action LIKE 'ps:autoscale%' ORDER BY id`);
      assert.deepEqual(audited.map((a) => a.action), ["ps:autoscale:set", "ps:autoscale:set", "ps:autoscale:off"]);
    });

    it("refuses, in one line, what it cannot do and who may not do it", async () => {
      const refusal = async (who: Who, ...words: string[]) => {
        const r = await ssh(who, ...words);
        assert.equal(r.status, 1, JSON.stringify(r));
        return r.err[0];
      };
      const usage = "usage: ps:autoscale APP [TYPE --min N --max M [--p95 300ms] [--cpu 70%] [--rps 50]] [--json]";
      assert.equal(await refusal("admin", "ps:autoscale", "shop", "web", "--min", "1", "--max", "3"), "deck: error (bad_argument): give at least one target: --p95 300ms, --cpu 70% or --rps 50");
      assert.equal(await refusal("admin", "ps:autoscale", "shop", "web", "--min", "0", "--max", "3", "--p95", "300ms"), "deck: error (bad_argument): --min must be a whole number of at least 1 (scaling to zero is not supported yet)");
      assert.equal(await refusal("admin", "ps:autoscale", "shop", "web", "--min", "1", "--max", "51", "--p95", "300ms"), "deck: error (bad_argument): --max must be a whole number of at most 50");
      assert.equal(await refusal("admin", "ps:autoscale", "shop", "web", "--min", "4", "--max", "3", "--p95", "300ms"), "deck: error (bad_argument): --max (3) must be at least --min (4)");
      assert.equal(await refusal("admin", "ps:autoscale", "shop", "worker", "--min", "1", "--max", "3", "--p95", "300ms"),
        "deck: error (bad_argument): worker processes get no web requests: --p95 and --rps need a web type (web); scale worker on --cpu");
      assert.equal(await refusal("admin", "ps:autoscale", "shop", "clock", "--min", "1", "--max", "3", "--cpu", "50%"), 'deck: error (bad_argument): shop has no process type "clock" (types: web, worker)');
      assert.equal(await refusal("admin", "ps:autoscale", "shop", "web", "--max", "3", "--p95", "300ms"), `deck: error (bad_argument): missing --min; ${usage}`);
      assert.equal(await refusal("admin", "ps:autoscale", "shop", "web", "--min", "1", "--max", "3", "--p95", "fast"), `deck: error (bad_argument): --p95 takes a value like 300ms, got "fast"; ${usage}`);
      assert.equal(await refusal("admin", "ps:autoscale", "shop", "--min", "1"), `deck: error (bad_argument): --min needs a process type before it; ${usage}`);
      assert.match(await refusal("member", "ps:autoscale", "shop", "web", "--min", "1", "--max", "3", "--p95", "300ms") ?? "", /^deck: error \(forbidden\): permission denied: ps:scale on shop/);
      assert.match(await refusal("member", "ps:autoscale:off", "shop", "web") ?? "", /^deck: error \(forbidden\): permission denied: ps:scale on shop/);
      assert.equal(await refusal("rival", "ps:autoscale", "shop"), 'deck: error (app_not_found): app "shop" does not exist (see apps:list)');
    });

    it("GET, PUT and DELETE /apps/:app/autoscale[/:type] answer as the commands do", async () => {
      const put = await api("admin", "PUT", "/apps/shop/autoscale/web", { min: 2, max: 4, cpuPercent: 70 });
      assert.equal(put.status, 200, JSON.stringify(put.json));
      assert.deepEqual({ ...put.json, updatedAt: typeof put.json.updatedAt }, { type: "web", min: 2, max: 4, p95Ms: null, cpuPercent: 70, rps: null, current: 2, updatedAt: "string" });
      const got = await api("viewer", "GET", "/apps/shop/autoscale");
      assert.equal(got.status, 200);
      assert.deepEqual((got.json.types as { type: string; min: number }[]).map((x) => [x.type, x.min]), [["web", 2]]);
      assert.equal(got.json.intervalSeconds, 15);

      const member = await api("member", "PUT", "/apps/shop/autoscale/web", { min: 1, max: 2, p95Ms: 300 });
      assert.deepEqual([member.status, member.json.error?.code], [403, "forbidden"]);
      const noTarget = await api("admin", "PUT", "/apps/shop/autoscale/web", { min: 1, max: 2 });
      assert.deepEqual([noTarget.status, noTarget.json.error?.message], [400, "give at least one target: --p95 300ms, --cpu 70% or --rps 50"]);
      const tooMany = await api("admin", "PUT", "/apps/shop/autoscale/web", { min: 1, max: 80, rps: 5 });
      assert.equal(tooMany.status, 400);
      assert.match(tooMany.json.error?.message ?? "", /^body\.max: /);
      const workerP95 = await api("admin", "PUT", "/apps/shop/autoscale/worker", { min: 1, max: 2, p95Ms: 300 });
      assert.deepEqual([workerP95.status, workerP95.json.error?.code], [400, "bad_argument"]);

      const del = await api("admin", "DELETE", "/apps/shop/autoscale/web");
      assert.deepEqual([del.status, del.json], [200, { app: "shop", type: "web", current: 2 }]);
      const again = await api("admin", "DELETE", "/apps/shop/autoscale/web");
      assert.deepEqual([again.status, again.json.error?.code], [404, "not_found"]);
    });
  });
}
