import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ProcessInfo, ProcessStats } from "../core/index.ts";
import { insertApp, insertOrganization, insertUser, listSamples, q } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { MetricsCollector, type RouterCountersReading } from "./collector.ts";

/**
 * The collector against a real PostgreSQL, with the runtime's and the router's readings given by the
 * test (what they would report at each moment), so that rollups and retention can be driven by the clock.
 */
for (const backend of await databaseBackends()) {
  describe(`metric samples, rollups and retention (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let appId: number;
    before(async () => {
      t = await openTestDatabase(backend);
      const user = await insertUser(t.db.pool, { email: "m@example.com", isAdmin: true });
      const org = await insertOrganization(t.db.pool, { name: "M", slug: "m" });
      appId = (await insertApp(t.db.pool, { name: "meter", orgId: org.id, createdBy: user.id })).id;
      await t.db.pool.query(q`UPDATE apps SET live_deployment_id = NULL WHERE id = ${appId}`);
    });
    after(async () => t?.cleanup());

    it("turns counters into amounts per sample, counts from zero after a router restart, sums minutes and hours, and drops old rows", async () => {
      const db = t.db.pool;
      // A deployment id for the live generation (the collector names processes of the live release).
      const dep = Number(await db.oneFirst(q`INSERT INTO deployments (app_id, kind, status) VALUES (${appId}, 'push', 'succeeded') RETURNING id`));
      await db.query(q`UPDATE apps SET live_deployment_id = ${dep} WHERE id = ${appId}`);
      const proc: ProcessInfo = { id: `meter.g${dep}.web.1`, app: "meter", release: 4, generation: dep, type: "web", index: 1, port: 5000, state: "running", restarts: 0, startedAt: new Date().toISOString() };
      let cpu = 0;
      let restarts = 0;
      let instance = "router-1";
      let counts = { ok: 0, failed: 0, fast: 0, slow: 0 };
      let routerDown = false;
      const sources = {
        processes: async (): Promise<ProcessInfo[]> => [{ ...proc, restarts }],
        stats: async (): Promise<ProcessStats[]> => [{ id: proc.id, cpuSeconds: cpu, rssBytes: 50 * 1024 * 1024, memoryLimitBytes: 100 * 1024 * 1024 }],
        routerCounters: async (): Promise<RouterCountersReading> => {
          if (routerDown) throw new Error("the router did not answer");
          const buckets = new Array(13).fill(0);
          buckets[2] = counts.fast; // ≤ 10 ms
          buckets[7] = counts.slow; // ≤ 500 ms
          return { instance, apps: { meter: { byClass: [0, counts.ok, 0, 0, counts.failed], bytesIn: 0, bytesOut: 0, buckets, count: counts.ok + counts.failed } }, inflight: { "127.0.0.1:5000": 2 } };
        },
      };
      const collector = new MetricsCollector({ db, sources, intervalSeconds: 10, log: () => {}, source: "server-a" });
      const t0 = Date.UTC(2026, 0, 1, 10, 0, 5);
      await collector.tick(t0);
      // 10 s later: 90 good and 10 failed requests, 2 s of CPU, one restart.
      counts = { ok: 90, failed: 10, fast: 95, slow: 5 };
      cpu = 2;
      restarts = 1;
      await collector.tick(t0 + 10_000);
      // The router restarted: its counts start again from what it has counted since.
      instance = "router-2";
      counts = { ok: 30, failed: 0, fast: 30, slow: 0 };
      cpu = 3;
      await collector.tick(t0 + 20_000);

      // A reading the router does not answer: the next one counts from the last it did answer.
      routerDown = true;
      await collector.tick(t0 + 30_000);
      routerDown = false;
      counts = { ok: 40, failed: 0, fast: 40, slow: 0 };
      await collector.tick(t0 + 40_000);
      const tens = await listSamples(db, appId, 10, t0 - 60_000, t0 + 60_000, "app");
      assert.deepEqual(tens.map((s) => [s.requests, s.status5xx]), [[100, 10], [30, 0], [0, 0], [10, 0]]);
      assert.deepEqual(tens.map((s) => s.release), [4, 4, 4, 4]);
      assert.equal(tens[0]!.latency![7], 5);
      const web = await listSamples(db, appId, 10, t0 - 60_000, t0 + 60_000, "processes");
      assert.deepEqual(web.slice(0, 2).map((s) => [s.process, s.cpuSeconds, s.restarts, s.connections, s.memoryLimitBytes]), [["web.1", 2, 1, 2, 100 * 1024 * 1024], ["web.1", 1, 0, 2, 100 * 1024 * 1024]]);

      // Once every source's last row of the minute is in (an interval and a margin later), the minute is summed into a 1-minute row.
      await collector.tick(t0 + 60_000);
      assert.equal((await listSamples(db, appId, 60, t0 - 3600_000, t0 + 3600_000, "app")).length, 0, "not before the minute settled");
      await collector.tick(t0 + 70_000);
      const minutes = await listSamples(db, appId, 60, t0 - 3600_000, t0 + 3600_000, "app");
      assert.deepEqual(minutes.map((m) => [new Date(m.at).toISOString(), m.requests, m.status5xx, m.seconds]), [["2026-01-01T10:00:00.000Z", 140, 10, 40]]);
      // The next hour: hourly rows from the minutes.
      await collector.tick(t0 + 3_615_000);
      const hours = await listSamples(db, appId, 3600, t0 - 86_400_000, t0 + 86_400_000, "app");
      assert.deepEqual(hours.map((h) => [new Date(h.at).toISOString(), h.requests]), [["2026-01-01T10:00:00.000Z", 140]]);

      // Three days on, the 10-second rows are gone; minutes and hours stay.
      await collector.tick(t0 + 3 * 86_400_000);
      assert.equal((await listSamples(db, appId, 10, t0 - 60_000, t0 + 60_000, "app")).length, 0);
      assert.equal((await listSamples(db, appId, 60, t0 - 60_000, t0 + 55_000, "app")).length, 1, "the minute of 10:00 is kept");
      assert.deepEqual((await listSamples(db, appId, 3600, t0 - 86_400_000, t0 + 3_500_000, "app")).map((h) => h.requests), [140], "and its hour");
      await collector.stop();
    });

    it("adds up what a deck server and a router node measured of the same app, also in rollups, including a row that came late", async () => {
      const db = t.db.pool;
      const other = (await insertApp(db, { name: "shared", orgId: Number(await db.oneFirst(q`SELECT org_id FROM apps WHERE id = ${appId}`)), createdBy: Number(await db.oneFirst(q`SELECT id FROM users LIMIT 1`)) })).id;
      const reading = (requests: number, failed: number): RouterCountersReading => {
        const buckets = new Array(13).fill(0);
        buckets[3] = requests + failed;
        return { instance: "r", apps: { shared: { byClass: [0, requests, 0, 0, failed], bytesIn: 0, bytesOut: 100 * (requests + failed), buckets, count: requests + failed } } };
      };
      let server = reading(0, 0);
      let node = reading(0, 0);
      const none = { processes: async () => [], stats: async () => [] };
      const onServer = new MetricsCollector({ db, intervalSeconds: 10, log: () => {}, source: "server-a", sources: { ...none, routerCounters: async () => server } });
      const onNode = new MetricsCollector({ db, intervalSeconds: 10, log: () => {}, source: "router:edge-1:8080", rollups: false, sources: { ...none, routerCounters: async () => node } });
      const t1 = Date.UTC(2026, 0, 2, 10, 0, 2);
      await onServer.tick(t1);
      await onNode.tick(t1 + 3_000);
      server = reading(20, 0);
      node = reading(50, 5);
      await onServer.tick(t1 + 10_000);
      await onNode.tick(t1 + 13_000);
      const tens = await listSamples(db, other, 10, t1 - 60_000, t1 + 60_000, "app");
      assert.deepEqual(tens.map((s) => [s.requests, s.status5xx, s.bytesOut]), [[75, 5, 7500]], "one row for the 10 seconds, both machines' requests in it");
      // The minute rolls up after it settled; the router node's row of 10:00:50 comes late, after that rollup.
      server = reading(30, 0);
      await onServer.tick(t1 + 50_000);
      await onServer.tick(t1 + 75_000);
      node = reading(60, 5);
      await onNode.tick(t1 + 53_000);
      await onServer.tick(t1 + 135_000);
      const minutes = await listSamples(db, other, 60, t1 - 3600_000, t1 + 3600_000, "app");
      assert.deepEqual(minutes.map((m) => [new Date(m.at).toISOString(), m.requests, m.status5xx]), [["2026-01-02T10:00:00.000Z", 95, 5]]);
      await Promise.all([onServer.stop(), onNode.stop()]);
    });
  });
}
