import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { DeployDeps } from "../../ops/index.ts";
import { q } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { platformHealth, readPlatformHealth } from "./health.ts";

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
      assert.ok(health.host.cpus > 0 && health.host.memTotal > health.host.memFree);
      assert.ok(health.host.diskTotal !== null && health.host.diskFree !== null && health.host.diskTotal >= health.host.diskFree);
    });
  });
}
