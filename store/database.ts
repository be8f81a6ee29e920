import pg from "pg";
import { createPool, type DatabasePool } from "slonik";
import { DeckError } from "../core/index.ts";
import { startEmbeddedServer, type EmbeddedServer } from "./embedded-server.ts";
import { migrate } from "./migrate.ts";
import { createResultParserInterceptor, createTypeParsers } from "./type-parsers.ts";

/** The database deck's embedded server creates and uses. */
export const EMBEDDED_DATABASE = "deck";

export interface Database {
  pool: DatabasePool;
  /** Connection URL; it may contain a password, so log `redactUrl(url)` instead. */
  url: string;
  embedded: boolean;
  /** Ends the pool, and stops the embedded server when this call started it. */
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  dataDir: string;
  /** An external PostgreSQL; unset = the embedded server under `dataDir`. */
  databaseUrl?: string;
  log?: (line: string) => void;
}

/** Connects (starting the embedded server when no URL is given) and applies pending migrations. */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  const log = options.log ?? (() => {});
  if (options.databaseUrl) {
    const url = options.databaseUrl;
    const pool = await connect(url, log);
    return { pool, url, embedded: false, close: () => pool.end() };
  }
  const server = await startEmbeddedServer({ dataDir: options.dataDir, log });
  try {
    await ensureDatabase(server, EMBEDDED_DATABASE);
    const url = server.urlFor(EMBEDDED_DATABASE);
    const pool = await connect(url, log);
    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        try {
          await pool.end();
        } finally {
          await server.stop();
        }
      })());
    return { pool, url, embedded: true, close };
  } catch (e) {
    await server.stop().catch((stopError: Error) => log(`database: stopping the embedded server after a failed start failed too: ${stopError.message.split("\n")[0]}`));
    throw e;
  }
}

async function connect(url: string, log: (line: string) => void): Promise<DatabasePool> {
  try {
    await migrate(url, { log });
    const pool = await createPool(url, {
      typeParsers: createTypeParsers(),
      interceptors: [createResultParserInterceptor()],
      maximumPoolSize: 10,
    });
    // An idle connection dropped by the server must not crash deck; the next query reconnects.
    pool.on("error", (error) => log(`database: connection error: ${error.message}`));
    return pool;
  } catch (e) {
    if (isConnectionFailure(e)) {
      throw new DeckError("database_unreachable", `cannot connect to PostgreSQL at ${redactUrl(url)}: ${(e as Error).message}`, {}, { cause: e });
    }
    throw e;
  }
}

async function ensureDatabase(server: EmbeddedServer, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: server.urlFor("postgres") });
  // A dropped connection must not crash the process; the failing connect or query reports it.
  client.on("error", () => {});
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (rowCount) return;
    try {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
    } catch (e) {
      // 42P04 duplicate_database, 23505: another deck process created it at the same moment.
      const code = (e as { code?: string }).code;
      if (code !== "42P04" && code !== "23505") throw e;
    }
  } finally {
    await client.end();
  }
}

const CONNECTION_ERRNOS = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ETIMEDOUT", "ECONNRESET", "EAI_AGAIN"]);
// invalid_password, invalid_authorization_specification, invalid_catalog_name (no such database), cannot_connect_now
const CONNECTION_SQLSTATES = new Set(["28P01", "28000", "3D000", "57P03"]);

function isConnectionFailure(e: unknown): boolean {
  for (let err: unknown = e; err; err = (err as { cause?: unknown }).cause) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string" && (CONNECTION_ERRNOS.has(code) || CONNECTION_SQLSTATES.has(code))) return true;
    if (err instanceof AggregateError && err.errors.some(isConnectionFailure)) return true;
    if (/timeout expired|Connection terminated/i.test((err as Error).message ?? "")) return true;
  }
  return false;
}

/** The URL with its password replaced, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparsable database URL)";
  }
}
