import { join, resolve } from "node:path";
import { EMBEDDED_DATABASE } from "./database.ts";
import { readState, SUPERUSER } from "./embedded-layout.ts";

/**
 * The connection URL of the embedded PostgreSQL a deck server keeps under `dataDir`, for processes
 * that share its database on the same machine (router nodes: `deck database:url`). It listens on
 * 127.0.0.1 only, on the port it last started on. Undefined before the first `deck server` start.
 * The URL holds the superuser password: keep it out of logs.
 */
export async function embeddedDatabaseUrl(dataDir: string): Promise<string | undefined> {
  const state = await readState(join(resolve(dataDir), "postgres", "state.json"));
  if (!state) return undefined;
  return `postgres://${SUPERUSER}:${encodeURIComponent(state.password)}@127.0.0.1:${state.port}/${EMBEDDED_DATABASE}`;
}
