import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isDeckError } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import {
  addMember, audit, createApiToken, insertApp, insertOrganization, insertSshKey, insertUser, q, saveSamples, sql, type StoredSample, type UserRow,
} from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { callerFor, type Caller } from "./access.ts";
import { alertsOverview, auditTrail, buildQueueOverview, securityOverview, unusualTraffic } from "./admin.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** 14:30 UTC: the last 5 minutes fall in the hour 14:00-15:00. */
const NOW = Date.UTC(2025, 0, 15, 14, 30);
const TODAY_14H = Date.UTC(2025, 0, 15, 14);

function sample(appId: number, resolution: number, at: number, seconds: number, requests: number, more: Partial<StoredSample> = {}): StoredSample {
  return {
    appId, resolution, at, seconds, requests, process: "", source: "", release: 1, cpuSeconds: null, rssBytes: null, memoryLimitBytes: null, restarts: 0,
    connections: null, status2xx: requests, status3xx: 0, status4xx: 0, status5xx: 0, bytesIn: 0, bytesOut: 0, latency: null, ...more,
  };
}

/** 10-second rows over the last 5 minutes before NOW, `perSecond` requests a second in all, split between two sources. */
function lastFiveMinutes(appId: number, perSecond: number): StoredSample[] {
  const rows: StoredSample[] = [];
  for (let at = NOW - 300_000; at < NOW; at += 10_000) {
    rows.push(sample(appId, 10, at, 10, perSecond * 4, { source: "deck@host" }), sample(appId, 10, at, 10, perSecond * 6, { source: "router:node-1:7000" }));
  }
  return rows;
}

for (const backend of await databaseBackends()) {
  describe(`platform admin views (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let admin: UserRow;
    let asAdmin: Caller;
    let asMember: Caller;
    let orgId: number;
    const deps = (): DeployDeps => ({ db: t.db.pool, log: () => undefined } as unknown as DeployDeps);
    const app = async (name: string) => (await insertApp(t.db.pool, { name, orgId, createdBy: admin.id })).id;

    before(async () => {
      t = await openTestDatabase(backend);
      admin = await insertUser(t.db.pool, { email: "root@example.com", isAdmin: true });
      const member = await insertUser(t.db.pool, { email: "mo@example.com", isAdmin: false });
      orgId = (await insertOrganization(t.db.pool, { name: "Acme", slug: "acme" })).id;
      await addMember(t.db.pool, orgId, member.id, "owner");
      asAdmin = await callerFor(t.db.pool, admin, "cli");
      asMember = await callerFor(t.db.pool, member, "http", "203.0.113.9");
    });
    after(async () => t?.cleanup());

    it("lists an app whose last 5 minutes are 3x its usual for these hours, and not one below the ratio, the 1 req/s floor, or without a baseline", async () => {
      const [spiky, steady, quiet, fresh, minutes] = [await app("spiky"), await app("steady"), await app("quiet"), await app("fresh"), await app("minutes")];
      const rows: StoredSample[] = [];
      for (let d = 1; d <= 7; d++) {
        // 2 requests a second at 14:00-15:00 on each of the 7 days before.
        for (const id of [spiky, steady]) rows.push(sample(id, 3600, TODAY_14H - d * DAY, 3600, 7200));
        rows.push(sample(quiet, 3600, TODAY_14H - d * DAY, 3600, 360));
        // Only minute rollups for this one (its hourly rows not made yet): 1 request a second.
        for (let m = 0; m < 5; m++) rows.push(sample(minutes, 60, TODAY_14H - d * DAY + m * 60_000, 60, 60));
      }
      // Not the baseline: other hours of the day, more than 7 days back, a process's own series, and a
      // minute row of an hour that has its hourly row (which already holds it).
      rows.push(sample(spiky, 3600, TODAY_14H - DAY + 6 * HOUR, 3600, 10_000_000));
      rows.push(sample(spiky, 3600, TODAY_14H - 8 * DAY, 3600, 10_000_000));
      rows.push(sample(spiky, 3600, TODAY_14H - 2 * DAY, 3600, 10_000_000, { process: "web.1" }));
      rows.push(sample(spiky, 60, TODAY_14H - 3 * DAY, 60, 10_000_000));
      rows.push(...lastFiveMinutes(spiky, 10), ...lastFiveMinutes(steady, 4), ...lastFiveMinutes(quiet, 0.5), ...lastFiveMinutes(fresh, 50), ...lastFiveMinutes(minutes, 5));
      await saveSamples(t.db.pool, rows);

      const found = await unusualTraffic(deps(), NOW);
      assert.deepEqual(found, [
        { app: "spiky", org: "acme", at: new Date(NOW).toISOString(), requestsPerSecond: 10, baselinePerSecond: 2, ratio: 5 },
        { app: "minutes", org: "acme", at: new Date(NOW).toISOString(), requestsPerSecond: 5, baselinePerSecond: 1, ratio: 5 },
      ]);
    });

    it("shows failed sign-ins, refusals, new keys and tokens with their audit ids, which the audit trail returns", async () => {
      const db = t.db.pool;
      const member = asMember.user;
      await audit(db, { userId: null, action: "auth:sign-in", target: "user:ghost@example.com", sourceIp: "198.51.100.7", result: "failed", data: { via: "api", reason: "invalid_credentials" } });
      // Asked for the second factor after the right password: not a failure.
      await audit(db, { userId: member.id, action: "auth:sign-in", target: `user:${member.email}`, sourceIp: "198.51.100.8", result: "denied", data: { via: "api", reason: "mfa_required" } });
      await audit(db, { userId: member.id, action: "config:set", target: "spiky", sourceIp: "198.51.100.9", result: "denied", data: { via: "ssh" } });
      await insertSshKey(db, { userId: member.id, name: "laptop", publicKey: "ssh-ed25519 AAAA", fingerprint: "SHA256:laptopkey" });
      await audit(db, { userId: member.id, action: "keys:add", target: `user:${member.email}`, sourceIp: null, result: "ok", data: { via: "http", fingerprint: "SHA256:laptopkey" } });
      // The entry names the scopes, not the token: it is the user's token of the minute before with those scopes.
      await createApiToken(db, member.id, "ci", ["read", "deploy"]);
      await createApiToken(db, member.id, "laptop", ["admin"]);
      await audit(db, { userId: member.id, action: "tokens:create", target: `user:${member.email}`, sourceIp: null, result: "ok", data: { via: "http", scopes: ["read", "deploy"] } });

      const view = await securityOverview(deps(), asAdmin, 3600);
      assert.deepEqual(view.failedSignIns.map(({ at: _, auditId: __, ...r }) => r), [{ email: "ghost@example.com", sourceIp: "198.51.100.7", via: "api", reason: "invalid_credentials" }]);
      assert.deepEqual(view.denied.map(({ at: _, auditId: __, ...r }) => r), [{ user: "mo@example.com", action: "config:set", target: "spiky", sourceIp: "198.51.100.9", via: "ssh" }]);
      assert.deepEqual(view.newKeys.map(({ at: _, auditId: __, ...r }) => r), [{ user: "mo@example.com", fingerprint: "SHA256:laptopkey", title: "laptop" }]);
      assert.deepEqual(view.newTokens.map(({ at: _, auditId: __, ...r }) => r), [{ user: "mo@example.com", name: "ci", scopes: ["read", "deploy"] }]);

      const ids = [view.failedSignIns[0]!.auditId, view.denied[0]!.auditId, view.newKeys[0]!.auditId, view.newTokens[0]!.auditId];
      const trail = await auditTrail(deps(), asAdmin, { ids }, 50);
      assert.deepEqual(trail.items.map((e) => e.id), [...ids].sort((a, b) => b - a));
      assert.deepEqual(trail.items.map((e) => e.action).sort(), ["auth:sign-in", "config:set", "keys:add", "tokens:create"]);
      const byUser = await auditTrail(deps(), asAdmin, { user: "MO@example.com", result: "denied" }, 50);
      assert.deepEqual(byUser.items.map((e) => `${e.action} ${e.target}`), ["config:set spiky", "auth:sign-in user:mo@example.com"]);
    });

    it("words rollbacks in the alert history and shows finished builds with how they ended", async () => {
      const db = t.db.pool;
      const flaky = await app("flaky");
      await db.query(q`INSERT INTO alert_events (app_id, rule_key, rule, status, value, words, at, notified)
        VALUES (${flaky}, 'crash_loop', 'crash_loop', 'firing', 4, '4 restarts in 5 min', now() - interval '2 minutes', true)`);
      await audit(db, { userId: null, action: "alerts:rollback", target: "flaky", sourceIp: null, result: "ok", data: { rule: "crash_loop", ruleId: "crash_loop", from: 3, to: 2, version: 4 } });
      const alerts = await alertsOverview(deps(), asAdmin, 10);
      assert.deepEqual(alerts.history.map(({ at: _, ...h }) => h), [
        { app: "flaky", org: "acme", rule: "crash_loop", status: "rolled_back", value: "rolled back from v3 to v2 (now v4)" },
        { app: "flaky", org: "acme", rule: "crash_loop", status: "firing", value: "4 restarts in 5 min" },
      ]);

      const deployment = async (status: string, code: string | null, error: string | null) => Number(await db.oneFirst(q`
        INSERT INTO deployments (app_id, kind, commit_sha, status, error, error_code, finished_at) VALUES (${flaky}, 'push', 'abc1234', ${status}, ${error}, ${code}, now()) RETURNING id`));
      const build = async (deploymentId: number, status: string) => db.query(q`
        INSERT INTO builds (app_id, commit_sha, status, deployment_id, started_at, finished_at)
        VALUES (${flaky}, 'abc1234', ${status}, ${deploymentId}, now() - interval '30 seconds', ${status === "building" ? null : sql.fragment`now()`})`);
      await build(await deployment("failed", "cancelled", "build cancelled by mo@example.com"), "failed");
      await build(await deployment("interrupted", "interrupted", "deck stopped"), "building");
      await build(await deployment("succeeded", null, null), "succeeded");
      const builds = await buildQueueOverview(deps(), asAdmin, 5);
      assert.deepEqual(builds.items, []);
      assert.deepEqual(builds.recent.map((b) => [b.status, b.error, b.durationSeconds]), [
        ["succeeded", null, 30], ["interrupted", "deck stopped", 30], ["cancelled", "build cancelled by mo@example.com", 30],
      ]);
    });

    it("refuses anyone but a platform admin, and audits the refusal", async () => {
      const views = [
        () => buildQueueOverview(deps(), asMember, 5), () => alertsOverview(deps(), asMember, 5),
        () => securityOverview(deps(), asMember, 3600), () => auditTrail(deps(), asMember, {}, 5),
      ];
      for (const view of views) {
        await assert.rejects(view(), (e: unknown) => isDeckError(e) && e.code === "forbidden" && /^permission denied: only platform admins see /.test(e.message));
      }
      const refused = await auditTrail(deps(), asAdmin, { action: "admin:view", result: "denied" }, 10);
      assert.deepEqual(refused.items.map((e) => [e.user, e.target, e.sourceIp]), [
        ["mo@example.com", "audit", "203.0.113.9"], ["mo@example.com", "security", "203.0.113.9"], ["mo@example.com", "alerts", "203.0.113.9"], ["mo@example.com", "builds", "203.0.113.9"],
      ]);
    });
  });
}
