import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { insertApp, insertOrganization, insertUser, type AppRow, type UserRow } from "../store/queries/index.ts";
import { recordPush, SHA, type RecordedPush } from "../test/helpers/build-records.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { BuildRuns, protectedBuildIds } from "./build-runs.ts";
import type { DeployDeps } from "./deps.ts";
import { pruneSlugs } from "./pipeline.ts";

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
    const push = (app: AppRow, n: number, outcome: RecordedPush) => recordPush(t.db.pool, dir, user.id, app, n, outcome);

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
