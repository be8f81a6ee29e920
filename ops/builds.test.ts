import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { insertApp, insertDeployment, insertOrganization, insertUser, type AppRow, type UserRow } from "../store/queries/index.ts";
import { BuildRuns, pruneSlugs, type DeployDeps } from "../deploy/index.ts";
import { recordPush, SHA, type RecordedPush } from "../test/helpers/build-records.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { callerFor } from "./access.ts";
import { classifyFailure, listBuilds } from "./builds.ts";

describe("build status", () => {
  it("tells cancelled, timed-out and out-of-memory builds apart by their failure code", () => {
    assert.equal(classifyFailure("anything at all", "cancelled"), "cancelled");
    assert.equal(classifyFailure("anything at all", "timeout"), "timed-out");
    assert.equal(classifyFailure("anything at all", "out_of_memory"), "out-of-memory");
    assert.equal(classifyFailure("build cancelled by someone (a message alone no longer decides)", "build_failed"), "failed");
  });

  it("reads the message of failures recorded before they had a code", () => {
    assert.equal(classifyFailure("build cancelled by ops@example.com"), "cancelled");
    assert.equal(classifyFailure("build timed out after 900s"), "timed-out");
    assert.equal(classifyFailure("build ran out of memory (limit 128 MB); raise DECK_BUILD_MEMORY or reduce the build's memory use"), "out-of-memory");
    assert.equal(classifyFailure("npm ci failed with exit code 1"), "failed");
    assert.equal(classifyFailure(null), "failed");
  });
});

for (const backend of await databaseBackends()) {
  describe(`builds:list (${backend.name} PostgreSQL)`, () => {
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

    it("lists builds newest first with status, commit, size and whether the artifact is kept", async () => {
      const org = await insertOrganization(t.db.pool, { name: "List", slug: "list" });
      const app = await insertApp(t.db.pool, { name: "lister", orgId: org.id, createdBy: user.id });
      await push(app, 1, { build: "ok", release: "superseded" });
      await push(app, 2, { build: "failed", error: "build cancelled by ops@example.com" });
      await push(app, 3, { build: "failed", code: "out_of_memory", error: "build ran out of memory (limit 128 MB); raise DECK_BUILD_MEMORY or reduce the build's memory use" });
      await push(app, 4, { build: "ok", release: "superseded" });
      await push(app, 5, { build: "ok", release: "live" });
      const d = deps();
      await pruneSlugs(d, app);
      const caller = await callerFor(t.db.pool, user, "cli");
      const builds = await listBuilds(d, caller, "lister");
      assert.deepEqual(builds.map((b) => [b.commit, b.status, b.sizeBytes, b.artifact]), [
        [SHA(5), "succeeded", 5000, "kept"],
        [SHA(4), "succeeded", 4000, "kept"],
        [SHA(3), "out-of-memory", null, null],
        [SHA(2), "cancelled", null, null],
        [SHA(1), "succeeded", 1000, "pruned"],
      ]);
      assert.ok(builds.every((b) => b.pusher === "admin@example.com" && b.durationMs !== null && b.durationMs >= 0));
      assert.equal(builds[2].error?.startsWith("build ran out of memory"), true);

      // A push waiting for its turn (on this server or another) is listed first, without an id yet.
      const dev = await insertUser(t.db.pool, { email: "dev@example.com", isAdmin: false });
      await insertDeployment(t.db.pool, { appId: app.id, kind: "push", commitSha: SHA(6), createdBy: dev.id });
      const [first] = await listBuilds(d, caller, "lister");
      assert.deepEqual([first.id, first.status, first.commit, first.pusher], [null, "queued", SHA(6), "dev@example.com"]);
    });
  });
}
