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
      const collector = new MetricsCollector({ db, sources, intervalSeconds: 10, log: () => {} });
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

      // The next minute: the finished one is summed into a 1-minute row.
      await collector.tick(t0 + 60_000);
      const minutes = await listSamples(db, appId, 60, t0 - 3600_000, t0 + 3600_000, "app");
      assert.deepEqual(minutes.map((m) => [new Date(m.at).toISOString(), m.requests, m.status5xx, m.seconds]), [["2026-01-01T10:00:00.000Z", 140, 10, 40]]);
      // The next hour: hourly rows from the minutes.
      await collector.tick(t0 + 3600_000);
      const hours = await listSamples(db, appId, 3600, t0 - 86_400_000, t0 + 86_400_000, "app");
      assert.deepEqual(hours.map((h) => [new Date(h.at).toISOString(), h.requests]), [["2026-01-01T10:00:00.000Z", 140]]);

      // Three days on, the 10-second rows are gone; minutes and hours stay.
      await collector.tick(t0 + 3 * 86_400_000);
      assert.equal((await listSamples(db, appId, 10, t0 - 60_000, t0 + 60_000, "app")).length, 0);
      assert.equal((await listSamples(db, appId, 60, t0 - 60_000, t0 + 55_000, "app")).length, 1, "the minute of 10:00 is kept");
      assert.deepEqual((await listSamples(db, appId, 3600, t0 - 86_400_000, t0 + 3_500_000, "app")).map((h) => h.requests), [140], "and its hour");
      await collector.stop();
    });
  });
}
