import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  finishBuild, insertApp, insertBuild, insertDeployment, insertOrganization, insertRelease, insertUser, setReleaseStatus,
  sql, updateDeployment, type AppRow, type UserRow,
} from "../store/queries/index.ts";
import type { ErrorCode } from "../core/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { BuildRuns, protectedBuildIds } from "./build-runs.ts";
import type { DeployDeps } from "./deps.ts";
import { pruneSlugs } from "./pipeline.ts";

const SHA = (n: number) => String(n).repeat(40).slice(0, 40);

describe("BuildRun", () => {
  it("replays the output so far to a late follower, then streams each new line until the push ends", async () => {
    const runs = new BuildRuns();
    const run = runs.begin("web", SHA(1), "dev@example.com");
    run.line("-----> one");
    const seen: string[] = [];
    const following = run.follow((l) => seen.push(l), new AbortController().signal);
    assert.deepEqual(seen, ["-----> one"]);
    run.line("       two");
    assert.deepEqual(seen, ["-----> one", "       two"], "a new line reaches the follower at once");
    runs.end(run);
    await following;
    run.line("after the end");
    assert.equal(seen.length, 2);
    assert.deepEqual(runs.forApp("web"), []);
  });

  it("stops following when the follower goes away", async () => {
    const run = new BuildRuns().begin("web", SHA(1), "dev@example.com");
    const gone = new AbortController();
    const seen: string[] = [];
    const following = run.follow((l) => seen.push(l), gone.signal);
    gone.abort();
    await following;
    run.line("not seen");
    assert.deepEqual(seen, []);
  });

  it("cancels a queued or building push, naming who cancelled, but not one already deploying", async () => {
    const runs = new BuildRuns();
    const queued = runs.begin("web", SHA(1), "dev@example.com");
    assert.equal(queued.cancel("ops@example.com"), true);
    assert.equal(await queued.cancelledWhileQueued, "build cancelled by ops@example.com");
    assert.equal(queued.signal.aborted, true);
    assert.equal(queued.cancelMessage, "build cancelled by ops@example.com");
    assert.equal(queued.cancel("ops@example.com"), false, "cancelled once");

    const building = runs.begin("web", SHA(2), "dev@example.com");
    building.startBuild(7);
    let over = false;
    const waiting = building.waitBuildOver(5000).then(() => (over = true));
    assert.equal(building.cancel("ops@example.com"), true);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(over, false, "cancel waits for the build to stop");
    building.finishBuild();
    await waiting;

    const deploying = runs.begin("web", SHA(3), "dev@example.com");
    deploying.startBuild(8);
    deploying.finishBuild();
    assert.equal(deploying.cancellable, false);
    assert.equal(deploying.cancel("ops@example.com"), false);
    assert.equal(deploying.signal.aborted, false);
  });
});

for (const backend of await databaseBackends()) {
  describe(`build records and artifact retention (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let user: UserRow;
    let dir: string;
    before(async () => {
      t = await openTestDatabase(backend);
      dir = await mkdtemp(join(tmpdir(), "deck-slugs-"));
      user = await insertUser(t.db.pool, { email: "admin@example.com", isAdmin: true });
    });
    after(async () => {
      await t?.cleanup();
      await rm(dir, { recursive: true, force: true });
    });

    const deps = (): DeployDeps => ({ db: t.db.pool, config: { keepReleases: 2 }, runs: new BuildRuns(), log: () => undefined } as unknown as DeployDeps);

    /** A push: its deployment, then its build (with a slug on disk when it succeeded), then maybe a release. */
    async function push(app: AppRow, n: number, outcome: { build: "ok" | "failed"; error?: string; code?: ErrorCode; release?: "live" | "superseded" | "failed" }): Promise<{ buildId: number; slug: string }> {
      const d = await insertDeployment(t.db.pool, { appId: app.id, kind: "push", commitSha: SHA(n), createdBy: user.id });
      const b = await insertBuild(t.db.pool, app.id, SHA(n), outcome.code ? d.id : null);
      const slug = join(dir, app.name, String(b.id));
      if (outcome.build === "ok") {
        await mkdir(slug, { recursive: true });
        await writeFile(join(slug, "app.js"), "x".repeat(1000 * n));
        await finishBuild(t.db.pool, b.id, { ok: true, buildpack: "node", slugPath: slug, sizeBytes: 1000 * n, procfile: { web: "node app.js" } });
      } else {
        await finishBuild(t.db.pool, b.id, { ok: false });
      }
      if (outcome.code) await t.db.pool.query(sql.unsafe`UPDATE deployments SET status = 'failed', error = ${outcome.error ?? "failed"}, error_code = ${outcome.code}, finished_at = now() WHERE id = ${d.id}`);
      else if (outcome.error) await updateDeployment(t.db.pool, d.id, { status: "failed", error: outcome.error, finished: true });
      else await updateDeployment(t.db.pool, d.id, { status: "succeeded", finished: true });
      if (outcome.release) {
        const r = await t.db.pool.transaction((tx) => insertRelease(tx, { appId: app.id, buildId: b.id, config: {}, commitSha: SHA(n), description: `v${n}`, createdBy: user.id }));
        await setReleaseStatus(t.db.pool, r.id, outcome.release);
      }
      return { buildId: b.id, slug };
    }

    it("never prunes the live release's artifact or the one rollback would return to", async () => {
      const org = await insertOrganization(t.db.pool, { name: "Keep", slug: "keep" });
      const app = await insertApp(t.db.pool, { name: "keeper", orgId: org.id, createdBy: user.id });
      // v2 is live and three later releases failed their health check: the two newest builds are not
      // the ones that matter.
      const v1 = await push(app, 1, { build: "ok", release: "superseded" });
      const v2 = await push(app, 2, { build: "ok", release: "live" });
      const v3 = await push(app, 3, { build: "ok", release: "failed" });
      const v4 = await push(app, 4, { build: "ok", release: "failed" });
      const v5 = await push(app, 5, { build: "ok", release: "failed" });
      assert.deepEqual((await protectedBuildIds(t.db.pool, app.id)).sort(), [v1.buildId, v2.buildId].sort());
      await pruneSlugs(deps(), app);
      for (const kept of [v1, v2, v4, v5]) assert.ok(existsSync(kept.slug), `build ${kept.buildId} kept`);
      assert.equal(existsSync(v3.slug), false, "an artifact no release needs is removed");
    });
  });
}
