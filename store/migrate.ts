import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { DeckError } from "../core/index.ts";

/**
 * Versioned SQL migrations: `migrations/NNN_name.sql`, applied in version order, each in its own
 * transaction and recorded in `schema_migrations`. A session-level advisory lock makes concurrent deck
 * processes take turns; the second one finds everything applied and does nothing.
 *
 * Runs on a plain `pg` client because migration files hold many statements, which only PostgreSQL's
 * simple query protocol accepts (slonik always uses the extended protocol).
 */

export const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations/", import.meta.url));

/** Arbitrary constant shared by every deck process: the key of the migration advisory lock. */
const MIGRATION_LOCK_KEY = 4_711_2024_0001;

export interface Migration {
  version: number;
  name: string;
  file: string;
}

export interface MigrateOptions {
  /** Defaults to store/migrations. */
  dir?: string;
  log?: (line: string) => void;
}

export interface MigrateResult {
  applied: Migration[];
}

export async function listMigrations(dir: string = MIGRATIONS_DIR): Promise<Migration[]> {
  const migrations: Migration[] = [];
  for (const file of (await readdir(dir)).sort()) {
    if (!file.endsWith(".sql")) continue;
    const match = /^(\d+)_([a-z0-9_-]+)\.sql$/i.exec(file);
    if (!match) throw new Error(`migration file ${file} is not named NNN_name.sql`);
    migrations.push({ version: Number(match[1]), name: match[2]!, file: join(dir, file) });
  }
  migrations.sort((a, b) => a.version - b.version);
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i]!.version === migrations[i - 1]!.version) throw new Error(`two migrations have version ${migrations[i]!.version}`);
  }
  return migrations;
}

export async function migrate(url: string, options: MigrateOptions = {}): Promise<MigrateResult> {
  const log = options.log ?? (() => {});
  const migrations = await listMigrations(options.dir);
  const client = new pg.Client({ connectionString: url });
  // A dropped connection must not crash the process; the failing query reports it.
  client.on("error", () => {});
  await client.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    try {
      return await applyPending(client, migrations, log);
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
    }
  } finally {
    await client.end();
  }
}

async function applyPending(client: pg.Client, migrations: Migration[], log: (line: string) => void): Promise<MigrateResult> {
  await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const { rows } = await client.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
  const done = new Set(rows.map((r) => r.version));
  const known = new Set(migrations.map((m) => m.version));
  const unknown = [...done].filter((v) => !known.has(v));
  if (unknown.length > 0) {
    throw new DeckError("schema_too_new", `the database has migration ${unknown.join(", ")} that this deck does not know; upgrade deck before using this database`, { versions: unknown });
  }
  const applied: Migration[] = [];
  for (const migration of migrations) {
    if (done.has(migration.version)) continue;
    const text = await readFile(migration.file, "utf8");
    const label = `${String(migration.version).padStart(3, "0")}_${migration.name}`;
    try {
      await client.query("BEGIN");
      await client.query(text);
      await client.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [migration.version, migration.name]);
      await client.query("COMMIT");
    } catch (e) {
      // The migration's own error is the one to report; a connection too broken to roll back ends
      // the transaction anyway when it closes.
      await client.query("ROLLBACK").catch(() => {});
      throw new DeckError("migration_failed", `migration ${label} failed: ${(e as Error).message}`, { version: migration.version }, { cause: e });
    }
    log(`database: applied migration ${label}`);
    applied.push(migration);
  }
  return { applied };
}
