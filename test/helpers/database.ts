import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { destroyEmbeddedServer, openDatabase, redactUrl, type Database } from "../../store/index.ts";
import { configureSecrets } from "../../store/secret-box.ts";

/**
 * Database backends for tests. Every suite that touches PostgreSQL runs against the embedded server and,
 * when DECK_TEST_DATABASE_URL names an external server (an admin URL such as
 * postgres://postgres@127.0.0.1:5432/postgres), against a fresh database there too.
 */

export type DbBackend = { name: "embedded" } | { name: "external"; url: string; drop(): Promise<void> };

/**
 * Always embedded; plus external when DECK_TEST_DATABASE_URL is set and reachable. Under CI=true a
 * missing or unreachable external server throws (the calling test fails, never skips); elsewhere it is
 * one line on stderr and the embedded backend alone.
 */
export async function databaseBackends(): Promise<DbBackend[]> {
  const backends: DbBackend[] = [{ name: "embedded" }];
  const adminUrl = process.env.DECK_TEST_DATABASE_URL;
  const ci = process.env.CI === "true";
  if (!adminUrl) {
    const reason = "DECK_TEST_DATABASE_URL is not set, so the external PostgreSQL backend is not tested";
    if (ci) throw new Error(`${reason} (required when CI=true)`);
    process.stderr.write(`${reason}\n`);
    return backends;
  }
  try {
    backends.push({ name: "external", ...(await createExternalTestDatabase(adminUrl)) });
  } catch (e) {
    const reason = `external PostgreSQL at ${redactUrl(adminUrl)} is unreachable: ${(e as Error).message.split("\n")[0]}`;
    if (ci) throw new Error(`${reason} (required when CI=true)`);
    process.stderr.write(`${reason}; testing the embedded backend only\n`);
  }
  return backends;
}

/**
 * The embedded backend alone, for an end-to-end suite whose subject is not how PostgreSQL runs (builds,
 * access rules, router settings): running it twice would only double its time. Suites about queues,
 * nodes and restarts keep both backends.
 */
export function embeddedBackendOnly(): DbBackend[] {
  return [{ name: "embedded" }];
}

/** Creates an empty database with a random name on the server behind `adminUrl`. */
export async function createExternalTestDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `deck_test_${randomBytes(6).toString("hex")}`;
  await withAdmin(adminUrl, (client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return {
    url: url.toString(),
    drop: () =>
      (dropped ??= withAdmin(adminUrl, async (client) => {
        // FORCE ends connections a failed test left open (PostgreSQL 13+).
        await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
      })),
  };
}

async function withAdmin<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 });
  client.on("error", () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  db: Database;
  dataDir: string;
  /** Closes the database and removes everything it created (temp dir, embedded cluster, external database). */
  cleanup(): Promise<void>;
}

/**
 * Opens a migrated database on `backend` with a fresh temp data dir. Call `cleanup` in an `after` hook.
 * With `secrets`, values deck seals (config vars, private keys) are sealed with a fresh master key.
 */
export async function openTestDatabase(backend: DbBackend, options: { secrets?: boolean } = {}): Promise<TestDatabase> {
  const dataDir = await mkdtemp(join(tmpdir(), "deck-db-"));
  const removeAll = async () => {
    if (backend.name === "external") await backend.drop();
    else await destroyEmbeddedServer(dataDir);
    await rm(dataDir, { recursive: true, force: true });
  };
  let db: Database;
  try {
    db = await openDatabase({ dataDir, databaseUrl: backend.name === "external" ? backend.url : undefined });
    if (options.secrets) configureSecrets({ dataDir, masterKey: randomBytes(32).toString("base64") });
  } catch (e) {
    await removeAll();
    throw e;
  }
  return {
    db,
    dataDir,
    cleanup: async () => {
      try {
        await db.close();
      } finally {
        await removeAll();
      }
    },
  };
}
