import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { DeployDeps } from "../../ops/index.ts";
import { q } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { LATENCY_BOUNDS, type MetricSample } from "../../core/index.ts";
import { platformHealth, platformTraffic, readPlatformHealth } from "./health.ts";

describe("the platform's traffic series", () => {
  const row = (at: number, requests: number, fastShare: number, process = ""): MetricSample => {
    const latency = LATENCY_BOUNDS.map(() => 0).concat(0);
    latency[LATENCY_BOUNDS.indexOf(0.01)] = Math.round(requests * fastShare); // 5–10 ms
    latency[LATENCY_BOUNDS.indexOf(0.5)] = requests - Math.round(requests * fastShare); // 250–500 ms
    return {
      at, seconds: 10, process, release: 1, cpuSeconds: null, rssBytes: null, memoryLimitBytes: null, restarts: 0, connections: null,
      requests, status2xx: requests, status3xx: 0, status4xx: 0, status5xx: 0, bytesIn: 0, bytesOut: 0, latency,
    };
  };

  it("adds every app's and every machine's rows of a period, and takes p95 from their histograms together", () => {
    const t0 = Date.parse("2026-12-07T12:00:00Z");
    const series = platformTraffic([
      row(t0 + 10_000, 100, 1), // app A, one machine: all fast
      row(t0, 100, 1), row(t0, 100, 1), // app A on two machines
      row(t0, 100, 0.9), // app B: a tenth slow
      row(t0, 999, 0, "web.1"), // a process's own row is not traffic
    ]);
    assert.deepEqual(series.map((p) => [p.at, p.requestsPerSecond]), [["2026-12-07T12:00:00.000Z", 30], ["2026-12-07T12:00:10.000Z", 10]]);
    // 10 of 300 requests slow: under 5%, so p95 stays with the fast ones (B alone would be slow at p95).
    assert.ok(series[0]!.p95Ms! <= 10, `p95 ${series[0]!.p95Ms}`);
    const slow = platformTraffic([row(t0, 100, 1), row(t0, 100, 0.8), row(t0, 100, 0.8)]);
    assert.ok(slow[0]!.p95Ms! > 250, `40 of 300 slow puts p95 among them: ${slow[0]!.p95Ms}`);
  });
});

for (const backend of await databaseBackends()) {
  describe(`platform health (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    const deps = (): DeployDeps => ({
      db: t.db.pool,
      config: { dataDir: t.dataDir },
      // No router listens here: the health must say so rather than hang or throw.
      paths: { routerSocket: join(t.dataDir, "no-router.sock") },
      log: () => undefined,
    } as unknown as DeployDeps);

    before(async () => {
      t = await openTestDatabase(backend);
    });
    after(async () => {
      await t?.cleanup();
    });

    it("counts nodes, queued builds and firing alerts from the database, and reports a router that does not answer as down", async () => {
      await t.db.pool.query(q`INSERT INTO router_nodes (id, label, route_version, last_seen) VALUES ('n1', 'edge-1', 7, now() - interval '20 seconds')`);
      await t.db.pool.query(q`INSERT INTO builder_nodes (name, capacity) VALUES ('builder-a', 3)`);
      await t.db.pool.query(q`INSERT INTO build_queue (holder, running, builder) VALUES ('h', true, 'builder-a'), ('h', false, NULL), ('h', false, NULL)`);
      const health = await readPlatformHealth(deps());
      assert.doesNotThrow(() => platformHealth.parse(health));
      const [api, database, router, builders] = health.services;
      assert.deepEqual(api, { name: "api", up: true });
      assert.equal(database.up, true);
      assert.ok(database.latencyMs !== null && database.latencyMs >= 0);
      assert.equal(router.up, false);
      assert.equal(router.routerNodes.length, 1);
      assert.equal(router.routerNodes[0].name, "edge-1");
      assert.equal(router.routerNodes[0].routeVersion, 7);
      assert.ok(router.routerNodes[0].heartbeatAgeSeconds >= 19, `heartbeat age ${router.routerNodes[0].heartbeatAgeSeconds}`);
      assert.deepEqual(builders.builderNodes.map((b) => [b.name, b.capacity, b.running]), [["builder-a", 3, 1]]);
      assert.deepEqual(health.buildQueue, { waiting: 2, running: 1 });
      assert.equal(health.alertsFiring, 0);
      assert.deepEqual(health.traffic, [], "no app has traffic yet");
      assert.ok(health.host.cpus > 0 && health.host.memTotal > health.host.memFree);
      assert.ok(health.host.diskTotal !== null && health.host.diskFree !== null && health.host.diskTotal >= health.host.diskFree);
    });
  });
}
