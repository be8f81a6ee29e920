import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { LATENCY_BOUNDS, type Notice } from "../../core/index.ts";
import type { DeployDeps } from "../../deploy/index.ts";
import { callerFor, type Caller } from "../../ops/access.ts";
import { autoscaleOf, setAutoscale } from "../../ops/autoscale.ts";
import {
  addMember, finishBuild, findApp, insertApp, insertBuild, insertDeployment, insertNotifyChannel, insertOrganization, insertRelease, insertUser, q, saveSamples,
  setAppStopped, setFormation, setLiveDeployment, setReleaseStatus, tryAutoscaleRoundLock, type AppRow, type StoredSample,
} from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { AutoscaleController, type AutoscaleEvent } from "./index.ts";

/**
 * The controller against a real PostgreSQL: samples written as the collector writes them (10-second
 * rows of the whole app and of each process), rounds driven with an injected clock, and a scale that
 * records what it is asked and changes the formation as ps:scale would (its redeploy is not the subject).
 */

const backends = await databaseBackends();
const MIN = 60_000;

/** A latency histogram with `n` requests in the bucket holding `ms`. */
function histogram(n: number, ms: number): number[] {
  const h = new Array<number>(LATENCY_BOUNDS.length + 1).fill(0);
  h[LATENCY_BOUNDS.findIndex((b) => ms / 1000 <= b)] = n;
  return h;
}

for (const backend of backends) {
  describe(`autoscaling controller (${backend.name} PostgreSQL)`, () => {
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
      deps = { db, log: (l: string) => logs.push(l), config: { autoscaleInterval: 15 } } as unknown as DeployDeps;
    });
    after(async () => {
      await tdb?.cleanup();
    });

    /** A clock on a 10-second boundary, an hour in the past. */
    const T0 = Math.floor((Date.now() - 3_600_000) / 10_000) * 10_000;
    let clock = T0;

    /** What the injected scale was asked, and what it does: sets the formation, or fails with `failWith`. */
    let asked: [string, string, number][] = [];
    let failWith: string | null = null;
    const scale = async (app: { id: number; name: string }, type: string, to: number) => {
      asked.push([app.name, type, to]);
      if (failWith) throw new Error(failWith);
      const row = (await findApp(tdb.db.pool, app.name))!;
      await setFormation(tdb.db.pool, app.id, { ...row.formation, [type]: to });
    };
    const controller = (events: AutoscaleEvent[] = []) =>
      new AutoscaleController({ db: tdb.db.pool, log: (l) => logs.push(l), scale, sshHost: "deck.example.com", sshPort: 2222, host: "deck-1", now: () => clock, onEvent: (e) => events.push(e) });

    let app: AppRow;
    beforeEach(async () => {
      asked = [];
      failWith = null;
      clock = T0;
      // Each test judges its own apps only.
      await tdb.db.pool.query(q`DELETE FROM autoscale_settings`);
      app = await insertApp(tdb.db.pool, { name: `shop-${++appSeq}`, orgId, createdBy: owner.user.id });
    });

    /** The app's release goes live at `atMs`, running the Procfile's types. */
    const goLive = async (atMs: number, procfile: Record<string, string> = { web: "node server.js" }) => {
      const db = tdb.db.pool;
      const b = await insertBuild(db, app.id, "a".repeat(40));
      await finishBuild(db, b.id, { ok: true, buildpack: "node", slugPath: "/nowhere", sizeBytes: 1, procfile });
      const r = await db.transaction((tx) => insertRelease(tx, { appId: app.id, buildId: b.id, config: {}, commitSha: "a".repeat(40), description: "v1", createdBy: null }));
      await setReleaseStatus(db, r.id, "live");
      const d = await insertDeployment(db, { appId: app.id, kind: "push", releaseId: r.id, createdBy: null });
      await db.query(q`UPDATE deployments SET status = 'succeeded', release_id = ${r.id}, finished_at = to_timestamp(${atMs} / 1000.0) WHERE id = ${d.id}`);
      await setLiveDeployment(db, app.id, d.id);
    };

    const row = (at: number, s: Partial<StoredSample>): StoredSample => ({
      appId: app.id, resolution: 10, process: "", source: "deck-1", at, seconds: 10, release: 1, cpuSeconds: null, rssBytes: null, memoryLimitBytes: null,
      restarts: 0, connections: null, requests: 0, status2xx: 0, status3xx: 0, status4xx: 0, status5xx: 0, bytesIn: 0, bytesOut: 0, latency: null, ...s,
    });
    /** Every 10 s over [from, to): the app's traffic (`perRow` requests answered in about `ms`) and each process's CPU. */
    const measure = async (from: number, to: number, t: { perRow: number; ms: number; cpu?: Record<string, number> }) => {
      const rows: StoredSample[] = [];
      for (let at = from; at < to; at += 10_000) {
        rows.push(row(at, { requests: t.perRow, status2xx: t.perRow, latency: t.perRow ? histogram(t.perRow, t.ms) : null }));
        for (const [process, cores] of Object.entries(t.cpu ?? {})) rows.push(row(at, { process, cpuSeconds: cores * 10 }));
      }
      await saveSamples(tdb.db.pool, rows);
    };

    const outbox = async (): Promise<Notice[]> =>
      (await tdb.db.pool.any(q`SELECT payload FROM notify_outbox WHERE payload->>'app' = ${app.name} ORDER BY id`)).map((r) => r.payload as Notice);
    const audits = async () =>
      (await tdb.db.pool.any(q`SELECT user_id, result, data FROM audit_log WHERE action = 'ps:autoscale' AND target = ${app.name} ORDER BY id`)).map((r) => ({ userId: r.user_id, result: r.result, data: r.data }));
    const judged = (r: Awaited<ReturnType<AutoscaleController["evaluate"]>>) => r.judged.filter((j) => j.app === app.name).map((j) => j.decision);

    it("scales web out after two rounds over its p95 target: decided, written down, audited, notified and streamed once", async () => {
      await goLive(T0 - 10 * MIN);
      await setAutoscale(deps, owner, app.name, { type: "web", min: 1, max: 3, p95Ms: 200, cpuPercent: null, rps: null });
      await measure(T0 - MIN, T0, { perRow: 10, ms: 400 });
      const events: AutoscaleEvent[] = [];
      const c = controller(events);

      assert.deepEqual(judged(await c.evaluate(T0)), [{ kind: "hold", reason: "p95 488ms above 200ms (round 1 of 2)" }]);
      assert.deepEqual(asked, []);
      clock = T0 + 2000;
      assert.deepEqual(judged(await c.evaluate(T0 + 2000)), [{ kind: "out", from: 1, to: 3, reason: "p95 488ms above 200ms over the last minute" }]);
      assert.deepEqual(asked, [[app.name, "web", 3]]);

      const view = await autoscaleOf(deps, owner, app.name);
      assert.deepEqual(view.types.map((t) => [t.type, t.current, t.min, t.max, t.p95Ms]), [["web", 3, 1, 3, 200]]);
      assert.deepEqual(view.decisions, [{
        at: new Date(T0 + 2000).toISOString(), type: "web", direction: "out", from: 1, to: 3, reason: "p95 488ms above 200ms over the last minute", status: "done", error: null,
      }]);
      assert.deepEqual(await audits(), [{ userId: null, result: "ok", data: { type: "web", direction: "out", from: 1, to: 3, reason: "p95 488ms above 200ms over the last minute" } }]);
      const notices = await outbox();
      assert.equal(notices.length, 1);
      assert.deepEqual(
        { status: notices[0]!.status, rule: notices[0]!.rule, value: notices[0]!.value, summary: notices[0]!.summary, command: notices[0]!.command, host: notices[0]!.host },
        {
          status: "firing", rule: "autoscale web", value: "1 → 3: p95 488ms above 200ms over the last minute",
          summary: `${app.name} (shop-inc): deck scaled web out from 1 to 3 processes because p95 488ms above 200ms over the last minute`,
          command: `ssh -p 2222 deck@deck.example.com ps:autoscale ${app.name}`, host: "deck-1",
        },
      );
      assert.deepEqual(events.map((e) => [e.type, e.app, e.processType, e.direction, e.from, e.to, e.status]), [["scale", app.name, "web", "out", 1, 3, "scaled"]]);

      // At the maximum, still slow: nothing more to do.
      await measure(T0, T0 + 2 * MIN, { perRow: 10, ms: 400 });
      clock = T0 + 2 * MIN;
      assert.deepEqual(judged(await c.evaluate(clock)), [{ kind: "hold", reason: "p95 488ms above 200ms (round 1 of 2)" }]);
      clock += 2000;
      assert.deepEqual(judged(await c.evaluate(clock)), [{ kind: "hold", reason: "p95 488ms above 200ms, but already at the maximum of 3" }]);
      assert.equal(asked.length, 1);
      assert.equal((await outbox()).length, 1, "one notice per decision");
    });

    it("waits a minute after a scale-out before the next one", async () => {
      await goLive(T0 - 10 * MIN);
      await setAutoscale(deps, owner, app.name, { type: "web", min: 1, max: 10, p95Ms: 300, cpuPercent: null, rps: null });
      await measure(T0 - MIN, T0 + 3 * MIN, { perRow: 10, ms: 400 });
      const c = controller();
      for (const t of [T0, T0 + 2000]) {
        clock = t;
        await c.evaluate(t);
      }
      assert.deepEqual(asked, [[app.name, "web", 2]], "487.5 / 300 asks for 2");
      const decisions: string[] = [];
      for (let t = T0 + 4000; t <= T0 + 64_000; t += 10_000) {
        clock = t;
        const [d] = judged(await c.evaluate(t));
        decisions.push(d!.kind === "hold" ? d!.reason : `${d!.kind} ${d!.from}→${d!.to}`);
      }
      assert.deepEqual(decisions, [
        "p95 488ms above 300ms (round 1 of 2)",
        "p95 488ms above 300ms, but scaled out less than 60s ago",
        "p95 488ms above 300ms, but scaled out less than 60s ago",
        "p95 488ms above 300ms, but scaled out less than 60s ago",
        "p95 488ms above 300ms, but scaled out less than 60s ago",
        "p95 488ms above 300ms, but scaled out less than 60s ago",
        "out 2→4",
      ]);
    });

    it("scales in by one after five quiet minutes, and not again within five minutes of that change", async () => {
      await goLive(T0 - 20 * MIN);
      await setFormation(tdb.db.pool, app.id, { web: 3 });
      await setAutoscale(deps, owner, app.name, { type: "web", min: 1, max: 5, p95Ms: 200, cpuPercent: null, rps: 10 });
      await measure(T0 - 5 * MIN, T0 + 10 * MIN, { perRow: 40, ms: 40 });
      const events: AutoscaleEvent[] = [];
      const c = controller(events);
      assert.deepEqual(judged(await c.evaluate(T0)), [{ kind: "in", from: 3, to: 2, reason: "every target below 50% of itself for 5 minutes (p95 200ms, rps 10)" }]);
      assert.deepEqual(asked, [[app.name, "web", 2]]);
      clock = T0 + 4 * MIN;
      assert.deepEqual(judged(await c.evaluate(clock)), [{ kind: "hold", reason: "within targets; processes changed less than 5 minutes ago" }]);
      clock = T0 + 5 * MIN;
      assert.deepEqual(judged(await c.evaluate(clock)), [{ kind: "in", from: 2, to: 1, reason: "every target below 50% of itself for 5 minutes (p95 200ms, rps 10)" }]);
      clock = T0 + 10 * MIN;
      assert.deepEqual(judged(await c.evaluate(clock)), [{ kind: "hold", reason: "within targets, at the minimum of 1" }]);
      assert.deepEqual(events.map((e) => `${e.direction} ${e.from}→${e.to}`), ["in 3→2", "in 2→1"]);
      assert.deepEqual((await outbox()).map((n) => n.summary), [
        `${app.name} (shop-inc): deck scaled web in from 3 to 2 processes because every target below 50% of itself for 5 minutes (p95 200ms, rps 10)`,
        `${app.name} (shop-inc): deck scaled web in from 2 to 1 process because every target below 50% of itself for 5 minutes (p95 200ms, rps 10)`,
      ]);
    });

    it("a deploy going live counts as a change: no scale-in within five minutes of it", async () => {
      await goLive(T0 - 3 * MIN);
      await setFormation(tdb.db.pool, app.id, { web: 2 });
      await setAutoscale(deps, owner, app.name, { type: "web", min: 1, max: 5, p95Ms: 200, cpuPercent: null, rps: null });
      await measure(T0 - 5 * MIN, T0, { perRow: 40, ms: 40 });
      assert.deepEqual(judged(await controller().evaluate(T0)), [{ kind: "hold", reason: "within targets; processes changed less than 5 minutes ago" }]);
    });

    it("a worker scales on the CPU of its own processes, not the web's", async () => {
      await goLive(T0 - 10 * MIN, { web: "node server.js", worker: "node worker.js" });
      await setFormation(tdb.db.pool, app.id, { web: 1, worker: 2 });
      await setAutoscale(deps, owner, app.name, { type: "worker", min: 1, max: 4, p95Ms: null, cpuPercent: 60, rps: null });
      await measure(T0 - MIN, T0 + 10_000, { perRow: 5, ms: 40, cpu: { "web.1": 0.1, "worker.1": 0.9, "worker.2": 0.7 } });
      const c = controller();
      await c.evaluate(T0);
      clock = T0 + 10_000;
      assert.deepEqual(judged(await c.evaluate(clock)), [{ kind: "out", from: 2, to: 3, reason: "CPU 80% per process above 60% over the last minute" }]);
      assert.deepEqual((await findApp(tdb.db.pool, app.name))!.formation, { web: 1, worker: 3 });
    });

    it("a scale that fails is written down as failed, audited and told, and is tried again only after a wait", async () => {
      await goLive(T0 - 10 * MIN);
      await setAutoscale(deps, owner, app.name, { type: "web", min: 1, max: 3, p95Ms: 200, cpuPercent: null, rps: null });
      // The settings were set before this test's clock starts.
      await tdb.db.pool.query(q`UPDATE autoscale_settings SET updated_at = to_timestamp(${(T0 - 5 * MIN) / 1000})`);
      await measure(T0 - MIN, T0 + MIN, { perRow: 10, ms: 400 });
      failWith = "the new processes did not answer their health check within 60s";
      const events: AutoscaleEvent[] = [];
      const c = controller(events);
      await c.evaluate(T0);
      clock = T0 + 2000;
      await c.evaluate(clock);
      const [d] = (await autoscaleOf(deps, owner, app.name)).decisions;
      assert.deepEqual([d!.status, d!.from, d!.to, d!.error], ["failed", 1, 3, failWith]);
      assert.deepEqual((await audits()).map((a) => [a.result, (a.data as { error?: string }).error]), [["failed", failWith]]);
      assert.deepEqual((await outbox()).map((n) => n.summary), [
        `${app.name} (shop-inc): deck could not scale web out from 1 to 3 processes (p95 488ms above 200ms over the last minute): ${failWith}`,
      ]);
      assert.deepEqual(events.map((e) => [e.status, e.error]), [["failed", failWith]]);
      const after: string[] = [];
      for (const t of [T0 + 4000, T0 + 6000]) {
        clock = t;
        after.push(...judged(await c.evaluate(t)).map((j) => j.reason));
      }
      assert.deepEqual(after, ["the last scale failed; trying again in 58s", "the last scale failed; trying again in 56s"]);
      assert.equal(asked.length, 1, "not tried again every round");
      // The wait over, and the scale working again: out it goes.
      failWith = null;
      for (const t of [T0 + 62_000, T0 + 64_000]) {
        clock = t;
        await c.evaluate(t);
      }
      assert.deepEqual(asked.map((a) => a[2]), [3, 3]);
    });

    it("after five failed scales in a row deck stops trying, until the app is deployed again", async () => {
      await goLive(T0 - 10 * MIN);
      await setFormation(tdb.db.pool, app.id, { web: 1 });
      await setAutoscale(deps, owner, app.name, { type: "web", min: 2, max: 3, p95Ms: 200, cpuPercent: null, rps: null });
      await tdb.db.pool.query(q`UPDATE autoscale_settings SET updated_at = to_timestamp(${(T0 - 5 * MIN) / 1000})`);
      failWith = "the new processes crashed on start";
      const c = controller();
      // Each try after its wait (1, 2, 4, 8 minutes); then none, however long.
      let t = T0;
      for (const wait of [0, 61, 121, 241, 481, 961, 3600]) {
        t += wait * 1000;
        clock = t;
        await c.evaluate(t);
      }
      assert.equal(asked.length, 5, JSON.stringify(asked));
      const reasons = judged(await c.evaluate(t + 1000)).map((j) => j.reason);
      assert.deepEqual(reasons, ["the last 5 scales failed; deck tries again after the next deploy or ps:autoscale"]);
      // A deploy going live starts over.
      failWith = null;
      await goLive(t + 2000);
      clock = t + 3000;
      await c.evaluate(clock);
      assert.equal(asked.length, 6);
    });

    it("brings a count outside the bounds back to them at once, and leaves stopped apps, apps without a release and missing types alone", async () => {
      await goLive(T0 - MIN);
      await setFormation(tdb.db.pool, app.id, { web: 5 });
      await setAutoscale(deps, owner, app.name, { type: "web", min: 1, max: 3, p95Ms: 200, cpuPercent: null, rps: null });
      assert.deepEqual(judged(await controller().evaluate(T0)), [{ kind: "in", from: 5, to: 3, reason: "5 is above the maximum of 3" }]);

      await setAppStopped(tdb.db.pool, app.id, true);
      assert.deepEqual(judged(await controller().evaluate(T0 + 2000)), [{ kind: "hold", reason: "the app is stopped" }]);

      const bare = await insertApp(tdb.db.pool, { name: `bare-${appSeq}`, orgId, createdBy: owner.user.id });
      await setAutoscale(deps, owner, bare.name, { type: "worker", min: 2, max: 3, p95Ms: null, cpuPercent: 50, rps: null });
      const r = await controller().evaluate(T0 + 4000);
      assert.deepEqual(r.judged.filter((j) => j.app === bare.name).map((j) => j.decision), [{ kind: "hold", reason: "the app has no live release" }]);
      // The release going live runs no worker.
      app = bare;
      await goLive(T0);
      const r2 = await controller().evaluate(T0 + 6000);
      assert.deepEqual(judged(r2), [{ kind: "hold", reason: "the live release runs no worker processes" }]);
      assert.deepEqual(asked.map((a) => a[2]), [3]);
    });

    it("decides nothing for an app while its scale runs, on this server or another", async () => {
      await goLive(T0 - 10 * MIN);
      await setFormation(tdb.db.pool, app.id, { web: 4 });
      await setAutoscale(deps, owner, app.name, { type: "web", min: 1, max: 2, p95Ms: 200, cpuPercent: null, rps: null });
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let started!: () => void;
      const scaling = new Promise<void>((r) => (started = r));
      const slow = new AutoscaleController({
        db: tdb.db.pool, log: () => undefined, sshHost: "deck", sshPort: 22, now: () => clock,
        scale: async (a, type, to) => {
          started();
          await held;
          await scale(a, type, to);
        },
      });
      const first = slow.evaluate(T0);
      await scaling;
      const other = await controller().evaluate(T0 + 2000);
      assert.deepEqual(judged(other), [{ kind: "hold", reason: "a scale of the app is under way" }]);
      assert.equal((await autoscaleOf(deps, owner, app.name)).decisions[0]!.status, "scaling");
      release();
      const r = await first;
      assert.deepEqual(judged(r), [{ kind: "in", from: 4, to: 2, reason: "4 is above the maximum of 2" }]);
      assert.equal((await autoscaleOf(deps, owner, app.name)).decisions[0]!.status, "done");
    });

    it("one deck server at a time: a round finding the lock taken does nothing", async () => {
      await goLive(T0 - MIN);
      await setFormation(tdb.db.pool, app.id, { web: 5 });
      await setAutoscale(deps, owner, app.name, { type: "web", min: 1, max: 3, p95Ms: 200, cpuPercent: null, rps: null });
      await tdb.db.pool.transaction(async (tx) => {
        assert.equal(await tryAutoscaleRoundLock(tx), true);
        const r = await controller().evaluate(T0);
        assert.deepEqual(r, { ran: false, judged: [] });
      });
      assert.deepEqual(asked, []);
      assert.equal((await controller().evaluate(T0)).ran, true);
      assert.deepEqual(asked, [[app.name, "web", 3]]);
    });

    it("forgets decisions after 30 days, and gives up one a stopped server left pending", async () => {
      await goLive(T0 - MIN);
      await setAutoscale(deps, owner, app.name, { type: "web", min: 1, max: 3, p95Ms: 200, cpuPercent: null, rps: null });
      const db = tdb.db.pool;
      const insert = (at: number, status: string) => db.query(q`INSERT INTO autoscale_decisions (app_id, process_type, direction, from_count, to_count, reason, status, at)
        VALUES (${app.id}, 'web', 'out', 1, 2, 'p95 above target', ${status}, to_timestamp(${at} / 1000.0))`);
      await insert(T0 - 31 * 86_400_000, "done");
      await insert(T0 - 29 * 86_400_000, "done");
      await insert(T0 - 31 * MIN, "pending");
      clock = T0;
      await controller().evaluate(T0);
      const left = (await autoscaleOf(deps, owner, app.name)).decisions.map((d) => [d.at, d.status, d.error]);
      assert.deepEqual(left, [
        [new Date(T0 - 31 * MIN).toISOString(), "failed", "the deck server scaling it stopped before it finished"],
        [new Date(T0 - 29 * 86_400_000).toISOString(), "done", null],
      ]);
    });
  });
}
