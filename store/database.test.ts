import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { z } from "zod";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { listMigrations, SchemaValidationError, sql, UniqueIntegrityConstraintViolationError, type Database } from "./index.ts";

/**
 * One contract suite, run on every backend: the embedded server and, when DECK_TEST_DATABASE_URL is
 * set, a fresh database on that external server (required under CI=true).
 */
const backends = await databaseBackends();

for (const backend of backends) {
  describe(`store on ${backend.name} PostgreSQL`, () => {
    let test_: TestDatabase;
    let db: Database;
    before(async () => {
      test_ = await openTestDatabase(backend);
      db = test_.db;
    });
    after(() => test_?.cleanup());

    test("every migration is applied once and recorded", async () => {
      const files = await listMigrations();
      const rows = await db.pool.any(sql.type(z.object({ version: z.number(), name: z.string(), applied_at: z.string() }))`
        SELECT version, name, applied_at FROM schema_migrations ORDER BY version`);
      assert.deepEqual(rows.map((r) => [r.version, r.name]), files.map((m) => [m.version, m.name]));
      assert.equal(db.embedded, backend.name === "embedded");
    });

    test("rows round-trip with bigint as number, timestamptz as ISO string, jsonb and arrays as values", async () => {
      const org = await db.pool.one(sql.typeAlias("id")`INSERT INTO organizations (name, slug) VALUES ('Acme', 'acme') RETURNING id`);
      const app = await db.pool.one(sql.type(z.object({ id: z.number(), org_id: z.number(), formation: z.record(z.number()), created_at: z.string() }))`
        INSERT INTO apps (name, org_id, sandbox_uid, formation) VALUES ('myapp', ${org.id}, 200001, ${sql.jsonb({ web: 2, worker: 1 })})
        RETURNING id, org_id, formation, created_at`);
      assert.equal(app.org_id, org.id);
      assert.deepEqual(app.formation, { web: 2, worker: 1 });
      assert.match(app.created_at, /Z$/);
      await db.pool.query(sql.typeAlias("void")`
        INSERT INTO environments (app_id, domains) VALUES (${app.id}, ${sql.array(["a.example.com", "b.example.com"], "text")})`);
      const env = await db.pool.one(sql.type(z.object({ domains: z.array(z.string()), variables: z.object({}) }))`
        SELECT domains, variables FROM environments WHERE app_id = ${app.id}`);
      assert.deepEqual(env, { domains: ["a.example.com", "b.example.com"], variables: {} });
      const big = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT ${2 ** 40}::bigint AS n`);
      assert.equal(big, 2 ** 40);
      const at = await db.pool.oneFirst(sql.type(z.object({ t: z.string() }))`SELECT '2025-01-02 03:04:05.678901+02'::timestamptz AS t`);
      assert.equal(at, "2025-01-02T01:04:05.678Z");
    });

    test("a failed transaction leaves nothing behind", async () => {
      await assert.rejects(
        db.pool.transaction(async (tx) => {
          await tx.query(sql.typeAlias("void")`INSERT INTO users (email) VALUES ('tx@example.com')`);
          await tx.query(sql.typeAlias("void")`INSERT INTO users (email) VALUES ('tx@example.com')`);
        }),
        UniqueIntegrityConstraintViolationError,
      );
      assert.equal(await db.pool.maybeOne(sql.type(z.object({ id: z.number() }))`SELECT id FROM users WHERE email = 'tx@example.com'`), null);
    });

    test("sql.type checks rows against the schema at run time", async () => {
      await assert.rejects(db.pool.one(sql.type(z.object({ n: z.string() }))`SELECT 1 AS n`), SchemaValidationError);
    });
  });
}
