import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { insertApp, insertBuild, insertDeployment, insertOrganization, insertRelease, insertUser, q } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { DeployEvents } from "./deploy-state.ts";
import type { DeployDeps } from "./deps.ts";
import { endOrphanedDeployments } from "./reconcile.ts";

for (const backend of await databaseBackends()) {
  describe(`deployments no deck server works on any more (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let appId: number;
    let userId: number;
    before(async () => {
      t = await openTestDatabase(backend);
      const user = await insertUser(t.db.pool, { email: "o@example.com", isAdmin: true });
      const org = await insertOrganization(t.db.pool, { name: "O", slug: "o" });
      appId = (await insertApp(t.db.pool, { name: "orphans", orgId: org.id, createdBy: user.id })).id;
      userId = user.id;
    });
    after(async () => t?.cleanup());

    it("ends those without an entry in the apps' lines once quiet for a minute, or at once when this server's last run left them", async () => {
      const db = t.db.pool;
      const deployment = async (status: string, quietSeconds: number, extra: { request?: boolean; releaseId?: number } = {}) => {
        const row = await insertDeployment(db, { appId, kind: "push", commitSha: "b".repeat(40), createdBy: userId });
        await db.query(q`UPDATE deployments SET status = ${status}, updated_at = now() - make_interval(secs => ${quietSeconds}),
          request = ${extra.request ? '{"ref":"refs/heads/main","old":"0000000000000000000000000000000000000000"}' : null}::jsonb,
          release_id = ${extra.releaseId ?? null} WHERE id = ${row.id}`);
        return row.id;
      };
      const build = await insertBuild(db, appId, "b".repeat(40));
      const release = async () => (await db.transaction((tx) => insertRelease(tx, { appId, buildId: build.id, config: {}, commitSha: "b".repeat(40), description: "test", createdBy: userId }))).id;
      const deadRelease = await release();
      const busyRelease = await release();

      const fresh = await deployment("queued", 5);
      const dead = await deployment("building", 120, { releaseId: deadRelease });
      const busy = await deployment("checking", 120, { releaseId: busyRelease });
      await db.query(q`INSERT INTO app_queue (app_id, kind, holder, deployment_id, running) VALUES (${appId}, 'push', 'elsewhere:/d:1', ${busy}, true)`);
      const kept = await deployment("queued", 600, { request: true });
      const mine = await deployment("starting", 1);
      const wentLive = await deployment("switching", 120);
      await db.query(q`UPDATE apps SET live_deployment_id = ${wentLive} WHERE id = ${appId}`);

      const events = new DeployEvents();
      const heard: string[] = [];
      events.subscribe((e) => heard.push(`${e.deploymentId} ${e.to}`));
      const deps = { db, events, log: () => {} } as unknown as DeployDeps;
      assert.equal(await endOrphanedDeployments(deps, { ours: new Set([mine]) }), 3);

      const status = async (id: number) => String(await db.oneFirst(q`SELECT status FROM deployments WHERE id = ${id}`));
      assert.equal(await status(fresh), "queued", "a row this new may still get its entry from the server that wrote it");
      assert.equal(await status(dead), "interrupted");
      assert.equal(await status(busy), "checking", "a server works on it");
      assert.equal(await status(kept), "queued", "kept for its server's next start");
      assert.equal(await status(mine), "interrupted", "this server's last run left it");
      assert.equal(await status(wentLive), "succeeded", "it had switched: only the drain was left");
      assert.ok(heard.includes(`${dead} interrupted`) && heard.includes(`${wentLive} succeeded`), heard.join(", "));
      const releaseStatus = async (id: number) => String(await db.oneFirst(q`SELECT status FROM releases WHERE id = ${id}`));
      assert.equal(await releaseStatus(deadRelease), "failed");
      assert.equal(await releaseStatus(busyRelease), "pending", "the release a running deployment makes is left alone");
    });
  });
}
