import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { q, sql, getConfigVars, insertApp, insertBuild, insertOrganization, insertRelease, listReleases, saveConfigVars, type Db } from "./queries/index.ts";
import { configureSecrets } from "./secret-box.ts";

/**
 * Config vars and release config as stored: values sealed in the rows, the same maps back to callers,
 * and rows written before migration 004 (plaintext) sealed on first use.
 */

const backends = await databaseBackends();

async function rawText(db: Db, appId: number): Promise<string> {
  const env = await db.anyFirst(q`SELECT variables::text FROM environments WHERE app_id = ${appId}`);
  const rel = await db.anyFirst(q`SELECT config::text FROM releases WHERE app_id = ${appId}`);
  return [...env, ...rel].join("\n");
}

for (const backend of backends) {
  describe(`encrypted config vars (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let orgId: number;
    let n = 0;
    const secret = () => randomBytes(16).toString("hex");
    const newApp = async () => {
      const app = await insertApp(t.db.pool, { name: `app${++n}`, orgId, createdBy: null });
      return { app, build: await insertBuild(t.db.pool, app.id, "a".repeat(40)) };
    };

    before(async () => {
      t = await openTestDatabase(backend);
      configureSecrets({ dataDir: t.dataDir });
      orgId = (await insertOrganization(t.db.pool, { name: "Org", slug: "org" })).id;
    });
    after(async () => {
      await t?.cleanup();
    });

    it("stores sealed values and gives callers the plain map back", async () => {
      const db = t.db.pool;
      const { app, build } = await newApp();
      const value = secret();
      await saveConfigVars(db, app.id, { API_TOKEN: value, EMPTY: "" });
      const rel = await db.transaction((tx) => insertRelease(tx, { appId: app.id, buildId: build.id, config: { API_TOKEN: value }, commitSha: build.commitSha, description: "Set API_TOKEN", createdBy: null }));
      assert.deepEqual(rel.config, { API_TOKEN: value });
      assert.deepEqual(await getConfigVars(db, app.id), { API_TOKEN: value, EMPTY: "" });
      assert.deepEqual((await listReleases(db, app.id))[0]!.config, { API_TOKEN: value });
      const raw = await rawText(db, app.id);
      assert.ok(!raw.includes(value), `value stored in clear:\n${raw}`);
      assert.match(raw, /"API_TOKEN": "v1:/, "keys stay listable, values are sealed");
    });

    it("seals rows written before encryption the first time the app's config is read", async () => {
      const db = t.db.pool;
      const { app, build } = await newApp();
      const value = secret();
      const old = secret();
      // What a deck before migration 004 wrote.
      await db.query(q`UPDATE environments SET variables = ${sql.jsonb({ DB_PASSWORD: value })}, variables_format = 'plain' WHERE app_id = ${app.id}`);
      await db.query(q`INSERT INTO releases (app_id, version, build_id, config, commit_sha, description, status, config_format)
        VALUES (${app.id}, 1, ${build.id}, ${sql.jsonb({ DB_PASSWORD: old })}, ${build.commitSha}, 'Deploy', 'live', 'plain')`);
      assert.deepEqual((await listReleases(db, app.id))[0]!.config, { DB_PASSWORD: old }, "old releases read as before");
      assert.ok((await rawText(db, app.id)).includes(value));

      assert.deepEqual(await getConfigVars(db, app.id), { DB_PASSWORD: value });
      const raw = await rawText(db, app.id);
      assert.ok(!raw.includes(value) && !raw.includes(old), `still in clear after first read:\n${raw}`);
      assert.deepEqual(await getConfigVars(db, app.id), { DB_PASSWORD: value });
      assert.deepEqual((await listReleases(db, app.id))[0]!.config, { DB_PASSWORD: old });
    });

    it("seals an app's older releases when its pre-encryption config is overwritten", async () => {
      const db = t.db.pool;
      const { app, build } = await newApp();
      const old = secret();
      await db.query(q`UPDATE environments SET variables = ${sql.jsonb({ K: old })}, variables_format = 'plain' WHERE app_id = ${app.id}`);
      await db.query(q`INSERT INTO releases (app_id, version, build_id, config, commit_sha, description, status, config_format)
        VALUES (${app.id}, 1, ${build.id}, ${sql.jsonb({ K: old })}, ${build.commitSha}, 'Deploy', 'live', 'plain')`);
      await saveConfigVars(db, app.id, { K: "new" });
      assert.ok(!(await rawText(db, app.id)).includes(old));
      assert.deepEqual(await getConfigVars(db, app.id), { K: "new" });
      assert.deepEqual((await listReleases(db, app.id))[0]!.config, { K: old });
    });

    it("reports a value sealed under another master key instead of returning garbage", async () => {
      const db = t.db.pool;
      const { app } = await newApp();
      await saveConfigVars(db, app.id, { K: secret() });
      configureSecrets({ dataDir: t.dataDir, masterKey: randomBytes(32).toString("base64") });
      try {
        await assert.rejects(getConfigVars(db, app.id), (e: Error & { code?: string }) => e.code === "secret_key_mismatch");
      } finally {
        configureSecrets({ dataDir: t.dataDir });
      }
    });
  });
}
