import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { Notice } from "../../core/index.ts";
import type { DeployDeps } from "../../deploy/index.ts";
import { callerFor, type Caller } from "../../ops/access.ts";
import { addAlertRule, alertsOf, removeAlertRule, setAlertRollback, silenceAlerts } from "../../ops/alerts.ts";
import {
  addMember, insertApp, insertNotifyChannel, insertOrganization, insertUser, q, saveSamples, type AppRow, type StoredSample,
} from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { AlertEvaluator, type AlertEvent } from "./index.ts";

/**
 * The evaluator against a real PostgreSQL: samples written as the collector writes them (10-second
 * rows of the whole app), rounds driven with an injected clock, notices read back from the outbox a
 * notification channel sends from.
 */

const backends = await databaseBackends();
const MiB = 1048576;

for (const backend of backends) {
  describe(`alert evaluation (${backend.name} PostgreSQL)`, () => {
    let tdb: TestDatabase;
    let deps: DeployDeps;
    let owner: Caller;
    let orgId: number;
    let appSeq = 0;
    const logs: string[] = [];

    before(async () => {
      tdb = await openTestDatabase(backend, { secrets: true });
      const db = tdb.db.pool;
      const user = await insertUser(db, { email: "ops@example.com", isAdmin: false });
      const org = await insertOrganization(db, { name: "Shop Inc", slug: "shop-inc" });
      orgId = org.id;
      await addMember(db, org.id, user.id, "owner");
      await insertNotifyChannel(db, { orgId: org.id, kind: "webhook", target: "http://127.0.0.1:9/hook", targetDisplay: "http://127.0.0.1:9/…", createdBy: user.id });
      owner = await callerFor(db, user, "ssh");
      deps = { db, log: (l: string) => logs.push(l) } as unknown as DeployDeps;
    });
    after(async () => {
      await tdb?.cleanup();
    });

    let app: AppRow;
    beforeEach(async () => {
      app = await insertApp(tdb.db.pool, { name: `shop-${++appSeq}`, orgId, createdBy: owner.user.id });
    });

    /** A clock on a 10-second boundary, a little in the past so that silences set with now() are comparable. */
    const T0 = Math.floor((Date.now() - 3_600_000) / 10_000) * 10_000;

    const evaluator = (events: AlertEvent[] = [], extra: Partial<ConstructorParameters<typeof AlertEvaluator>[0]> = {}) =>
      new AlertEvaluator({ db: tdb.db.pool, log: (l) => logs.push(l), sshHost: "deck.example.com", sshPort: 2222, host: "deck-1", onEvent: (e) => events.push(e), ...extra });

    /** One 10-second sample of the whole app at `at`, with realistic defaults for a small web app. */
    const sample = (at: number, s: Partial<StoredSample> = {}): StoredSample => ({
      appId: app.id, resolution: 10, process: "", at, seconds: 10, release: 1, cpuSeconds: 0.8, rssBytes: 120 * MiB, memoryLimitBytes: 512 * MiB,
      restarts: 0, connections: 4, requests: 250, status2xx: 240, status3xx: 5, status4xx: 5, status5xx: 0, bytesIn: 80_000, bytesOut: 900_000, latency: null, ...s,
    });

    const outbox = async (): Promise<Notice[]> => {
      const rows = await tdb.db.pool.any(q`SELECT o.payload FROM notify_outbox o WHERE o.payload->>'app' = ${app.name} ORDER BY o.id`);
      return rows.map((r) => r.payload as Notice);
    };
    const stateOf = async (id: string) => (await alertsOf(deps, owner, app.name)).rules.find((r) => r.id === id)!;

    it("a crash loop fires once, with a notice naming app, org, host, rule, value and what to run, then resolves", async () => {
      const events: AlertEvent[] = [];
      const ev = evaluator(events);
      // 4 restarts within two minutes
      await saveSamples(tdb.db.pool, [sample(T0 - 120_000, { restarts: 1 }), sample(T0 - 60_000, { restarts: 2 }), sample(T0 - 10_000, { restarts: 1 })]);
      await ev.evaluate(T0);
      await ev.evaluate(T0 + 10_000);
      await ev.evaluate(T0 + 20_000);
      let notices = await outbox();
      assert.equal(notices.length, 1, "one firing notice, however many rounds see it");
      const n = notices[0]!;
      assert.equal(n.key, `alert:${app.name}:crash_loop:${T0}:firing`);
      assert.deepEqual(
        { status: n.status, org: n.org, app: n.app, host: n.host, rule: n.rule, value: n.value, command: n.command, startsAt: n.startsAt },
        { status: "firing", org: "shop-inc", app: app.name, host: "deck-1", rule: "crash_loop", value: "4 restarts in 5m", command: `ssh -p 2222 deck@deck.example.com metrics ${app.name} --since 1h`, startsAt: new Date(T0).toISOString() },
      );
      assert.equal(n.summary, `${app.name} (shop-inc): crash_loop is firing: 4 restarts in 5m`);
      const listed = await stateOf("crash_loop");
      assert.deepEqual({ state: listed.state, since: listed.since, value: listed.value, default: listed.default }, { state: "firing", since: new Date(T0).toISOString(), value: "4 restarts in 5m", default: true });

      // Five quiet minutes later the restarts have left the window.
      await saveSamples(tdb.db.pool, [sample(T0 + 60_000), sample(T0 + 200_000), sample(T0 + 290_000)]);
      await ev.evaluate(T0 + 300_000);
      notices = await outbox();
      assert.deepEqual(notices.map((x) => [x.key, x.status, x.value]), [
        [`alert:${app.name}:crash_loop:${T0}:firing`, "firing", "4 restarts in 5m"],
        [`alert:${app.name}:crash_loop:${T0}:resolved`, "resolved", "0 restarts in 5m"],
      ]);
      assert.equal(notices[1]!.endsAt, new Date(T0 + 300_000).toISOString());
      assert.equal((await stateOf("crash_loop")).state, "ok");
      assert.deepEqual(events.map((e) => [e.app, e.rule, e.status, e.notified]), [[app.name, "crash_loop", "firing", true], [app.name, "crash_loop", "resolved", true]]);
    });

    it("http_5xx fires only after holding for its duration, resolves below 90% of the threshold", async () => {
      const rule = await addAlertRule(deps, owner, app.name, "http_5xx>5% for 1m");
      assert.equal(rule.rule, "http_5xx>5% for 1m");
      const ev = evaluator();
      // 10% of requests fail from T0 - 60 s on.
      const failing = (at: number) => sample(at, { requests: 300, status2xx: 265, status5xx: 30, status4xx: 5 });
      for (let t = T0 - 60_000; t < T0; t += 10_000) await saveSamples(tdb.db.pool, [failing(t)]);
      const states: string[] = [];
      for (let t = T0; t <= T0 + 60_000; t += 10_000) {
        await saveSamples(tdb.db.pool, [failing(t - 10_000)]);
        await ev.evaluate(t);
        states.push((await stateOf(rule.id)).state);
      }
      assert.deepEqual(states, ["pending", "pending", "pending", "pending", "pending", "pending", "firing"]);
      const [fired] = await outbox();
      assert.equal(fired!.rule, "http_5xx>5% for 1m");
      assert.equal(fired!.value, "10% of 1,800 requests answered 5xx in 1m");
      // 4.8% is under the threshold but not under 4.5%: still firing. 2% resolves.
      for (let t = T0 + 70_000; t < T0 + 130_000; t += 10_000) await saveSamples(tdb.db.pool, [sample(t, { requests: 250, status2xx: 238, status5xx: 12 })]);
      await ev.evaluate(T0 + 130_000);
      assert.equal((await stateOf(rule.id)).state, "firing");
      for (let t = T0 + 130_000; t < T0 + 190_000; t += 10_000) await saveSamples(tdb.db.pool, [sample(t, { requests: 250, status2xx: 245, status5xx: 5 })]);
      await ev.evaluate(T0 + 190_000);
      assert.equal((await stateOf(rule.id)).state, "ok");
      assert.deepEqual((await outbox()).map((n) => n.status), ["firing", "resolved"]);
    });

    it("memory above its share of the limit fires with the numbers in words", async () => {
      await addAlertRule(deps, owner, app.name, "memory>90% for 30s");
      const ev = evaluator();
      for (let i = 0; i < 6; i++) {
        const t = T0 + i * 10_000;
        await saveSamples(tdb.db.pool, [sample(t - 10_000, { rssBytes: (470 + i) * MiB })]);
        await ev.evaluate(t);
      }
      const notices = await outbox();
      assert.equal(notices.length, 1);
      assert.equal(notices[0]!.rule, "memory>90% for 30s");
      assert.equal(notices[0]!.value, "92.4% of its 512 MiB memory limit (473 MiB RSS)");
    });

    it("a silence holds notices but keeps states; a rule still firing when it ends is announced then", async () => {
      await silenceAlerts(deps, owner, app.name, "30m");
      const ev = evaluator();
      const now = Math.floor(Date.now() / 10_000) * 10_000;
      await saveSamples(tdb.db.pool, [sample(now - 30_000, { restarts: 2 }), sample(now - 20_000, { restarts: 2 })]);
      await ev.evaluate(now);
      assert.deepEqual(await outbox(), []);
      const listed = await alertsOf(deps, owner, app.name);
      assert.ok(listed.silencedUntil && Date.parse(listed.silencedUntil) > now + 29 * 60_000, listed.silencedUntil ?? "no silence");
      assert.equal(listed.rules.find((r) => r.id === "crash_loop")!.state, "silenced");
      await silenceAlerts(deps, owner, app.name, "off");
      await ev.evaluate(now + 20_000);
      const notices = await outbox();
      assert.deepEqual(notices.map((n) => n.key), [`alert:${app.name}:crash_loop:${now}:firing`]);
    });

    it("two evaluators on one database never queue a notice twice", async () => {
      const a = evaluator();
      const b = evaluator();
      await saveSamples(tdb.db.pool, [sample(T0 - 30_000, { restarts: 3 })]);
      const results = [];
      for (let i = 0; i < 5; i++) results.push(...(await Promise.all([a.evaluate(T0 + i * 10_000), b.evaluate(T0 + i * 10_000 + 1)])));
      assert.ok(results.some((r) => r.ran), "some round ran");
      assert.equal(results.flatMap((r) => r.notices).filter((n) => n.app === app.name).length, 1);
      assert.equal((await outbox()).length, 1);
    });

    it("defaults can be removed and replaced, and are listed like other rules", async () => {
      let v = await alertsOf(deps, owner, app.name);
      assert.deepEqual(v.rules.map((r) => [r.id, r.rule, r.default, r.state]), [["down", "down", true, "ok"], ["crash_loop", "crash_loop", true, "ok"]]);
      const added = await addAlertRule(deps, owner, app.name, "crash_loop>=5 in 10m");
      assert.equal(added.replaced, "crash_loop");
      await assert.rejects(addAlertRule(deps, owner, app.name, "crash_loop >= 5 in 10m"), /already has the rule crash_loop>=5 in 10m/);
      await assert.rejects(addAlertRule(deps, owner, app.name, "cpu>80%"), (e: Error & { code?: string }) => e.code === "bad_argument" && /rules look like: down, crash_loop/.test(e.message));
      await removeAlertRule(deps, owner, app.name, "down");
      await assert.rejects(removeAlertRule(deps, owner, app.name, "down"), (e: Error & { code?: string }) => e.code === "not_found");
      v = await alertsOf(deps, owner, app.name);
      assert.deepEqual(v.rules.map((r) => [r.rule, r.default]), [["crash_loop>=5 in 10m", false]]);
      // 4 restarts no longer fire this app's crash loop rule.
      await saveSamples(tdb.db.pool, [sample(T0 - 30_000, { restarts: 4 })]);
      await evaluator().evaluate(T0);
      assert.deepEqual(await outbox(), []);
    });

    it("with rollback on alert, a rule firing within 10 minutes of a deploy rolls back once, notifies and audits", async () => {
      const db = tdb.db.pool;
      await setAlertRollback(deps, owner, app.name, true);
      // v1 went live an hour ago, v2 three minutes before T0.
      const liveAt = async (version: number, finishedAt: number) => {
        const build = await db.oneFirst(q`INSERT INTO builds (app_id, commit_sha, status, finished_at) VALUES (${app.id}, ${String(version).repeat(40)}, 'succeeded', now()) RETURNING id`);
        const release = await db.oneFirst(q`INSERT INTO releases (app_id, version, build_id, commit_sha, description, status)
          VALUES (${app.id}, ${version}, ${build}, ${String(version).repeat(40)}, ${`Deploy v${version}`}, 'live') RETURNING id`);
        const deployment = await db.oneFirst(q`INSERT INTO deployments (app_id, release_id, kind, status, finished_at)
          VALUES (${app.id}, ${release}, 'push', 'succeeded', to_timestamp(${finishedAt} / 1000.0)) RETURNING id`);
        await db.query(q`UPDATE apps SET live_deployment_id = ${deployment} WHERE id = ${app.id}`);
      };
      await liveAt(1, T0 - 3_600_000);
      await liveAt(2, T0 - 180_000);
      const calls: string[] = [];
      const events: AlertEvent[] = [];
      const ev = evaluator(events, {
        rollback: async (a, reason) => {
          calls.push(`${a.name}: ${reason}`);
          return { version: 3, target: 1 };
        },
      });
      await saveSamples(db, [sample(T0 - 30_000, { restarts: 2, release: 2 }), sample(T0 - 20_000, { restarts: 2, release: 2 })]);
      await ev.evaluate(T0);
      assert.deepEqual(calls, [`${app.name}: crash_loop fired (4 restarts in 5m) 3 min after v2 went live`]);
      const notices = await outbox();
      assert.deepEqual(notices.map((n) => n.key), [`alert:${app.name}:crash_loop:${T0}:firing`, `alert:${app.name}:crash_loop:${T0}:rollback`]);
      assert.equal(notices[1]!.summary, `${app.name} (shop-inc): deck rolled back v2 to v1 because crash_loop fired (4 restarts in 5m) 3 min after v2 went live`);
      const audited = await db.one(q`SELECT user_id, result, data FROM audit_log WHERE action = 'alerts:rollback' AND target = ${app.name}`);
      assert.deepEqual({ user: audited.user_id, result: audited.result, from: (audited.data as { from: number }).from, to: (audited.data as { to: number }).to }, { user: null, result: "ok", from: 2, to: 1 });
      assert.deepEqual(events.map((e) => e.status), ["firing", "rolled_back"]);

      // It resolves and fires again, still within 10 minutes of v2: no second rollback of v2.
      await saveSamples(db, [sample(T0 + 320_000, { release: 2 })]);
      await ev.evaluate(T0 + 330_000);
      await saveSamples(db, [sample(T0 + 330_000, { restarts: 3, release: 2 })]);
      await ev.evaluate(T0 + 340_000);
      assert.equal((await stateOf("crash_loop")).state, "firing");
      assert.equal(calls.length, 1);
    });

    it("turned off (the default), a rule firing after a deploy rolls nothing back", async () => {
      const calls: string[] = [];
      const db = tdb.db.pool;
      const build = await db.oneFirst(q`INSERT INTO builds (app_id, commit_sha, status) VALUES (${app.id}, ${"a".repeat(40)}, 'succeeded') RETURNING id`);
      const release = await db.oneFirst(q`INSERT INTO releases (app_id, version, build_id, commit_sha, description, status) VALUES (${app.id}, 1, ${build}, ${"a".repeat(40)}, 'v1', 'live') RETURNING id`);
      const dep = await db.oneFirst(q`INSERT INTO deployments (app_id, release_id, kind, status, finished_at) VALUES (${app.id}, ${release}, 'push', 'succeeded', to_timestamp(${T0 - 60_000} / 1000.0)) RETURNING id`);
      await db.query(q`UPDATE apps SET live_deployment_id = ${dep} WHERE id = ${app.id}`);
      await saveSamples(db, [sample(T0 - 20_000, { restarts: 5 })]);
      await evaluator([], { rollback: async (a) => (calls.push(a.name), { version: 2, target: 1 }) }).evaluate(T0);
      assert.deepEqual(calls, []);
      assert.equal((await outbox()).length, 1);
    });
  });
}
