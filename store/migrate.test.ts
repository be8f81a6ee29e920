import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import { isDeckError } from "../core/index.ts";
import { destroyEmbeddedServer, migrate, startEmbeddedServer, type EmbeddedServer } from "./index.ts";

let dataDir: string;
let server: EmbeddedServer;
let dbCounter = 0;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "deck-migrate-"));
  server = await startEmbeddedServer({ dataDir });
});
after(async () => {
  await server?.stop();
  await destroyEmbeddedServer(dataDir);
  await rm(dataDir, { recursive: true, force: true });
});

/** A fresh empty database on the test server; migrations are per database. */
async function freshDatabase(): Promise<string> {
  const name = `m${++dbCounter}`;
  await query(server.urlFor("postgres"), `CREATE DATABASE ${name}`);
  return server.urlFor(name);
}

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

async function migrationsDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(dataDir, "migrations-"));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

test("two deck processes migrating at once apply each migration exactly once", async () => {
  const url = await freshDatabase();
  const [a, b] = await Promise.all([migrate(url), migrate(url)]);
  const total = a.applied.length + b.applied.length;
  assert.ok(total > 0);
  assert.ok(a.applied.length === 0 || b.applied.length === 0, "one process did all the work, the other found it done");
  const rows = await query<{ version: number }>(url, "SELECT version FROM schema_migrations");
  assert.equal(rows.length, total);
  assert.deepEqual((await migrate(url)).applied, [], "a restart applies nothing");
});

test("a failing migration is rolled back whole and reported with its name", async () => {
  const url = await freshDatabase();
  const dir = await migrationsDir({
    "001_first.sql": "CREATE TABLE first (id int);",
    "002_broken.sql": "CREATE TABLE second (id int);\nSELECT no_such_column FROM first;",
  });
  await assert.rejects(migrate(url, { dir }), (e) => isDeckError(e) && e.code === "migration_failed" && /002_broken/.test(e.message));
  assert.deepEqual(await query(url, "SELECT version FROM schema_migrations"), [{ version: 1 }]);
  assert.deepEqual(await query(url, "SELECT to_regclass('second') AS t"), [{ t: null }]);
});

test("a database migrated by a newer deck is refused", async () => {
  const url = await freshDatabase();
  const newer = await migrationsDir({ "001_a.sql": "SELECT 1;", "002_b.sql": "SELECT 1;" });
  const older = await migrationsDir({ "001_a.sql": "SELECT 1;" });
  await migrate(url, { dir: newer });
  await assert.rejects(migrate(url, { dir: older }), (e) => isDeckError(e) && e.code === "schema_too_new");
});
