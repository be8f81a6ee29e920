import assert from "node:assert/strict";
import { copyFile, mkdtemp, readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { MIGRATIONS_DIR, migrate } from "../index.ts";
import { deleteApp, findApp, insertApp, insertOrganization, listSandboxUidsOutside, q } from "./index.ts";

/** Each app's own uid: DECK_SANDBOX_UID_BASE + its id, stored, unique, kept when the base changes. */

const backends = await databaseBackends();

for (const backend of backends) {
  describe(`app sandbox uids (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let orgId: number;

    before(async () => {
      t = await openTestDatabase(backend);
      orgId = (await insertOrganization(t.db.pool, { name: "Org", slug: "org" })).id;
    });
    after(async () => {
      await t?.cleanup();
    });

    it("gives a new app base + id, and keeps it when the base changes later", async () => {
      const first = await insertApp(t.db.pool, { name: "first", orgId, createdBy: null });
      assert.deepEqual(first.sandbox, { uid: 200_000 + first.id, gid: 200_000 + first.id });
      const moved = await insertApp(t.db.pool, { name: "moved", orgId, createdBy: null, sandboxUidBase: 500_000 });
      assert.deepEqual(moved.sandbox, { uid: 500_000 + moved.id, gid: 500_000 + moved.id });
      assert.deepEqual((await findApp(t.db.pool, "first"))!.sandbox, first.sandbox);
      // Under base 500000 the first app's uid lies outside the range: the network rules must still cover it.
      assert.deepEqual(await listSandboxUidsOutside(t.db.pool, 500_000, 100_000), [first.sandbox.uid]);
      assert.deepEqual(await listSandboxUidsOutside(t.db.pool, 200_000, 100_000), [moved.sandbox.uid]);
    });

    it("never hands a deleted app's uid to a new app", async () => {
      const gone = await insertApp(t.db.pool, { name: "gone", orgId, createdBy: null });
      await deleteApp(t.db.pool, gone.id);
      const next = await insertApp(t.db.pool, { name: "gone", orgId, createdBy: null });
      assert.ok(next.sandbox.uid > gone.sandbox.uid);
    });

    it("refuses two apps with one uid", async () => {
      const a = await insertApp(t.db.pool, { name: "clash", orgId, createdBy: null });
      await assert.rejects(t.db.pool.query(q`UPDATE apps SET sandbox_uid = ${a.sandbox.uid} WHERE name = 'first'`), /unique|duplicate/i);
    });

    it("gives apps created before the migration a uid of their own", async () => {
      // A database at the schema before sandbox uids, with two apps in it, then migrated to the current one.
      const name = `pre_sandbox_${process.pid}`;
      const admin = new pg.Client({ connectionString: t.db.url });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
      const url = new URL(t.db.url);
      url.pathname = `/${name}`;
      const older = await mkdtemp(join(t.dataDir, "migrations-"));
      for (const file of await readdir(MIGRATIONS_DIR)) {
        if (file.endsWith(".sql") && Number(file.slice(0, 3)) < 19) await copyFile(join(MIGRATIONS_DIR, file), join(older, file));
      }
      await migrate(url.href, { dir: older });
      const client = new pg.Client({ connectionString: url.href });
      await client.connect();
      try {
        await client.query("INSERT INTO organizations (name, slug) VALUES ('Old', 'old')");
        await client.query("INSERT INTO apps (name, org_id) VALUES ('old-one', currval('organizations_id_seq')), ('old-two', currval('organizations_id_seq'))");
        await migrate(url.href);
        const { rows } = await client.query("SELECT id, sandbox_uid FROM apps ORDER BY id");
        assert.equal(rows.length, 2);
        for (const r of rows) assert.equal(Number(r.sandbox_uid), 200_000 + Number(r.id));
        await assert.rejects(client.query("INSERT INTO apps (name, org_id, sandbox_uid) VALUES ('no-uid', currval('organizations_id_seq'), NULL)"), /null value/);
      } finally {
        await client.end();
        const cleanup = new pg.Client({ connectionString: t.db.url });
        await cleanup.connect();
        await cleanup.query(`DROP DATABASE IF EXISTS ${name}`);
        await cleanup.end();
      }
    });
  });
}
